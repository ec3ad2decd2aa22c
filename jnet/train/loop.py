"""The loop over compiled calls, and what happens after each one.

Data flows one way: `calls` plans the compiled calls (and, for host batches, stacks and
sends each call's batches to the device while the previous call runs); `train` runs them;
`after_call` records what a call did, logs it, checkpoints it and asks the callbacks
whether to stop.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jnet.checkpoint import Checkpointer, CheckpointError, SaveError
from jnet.evaluation import evaluate_arrays
from jnet.train.callbacks import Event
from jnet.train.divergence import diverged, learning_rate
from jnet.train.epochs import NO_STOP
from jnet.train.history import EpochSums, MetricsLog, postfix, record
from jnet.train.prepare import Prepared
from jnet.train.sources import Arrays, HostBatches
from jnet.train.state import TrainState


class Call(NamedTuple):
    """One compiled call: its data, the batches it applies (host; None: all its epochs'),
    the epochs it completes, and the host batches consumed once it is applied."""

    x: Any
    y: Any
    steps: int | None
    epochs: int
    consumed: int = 0


def calls(prep: Prepared, done: int) -> Iterator[Call]:
    """The run's compiled calls from epoch `done` on; lazy, so host batches are read and
    sent to the device only when the loop asks for the next call."""
    config, source = prep.config, prep.source
    if isinstance(source, HostBatches):
        for _ in range(done, config.epochs):
            left = source.steps_per_epoch
            while left:
                real = min(prep.per_call, left)
                left -= real
                xs, ys = prep.feed.next_stack(prep.per_call, real)
                yield Call(xs, ys, real, int(left == 0), prep.feed.consumed)
        return
    x, y = (source.x, source.y) if isinstance(source, Arrays) else (None, None)
    for _ in range(done, config.epochs, prep.per_call):
        yield Call(x, y, None, prep.per_call)


class Outputs(NamedTuple):
    """Where a run's record goes: checkpoints, the JSONL log, the progress bar."""

    checkpointer: Checkpointer | None
    log: MetricsLog | None
    bar: Any


def train(prep: Prepared, out: Outputs, state: TrainState, history: dict, done: int):
    """Runs the compiled calls from epoch `done` to the end, or until a callback stops it.

    Returns `(state, history)`. Raises DivergenceError (see `diverged`) or SaveError.
    """
    host = isinstance(prep.source, HostBatches)
    validation = None if host else prep.validation
    step = int(state.step)
    pending = EpochSums()
    starts: list[tuple[TrainState, Call]] = []  # the last two calls, for the divergence replay
    plan = calls(prep, done)
    call = next(plan, None)
    while call is not None:
        starts = starts[-1:] + [(state, call)]
        began = time.perf_counter()
        stop = NO_STOP if call.steps is None else step + call.steps
        new_state, bad, metrics = prep.engine.run(state, call.x, call.y, validation, stop)
        upcoming = next(plan, None)  # its batches go to the device while this call runs
        metrics, bad = jax.device_get((metrics, bad))
        seconds = time.perf_counter() - began
        if bad[0] >= 0:
            _diverged(prep, starts, validation, bad, metrics, done, history, seconds,
                      new_state)  # fmt: skip
        state = new_state
        step += call.steps or 0
        if host:  # an epoch's figures are complete at its last call
            pending.add(metrics, seconds)
            if call.epochs:
                metrics = pending.take() | _host_validation(prep, state)
                seconds, pending.seconds = pending.seconds, 0.0
        done, stop_now = after_call(prep, out, call, state, history, metrics, done, seconds)
        call = None if stop_now else upcoming
    return state, history


def _diverged(prep, starts, validation, bad, metrics, done, history, seconds, new_state):
    config, engine = prep.config, prep.engine

    def replay(i: int, stop: int) -> TrainState:
        start, call = starts[i]
        return engine.run(start, call.x, call.y, validation, jnp.asarray(stop, jnp.int32))[0]

    start, call = starts[-1]
    call_end = int(start.step) + (call.steps or call.epochs * engine.steps_per_epoch)
    per_epoch = getattr(prep.source, "steps_per_epoch", engine.steps_per_epoch)
    lr = learning_rate(config.lr_label, new_state.opt_state)
    diverged(replay, [s for s, _ in starts], call_end, per_epoch, bad, metrics, done, history,
             lr, seconds / max(call.epochs, 1))  # fmt: skip


@functools.lru_cache(maxsize=16)
def _validator(net, loss, batch_size, metrics):
    return jax.jit(functools.partial(evaluate_arrays, net, loss, batch_size=batch_size,
                                     metrics=dict(metrics)))  # fmt: skip


def _host_validation(prep: Prepared, state: TrainState) -> dict:
    """Host batches: the validation figures at an epoch's end, one compiled evaluation."""
    if prep.validation is None:
        return {}
    c = prep.config
    size = min(c.eval_batch_size, int(prep.validation[0].shape[0]))
    run = _validator(c.net, c.loss, size, tuple(c.metrics.items()))
    values = jax.device_get(run(state.params, *prep.validation, state=state.model_state))
    return {f"val_{k}": [float(v)] for k, v in values.items()}


def after_call(prep, out: Outputs, call: Call, state, history, metrics, done, seconds):
    """Records the epochs a call completed, logs, checkpoints, runs the callbacks.

    Returns `(done, stop)`: the epochs now done, and whether a callback asked to stop."""
    config = prep.config
    if call.epochs:  # a host call mid-epoch completes none
        record(history, metrics, done, call.epochs, seconds / call.epochs)
        if out.log is not None:
            out.log.append(history, len(history["epoch"]) - call.epochs)
        done += call.epochs
        if out.bar is not None:
            out.bar.update(call.epochs)
            out.bar.set_postfix(postfix(history))
    event = Event(done, config.epochs, bool(call.epochs), history, state)
    stop = any([bool(callback(event)) for callback in config.callbacks])  # each one sees it
    every = config.checkpoint_every
    due = done == config.epochs or (every and done % every == 0) or stop
    if out.checkpointer and call.epochs and due:
        save(out.checkpointer, done, state, history, prep.settings, call.consumed)
    return done, stop


def save(checkpointer, done: int, state, history: dict, settings, consumed: int) -> None:
    """Saves, or raises a SaveError that still carries the trained state."""
    meta = {"epoch": done, "history": history, "run": settings._asdict(), "batches": consumed}
    try:
        checkpointer.save(done, state, meta)
    except (CheckpointError, OSError) as e:
        said = e if isinstance(e, CheckpointError) else f"saving epoch {done} failed: {e}"
        raise SaveError(
            f"fit: {said}; the trained state is not lost: it is in this error's .state / "
            ".params, the history in .history",
            state,
            history,
        ) from None


def announce_resume(checkpointer, done: int, epochs: int, skipped: int | None) -> None:
    said = "" if skipped is None else f"; skipping the {skipped} batches it had consumed"
    print(
        f"fit: resuming from checkpoint {checkpointer.directory / str(done)} "
        f"(epoch {done} of {epochs}{said})",
        file=sys.stderr,
    )
