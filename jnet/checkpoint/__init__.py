"""Checkpoints that cannot lie: atomic (orbax), checksummed, locked, tied to their run.

- `store`: `Checkpointer`, saving and restoring `(epoch, state, meta)` with orbax; every
  array and the metadata carry a SHA-256 digest checked on restore.
- `digest`: the digests.
- `lock`: one run per checkpoint folder (`FolderLock`).
"""

from jnet.checkpoint.lock import FolderLock as FolderLock
from jnet.checkpoint.lock import LockedError as LockedError
from jnet.checkpoint.store import Checkpointer as Checkpointer
from jnet.checkpoint.store import CheckpointError as CheckpointError
from jnet.checkpoint.store import CorruptError as CorruptError
from jnet.checkpoint.store import LayoutError as LayoutError
from jnet.checkpoint.store import SaveError as SaveError
