"""`check_gradients`: a network's hand-written gradients, as a whole and layer by layer."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.gradcheck import layers as per_layer
from jnet.gradcheck.compare import on_device
from jnet.gradcheck.report import (
    GradientCheckError,
    GradientReport,
    NonFiniteInput,
    NothingToCheck,
    VJPRow,
)
from jnet.gradcheck.tolerances import (
    Tolerances,
    fd_dtype,
    for_dtype,
    least_precise,
    warn_without_x64,
)
from jnet.gradcheck.vjp import vjp_report
from jnet.gradcheck.vmapped import network_losses, per_example_rows, second_order_rows
from jnet.layers.base import Layer, Params, State, forward_with_state, init_with_state
from jnet.losses import Loss


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
      `raise_on_failure`. ValueError for non-finite inputs (`NonFiniteInput`), an empty
      batch (`NothingToCheck`) or unknown dtypes.
    """
    x = on_device(x)
    leaves = jax.tree.leaves(params)
    for what, tree in (("params", params), ("x", x)):
        floats = [a for a in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(a), float)]
        if not all(np.isfinite(np.asarray(a, np.float64)).all() for a in floats):
            raise NonFiniteInput(f"check_gradients: {what} contain NaN or inf; nothing to check")
    if x.ndim and x.shape[0] == 0:
        raise NothingToCheck(f"check_gradients: x has an empty batch, shape {x.shape}; nothing "
                             "to check")  # fmt: skip
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
    options = dict(probes=probes, seed=seed, rtol=rtol, fd_tol=fd_tol, fd_eps=fd_eps)
    rows, more = _whole(net, loss, params, x, y, key, state, name, options)
    notes += more
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
        fd = "kinks only" if bad.fd_err is None else f"{bad.fd_err:.2e}"
        lines.append(
            f"{name}: gradient of leaf '{bad.input}' is wrong: rel err {bad.rel_err:.2e} vs "
            f"jax.grad (tol {tol.rtol:.0e}), {fd} vs finite differences (tol {tol.fd_tol:.0e})"
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


def _whole(net, loss, params, x, y, key, state, name, options) -> tuple[list[VJPRow], list]:
    """The whole network's rows, one per parameter leaf and `x` (output `loss`): the
    hand-written gradient of the loss (`jax.vjp` through `apply`) against `jax.grad` of the
    pure forward and finite differences of the loss, by the engine every check uses."""
    through_apply, pure = network_losses(net, loss, y, key, state)
    tolerances = {k: options[k] for k in ("rtol", "fd_tol", "fd_eps")}
    report = vjp_report(through_apply, (params, x), pure, (1,), options["probes"],
                        options["seed"], name, ("", "x"), True, tolerances)  # fmt: skip
    rows = [r._replace(output="loss") for r in report.rows]
    return rows, [n for n in report.notes if "skipped" not in n]  # an integer x: no row
