"""Training on a token stream: compiled chunks of `jnet.train`'s step on random windows.

nanoGPT draws every batch as random windows of the token stream (`get_batch`). Here the
stream lives on the device and the windows are drawn inside the compiled loop
(`jnet.data.random_windows`): one call runs `steps` training steps as a `lax.scan` of
`jnet.make_step`'s step and reads the losses back once, so there is no host round trip
per step and no array of all windows. Evaluation averages the loss over every
non-overlapping window of a split (`jnet.data.sequential_windows`): the whole split,
deterministic, not nanoGPT's estimate from 200 random batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnet import arguments
from jnet.data.text import random_windows, sequential_windows
from jnet.evaluation import evaluate_arrays
from jnet.layers import Layer, init_with_state
from jnet.losses import Loss
from jnet.train.epochs import epochs_per_call
from jnet.train.state import DivergenceError, TrainState
from jnet.train.step import DecayMask, make_step


def make_stream_steps(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    *,
    batch: int,
    block_size: int,
    steps: int,
    l2: float = 0.0,
    l2_mask: DecayMask | None = None,
    donate: bool = True,
) -> Callable[[TrainState, jax.Array], tuple[TrainState, jax.Array]]:
    """`run(state, ids) -> (state, losses)`: `steps` training steps as one compiled call.

    Each step splits `state.key` into the next key, a key for `random_windows(key, ids,
    batch, block_size)` and one for the step (dropout), then applies `make_step(net, loss,
    optimizer, l2=l2, l2_mask=l2_mask)`. `ids` is the training stream `(L,)` on the device;
    `losses` is float32 `(steps,)`, each batch's loss before its update. With `donate` the
    state passed in is donated (consumed): use the one returned.
    """
    for name, value in (("batch", batch), ("block_size", block_size), ("steps", steps)):
        arguments.positive_int("make_stream_steps", name, value)
    step = make_step(net, loss, optimizer, l2=l2, l2_mask=l2_mask)

    def run(state, ids):
        def body(state, _):
            key, window_key, step_key = jax.random.split(state.key, 3)
            xy = random_windows(window_key, ids, batch, block_size)
            state, metrics = step(state._replace(key=key), xy, step_key)
            return state, metrics["loss"].astype(jnp.float32)

        return jax.lax.scan(body, state, None, length=steps)

    return jax.jit(run, donate_argnums=0 if donate else ())


def make_stream_eval(
    net: Layer, loss: Loss, *, block_size: int, batch_size: int = 256
) -> Callable[..., jax.Array]:
    """`evaluate(params, ids, state=()) -> mean loss` over all non-overlapping windows of `ids`.

    The windows are `jnet.data.sequential_windows(ids, block_size)` (every token of the
    split is a target once, but for the last `(L - 1) % block_size`), run in inference mode
    (no dropout) `batch_size` windows at a time; the mean is over all their tokens. Compiled
    (one compilation per split length).
    """
    arguments.positive_int("make_stream_eval", "block_size", block_size)
    arguments.positive_int("make_stream_eval", "batch_size", batch_size)

    def evaluate(params, ids, state=()):
        x, y = sequential_windows(ids, block_size)
        return evaluate_arrays(net, loss, params, x, y, batch_size, state=state)["loss"]

    return jax.jit(evaluate)


class StreamHistory(NamedTuple):
    """What `fit_stream` measured.

    Attributes:
      iteration: the iterations at which it evaluated (every `eval_every`, and the last).
      loss: per evaluation, the mean training-batch loss over the iterations since the
        previous evaluation.
      val_loss: per evaluation, the loss over the whole validation stream (NaN without one).
      train_seconds: per evaluation, the training time so far (compiled calls only:
        compilation and evaluation are off the clock).
      step_losses: every step's training-batch loss, `(iterations,)`.
      compile_seconds: the time spent compiling the training call.
    """

    iteration: list[int]
    loss: list[float]
    val_loss: list[float]
    train_seconds: list[float]
    step_losses: np.ndarray
    compile_seconds: float


def check_stream(net: Layer, loss: Loss, ids: Any, block_size: int, where: str) -> None:
    """Refuses a token stream that cannot train `net` with `loss`: not 1-D integers, no
    window of `block_size + 1` tokens, or ids the loss refuses as targets of the network's
    outputs (e.g. softmax cross entropy: ids outside `[0, classes)`), with a message naming
    `where` (e.g. "fit_stream: train_ids"). Concrete ids only (it reads them on the host)."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{where}: expected a 1-D integer token stream; got shape {ids.shape} "
                         f"and dtype {ids.dtype}")  # fmt: skip
    if len(ids) <= block_size:
        raise ValueError(f"{where}: {len(ids)} tokens hold no window of block_size + 1 = "
                         f"{block_size + 1}")  # fmt: skip
    shapes = []  # the output shape, from a trace of init (nothing runs or compiles)
    jax.eval_shape(lambda k: shapes.append(init_with_state(net, k, (1, block_size))[0]),
                   jax.random.key(0))  # fmt: skip
    if loss.check_targets is not None:
        loss.check_targets(ids, tuple(shapes[0]), where)


def fit_stream(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    state: TrainState,
    train_ids: Any,
    *,
    batch: int,
    block_size: int,
    iters: int,
    val_ids: Any = None,
    eval_every: int | None = None,
    steps_per_call: int = 50,
    eval_batch_size: int = 256,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    **step_options: Any,
) -> tuple[TrainState, StreamHistory]:
    """Trains `iters` steps on random windows of `train_ids`; evaluates on `val_ids`.

    The work runs as compiled calls of `make_stream_steps` (`steps_per_call` steps each, or
    the largest divisor of both `iters` and `eval_every` below it, so that one compilation
    serves every call); after each `eval_every` iterations (and at the end) the whole
    `val_ids` stream is evaluated with `make_stream_eval`. `progress(iteration, values)`
    is called after every call (values: "loss", and "val_loss" when just evaluated).
    `step_options` (`l2`, `l2_mask`) go to `make_step`.

    Raises:
      ValueError: `train_ids` or `val_ids` is not a 1-D integer stream longer than
        `block_size`, or holds ids the loss refuses (`check_stream`).
      DivergenceError: a training loss turned NaN or inf (the state before that call).
    """
    arguments.positive_int("fit_stream", "iters", iters)
    arguments.positive_int("fit_stream", "steps_per_call", steps_per_call)
    arguments.positive_int("fit_stream", "eval_every", eval_every, optional=True)
    eval_every = eval_every or iters
    check_stream(net, loss, train_ids, block_size, "fit_stream: train_ids")
    if val_ids is not None:
        check_stream(net, loss, val_ids, block_size, "fit_stream: val_ids")
    chunk = epochs_per_call(iters, steps_per_call, eval_every, 0)
    # No donation: a diverged call's input state is the last finite one, kept for the error.
    run = make_stream_steps(
        net, loss, optimizer, batch=batch, block_size=block_size, steps=chunk, donate=False,
        **step_options,
    )  # fmt: skip
    evaluate = make_stream_eval(net, loss, block_size=block_size, batch_size=eval_batch_size)
    train_ids = jnp.asarray(train_ids)
    val_ids = None if val_ids is None else jnp.asarray(val_ids)
    start = time.perf_counter()
    compiled = run.lower(state, train_ids).compile()
    compile_seconds = time.perf_counter() - start

    history = StreamHistory([], [], [], [], np.zeros(iters, np.float32), compile_seconds)
    done, seconds, since = 0, 0.0, 0
    while done < iters:
        previous = state
        start = time.perf_counter()
        state, losses = compiled(state, train_ids)
        losses = np.asarray(losses)  # the one read-back of the call: it waits for the device
        seconds += time.perf_counter() - start
        if not np.all(np.isfinite(losses)):
            bad = done + int(np.argmin(np.isfinite(losses)))
            raise DivergenceError(
                f"fit_stream: the training loss is {losses[bad - done]} at iteration {bad}; "
                f"the error's .state is the state at iteration {done}",
                previous, history._asdict(),
            )  # fmt: skip
        history.step_losses[done : done + chunk] = losses
        done += chunk
        values = {"loss": float(losses.mean())}
        if done % eval_every == 0 or done == iters:
            history.iteration.append(done)
            history.loss.append(float(history.step_losses[since:done].mean()))
            val = math.nan
            if val_ids is not None:
                val = float(evaluate(state.params, val_ids, state.model_state))
                values["val_loss"] = val
            history.val_loss.append(val)
            history.train_seconds.append(seconds)
            since = done
        if progress is not None:
            progress(done, values)
    return state, history
