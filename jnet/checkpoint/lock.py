"""One run per checkpoint folder: a lock file naming the host and process that hold it."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import time
import warnings


class LockedError(RuntimeError):
    """Another live run holds the checkpoint folder."""


LOCK_FILE = ".jnet-lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class FolderLock:
    """`<folder>/.jnet-lock`, created atomically (O_EXCL) with `{"host", "pid", "since"}`.

    A lock left by a dead process on this host is stale: it is taken over with a warning.
    A lock held by a live process, or by another host (whose processes cannot be seen
    from here), is refused with a `LockedError` naming the holder. `release()` removes it;
    use it as a context manager or call `release` in a `finally`.
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = pathlib.Path(folder) / LOCK_FILE
        self.held = False
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        self._acquire()

    def _acquire(self) -> None:
        for _ in range(2):  # a second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and not self._stale(holder):
                    raise LockedError(
                        f"checkpoint folder {self.path.parent} is locked by process "
                        f"{holder.get('pid')} on host {holder.get('host')} (since "
                        f"{time.ctime(holder.get('since', 0))}): two runs on one folder would "
                        f"delete each other's checkpoints. Use another checkpoint_dir, or, if "
                        f"that run is gone, remove {self.path}"
                    ) from None
                warnings.warn(
                    f"removing a stale lock on {self.path.parent} left by "
                    f"{'an unreadable lock file' if holder is None else _who(holder)}, which "
                    "is no longer running",
                    stacklevel=3,
                )
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
            self.held = True
            return
        raise LockedError(f"could not lock {self.path.parent}: another run keeps taking it")

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # half-written or garbled: treated as stale

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") != self.me["host"]:
            return False  # cannot tell from here: refuse
        return not _alive(int(holder.get("pid", -1)))

    def release(self) -> None:
        if self.held:
            holder = self._holder()
            if holder is not None and holder.get("pid") == self.me["pid"]:
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _who(holder: dict) -> str:
    return f"process {holder.get('pid')} on host {holder.get('host')}"
