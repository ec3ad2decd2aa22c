"""One training step: jnet's hand-written gradient, weight decay, any optax optimizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jnet.evaluation import accuracy
from jnet.layers import Layer, Params
from jnet.losses import Loss
from jnet.network import loss_and_grads
from jnet.train.state import TrainState

# A weight-decay mask: a pytree of bools shaped like the params, or a function of the
# params returning one (as optax's `mask=` arguments take).
DecayMask = Any | Callable[[Params], Any]
# Metrics: name -> `fn(outputs, targets) -> per-example values (N,)`, pure jnp (e.g. top-5).
Metrics = dict[str, Callable[[jax.Array, jax.Array], jax.Array]]


def default_decay_mask(params: Params) -> Any:
    """The default rule: kernels (every leaf with 2 or more axes) decay; biases and
    normalization scales/offsets (1 axis) and scalars do not."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def decay_mask_for(params: Params, mask: DecayMask | None) -> Any:
    """The concrete bool pytree that `mask` (or the default rule) gives for `params`."""
    mask = default_decay_mask if mask is None else mask
    tree = mask(params) if callable(mask) else mask
    if jax.tree.structure(tree) != jax.tree.structure(params):
        raise ValueError(
            "l2_mask must be a pytree of bools with the structure of the params "
            f"({jax.tree.structure(params)}); got {jax.tree.structure(tree)}"
        )
    return tree


def l2_penalty(params: Params, mask: DecayMask | None = None) -> jax.Array:
    """`0.5 * sum(w ** 2)` over the decayed leaves (default: those with >= 2 axes)."""
    chosen = decay_mask_for(params, mask)
    pairs = zip(jax.tree.leaves(params), jax.tree.leaves(chosen), strict=True)
    leaves = [jnp.sum(p * p) for p, m in pairs if m]
    return 0.5 * sum(leaves) if leaves else jnp.zeros(())


def _add_l2_grad(grads, params, l2, mask):
    chosen = decay_mask_for(params, mask)
    return jax.tree.map(lambda g, p, m: g + l2 * p if m else g, grads, params, chosen)


def make_step(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    *,
    l2: float = 0.0,
    l2_mask: DecayMask | None = None,
    metrics: Metrics | None = None,
) -> Callable[..., tuple[TrainState, dict]]:
    """Returns the pure step `(state, (x, y), key) -> (state, {"loss", "accuracy", ...})`.

    `key` feeds dropout and puts stateful layers in training mode (None: inference
    mode, no dropout). With `l2 > 0` the loss gains `l2 * l2_penalty(params, l2_mask)`
    and the hand-written gradient gains `l2 * w` for the decayed leaves: by default
    every leaf with 2 or more axes (kernels), not biases nor normalization
    scales/offsets; `l2_mask` (a bool pytree, or a function of the params returning
    one) chooses otherwise. Metrics are those of the batch before the update, with each of
    `metrics` (name -> `fn(outputs, targets)` per-example values) as its batch mean. Wrap in
    `jax.jit` (or use `train_step`), or call inside a larger compiled loop.
    """
    grads_fn = loss_and_grads(net, loss)

    def step(state, batch, key=None):
        if not isinstance(state, TrainState):
            raise TypeError(
                f"step: state must be a jnet.TrainState (jnet.init_state(...)); "
                f"got {type(state).__name__}"
            )
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            raise TypeError(f"step: batch must be a pair (x, y); got {type(batch).__name__}")
        x, y = batch
        value, outputs, grads, _, model_state = grads_fn(
            state.params, x, y, key=key, state=state.model_state
        )
        if l2:
            value = value + l2 * l2_penalty(state.params, l2_mask)
            grads = _add_l2_grad(grads, state.params, l2, l2_mask)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        values = {"loss": value, "accuracy": accuracy(loss, outputs, y)}
        values |= {name: jnp.mean(fn(outputs, y)) for name, fn in (metrics or {}).items()}
        new = state._replace(
            params=params, opt_state=opt_state, step=state.step + 1, model_state=model_state
        )
        return new, values

    return step


def train_step(
    net: Layer, loss: Loss, optimizer: optax.GradientTransformation, *, donate: bool = True,
    **step_options: Any,
) -> Callable[..., tuple[TrainState, dict]]:
    """`make_step`, jit-compiled: `(state, (x, y), key=None) -> (new_state, metrics)`.

    With `donate=True` (the default, for speed) the old state's buffers are donated to
    the new one: the state passed in is consumed and must not be used again (calling
    twice on one state raises a ValueError saying so). `donate=False` keeps it.
    `step_options` (`l2`, `l2_mask`) go to `make_step`.
    """
    compiled = jax.jit(
        make_step(net, loss, optimizer, **step_options), donate_argnums=0 if donate else ()
    )

    def run(state: TrainState, batch: Any, key: Any = None) -> tuple[TrainState, dict]:
        if donate and any(
            getattr(leaf, "is_deleted", lambda: False)() for leaf in jax.tree.leaves(state)
        ):
            raise ValueError(
                "train_step: this state was donated to an earlier call (its buffers are "
                "gone); use the state that call returned, or build with "
                "train_step(..., donate=False) to keep old states"
            )
        return compiled(state, batch, key)

    return run
