"""Finding the faulty layer: every layer checked on its own, on the activations that reach it.

A wrong backward in layer 2 of 4 spoils every gradient upstream of it, so the whole
network's table flags the first layers' leaves too. Here the forward pass is run layer by
layer (`forward_with_state`, so stateful layers such as batch norm work, with the keys
`serial` would give them), and each layer's hand-written backward (through `jnet.apply`) is
checked against `jax.vjp` of its own forward at its actual input, with `check_vjp`. Only a
layer whose own check fails is named, by its `serial` address (`2:dense(8)`, `1/0:tanh()`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from jnet.gradcheck.report import NonFiniteInput, NothingToCheck, VJPRow
from jnet.gradcheck.vjp import vjp_report
from jnet.layers.base import Layer, Params, State, forward_with_state
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


def _chains(layer: Layer, params: Params, state: State) -> bool:
    """Whether `layer` says it chains its children and its params and state fit that.

    Verified after the walk: a layer that claims to chain but does not is one site.
    """
    n = len(layer.children)
    if not (n and layer.chained) or not isinstance(params, tuple | list) or len(params) != n:
        return False
    return not layer.stateful or (isinstance(state, tuple) and len(state) == n)


def sites(net: Layer, params: Params, x: Any, *, key: Any = None, state: State = ()) -> list[Site]:
    """Every leaf layer of `net` (recursing into serial chains) with its actual input.

    A combinator is walked as a chain only if it is `chained` (`serial`) and running its
    children one after the other reproduces its own output; any other is one site.
    """
    found: list[Site] = []

    def walk(layer, p, x, key, state, path):
        if _chains(layer, p, state):
            mark, n = len(found), len(layer.children)
            keys = [None] * n if key is None else list(jax.random.split(key, n))
            states = state if layer.stateful else ((),) * n
            y = x
            try:
                for i, child in enumerate(layer.children):
                    y = walk(child, p[i], y, keys[i], states[i], (*path, i))
            except ValueError:  # its children do not take each other's outputs (a residual)
                y = None
            whole = forward_with_state(layer, p, x, key=key, state=state)[0]
            if y is not None and jax.tree.structure(whole) == jax.tree.structure(y) and all(
                np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
                for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(y), strict=True)
            ):
                return y
            del found[mark:]  # not a chain after all: check it as one unit
        found.append(Site(path, layer, p, x, key, state))
        return forward_with_state(layer, p, x, key=key, state=state)[0]

    walk(net, params, x, key, state, ())
    return found


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
