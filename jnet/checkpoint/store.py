"""Checkpoints of the whole training state with orbax-checkpoint.

Orbax writes each checkpoint into a temporary folder and renames it into place when
complete, so a run killed mid-save leaves the previous checkpoint as the latest. The
state is stored leaf by leaf and rebuilt on the structure of a freshly made state, so
optax's NamedTuple states and PRNG keys round-trip exactly. Every array and the
metadata carry a SHA-256 digest, checked on restore: a flipped bit is reported and the
previous checkpoint used. The folder is locked (`lock.FolderLock`) while a run uses it.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import warnings
from typing import Any

import jax
import numpy as np

from jnet.checkpoint.digest import array_digest, meta_digest
from jnet.checkpoint.lock import FolderLock
from jnet.checkpoint.quiet import (
    absl_errors_silenced,
    ignore_closed_loop_callbacks,
    ignore_orphaned_orbax_tasks,
)


def _leaves(state) -> dict[str, Any]:
    leaves = jax.tree.leaves(state)
    return {f"{i:04d}": _to_storable(leaf) for i, leaf in enumerate(leaves)}


def _to_storable(leaf):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(leaf)  # typed keys are stored as their uint32 data
    return leaf


def _abstract(leaf):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    sharding = getattr(leaf, "sharding", None)
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)


def _layout(state) -> list[list]:
    """`[path, shape, dtype]` per leaf: what a checkpoint must match to restore onto `state`."""
    return [
        [jax.tree_util.keystr(path), list(np.shape(leaf)), str(_abstract(leaf).dtype)]
        for path, leaf in jax.tree_util.tree_leaves_with_path(state)
    ]


class CheckpointError(RuntimeError):
    """No usable checkpoint, or one that does not fit the training state."""


class LayoutError(CheckpointError):
    """The checkpoint is intact but was saved from another network or optimizer."""


class SaveError(CheckpointError):
    """A save failed during `fit`; `.state`/`.params` and `.history` keep the run's result."""

    def __init__(self, message: str, state: Any, history: dict):
        super().__init__(message)
        self.state, self.params, self.history = state, state.params, history


class CorruptError(CheckpointError):
    """A checkpoint's array or metadata does not match its digest, or cannot be read."""


def _host_value(leaf) -> np.ndarray:
    """The whole array on this host (gathered across processes when sharded over them)."""
    if getattr(leaf, "is_fully_addressable", True) or getattr(leaf, "is_fully_replicated", True):
        return np.asarray(leaf)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))


class Checkpointer:
    """Saves and restores `(epoch, state, meta)` under `directory/<epoch>/`.

    Args:
      directory: where checkpoints live (created if missing).
      max_to_keep: how many of the newest checkpoints to keep.
      lock: hold `directory`'s lock until `close()` (process 0 of a multi-process run
        holds it for all): a second run on the folder gets a `LockedError`.
    """

    def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 3, lock: bool = True):
        import orbax.checkpoint as ocp  # slow to import: only when checkpointing

        self._ocp = ocp
        ignore_closed_loop_callbacks()  # a failed read or write would print one traceback an array
        ignore_orphaned_orbax_tasks()  # and so would its other arrays' tasks, when collected
        self.directory = pathlib.Path(directory).absolute()
        _check_writable(self.directory)  # fail now, not after training up to the first save
        self._lock = FolderLock(self.directory) if lock and jax.process_index() == 0 else None
        try:
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            )
        except BaseException:
            self._release()
            raise

    def epochs(self) -> list[int]:
        """Epochs with a complete checkpoint, oldest first."""
        self._manager.reload()  # see checkpoints written since this manager was made
        return sorted(self._manager.all_steps())

    def save(self, epoch: int, state: Any, meta: dict) -> None:
        """Writes the state (all leaves) and JSON metadata; waits until it is on disk.

        The metadata gains "layout" (each leaf's path, shape and dtype), so a restore
        onto another network's state is refused by name rather than read as corruption,
        "digests" (one SHA-256 per stored array) and "meta_digest" (of the rest).
        """
        bad = [i for i, leaf in enumerate(jax.tree.leaves(state)) if _non_finite(leaf)]
        if bad:
            raise CheckpointError(
                f"refusing to checkpoint epoch {epoch}: leaves {bad} are not finite"
            )
        ocp = self._ocp
        # Checkpoints at or past `epoch` exist only when `restore_latest` skipped them as
        # corrupt. Orbax silently skips a save at or below its latest step, which would
        # leave the corrupt one in place: replace it.
        for stale in self._manager.all_steps():
            if stale >= epoch:
                self._manager.delete(stale)
        leaves = _leaves(state)
        digests = {name: array_digest(_host_value(leaf)) for name, leaf in leaves.items()}
        meta = meta | {"layout": _layout(state), "digests": digests}
        meta["meta_digest"] = meta_digest(meta)
        args = ocp.args.Composite(state=ocp.args.StandardSave(leaves), meta=ocp.args.JsonSave(meta))
        try:
            with absl_errors_silenced():
                saved = self._manager.save(epoch, args=args)
                self._manager.wait_until_finished()
        except Exception as e:  # orbax raises ValueError (a full disk), OSError, ...
            self._remove_partial(epoch)
            raise CheckpointError(
                f"saving epoch {epoch} to {self.directory} failed: {_one_line(e)}"
            ) from None
        if not saved:
            raise CheckpointError(f"orbax declined to save epoch {epoch} in {self.directory}")

    def _remove_partial(self, epoch: int) -> None:
        """Deletes what a failed save left (`<epoch>.orbax-checkpoint-tmp*`): on a full disk
        it holds the space the user needs back, and it is never a checkpoint."""
        for partial in self.directory.glob(f"{epoch}.orbax-checkpoint-tmp*"):
            shutil.rmtree(partial, ignore_errors=True)

    def restore_latest(self, like: Any) -> tuple[int, Any, dict] | None:
        """The newest checkpoint that restores cleanly onto the structure of `like`.

        A corrupt or incomplete checkpoint (unreadable, or an array or the metadata not
        matching its digest) is skipped with a one-line warning naming it (and the
        leaf), and the one before it is used. Returns None when the directory holds none.
        Raises LayoutError when the newest readable one is from another network or
        optimizer (its leaves' paths, shapes or dtypes differ from `like`'s).
        """
        epochs = self.epochs()
        errors = []
        for epoch in reversed(epochs):
            try:
                return epoch, *self._restore(epoch, like)
            except LayoutError:
                raise
            except Exception as e:  # orbax raises many kinds; each means "unusable"
                path = self.directory / str(epoch)
                reason = _one_line(e)
                errors.append(f"{path}: {reason}")
                warnings.warn(
                    f"checkpoint {path} is corrupt or incomplete ({reason}); "
                    "trying the previous one",
                    stacklevel=2,
                )
        if errors:
            raise CheckpointError("no checkpoint could be restored:\n" + "\n".join(errors))
        return None

    def _restore(self, epoch: int, like: Any) -> tuple[Any, dict]:
        ocp = self._ocp
        # The metadata first: a checkpoint of another layout is refused before its arrays load.
        restored = self._manager.restore(
            epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
        )
        meta = restored["meta"]
        if "meta_digest" not in meta or "digests" not in meta or "layout" not in meta:
            raise CorruptError("its metadata has no digests (not a jnet checkpoint)")
        if meta_digest(meta) != meta["meta_digest"]:
            raise CorruptError("its metadata does not match its digest (edited or damaged)")
        digests = meta.pop("digests")
        meta.pop("meta_digest")
        _check_layout(self.directory / str(epoch), meta.pop("layout"), _layout(like))
        leaves, treedef = jax.tree.flatten(like)
        target = {f"{i:04d}": _abstract(leaf) for i, leaf in enumerate(leaves)}
        restored = self._manager.restore(
            epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
        )
        stored = restored["state"]
        if sorted(stored) != sorted(target):
            raise CheckpointError(f"it holds {len(stored)} leaves, the state has {len(target)}")
        new_leaves = []
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(like)]
        for name, leaf, path in zip(sorted(target), leaves, paths, strict=True):
            value = stored[name]
            if value.shape != target[name].shape:
                raise CheckpointError(
                    f"leaf {name} has shape {value.shape}, expected {target[name].shape}"
                )
            if array_digest(_host_value(value)) != digests.get(name):
                raise CorruptError(f"array {path} does not match its digest")
            if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf))
            new_leaves.append(value)
        return jax.tree.unflatten(treedef, new_leaves), meta

    def close(self) -> None:
        """Closes orbax's manager and releases the folder's lock."""
        try:
            self._manager.close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _one_line(e: Exception) -> str:
    """A short reason: orbax and TensorStore errors can hold whole specs over many lines."""
    if isinstance(e, CorruptError):
        return str(e)
    first = (str(e).strip().splitlines() or [""])[0]
    if len(first) > 240:  # the cause (e.g. "No space left on device") is at the end
        first = f"{first[:120]} ... {first[-110:]}"
    return f"{type(e).__name__}: {first}"


def _check_writable(directory: pathlib.Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} is a file, not a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise CheckpointError(
            f"cannot write checkpoints to {directory}: {e.strerror or e}"
        ) from None


def _check_layout(path: pathlib.Path, saved: list, wanted: list) -> None:
    """Raises LayoutError naming the first leaf that differs."""
    if saved == wanted:
        return
    if len(saved) != len(wanted):
        raise LayoutError(
            f"checkpoint {path} holds {len(saved)} arrays, this run's state {len(wanted)}: "
            "it was saved from another network or optimizer; resume with the same ones, "
            "or use another checkpoint_dir"
        )
    for (s_path, s_shape, s_dtype), (w_path, w_shape, w_dtype) in zip(saved, wanted, strict=True):
        if (s_path, s_shape, s_dtype) != (w_path, w_shape, w_dtype):
            raise LayoutError(
                f"checkpoint {path} was saved from another network or optimizer: its "
                f"{s_path} is {s_dtype}{tuple(s_shape)}, this run's {w_path} is "
                f"{w_dtype}{tuple(w_shape)}; resume with the same ones, or use another "
                "checkpoint_dir"
            )


def _non_finite(leaf) -> bool:
    if not jax.dtypes.issubdtype(leaf.dtype, np.inexact):
        return False
    return not bool(jax.numpy.all(jax.numpy.isfinite(leaf)))
