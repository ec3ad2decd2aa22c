"""Hooks `fit` calls after every compiled call: early stopping, keeping the best model.

A callback is any function `callback(event) -> bool | None`, called after every compiled
call with an `Event`; a true result stops the run after that call. A callback may also have
a `finish(state) -> state` method, called once when the run ends (stopped or not), whose
result replaces the state `fit` returns (how `restore_best` works).
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

from jnet.train.state import TrainState


class Event(NamedTuple):
    """What happened in the compiled call just run.

    Attributes:
      epoch: epochs completed so far (1-based count; the run's total is `epochs`).
      epochs: the run's total.
      epoch_end: whether this call completed an epoch (then `history`'s last entries are
        that epoch's); a call over host batches may end mid-epoch.
      history: the run's history so far (per-epoch lists; read, do not change).
      state: the `TrainState` after the call.
    """

    epoch: int
    epochs: int
    epoch_end: bool
    history: dict[str, list]
    state: TrainState


class _Monitor:
    """The best value of one history column so far, by `mode`."""

    def __init__(self, where: str, monitor: str, mode: str, min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"{where}: mode must be 'min' or 'max'; got {mode!r}")
        self.where, self.monitor, self.mode, self.min_delta = where, monitor, mode, min_delta
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = 0

    def improved(self, event: Event) -> bool:
        column = event.history.get(self.monitor)
        if column is None:
            known = [k for k in event.history if k not in ("epoch", "seconds")]
            raise ValueError(
                f"{self.where}: monitor {self.monitor!r} is not in the history; it has {known} "
                "(val_* needs fit(validation=...))"
            )
        value = column[-1]
        if math.isnan(value):
            return False
        delta = self.best - value if self.mode == "min" else value - self.best
        if delta > self.min_delta or (self.best_epoch == 0 and math.isfinite(value)):
            self.best, self.best_epoch = value, event.epoch
            return True
        return False


class EarlyStopping:
    """Stops when `monitor` has not improved for `patience` epochs; see `early_stopping`."""

    def __init__(self, monitor: str, patience: int, mode: str, restore_best: bool,
                 min_delta: float):  # fmt: skip
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"early_stopping: patience must be an int >= 1; got {patience!r}")
        self.watch = _Monitor("early_stopping", monitor, mode, min_delta)
        self.patience, self.restore_best = patience, restore_best
        self.waited = 0
        self.best_state: TrainState | None = None
        self.stopped_epoch: int | None = None

    def __call__(self, event: Event) -> bool:
        if not event.epoch_end:
            return False
        if self.watch.improved(event):
            self.waited = 0
            if self.restore_best:
                self.best_state = event.state  # compiled calls do not donate: it stays valid
            return False
        self.waited += 1
        if self.waited >= self.patience:
            self.stopped_epoch = event.epoch
            return True
        return False

    def finish(self, state: TrainState) -> TrainState:
        return self.best_state if self.restore_best and self.best_state is not None else state


def early_stopping(
    monitor: str = "val_loss",
    patience: int = 5,
    mode: str = "min",
    restore_best: bool = True,
    min_delta: float = 0.0,
) -> EarlyStopping:
    """A callback that stops `fit` once `monitor` has not improved for `patience` epochs.

    `monitor` is a history column ("val_loss", "val_accuracy", "loss", a metric's name or
    `val_` + it); `mode` "min" or "max"; an improvement must exceed `min_delta`. With
    `restore_best`, `fit` returns the parameters and model state of the best epoch (the
    history still runs to the last). `.best`, `.best_epoch` (on `.watch`) and
    `.stopped_epoch` say what happened. Use a new one for each run.
    """
    return EarlyStopping(monitor, patience, mode, restore_best, min_delta)


class BestCheckpoint:
    """Saves the model whenever `monitor` improves; see `best_checkpoint`."""

    def __init__(self, path: str | os.PathLike, monitor: str, mode: str):
        self.path = path
        self.watch = _Monitor("best_checkpoint", monitor, mode)

    def __call__(self, event: Event) -> bool:
        if event.epoch_end and self.watch.improved(event):
            from jnet.serialization import save

            meta = {"epoch": event.epoch, "monitor": self.watch.monitor, "value": self.watch.best}
            save(self.path, event.state.params, event.state.model_state, metadata=meta)
        return False


def best_checkpoint(
    path: str | os.PathLike, monitor: str = "val_loss", mode: str = "min"
) -> BestCheckpoint:
    """A callback keeping the best model by `monitor` in the one file `path` (`jnet.save`:
    atomic, checksummed), rewritten at each epoch that improves it; its metadata holds
    `{"epoch", "monitor", "value"}`. Read it back with `jnet.load(path)`."""
    return BestCheckpoint(path, monitor, mode)
