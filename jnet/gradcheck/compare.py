"""The engine behind every check: a function's VJP against a reference VJP and against
finite differences, one row per (input leaf, output leaf), by random projections.

`fc` and `fr` map a list of floating-point input leaves to a list of floating-point output
leaves; `jax.vjp(fc)` is the VJP under test (a custom_vjp rule, a hand-written backward, or
for order 2 reverse-over-reverse through one), `jax.vjp(fr)` the autodiff reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jnet.gradcheck.probes import (
    RETRY_SUPPORT,
    STEPS,
    Probe,
    judge,
    line_values,
    unit_direction,
)
from jnet.gradcheck.report import VJPRow
from jnet.gradcheck.tolerances import Tolerances, error_scale, fd_dtype, max_abs

Leaves = list[jax.Array]


def _np(a) -> np.ndarray:
    return np.asarray(np.asarray(a), np.float64)


def _pullback(fun: Callable, jit: bool) -> Callable[[Leaves, Leaves], Leaves]:
    """`(x, cotangents) -> jax.vjp(fun, x)[1](cotangents)[0]`, compiled once per check."""

    def pull(xs, ct):
        return jax.vjp(fun, xs)[1](ct)[0]

    return jax.jit(pull) if jit else pull


def _fd_evaluator(fc: Callable, x: Leaves) -> tuple[Callable, Leaves, list[float], str]:
    """`(evaluate, x_fd, eps per output, precision)`: evaluations in float64 where JAX has it.

    Differencing a float32 function's float64 extension measures the derivative it means,
    free of float32 rounding. A function that refuses float64 inputs is differenced in its
    own dtype.
    """
    wide = fd_dtype()
    x_fd = [a.astype(wide) for a in x]
    try:
        out = fc(x_fd)
    except (TypeError, ValueError):
        x_fd, out = list(x), fc(x)
    eps = [float(jnp.finfo(jnp.result_type(o)).eps) for o in out]
    precision = ", ".join(sorted({jnp.dtype(jnp.result_type(o)).name for o in out}))

    def evaluate(xs):
        return [_np(o) for o in fc(xs)]

    return evaluate, x_fd, eps, precision


def first_order(
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
) -> tuple[list[VJPRow], list[str]]:
    """Rows for every (input, output) pair, and notes (precision used, kinks)."""
    y = jax.eval_shape(fc, x)
    vjp_c, vjp_r = _pullback(fc, jit), None
    if fr is not None:
        vjp_r = _pullback(fr, jit)
        shapes, shapes_r = [o.shape for o in y], [o.shape for o in jax.eval_shape(fr, x)]
        if shapes != shapes_r:
            raise ValueError(
                f"{case}: the function's outputs have shapes {shapes} but the reference's "
                f"{shapes_r}; they must compute the same thing"
            )
    n_in, n_out = len(x), len(y)
    cot = [[rng.standard_normal(o.shape) for o in y] for _ in range(probes)]

    def pull(vjp, p, j):
        ct = [
            jnp.asarray(cot[p][j], o.dtype) if k == j else jnp.zeros(o.shape, o.dtype)
            for k, o in enumerate(y)
        ]
        grads = vjp(x, ct)
        for i, (g, a) in enumerate(zip(grads, x, strict=True)):
            if jnp.shape(g) != jnp.shape(a):
                raise ValueError(
                    f"{case}: the VJP's gradient for {in_labels[i]} has shape {jnp.shape(g)}, "
                    f"expected {jnp.shape(a)}"
                )
        return [_np(g) for g in grads]

    g_c = {(p, j): pull(vjp_c, p, j) for p in range(probes) for j in range(n_out)}
    g_r = {} if vjp_r is None else {k: pull(vjp_r, *k) for k in g_c}

    evaluate, x_fd, eps, precision = _fd_evaluator(jax.jit(fc) if jit else fc, x)
    base = evaluate(x_fd)
    found: dict[tuple[int, int], list[Probe]] = {
        (i, j): [] for i in range(n_in) for j in range(n_out)
    }
    avoided = 0
    for p in range(probes):
        for i in range(n_in):
            grads = [g_c[p, j][i] for j in range(n_out)]
            verdicts, n = _probe(evaluate, x_fd, base, i, grads, cot[p], eps, tol, rng)
            avoided += n
            for j, probe in enumerate(verdicts):
                found[i, j].append(probe)

    rows, kinks = [], 0
    for i in range(n_in):
        for j in range(n_out):
            probes_ij = found[i, j]
            smooth = [q.err for q in probes_ij if q.status != "kink"]
            n_kinks = len(probes_ij) - len(smooth)
            kinks += n_kinks
            fd_err = max(smooth) if smooth else None
            fd_ok = all(q.status != "fail" for q in probes_ij)
            abs_err = rel_err = None
            ref_ok = True
            if g_r:
                abs_err = max(max_abs(g_c[p, j][i] - g_r[p, j][i]) for p in range(probes))
                scale = max(max_abs(g_r[p, j][i]) for p in range(probes))
                # A (near-)zero block is judged against the output's other blocks.
                overall = max(max_abs(g_r[p, j][k]) for p in range(probes) for k in range(n_in))
                rel_err = abs_err / error_scale(scale, overall, tol) if abs_err != 0.0 else 0.0
                ref_ok = bool(rel_err <= tol.rtol)
            rows.append(
                VJPRow(
                    case,
                    in_labels[i],
                    out_labels[j],
                    order,
                    abs_err,
                    rel_err,
                    fd_err,
                    n_kinks,
                    bool(fd_ok and ref_ok),
                )  # fmt: skip
            )
    notes = []
    if avoided:
        notes.append(
            f"{case}: {avoided} order-{order} probe(s) first crossed a kink; a sparser "
            "direction avoided it"
        )
    if kinks:
        where = "the autodiff comparison still covers them" if g_r else "they are unverified"
        notes.append(
            f"{case}: {kinks} order-{order} probe(s) crossed a kink of a piecewise-linear "
            f"function along every direction tried (the differences either side disagree); "
            f"they are left out of fd err and not counted as failures; {where}"
        )
    return rows, [f"{case}: order-{order} finite differences evaluated in {precision}", *notes]


def _probe(evaluate, x_fd, base, i, grads, cots, eps, tol, rng) -> tuple[list[Probe], int]:
    """One probe of input leaf `i`: a verdict per output; kinked ones retried sparser."""
    shape = jnp.shape(x_fd[i])
    n_i = max(math.prod(shape), 1)
    scales = [float(np.linalg.norm(g)) / math.sqrt(n_i) for g in grads]
    result: list[Probe] = [Probe(0.0, "ok")] * len(grads)
    pending, avoided = list(range(len(grads))), 0
    for support in (1.0, *RETRY_SUPPORT):
        u = unit_direction(rng, shape, support)

        def along(t, u=u):
            xs = list(x_fd)
            xs[i] = xs[i] + jnp.asarray(t * u, xs[i].dtype)
            return evaluate(xs)

        def values(h, which, along=along):
            vs = [cots[j] if j in which else None for j in range(len(grads))]
            return line_values(along, base, h, vs, eps)

        analytic = {j: float(np.sum(grads[j] * u)) for j in pending}
        diffs: dict[int, list] = {j: [] for j in pending}
        missed = list(pending)
        for fraction in STEPS:  # shrink the step only for the outputs that missed
            step = values(tol.fd_eps * fraction, missed)
            for j in missed:
                diffs[j].append(step[j])
                result[j] = judge(analytic[j], diffs[j], scales[j], tol.fd_tol)
            missed = [j for j in missed if result[j].status != "ok"]
            if not missed:
                break
        still = [j for j in pending if result[j].status == "kink"]
        avoided += (len(pending) - len(still)) if support < 1.0 else 0
        pending = still
        if not pending:
            break
    return result, avoided
