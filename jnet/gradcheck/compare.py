"""The engine behind every verdict: derivatives under test against reference derivatives and
against finite differences, one row per (input leaf, output leaf), by random projections.

`fc` and `fr` map a list of floating-point input leaves to a list of floating-point output
leaves. Reverse mode (`reverse_rows`): `jax.vjp(fc)` is the VJP under test (a custom rule,
a hand-written backward, or for order 2 reverse-over-reverse through one), `jax.vjp(fr)`
the autodiff reference. Forward mode (`forward_rows`, for `check_jvp`): `jax.jvp` of each.
Both judge `<v, J u>` against central differences of `fc` with `probes.judge`, and every
entry of `vᵀJ` (or `J u`) against the reference with `tolerances.error_scale`.

Speed: a check compiles one program for the derivatives under test and the reference
together, which also returns the function's value (small ones without XLA's backend
optimisations: `compiled`), and runs it for every probe; a small check's finite differences
run through it too, a large one's (or one differenced in float64 but computed in float32)
through a second program. Directions and steps are formed on the host in numpy, so no eager
operation is compiled on the way.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import numpy as np

from jnet.gradcheck.probes import Probe, probe_input, unit_direction
from jnet.gradcheck.report import VJPRow
from jnet.gradcheck.tolerances import Tolerances, error_scale, fd_dtype, fd_floor, max_abs

Leaves = list[jax.Array]


# Below this many input elements a check's programs are compiled without XLA's backend
# optimisations: they run a few times each, so compiling dominates (measured: about 40%
# less time to compile and run the Quickstart's checks; the values agree to rounding).
SMALL = 100_000


def compiled(fun: Callable, x: list) -> Callable:
    """`jax.jit(fun)`, quick to compile for a small check (`SMALL`), optimised otherwise.

    `x`: the arrays (or `jax.ShapeDtypeStruct`s) the program works on, to size it.
    """
    if _size_of(x) < SMALL:
        return jax.jit(fun, compiler_options={"xla_backend_optimization_level": 0})
    return jax.jit(fun)


def _size_of(x) -> int:
    """Elements in the leaves of `x` (arrays or `jax.ShapeDtypeStruct`s)."""
    return sum(math.prod(a.shape) if hasattr(a, "shape") else int(np.size(a))
               for a in jax.tree.leaves(x))  # fmt: skip


def on_device(a) -> jax.Array:
    """`a` as a JAX array; numpy data is put on the device, not staged through a compiled
    copy (which `jnp.asarray` compiles once per shape)."""
    return a if isinstance(a, jax.Array) else jax.device_put(np.asarray(a))


def _np(a) -> np.ndarray:
    return np.asarray(np.asarray(a), np.float64)


def _host(a: np.ndarray, like) -> np.ndarray:
    """`a` in the dtype of `like` (an array or ShapeDtypeStruct), on the host."""
    return np.asarray(a).astype(like.dtype)


def _fd_evaluator(fc: Callable, x: Leaves, jit: bool) -> tuple[Callable, list, list, str]:
    """`(evaluate, x_fd, eps per output, precision)`: evaluations in float64 where JAX has it.

    Differencing a float32 function's float64 extension measures the derivative it means,
    free of float32 rounding. A function that refuses float64 inputs is differenced in its
    own dtype.
    """
    run = compiled(fc, x) if jit else fc
    x_fd = [np.asarray(a).astype(fd_dtype()) for a in x]
    try:
        out = run(x_fd)
    except (TypeError, ValueError):
        x_fd = [np.asarray(a) for a in x]
        out = run(x_fd)
    eps = [float(np.finfo(o.dtype).eps) for o in out]
    precision = ", ".join(sorted({np.dtype(o.dtype).name for o in out}))

    def evaluate(xs):
        return [_np(o) for o in run(xs)]

    return evaluate, x_fd, eps, precision


def reverse_rows(
    fc: Callable[[Leaves], Leaves],
    fr: Callable[[Leaves], Leaves] | None,
    x: Leaves,
    in_labels: list[str],
    out_labels: list[str],
    tol: Tolerances,
    probes: int,
    rng: np.random.Generator,
    case: str,
    order: int = 1,
    jit: bool = True,
) -> tuple[list[VJPRow], list[str], str]:
    """Rows for every (input, output) pair, notes (kinks) and the precision of the FD."""
    y = jax.eval_shape(fc, x)
    _same_shapes(case, y, fr, x)
    cot = [[rng.standard_normal(o.shape) for o in y] for _ in range(probes)]

    def pulls(xs, ct):  # (f(xs), the VJP under test, the reference's)
        out, pull = jax.vjp(fc, xs)
        ref = None if fr is None else jax.vjp(fr, xs)[1](ct)[0]
        return out, pull(ct)[0], ref

    pulls = compiled(pulls, x) if jit else pulls
    g_c, g_r = {}, {}
    for p in range(probes):
        for j in range(len(y)):
            ct = [_host(cot[p][j] if k == j else np.zeros(o.shape), o) for k, o in enumerate(y)]
            _, c, r = pulls(x, ct)
            _check_shapes(case, c, x, in_labels)
            g_c[p, j] = [_np(g) for g in c]
            g_r[p, j] = None if r is None else [_np(g) for g in r]

    def typical(g) -> float:  # |<g, u>| for a random unit u
        return float(np.linalg.norm(g)) / math.sqrt(max(g.size, 1))

    def directional(p, i):
        grads = [g_c[p, j][i] for j in range(len(y))]
        floors = [fd_floor(max(typical(g) for g in g_c[p, j]), tol) for j in range(len(y))]
        scales = [max(typical(g), f) for g, f in zip(grads, floors, strict=True)]
        return (lambda u: [float(np.sum(g * u)) for g in grads]), scales

    # A small check's differences evaluate f through `pulls` when it runs in the FD's dtype
    # already: one program to compile, not two (the VJPs it also computes cost little there).
    zeros = [_host(np.zeros(o.shape), o) for o in y]
    shared = jit and _size_of(x) < SMALL and all(np.dtype(a.dtype) == fd_dtype() for a in x)
    f_fd = (lambda xs: pulls(xs, zeros)[0]) if shared else fc
    found, avoided, precision = _differences(f_fd, x, len(y), cot, directional, tol, rng,
                                             jit and not shared)  # fmt: skip

    def block(p, i, j):
        return g_c[p, j][i], (None if fr is None else g_r[p, j][i])

    def others(p, i, j):  # a (near-)zero block is judged against the output's other blocks
        return [g_r[p, j][k] for k in range(len(x))]

    rows = _rows(case, order, "vjp", in_labels, out_labels, probes, found, block, others, tol)
    return rows, _kink_notes(case, order, avoided, found, fr is not None), precision


def forward_rows(
    fc: Callable[[Leaves], Leaves],
    fr: Callable[[Leaves], Leaves] | None,
    x: Leaves,
    in_labels: list[str],
    out_labels: list[str],
    tol: Tolerances,
    probes: int,
    rng: np.random.Generator,
    case: str,
    order: int = 1,
    jit: bool = True,
) -> tuple[list[VJPRow], list[str], str]:
    """Forward mode: `jax.jvp(fc)` along unit directions of one input leaf at a time,
    against `jax.jvp(fr)` (every entry of `J u`) and central differences of `fc`."""
    y = jax.eval_shape(fc, x)
    _same_shapes(case, y, fr, x)
    cot = [[rng.standard_normal(o.shape) for o in y] for _ in range(probes)]

    def pushes(xs, ts):
        got = [jax.jvp(fun, (xs,), (ts,))[1] for fun in (fc, fr) if fun is not None]
        return got + [None] * (2 - len(got))

    pushes = compiled(pushes, x) if jit else pushes

    def push(i, u):
        ts = [_host(u if k == i else np.zeros(np.shape(a)), a) for k, a in enumerate(x)]
        c, r = pushes(x, ts)
        return [_np(o) for o in c], None if r is None else [_np(o) for o in r]

    j_c, j_r = {}, {}
    for p in range(probes):
        for i in range(len(x)):
            j_c[p, i], j_r[p, i] = push(i, unit_direction(rng, np.shape(x[i])))

    def directional(p, i):
        typical = [float(np.linalg.norm(o)) for o in j_c[p, i]]  # |<v, J u>| for a random v
        scales = [max(t, fd_floor(max(typical), tol)) for t in typical]

        def along(u):
            return [float(np.sum(v * o)) for v, o in zip(cot[p], push(i, u)[0], strict=True)]

        return along, scales

    found, avoided, precision = _differences(fc, x, len(y), cot, directional, tol, rng, jit)

    def block(p, i, j):
        return j_c[p, i][j], (None if fr is None else j_r[p, i][j])

    def others(p, i, j):  # a (near-)zero block is judged against the input's other blocks
        return list(j_r[p, i])

    rows = _rows(case, order, "jvp", in_labels, out_labels, probes, found, block, others, tol)
    return rows, _kink_notes(case, order, avoided, found, fr is not None), precision


def _same_shapes(case, y, fr, x) -> None:
    if fr is None:
        return
    shapes, shapes_r = [o.shape for o in y], [o.shape for o in jax.eval_shape(fr, x)]
    if shapes != shapes_r:
        raise ValueError(
            f"{case}: the function's outputs have shapes {shapes} but the reference's "
            f"{shapes_r}; they must compute the same thing"
        )


def _check_shapes(case, grads, x, in_labels) -> None:
    for i, (g, a) in enumerate(zip(grads, x, strict=True)):
        if np.shape(g) != np.shape(a):
            raise ValueError(
                f"{case}: the VJP's gradient for {in_labels[i]} has shape {np.shape(g)}, "
                f"expected {np.shape(a)}"
            )


def _differences(fc, x, n_out, cot, directional, tol, rng, jit):
    """`(probes per (i, j), probes that avoided a kink, precision)`: every probe judged."""
    evaluate, x_fd, eps, precision = _fd_evaluator(fc, x, jit)
    base = evaluate(x_fd)
    found: dict[tuple[int, int], list[Probe]] = {
        (i, j): [] for i in range(len(x)) for j in range(n_out)
    }
    avoided = 0
    for p in range(len(cot)):
        for i in range(len(x)):
            along_u, scales = directional(p, i)
            verdicts, n = probe_input(
                evaluate, x_fd, base, i, along_u, scales, cot[p], eps, tol, rng
            )
            avoided += n
            for j, probe in enumerate(verdicts):
                found[i, j].append(probe)
    return found, avoided, precision


def _rows(case, order, mode, in_labels, out_labels, probes, found, block, others, tol):
    rows = []
    for i, in_label in enumerate(in_labels):
        for j, out_label in enumerate(out_labels):
            probes_ij = found[i, j]
            smooth = [q.err for q in probes_ij if q.status != "kink"]
            fd_err = max(smooth) if smooth else None
            fd_ok = all(q.status != "fail" for q in probes_ij)
            abs_err = rel_err = None
            ref_ok = True
            if block(0, i, j)[1] is not None:
                pairs = [block(p, i, j) for p in range(probes)]
                abs_err = max(max_abs(c - r) for c, r in pairs)
                scale = max(max_abs(r) for _, r in pairs)
                overall = max(max_abs(r) for p in range(probes) for r in others(p, i, j))
                rel_err = abs_err / error_scale(scale, overall, tol) if abs_err != 0.0 else 0.0
                ref_ok = bool(rel_err <= tol.rtol)
            n_kinks = len(probes_ij) - len(smooth)
            rows.append(VJPRow(case, in_label, out_label, order, abs_err, rel_err, fd_err,
                               n_kinks, bool(fd_ok and ref_ok), mode))  # fmt: skip
    return rows


def _kink_notes(case, order, avoided, found, with_reference) -> list[str]:
    kinks = sum(q.status == "kink" for probes in found.values() for q in probes)
    notes = []
    if avoided:
        notes.append(
            f"{case}: {avoided} order-{order} probe(s) first crossed a kink; a sparser "
            "direction avoided it"
        )
    if kinks:
        where = "the autodiff comparison still covers them" if with_reference else (
            "they are unverified"
        )
        notes.append(
            f"{case}: {kinks} order-{order} probe(s) crossed a kink of a piecewise-linear "
            f"function along every direction tried (the differences either side disagree); "
            f"they are left out of fd err and not counted as failures; {where}"
        )
    return notes
