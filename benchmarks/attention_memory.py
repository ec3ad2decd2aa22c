"""Attention's memory and speed: jnet.self_attention's hand-written backward vs jax.grad.

Memory: XLA's own accounting of one whole gradient computation (dparams and dx of
`sum(y * c)` for a fixed random c), `jax.jit(grad).lower(...).compile().memory_analysis()`:
its temporary bytes (what the program allocates beyond its arguments and outputs) for

  jnet    `jax.grad` through `jnet.apply(self_attention(heads))`: the hand-written backward,
          on the path the layer picks for that T (whole matrix up to `simple_max_t()`,
          tiles of BLOCK beyond)
  simple  the same layer forced onto the whole-matrix path at every T
  naive   `jax.grad` of `naive_attention`, the plain forward (whole softmax)

Nothing runs for the memory table (compilation only), so it is deterministic and cheap.

Speed (`--speed`): forward + backward of the layer at the GPT configurations' shapes, the
whole-matrix path against the blocked one, medians of interleaved repeats; this places
the switch.

    python benchmarks/attention_memory.py                  # memory, T = 512 ... 8192
    python benchmarks/attention_memory.py --speed          # and the speed table
    python benchmarks/attention_memory.py --quick          # T = 128, 256 (a smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import jax
import jax.numpy as jnp
from timing import Impl, summarize, time_interleaved

import jnet
from jnet.gradcheck.attention_cases import naive_attention
from jnet.layers import attention


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--speed", action="store_true", help="also time simple vs blocked")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per row (--speed)")
    p.add_argument("--quick", action="store_true", help="T = 128, 256 only; no timing")
    return p.parse_args(argv)


def _grad_fn(forward):
    """`jit(grad)` of `sum(forward(params, x) * c)` for params and x: a whole gradient."""

    def loss(params, x, c):
        return jnp.sum(forward(params, x) * c)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def _inputs(batch, t, dim, heads, dtype=jnp.float32):
    layer = jnet.self_attention(heads)
    kx, kp, kc = jax.random.split(jax.random.key(0), 3)
    _, params = layer.init(kp, (batch, t, dim))
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    x = jax.random.normal(kx, (batch, t, dim), dtype)
    return params, x, jax.random.normal(kc, (batch, t, dim), dtype)


@contextlib.contextmanager
def whole_matrix():
    """Every self_attention traced inside takes the whole-matrix path, whatever its T (the
    forward and the backward read `SIMPLE_MAX_T` while tracing, so compile inside)."""
    saved = attention.SIMPLE_MAX_T
    attention.SIMPLE_MAX_T = {"default": sys.maxsize}
    try:
        yield
    finally:
        attention.SIMPLE_MAX_T = saved


def compiled(forward, params, x, c, *, whole: bool = False):
    """The compiled whole-gradient program of `forward` (whole: on the whole-matrix path)."""
    with whole_matrix() if whole else contextlib.nullcontext():
        return _grad_fn(forward).lower(params, x, c).compile()


def temp_bytes(forward, params, x, c, *, whole: bool = False) -> int:
    """Temporary bytes XLA allocates for the whole gradient (compilation only)."""
    return int(compiled(forward, params, x, c, whole=whole).memory_analysis().temp_size_in_bytes)


def memory_rows(lengths, dim, heads, batch) -> list[tuple]:
    """`(T, jnet, jnet whole-matrix, naive)` temporary bytes for each T."""
    rows = []
    jn = jnet.apply(jnet.self_attention(heads))
    naive = lambda p, x: naive_attention(p, x, heads, causal=True)  # noqa: E731
    for t in lengths:
        args = _inputs(batch, t, dim, heads)
        rows.append(
            (t, temp_bytes(jn, *args), temp_bytes(jn, *args, whole=True), temp_bytes(naive, *args))
        )
    return rows


def print_memory(rows, dim, heads, batch) -> None:
    print(f"\nTemporary bytes of one whole gradient (D {dim}, {heads} heads, batch {batch}, "
          f"float32, causal); whole matrix up to T = {attention.simple_max_t()}, "
          f"tiles of {attention.BLOCK} beyond")  # fmt: skip
    print("| T | jnet MiB | jnet whole-matrix MiB | naive jax.grad MiB | jnet / naive "
          "| jnet / previous T |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    prev = None
    for t, jn, simple, naive in rows:
        growth = "" if prev is None else f"{jn / prev:.2f}x"
        print(f"| {t} | {jn / 2**20:.1f} | {simple / 2**20:.1f} | {naive / 2**20:.1f} | "
              f"{jn / naive:.3f} | {growth} |")  # fmt: skip
        prev = jn


def speed_rows(repeats: int) -> None:
    """Forward + backward (jit) of the layer, whole matrix vs blocks, at the GPT shapes."""
    configs = [  # (label, N, T, D, heads): nanoGPT's cpu and gpu configurations, and between
        ("cpu config", 12, 64, 128, 4),
        ("cpu config at T=128", 12, 128, 128, 4),
        ("cpu config at T=256", 12, 256, 128, 4),
        ("gpu config, batch 8", 8, 256, 384, 6),
        ("T=1024", 1, 1024, 128, 4),
    ]
    print(f"\nForward + backward of self_attention, ms (median of {repeats} interleaved "
          f"repeats, float32, causal, tiles of {attention.BLOCK})")  # fmt: skip
    print("| shape (N, T, D, heads) | whole matrix | blocked | blocked / whole |")
    print("|---|---|---|---|")
    for label, n, t, d, h in configs:
        args = _inputs(n, t, d, h)
        fns = {
            "whole": compiled(jnet.apply(jnet.self_attention(h)), *args, whole=True),
            "blocked": compiled(
                jnet.apply(jnet.self_attention(h, block_size=attention.BLOCK)), *args
            ),
        }
        impls = [
            Impl(k, lambda f=f, a=args: jax.block_until_ready(f(*a))) for k, f in fns.items()
        ]
        stats = summarize(time_interleaved(impls, repeats)[1])
        whole, blocked = stats["whole"]["median_s"], stats["blocked"]["median_s"]
        print(f"| {label} ({n}, {t}, {d}, {h}) | {1000 * whole:.2f} | {1000 * blocked:.2f} | "
              f"{blocked / whole:.2f} |")  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    lengths = [128, 256] if args.quick else args.lengths
    rows = memory_rows(lengths, args.dim, args.heads, args.batch)
    print_memory(rows, args.dim, args.heads, args.batch)
    if args.speed and not args.quick:
        speed_rows(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
