"""Losses with hand-written backward passes; each value is a mean over the batch.

A `Loss` is a pair of pure functions. `jnet.apply(loss)` gives `f(outputs, targets) -> value`
wired with `jax.custom_vjp`, so `jax.grad` of it uses `loss.backward`. Targets are treated as
constants (they get no gradient).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnet.layers.checks import check_float


class Loss(NamedTuple):
    """Two pure functions and what the loss knows about its targets and outputs.

    Attributes:
      forward: `(outputs, targets) -> (value, cache)`; `value` is a scalar mean over the batch.
      backward: `cache -> doutputs`, the gradient of `value` with respect to `outputs`.
      name: shown in messages and checkpoints' run records.
      accuracy: `(outputs, targets) -> fraction right` (traceable), reading predictions
        from outputs the loss's way; None: `default_accuracy`.
      check_targets: `(y, output_shape, where)` on concrete numpy targets, raising a
        ValueError for targets the loss cannot take (e.g. labels out of range); None: only
        NaN/inf float targets are refused.
    """

    forward: Callable[[jax.Array, jax.Array], tuple[jax.Array, Any]]
    backward: Callable[[Any], jax.Array]
    name: str = "loss"
    accuracy: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    check_targets: Callable[[np.ndarray, tuple, str], None] | None = None


def default_accuracy(outputs: jax.Array, targets: jax.Array, threshold: float = 0.5) -> jax.Array:
    """Fraction right: argmax for several outputs `(N, C)` (integer or one-hot targets);
    one output `(N, 1)`/`(N,)` above `threshold` against targets above 0.5."""
    if outputs.ndim >= 1 and outputs.shape[-1] > 1:
        predicted = jnp.argmax(outputs, axis=-1)
        true = targets if jnp.issubdtype(targets.dtype, jnp.integer) else jnp.argmax(targets, -1)
    else:
        predicted = outputs.reshape(-1) > threshold
        true = targets.reshape(-1) > 0.5
    return jnp.mean(predicted == true)


def finite_targets(y: np.ndarray, out_shape: tuple, where: str) -> None:
    """Refuses NaN or inf float targets (the check every loss makes)."""
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y)):
        raise ValueError(f"{where}: y contains NaN or inf values")


def differentiable(loss: Loss) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """`f(outputs, targets) -> value` whose VJP is `loss.backward`; `jnet.apply(loss)`.

    A `Loss` itself is not callable: `jax.jit` needs a weak reference to what it compiles,
    and a NamedTuple cannot have one.
    """

    @jax.custom_vjp
    def f(outputs, targets):
        return loss.forward(outputs, targets)[0]

    def f_fwd(outputs, targets):
        return loss.forward(outputs, targets)

    def f_bwd(cache, g):
        return g * loss.backward(cache), None  # targets get no gradient

    f.defvjp(f_fwd, f_bwd)
    return f


def _targets_like(name: str, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Float targets of the outputs' shape; (N,) and (N, 1) are interchangeable.

    So are () and (1,), the per-example shapes under `jax.vmap`; no other reshape is done.
    """
    if targets.shape + (1,) == outputs.shape or targets.shape == outputs.shape + (1,):
        targets = targets.reshape(outputs.shape)
    if targets.shape != outputs.shape:
        raise ValueError(
            f"{name}: targets of shape {targets.shape} do not match outputs of shape "
            f"{outputs.shape}" + _batch_hint(outputs, targets)
        )
    return targets.astype(outputs.dtype)


def _batch_hint(outputs, targets) -> str:
    if outputs.ndim and targets.ndim and outputs.shape[0] != targets.shape[0]:
        return f" (batch sizes differ: {outputs.shape[0]} outputs, {targets.shape[0]} targets)"
    return ""


def _softmax_ce_forward(logits, targets):
    name = "softmax_cross_entropy"
    check_float(name, logits, "logits")
    if logits.ndim < 1:
        raise ValueError(f"{name}: logits must have shape (..., classes); got {logits.shape}")
    targets = jnp.asarray(targets)
    if jnp.issubdtype(targets.dtype, jnp.integer):
        if targets.shape != logits.shape[:-1]:
            raise ValueError(
                f"{name}: integer labels of shape {targets.shape} do not match logits of shape "
                f"{logits.shape}; expected labels of shape {logits.shape[:-1]}"
                + _batch_hint(logits, targets)
            )
        classes = logits.shape[-1]
        # An out-of-range label would give an all-zero row and add 0 to the loss unnoticed;
        # under jit nothing can raise, so its row is NaN (elementwise: fused, no extra pass).
        valid = (targets >= 0) & (targets < classes)
        hit = targets[..., None] == jnp.arange(classes)
        onehot = jnp.where(valid[..., None], hit, jnp.nan).astype(logits.dtype)
    elif jnp.issubdtype(targets.dtype, jnp.floating):
        if targets.shape == logits.shape[:-1]:
            raise ValueError(
                f"{name}: got float labels of shape {targets.shape} (dtype {targets.dtype}); pass "
                f"integer class labels, or one-hot targets of shape {logits.shape}"
            )
        if targets.shape != logits.shape:
            raise ValueError(
                f"{name}: one-hot targets of shape {targets.shape} do not match logits of shape "
                f"{logits.shape}" + _batch_hint(logits, targets)
            )
        onehot = targets.astype(logits.dtype)
    else:
        raise ValueError(
            f"{name}: targets must be integer labels or float one-hot; got {targets.dtype}"
        )
    logp = jax.nn.log_softmax(logits, axis=-1)  # stable for logits of +-1e4
    value = -jnp.sum(onehot * logp) / _batch_size(logp)
    return value, (logp, onehot)


def _batch_size(logits):
    return logits.size // logits.shape[-1]


def _softmax_ce_backward(cache):
    logp, onehot = cache
    return (jnp.exp(logp) - onehot) / _batch_size(logp)


def _softmax_ce_targets(y: np.ndarray, out_shape: tuple, where: str) -> None:
    if np.issubdtype(y.dtype, np.integer):
        classes = out_shape[-1]
        if y.shape == tuple(out_shape):
            raise ValueError(
                f"{where}: y of shape {y.shape} looks one-hot but is {y.dtype}; pass "
                f"integer labels of shape {tuple(out_shape[:-1])}, or one-hot as floats "
                "(y.astype('float32'))"
            )
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= classes:
            raise ValueError(
                f"{where}: labels must lie in [0, {classes}) for a network with {classes} "
                f"outputs; got labels in [{lo}, {hi}]"
            )
    elif y.shape == tuple(out_shape):
        sums = y.sum(axis=-1)
        if not np.all(np.isfinite(y)) or np.any((y < 0) | (y > 1)):
            raise ValueError(f"{where}: one-hot / probability targets must lie in [0, 1]")
        if np.any(np.abs(sums - 1) > 1e-3):
            raise ValueError(
                f"{where}: one-hot / probability targets must sum to 1 over the last axis; "
                f"got sums in [{sums.min():g}, {sums.max():g}]"
            )
    else:
        finite_targets(y, out_shape, where)


softmax_cross_entropy = Loss(
    _softmax_ce_forward,
    _softmax_ce_backward,
    "softmax_cross_entropy",
    default_accuracy,  # argmax of the logits
    _softmax_ce_targets,
)
"""Cross entropy of softmax(logits) against integer labels `(N,)` or one-hot `(N, C)`.

Shapes: logits `(N, C)`; value = mean over N of `-log softmax(logits)[label]`. Any leading
axes: a language model's logits `(N, T, V)` with labels `(N, T)` give the mean over all
`N * T` tokens (and accuracy the fraction of tokens predicted right).
"""


def _sigmoid_bce_forward(logits, targets):
    name = "sigmoid_binary_cross_entropy"
    check_float(name, logits, "logits")
    targets = _targets_like(name, logits, jnp.asarray(targets))
    # softplus(z) - z t, with softplus = logaddexp(z, 0): finite for logits of +-1e4 and
    # smooth at z = 0 (a max/abs form would give autodiff a kink there).
    per_unit = jax.nn.softplus(logits) - logits * targets
    return jnp.mean(per_unit), (logits, targets)


def _sigmoid_bce_backward(cache):
    logits, targets = cache
    return (jax.nn.sigmoid(logits) - targets) / logits.size


def _binary_targets(y: np.ndarray, out_shape: tuple, where: str) -> None:
    if np.any((y < 0) | (y > 1)) or not np.all(np.isfinite(y)):
        raise ValueError(f"{where}: binary targets must lie in [0, 1]; got {np.unique(y)[:10]}")


sigmoid_binary_cross_entropy = Loss(
    _sigmoid_bce_forward,
    _sigmoid_bce_backward,
    "sigmoid_binary_cross_entropy",
    # Outputs are logits: a logit above 0 is a probability above 0.5.
    lambda outputs, targets: default_accuracy(outputs, targets, threshold=0.0),
    _binary_targets,
)
"""Binary cross entropy of sigmoid(logits) against 0/1 targets.

Shapes: logits `(N, 1)` or `(N,)`, targets `(N,)` or `(N, 1)`; value = mean over all units.
"""


def _mse_forward(outputs, targets):
    name = "mean_squared_error"
    check_float(name, outputs, "outputs")
    diff = outputs - _targets_like(name, outputs, jnp.asarray(targets))
    return jnp.mean(diff * diff), diff


def _mse_backward(diff):
    return 2.0 * diff / diff.size


def _mse_targets(y: np.ndarray, out_shape: tuple, where: str) -> None:
    if out_shape[-1] > 1 and np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{where}: mean_squared_error needs float targets of the outputs' shape "
            f"{tuple(out_shape)}; got {y.dtype} (one-hot targets: y.astype('float32'))"
        )
    finite_targets(y, out_shape, where)


mean_squared_error = Loss(
    _mse_forward, _mse_backward, "mean_squared_error", default_accuracy, _mse_targets
)
"""Mean over all elements of `(outputs - targets) ** 2`. Shapes: outputs and targets `(N, D)`."""
