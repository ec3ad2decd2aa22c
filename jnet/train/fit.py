"""`fit`: trains a network on arrays, host batches or device-sampled batches.

The parts, in the order data flows through them: `config.configure` checks the arguments
into one `FitConfig`; `prepare.prepare` checks the data against the network and builds the
state and the data source; a resume (`_resume`) restores the newest good checkpoint;
`prepare.build_engine` compiles the loop; `loop.train` runs the compiled calls, each
followed by `loop.after_call` (history, log, bar, checkpoint, callbacks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import optax

from jnet.checkpoint import Checkpointer
from jnet.layers import Layer, Params
from jnet.losses import Loss
from jnet.train.config import configure
from jnet.train.epochs import Augment
from jnet.train.history import MetricsLog, new_history
from jnet.train.history import progress as progress_bar
from jnet.train.identity import RunSettings, describe_change, differences
from jnet.train.loop import Outputs, announce_resume, train
from jnet.train.prepare import build_engine, prepare
from jnet.train.result import FitResult
from jnet.train.step import DecayMask, Metrics


def fit(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation | float,
    x: Any = None,
    y: Any = None,
    *,
    epochs: int,
    key: jax.Array,
    data: Any = None,
    steps_per_epoch: int | None = None,
    steps_per_call: int | None = None,
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
    metrics: Metrics | None = None,
    callbacks: Iterable[Callable] = (),
) -> FitResult:
    """Trains `net` on `(x, y)` or `data` and returns `FitResult(params, model_state, history)`.

    Args:
      optimizer: an optax transformation, or a number: plain SGD at that rate.
      x: inputs `(N, ...)`, floating point. y: targets `(N, ...)` (integer labels,
        one-hot, or 0/1 for binary cross entropy). Kept on the device.
      data: instead of x/y: any Python iterable of `(x_batch, y_batch)` numpy/JAX pairs
        (a generator, `tfds...as_numpy_iterator()`, a DataLoader yielding numpy), read as
        one stream with `steps_per_epoch` batches an epoch; or `jnet.train.sampled(fn,
        steps_per_epoch=...)`, batches drawn on the device by a pure `fn(key) -> (x, y)`.
        Host batches: `steps_per_call` of them are stacked into one compiled call (one
        `lax.scan`), and the next call's stack is sent to the device while the current
        one runs. A batch smaller than the first (a last partial batch) is dropped; any
        other shape or dtype change is a ValueError. The first batch is checked like x/y
        (shapes, dtype, finite, label range); later ones by shape and dtype. An iterator
        that runs out is started again when the iterable allows it (a list, a
        DataLoader), else it is a ValueError. Resuming, `fit` reads and skips the
        batches the checkpointed run consumed (recorded in the checkpoint), so give it the
        same stream from its start (a seeded generator).
      steps_per_epoch: batches an epoch, for `data=` an iterable.
      steps_per_call: host batches per compiled call (default up to 128, evened out over
        the epoch: ceil(steps_per_epoch / calls)).
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
      log_dir: append one JSON object an epoch (epoch, loss, accuracy, metrics,
        validation figures, seconds) to `<log_dir>/metrics.jsonl`, after every call.
      mesh: a `jax.sharding.Mesh` with a "data" axis: shard every batch along it (x/y).
      metrics: `{"name": fn(outputs, targets) -> per-example values (N,)}`, pure jnp,
        computed inside the compiled epoch (the mean over the epoch's batches, outputs in
        training mode as the loss sees them) and on the validation set (`val_name`); in
        the history, the progress bar and metrics.jsonl. `jnet.evaluate` takes the same.
      callbacks: functions `callback(event) -> stop?` called after every compiled call
        with a `jnet.train.Event(epoch, epochs, epoch_end, history, state)`; a true
        result stops the run (checkpointed, when at an epoch's end). A callback's
        `finish(state) -> state`, if it has one, may replace the state returned
        (`jnet.train.early_stopping(..., restore_best=True)`); see also
        `jnet.train.best_checkpoint`.
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

    config = configure(
        net, loss, optimizer, epochs=epochs, key=key, batch_size=batch_size,
        steps_per_epoch=steps_per_epoch, steps_per_call=steps_per_call, params=params,
        validation=validation, l2=l2, l2_mask=l2_mask, augment=augment,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
        epochs_per_call=epochs_per_call, allow_changes=allow_changes, log_dir=log_dir,
        progress=progress, eval_batch_size=eval_batch_size, mesh=mesh, metrics=metrics,
        callbacks=callbacks,
    )  # fmt: skip
    prep = prepare(config, x, y, data)
    history = new_history(prep.validation is not None, tuple(config.metrics))
    state, done = prep.state, 0
    checkpointer = Checkpointer(checkpoint_dir) if checkpoint_dir is not None else None
    out = Outputs(checkpointer, MetricsLog(log_dir) if log_dir is not None else None, None)
    try:
        if checkpointer is not None:
            state, history, done = _resume(prep, checkpointer, state, history)
        prep = build_engine(prep, done)
        out = out._replace(bar=progress_bar(progress, epochs, done))
        state, history = train(prep, out, state, history, done)
    finally:
        if out.bar is not None:
            out.bar.close()
        if checkpointer is not None:
            checkpointer.close()
    for callback in config.callbacks:
        finish = getattr(callback, "finish", None)
        state = finish(state) if finish is not None else state
    return FitResult(state.params, state.model_state if net.stateful else (), history)


def _resume(prep, checkpointer, state, history):
    """The newest good checkpoint's state, history and epoch; the host stream skipped on."""
    restored = checkpointer.restore_latest(state)
    if restored is None:
        return state, history, 0
    done, state, meta = restored
    _check_resume(checkpointer.directory, done, prep.config, meta["run"], prep.settings)
    skipped = None
    if prep.feed is not None:
        skipped = int(meta.get("batches", 0))
        prep.feed.skip(skipped)
    announce_resume(checkpointer, done, prep.config.epochs, skipped)
    return state, {k: list(v) for k, v in meta["history"].items()}, done


def _check_resume(checkpoint_dir, done: int, config, saved: dict, run: RunSettings):
    if done > config.epochs:
        raise ValueError(
            f"fit: {checkpoint_dir} holds a checkpoint at epoch {done}, past the "
            f"{config.epochs} epochs asked for; `epochs` is the run's total"
        )
    differ = {k: v for k, v in differences(saved, run).items() if k not in config.allowed}
    if differ:
        said = "; ".join(describe_change(k, *v) for k, v in differ.items())
        raise ValueError(
            f"fit: the checkpoint in {checkpoint_dir} is from another run: {said}. Resume "
            f"with the same settings, pass allow_changes={set(differ)} to continue with the "
            "new ones, or use another checkpoint_dir"
        )
