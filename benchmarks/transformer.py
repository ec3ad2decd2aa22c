"""One GPT training step, side by side: jnet vs jax.grad (naive and fused attention) vs PyTorch.

    python benchmarks/transformer.py                 # CPU config (+ the GPU one on a GPU)
    python benchmarks/transformer.py --no-torch --steps 20 --repeats 7
    python benchmarks/transformer.py --quick         # tiny shapes, a smoke run for CI

The model is nanoGPT's shakespeare_char GPT (vocabulary 65, no bias, tied embeddings,
dropout 0 in every row so that all rows compute the same thing): the CPU config is 4 layers,
4 heads, 128 wide, context 64, batch 12; the GPU config (only where JAX sees a GPU) 6 layers,
6 heads, 384 wide, context 256, batch 64. A step is nanoGPT's: forward, softmax cross
entropy, backward, clip to global norm 1.0, AdamW (betas 0.9/0.99, weight decay 0.1 on
matrices) on the same fixed batches from the same initial weights. Rows:

- jnet: `jnet.gpt` + `jnet.make_step` (hand-written backward passes), `--steps` steps in one
  compiled `lax.scan`.
- jax.grad, naive attention: `jax.value_and_grad` of the same forward written in plain jnp
  (softmax of the masked `(T, T)` scores), same optimizer, same scan.
- jax.grad, dot_product_attention: the same with `jax.nn.dot_product_attention(is_causal=True)`.
- PyTorch eager (CPU config only, when torch imports; `--no-torch` skips it): a compact
  nanoGPT model (`F.scaled_dot_product_attention`, `torch.optim.AdamW`, `clip_grad_norm_`)
  with the same weights, a Python loop over the same batches.

Repeats are interleaved (`timing.time_interleaved`: each round runs every row once, in an
order rotated every round); the table gives medians, ms per step and each row's time over
jnet's. The first losses of all rows must agree (same weights, same batch), else it exits 1.
Without --quick, the `transformer-<platform>` section of BENCHMARKS.md is rewritten.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from report import (
    MD_TEMPLATE,
    checks_table,
    command,
    environment,
    markdown_table,
    section_header,
    update_markdown,
)
from timing import Impl, compile_timed, print_rows, summarize, time_interleaved

import jnet
import jnet.lm

REPO = pathlib.Path(__file__).resolve().parents[1]
VOCAB = 65
CONFIGS = {
    "cpu": {"layers": 4, "heads": 4, "dim": 128, "block": 64, "batch": 12},
    "gpu": {"layers": 6, "heads": 6, "dim": 384, "block": 256, "batch": 64},
    "quick": {"layers": 1, "heads": 2, "dim": 16, "block": 8, "batch": 2},
}
LR, ITERS = 1e-3, 2000  # the schedule of a 2000-iteration run (its first steps: warm-up)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="training steps per timed run")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch row")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="PyTorch's intra-op threads (default: all cores; on a loaded machine 1 avoids "
        "OpenMP threads spinning against each other, 10x slower here with 2)",
    )
    p.add_argument("--quick", action="store_true", help="tiny shapes, 2 steps, 1 repeat")
    p.add_argument(
        "--write-md",
        type=pathlib.Path,
        default=None,
        help="BENCHMARKS.md to update (default: the repository's, none with --quick)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 2, 1
    if min(args.steps, args.repeats) < 1:
        p.error("--steps and --repeats must be positive")
    return args


def to_reference(params, layers: int) -> dict:
    """jnet.gpt's params as a flat dict with nanoGPT's names (shared arrays, no copies)."""
    blocks = []
    for i in range(layers):
        (attn,), (mlp,) = params[3 + i]
        ln1, sa, _ = attn
        ln2, fc, _, proj, _ = mlp
        blocks.append({"ln1": ln1, "attn": sa, "ln2": ln2, "fc": fc, "proj": proj})
    return {"wte": params[0]["w"], "wpe": params[1]["w"], "h": blocks, "ln_f": params[3 + layers]}


def _ln(x, p):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * p["scale"] + p.get("bias", 0.0)


def _dense(x, p, w="w", b="b"):
    return x @ p[w] + (p[b] if b in p else 0.0)


def reference_forward(fused: bool, heads: int):
    """nanoGPT's forward in plain jnp on `to_reference`'s dict: tokens (N, T) -> logits."""

    def attention(x, p):
        n, t, d = x.shape
        q, k, v = jnp.split(_dense(x, p, "w_qkv", "b_qkv"), 3, axis=-1)
        q, k, v = (a.reshape(n, t, heads, d // heads) for a in (q, k, v))  # (N, T, H, hd)
        if fused:
            o = jax.nn.dot_product_attention(q, k, v, is_causal=True)
        else:
            s = jnp.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(d // heads)
            s = jnp.where(jnp.tril(jnp.ones((t, t), bool)), s, -jnp.inf)
            o = jnp.einsum("nhqk,nkhd->nqhd", jax.nn.softmax(s, axis=-1), v)
        return _dense(o.reshape(n, t, d), p, "w_out", "b_out")

    def forward(p, idx):
        x = p["wte"][idx] + p["wpe"][: idx.shape[1]]
        for b in p["h"]:
            x = x + attention(_ln(x, b["ln1"]), b["attn"])
            x = x + _dense(
                jax.nn.gelu(_dense(_ln(x, b["ln2"]), b["fc"]), approximate=False), b["proj"]
            )
        return _ln(x, p["ln_f"]) @ p["wte"].T

    return forward


def gpt_of(cfg) -> jnet.Layer:
    """The benchmarked GPT of a configuration (nanoGPT's, without biases)."""
    return jnet.gpt(VOCAB, block_size=cfg["block"], layers=cfg["layers"], heads=cfg["heads"],
                    dim=cfg["dim"], bias=False)  # fmt: skip


def jax_rows(cfg, params, xs, ys) -> dict:
    """`{name: (compiled run(params) -> losses (steps,), compile_s)}` for jnet and jax.grad."""
    net = gpt_of(cfg)
    opt = jnet.lm.nanogpt_adamw(LR, ITERS)
    step = jnet.make_step(net, jnet.softmax_cross_entropy, opt)

    def jnet_run(params, xs, ys):
        state = jnet.init_state(net, opt, jax.random.key(0), (1, cfg["block"]), params=params)
        state, m = jax.lax.scan(lambda s, b: step(s, b, None), state, (xs, ys))
        return m["loss"]

    rows = {"jnet (hand-written backward)": (jnet_run, params)}
    for fused, label in ((False, "naive attention"), (True, "dot_product_attention")):
        forward = reference_forward(fused, cfg["heads"])

        def value(p, x, y, forward=forward):
            logp = jax.nn.log_softmax(forward(p, x), axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, y[..., None], axis=-1))

        def ref_run(p, xs, ys, value=value):
            def body(carry, batch):
                p, s = carry
                loss, g = jax.value_and_grad(value)(p, *batch)
                updates, s = opt.update(g, s, p)
                return (optax.apply_updates(p, updates), s), loss

            return jax.lax.scan(body, (p, opt.init(p)), (xs, ys))[1]

        rows[f"jax.grad, {label}"] = (ref_run, to_reference(params, cfg["layers"]))
    out = {}
    for name, (fn, p) in rows.items():
        compiled, seconds = compile_timed(jax.jit(fn), p, xs, ys)
        out[name] = (lambda c=compiled, p=p: np.asarray(c(p, xs, ys)), seconds)
    return out


def torch_row(cfg, params, xs, ys, threads=None):
    """A nanoGPT-shaped PyTorch model with the same weights: `(run, version)`, or None."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.set_num_threads(threads or os.cpu_count() or 1)
    d, h = cfg["dim"], cfg["heads"]
    t = lambda a: torch.tensor(np.asarray(a, np.float32))
    ref = to_reference(params, cfg["layers"])
    names = ["wte", "wpe", "ln_f"] + [
        f"h{i}.{k}"
        for i in range(cfg["layers"])
        for k in ("ln1", "qkv", "out", "ln2", "fc", "proj")
    ]
    w = {"wte": t(ref["wte"]), "wpe": t(ref["wpe"]), "ln_f": t(ref["ln_f"]["scale"])}
    for i, b in enumerate(ref["h"]):
        w |= {
            f"h{i}.ln1": t(b["ln1"]["scale"]),
            f"h{i}.qkv": t(b["attn"]["w_qkv"]).T,
            f"h{i}.out": t(b["attn"]["w_out"]).T,
            f"h{i}.ln2": t(b["ln2"]["scale"]),
            f"h{i}.fc": t(b["fc"]["w"]).T,
            f"h{i}.proj": t(b["proj"]["w"]).T,
        }
    init = {k: w[k].contiguous() for k in names}
    p = {k: v.clone().requires_grad_() for k, v in init.items()}
    decay = [v for v in p.values() if v.dim() >= 2]
    rest = [v for v in p.values() if v.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=LR,
        betas=(0.9, 0.99),
    )
    xt, yt = torch.from_numpy(np.array(xs)).long(), torch.from_numpy(np.array(ys)).long()

    def forward(idx):
        n, tt = idx.shape
        x = p["wte"][idx] + p["wpe"][:tt]
        for i in range(cfg["layers"]):
            a = F.layer_norm(x, (d,), p[f"h{i}.ln1"])
            q, k, v = (
                z.view(n, tt, h, d // h).transpose(1, 2)
                for z in F.linear(a, p[f"h{i}.qkv"]).split(d, dim=2)
            )
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + F.linear(o.transpose(1, 2).reshape(n, tt, d), p[f"h{i}.out"])
            m = F.gelu(F.linear(F.layer_norm(x, (d,), p[f"h{i}.ln2"]), p[f"h{i}.fc"]))
            x = x + F.linear(m, p[f"h{i}.proj"])
        return F.linear(F.layer_norm(x, (d,), p["ln_f"]), p["wte"])

    def run():
        with torch.no_grad():  # every run starts from the same weights and a fresh optimizer
            for k, v in init.items():
                p[k].copy_(v)
        opt.state.clear()
        losses = []
        for i in range(len(xt)):
            # nanoGPT's schedule, as the JAX rows' optax schedule gives it
            for g in opt.param_groups:
                g["lr"] = LR * (i + 1) / 101
            loss = F.cross_entropy(forward(xt[i]).view(-1, VOCAB), yt[i].view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(p.values()), 1.0)
            opt.step()
            losses.append(loss.item())
        return np.asarray(losses)

    return run, torch.__version__


def bench(name: str, cfg: dict, args) -> dict:
    rng = np.random.default_rng(0)
    shape = (args.steps, cfg["batch"], cfg["block"])
    xs = jnp.asarray(rng.integers(0, VOCAB, shape), jnp.int32)  # timings do not depend on text
    ys = jnp.asarray(rng.integers(0, VOCAB, shape), jnp.int32)
    net = gpt_of(cfg)
    _, params = net.init(jax.random.key(0), (1, cfg["block"]))
    rows = jax_rows(cfg, params, xs, ys)
    impls = [Impl(k, run, sec) for k, (run, sec) in rows.items()]
    torch_version = None
    if not args.no_torch and name != "gpu":
        t = torch_row(cfg, params, xs, ys, args.torch_threads)
        if t is not None:
            threads = args.torch_threads or os.cpu_count()
            impls.append(Impl(f"PyTorch {t[1]} eager (CPU, {threads} threads)", t[0]))
            torch_version = t[1]
    last, times = time_interleaved(impls, args.repeats)
    first = {k: float(v[0]) for k, v in last.items()}
    ref = first[impls[0].name]
    print(f"\n{name}: {cfg}; first losses: " + ", ".join(f"{v:.6f}" for v in first.values()))
    if any(abs(v - ref) > 1e-4 * abs(ref) for v in first.values()):
        sys.exit(f"{name}: the rows' first losses differ ({first}): not the same computation")
    stats = summarize(times)
    print_rows(stats, impls[0].name, args.steps)
    return {
        "config": name,
        "shape": cfg,
        "steps": args.steps,
        "stats": stats,
        "compile_s": {im.name: im.compile_s for im in impls},
        "torch": torch_version,
        "first_loss": first,
    }


def section(results: list[dict], env: dict, cmd: str) -> str:
    lines = [*section_header(env, cmd).copy()]
    lines[0] = lines[0].replace("## ", "## Transformer (GPT training step), ")
    lines += [
        "One interleaved run (`timing.time_interleaved`): on a shared machine compare the "
        "ratios, not the absolute times. The first losses of all rows agree (same weights, "
        "same batches); dropout 0 everywhere.",
        "",
    ]
    checks = []
    for r in results:
        stats, steps = r["stats"], r["steps"]
        jnet_s = next(iter(stats.values()))["median_s"]
        c = r["shape"]
        lines += [
            f"**{r['config']}**: {c['layers']} layers, {c['heads']} heads, {c['dim']} "
            f"wide, context {c['block']}, batch {c['batch']}; {steps} steps per run, "
            f"{len(next(iter(stats.values()))['times_s'])} interleaved repeats.",
            "",
        ]
        table = [
            [
                n,
                f"{1000 * s['median_s'] / steps:.1f}",
                f"{1000 * s['min_s'] / steps:.1f}",
                f"{s['median_s'] / jnet_s:.2f}",
            ]
            for n, s in stats.items()
        ]
        lines += [
            markdown_table(["row", "median ms/step", "best ms/step", "time / jnet's"], table),
            "",
        ]
        fastest = min(s["median_s"] for n, s in stats.items() if n.startswith("jax.grad"))
        checks.append(
            (
                f"{r['config']}: jnet <= 1.0x the fastest jax.grad",
                f"{jnet_s / fastest:.2f}x",
                jnet_s <= fastest,
            )
        )
        torch_s = [s["median_s"] for n, s in stats.items() if n.startswith("PyTorch")]
        if torch_s:
            checks.append(
                (
                    f"{r['config']}: jnet <= 1.0x PyTorch eager (CPU)",
                    f"{jnet_s / torch_s[0]:.2f}x",
                    jnet_s <= torch_s[0],
                )
            )
    return "\n".join(lines + checks_table(checks))


def main(argv=None) -> list[dict]:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from jnet import xla_flags

    xla_flags.prefer_eigen_kernels()
    names = (
        ["quick"] if args.quick else ["cpu"] + (["gpu"] if jax.default_backend() == "gpu" else [])
    )
    results = [bench(n, CONFIGS[n], args) for n in names]
    env = environment()
    md = args.write_md or (None if args.quick else REPO / "BENCHMARKS.md")
    if md is not None:
        cmd = command("benchmarks/transformer.py", sys.argv[1:] if argv is None else argv)
        update_markdown(
            md, f"transformer-{env['platform']}", section(results, env, cmd), MD_TEMPLATE
        )
        print(f"updated the transformer-{env['platform']} section of {md}")
    return results


if __name__ == "__main__":
    main()
