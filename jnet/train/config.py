"""`FitConfig`: every setting of a `fit` call, checked once, as one typed value."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import optax

from jnet import arguments
from jnet.evaluation import check_metrics
from jnet.layers import Layer, Params
from jnet.losses import Loss
from jnet.train.epochs import Augment
from jnet.train.identity import check_allowed
from jnet.train.step import DecayMask, Metrics


class FitConfig(NamedTuple):
    """The settings of one `fit` call, checked (see `fit` for each one's meaning).

    `optimizer` is an optax transformation (a number given to `fit` became plain SGD;
    `lr_label` keeps that number for messages); `allowed` the settings a resume may change.
    """

    net: Layer
    loss: Loss
    optimizer: optax.GradientTransformation
    lr_label: Any
    epochs: int
    key: jax.Array
    batch_size: int | None = None
    steps_per_epoch: int | None = None
    steps_per_call: int | None = None
    params: Params | None = None
    validation: tuple[Any, Any] | None = None
    l2: float = 0.0
    l2_mask: DecayMask | None = None
    augment: Augment | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    epochs_per_call: int | None = None
    allowed: frozenset[str] = frozenset()
    log_dir: str | None = None
    progress: bool = True
    eval_batch_size: int = 10_000
    mesh: Any = None
    metrics: Metrics = {}
    callbacks: tuple[Callable, ...] = ()


def configure(
    net: Layer,
    loss: Loss,
    optimizer: Any,
    *,
    allow_changes: Iterable[str] = (),
    l2: Any = 0.0,
    metrics: Any = None,
    callbacks: Any = (),
    **settings: Any,
) -> FitConfig:
    """Checks `fit`'s arguments (each error names the argument) and returns them as one value."""
    arguments.network_and_loss("fit", net, loss)
    optimizer, lr_label = arguments.optimizer("fit", optimizer)
    arguments.prng_key("fit", settings["key"])
    arguments.positive_int("fit", "epochs", settings["epochs"])
    arguments.positive_int("fit", "eval_batch_size", settings.get("eval_batch_size", 10_000))
    for name in (
        "batch_size", "checkpoint_every", "epochs_per_call", "steps_per_epoch", "steps_per_call"
    ):  # fmt: skip
        arguments.positive_int("fit", name, settings.get(name), optional=True)
    if settings.get("validation") is not None:
        arguments.pair("fit", "validation", settings["validation"])
    callbacks = tuple(callbacks or ())
    bad = [c for c in callbacks if not callable(c)]
    if bad:
        raise TypeError(f"fit: each callback must be callable (event -> stop?); got {bad[0]!r}")
    return FitConfig(
        net, loss, optimizer, lr_label,
        l2=arguments.non_negative("fit", "l2 (the weight-decay factor)", l2),
        allowed=check_allowed(allow_changes),
        metrics=check_metrics("fit", metrics),
        callbacks=callbacks,
        **settings,
    )  # fmt: skip


def check_learning_rates(rates: list[float]) -> None:
    bad_rates = [r for r in rates if not math.isfinite(r) or r < 0]
    if bad_rates:
        raise ValueError(
            f"fit: the optimizer's learning rate is {bad_rates[0]:g}; it must be finite and "
            ">= 0 (a negative rate climbs the loss)"
        )
