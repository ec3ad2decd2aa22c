"""Whole epochs as one compiled, on-device loop, and how many epochs each call runs.

An epoch is one `lax.scan` over minibatches gathered on the device from a permutation
drawn from the epoch's key; several epochs run in one compiled `scan`. Metrics come
back to the host once per call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnet.evaluation import evaluate_arrays
from jnet.layers import Layer
from jnet.losses import Loss
from jnet.train.step import DecayMask, make_step

NO_STOP = np.iinfo(np.int32).max  # `make_epochs(...).run`'s stop_step when nothing should stop
FULL_BATCH_EPOCHS_PER_CALL = 100  # fit's default: full-batch epochs are single steps

# An augmentation: `(key, x_batch) -> x_batch`, pure jnp, run inside the compiled epoch.
Augment = Callable[[jax.Array, jax.Array], jax.Array]


class Epochs(NamedTuple):
    """A compiled loop of `epochs` epochs (what `make_epochs` returns)."""

    run: Callable  # jitted (state, x, y, validation, stop_step) -> (state, bad, metrics)
    steps_per_epoch: int
    epochs: int  # epochs per call


def epochs_per_call(todo: int, limit: int, checkpoint_every: int | None, done: int) -> int:
    """The largest count <= `limit` that divides every call of a run: one compile.

    Calls must end at the last epoch and at every multiple of `checkpoint_every`, so
    the count divides the epochs left (`todo`), and `checkpoint_every` and `done` (the
    epochs already run) when given. An epoch count with no divisor near the limit (a
    prime, say) gets short calls, each a round trip to the host.

    Example: `epochs_per_call(500, 100, None, 0) == 100`; `epochs_per_call(101, 100,
    None, 0) == 1`.
    """
    span = math.gcd(todo, done, checkpoint_every) if checkpoint_every else todo
    return next(d for d in range(min(limit, span), 0, -1) if span % d == 0)


def _all_finite(leaves) -> jax.Array:
    """Per-leaf finiteness `(len(leaves),)` bool, over the inexact leaves (others: True)."""
    flags = [
        jnp.all(jnp.isfinite(leaf)) if jnp.issubdtype(leaf.dtype, jnp.inexact) else True
        for leaf in leaves
    ]
    return jnp.stack([jnp.asarray(f) for f in flags]) if flags else jnp.ones(0, bool)


def make_epochs(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    *,
    num_examples: int,
    batch_size: int | None,
    epochs: int,
    l2: float = 0.0,
    l2_mask: DecayMask | None = None,
    augment: Augment | None = None,
    eval_batch_size: int = 10_000,
    sharding: Any = None,
) -> Epochs:
    """Compiles `epochs` epochs as one on-device loop.

    `run(state, x, y, validation, stop_step)` runs the epochs and returns
    `(state, bad, metrics)`. x is `(num_examples, ...)` and y its targets, on the
    device; validation is `(x_val, y_val)` or None; stop_step an int32 scalar
    (`NO_STOP` for a plain run). `metrics` maps "loss", "accuracy" (and "val_loss",
    "val_accuracy" with validation) to float32 arrays of shape `(epochs,)`. The epoch
    count is static (a `scan`): a traced trip count would make a GPU read the loop
    predicate back to the host every epoch. Minibatches: a fresh permutation per epoch;
    the last partial batch is dropped (`num_examples // batch_size` steps).
    `batch_size=None` is full-batch gradient descent, one step per epoch. `augment`
    transforms every training batch with a key of its own, on the device.

    Divergence guard: once a step's loss or the optimizer state it produces is NaN or
    inf, no later update is applied. `bad` is `(bad_step, finite_opt_leaves)`:
    bad_step the global index of that step (-1 if none) and finite_opt_leaves, for
    it, which optimizer-state leaves were finite (bool, one per leaf). At the call's end
    non-finite parameters count as divergence at the step they reached. No update is
    applied at or past `stop_step` either, which is how `fit` replays up to the last
    finite state.
    """
    step = make_step(net, loss, optimizer, l2=l2, l2_mask=l2_mask)
    full_batch = batch_size is None
    steps = 1 if full_batch else num_examples // batch_size
    if steps < 1:
        raise ValueError(
            f"fit: batch_size {batch_size} exceeds the {num_examples} training examples"
        )
    if epochs < 1:
        raise ValueError(f"epochs per call must be at least 1; got {epochs}")

    def guarded(carry, batch, key):
        state, bad_step, bad_leaves, stop_step, sums = carry
        if augment is not None:
            key, aug_key = jax.random.split(key)
            batch = (augment(aug_key, batch[0]), batch[1])
        new, m = step(state, batch, key)
        active = (state.step < stop_step) & (bad_step < 0)
        opt_finite = _all_finite(jax.tree.leaves(new.opt_state))
        # Running sums (loss, accuracy, steps kept) in the carry: no per-step outputs. The
        # guard checks the sums as the history will show them (float32): under x64 a float64
        # loss can be finite while its float32 sum is already inf.
        kept = jnp.stack([m["loss"], m["accuracy"], 1.0]).astype(sums.dtype)
        finite = jnp.all(jnp.isfinite(sums + kept)) & jnp.all(opt_finite)
        first_bad = active & ~finite
        bad_step = jnp.where(first_bad, state.step, bad_step)
        bad_leaves = jnp.where(first_bad, opt_finite, bad_leaves)
        keep = active & finite
        # A select, fused into the update: a diverged or stopped run stands still.
        state = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, state)
        sums = sums + jnp.where(keep, kept, 0)
        return state, bad_step, bad_leaves, stop_step, sums

    def epoch(carry, x, y):
        state, bad_step, bad_leaves, stop_step = carry
        next_key, perm_key, drop_key = jax.random.split(state.key, 3)
        state = state._replace(key=next_key)
        sums = jnp.zeros(3, jnp.float32)
        carry = (state, bad_step, bad_leaves, stop_step, sums)
        if full_batch:
            carry = guarded(carry, (x, y), drop_key)
        else:
            perm = jax.random.permutation(perm_key, num_examples)[: steps * batch_size]

            def body(carry, i):
                idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
                xb = jnp.take(x, idx, axis=0, mode="clip")
                yb = jnp.take(y, idx, axis=0, mode="clip")
                if sharding is not None:  # keep each batch split along the mesh's data axis
                    xb = jax.lax.with_sharding_constraint(xb, sharding)
                    yb = jax.lax.with_sharding_constraint(yb, sharding)
                return guarded(carry, (xb, yb), jax.random.fold_in(drop_key, i)), None

            carry, _ = jax.lax.scan(body, carry, jnp.arange(steps))
        state, bad_step, bad_leaves, stop_step, (loss_sum, acc_sum, n) = carry
        mean = lambda v: jnp.where(n > 0, v / jnp.maximum(n, 1), jnp.nan)  # NaN: none applied
        values = {"loss": mean(loss_sum), "accuracy": mean(acc_sum)}
        return (state, bad_step, bad_leaves, stop_step), values

    def run(state, x, y, validation, stop_step):
        def body(carry, _):
            carry, values = epoch(carry, x, y)
            if validation is not None:
                v = evaluate_arrays(
                    net, loss, carry[0].params, *validation, eval_batch_size,
                    state=carry[0].model_state,
                )  # fmt: skip
                values |= {"val_loss": v["loss"], "val_accuracy": v["accuracy"]}
            return carry, {k: v.astype(jnp.float32) for k, v in values.items()}

        bad_step = jnp.full((), -1, jnp.int32)
        bad_leaves = jnp.ones(len(jax.tree.leaves(state.opt_state)), bool)
        carry = (state, bad_step, bad_leaves, jnp.asarray(stop_step, jnp.int32))
        (state, bad_step, bad_leaves, _), metrics = jax.lax.scan(
            body, carry, None, length=epochs
        )
        # Each step's loss is taken before its update, so an overflow in the call's last update
        # would go unseen: non-finite parameters count as divergence at the step they reach.
        finite = jnp.all(_all_finite(jax.tree.leaves(state.params)))
        bad_step = jnp.where((bad_step < 0) & ~finite, state.step, bad_step)
        return state, (bad_step, bad_leaves), metrics

    return Epochs(jax.jit(run), steps, epochs)
