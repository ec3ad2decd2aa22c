"""A run's per-epoch history: the lists `fit` returns, the progress bar, the JSONL log."""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any

METRICS_FILE = "metrics.jsonl"  # one JSON object an epoch, appended while the run goes


def new_history(validation: bool) -> dict[str, list]:
    history: dict[str, list] = {"epoch": [], "loss": [], "accuracy": [], "seconds": []}
    if validation:
        history |= {"val_loss": [], "val_accuracy": []}
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
    out = {"loss": f"{history['loss'][-1]:.4f}", "acc": f"{history['accuracy'][-1]:.3f}"}
    if "val_accuracy" in history:
        out["val_acc"] = f"{history['val_accuracy'][-1]:.3f}"
    return out


def progress(enabled: bool, total: int, initial: int):
    """A tqdm bar (`tqdm.auto`: a widget in notebooks), or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="epoch", desc="fit", dynamic_ncols=True)
