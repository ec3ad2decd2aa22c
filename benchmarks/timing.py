"""Timing for the benchmarks: compile apart, warm up, then interleaved rotated repeats, medians.

Any benchmark script (mlp.py, and the cnn/lstm ones) builds its implementations as `Impl`s
and hands them to `time_interleaved`:

    impls = [Impl("jnet", run_jnet, compile_s), Impl("reference", run_ref, compile_s2)]
    last, times = time_interleaved(impls, repeats=5)   # warm-up results, seconds per run
    stats = summarize(times)   # {"jnet": {"median_s", "min_s", "max_s", "times_s"}, ...}

`Impl.run()` does one timed unit of work and returns something concrete (read back from
the device: a jitted call must end in `jax.device_get` or `block_until_ready`, or the
clock stops before the device does). Compile with `compile_timed` first so compilation
is never inside a timing; `kernel_count` reads the compiled program's innermost loop.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple


class Impl(NamedTuple):
    """A runnable implementation: `run()` does one timed unit of work and returns its result.

    Attributes:
      name: its row's name ("jnet", "reference", "numpy", ...).
      run: the work; its result must be on the host (read back) when it returns.
      compile_s: seconds its compilation took (0.0 for none).
      kernels: top-level ops in the innermost loop body of the compiled program, or None.
      compiled: the compiled program (for HLO dumps), or None.
    """

    name: str
    run: Callable[[], Any]
    compile_s: float = 0.0
    kernels: int | None = None
    compiled: Any = None


def compile_timed(jitted: Any, *args: Any) -> tuple[Any, float]:
    """`(jitted.lower(*args).compile(), seconds it took)`: compile time, reported apart."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


def time_interleaved(
    impls: Sequence[Impl], repeats: int
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Runs each implementation once (warm-up), then `repeats` rounds of all of them.

    Each round runs every implementation once, in an order rotated by one each round, so
    that a noisy neighbour slows them alike and none always follows the same one (whoever
    runs right after numpy meets OpenBLAS threads still spinning down).

    Returns:
      `({name: warm-up result}, {name: [seconds of each round]})`.
    """
    last = {im.name: im.run() for im in impls}
    times: dict[str, list[float]] = {im.name: [] for im in impls}
    for r in range(repeats):
        for im in [*impls[r % len(impls) :], *impls[: r % len(impls)]]:
            start = time.perf_counter()
            im.run()
            times[im.name].append(time.perf_counter() - start)
    return last, times


def summarize(times: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """`{name: {"median_s", "min_s", "max_s", "times_s"}}` of `time_interleaved`'s times."""
    return {
        name: {
            "median_s": statistics.median(ts),
            "min_s": min(ts),
            "max_s": max(ts),
            "times_s": list(ts),
        }
        for name, ts in times.items()
    }


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    """The median wall time of `repeats` calls of `fn` (one implementation, no interleaving)."""
    return summarize(time_interleaved([Impl("fn", fn)], repeats)[1])["fn"]["median_s"]


def fastest(runs: dict[str, Callable[[], Any]], label: str, steps: int, repeats: int = 3) -> str:
    """The key of the fastest of `runs` by median of `repeats` interleaved rounds; prints each.

    The probe that picks a lowering before the timed rows: `steps` converts to ms per step.
    """
    times = summarize(time_interleaved([Impl(k, run) for k, run in runs.items()], repeats)[1])
    for kind, t in times.items():
        print(f"probe: {label} [{kind}] {1000 * t['median_s'] / steps:.0f} ms/step")
    return min(times, key=lambda kind: times[kind]["median_s"])


def print_rows(stats: dict[str, dict[str, Any]], reference: str, steps: int) -> None:
    """The table of `summarize`'s stats: median s, ms per step, ratio to `reference`'s row."""
    ref, repeats = stats[reference]["median_s"], len(next(iter(stats.values()))["times_s"])
    print(f"\n{'row':<52} {'median s':>9} {'ms/step':>8} {'vs ref':>7}   "
          f"({repeats} interleaved repeats of {steps} steps)")  # fmt: skip
    print("-" * 82)
    for name, st in stats.items():
        med = st["median_s"]
        print(f"{name:<52} {med:>9.3f} {1000 * med / steps:>8.1f} {med / ref:>7.2f}")
    print("min-max s: " + "; ".join(f"{n.split(' (')[0]} {st['min_s']:.2f}-{st['max_s']:.2f}"
                                    for n, st in stats.items()))  # fmt: skip


def kernel_count(compiled: Any) -> int | None:
    """Top-level instructions of the innermost while body: about the kernels per step on GPU.

    Bookkeeping instructions (parameters, tuples, constants, bitcasts) launch nothing.
    None where the backend keeps no HLO text or the program has no loop.
    """
    try:
        text = compiled.as_text()
    except Exception:  # some backends keep no HLO text
        return None
    bodies, comps, current = set(re.findall(r"body=%?([\w.\-]+)", text)), {}, None
    for line in text.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) \(.*\{$", line)
        if head:
            current = comps.setdefault(head.group(1), [])
        elif line.startswith("}"):
            current = None
        elif current is not None and " = " in line:
            current.append(line)
    free = ("parameter(", "get-tuple-element(", "tuple(", "constant(", "bitcast(")
    counts = [
        sum(1 for ins in comps[name] if not any(f" {op}" in ins.split(" = ", 1)[1] for op in free))
        for name in bodies
        if name in comps and not any("while(" in ins for ins in comps[name])
    ]
    return max(counts) if counts else None
