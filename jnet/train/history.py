"""A run's per-epoch history: the lists `fit` returns, the progress bar, the JSONL log."""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any

METRICS_FILE = "metrics.jsonl"  # one JSON object an epoch, appended while the run goes


def new_history(validation: bool, metrics: tuple[str, ...] = ()) -> dict[str, list]:
    """Empty columns: epoch, loss, accuracy, each metric, seconds, and with validation
    `val_` + loss, accuracy and each metric."""
    names = ("loss", "accuracy", *metrics)
    history: dict[str, list] = {"epoch": []} | {k: [] for k in names} | {"seconds": []}
    if validation:
        history |= {f"val_{k}": [] for k in names}
    return history


def record(history: dict[str, list], metrics: dict, done: int, n: int, seconds: float) -> None:
    """Appends `n` epochs of a call's metrics, the run having finished `done` before it."""
    for e in range(n):
        history["epoch"].append(done + e + 1)
        history["seconds"].append(seconds)
        for k in history:
            if k not in ("epoch", "seconds"):
                history[k].append(float(metrics[k][e]))


class MetricsLog:
    """Appends epochs of a history to `<folder>/metrics.jsonl`, flushed after each call,
    so a user can `tail -f` or plot it while the run goes."""

    def __init__(self, folder: str | os.PathLike):
        self.path = pathlib.Path(folder) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, history: dict[str, list], first: int) -> None:
        """Writes the history's epochs from index `first` on."""
        with open(self.path, "a") as f:
            for i in range(first, len(history["epoch"])):
                row = {k: _plain(v[i]) for k, v in history.items()}
                f.write(json.dumps(row) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    return value


def postfix(history: dict[str, list]) -> dict[str, str]:
    """The progress bar's figures: loss, accuracy, each metric, and their validation twins."""
    out = {"loss": f"{history['loss'][-1]:.4f}", "acc": f"{history['accuracy'][-1]:.3f}"}
    if "val_accuracy" in history:
        out["val_acc"] = f"{history['val_accuracy'][-1]:.3f}"
    plain = ("epoch", "seconds", "loss", "accuracy", "val_loss", "val_accuracy")
    out |= {k: f"{v[-1]:.4g}" for k, v in history.items() if k not in plain}
    return out


class EpochSums:
    """A host-batches epoch's metrics, gathered over its compiled calls (weighted by steps)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.steps = 0.0
        self.seconds = 0.0

    def add(self, metrics: dict, seconds: float) -> None:
        n = float(metrics["steps"][0])
        self.seconds += seconds
        if n > 0:
            for k, v in metrics.items():
                if k != "steps":
                    self.sums[k] = self.sums.get(k, 0.0) + float(v[0]) * n
            self.steps += n

    def take(self) -> dict:
        """The epoch's means, as a one-epoch metrics dict; starts the next epoch."""
        n = self.steps
        means = {k: [v / n if n else math.nan] for k, v in self.sums.items()}
        self.sums, self.steps = {}, 0.0
        return means


def progress(enabled: bool, total: int, initial: int):
    """A tqdm bar (`tqdm.auto`: a widget in notebooks), or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="epoch", desc="fit", dynamic_ncols=True)
