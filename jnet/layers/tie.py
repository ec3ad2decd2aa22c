"""`tie`: one parameter used in two places of a network, its gradient the sum of both.

`serial` hands child i only `params[i]`, so nothing in it can add two gradients into one
leaf. `tie(net, source, target)` wraps a network and removes the `target` leaf from its
params (as Equinox's `Shared` removes the duplicate leaf): the forward puts the `source`
leaf back in its place (transposed if asked), and the backward adds the gradient that
arrives at `target` into `source`'s, as llm.c's `+=` does for GPT-2's tied token matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

from jnet.layers.base import Layer, init_with_state
from jnet.layers.combinators import check_layers

Path = tuple[Any, ...]  # keys into nested tuples and dicts, e.g. (0, "w")


def _get(tree: Any, path: Path) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def _with(tree: Any, path: Path, value: Any, *, remove: bool = False) -> Any:
    """A copy of `tree` with the leaf at `path` replaced by `value` (or removed: its parent
    must be a dict); only the containers along the path are copied."""
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        out = dict(tree)
        if rest:
            out[head] = _with(tree[head], rest, value, remove=remove)
        elif remove:
            del out[head]
        else:
            out[head] = value
        return out
    items = list(tree)
    items[head] = _with(tree[head], rest, value, remove=remove)
    return type(tree)(items)


def _path(name: str, what: str, path: Any) -> Path:
    if not isinstance(path, Sequence) or isinstance(path, str) or not path:
        raise ValueError(f"{name}: {what} is a path of keys into the params, e.g. (0, 'w'); "
                         f"got {path!r}")  # fmt: skip
    return tuple(path)


def tie(
    net: Layer,
    source: Sequence[Any],
    target: Sequence[Any],
    *,
    transpose: bool = False,
    name: str | None = None,
) -> Layer:
    """`net` with the params leaf at `target` taken from `source` (`source.T` if `transpose`).

    Args:
      net: any layer, usually a `serial`.
      source: path of the shared leaf in `net`'s params, e.g. `(0, "w")`: the embedding.
      target: path of the leaf that reuses it, e.g. `(5, "w")`: the output projection. Its
        parent must be a dict (a layer's params); it is removed from the params.
      transpose: use `source.T` at `target` (a token matrix `(V, D)` as a dense `(D, V)`).

    Params: `net`'s, without the `target` entry (`{"w": ...}` becomes `{}` for a dense
    without bias). Backward: `net`'s, with `target`'s gradient (transposed back) added to
    `source`'s. The walks of `summary` and the gradient checker go straight into `net`'s
    children (a tie adds no address level); a child holding the target is shown its params
    with the shared leaf in place.
    """
    check_layers("tie", [net])
    source, target = _path("tie", "source", source), _path("tie", "target", target)
    name = name or f"tie({net.name}, {source!r} -> {target!r})"

    def full(params):
        shared = _get(params, source)
        return _with(params, target, shared.T if transpose else shared)

    def init(key, input_shape):
        shape, params, state = init_with_state(net, key, input_shape)
        try:
            src, parent = _get(params, source), _get(params, target[:-1])
            tgt = parent[target[-1]]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"{name}: {net.name}'s params have no leaf at {source} or at "
                             f"{target}") from None  # fmt: skip
        if not isinstance(parent, dict):
            raise ValueError(f"{name}: target {target} must be an entry of a layer's params dict")
        want = tuple(reversed(jnp.shape(src))) if transpose else jnp.shape(src)
        if jnp.shape(tgt) != want:
            raise ValueError(
                f"{name}: the leaf at {target} has shape {jnp.shape(tgt)}; sharing the leaf at "
                f"{source} {'transposed ' if transpose else ''}gives {want}"
            )
        params = _with(params, target, None, remove=True)
        return (shape, params, state) if net.stateful else (shape, params)

    def forward(params, x, *, key=None):
        return net.forward(full(params), x, key=key)

    def forward_stateful(params, x, *, key=None, state):
        return net.forward(full(params), x, key=key, state=state)

    def backward(params, cache, dy):
        grads, dx = net.backward(full(params), cache, dy)
        extra = _get(grads, target)
        grads = _with(grads, target, None, remove=True)
        summed = _get(grads, source) + (extra.T if transpose else extra)
        return _with(grads, source, summed), dx

    if net.wiring is not None:  # transparent: net's children are the tie's
        children = net.children

        def wiring(params, x, key, states, call):
            return net.wiring(full(params), x, key, states, call)
    else:
        children = (net,)

        def wiring(params, x, key, states, call):
            return call(0, full(params), x, key, states if net.stateful else ())

    return Layer(
        init, forward_stateful if net.stateful else forward, backward, name, net.stateful,
        children, net.chained, wiring, net.vocab_size,
    )  # fmt: skip
