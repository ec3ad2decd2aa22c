"""Accuracy, batched jit-compiled evaluation and prediction, and input validation."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet import arguments
from jnet.layers import Layer, Params, State, forward_with_state
from jnet.layers.base import state_for
from jnet.layers.checks import BackwardError
from jnet.layers.embedding import check_ids
from jnet.losses import Loss, default_accuracy, finite_targets


def accuracy(loss: Loss, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Fraction of correct predictions, read from `outputs` the way `loss` says.

    Built-in losses: argmax of several outputs `(N, C)` against integer labels or one-hot
    targets; one output `(N, 1)` or `(N,)` thresholded at 0 for sigmoid binary cross
    entropy's logits, else at 0.5 (e.g. a sigmoid layer trained with MSE).
    A user `Loss` without an `accuracy` gets `jnet.losses.default_accuracy`.
    """
    rule = loss.accuracy or default_accuracy
    return rule(outputs, targets)


def _outputs(net: Layer, params: Params, x: jax.Array, state: State) -> jax.Array:
    """Inference-mode outputs (no key: no dropout, running statistics)."""
    return forward_with_state(net, params, x, state=state)[0]


def _batch_sums(net, loss, params, x, y, state, metrics):
    """Sums over one batch: the loss and accuracy (means times N), each metric's values."""
    outputs = _outputs(net, params, x, state)
    n = x.shape[0]
    sums = {"loss": loss.forward(outputs, y)[0] * n, "accuracy": accuracy(loss, outputs, y) * n}
    for name, fn in metrics.items():
        values = fn(outputs, y)
        if jnp.shape(values) != (n,):
            raise ValueError(
                f"metric {name!r} must return one value per example, shape ({n},); got "
                f"{jnp.shape(values)}"
            )
        sums[name] = jnp.sum(values)
    return sums


def evaluate_arrays(
    net: Layer,
    loss: Loss,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    batch_size: int,
    state: State = (),
    metrics: dict | None = None,
) -> dict[str, jax.Array]:
    """Traceable evaluation: full batches in a `lax.scan`, then the remainder as one batch.

    x `(N, ...)`, y its `(N, ...)` targets; `metrics` maps names to `fn(outputs, targets)
    -> (N,)` per-example values. Returns `{"loss", "accuracy", *metrics}`, scalars: the means
    over all N. Shapes are static, so inside a jit this compiles once; it is what `evaluate`
    and `fit`'s validation run.
    """
    metrics = dict(metrics or {})
    n = x.shape[0]
    full = (n // batch_size) * batch_size
    sums_of = lambda p, xb, yb: _batch_sums(net, loss, p, xb, yb, state, metrics)  # noqa: E731
    # Accumulate in the dtype the sums come in (float64 for float64 params): a fixed
    # float32 carry would not match the scan body's output type.
    shapes = jax.eval_shape(sums_of, params, x[:1], y[:1])
    sums = {k: jnp.zeros((), s.dtype) for k, s in shapes.items()}
    if full:
        xb = x[:full].reshape((-1, batch_size) + x.shape[1:])
        yb = y[:full].reshape((-1, batch_size) + y.shape[1:])

        def body(carry, batch):
            s = sums_of(params, *batch)
            return {k: carry[k] + s[k].astype(carry[k].dtype) for k in carry}, None

        sums, _ = jax.lax.scan(body, sums, (xb, yb))
    if full < n:
        s = sums_of(params, x[full:], y[full:])
        sums = {k: sums[k] + s[k] for k in sums}
    return {k: v / n for k, v in sums.items()}


@functools.lru_cache(maxsize=64)
def _evaluator(net: Layer, loss: Loss, batch_size: int, metrics: tuple):
    return jax.jit(
        functools.partial(evaluate_arrays, net, loss, batch_size=batch_size, metrics=dict(metrics))
    )


def evaluate(
    net: Layer,
    loss: Loss,
    params: Params,
    x: Any,
    y: Any,
    *,
    batch_size: int = 10_000,
    state: State = None,
    metrics: dict | None = None,
) -> dict[str, float]:
    """Mean loss and accuracy over `(x, y)`, jit-compiled and batched, in inference mode.

    Args:
      x: inputs `(N, ...)`, floating point. y: targets `(N, ...)`.
      batch_size: examples per compiled batch (the last partial batch runs on its own).
      state: a stateful network's state (e.g. batch norm's running statistics).
      metrics: `{"name": fn(outputs, targets) -> (N,) per-example values}`, pure jnp (as
        `fit(metrics=...)` takes); each reported as its mean over all N.
    Returns:
      `{"loss": float, "accuracy": float, **{name: float}}`.
    """
    arguments.network_and_loss("evaluate", net, loss)
    arguments.positive_int("evaluate", "batch_size", batch_size)
    state = state_for(net, state, "evaluate")
    x, y = validate_data(net, loss, params, x, y, "evaluate", state=state)
    metrics = check_metrics("evaluate", metrics)
    compiled = _evaluator(net, loss, min(batch_size, x.shape[0]), tuple(metrics.items()))
    return {k: float(v) for k, v in compiled(params, x, y, state=state).items()}


@functools.lru_cache(maxsize=64)
def _predictor(net: Layer):
    return jax.jit(lambda params, x, state: _outputs(net, params, x, state))


def predict(
    net: Layer, params: Params, x: Any, *, batch_size: int = 10_000, state: State = None
) -> np.ndarray:
    """Network outputs (inference mode, no dropout) for `x (N, ...)`, as numpy, in batches.

    `state`: a stateful network's state (e.g. batch norm's running statistics).
    """
    arguments.network("predict", net)
    arguments.positive_int("predict", "batch_size", batch_size)
    state = state_for(net, state, "predict")
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"predict: x must have a batch axis, (N, ...); got shape {x.shape}")
    f = _predictor(net)
    starts = range(0, max(x.shape[0], 1), batch_size)  # N = 0: one empty batch, right shape
    return np.concatenate([np.asarray(f(params, x[i : i + batch_size], state)) for i in starts])


def validate_data(
    net: Layer, loss: Loss, params: Params, x: Any, y: Any, where: str, *, state: State = ()
) -> tuple[jax.Array, jax.Array]:
    """Checks concrete data at the boundary of `fit`/`evaluate`; returns `(x, y)` as arrays.

    Raises ValueError for: length mismatch, non-float or non-finite x (for a network that
    takes token ids, its `vocab_size` set: non-integer x or ids outside `[0, vocab_size)`),
    inputs the network cannot take, targets of a shape the loss cannot take, and whatever the
    loss's own `check_targets` refuses (for the built-ins: labels outside [0, classes),
    integer one-hot targets, one-hot / probability targets outside [0, 1] or not
    summing to 1, targets outside [0, 1] for binary cross entropy).
    """
    x_np, y_np = np.asarray(x), np.asarray(y)
    if x_np.ndim < 1 or y_np.ndim < 1 or x_np.shape[0] != y_np.shape[0]:
        raise ValueError(
            f"{where}: x and y must have the same length; got x {x_np.shape}, y {y_np.shape}"
        )
    if x_np.shape[0] == 0:
        raise ValueError(f"{where}: got an empty dataset (x {x_np.shape})")
    if net.vocab_size is not None:  # the network says: x is token ids in [0, vocab_size)
        if not np.issubdtype(x_np.dtype, np.integer):
            raise ValueError(
                f"{where}: {net.name} takes integer token ids in [0, {net.vocab_size}); got x "
                f"of dtype {x_np.dtype} (ids as x.astype('int32'))"
            )
        check_ids(where, x_np, net.vocab_size, f"token ids x (for {net.name})")
    elif not np.issubdtype(x_np.dtype, np.floating):
        raise ValueError(
            f"{where}: x must be floating point; got {x_np.dtype}. Scale it first, e.g. "
            "jnet.data.scale(x) for uint8 images"
        )
    elif not np.all(np.isfinite(x_np)):
        bad = int(np.sum(~np.isfinite(x_np)))
        raise ValueError(f"{where}: x contains {bad} NaN or inf values")
    # Shapes only (no compute), at the data's full size, so messages show its real shapes.
    x_abstract = jax.ShapeDtypeStruct(x_np.shape, x_np.dtype)
    try:
        out = jax.eval_shape(lambda p, x, s: _outputs(net, p, x, s), params, x_abstract, state)
    except ValueError as e:
        if isinstance(e, BackwardError) or getattr(e, "in_backward", False):
            raise ValueError(f"{where}: {e}") from None  # the layer's fault, not the data's
        raise ValueError(
            f"{where}: x of shape {x_np.shape} and dtype {x_np.dtype} does not fit the network: {e}"
        ) from None
    (loss.check_targets or finite_targets)(y_np, out.shape, where)
    try:  # target shapes
        jax.eval_shape(lambda o, t: loss.forward(o, t)[0], out, y_np)
    except ValueError as e:
        raise ValueError(
            f"{where}: y of shape {y_np.shape} does not fit the network's outputs {out.shape}: {e}"
        ) from None
    return jnp.asarray(x_np), jnp.asarray(y_np)


def check_metrics(where: str, metrics: Any) -> dict:
    """`metrics` as a dict of name -> function, or a TypeError naming what is wrong."""
    if metrics is None:
        return {}
    if not isinstance(metrics, dict) or not all(
        isinstance(k, str) and callable(f) for k, f in metrics.items()
    ):
        raise TypeError(
            f"{where}: metrics must be a dict of name -> fn(outputs, targets) -> per-example "
            f"values; got {metrics!r}"
        )
    taken = {"loss", "accuracy", "epoch", "seconds", "steps"} & set(metrics)
    if taken or any(k.startswith("val_") for k in metrics):
        raise ValueError(f"{where}: metric names must not be {sorted(taken) or 'val_*'}")
    return dict(metrics)
