"""Finding the faulty layer: every layer checked on its own, on the activations that reach it.

A wrong backward in layer 2 of 4 spoils every gradient upstream of it, so the whole
network's table flags the first layers' leaves too. Here the forward pass is run layer by
layer (`forward_with_state`, so stateful layers such as batch norm work, with the keys
`serial` would give them), and each layer's hand-written backward (through `jnet.apply`) is
checked against `jax.vjp` of its own forward at its actual input, with `check_vjp`. Only a
layer whose own check fails is named, by its address (`2:dense(8)`, `1/0:tanh()`, a GPT's
`4/0/0/0:layer_norm()`): combinators are walked into through their `wiring`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from jnet.gradcheck.report import NonFiniteInput, NothingToCheck, VJPRow
from jnet.gradcheck.vjp import vjp_report
from jnet.layers.base import Layer, Params, State, forward_with_state, run_children
from jnet.layers.combinators import address
from jnet.losses import Loss
from jnet.network import apply


class Site(NamedTuple):
    """A layer as it runs inside a network: its address and what flows into it."""

    path: tuple[int, ...]
    layer: Layer
    params: Params
    x: Any
    key: Any
    state: State

    @property
    def address(self) -> str:
        return address(self.path, self.layer.name) if self.path else self.layer.name


def sites(net: Layer, params: Params, x: Any, *, key: Any = None, state: State = ()) -> list[Site]:
    """Every leaf layer of `net` with its actual input, found by walking into combinators.

    A combinator is walked into through its `wiring` (`base.Layer`): each child gets the
    params, input, key and state the combinator's forward gives it (`serial` chains them,
    `residual` gives each the block's input, `tie` puts the shared leaf in place), so
    layers inside residual blocks, transformer blocks and GPTs are found at their address.
    The walk is verified: if the children's outputs, combined by the wiring, do not
    reproduce the combinator's own output exactly, the combinator is one site.
    """
    found: list[Site] = []

    def walk(layer, p, x, key, state, path):
        if layer.wiring is not None and layer.children:
            mark = len(found)

            def call(i, p_i, x_i, k_i, s_i):
                return walk(layer.children[i], p_i, x_i, k_i, s_i, (*path, i))

            try:
                y = run_children(layer, p, x, key, state, call)
            except (ValueError, TypeError, IndexError, KeyError):  # the wiring does not fit
                y = None
            whole = forward_with_state(layer, p, x, key=key, state=state)[0]
            if y is not None and _same(whole, y):
                return y
            del found[mark:]  # the wiring does not say what the forward does: one unit
        found.append(Site(path, layer, p, x, key, state))
        return forward_with_state(layer, p, x, key=key, state=state)[0]

    walk(net, params, x, key, state if net.stateful else (), ())
    return found


def _same(a: Any, b: Any) -> bool:
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.array_equal(np.asarray(u), np.asarray(v), equal_nan=True)
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def check_site(site: Site, **options: Any) -> tuple[list[VJPRow], list[str]]:
    """One layer's hand-written backward against `jax.vjp` of its forward, and FD.

    `options` go to `check_vjp` (order, probes, seed, rtol, fd_tol, fd_eps).
    """
    layer, key, state = site.layer, site.key, site.state
    applied = apply(layer)

    def hand(p, x):  # jax.vjp of this runs layer.backward
        if layer.stateful:
            return applied(p, x, key=key, state=state)[0]
        return applied(p, x, key=key)

    def pure(p, x):  # jax.vjp of this differentiates the forward
        return forward_with_state(layer, p, x, key=key, state=state)[0]

    rows, notes = _checked(hand, pure, (site.params, site.x), ("", "x"), site.address, options)
    return rows, _none_note(site, pure) + notes


def _none_note(site: Site, pure) -> list[str]:
    """A note when the backward returns None for dx: the contract's zero gradient, which
    the rows then judge (a layer whose input matters fails, under its own address)."""

    def backward(p, x):
        y, cache, _ = forward_with_state(site.layer, p, x, key=site.key, state=site.state)
        return site.layer.backward(p, cache, y)[1]

    try:
        dx = jax.eval_shape(backward, site.params, site.x)
    except Exception:  # noqa: BLE001 - a backward that does not trace is judged by the rows
        return []
    if dx is not None:
        return []
    return [f"{site.address}: backward returned None for dx: taken as a zero gradient of its "
            "input (jnet's contract), judged as such"]  # fmt: skip


def check_loss(loss: Loss, outputs: Any, targets: Any, **options: Any) -> tuple[list, list]:
    """The loss's hand-written backward at the network's actual outputs, as site `loss`."""
    hand = apply(loss)

    def pure(o):
        return loss.forward(o, targets)[0]

    return _checked(lambda o: hand(o, targets), pure, (outputs,), ("outputs",), "loss", options)


def _checked(hand, pure, args, names, where, options) -> tuple[list[VJPRow], list[str]]:
    order = options.pop("order", 1)
    tolerances = {k: options.pop(k, None) for k in ("rtol", "fd_tol", "fd_eps")}
    orders = (1, 2) if order == 2 else (1,)
    try:
        report = vjp_report(hand, args, pure, orders, options.pop("probes", 2),
                            options.pop("seed", 0), where, names, True, tolerances)  # fmt: skip
    except NothingToCheck as e:  # e.g. integer input and no parameters
        return [], [f"{where}: not checked on its own ({e})"]
    except NonFiniteInput as e:  # the layers before it made NaN or inf: a fault, not a skip
        row = VJPRow(where, "x", "out", 1, None, None, None, 0, False)
        return [row], [f"{where}: FAILED: its input holds NaN or inf ({e})"]
    return report.rows, report.notes
