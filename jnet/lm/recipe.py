"""nanoGPT's training recipe as an optax chain.

nanoGPT's `train.py` (and its `config/train_shakespeare_char.py`): AdamW with betas
(0.9, 0.99) and weight decay 0.1 on the parameters with 2 or more axes only (matrices and
embedding tables; not biases nor layer-norm scales), a learning rate that rises linearly
over 100 warm-up iterations (`lr * (it + 1) / (warmup + 1)`) and then follows a cosine down
to `lr / 10` at the last iteration, and gradients clipped to global norm 1.0 before the
update.
"""

from __future__ import annotations

import optax

from jnet import arguments
from jnet.train.step import default_decay_mask


def nanogpt_schedule(
    lr: float, iters: int, *, warmup: int = 100, min_lr: float | None = None
) -> optax.Schedule:
    """nanoGPT's `get_lr`: `lr * (it + 1) / (warmup + 1)` while `it < warmup`, then a cosine
    from `lr` (at `it = warmup`) to `min_lr` (default `lr / 10`) at `it = iters`; `min_lr`
    after. The schedule spans the `iters` asked for (nanoGPT's `lr_decay_iters = max_iters`).
    """
    arguments.positive_int("nanogpt_schedule", "iters", iters)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < iters:
        raise ValueError(f"nanogpt_schedule: warmup must be an int in [0, iters={iters}); "
                         f"got {warmup!r}")  # fmt: skip
    if not lr > 0:
        raise ValueError(f"nanogpt_schedule: lr must be positive; got {lr!r}")
    min_lr = lr / 10 if min_lr is None else min_lr
    # optax's linear warm-up from lr / (warmup + 1) reaches lr at `warmup`: at step `it` it
    # gives lr * (it + 1) / (warmup + 1), nanoGPT's value exactly.
    return optax.warmup_cosine_decay_schedule(
        lr / (warmup + 1), lr, warmup, iters, end_value=min_lr
    )


def nanogpt_adamw(
    lr: float,
    iters: int,
    *,
    warmup: int = 100,
    min_lr: float | None = None,
    weight_decay: float = 0.1,
    b1: float = 0.9,
    b2: float = 0.99,
    clip: float | None = 1.0,
) -> optax.GradientTransformation:
    """nanoGPT's optimizer: clip to global norm `clip`, then AdamW on `nanogpt_schedule`.

    Weight decay (decoupled, scaled by the learning rate as in PyTorch's AdamW) applies to
    the leaves `jnet.train.default_decay_mask` chooses: those with 2 or more axes, which is
    nanoGPT's rule (`p.dim() >= 2`). The learning rate is wrapped in
    `optax.inject_hyperparams`, so `opt_state.hyperparams["learning_rate"]` reads it.
    """
    schedule = nanogpt_schedule(lr, iters, warmup=warmup, min_lr=min_lr)
    # `mask` is static: inject_hyperparams would call a callable argument with the step count.
    adamw = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
        learning_rate=schedule, b1=b1, b2=b2, weight_decay=weight_decay,
        mask=default_decay_mask,
    )  # fmt: skip
    return optax.chain(optax.clip_by_global_norm(clip), adamw) if clip else adamw
