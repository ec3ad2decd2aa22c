"""The MLP benchmark's tasks and its implementations of one training run, timed alike.

  jnet       the compiled epoch loop `fit` runs (`jnet.train.make_epochs(...).run`), in
             the calls `fit` makes (`jnet.train.epochs_per_call`), each read back.
  reference  autodiff of the same forward: `jax.value_and_grad` + optax, one `lax.scan`
             over minibatches gathered on the device, epochs in one jit.
  proto-floor  jnet's epoch loop without its per-step bookkeeping (what that costs).
  numpy      the tutorials' vectorised float32 forward/backward/SGD, a Python loop.

All start from the same weights and walk the same batches (the permutation keys are split
as `make_epochs` splits its state key), so they end on the same loss.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from timing import Impl, compile_timed, kernel_count

import jnet
from jnet.train import FULL_BATCH_EPOCHS_PER_CALL, NO_STOP, TrainState, epochs_per_call, make_epochs


class Task(NamedTuple):
    """One benchmark configuration."""

    name: str
    sizes: tuple[int, ...]  # hidden and output widths, e.g. (512, 10)
    num_examples: int  # the first N training images
    batch_size: int | None  # None: full batch, one step per epoch
    epochs: int  # epochs per timed call
    lr: float  # SGD rate of every layer but the last
    last_lr: float  # SGD rate of the last layer
    about: str

    @property
    def steps(self) -> int:
        per_epoch = 1 if self.batch_size is None else self.num_examples // self.batch_size
        return per_epoch * self.epochs


TASKS = {
    "T1": Task("T1", (512, 10), 1000, None, 500, 0.1, 0.1, "tutorial 000: full batch, 500 steps"),
    "T2": Task("T2", (100, 200, 10), 60000, 64, 1, 0.05, 0.1, "tutorial 004: batch 64, 1 epoch"),
    "T3": Task("T3", (1024, 1024, 10), 60000, 512, 1, 0.1, 0.1, "batch 512, 1 epoch"),
}
# --quick: the same code paths at toy sizes, for the smoke test (seconds on a CPU).
QUICK = {
    "T1": TASKS["T1"]._replace(sizes=(32, 10), num_examples=256, epochs=20),
    "T2": TASKS["T2"]._replace(sizes=(16, 32, 10), num_examples=1024),
    "T3": TASKS["T3"]._replace(sizes=(64, 64, 10), num_examples=1024, batch_size=128),
}


def sgd_per_layer(task: Task) -> optax.GradientTransformation:
    """SGD at `task.lr`, the last layer at `task.last_lr` (tutorial 004's two rates)."""
    if task.last_lr == task.lr:
        return optax.sgd(task.lr)
    return jnet.per_layer(optax.sgd(task.lr), {-1: optax.sgd(task.last_lr)})


def init_params(net: jnet.Layer, key: jax.Array, in_dim: int) -> Any:
    """`net.init` once, as float32 whatever jax_enable_x64 says: all three runs share these."""
    _, params = net.init(key, (1, in_dim))
    return jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)


def epoch_keys(key: jax.Array, epochs: int) -> list[jax.Array]:
    """The permutation key of each epoch, split exactly as `make_epochs` splits its state key."""
    out = []
    for _ in range(epochs):
        key, perm_key, _ = jax.random.split(key, 3)
        out.append(perm_key)
    return out


def jnet_impl(name: str, task: Task, net, params, x, y, key) -> Impl:
    """jnet's own path: `make_epochs(...).run` in the calls `fit` makes, each read back.

    `fit` runs full-batch epochs `FULL_BATCH_EPOCHS_PER_CALL` at a time (T1: 5 calls of
    100) and minibatch epochs one per call; so does this.
    """
    opt = sgd_per_layer(task)
    limit = FULL_BATCH_EPOCHS_PER_CALL if task.batch_size is None else 1
    per_call = epochs_per_call(task.epochs, limit, None, 0)
    engine = make_epochs(
        net,
        jnet.softmax_cross_entropy,
        opt,
        num_examples=task.num_examples,
        batch_size=task.batch_size,
        epochs=per_call,
    )
    state = TrainState(params, opt.init(params), jnp.zeros((), jnp.int32), key)
    stop = jnp.int32(NO_STOP)
    compiled, seconds = compile_timed(engine.run, state, x, y, None, stop)

    def run():
        current, losses = state, []
        for _ in range(task.epochs // per_call):
            current, (bad_step, _), metrics = compiled(current, x, y, None, stop)
            call_losses, bad = jax.device_get((metrics["loss"], bad_step))  # as fit does
            if bad >= 0:
                raise FloatingPointError(f"{name}: loss diverged at step {bad}")
            losses.append(call_losses)
        return np.concatenate(losses)

    return Impl(name, run, seconds, kernel_count(compiled), compiled)


def reference_impl(task: Task, net, params, x, y, key) -> Impl:
    """`jax.value_and_grad` of the same forward + optax; same epochs, permutations, batches."""
    opt = sgd_per_layer(task)
    n, b = task.num_examples, task.batch_size

    def loss_fn(p, xb, yb):
        logits = net.forward(p, xb)[0]  # the plain forward: autodiff, no custom_vjp here
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def step(carry, batch):
        p, s = carry
        value, grads = jax.value_and_grad(loss_fn)(p, *batch)
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), value

    def run(p, s, key, x, y):
        def epoch(carry, _):
            p, s, key = carry
            key, perm_key, _ = jax.random.split(key, 3)
            if b is None:
                (p, s), loss = step((p, s), (x, y))
            else:
                steps = n // b
                perm = jax.random.permutation(perm_key, n)[: steps * b].reshape(steps, b)
                (p, s), losses = jax.lax.scan(lambda c, i: step(c, (x[i], y[i])), (p, s), perm)
                loss = losses.mean()
            return (p, s, key), loss

        # The key comes back, as jnet's state does, for a next call: no loop's RNG is dead code.
        (p, s, key), losses = jax.lax.scan(epoch, (p, s, key), None, length=task.epochs)
        return p, key, losses

    args = (params, opt.init(params), key, x, y)
    compiled, seconds = compile_timed(jax.jit(run), *args)

    def run_once():
        return jax.device_get(compiled(*args)[-1])

    return Impl("reference", run_once, seconds, kernel_count(compiled), compiled)


def floor_impl(task: Task, net, params, x, y, key) -> Impl:
    """jnet's epoch loop without its per-step bookkeeping: what accuracy and guard cost.

    The same hand-written gradient, update, batches and key handling as `make_epochs`,
    with the loss summed in the carry, but no training accuracy, no divergence guard
    and no step counter. `jnet / proto-floor` is the price of that bookkeeping.
    """
    from jnet.network import loss_and_grads

    grads_fn = loss_and_grads(net, jnet.softmax_cross_entropy)
    opt = sgd_per_layer(task)
    n, b = task.num_examples, task.batch_size

    def step(carry, batch):
        p, s, loss_sum = carry
        value, _, grads, _, _ = grads_fn(p, *batch)
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s, loss_sum + value), None

    def run(p, s, key, x, y):
        def epoch(carry, _):
            p, s, key = carry
            key, perm_key, _ = jax.random.split(key, 3)
            zero = jnp.zeros((), jnp.float32)
            if b is None:
                (p, s, loss_sum), _ = step((p, s, zero), (x, y))
                return (p, s, key), loss_sum
            steps = n // b
            perm = jax.random.permutation(perm_key, n)[: steps * b].reshape(steps, b)
            (p, s, loss_sum), _ = jax.lax.scan(
                lambda c, i: step(c, (x[i], y[i])), (p, s, zero), perm
            )
            return (p, s, key), loss_sum / steps

        (p, s, key), losses = jax.lax.scan(epoch, (p, s, key), None, length=task.epochs)
        return p, key, losses

    args = (params, opt.init(params), key, x, y)
    compiled, seconds = compile_timed(jax.jit(run), *args)
    run_once = lambda: jax.device_get(compiled(*args)[-1])
    return Impl("proto-floor", run_once, seconds, kernel_count(compiled), compiled)


def numpy_impl(task: Task, params, x, y, key) -> Impl:
    """Tutorial-style numpy, float32: batches `x[idx]`, forward, softmax, backward, SGD."""
    ws = [np.asarray(p["w"], np.float32) for p in params if p]
    bs = [np.asarray(p["b"], np.float32) for p in params if p]
    rates = [np.float32(task.lr)] * (len(ws) - 1) + [np.float32(task.last_lr)]
    x, y = np.asarray(x, np.float32), np.asarray(y)
    n, b = task.num_examples, task.batch_size
    perms = [np.asarray(jax.random.permutation(k, n)) for k in epoch_keys(key, task.epochs)]
    eye = np.eye(ws[-1].shape[1], dtype=np.float32)

    def train(max_steps: int | None = None) -> np.ndarray:
        w, bias = [a.copy() for a in ws], [a.copy() for a in bs]
        epoch_losses, done = [], 0
        for perm in perms:
            batches = [None] if b is None else [perm[i : i + b] for i in range(0, n - b + 1, b)]
            losses = []
            for idx in batches:
                if max_steps is not None and done >= max_steps:
                    break
                xb, yb = (x, y) if idx is None else (x[idx], y[idx])
                acts = [xb]  # forward, keeping each layer's input
                for i in range(len(w)):
                    z = acts[-1] @ w[i] + bias[i]
                    acts.append(np.maximum(z, 0) if i < len(w) - 1 else z)
                z = acts[-1]
                e = np.exp(z - z.max(axis=1, keepdims=True))
                prob = e / e.sum(axis=1, keepdims=True)
                losses.append(-np.mean(np.log(prob[np.arange(len(yb)), yb] + 1e-30)))
                dz = (prob - eye[yb]) / np.float32(len(yb))
                for i in reversed(range(len(w))):  # backward, then SGD on this layer
                    # As in the tutorials' backward (000's dA_prev, 004's grad_input), the
                    # input gradient is computed for every layer, the first one included.
                    dw, db, da = acts[i].T @ dz, dz.sum(axis=0), dz @ w[i].T
                    dz = da * (acts[i] > 0) if i else da
                    w[i] -= rates[i] * dw
                    bias[i] -= rates[i] * db
                done += 1
            epoch_losses.append(np.mean(losses) if losses else np.nan)
        return np.asarray(epoch_losses, np.float32)

    train(max_steps=3)  # warm-up: BLAS threads and page faults, not a whole run
    return Impl("numpy", train, 0.0, None)
