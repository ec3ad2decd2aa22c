"""`check_vjp`: checks the VJP JAX uses for any function, jnet layer or not.

The VJP under test is `jax.vjp(f)`: a function's `jax.custom_vjp` rule when it has one (or
`jnet.apply(layer)`'s hand-written backward), plain autodiff otherwise. It is compared with
`jax.vjp(reference)` when a reference forward is given, and always with central finite
differences of `f` itself along random directions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnet.gradcheck.compare import on_device, reverse_rows
from jnet.gradcheck.report import NonFiniteInput, NothingToCheck, VJPReport, VJPRow
from jnet.gradcheck.tolerances import Tolerances, for_dtype, least_precise, warn_without_x64
from jnet.trees import leaf_name


def _label(path, names: Sequence[str] | None) -> str:
    head, rest = path[0].idx, path[1:]
    prefix = f"arg{head}" if names is None else names[head]
    tail = leaf_name(rest) if rest else ""
    return ".".join(s for s in (prefix, tail) if s) or "params"


def _is_float_array(a: Any) -> bool:
    return isinstance(a, jax.Array | np.ndarray) and jnp.issubdtype(a.dtype, jnp.floating)


def _is_float(o: Any) -> bool:  # an output, as jax.eval_shape gives it
    return hasattr(o, "dtype") and jnp.issubdtype(o.dtype, jnp.floating)


def _kind(a: Any) -> str:
    return str(a.dtype) if hasattr(a, "dtype") else type(a).__name__


class Prepared(NamedTuple):
    """A function of pytrees as the engine takes it: floating-point leaves in, out."""

    x: list[jax.Array]  # the floating-point input leaves
    in_labels: list[str]
    out_labels: list[str]  # of the floating-point output leaves
    lift: Callable[[Callable], Callable]  # f -> (float input leaves -> float output leaves)
    notes: list[str]  # what was skipped
    tol: Tolerances


def prepare(
    f: Callable, args: tuple, names: Sequence[str] | None, where: str, tolerances: dict
) -> Prepared:
    """Flattens `f(*args)` to floating-point leaves; refuses what cannot be checked.

    Raises `NothingToCheck` (no floating-point argument or output) and `NonFiniteInput`
    (NaN or inf in a checked argument), both ValueErrors, by name.
    """
    if names is not None and len(names) != len(args):
        raise ValueError(f"{where}: {len(names)} names for {len(args)} arguments")
    flat, treedef = jax.tree_util.tree_flatten_with_path(args)
    leaves = [leaf for _, leaf in flat]
    labels = [_label(path, names) for path, _ in flat]
    diff = [i for i, leaf in enumerate(leaves) if _is_float_array(leaf)]
    notes = [
        f"{labels[i]}: {_kind(leaves[i])}, skipped (not a floating-point array)"
        for i in range(len(leaves))
        if i not in diff
    ]
    if not diff:
        raise NothingToCheck(f"{where}: no floating-point array among the arguments")
    x = [on_device(leaves[i]) for i in diff]
    for i, a in zip(diff, x, strict=True):
        if not np.isfinite(np.asarray(a, np.float64)).all():
            raise NonFiniteInput(f"{where}: {labels[i]} contains NaN or inf")

    def call(fun, xs):
        full = list(leaves)
        for k, i in enumerate(diff):
            full[i] = xs[k]
        return fun(*jax.tree.unflatten(treedef, full))

    out_flat = jax.tree_util.tree_flatten_with_path(jax.eval_shape(lambda xs: call(f, xs), x))[0]
    keep = [j for j, (_, o) in enumerate(out_flat) if _is_float(o)]
    out_labels = ["out" + ("." + leaf_name(p) if p else "") for p, _ in out_flat]
    notes += [
        f"{out_labels[j]}: {_kind(o)}, skipped (not a floating-point array)"
        for j, (_, o) in enumerate(out_flat)
        if j not in keep
    ]
    if not keep:
        raise NothingToCheck(f"{where}: no floating-point output")

    def lift(fun):
        def g(xs):
            o = jax.tree.leaves(call(fun, xs))
            if len(o) != len(out_flat):
                raise ValueError(
                    f"{where}: the reference returns {len(o)} output leaves, f {len(out_flat)}"
                )
            return [o[j] for j in keep]

        return g

    size = sum(math.prod(a.shape) for a in x)
    tol = for_dtype(least_precise(x), size, where=where, **tolerances)
    in_labels = [labels[i] for i in diff]
    return Prepared(x, in_labels, [out_labels[j] for j in keep], lift, notes, tol)


def check_vjp(
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
    jit: bool = False,
) -> VJPReport:
    """Checks the VJP JAX would use for `f(*args)` against autodiff and finite differences.

    Each of `probes` probes draws a random cotangent `v` for one output leaf and a random
    unit direction `u` for one input leaf, and compares
    - `jax.vjp(f)(v)`, every entry, with `jax.vjp(reference)(v)` (if `reference` is given);
    - `vᵀJu = <jax.vjp(f)(v), u>` with `v · (f(x + hu) - f(x - hu)) / 2h`.
    Rows are per (input leaf, output leaf), so a wrong scale in one output or one argument is
    named. No Jacobian is formed, so the cost does not grow with the sizes beyond one VJP and
    two forward calls per probe (a million-parameter layer checks in seconds).

    Args:
      f: the function under test, `f(*args) -> pytree of arrays`; traced eagerly, so it
        must accept JAX arrays (anything `jax.vjp` accepts).
      *args: pytrees of arrays. Floating-point arrays are checked; integer or boolean arrays
        and non-array leaves (Python numbers, strings) are passed unchanged and skipped,
        with a note in the report. Integer or boolean outputs are skipped the same way.
      reference: a forward computing the same values as `f` without its custom rule (plain
        JAX, differentiated by autodiff); None checks against finite differences only.
      order: 1 checks the VJP; 2 also checks Hessian-vector products through it (reverse
        over reverse, as `jax.hessian`-style code and meta-learning use them): the gradient
        of `<w, f>` for a random `w` is differentiated once more and compared with the
        reference's and with finite differences of that gradient.
      probes: random cotangent/direction pairs per row (fast mode). More probes make a
        sparse error (one wrong entry among millions) likelier to show in the differences;
        the reference comparison sees every entry of each `vᵀJ` anyway.
      seed: seeds the probes (numpy), so a report is reproducible.
      rtol, fd_tol, fd_eps: override the defaults of `jnet.gradcheck.tolerances.for_dtype`
        (relative error against the reference, against finite differences, and the step).
      name: shown in the report; default `f.__name__`.
      names: one label per positional argument (default `arg0`, `arg1`, ...); `""` drops
        the prefix so a dict argument's leaves read `w`, `b`.
      jit: compile the VJPs and forward evaluations (one program each, reused by every
        probe); False runs them eagerly, for functions that need concrete values.

    Returns:
      A `VJPReport`: `.ok`, `.failing_inputs`, `.failing_outputs`, `str(report)` (a table
      with the tolerances and notes), `.to_dict()` (JSON-able).

    Raises:
      NothingToCheck: no floating-point argument or output; NonFiniteInput: NaN or inf in a
        checked argument (both ValueErrors). ValueError: a bad `order` or `probes`,
        mismatched reference outputs, or a dtype without default tolerances.
    """
    name = name or getattr(f, "__name__", type(f).__name__)
    if order not in (1, 2):
        raise ValueError(f"check_vjp({name}): order must be 1 or 2; got {order!r}")
    orders = (1, 2) if order == 2 else (1,)
    return vjp_report(f, args, reference, orders, probes, seed, name, names, jit,
                      dict(rtol=rtol, fd_tol=fd_tol, fd_eps=fd_eps))  # fmt: skip


def vjp_report(
    f: Callable, args: tuple, reference: Callable | None, orders: tuple[int, ...], probes: int,
    seed: int, name: str, names: Sequence[str] | None, jit: bool, tolerances: dict,
) -> VJPReport:  # fmt: skip
    """`check_vjp` for the given orders (`check_gradients` asks for order 2 alone)."""
    where = f"check_vjp({name})"
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"{where}: probes must be an int >= 1; got {probes!r}")
    prep = prepare(f, args, names, where, tolerances)
    warn_without_x64(prep.tol.dtype, "check_vjp")
    rng = np.random.default_rng(seed)
    fc, fr = prep.lift(f), None if reference is None else prep.lift(reference)
    rows, notes, precision = [], list(prep.notes), ""
    common = (prep.x, prep.in_labels)
    if 1 in orders:
        try:
            got, more, precision = reverse_rows(fc, fr, *common, prep.out_labels, prep.tol,
                                                probes, rng, name, 1, jit)  # fmt: skip
        except (AssertionError, NotImplementedError) as e:  # JAX could not transpose a JVP rule
            got = [VJPRow(name, i, o, 1, None, None, None, 0, False)
                   for i in prep.in_labels for o in prep.out_labels]  # fmt: skip
            more = [f"{name}: FAILED: JAX cannot derive the VJP by transposing f's custom_jvp "
                    "rule (its tangent output must be linear in the input tangents; "
                    f"jnet.check_jvp checks the rule): {type(e).__name__}: {e}"[:400]]  # fmt: skip
        rows, notes = rows + got, notes + more
    if 2 in orders:
        hc, hr = second_order_pair(fc, fr, prep.x, rng)
        grad_labels = [f"d/d{lab}" for lab in prep.in_labels]
        got, more, precision = reverse_rows(hc, hr, *common, grad_labels, prep.tol, probes, rng,
                                            name, 2, jit)  # fmt: skip
        rows, notes = rows + got, notes + more
    return VJPReport(name, rows, notes, prep.tol, probes, precision)


def second_order_pair(fc: Callable, fr: Callable | None, x: list, rng: np.random.Generator):
    """`(grad of <w, fc>, grad of <w, fr>)` for one random `w`: their VJPs are HVPs.

    `jax.vjp` of the first differentiates the custom rule's backward (reverse over reverse);
    of the second, the reference's autodiff gradient.
    """
    w = [rng.standard_normal(o.shape) for o in jax.eval_shape(fc, x)]

    def gradient(fun):
        def scalar(xs):
            outs = fun(xs)
            return sum(jnp.sum(jnp.asarray(wj, o.dtype) * o) for wj, o in zip(w, outs, strict=True))

        return lambda xs: list(jax.grad(scalar)(xs))

    return gradient(fc), None if fr is None else gradient(fr)
