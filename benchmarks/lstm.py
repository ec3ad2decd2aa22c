"""Recurrent training steps, side by side: jnet's hand-written BPTT vs jax.grad vs PyTorch.

Row-by-row MNIST (28 steps of 28 pixels), `lstm(128, return_sequences=False)` (or `gru`,
`rnn`: `--cells`) then `dense(10)`, softmax cross entropy, batch 128, plain SGD. One process,
the same initial weights and the same batches for all rows of a cell:

  jnet         `jnet.make_step` (the hand-written backward, with jnet's two placements for
               this backend and cell, below), `--steps` steps in one `lax.scan`.
  jnet-hoisted the same with the input projection `x_t w_x + b` of all steps as one matmul
               before the forward scan: jnet's choice off the CPU; on the CPU jnet runs it
               inside the scan (`recurrent_cells.hoist_input_projection`). Off the CPU
               this row is `jnet-in-scan`, the other placement.
  jnet-dw-after / jnet-dw-in-scan
               the same with the other placement of the weight gradients: summed inside
               the reverse scan, or one matmul each over all steps after it (jnet sums the
               GRU's in the scan on a CPU: `recurrent_cells.accumulate_in_scan`).
  reference    (lstm) `jax.value_and_grad` of the same forward with the input projection
               hoisted out of the scan + optax SGD, in the same kind of scan.
  ref-naive    the same, with `x_t w_x` inside the scan body: how a scan RNN is often written.
  torch        `torch.nn.LSTM` / `GRU` / `RNN` + `nn.Linear` on the CPU, eager, a Python
               loop (if torch imports).

Compilation and a warm-up run are excluded; each time is the median (and the best) of
`--repeats` runs, interleaved across a cell's rows in an order rotated every round, so a
noisy neighbour on a shared machine slows them alike; on a loaded machine the best run is
the closer estimate of uncontended speed. After timing, jnet's parameters are compared with
the first jax.grad row's (they must agree to float32 rounding):

    python benchmarks/lstm.py                    # lstm, 20 steps, 5 repeats (about 2 minutes)
    python benchmarks/lstm.py --cells lstm gru rnn --steps 20 --repeats 5
    python benchmarks/lstm.py --steps 50 --repeats 9 --json results/bench_lstm.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import sys
import time

CELLS = ("lstm", "gru", "rnn")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", choices=CELLS, default=["lstm"], help="default: lstm")
    p.add_argument("--steps", type=int, default=20, help="SGD steps per timed run")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per implementation")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch row")
    p.add_argument("--torch-threads", type=int, default=None, help="default: all cores")
    p.add_argument("--data-dir", type=pathlib.Path, default=None, help="MNIST folder")
    p.add_argument("--json", type=pathlib.Path, default=None, help="write the rows here")
    args = p.parse_args(argv)
    if min(args.steps, args.repeats, args.batch_size, args.hidden) < 1:
        p.error("--steps, --repeats, --batch-size and --hidden must be positive")
    from jnet import xla_flags  # Eigen's matrix products in the scans, set before JAX starts

    xla_flags.prefer_eigen_kernels()
    return args


def load_batches(args):
    """`(xb (steps, B, 28, 28) float32, yb (steps, B) int32, source)`: MNIST, else random."""
    import numpy as np

    n = args.steps * args.batch_size
    try:
        from jnet import data

        (x, y), _ = data.mnist(args.data_dir, download=False)
        x, y, source = data.scale(x[:n]).astype(np.float32), y[:n].astype(np.int32), "MNIST"
        if len(x) < n:
            raise ValueError("not enough images")
    except Exception:  # timings do not depend on the pixel values
        rng = np.random.default_rng(0)
        x = rng.random((n, 28, 28), np.float32)
        y, source = rng.integers(0, 10, n).astype(np.int32), "random (MNIST not found)"
    shape = (args.steps, args.batch_size)
    return x.reshape(shape + (28, 28)), y.reshape(shape), source


def reference_forward(hoisted: bool, cell: str = "lstm"):
    """A plain recurrent layer + dense forward in JAX (jnet's gate layouts), for jax.grad."""
    import jax
    import jax.numpy as jnp

    def step_maths(lp, h, c, a_t):
        if cell == "lstm":
            i, f, g, o = jnp.split(a_t + h @ lp["w_h"], 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            return jax.nn.sigmoid(o) * jnp.tanh(c), c
        if cell == "gru":
            (ar, az, an), (ur, uz, un) = (jnp.split(v, 3, axis=-1)
                                          for v in (a_t, h @ lp["w_h"] + lp["b_h"]))  # fmt: skip
            r, z = jax.nn.sigmoid(ar + ur), jax.nn.sigmoid(az + uz)
            n = jnp.tanh(an + r * un)
            return n + z * (h - n), c
        return jnp.tanh(a_t + h @ lp["w_h"]), c

    def forward(params, x):
        lp, dp = params
        xs = jnp.swapaxes(x, 0, 1)  # (T, N, D)
        hidden = lp["w_h"].shape[0]
        a = xs @ lp["w_x"] + lp["b"] if hoisted else xs

        def body(carry, a_t):
            a_t = a_t if hoisted else a_t @ lp["w_x"] + lp["b"]
            return step_maths(lp, *carry, a_t), None

        zero = jnp.zeros((x.shape[0], hidden), jnp.result_type(x, lp["w_x"]))
        (h, _), _ = jax.lax.scan(body, (zero, zero), a)
        return h @ dp["w"] + dp["b"]

    return forward


def jax_impls(args, params, net, xb, yb, cell="lstm"):
    """`{name: (run, compile_seconds)}`; `run()` does all the steps and blocks."""
    import jax
    import optax

    import jnet
    from jnet.layers import recurrent, recurrent_cells

    opt = optax.sgd(args.lr)
    loss = jnet.softmax_cross_entropy
    impls = {}

    def timed_jit(fn, *example):
        compiled_at = time.perf_counter()
        compiled = jax.jit(fn).lower(*example).compile()
        seconds = time.perf_counter() - compiled_at
        return compiled, seconds

    def jnet_run(state, xb, yb):
        step = jnet.make_step(net, loss, opt)  # a new function each call: traced afresh
        state, m = jax.lax.scan(lambda s, b: step(s, b), state, (xb, yb))
        return state.params, m["loss"]

    state = jnet.init_state(net, opt, jax.random.key(0), (1, 28, 28), params=params)
    # jnet's choices, then each of its two placements switched to the other one.
    hoist, in_scan = recurrent.hoist_input_projection, recurrent.accumulate_in_scan
    cells = {"lstm": recurrent_cells.lstm_cell, "gru": recurrent_cells.gru_cell,
             "rnn": lambda: recurrent_cells.rnn_cell("tanh")}  # fmt: skip
    summed = in_scan(cells[cell]())
    hoists = hoist()
    variants = (
        ("jnet", {}),
        ("jnet-in-scan" if hoists else "jnet-hoisted", {"hoist_input_projection": not hoists}),
        ("jnet-dw-after" if summed else "jnet-dw-in-scan", {"accumulate_in_scan": not summed}),
    )
    for name, switched in variants:
        for attr, value in switched.items():
            setattr(recurrent, attr, lambda *_, value=value: value)
        try:  # a new function object: jax.jit's trace cache must not hand back the first
            compiled, sec = timed_jit(lambda *a: jnet_run(*a), state, xb, yb)
        finally:
            recurrent.hoist_input_projection, recurrent.accumulate_in_scan = hoist, in_scan
        impls[name] = (lambda c=compiled: jax.block_until_ready(c(state, xb, yb)), sec)

    refs = (("reference", True),) if cell == "lstm" else ()
    refs += (("ref-naive", False),)
    for name, hoisted in refs:
        forward = reference_forward(hoisted, cell)

        def value(p, x, y, forward=forward):
            logits = forward(p, x)
            return -jax.numpy.mean(jax.nn.log_softmax(logits)[jax.numpy.arange(len(y)), y])

        def ref_run(p, xb, yb, value=value):
            def body(carry, batch):
                p, s = carry
                v, g = jax.value_and_grad(value)(p, *batch)
                updates, s = opt.update(g, s, p)
                return (optax.apply_updates(p, updates), s), v

            (p, _), losses = jax.lax.scan(body, (p, opt.init(p)), (xb, yb))
            return p, losses

        compiled_ref, sec = timed_jit(ref_run, params, xb, yb)
        impls[name] = (
            lambda c=compiled_ref: jax.block_until_ready(c(params, xb, yb)),
            sec,
        )
    return impls


def torch_impl(args, params, xb, yb, cell="lstm"):
    """PyTorch nn.LSTM/GRU/RNN + nn.Linear with the same weights, SGD, a Python loop; or None."""
    try:
        import torch
    except ImportError:
        return None
    import numpy as np

    torch.set_num_threads(args.torch_threads or os.cpu_count() or 1)
    lp, dp = (jax_tree_numpy(p) for p in params)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    lstm = module(28, args.hidden, batch_first=True)
    head = torch.nn.Linear(args.hidden, 10)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(lp["w_x"].T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(lp["w_h"].T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(lp["b"].copy()))
        if "b_h" in lp:
            lstm.bias_hh_l0.copy_(torch.from_numpy(lp["b_h"].copy()))
        else:
            lstm.bias_hh_l0.zero_()
        head.weight.copy_(torch.from_numpy(dp["w"].T.copy()))
        head.bias.copy_(torch.from_numpy(dp["b"].copy()))
    state0 = [t.detach().clone() for t in (*lstm.parameters(), *head.parameters())]
    opt = torch.optim.SGD([*lstm.parameters(), *head.parameters()], lr=args.lr)
    xs, ys = torch.from_numpy(np.asarray(xb)), torch.from_numpy(np.asarray(yb)).long()
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        with torch.no_grad():  # every run starts from the same weights
            for t, t0 in zip((*lstm.parameters(), *head.parameters()), state0, strict=True):
                t.copy_(t0)
        for i in range(len(xs)):
            opt.zero_grad(set_to_none=True)
            out, _ = lstm(xs[i])
            loss = loss_fn(head(out[:, -1]), ys[i])
            loss.backward()
            opt.step()
        return float(loss.detach())

    return run, 0.0, torch.__version__


def jax_tree_numpy(tree):
    import numpy as np

    return {k: np.asarray(v, np.float32) for k, v in tree.items()}


def time_cell(args, cell, xb, yb, source) -> tuple[list[dict], str | None]:
    """One cell's rows, timed interleaved; prints its table. `(rows, torch version)`."""
    import jax
    import numpy as np
    from timing import Impl, summarize, time_interleaved

    import jnet

    layer = {"lstm": jnet.lstm, "gru": jnet.gru, "rnn": jnet.rnn}[cell]
    net = jnet.serial(layer(args.hidden, return_sequences=False), jnet.dense(10))
    _, params = net.init(jax.random.key(0), (1, 28, 28))
    impls = jax_impls(args, params, net, jax.numpy.asarray(xb), jax.numpy.asarray(yb), cell)
    torch_version = None
    if not args.no_torch:
        t = torch_impl(args, params, xb, yb, cell)
        if t is not None:
            impls["torch"] = (t[0], t[1])
            torch_version = t[2]
    names = list(impls)
    times = summarize(time_interleaved([Impl(n, impls[n][0]) for n in names], args.repeats)[1])
    # jnet and the jax.grad reference must have trained the same network.
    ref = "reference" if "reference" in impls else "ref-naive"
    p_jnet, l_jnet = impls["jnet"][0]()
    p_ref, l_ref = impls[ref][0]()
    diff = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(jax.tree.leaves(p_jnet), jax.tree.leaves(p_ref), strict=True)
    )
    ref_ms = times[ref]["median_s"] / args.steps * 1e3
    ref_best = times[ref]["min_s"] / args.steps * 1e3
    rows = []
    for name in names:
        ms = times[name]["median_s"] / args.steps * 1e3
        best = times[name]["min_s"] / args.steps * 1e3
        rows.append({
            "cell": cell, "impl": name, "ms_per_step": ms, "best_ms": best,
            "ratio": ms / ref_ms, "best_ratio": best / ref_best,
            "compile_s": impls[name][1], "times_s": times[name]["times_s"], "param_diff": diff,
        })  # fmt: skip
    cpu = platform.processor() or platform.machine()
    print(
        f"{cell.upper()} {args.hidden}, row-by-row MNIST ({source}), batch {args.batch_size}, "
        f"SGD {args.lr}: {args.steps} steps per run, median of {args.repeats}; "
        f"{jax.default_backend()} ({jax.devices()[0].device_kind}), {os.cpu_count()} cores {cpu}"
    )
    print(f"{'impl':<18} {'median ms/step':>14} {'vs ' + ref:>12} {'best ms/step':>12} "
          f"{'vs ' + ref:>12} {'compile s':>9}")  # fmt: skip
    for r in rows:
        best = f"{r['best_ms']:>12.1f} {r['best_ratio']:>11.2f}x"
        print(f"{r['impl']:<18} {r['ms_per_step']:>14.1f} {r['ratio']:>11.2f}x {best} "
              f"{r['compile_s']:>9.1f}")  # fmt: skip
    print(f"jnet vs {ref} after {args.steps} steps: max |param diff| {diff:.1e}; first "
          f"losses {float(l_jnet[0]):.6f} / {float(l_ref[0]):.6f}\n")  # fmt: skip
    return rows, torch_version


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    import jax

    print(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')!r}")
    xb, yb, source = load_batches(args)
    rows, torch_version = [], None
    for cell in args.cells:
        cell_rows, torch_version = time_cell(args, cell, xb, yb, source)
        rows += cell_rows
    if torch_version:
        print(f"torch {torch_version}, {args.torch_threads or os.cpu_count()} threads")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"command": shlex.join(["python", "benchmarks/lstm.py", *(argv or sys.argv[1:])]),
                "jax": jax.__version__, "torch": torch_version}  # fmt: skip
        args.json.write_text(json.dumps({"rows": rows, **meta}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
