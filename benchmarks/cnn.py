"""The issue's MNIST CNN: jnet's hand-written backward beside jax.grad (and PyTorch), as a table.

    python benchmarks/cnn.py [--steps 20] [--repeats 5] [--batch 128] [--no-torch] [--lowering xla]

Network: conv32 3x3, relu, maxpool 2, conv64 3x3, relu, maxpool 2, flatten, dense 128, relu,
dense 10 (SAME convolutions), softmax cross entropy, plain SGD. One "epoch" is a jitted
`lax.scan` over `--steps` batches already on the device (an MNIST epoch is 469 such steps).

Rows, all from the same initial parameters and the same batches:
- jnet: `jnet.value_and_grad` (hand-written backward), in the faster of conv2d's two lowerings
  ("matmul", "xla"), picked by a short probe run first.
- reference: `jax.value_and_grad` of the same forward written in plain jnp/lax, in the faster of
  two formulations, picked by the same probe: "xla" (`lax.conv_general_dilated` and
  `lax.reduce_window` max, the obvious one) and "matmul" (each convolution as shifted slices
  concatenated and one matmul, pooling as reshape + max).
- torch: the same network in PyTorch eager mode on the CPU (NCHW inside, weights copied from the
  jnet init), if `import torch` works.

Repeats are interleaved (each round runs every row once, in a rotated order); the table gives
medians, ms per step and the ratio to the reference.
"""

from __future__ import annotations

import os
import pathlib
import platform
from functools import partial

import conv_flags
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from timing import Impl, fastest, print_rows, summarize, time_interleaved

import jnet
from jnet.layers import conv

REPO = pathlib.Path(__file__).resolve().parents[1]
LR = 0.01


def network(lowering: str | None = None) -> jnet.Layer:
    """The CNN; `lowering` is conv2d's ("matmul", "xla"; None: the backend's default)."""
    return jnet.serial(
        jnet.conv2d(32, 3, lowering=lowering), jnet.relu(), jnet.max_pool(2),
        jnet.conv2d(64, 3, lowering=lowering), jnet.relu(), jnet.max_pool(2),
        jnet.flatten(), jnet.dense(128), jnet.relu(), jnet.dense(10),
    )  # fmt: skip


def batches(args) -> tuple[jax.Array, jax.Array]:
    """`(steps, batch, 28, 28, 1)` images and labels: MNIST if found, else random."""
    try:
        import jnet.data

        data_dir = pathlib.Path(os.environ.get("JNET_DATA_DIR", REPO.parent / "shared" / "data"))
        (x, y), _ = jnet.data.mnist(data_dir / "mnist", download=False)
        source = "MNIST"
    except Exception:  # the timing does not depend on the pixel values
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (args.steps * args.batch, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, args.steps * args.batch)
        source = "random"
    n = args.steps * args.batch
    idx = np.random.default_rng(1).permutation(len(x))[:n]
    xb = (x[idx].astype(np.float32) / 255.0).reshape(args.steps, args.batch, 28, 28, 1)
    print(f"batches: {source}, {args.steps} x {args.batch}")
    return jnp.asarray(xb), jnp.asarray(y[idx].reshape(args.steps, args.batch))


# --- the jax.grad reference: the same forward in plain jnp/lax ----------------------------


def _conv_xla(x, w, b):
    dn = ("NHWC", "HWIO", "NHWC")
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn) + b


def _conv_matmul(x, w, b):
    h, wd = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = [xp[:, i : i + h, j : j + wd] for i in range(3) for j in range(3)]
    return jnp.concatenate(cols, -1) @ w.reshape(-1, w.shape[-1]) + b


def _pool_xla(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _pool_matmul(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max((2, 4))


def reference_loss(kind: str):
    conv_fn, pool = (_conv_xla, _pool_xla) if kind == "xla" else (_conv_matmul, _pool_matmul)

    def loss(p, x, y):
        h = pool(jax.nn.relu(conv_fn(x, p[0]["w"], p[0]["b"])))
        h = pool(jax.nn.relu(conv_fn(h, p[3]["w"], p[3]["b"])))
        h = jax.nn.relu(h.reshape(h.shape[0], -1) @ p[7]["w"] + p[7]["b"])
        logits = h @ p[9]["w"] + p[9]["b"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    return jax.value_and_grad(loss)


def epoch_fn(value_and_grad, xs, ys):
    """A jitted scan of SGD steps over the batches; returns (params, losses)."""

    @jax.jit
    def epoch(params):
        def step(p, batch):
            value, grads = value_and_grad(p, *batch)
            return jax.tree.map(lambda a, g: a - LR * g, p, grads), value

        return lax.scan(step, params, (xs, ys))

    return epoch


def finished(fn, *args):
    """`fn(*args)` once its result is ready (what the timings time)."""
    return jax.block_until_ready(fn(*args))


# --- PyTorch peer -------------------------------------------------------------------------


def torch_epoch(params, xs, ys):
    """`run()` does one epoch of the same SGD steps in PyTorch eager mode, or None."""
    try:
        import torch
    except ImportError:
        return None, None
    t = lambda a: torch.tensor(np.asarray(a, np.float32))  # noqa: E731
    conv_w = lambda w: t(w).permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW  # noqa: E731
    weights = [conv_w(params[0]["w"]), t(params[0]["b"]), conv_w(params[3]["w"]),
               t(params[3]["b"]), t(params[7]["w"]).T.contiguous(), t(params[7]["b"]),
               t(params[9]["w"]).T.contiguous(), t(params[9]["b"])]  # fmt: skip
    x_all = torch.tensor(np.asarray(xs)).permute(0, 1, 4, 2, 3).contiguous()  # NCHW
    y_all = torch.tensor(np.asarray(ys), dtype=torch.long)
    F = torch.nn.functional

    def run():
        ws = [w.clone().requires_grad_() for w in weights]
        opt = torch.optim.SGD(ws, lr=LR)
        for x, y in zip(x_all, y_all, strict=True):
            h = F.max_pool2d(F.relu(F.conv2d(x, ws[0], ws[1], padding=1)), 2)
            h = F.max_pool2d(F.relu(F.conv2d(h, ws[2], ws[3], padding=1)), 2)
            h = h.permute(0, 2, 3, 1).flatten(1)  # NHWC order, as jnet's flatten
            loss = F.cross_entropy(F.linear(F.relu(F.linear(h, ws[4], ws[5])), ws[6], ws[7]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach())

    return run, f"torch {torch.__version__}, {torch.get_num_threads()} threads"


def parse_args(argv: list[str] | None = None):
    return conv_flags.parse(__doc__, argv, steps=20, probe_steps=3)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cpu = platform.processor() or "?"
    print(f"jax {jax.__version__} on {jax.default_backend()} ({cpu}, {os.cpu_count()} cores); "
          f"conv2d default lowering: {conv.lowering_for(None)}; "
          f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')!r}")  # fmt: skip

    xs, ys = batches(args)
    _, params = network().init(jax.random.key(0), (args.batch, 28, 28, 1))

    # Probe: jnet and the reference in both formulations, a few steps each; keep each's faster.
    px, py = xs[: args.probe_steps], ys[: args.probe_steps]
    makers = {
        "jnet": lambda kind: jnet.value_and_grad(network(kind), jnet.softmax_cross_entropy),
        "reference": reference_loss,
    }
    best = {
        label: args.lowering or fastest({kind: partial(finished, epoch_fn(make(kind), px, py),
                                                       params) for kind in conv.LOWERINGS},
                                        label, args.probe_steps)
        for label, make in makers.items()
    }  # fmt: skip

    names = {"jnet": f"jnet (hand-written, {best['jnet']})",
             "reference": f"jax.grad reference ({best['reference']})"}  # fmt: skip
    rows = {names[label]: epoch_fn(make(best[label]), xs, ys) for label, make in makers.items()}
    (_, l_jnet), (_, l_ref) = (jax.block_until_ready(f(params)) for f in rows.values())
    print(f"same losses (first, last): jnet {float(l_jnet[0]):.6f} {float(l_jnet[-1]):.6f}, "
          f"reference {float(l_ref[0]):.6f} {float(l_ref[-1]):.6f}")  # fmt: skip
    impls = [Impl(name, partial(finished, f, params)) for name, f in rows.items()]
    run_torch, torch_info = (None, None) if args.no_torch else torch_epoch(params, xs, ys)
    if run_torch is not None:
        impls.append(Impl(f"PyTorch eager ({torch_info})", run_torch))
    stats = summarize(time_interleaved(impls, args.repeats)[1])  # each warmed up once first

    print_rows(stats, impls[1].name, args.steps)


if __name__ == "__main__":
    main()
