"""A ResNet-style block stack: jnet's hand-written backward beside jax.grad (and PyTorch).

    python benchmarks/resnet.py [--steps 10] [--repeats 5] [--batch 128] [--no-torch]
                                [--lowering xla]

Network (MNIST 28 x 28 x 1, SAME convolutions, batch norm in training mode throughout):
conv16 3x3, BN, relu; two blocks `relu(x + BN(conv16(relu(BN(conv16(x))))))`; a block to 32
channels at stride 2 with a 1x1 strided projection; one more 32-channel block;
global_avg_pool, dense 10; softmax cross entropy, plain SGD. One timed "epoch" is a jitted
`lax.scan` over `--steps` batches already on the device, the running statistics threaded
through it as state.

Rows, from the same initial parameters and statistics, on the same batches:
- jnet: `jnet.value_and_grad` (hand-written backward), in the faster of conv2d's two lowerings,
  picked by a short probe run: "xla" (`lax.conv_general_dilated`) and "matmul" (shifted
  slices concatenated and one matmul).
- reference: `jax.value_and_grad` of the same network's forward pass (the pure jnp/lax forward
  every jnet layer has; no custom_vjp anywhere on that path), in the faster of the same two
  lowerings, by the same probe.
- torch: the same network in PyTorch eager mode on the CPU (weights and statistics copied
  from the jnet init; its symmetric SAME padding at stride 2 differs from XLA's by one row,
  which changes nothing in the timing), if `import torch` works.
"""

from __future__ import annotations

import argparse
import os
import platform

import conv_flags

BLOCKS = ((16, 1), (16, 1), (32, 2), (32, 1))  # (channels, stride) per residual block
LR = 0.01


def parse_args(argv=None) -> argparse.Namespace:
    return conv_flags.parse(__doc__, argv, steps=10, probe_steps=2)


def network(lowering: str | None = None):
    """The block stack; `lowering` is conv2d's ("matmul", "xla"; None: the backend's)."""
    import jnet

    conv = lambda n, k=3, s=1: jnet.conv2d(n, k, strides=s, lowering=lowering)  # noqa: E731
    layers, channels = [conv(16), jnet.batch_norm(), jnet.relu()], 16
    for n, s in BLOCKS:
        bn = jnet.batch_norm
        branch = jnet.serial(conv(n, 3, s), bn(), jnet.relu(), conv(n), bn())
        shortcut = conv(n, 1, s) if (n, s) != (channels, 1) else None
        layers += [jnet.residual(branch, projection=shortcut), jnet.relu()]
        channels = n
    return jnet.serial(*layers, jnet.global_avg_pool(), jnet.dense(10))


def epoch_fn(value_and_grad, xs, ys):
    """A jitted scan of SGD steps; `value_and_grad(p, s, x, y) -> ((loss, s), grads)`."""
    import jax

    @jax.jit
    def epoch(params, state):
        def step(carry, batch):
            (value, state), grads = value_and_grad(*carry, *batch)
            return (jax.tree.map(lambda a, g: a - LR * g, carry[0], grads), state), value

        return jax.lax.scan(step, (params, state), (xs, ys))

    return epoch


def hand_written(net):
    import jax

    import jnet

    vg, key = jnet.value_and_grad(net, jnet.softmax_cross_entropy), jax.random.key(0)
    return lambda p, s, x, y: vg(p, x, y, key=key, state=s)  # a key: training mode


def autodiff(net):
    import jax

    import jnet
    from jnet.layers import forward_with_state

    key = jax.random.key(0)

    def loss(p, s, x, y):
        out, _, new_state = forward_with_state(net, p, x, key=key, state=s)
        return jnet.softmax_cross_entropy.forward(out, y)[0], new_state

    return jax.value_and_grad(loss, has_aux=True)


def torch_epoch(params, state, xs, ys):
    """`run()` does one epoch of the same SGD steps in PyTorch eager mode, or `(None, None)`."""
    try:
        import torch
    except ImportError:
        return None, None
    import numpy as np

    F = torch.nn.functional
    t = lambda a: torch.tensor(np.asarray(a, np.float32))  # noqa: E731
    conv_w = lambda p: [t(p["w"]).permute(3, 2, 0, 1).contiguous(), t(p["b"])]  # noqa: E731
    bn_w = lambda p: [t(p["scale"]), t(p["bias"])]  # noqa: E731
    bn_s = lambda s: [t(s["mean"]), t(s["var"])]  # noqa: E731
    weights, stats = conv_w(params[0]) + bn_w(params[1]), bn_s(state[1])
    for i in range(len(BLOCKS)):
        branch, *proj = params[3 + 2 * i]
        weights += conv_w(branch[0]) + bn_w(branch[1]) + conv_w(branch[3]) + bn_w(branch[4])
        weights += conv_w(proj[0]) if proj else []
        stats += bn_s(state[3 + 2 * i][0][1]) + bn_s(state[3 + 2 * i][0][4])
    weights += [t(params[-1]["w"]).T.contiguous(), t(params[-1]["b"])]
    x_all = torch.tensor(np.asarray(xs)).permute(0, 1, 4, 2, 3).contiguous()  # NCHW
    y_all = torch.tensor(np.asarray(ys), dtype=torch.long)

    def forward(ws, st, x):
        ws, st = iter(ws), iter(st)
        def conv(h, s=1, pad=1):
            return F.conv2d(h, next(ws), next(ws), stride=s, padding=pad)

        def bn(h):
            return F.batch_norm(h, next(st), next(st), next(ws), next(ws), training=True)

        h, channels = F.relu(bn(conv(x))), 16
        for n, s in BLOCKS:
            y = bn(conv(F.relu(bn(conv(h, s))), 1))
            h = F.relu(y + (conv(h, s, 0) if (n, s) != (channels, 1) else h))
            channels = n
        return F.linear(h.mean((2, 3)), next(ws), next(ws))

    def run():
        ws, st = [w.clone().requires_grad_() for w in weights], [s.clone() for s in stats]
        opt = torch.optim.SGD(ws, lr=LR)
        for x, y in zip(x_all, y_all, strict=True):
            loss = F.cross_entropy(forward(ws, st, x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach())

    return run, f"torch {torch.__version__}, {torch.get_num_threads()} threads"


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax
    from cnn import batches
    from timing import Impl, compile_timed, fastest, print_rows, summarize, time_interleaved

    from jnet.layers import conv, init_with_state

    backend = f"{jax.default_backend()} ({platform.processor() or '?'}, {os.cpu_count()} cores)"
    print(f"jax {jax.__version__} on {backend}; conv2d default lowering: "
          f"{conv.lowering_for(None)}; XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')!r}")  # fmt: skip
    xs, ys = batches(args)
    _, params, state = init_with_state(network(), jax.random.key(0), (args.batch, 28, 28, 1))
    # float32 throughout, as the batches are (also where float64 is on, as in the tests).
    params, state = jax.tree.map(lambda a: a.astype(xs.dtype), (params, state))

    def runner(vg, xs, ys):  # the compiled epoch as a no-argument call, and its compile time
        compiled, seconds = compile_timed(epoch_fn(vg, xs, ys), params, state)
        return (lambda: jax.block_until_ready(compiled(params, state))), seconds

    # Probe: jnet and the reference in both lowerings, a few steps each; keep each's faster.
    px, py = xs[: args.probe_steps], ys[: args.probe_steps]
    best = {
        label: args.lowering or fastest(
            {low: runner(make(network(low)), px, py)[0] for low in conv.LOWERINGS},
            label, args.probe_steps)
        for label, make in (("jnet", hand_written), ("reference", autodiff))
    }  # fmt: skip

    impls, losses = [], {}
    for name, vg in ((f"jnet (hand-written, {best['jnet']})", hand_written(network(best["jnet"]))),
                     (f"jax.grad reference ({best['reference']})",
                      autodiff(network(best["reference"])))):  # fmt: skip
        run, seconds = runner(vg, xs, ys)
        losses[name] = jax.device_get(run()[1])
        impls.append(Impl(name, run, seconds))
    (jl, rl) = losses.values()
    print(f"same losses (first, last): jnet {jl[0]:.6f} {jl[-1]:.6f}, "
          f"reference {rl[0]:.6f} {rl[-1]:.6f}")  # fmt: skip
    run_torch, torch_info = (None, None) if args.no_torch else torch_epoch(params, state, xs, ys)
    if run_torch is not None:
        impls.append(Impl(f"PyTorch eager ({torch_info})", run_torch))
    stats = summarize(time_interleaved(impls, args.repeats)[1])

    print_rows(stats, impls[1].name, args.steps)
    return {"lowerings": best, "rows": stats, "losses": losses}


if __name__ == "__main__":
    main()
