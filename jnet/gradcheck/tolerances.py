"""How close is close enough: tolerances by dtype, scaled to the function's size.

Two comparisons, two kinds of tolerance:

- against autodiff of a reference forward (`rtol`): analytic against analytic, so the only
  difference is rounding. float64 is the strict mode, 1e-10 whatever the size. In float32 and
  bfloat16 a gradient entry is a sum over up to `size` terms, each rounded to the dtype's
  epsilon; such errors grow like `eps * sqrt(size)` (a random walk), so
  `rtol = clip(2 * eps * sqrt(size), floor, ceiling)`. The ceiling keeps a real error visible:
  float32 never allows more than 1e-3, so a gradient 1% off always fails.
- against central finite differences (`fd_tol`, step `fd_eps`): the defaults of
  `jax.test_util.check_grads` (1e-5 in float64, 2e-3 in float32), plus a rounding floor
  computed from the values actually differenced (see `probes.py`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# dtype -> (max relative error vs jax.grad, finite-difference tolerance, step): the
# size-independent defaults (the floors of the scaled rtol). The finite-difference
# tolerances are jax.test_util.check_grads' defaults.
TOLERANCES = {
    "float64": (1e-10, 1e-5, 1e-4),
    "float32": (1e-5, 2e-3, 1e-2),
    "bfloat16": (2e-2, 1e-1, 1e-1),
}

# The largest rtol a size may scale to: below the errors a checker must catch.
_CEILING = {"float64": 1e-10, "float32": 1e-3, "bfloat16": 1e-1}


class Tolerances(NamedTuple):
    """The tolerances one check used, and why (printed under every report)."""

    dtype: str  # the least precise floating dtype among the checked inputs
    rtol: float  # max relative error against autodiff of the reference
    fd_tol: float  # max relative error against central finite differences
    fd_eps: float  # finite-difference step along a unit direction
    size: int  # elements of the checked inputs (the longest possible reduction)
    reason: str  # how rtol was chosen

    def describe(self) -> str:
        return (
            f"tolerances ({self.dtype}, size {self.size}): rtol {self.rtol:.1e} vs autodiff "
            f"({self.reason}); fd_tol {self.fd_tol:.1e} at step {self.fd_eps:.1e}"
        )


def least_precise(leaves: list[Any]) -> str:
    """The floating dtype with the largest epsilon among `leaves` (float64 if none)."""
    names = [
        jnp.dtype(jnp.result_type(a)).name
        for a in leaves
        if jnp.issubdtype(jnp.result_type(a), jnp.floating)
    ]
    if not names:
        return "float64"
    return max(names, key=lambda n: float(jnp.finfo(n).eps))


def for_dtype(
    dtype: Any,
    size: int,
    *,
    rtol: float | None = None,
    fd_tol: float | None = None,
    fd_eps: float | None = None,
    where: str = "check_vjp",
) -> Tolerances:
    """Tolerances for checking a function of `size` input elements in `dtype`.

    Explicit `rtol`, `fd_tol` and `fd_eps` override the defaults (0 is a legitimate, exact
    tolerance). Raises a ValueError for a dtype without defaults unless all three are given.
    """
    name = jnp.dtype(dtype).name
    known = TOLERANCES.get(name)
    if known is None and None in (rtol, fd_tol, fd_eps):
        raise ValueError(
            f"{where}: no default tolerances for {name} (known: {', '.join(TOLERANCES)}); "
            "pass rtol, fd_tol and fd_eps, or check in float64"
        )
    size = max(int(size), 1)
    if rtol is not None:
        reason = "given"
    elif name == "float64":
        rtol, reason = known[0], "float64: strict, independent of size"
    else:
        eps = float(jnp.finfo(name).eps)
        scaled = 2 * eps * math.sqrt(size)
        rtol = min(max(known[0], scaled), _CEILING[name])
        reason = (
            f"2*eps*sqrt(size) = {scaled:.1e}, clipped to [{known[0]:.0e}, {_CEILING[name]:.0e}]"
        )
    fd_tol = known[1] if fd_tol is None else fd_tol
    fd_eps = known[2] if fd_eps is None else fd_eps
    if not fd_eps > 0:
        raise ValueError(f"{where}: fd_eps must be positive; got {fd_eps}")
    if rtol < 0 or fd_tol < 0:
        raise ValueError(f"{where}: tolerances must be >= 0; got rtol {rtol}, fd_tol {fd_tol}")
    return Tolerances(name, float(rtol), float(fd_tol), float(fd_eps), size, reason)


def max_abs(a: Any) -> float:
    """The largest |entry| of `a` as a float (0 for an empty array; NaN anywhere: inf)."""
    a = np.asarray(a, np.float64)
    if a.size == 0:
        return 0.0
    m = float(np.max(np.abs(a)))
    return m if not math.isnan(m) else math.inf


def error_scale(scale: float, overall: float, tol: Tolerances) -> float:
    """What one leaf's error against autodiff is measured against (`rel_err`'s denominator).

    The leaf's largest reference entry (`scale`), but never less than the rounding level of
    the whole gradient: `overall * min(10 * eps / rtol, 1)`, `overall` being the largest
    entry of any leaf. A gradient that is zero in exact arithmetic (a conv bias before a
    batch norm in training mode: the norm subtracts the batch mean) comes out of any float
    computation as rounding noise, about eps times the terms that cancelled; measured
    against itself, that noise would be a 100% error. A real error of more than
    `10 eps * overall` still fails, however small the leaf. An exact check (rtol 0) has no
    floor.
    """
    floor = 0.0
    if tol.rtol > 0 and math.isfinite(overall):  # a NaN reference sets no floor: it fails
        floor = overall * min(10 * float(jnp.finfo(tol.dtype).eps) / tol.rtol, 1.0)
    return max(scale, floor, float(np.finfo(np.float64).tiny))


def fd_floor(overall: float, tol: Tolerances) -> float:
    """The least scale a finite-difference comparison is judged against (`probes.judge`'s
    `scale`): the rounding level of the whole derivative, `overall` being the largest typical
    projection `|<g, u>|` of any leaf. As in `error_scale`: a leaf whose gradient is zero in
    exact arithmetic (a conv bias before a training batch norm) comes out as rounding
    noise, which differences of the exact function do not reproduce. A real error of more
    than `10 eps * overall` still fails."""
    if tol.fd_tol <= 0 or not math.isfinite(overall):
        return 0.0
    return overall * min(10 * float(jnp.finfo(tol.dtype).eps) / tol.fd_tol, 1.0)


_warned_x64 = False


def warn_without_x64(dtype_name: str, where: str) -> None:
    """Warns once per process when a low-precision check cannot use float64 references."""
    global _warned_x64
    if _warned_x64 or dtype_name == "float64" or jax.config.jax_enable_x64:
        return
    _warned_x64 = True
    warnings.warn(
        f"{where}: checking in {dtype_name} without float64: finite differences run in "
        f"{dtype_name} too, which hides small errors and blurs large ones. Enable float64 "
        'first: jax.config.update("jax_enable_x64", True)',
        stacklevel=3,
    )


def fd_dtype() -> Any:
    """The dtype finite differences are evaluated in: float64 when JAX has it."""
    return np.float64 if jax.config.jax_enable_x64 else np.float32
