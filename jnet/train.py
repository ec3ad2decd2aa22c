"""Training: a jit-compiled step, whole epochs on the device, and `fit`.

The step uses jnet's hand-written gradient (`network.loss_and_grads`) and any optax
`GradientTransformation`. An epoch is one `lax.scan` over minibatches gathered on the
device from a permutation drawn from the epoch's key; several epochs run in one
compiled `scan`, and `fit` picks one epoch count for all of a run's calls, so a run
compiles once. Metrics come back to the host once per call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnet import arguments
from jnet.evaluation import accuracy, evaluate_arrays, validate_data
from jnet.layers import Layer, Params
from jnet.losses import Loss
from jnet.network import loss_and_grads


class TrainState(NamedTuple):
    """Everything training changes, as one pytree (and one checkpoint).

    Attributes:
      params: the network's parameters.
      opt_state: the optax optimizer state.
      step: int32 scalar, optimizer updates applied so far.
      key: PRNG key, split once per epoch for the permutation and dropout.
    """

    params: Params
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array


class DivergenceError(FloatingPointError):
    """The loss turned NaN or inf. `.state`/`.params` hold the last finite state."""

    def __init__(self, message: str, state: TrainState, history: dict):
        super().__init__(message)
        self.state, self.params, self.history = state, state.params, history


def init_state(
    net: Layer,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    input_shape: Sequence[int],
    params: Params | None = None,
) -> TrainState:
    """A fresh state for inputs of `input_shape` (e.g. `(1, 784)`, batch axis first).

    `params=None` draws them with `net.init` from one half of `key`; the other half
    becomes the state's key.
    """
    arguments.prng_key("init_state", key)
    init_key, train_key = jax.random.split(key)
    if params is None:
        _, params = net.init(init_key, tuple(input_shape))
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), train_key)


def _is_weight(path) -> bool:
    last = path[-1] if path else None
    return getattr(last, "key", None) == "w"


def l2_penalty(params: Params) -> jax.Array:
    """`0.5 * sum(w ** 2)` over the weight matrices (leaves named "w"); biases are not decayed."""
    leaves = [
        jnp.sum(leaf * leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
        if _is_weight(path)
    ]
    return 0.5 * sum(leaves) if leaves else jnp.zeros(())


def _add_l2_grad(grads, params, l2):
    return jax.tree_util.tree_map_with_path(
        lambda path, g, p: g + l2 * p if _is_weight(path) else g, grads, params
    )


def make_step(
    net: Layer, loss: Loss, optimizer: optax.GradientTransformation, *, l2: float = 0.0
) -> Callable[..., tuple[TrainState, dict]]:
    """Returns the pure step `(state, (x, y), key) -> (state, {"loss", "accuracy"})`.

    `key` feeds dropout (None: no dropout). With `l2 > 0` the loss gains
    `l2 * l2_penalty(params)` and the hand-written gradient gains `l2 * w`.
    Metrics are those of the batch before the update. Wrap in `jax.jit` (or use
    `train_step`), or call inside a larger compiled loop.
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
        value, outputs, grads, _, _ = grads_fn(state.params, x, y, key=key)
        if l2:
            value = value + l2 * l2_penalty(state.params)
            grads = _add_l2_grad(grads, state.params, l2)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": value, "accuracy": accuracy(loss, outputs, y)}
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return step


def train_step(
    net: Layer, loss: Loss, optimizer: optax.GradientTransformation, *, l2: float = 0.0
) -> Callable[..., tuple[TrainState, dict]]:
    """`make_step`, jit-compiled, donating the old state's buffers."""
    return jax.jit(make_step(net, loss, optimizer, l2=l2), donate_argnums=0)


def per_layer(
    default: optax.GradientTransformation, overrides: dict[int, optax.GradientTransformation]
) -> optax.GradientTransformation:
    """Per-layer optimizers for a `serial` network: layer index -> transformation.

    Example (tutorial 004): `per_layer(optax.sgd(0.05), {4: optax.sgd(0.1)})` for
    `serial(dense(100), relu(), dense(200), relu(), dense(10))`. Negative indices count
    from the end, so `{-1: optax.sgd(0.1)}` is the same.
    """
    transforms = {"default": default} | {f"layer{i}": t for i, t in overrides.items()}

    def labels(params):
        if not isinstance(params, tuple):
            raise ValueError(
                "per_layer: needs the params of a serial network (a tuple, one entry per "
                f"layer); got {type(params).__name__}"
            )
        n = len(params)
        outside = [i for i in overrides if not -n <= i < n]
        if outside:
            raise ValueError(
                f"per_layer: layer index {outside[0]} is outside the network's {n} layers "
                f"(valid: {-n} to {n - 1})"
            )
        chosen = {i % n: f"layer{i}" for i in overrides}
        return tuple(
            jax.tree.map(lambda _, i=i: chosen.get(i, "default"), p) for i, p in enumerate(params)
        )

    return optax.multi_transform(transforms, labels)


NO_STOP = np.iinfo(np.int32).max  # `make_epochs(...).run`'s stop_step when nothing should stop
FULL_BATCH_EPOCHS_PER_CALL = 100  # fit's default: full-batch epochs are single steps


class _Epochs(NamedTuple):
    run: Callable  # jitted (state, x, y, validation, stop_step) -> (state, bad_step, metrics)
    steps_per_epoch: int
    epochs: int  # epochs per call


def make_epochs(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    *,
    num_examples: int,
    batch_size: int | None,
    epochs: int,
    l2: float = 0.0,
    eval_batch_size: int = 10_000,
    sharding: Any = None,
) -> _Epochs:
    """Compiles `epochs` epochs as one on-device loop.

    `run(state, x, y, validation, stop_step)` runs the epochs and returns
    `(state, bad_step, metrics)`. x is `(num_examples, ...)` and y its targets, on the
    device; validation is `(x_val, y_val)` or None; stop_step an int32 scalar
    (`NO_STOP` for a plain run); bad_step an int32 scalar. `metrics` maps "loss",
    "accuracy" (and "val_loss", "val_accuracy" with validation) to float32 arrays of
    shape `(epochs,)`. The epoch count is static (a `scan`): a traced trip count would
    make a GPU read the loop predicate back to the host every epoch. Minibatches: a
    fresh permutation per epoch; the last partial batch is dropped
    (`num_examples // batch_size` steps).
    `batch_size=None` is full-batch gradient descent, one step per epoch. Divergence
    guard: once a step's loss is NaN or inf, no later update is applied and
    `bad_step` is that step's global index (-1 if none); no update is applied at or
    past `stop_step` either, which is how `fit` replays up to the last finite state.
    """
    step = make_step(net, loss, optimizer, l2=l2)
    full_batch = batch_size is None
    steps = 1 if full_batch else num_examples // batch_size
    if steps < 1:
        raise ValueError(f"batch_size {batch_size} exceeds the {num_examples} training examples")
    if epochs < 1:
        raise ValueError(f"epochs per call must be at least 1; got {epochs}")

    def guarded(carry, batch, key):
        state, bad_step, stop_step, sums = carry
        new, m = step(state, batch, key)
        active = (state.step < stop_step) & (bad_step < 0)
        finite = jnp.isfinite(m["loss"])
        bad_step = jnp.where(active & ~finite, state.step, bad_step)
        keep = active & finite
        # A select, fused into the update: a diverged or stopped run stands still.
        state = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, state)
        # Running sums (loss, accuracy, steps kept) in the carry: no per-step outputs.
        kept = jnp.stack([m["loss"], m["accuracy"], 1.0]).astype(sums.dtype)
        sums = sums + jnp.where(keep, kept, 0)
        return state, bad_step, stop_step, sums

    def epoch(carry, x, y):
        state, bad_step, stop_step = carry
        next_key, perm_key, drop_key = jax.random.split(state.key, 3)
        state = state._replace(key=next_key)
        sums = jnp.zeros(3, jnp.float32)
        carry = (state, bad_step, stop_step, sums)
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
        state, bad_step, stop_step, (loss_sum, acc_sum, n) = carry
        mean = lambda v: jnp.where(n > 0, v / jnp.maximum(n, 1), jnp.nan)  # NaN: none applied
        return (state, bad_step, stop_step), {"loss": mean(loss_sum), "accuracy": mean(acc_sum)}

    def run(state, x, y, validation, stop_step):
        def body(carry, _):
            carry, values = epoch(carry, x, y)
            if validation is not None:
                v = evaluate_arrays(net, loss, carry[0].params, *validation, eval_batch_size)
                values |= {"val_loss": v["loss"], "val_accuracy": v["accuracy"]}
            return carry, {k: v.astype(jnp.float32) for k, v in values.items()}

        bad_step = jnp.full((), -1, jnp.int32)
        carry = (state, bad_step, jnp.asarray(stop_step, jnp.int32))
        (state, bad_step, _), metrics = jax.lax.scan(body, carry, None, length=epochs)
        # Each step's loss is taken before its update, so an overflow in the call's last update
        # would go unseen: non-finite parameters count as divergence at the step they reach.
        leaves = jax.tree.leaves(state.params)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in leaves]))
        bad_step = jnp.where((bad_step < 0) & ~finite, state.step, bad_step)
        return state, bad_step, metrics

    return _Epochs(jax.jit(run), steps, epochs)


def _epochs_per_call(todo: int, limit: int, checkpoint_every: int | None, done: int) -> int:
    """The largest count <= limit that divides every call of the run: one compile.

    Calls must end at the last epoch and at every multiple of `checkpoint_every`, so
    the count divides the epochs left, and `checkpoint_every` and `done` when given.
    """
    span = math.gcd(todo, done, checkpoint_every) if checkpoint_every else todo
    return next(d for d in range(min(limit, span), 0, -1) if span % d == 0)


def _learning_rate(optimizer, opt_state) -> str:
    if isinstance(optimizer, float | int):
        return f"learning rate {optimizer:g}"
    try:
        lr = optax.tree_utils.tree_get(opt_state, "learning_rate")
        return f"learning rate {float(lr):g}"
    except Exception:  # not an inject_hyperparams optimizer: the rate is not in the state
        return "learning rate unknown (wrap the optimizer in optax.inject_hyperparams to show it)"


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
    checkpoint_dir: str | None = None,
    checkpoint_every: int | None = None,
    epochs_per_call: int | None = None,
    progress: bool = True,
    eval_batch_size: int = 10_000,
    mesh: Any = None,
) -> tuple[Params, dict[str, list]]:
    """Trains `net` on `(x, y)` and returns `(params, history)`.

    Args:
      optimizer: an optax transformation, or a number: plain SGD at that rate.
      x: inputs `(N, ...)`, floating point. y: targets `(N, ...)` (integer labels,
        one-hot, or 0/1 for binary cross entropy).
      epochs: the total; a run resumed from `checkpoint_dir` continues up to it.
      key: drives init (when `params` is None), permutations and dropout.
      batch_size: minibatch size (last partial batch dropped); None: full batch.
      validation: `(x_val, y_val)`, evaluated on the device after every epoch.
      l2: weight decay, `l2 * 0.5 * sum(w ** 2)` added to the loss and its gradient.
      checkpoint_dir: save the whole state there every `checkpoint_every` epochs and
        at the end, and resume from the newest good checkpoint in it.
      epochs_per_call: at most this many epochs per compiled call (metrics come back
        once per call); default 1 for minibatches, 100 for full batch. The count used
        divides every call of the run (and `checkpoint_every`), so the run compiles once;
        an epoch count with no divisor near the limit (a prime, say) gets short calls, each
        a round trip to the host: prefer counts like 500 or 2500 for long full-batch runs.
      mesh: a `jax.sharding.Mesh` with a "data" axis: shard every batch along it.
    Returns:
      `params` and `history`, a dict of per-epoch lists: epoch, loss, accuracy,
      val_loss, val_accuracy (with validation) and seconds.
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
    init_key, run_key = jax.random.split(key)
    x_shape = np.shape(x)
    state = init_state(net, optimizer, init_key, (1,) + tuple(x_shape[1:]), params)
    arguments.float_params("fit", state.params)
    x, y = validate_data(net, loss, state.params, x, y, "fit")
    if validation is not None:
        validation = validate_data(net, loss, state.params, *validation, "fit(validation)")
    state = state._replace(key=run_key)

    from jnet import parallel  # mesh placement lives with the sharding code

    x, y, validation, state, batch_sharding = parallel.place(
        mesh, x, y, validation, state, batch_size
    )
    history: dict[str, list] = {"epoch": [], "loss": [], "accuracy": [], "seconds": []}
    if validation is not None:
        history |= {"val_loss": [], "val_accuracy": []}
    done = 0
    # What a checkpoint must share with this call to be its continuation.
    run = {
        "batch_size": batch_size,
        "num_examples": int(x.shape[0]),
        "l2": float(l2),
        "validation": validation is not None,
    }
    checkpointer = None
    if checkpoint_dir is not None:
        from jnet.checkpoint import Checkpointer

        checkpointer = Checkpointer(checkpoint_dir)
    bar = None
    try:
        if checkpointer is not None:
            restored = checkpointer.restore_latest(state)
            if restored is not None:
                done, state, meta = restored
                _check_resume(checkpoint_dir, done, epochs, meta.get("run"), run)
                history = {k: list(v) for k, v in meta["history"].items()}

        limit = epochs_per_call or (FULL_BATCH_EPOCHS_PER_CALL if batch_size is None else 1)
        per_call = _epochs_per_call(max(epochs - done, 1), limit, checkpoint_every, done)
        engine = make_epochs(
            net,
            loss,
            optimizer,
            num_examples=x.shape[0],
            batch_size=batch_size,
            epochs=per_call,
            l2=l2,
            eval_batch_size=eval_batch_size,
            sharding=batch_sharding,
        )
        no_stop = jnp.asarray(NO_STOP, jnp.int32)
        bar = _progress(progress, epochs, done)
        starts: list = []  # the states the last two calls began with, for the divergence replay
        while done < epochs:
            starts = starts[-1:] + [state]
            start = time.perf_counter()
            new_state, bad_step, metrics = engine.run(state, x, y, validation, no_stop)
            metrics, bad_step = jax.device_get((metrics, bad_step))
            seconds = (time.perf_counter() - start) / per_call
            if bad_step >= 0:
                _diverged(
                    engine,
                    starts,
                    x,
                    y,
                    validation,
                    int(bad_step),
                    metrics,
                    done,
                    history,
                    lr_label,
                    new_state.opt_state,
                    seconds,
                )
            state = new_state
            _record(history, metrics, done, per_call, seconds)
            done += per_call
            if bar is not None:
                bar.update(per_call)
                bar.set_postfix(_postfix(history))
            save_now = done == epochs or (checkpoint_every and done % checkpoint_every == 0)
            if checkpointer and save_now:
                checkpointer.save(done, state, {"epoch": done, "history": history, "run": run})
    finally:
        if bar is not None:
            bar.close()
        if checkpointer is not None:
            checkpointer.close()
    return state.params, history


def _check_resume(checkpoint_dir, done: int, epochs: int, saved: dict | None, run: dict):
    if done > epochs:
        raise ValueError(
            f"fit: {checkpoint_dir} holds a checkpoint at epoch {done}, past the "
            f"{epochs} epochs asked for; `epochs` is the run's total"
        )
    saved = saved or {}  # checkpoints from before this record hold none
    differ = [k for k in run if k in saved and saved[k] != run[k]]
    if differ:
        said = ", ".join(f"{k}={saved[k]!r} there, {run[k]!r} here" for k in differ)
        raise ValueError(
            f"fit: the checkpoint in {checkpoint_dir} is from another run ({said}); "
            "resume with the same settings, or use another checkpoint_dir"
        )


def _diverged(
    engine, starts, x, y, validation, bad_step, metrics, done, history, lr, opt_state, seconds
):
    """Replays up to the last finite state and raises DivergenceError with it.

    `starts` holds the states the last two calls began with, newest last: when the
    newest call began on the bad state itself, the previous call is replayed.
    """
    steps = engine.steps_per_epoch
    # A bad step inside the call is a non-finite loss; one at the call's end means every
    # loss was finite but the call's last update left non-finite parameters.
    in_update = bad_step == (done + engine.epochs) * steps
    seen = bad_step - 1 if in_update else bad_step
    epoch = seen // steps + 1  # 1-based epoch of the whole run
    start = starts[-1]
    if bad_step - 1 < int(start.step) and len(starts) > 1:
        start = starts[-2]
    stop = jnp.asarray(max(bad_step - 1, int(start.step)), jnp.int32)
    last_good, _, _ = engine.run(start, x, y, validation, stop)
    _record(history, metrics, done, epoch - 1 - done, seconds)  # the epochs before the bad one
    what = "the update of" if in_update else "the loss at"
    raise DivergenceError(
        f"{what} epoch {epoch}, step {seen % steps + 1} of {steps} (global step {seen}) "
        f"{'made the parameters' if in_update else 'became'} NaN or inf with "
        f"{_learning_rate(lr, opt_state)}; the last finite state (after "
        f"{int(last_good.step)} updates) is in .state / .params",
        last_good,
        history,
    )


def _record(history, metrics, done, n, seconds):
    """Appends `n` epochs of a call's metrics, the run having finished `done` before it."""
    for e in range(n):
        history["epoch"].append(done + e + 1)
        history["seconds"].append(seconds)
        for k in history:
            if k not in ("epoch", "seconds"):
                history[k].append(float(metrics[k][e]))


def _postfix(history):
    out = {"loss": f"{history['loss'][-1]:.4f}", "acc": f"{history['accuracy'][-1]:.3f}"}
    if "val_accuracy" in history:
        out["val_acc"] = f"{history['val_accuracy'][-1]:.3f}"
    return out


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="epoch", desc="fit", dynamic_ncols=True)


__all__: Sequence[str] = [
    "DivergenceError",
    "TrainState",
    "fit",
    "init_state",
    "l2_penalty",
    "make_epochs",
    "make_step",
    "per_layer",
    "train_step",
]
epochs_per_call = _epochs_per_call  # temporary (exp branch): the lead makes it public
