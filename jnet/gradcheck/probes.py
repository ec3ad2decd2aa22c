"""Random projections, central finite differences and kink detection.

A probe is a pair: a cotangent `v` on one output and a unit direction `u` on one input.
The analytic value `<vjp(v), u>` (= vᵀJu) is compared with the central difference
`v · (f(x + hu) - f(x - hu)) / 2h`. No Jacobian is ever formed: a probe costs one VJP and two
forward evaluations whatever the sizes, which is what makes a million-parameter layer cheap.

Kinks (relu at 0, leaky relu, max pooling's ties): along `t -> f(x + tu)` a kink inside
`[-h, h]` makes the forward difference `(g(h) - g(0)) / h` and the backward one
`(g(0) - g(-h)) / h` disagree by the jump in slope. When the central difference misses the
analytic value by no more than that disagreement, the miss is the kink's doing, not the
gradient's: the probe is retried along sparser directions (which usually avoid the kinked
coordinates) and, if every retry still crosses one, counted as a kink instead of a failure.
On a smooth function the one-sided differences agree to `h * curvature`, far below any real
error, so a wrong gradient is never excused as a kink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

TINY = np.finfo(np.float64).tiny
# Sparser retries for a probe that crossed a kink: the share of coordinates kept.
RETRY_SUPPORT = (0.5, 0.25, 0.125)


def unit_direction(rng: np.random.Generator, shape: tuple, support: float = 1.0) -> np.ndarray:
    """A random direction of norm 1 (float64); `support` < 1 keeps that share of entries."""
    u = rng.standard_normal(shape)
    if support < 1.0 and u.size:
        keep = rng.random(shape) < support
        if not keep.any():
            keep.flat[rng.integers(u.size)] = True
        u = u * keep
    return u / max(float(np.linalg.norm(u)), TINY)


class Probe(NamedTuple):
    """One probe's verdict for one output leaf."""

    err: float  # |analytic - central| / scale
    status: str  # "ok", "fail" or "kink"


def line_values(
    evaluate: Callable[[float], list[np.ndarray]],
    base: list[np.ndarray],
    h: float,
    cotangents: list[np.ndarray | None],
    eps: list[float],
) -> list[tuple[float, float, float, float] | None]:
    """`(central, forward, backward, noise)` differences of `v_j · f_j` along one direction.

    Args:
      evaluate: `t -> f(x + t u)` as float64 arrays, one per output leaf.
      base: `f(x)` as float64 arrays.
      cotangents: `v_j` per output leaf (None: not probed).
      eps: the epsilon each output was computed in: the rounding floor of the differences.
    """
    plus, minus = evaluate(h), evaluate(-h)
    out = []
    for v, p, m, b, e in zip(cotangents, plus, minus, base, eps, strict=True):
        if v is None:
            out.append(None)
            continue
        gp, gm, g0 = float(np.sum(v * p)), float(np.sum(v * m)), float(np.sum(v * b))
        # Each value is rounded to ~eps relative; their difference over h inherits that.
        noise = 4 * e * float(np.sum(np.abs(v) * (np.abs(p) + np.abs(m) + np.abs(b)))) / h
        out.append(((gp - gm) / (2 * h), (gp - g0) / h, (g0 - gm) / h, noise))
    return out


def judge(
    analytic: float,
    diffs: list[tuple[float, float, float, float]],
    scale: float,
    fd_tol: float,
) -> Probe:
    """Compares `<vjp(v), u>` with central differences at shrinking steps (`STEPS`).

    `diffs` holds `line_values` at each step taken so far; the verdict is "ok" as soon as one
    agrees. Two disagreeing steps are told apart: on a smooth function the central difference
    has converged (the miss stays put: an error) and the one-sided slopes agree up to a
    curvature term that shrinks with the step. At a kink the slopes either side keep
    differing (or their gap grows, for a jump in a gradient) or the central difference moves
    as the kink enters or leaves the interval: the miss is the kink's, not the gradient's.
    `scale` is the typical size of `<g, u>` (the gradient's norm over the square root of its
    size), so a direction nearly orthogonal to the gradient is not judged to a relative
    tolerance of a value that is almost zero.
    """
    if not np.isfinite([analytic, *(d for step in diffs for d in step)]).all():
        return Probe(float("inf"), "fail")  # NaN or inf is never a kink's doing
    seen = []
    for central, forward, backward, noise in diffs:
        miss = abs(analytic - central)
        denom = max(abs(analytic), abs(central), scale, TINY)
        if miss <= fd_tol * denom + noise:
            return Probe(miss / denom, "ok")
        seen.append((miss, abs(forward - backward), fd_tol * denom + noise, miss / denom))
    if len(seen) < 2:
        return Probe(seen[-1][3], "fail")
    # Smooth at every pair of steps: the slopes agree within that step's rounding floor, or
    # their gap shrank as curvature's does. A gap that stays above the floor at any step is
    # a kink, whatever the noise at the smaller steps (float32 rounding grows as 1/h, so
    # the last step alone can hide a tie at the point itself: a pooling window's two largest
    # values within the step, or all of them 0 after a relu).
    slopes_agree = all(
        jump <= limit or jump <= 0.5 * before
        for (_, before, _, _), (_, jump, limit, _) in zip(seen, seen[1:], strict=False)
    )
    (miss1, _, _, _), (miss2, _, _, err2) = seen[-2], seen[-1]
    converged = abs(miss2 - miss1) <= 0.25 * max(miss1, miss2)
    return Probe(err2, "fail" if slopes_agree and converged else "kink")


# Steps tried, as fractions of fd_eps, until the difference agrees with the VJP.
STEPS = (1.0, 0.25, 0.0625)


def probe_input(evaluate, x_fd, base, i, along_u, scales, cots, eps, tol, rng):
    """One probe of input leaf `i`: a verdict per output; kinked ones retried sparser.

    `along_u(u)` is the derivative under test along `u`, `<v_j, J u>` for each output `j`.
    """
    shape = np.shape(x_fd[i])
    result: list[Probe] = [Probe(0.0, "ok")] * len(scales)
    pending, avoided = list(range(len(scales))), 0
    for support in (1.0, *RETRY_SUPPORT):
        u = unit_direction(rng, shape, support)

        def along(t, u=u):
            xs = list(x_fd)
            xs[i] = (xs[i] + t * u).astype(xs[i].dtype)
            return evaluate(xs)

        def values(h, which, along=along):
            vs = [cots[j] if j in which else None for j in range(len(scales))]
            return line_values(along, base, h, vs, eps)

        analytic = along_u(u)
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
