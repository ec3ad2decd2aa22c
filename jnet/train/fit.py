"""`fit`: trains a network on arrays, in compiled multi-epoch calls, with checkpoints."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnet import arguments, parallel
from jnet.checkpoint import Checkpointer, CheckpointError, SaveError
from jnet.evaluation import validate_data
from jnet.layers import Layer, Params
from jnet.losses import Loss
from jnet.train.divergence import diverged, learning_rate
from jnet.train.epochs import (
    FULL_BATCH_EPOCHS_PER_CALL,
    NO_STOP,
    Augment,
    make_epochs,
)
from jnet.train.epochs import (
    epochs_per_call as choose_epochs_per_call,
)
from jnet.train.history import MetricsLog, new_history, postfix, record
from jnet.train.history import progress as progress_bar
from jnet.train.identity import (
    RunSettings,
    check_allowed,
    describe_change,
    describe_optimizer,
    differences,
    learning_rates,
)
from jnet.train.result import FitResult
from jnet.train.state import init_state
from jnet.train.step import DecayMask


def fit(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation | float,
    x: Any,
    y: Any,
    *,
    epochs: int,
    key: jax.Array,
    batch_size: int | None = None,
    params: Params | None = None,
    validation: tuple[Any, Any] | None = None,
    l2: float = 0.0,
    l2_mask: DecayMask | None = None,
    augment: Augment | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: int | None = None,
    epochs_per_call: int | None = None,
    allow_changes: Iterable[str] = (),
    log_dir: str | None = None,
    progress: bool = True,
    eval_batch_size: int = 10_000,
    mesh: Any = None,
) -> FitResult:
    """Trains `net` on `(x, y)` and returns `FitResult(params, model_state, history)`.

    Args:
      optimizer: an optax transformation, or a number: plain SGD at that rate.
      x: inputs `(N, ...)`, floating point. y: targets `(N, ...)` (integer labels,
        one-hot, or 0/1 for binary cross entropy).
      epochs: the total; a run resumed from `checkpoint_dir` continues up to it.
      key: drives init (when `params` is None), permutations, dropout and augmentation.
      batch_size: minibatch size (last partial batch dropped); None: full batch.
      validation: `(x_val, y_val)`, evaluated on the device after every epoch.
      l2: weight decay, `l2 * 0.5 * sum(w ** 2)` added to the loss and its gradient,
        over the leaves `l2_mask` chooses (default: every leaf with 2 or more axes, i.e.
        kernels, not biases or normalization scales/offsets; see `jnet.train.step`).
      augment: `(key, x_batch) -> x_batch`, applied to every training batch inside the
        compiled epoch (e.g. `jnet.augment.random_shift(2)`).
      checkpoint_dir: save the whole state there every `checkpoint_every` epochs and
        at the end, and resume from the newest good checkpoint in it.
      epochs_per_call: at most this many epochs per compiled call (metrics come back
        once per call); default 1 for minibatches, 100 for full batch. The count used
        is `jnet.train.epochs_per_call(...)`: it divides every call of the run, so the run
        compiles once.
      allow_changes: settings a resume may change, e.g. `{"optimizer"}` to continue a
        checkpointed run with a new learning rate. By default a resume whose network,
        loss, optimizer (its readable hyper-parameters), batch size, data size, l2,
        validation or augmentation differ from the checkpoint's is refused, naming what
        changed. The checkpoint folder is locked while `fit` runs.
      log_dir: append one JSON object an epoch (epoch, loss, accuracy, validation
        figures, seconds) to `<log_dir>/metrics.jsonl`, after every call.
      mesh: a `jax.sharding.Mesh` with a "data" axis: shard every batch along it.
    Returns:
      `FitResult(params, model_state, history)` for every network (`model_state` is `()`
      for a stateless one). `history` is a dict of per-epoch lists: epoch, loss,
      accuracy, val_loss, val_accuracy (with validation) and seconds. The old two-way
      unpacking `params, history = fit(...)` raises ValueError (too many values to unpack).
    Raises:
      ValueError for bad data or arguments, TypeError for arguments of the wrong kind
      (naming which), DivergenceError (with the last finite state) when the loss
      turns NaN or inf.
    """
    arguments.network_and_loss("fit", net, loss)
    optimizer, lr_label = arguments.optimizer("fit", optimizer)
    arguments.prng_key("fit", key)
    arguments.positive_int("fit", "epochs", epochs)
    arguments.positive_int("fit", "eval_batch_size", eval_batch_size)
    for name, value in [
        ("batch_size", batch_size),
        ("checkpoint_every", checkpoint_every),
        ("epochs_per_call", epochs_per_call),
    ]:
        arguments.positive_int("fit", name, value, optional=True)
    if validation is not None:
        arguments.pair("fit", "validation", validation)
    l2 = arguments.non_negative("fit", "l2 (the weight-decay factor)", l2)
    allowed = check_allowed(allow_changes)
    init_key, run_key = jax.random.split(key)
    x_shape = np.shape(x)
    state = init_state(net, optimizer, init_key, (1,) + tuple(x_shape[1:]), params)
    arguments.float_params("fit", state.params)
    x, y = validate_data(net, loss, state.params, x, y, "fit", state=state.model_state)
    if validation is not None:
        validation = validate_data(
            net, loss, state.params, *validation, "fit(validation)", state=state.model_state
        )
    state = state._replace(key=run_key)
    hyper = describe_optimizer(optimizer, state.opt_state)
    bad_rates = [r for r in learning_rates(hyper) if not math.isfinite(r) or r < 0]
    if bad_rates:
        raise ValueError(
            f"fit: the optimizer's learning rate is {bad_rates[0]:g}; it must be finite and "
            ">= 0 (a negative rate climbs the loss)"
        )

    x, y, validation, state, batch_sharding = parallel.place(
        mesh, x, y, validation, state, batch_size
    )
    history = new_history(validation is not None)
    done = 0
    settings = RunSettings(
        net.name, loss.name, hyper, batch_size, int(x.shape[0]), float(l2),
        validation is not None, getattr(augment, "__qualname__", None if augment is None else "?"),
    )  # fmt: skip
    checkpointer = None
    if checkpoint_dir is not None:
        checkpointer = Checkpointer(checkpoint_dir)
    log = MetricsLog(log_dir) if log_dir is not None else None
    bar = None
    try:
        if checkpointer is not None:
            restored = checkpointer.restore_latest(state)
            if restored is not None:
                done, state, meta = restored
                _check_resume(checkpoint_dir, done, epochs, meta["run"], settings, allowed)
                history = {k: list(v) for k, v in meta["history"].items()}
                print(
                    f"fit: resuming from checkpoint {checkpointer.directory / str(done)} "
                    f"(epoch {done} of {epochs})",
                    file=sys.stderr,
                )

        limit = epochs_per_call or (FULL_BATCH_EPOCHS_PER_CALL if batch_size is None else 1)
        per_call = choose_epochs_per_call(max(epochs - done, 1), limit, checkpoint_every, done)
        engine = make_epochs(
            net,
            loss,
            optimizer,
            num_examples=x.shape[0],
            batch_size=batch_size,
            epochs=per_call,
            l2=l2,
            l2_mask=l2_mask,
            augment=augment,
            eval_batch_size=eval_batch_size,
            sharding=batch_sharding,
        )
        no_stop = jnp.asarray(NO_STOP, jnp.int32)
        bar = progress_bar(progress, epochs, done)
        starts: list = []  # the states the last two calls began with, for the divergence replay
        while done < epochs:
            starts = starts[-1:] + [state]
            start = time.perf_counter()
            new_state, bad, metrics = engine.run(state, x, y, validation, no_stop)
            metrics, bad = jax.device_get((metrics, bad))
            seconds = (time.perf_counter() - start) / per_call
            if bad[0] >= 0:
                lr = learning_rate(lr_label, new_state.opt_state)
                diverged(engine, starts, (x, y, validation), bad, metrics, done, history, lr,
                         seconds)  # fmt: skip
            state = new_state
            record(history, metrics, done, per_call, seconds)
            if log is not None:
                log.append(history, len(history["epoch"]) - per_call)
            done += per_call
            if bar is not None:
                bar.update(per_call)
                bar.set_postfix(postfix(history))
            save_now = done == epochs or (checkpoint_every and done % checkpoint_every == 0)
            if checkpointer and save_now:
                _save(checkpointer, done, state, history, settings)
    finally:
        if bar is not None:
            bar.close()
        if checkpointer is not None:
            checkpointer.close()
    return FitResult(state.params, state.model_state if net.stateful else (), history)


def _save(checkpointer, done: int, state, history: dict, settings: RunSettings) -> None:
    """Saves, or raises a SaveError that still carries the trained state."""
    meta = {"epoch": done, "history": history, "run": settings._asdict()}
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


def _check_resume(
    checkpoint_dir, done: int, epochs: int, saved: dict, run: RunSettings, allowed: frozenset
):
    if done > epochs:
        raise ValueError(
            f"fit: {checkpoint_dir} holds a checkpoint at epoch {done}, past the "
            f"{epochs} epochs asked for; `epochs` is the run's total"
        )
    differ = {k: v for k, v in differences(saved, run).items() if k not in allowed}
    if differ:
        said = "; ".join(describe_change(k, *v) for k, v in differ.items())
        raise ValueError(
            f"fit: the checkpoint in {checkpoint_dir} is from another run: {said}. Resume "
            f"with the same settings, pass allow_changes={set(differ)} to continue with the "
            "new ones, or use another checkpoint_dir"
        )
