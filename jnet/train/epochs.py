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
from jnet.train.sources import Sampler
from jnet.train.step import DecayMask, Metrics, make_step

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
    num_examples: int | None,
    batch_size: int | None,
    epochs: int,
    l2: float = 0.0,
    l2_mask: DecayMask | None = None,
    augment: Augment | None = None,
    eval_batch_size: int = 10_000,
    sharding: Any = None,
    metrics: Metrics | None = None,
    sample: Sampler | None = None,
    steps: int | None = None,
) -> Epochs:
    """Compiles `epochs` epochs as one on-device loop.

    `run(state, x, y, validation, stop_step)` runs the epochs and returns
    `(state, bad, metrics)`. Where the batches come from (`jnet.train.sources`):

    - arrays (the default): x is `(num_examples, ...)` and y its targets, on the device;
      each epoch draws a fresh permutation and the last partial batch is dropped
      (`num_examples // batch_size` steps); `batch_size=None` is full-batch gradient
      descent, one step per epoch.
    - `sample(key) -> (x_batch, y_batch)` with `steps` steps an epoch: x and y are None and
      each step draws its batch on the device.
    - `steps` alone (host batches): x `(steps, batch, ...)` and y are stacked batches, one
      per step, and `epochs` must be 1 (an "epoch" here is one call's share of one).

    validation is `(x_val, y_val)` or None; stop_step an int32 scalar (`NO_STOP` for a plain
    run). `metrics` maps "loss", "accuracy", each name of `metrics` (the mean of its
    per-example values), "steps" (steps applied) and, with validation, "val_" + each of
    those but steps, to float32 arrays of shape `(epochs,)`. The epoch count is static (a
    `scan`): a traced trip count would make a GPU read the loop predicate back to the host
    every epoch. `augment` transforms every training batch with a key of its own.

    Divergence guard: once a step's loss (as its float32 epoch sum, what the history shows)
    or the optimizer state it produces is NaN or inf, no later update is applied. `bad` is
    `(bad_step, finite_opt_leaves)`: bad_step the global index of that step (-1 if none) and
    finite_opt_leaves, for it, which optimizer-state leaves were finite (bool, one per
    leaf). At the call's end non-finite parameters count as divergence at the step they
    reached. No update is applied at or past `stop_step` either, which is how `fit`
    replays up to the last finite state (and skips a host call's padding).
    """
    metrics = dict(metrics or {})
    step = make_step(net, loss, optimizer, l2=l2, l2_mask=l2_mask, metrics=metrics)
    names = ["loss", "accuracy", *metrics]
    host = steps is not None and sample is None
    full_batch = batch_size is None and steps is None
    if steps is None:
        steps = 1 if full_batch else num_examples // batch_size
    if steps < 1:
        raise ValueError(
            f"fit: batch_size {batch_size} exceeds the {num_examples} training examples"
        )
    if epochs < 1 or (host and epochs != 1):
        raise ValueError(f"epochs per call must be at least 1 (1 for host batches); got {epochs}")

    def guarded(carry, batch, key):
        state, bad_step, bad_leaves, stop_step, sums = carry
        if augment is not None:
            key, aug_key = jax.random.split(key)
            batch = (augment(aug_key, batch[0]), batch[1])
        new, m = step(state, batch, key)
        active = (state.step < stop_step) & (bad_step < 0)
        opt_finite = _all_finite(jax.tree.leaves(new.opt_state))
        # Running sums (each metric, steps kept) in the carry: no per-step outputs. The guard
        # checks the loss sum as the history will show it (float32): under x64 a float64
        # loss can be finite while its float32 sum is already inf.
        kept = jnp.stack([m[k] for k in names] + [1.0]).astype(sums.dtype)
        finite = jnp.isfinite(sums[0] + kept[0]) & jnp.all(opt_finite)
        first_bad = active & ~finite
        bad_step = jnp.where(first_bad, state.step, bad_step)
        bad_leaves = jnp.where(first_bad, opt_finite, bad_leaves)
        keep = active & finite
        # A select, fused into the update: a diverged or stopped run stands still.
        state = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, state)
        sums = sums + jnp.where(keep, kept, 0)
        return state, bad_step, bad_leaves, stop_step, sums

    def batches(x, y, key):
        """`i -> (x_batch, y_batch)` for this epoch."""
        if sample is not None:
            return lambda i: sample(jax.random.fold_in(key, i))
        if host:
            return lambda i: (x[i], y[i])
        perm = jax.random.permutation(key, num_examples)[: steps * batch_size]

        def gather(i):
            idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
            return jnp.take(x, idx, axis=0, mode="clip"), jnp.take(y, idx, axis=0, mode="clip")

        return gather

    def epoch(carry, x, y):
        state, bad_step, bad_leaves, stop_step = carry
        next_key, perm_key, drop_key = jax.random.split(state.key, 3)
        state = state._replace(key=next_key)
        sums = jnp.zeros(len(names) + 1, jnp.float32)
        carry = (state, bad_step, bad_leaves, stop_step, sums)
        if full_batch:
            carry = guarded(carry, (x, y), drop_key)
        else:
            batch_at = batches(x, y, perm_key)

            def body(carry, i):
                xb, yb = batch_at(i)
                if sharding is not None:  # keep each batch split along the mesh's data axis
                    xb = jax.lax.with_sharding_constraint(xb, sharding)
                    yb = jax.lax.with_sharding_constraint(yb, sharding)
                return guarded(carry, (xb, yb), jax.random.fold_in(drop_key, i)), None

            carry, _ = jax.lax.scan(body, carry, jnp.arange(steps))
        state, bad_step, bad_leaves, stop_step, sums = carry
        n = sums[-1]
        mean = lambda v: jnp.where(n > 0, v / jnp.maximum(n, 1), jnp.nan)  # NaN: none applied
        values = {k: mean(sums[i]) for i, k in enumerate(names)} | {"steps": n}
        return (state, bad_step, bad_leaves, stop_step), values

    def run(state, x, y, validation, stop_step):
        def body(carry, _):
            carry, values = epoch(carry, x, y)
            if validation is not None:
                v = evaluate_arrays(
                    net, loss, carry[0].params, *validation, eval_batch_size,
                    state=carry[0].model_state, metrics=metrics,
                )  # fmt: skip
                values |= {f"val_{k}": v[k] for k in names}
            return carry, {k: v.astype(jnp.float32) for k, v in values.items()}

        bad_step = jnp.full((), -1, jnp.int32)
        bad_leaves = jnp.ones(len(jax.tree.leaves(state.opt_state)), bool)
        carry = (state, bad_step, bad_leaves, jnp.asarray(stop_step, jnp.int32))
        (state, bad_step, bad_leaves, _), metrics_out = jax.lax.scan(
            body, carry, None, length=epochs
        )
        # Each step's loss is taken before its update, so an overflow in the call's last update
        # would go unseen: non-finite parameters count as divergence at the step they reach.
        finite = jnp.all(_all_finite(jax.tree.leaves(state.params)))
        bad_step = jnp.where((bad_step < 0) & ~finite, state.step, bad_step)
        return state, (bad_step, bad_leaves), metrics_out

    return Epochs(jax.jit(run), steps, epochs)
