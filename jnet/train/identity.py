"""A run's identity: what a checkpoint must share with a `fit` call to be its continuation.

Recorded with every checkpoint and compared on resume, so a resume with another
learning rate, optimizer, activation or dropout rate is refused by name instead of
silently continuing a different run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import optax


class RunSettings(NamedTuple):
    """What a checkpoint must share with a `fit` call to be its continuation.

    Attributes:
      network: the network's name, e.g. `serial(dense(512), relu(), dense(10))`: its layers
        and their settings (the parameter shapes are checked apart, leaf by leaf).
      loss: the loss's name.
      optimizer: the optimizer's hyper-parameters as far as they can be read (see
        `describe_optimizer`).
      batch_size, num_examples, l2, validation: as passed to `fit` (for `data=`: the first
        batch's size, and steps_per_epoch times it).
      augment: the augmentation function's qualified name, or None.
    """

    network: str
    loss: str
    optimizer: dict[str, Any]
    batch_size: int | None
    num_examples: int
    l2: float
    validation: bool
    augment: str | None = None


CHANGEABLE = tuple(RunSettings._fields)  # the names fit's `allow_changes` accepts


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _walk(fn: Callable, out: dict[str, Any], depth: int) -> None:
    """Collects the scalars an optax transformation's functions close over."""
    code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None)
    if code is None or not cells or depth > 8:
        return
    owner = fn.__qualname__.split(".<locals>")[0]
    for name, cell in zip(code.co_freevars, cells, strict=True):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if _scalar(value):
            out.setdefault(f"{owner}.{name}", value)
        for inner in value if isinstance(value, tuple | list) else (value,):
            if isinstance(inner, optax.GradientTransformation):
                _walk(inner.update, out, depth + 1)
            elif callable(inner):
                _walk(inner, out, depth + 1)


def describe_optimizer(optimizer: optax.GradientTransformation, opt_state: Any) -> dict:
    """The optimizer's readable hyper-parameters, e.g. for `optax.adam(1e-3)`
    `{"scale_by_adam.b1": 0.9, ..., "scale.step_size": -0.001}` (optax scales updates
    by minus the learning rate). The numbers an `optax.inject_hyperparams` optimizer
    keeps in its state are read from `opt_state` ("hyperparams.learning_rate": 0.1)."""
    out: dict[str, Any] = {}
    _walk(optimizer.update, out, 0)
    for name in ("learning_rate", "weight_decay", "momentum", "b1", "b2", "eps"):
        try:
            out[f"hyperparams.{name}"] = float(optax.tree_utils.tree_get(opt_state, name))
        except Exception:  # not there (or not one scalar): nothing to record
            pass
    return {k: out[k] for k in sorted(out)}


def learning_rates(description: dict) -> list[float]:
    """The learning rates a description shows (optax's `scale` holds minus the rate)."""
    rates = [-v for k, v in description.items() if k.endswith("scale.step_size")]
    rates += [v for k, v in description.items() if k == "hyperparams.learning_rate"]
    return [r for r in rates if isinstance(r, int | float)]


def differences(saved: dict, wanted: RunSettings) -> dict[str, tuple[Any, Any]]:
    """Field -> (in the checkpoint, in this call), for each field that differs."""
    now = wanted._asdict()
    return {k: (saved.get(k), v) for k, v in now.items() if _normal(saved.get(k)) != _normal(v)}


def _normal(value: Any) -> Any:
    """JSON round trip: tuples come back as lists."""
    if isinstance(value, tuple | list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def describe_change(field: str, before: Any, after: Any) -> str:
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after))
        changed = [f"{k} {before.get(k)!r} -> {after.get(k)!r}" for k in keys
                   if before.get(k) != after.get(k)]  # fmt: skip
        return f"{field} ({', '.join(changed)})"
    return f"{field} {before!r} -> {after!r}"


def check_allowed(allow_changes: Iterable[str]) -> frozenset[str]:
    allowed = frozenset(allow_changes)
    unknown = sorted(allowed - set(CHANGEABLE))
    if unknown:
        raise ValueError(
            f"fit: allow_changes names unknown settings {unknown}; known: {list(CHANGEABLE)}"
        )
    return allowed
