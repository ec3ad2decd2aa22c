"""`check_vjp`: checks the VJP JAX uses for any function, jnet layer or not.

The VJP under test is `jax.vjp(f)`: a function's `jax.custom_vjp` rule when it has one (or
`jnet.apply(layer)`'s hand-written backward), plain autodiff otherwise. It is compared with
`jax.vjp(reference)` when a reference forward is given, and always with central finite
differences of `f` itself along random directions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.gradcheck.compare import first_order
from jnet.gradcheck.report import VJPReport
from jnet.gradcheck.tolerances import for_dtype, least_precise, warn_without_x64
from jnet.trees import leaf_name


def _label(path, names: Sequence[str] | None) -> str:
    head, rest = path[0].idx, path[1:]
    prefix = f"arg{head}" if names is None else names[head]
    tail = leaf_name(rest) if rest else ""
    return ".".join(s for s in (prefix, tail) if s) or "params"


def _is_float_array(a: Any) -> bool:
    return isinstance(a, jax.Array | np.ndarray) and jnp.issubdtype(a.dtype, jnp.floating)


def _kind(a: Any) -> str:
    return str(a.dtype) if hasattr(a, "dtype") else type(a).__name__


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
      ValueError: no floating-point argument or output, non-finite inputs, a bad `order` or
        `probes`, mismatched reference outputs, or a dtype without default tolerances.
    """
    name = name or getattr(f, "__name__", type(f).__name__)
    where = f"check_vjp({name})"
    if order not in (1, 2):
        raise ValueError(f"{where}: order must be 1 or 2; got {order!r}")
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"{where}: probes must be an int >= 1; got {probes!r}")
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
        raise ValueError(f"{where}: no floating-point array among the arguments; nothing to check")
    x = [jnp.asarray(leaves[i]) for i in diff]
    for i, a in zip(diff, x, strict=True):
        if not bool(jnp.all(jnp.isfinite(a))):
            raise ValueError(f"{where}: {labels[i]} contains NaN or inf; nothing to check")

    def call(fun, xs):
        full = list(leaves)
        for k, i in enumerate(diff):
            full[i] = xs[k]
        return fun(*jax.tree.unflatten(treedef, full))

    out_flat = jax.tree_util.tree_flatten_with_path(f(*args))[0]
    keep = [j for j, (_, o) in enumerate(out_flat) if _is_float_array(o)]
    out_labels = ["out" + ("." + leaf_name(p) if p else "") for p, _ in out_flat]
    notes += [
        f"{out_labels[j]}: {_kind(o)}, skipped (not a floating-point array)"
        for j, (_, o) in enumerate(out_flat)
        if j not in keep
    ]
    if not keep:
        raise ValueError(f"{where}: no floating-point output; nothing to check")

    def outputs(fun):
        def g(xs):
            o = jax.tree.leaves(call(fun, xs))
            if len(o) != len(out_flat):
                raise ValueError(
                    f"{where}: the reference returns {len(o)} output leaves, f {len(out_flat)}"
                )
            return [o[j] for j in keep]

        return g

    size = sum(math.prod(a.shape) for a in x)
    tol = for_dtype(least_precise(x), size, rtol=rtol, fd_tol=fd_tol, fd_eps=fd_eps, where=where)
    warn_without_x64(tol.dtype, "check_vjp")
    rng = np.random.default_rng(seed)
    in_labels = [labels[i] for i in diff]
    fc, fr = outputs(f), None if reference is None else outputs(reference)
    kept = [out_labels[j] for j in keep]
    rows, more = first_order(fc, fr, x, in_labels, kept, tol, probes, rng, name, 1, jit)
    if order == 2:
        hc, hr = second_order_pair(fc, fr, x, rng)
        grad_labels = [f"d/d{lab}" for lab in in_labels]
        rows2, more2 = first_order(
            hc, hr, x, in_labels, grad_labels, tol, probes, rng, name, 2, jit
        )
        rows, more = rows + rows2, more + more2
    return VJPReport(name, rows, notes + more, tol, probes)


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
