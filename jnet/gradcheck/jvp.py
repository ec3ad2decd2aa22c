"""`check_jvp`: checks a function's forward-mode derivative, its `jax.custom_jvp` rule.

`jax.custom_jvp` is the custom-derivative form most JAX code uses (`jax.nn.relu`,
`softplus`, `logsumexp`). Its rule is checked three ways, by the engine every check uses:

1. forward mode, `jax.jvp(f)` along random unit directions, against `jax.jvp(reference)`
   (every entry of `J u`) and central finite differences of `f` (`<v, J u>`);
2. the reverse mode JAX derives from the rule by transposition, `jax.vjp(f)`, against the
   reference's and finite differences; a rule JAX cannot transpose (its tangent output not
   linear in the input tangents) is a FAIL whose note says so;
3. with `order=2`, the JVP of the JVP: `x -> jax.jvp(f)(x; t)` for a random `t`, itself
   checked in forward mode, which catches a `stop_gradient` inside a rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from jnet.gradcheck.compare import forward_rows, reverse_rows
from jnet.gradcheck.probes import unit_direction
from jnet.gradcheck.report import VJPReport, VJPRow
from jnet.gradcheck.tolerances import warn_without_x64
from jnet.gradcheck.vjp import prepare


def check_jvp(
    f: Callable[..., Any],
    *args: Any,
    reference: Callable[..., Any] | None = None,
    order: int = 1,
    probes: int = 4,
    seed: int = 0,
    rtol: float | None = None,
    fd_tol: float | None = None,
    fd_eps: float | None = None,
    name: str | None = None,
    names: Sequence[str] | None = None,
) -> VJPReport:
    """Checks the JVP JAX uses for `f(*args)` (its custom_jvp rule), and the VJP it derives.

    Args:
      f: the function under test, `f(*args) -> pytree of arrays`; compiled with `jax.jit`.
      *args: pytrees of arrays; floating-point arrays are checked, the rest passed unchanged
        and noted (as in `check_vjp`).
      reference: a forward computing the same values without the rule (plain JAX,
        differentiated by autodiff); None checks against finite differences only.
      order: 1 checks the JVP and its transpose; 2 also the JVP of the JVP.
      probes: random directions (and cotangents) per input leaf.
      seed: seeds the probes (numpy), so a report is reproducible.
      rtol, fd_tol, fd_eps: override the defaults of `jnet.gradcheck.tolerances.for_dtype`.
      name: shown in the report; default `f.__name__`.
      names: one label per positional argument (default `arg0`, `arg1`, ...).

    Returns:
      A `VJPReport` titled `check_jvp`: rows per input and output leaf with `mode` "jvp"
      (forward) or "vjp" (transposed), order 2 rows labelled `d<output>`; `.ok`,
      `str(report)`, `.to_dict()`.

    Raises:
      NothingToCheck, NonFiniteInput (ValueErrors) as `check_vjp`; ValueError for a bad
      `order` or `probes`, or a reference with other output shapes.
    """
    name = name or getattr(f, "__name__", type(f).__name__)
    where = f"check_jvp({name})"
    if order not in (1, 2):
        raise ValueError(f"{where}: order must be 1 or 2; got {order!r}")
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"{where}: probes must be an int >= 1; got {probes!r}")
    prep = prepare(f, args, names, where, dict(rtol=rtol, fd_tol=fd_tol, fd_eps=fd_eps))
    warn_without_x64(prep.tol.dtype, "check_jvp")
    rng = np.random.default_rng(seed)
    fc, fr = prep.lift(f), None if reference is None else prep.lift(reference)
    rows, notes = [], list(prep.notes)
    rows, notes, precision = _run(forward_rows, fc, fr, prep, prep.out_labels, rng, name, 1,
                                  probes, rows, notes, "the JVP (forward mode) fails")  # fmt: skip
    rows, notes, _ = _run(
        reverse_rows, fc, fr, prep, prep.out_labels, rng, name, 1, probes, rows, notes,
        "JAX cannot derive the reverse mode by transposing the rule (a custom_jvp rule's "
        "tangent output must be linear in the input tangents, built from operations JAX can "
        "transpose)",
    )  # fmt: skip
    if order == 2:
        t = [unit_direction(rng, a.shape).astype(a.dtype) for a in prep.x]
        gc, gr = _tangent_of(fc, t), None if fr is None else _tangent_of(fr, t)
        labels = [f"d{lab}" for lab in prep.out_labels]
        rows, notes, _ = _run(forward_rows, gc, gr, prep, labels, rng, name, 2, probes, rows,
                              notes, "the JVP of the JVP fails")  # fmt: skip
    return VJPReport(name, rows, notes, prep.tol, probes, precision, "check_jvp")


def _tangent_of(fun: Callable, t: list) -> Callable:
    """`x -> jax.jvp(fun)(x; t)`: the rule's tangent output as a function of the point."""

    def g(xs):
        return list(jax.jvp(fun, (xs,), (t,))[1])

    return g


def _run(engine, fc, fr, prep, out_labels, rng, name, order, probes, rows, notes, failure):
    """The engine's rows, or a FAIL row per input and output leaf saying why it failed."""
    mode = "jvp" if engine is forward_rows else "vjp"
    try:
        got, more, precision = engine(fc, fr, prep.x, prep.in_labels, out_labels, prep.tol,
                                      probes, rng, name, order, True)  # fmt: skip
    except Exception as e:  # noqa: BLE001 - any error here is the rule's: a verdict, not a crash
        msg = (str(e).splitlines() or [""])[0][:300]
        failed = [VJPRow(name, i, o, order, None, None, None, 0, False, mode)
                  for i in prep.in_labels for o in out_labels]  # fmt: skip
        return rows + failed, notes + [f"{name}: FAILED: {failure}: {type(e).__name__}: {msg}"], ""
    return rows + got, notes + more, precision
