"""`check_gradients`: a network's hand-written gradients, as a whole and layer by layer."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.gradcheck import layers as per_layer
from jnet.gradcheck.probes import RETRY_SUPPORT, STEPS, judge, line_values, unit_direction
from jnet.gradcheck.report import GradientCheckError, GradientReport, Row
from jnet.gradcheck.tolerances import (
    Tolerances,
    error_scale,
    fd_dtype,
    for_dtype,
    least_precise,
    max_abs,
    warn_without_x64,
)
from jnet.gradcheck.vmapped import per_example_rows, second_order_rows
from jnet.layers.base import Layer, Params, State, forward_with_state, init_with_state
from jnet.losses import Loss
from jnet.network import loss_and_grads
from jnet.trees import leaf_name


def check_gradients(
    net: Layer,
    loss: Loss,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    key: Any = None,
    state: State = None,
    name: str = "net",
    rtol: float | None = None,
    fd_tol: float | None = None,
    fd_eps: float | None = None,
    seed: int = 0,
    raise_on_failure: bool = True,
    layers: bool = True,
    order: int = 1,
    probes: int = 2,
    per_example: bool = True,
) -> GradientReport:
    """Checks `net.backward` + `loss.backward`: the whole network, then each layer on its own.

    The whole network (`report.rows`, one per parameter leaf and `x`): the hand-written
    gradient of the loss against `jax.grad` of the pure forward pass (no custom_vjp on that
    path), and against a central difference of the loss along a random unit direction of
    each leaf (as `jax.test_util.check_grads` does; a kink crossed is retried along sparser
    directions, and reported as `kink`, not as a failure, if it cannot be avoided).

    Each layer (`report.layers`, with `layers=True`): the forward is run layer by layer,
    recursing into `serial` children in params order, and each layer's backward is checked
    against `jax.vjp` of its own forward at the activations that actually reach it (and the
    loss's at the actual outputs), with `check_vjp`. `report.failing_layers` names only the
    layers whose own check fails, by address (`2:dense(8)`, nested `1/0:dense(8)`, `loss`).

    Args:
      net, loss: the network and its loss.
      params: the network's parameters (from `net.init`).
      x: inputs `(N, ...)`; an integer `x` gets no row.
      y: targets, as the loss takes them.
      key: a PRNG key for training mode (dropout masks, batch statistics); None: inference.
      state: a stateful net's state (its init's third value); None draws its initial state
        from `net.init` (noted in the report). Ignored for a stateless net.
      name: the case column of the table.
      rtol: max relative error against `jax.grad`; fd_tol: against finite differences;
        fd_eps: the finite-difference step. Default by dtype and size
        (`jnet.gradcheck.tolerances`): float64 1e-10, 1e-5, 1e-4.
      seed: seeds the random directions (numpy), so a report is reproducible.
      raise_on_failure: raise GradientCheckError instead of returning a failing report.
      layers: also check each layer on its own (the culprit finder).
      order: 2 also checks Hessian-vector products through the hand-written backward passes
        (reverse over reverse), for the whole loss and for each layer.
      probes: random cotangent/direction pairs per layer check (fast mode).
      per_example: also check per-example gradients under `jax.vmap` (skipped, with a note,
        for a stateful net in training mode, whose batch statistics couple the examples).

    Returns:
      A `GradientReport` (print it for the tables, `.to_dict()` for JSON).
    Raises:
      GradientCheckError naming the first failing leaf and the failing layers, if
      `raise_on_failure`. ValueError for non-finite inputs or unknown dtypes.
    """
    x = jnp.asarray(x)
    leaves = jax.tree.leaves(params)
    for what, tree in (("params", params), ("x", x)):
        if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree)
                   if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)):  # fmt: skip
            raise ValueError(f"check_gradients: {what} contain NaN or inf; nothing to check")
    notes = []
    if net.stateful and state is None:
        state = init_with_state(net, jax.random.key(0), x.shape)[2]
        notes.append(f"{name}: state not given: checked at the net's initial state")
    state = state if net.stateful else ()
    size = sum(int(np.size(a)) for a in [*leaves, x])
    tol = for_dtype(
        least_precise([*leaves, x]), size, rtol=rtol, fd_tol=fd_tol, fd_eps=fd_eps,
        where="check_gradients",
    )  # fmt: skip
    warn_without_x64(tol.dtype, "check_gradients")
    rows = _whole(net, loss, params, x, y, key, state, name, tol, seed)
    options = dict(probes=probes, seed=seed, rtol=rtol, fd_tol=fd_tol, fd_eps=fd_eps)
    layer_rows: list = []
    if layers:
        outputs = x
        for site in per_layer.sites(net, params, x, key=key, state=state):
            got, more = per_layer.check_site(site, order=order, **options)
            layer_rows += got
            notes += more
        outputs = forward_with_state(net, params, x, key=key, state=state)[0]
        got, more = per_layer.check_loss(loss, outputs, y, order=order, **options)
        layer_rows += got
        notes += more
    extra: list = []
    if order == 2:
        got, more = second_order_rows(net, loss, params, x, y, key, state, name, options)
        extra += got
        notes += more
    if per_example:
        got, more = per_example_rows(net, loss, params, x, y, key, state, name, tol)
        extra += got
        notes += more
    if layers or order == 2:
        notes.append(f"finite differences of the layer checks evaluated in {fd_dtype().__name__}")
    report = GradientReport(rows, layer_rows, extra, notes, tol)
    if raise_on_failure and not report.ok:
        raise GradientCheckError(_message(report, name, tol) + "\n" + str(report))
    return report


def _message(report: GradientReport, name: str, tol: Tolerances) -> str:
    bad = next((r for r in report.rows if not r.passed), None)
    lines = []
    if bad is not None:
        lines.append(
            f"{name}: gradient of leaf '{bad.leaf}' is wrong: rel err {bad.rel_err:.2e} vs "
            f"jax.grad (tol {tol.rtol:.0e}), {bad.fd_err:.2e} vs finite differences "
            f"(tol {tol.fd_tol:.0e})"
        )
    if report.failing_layers:
        lines.append(
            f"{name}: failing layers (their own backward disagrees with jax.vjp of their "
            f"forward or with finite differences): {', '.join(report.failing_layers)}"
        )
    elif bad is not None and report.layers:
        lines.append(f"{name}: every layer passes on its own: look at how they are combined")
    failing_extra = [r for r in report.extra if not r.passed]
    if failing_extra:
        lines.append(
            f"{name}: failing "
            + ", ".join(f"{r.case} {r.input} ({r.output}, order {r.order})" for r in failing_extra)
        )
    return "\n".join(lines)


def _whole(net, loss, params, x, y, key, state, name, tol, seed) -> list[Row]:
    """The whole network's rows: hand-written vs jax.grad, and one central difference."""

    def value(p, x):
        return loss.forward(forward_with_state(net, p, x, key=key, state=state)[0], y)[0]

    hand = jax.jit(lambda p, x: loss_and_grads(net, loss)(p, x, y, key=key, state=state))
    _, _, hand_p, hand_x, _ = hand(params, x)
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

    overall = max(max_abs(r) for r in jax.tree.leaves((ref_p, ref_x)))

    def row(leaf, hand, ref, perturb):
        hand, ref = np.asarray(hand, np.float64), np.asarray(ref, np.float64)
        if hand.shape != ref.shape:
            raise GradientCheckError(
                f"{name}: gradient of {leaf} has shape {hand.shape}, expected {ref.shape}"
            )
        abs_err = max_abs(hand - ref)
        rel_err = abs_err / error_scale(max_abs(ref), overall, tol)
        fd_err, fd_ok, kink = _difference(hand, perturb, value_jit, tol, rng)
        return Row(name, leaf, abs_err, rel_err, fd_err, bool(rel_err <= tol.rtol and fd_ok), kink)

    rows = []
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    hand_leaves, ref_leaves = jax.tree.leaves(hand_p), jax.tree.leaves(ref_p)
    for i, (path, leaf) in enumerate(flat):

        def perturb(delta, i=i, leaf=leaf):
            leaves = [p for _, p in flat]
            leaves[i] = leaf + jnp.asarray(delta, leaf.dtype)
            return jax.tree.unflatten(treedef, leaves), x

        rows.append(row(leaf_name(path), hand_leaves[i], ref_leaves[i], perturb))
    if with_x:
        rows.append(
            row("x", hand_x, ref_x, lambda delta: (params, x + jnp.asarray(delta, x.dtype)))
        )
    return rows


def _difference(hand, perturb, value_jit, tol, rng) -> tuple[float, bool, bool]:
    """`(fd_err, ok, kink)` for one leaf: a unit direction, retried sparser at a kink.

    A unit direction keeps each entry's step tiny, so kinks are rarely crossed. The first
    step is judged as `jax.test_util.check_grads` does; a miss is retried at smaller steps
    and told from a kink by `probes.judge`.
    """
    first_err = None
    for support in (1.0, *RETRY_SUPPORT):
        v = unit_direction(rng, hand.shape, support)

        def along(t, v=v):
            return [np.asarray(value_jit(*perturb(t * v)), np.float64)]

        analytic, base, diffs = float(np.sum(hand * v)), along(0.0), []
        for fraction in STEPS:
            diffs.append(line_values(along, base, tol.fd_eps * fraction, [np.ones(())], [0.0])[0])
            central = diffs[-1][0]
            err = abs(analytic - central) / (1 + abs(central))  # <= fd_tol: check_grads' pass
            first_err = err if first_err is None else first_err
            if abs(analytic - central) <= tol.fd_tol + tol.fd_tol * abs(central):  # check_grads'
                return err, True, False
        if judge(analytic, diffs, 0.0, tol.fd_tol).status == "fail":
            return first_err, False, False
    return first_err, True, True  # every direction tried crossed a kink
