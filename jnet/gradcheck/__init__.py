"""Gradient verification: hand-written backward vs `jax.grad` and finite differences.

`check_gradients` works on any network and loss, user-defined layers included.
`jnet.gradcheck.registry.CASES` is the one registry of built-in layers, losses and
tutorial architectures that both the test suite and `python -m jnet.gradcheck` run over.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnet.layers import Layer, Params
from jnet.losses import Loss
from jnet.network import loss_and_grads

# dtype -> (max relative error vs jax.grad, finite-difference tolerance, step).
# The finite-difference tolerances are jax.test_util.check_grads' defaults.
TOLERANCES = {
    "float64": (1e-10, 1e-5, 1e-4),
    "float32": (1e-5, 2e-3, 1e-2),
    "bfloat16": (2e-2, 1e-1, 1e-1),
}


class Row(NamedTuple):
    """One parameter leaf (or `x`, the input) of one checked network."""

    case: str
    leaf: str
    abs_err: float  # max |hand - jax.grad|
    rel_err: float  # max |hand - jax.grad| / max |jax.grad|
    fd_err: float  # |<hand, v> - central difference along v| / |central difference|
    passed: bool


class GradientCheckError(ValueError):
    """A hand-written gradient disagrees with jax.grad or finite differences."""


class GradientReport(NamedTuple):
    rows: list[Row]

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.rows)

    def table(self) -> str:
        head = f"{'case':<34} {'leaf':<10} {'abs err':>9} {'rel err':>9} {'fd err':>9}  verdict"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r.case:<34} {r.leaf:<10} {r.abs_err:>9.1e} {r.rel_err:>9.1e} "
                f"{r.fd_err:>9.1e}  {'ok' if r.passed else 'FAIL'}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _leaf_name(path) -> str:
    parts = []
    for p in path:
        for attr in ("key", "idx", "name"):
            if hasattr(p, attr):
                parts.append(str(getattr(p, attr)))
                break
    return ".".join(parts) or "params"


def check_gradients(
    net: Layer,
    loss: Loss,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    key: Any = None,
    name: str = "net",
    rtol: float | None = None,
    fd_tol: float | None = None,
    fd_eps: float | None = None,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> GradientReport:
    """Checks `net.backward` + `loss.backward` for every parameter leaf and for dx.

    The reference is `jax.grad` of the pure forward pass (no custom_vjp on that
    path), and a central difference of the loss along a random direction of each
    leaf, as `jax.test_util.check_grads` does. Tolerances default by dtype
    (`TOLERANCES`); float64 is the meaningful check.

    Returns:
      A `GradientReport` (print it for a table).
    Raises:
      GradientCheckError naming the first failing leaf, if `raise_on_failure`.
    """
    x = jnp.asarray(x)
    dtype = jnp.result_type(*jax.tree.leaves(params), x) if jax.tree.leaves(params) else x.dtype
    known = TOLERANCES.get(jnp.dtype(dtype).name)
    if known is None and None in (rtol, fd_tol, fd_eps):
        raise ValueError(
            f"check_gradients: no default tolerances for {jnp.dtype(dtype).name} (known: "
            f"{', '.join(TOLERANCES)}); pass rtol, fd_tol and fd_eps, or check in float64"
        )
    d_rtol, d_fd_tol, d_eps = known or (rtol, fd_tol, fd_eps)
    for what, tree in (("params", params), ("x", x)):
        if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree)
                   if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)):  # fmt: skip
            raise ValueError(f"check_gradients: {what} contain NaN or inf; nothing to check")
    rtol = d_rtol if rtol is None else rtol  # 0 is a legitimate (exact) tolerance
    fd_tol = d_fd_tol if fd_tol is None else fd_tol
    fd_eps = d_eps if fd_eps is None else fd_eps
    if not fd_eps > 0:
        raise ValueError(f"check_gradients: fd_eps must be positive; got {fd_eps}")

    def value(p, x):
        return loss.forward(net.forward(p, x, key=key)[0], y)[0]

    _, _, hand_p, hand_x, _ = jax.jit(lambda p, x: loss_and_grads(net, loss)(p, x, y, key=key))(
        params, x
    )
    with_x = jnp.issubdtype(x.dtype, jnp.floating)
    ref_p, ref_x = (
        jax.jit(jax.grad(value, argnums=(0, 1)))(params, x)
        if with_x
        else (jax.jit(jax.grad(value))(params, x), None)
    )

    if jax.tree.structure(hand_p) != jax.tree.structure(ref_p):
        raise GradientCheckError(
            f"{name}: backward returned dparams with structure {jax.tree.structure(hand_p)}, "
            f"expected that of params, {jax.tree.structure(ref_p)}"
        )
    value_jit = jax.jit(value)
    rng = np.random.default_rng(seed)

    def row(leaf, hand, ref, perturb):
        hand, ref = np.asarray(hand, np.float64), np.asarray(ref, np.float64)
        if hand.shape != ref.shape:
            raise GradientCheckError(
                f"{name}: gradient of {leaf} has shape {hand.shape}, expected {ref.shape}"
            )
        abs_err = float(np.max(np.abs(hand - ref), initial=0.0))
        rel_err = abs_err / max(float(np.max(np.abs(ref), initial=0.0)), np.finfo(np.float64).tiny)
        # A unit direction keeps each entry's step tiny, so ReLU kinks are rarely crossed.
        v = rng.standard_normal(hand.shape)
        v /= max(np.linalg.norm(v), np.finfo(np.float64).tiny)
        fd = (float(value_jit(*perturb(fd_eps * v))) - float(value_jit(*perturb(-fd_eps * v)))) / (
            2 * fd_eps
        )
        analytic = float(np.sum(hand * v))
        fd_err = abs(analytic - fd) / max(abs(fd), np.finfo(np.float64).tiny)
        fd_ok = abs(analytic - fd) <= fd_tol + fd_tol * abs(fd)
        return Row(name, leaf, abs_err, rel_err, fd_err, bool(rel_err <= rtol and fd_ok))

    rows = []
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    hand_leaves, ref_leaves = jax.tree.leaves(hand_p), jax.tree.leaves(ref_p)
    for i, (path, leaf) in enumerate(flat):

        def perturb(delta, i=i, leaf=leaf):
            leaves = [p for _, p in flat]
            leaves[i] = leaf + jnp.asarray(delta, leaf.dtype)
            return jax.tree.unflatten(treedef, leaves), x

        rows.append(row(_leaf_name(path), hand_leaves[i], ref_leaves[i], perturb))
    if with_x:
        rows.append(
            row("x", hand_x, ref_x, lambda delta: (params, x + jnp.asarray(delta, x.dtype)))
        )

    report = GradientReport(rows)
    if raise_on_failure and not report.ok:
        bad = next(r for r in rows if not r.passed)
        raise GradientCheckError(
            f"{name}: gradient of leaf '{bad.leaf}' is wrong: rel err {bad.rel_err:.2e} vs "
            f"jax.grad (tol {rtol:.0e}), {bad.fd_err:.2e} vs finite differences (tol {fd_tol:.0e})"
            f"\n{report.table()}"
        )
    return report


def assert_trees_close(got: Any, want: Any, rtol: float, atol: float = 0.0) -> None:
    """Asserts the same pytree structure, then each leaf close (`np.testing.assert_allclose`).

    The failure message names the leaf by its path, e.g. `[0]['w']`.
    """
    assert jax.tree.structure(got) == jax.tree.structure(want), (
        f"tree structures differ: {jax.tree.structure(got)} vs {jax.tree.structure(want)}"
    )
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(want)[0]]
    for path, g, w in zip(paths, jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert jnp.shape(g) == jnp.shape(w), f"{path}: shape {jnp.shape(g)} vs {jnp.shape(w)}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=path)
