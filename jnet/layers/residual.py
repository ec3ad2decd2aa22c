"""Branching combinators for ResNet/Inception-style blocks: `residual` and `concat`.

Like `serial`, each is a `Layer` whose params, caches and state are tuples with one entry
per child (in `children` order), whose key is split among its children, which is stateful if
any child is, and which re-raises a child's ValueError addressed `<index>:<name>`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jnet.layers.base import Layer, init_with_state
from jnet.layers.combinators import _split, at, check_layers, run_checked


def _layer(name, layers, init, wiring, backward, widths_axis=None):
    """A branching combinator whose forward is its `wiring` (see `base.Layer`), stateless
    or stateful as its children are. With `widths_axis`, the cache is `(caches, widths)`:
    zero-size arrays carrying each child's output size on that axis (residuals must be
    arrays), for concat's backward to split `dy`."""
    stateful = any(layer.stateful for layer in layers)

    def forward_stateful(params, x, *, key=None, state):
        if not isinstance(params, tuple | list) or len(params) != len(layers):
            got = len(params) if isinstance(params, tuple | list) else type(params).__name__
            raise ValueError(f"{name}: got params for {got} layers but it has {len(layers)}")
        if not isinstance(state, tuple) or len(state) != len(layers):
            raise ValueError(f"{name}: state must be a tuple with one entry per layer")
        if widths_axis is None:
            return run_checked(layers, wiring, params, x, key, state)
        outs: list = []
        y, caches, states = run_checked(layers, wiring, params, x, key, state, outs)
        widths = tuple(jnp.zeros((0, o.shape[widths_axis]), o.dtype) for o in outs)
        return y, (caches, widths), states

    def forward(params, x, *, key=None):
        y, caches, _ = forward_stateful(params, x, key=key, state=((),) * len(layers))
        return y, caches

    def init_any(key, input_shape):
        shape, params, states = init(key, tuple(input_shape))
        return (shape, params, states) if stateful else (shape, params)

    return Layer(
        init_any, forward_stateful if stateful else forward, backward, name, stateful, layers,
        wiring=wiring,
    )  # fmt: skip


def _each(params, x, key, states, call):
    """Every child on the combinator's own input `x`, one split key each: their outputs."""
    keys = _split(key, len(params))
    return [call(i, p, x, k, s) for i, (p, k, s) in enumerate(zip(params, keys, states,
                                                                  strict=True))]  # fmt: skip


def _init_children(layers, key, input_shape):
    keys = jax.random.split(key, len(layers))
    out = [at(i, lay, init_with_state, lay, k, input_shape) for i, (lay, k) in
           enumerate(zip(layers, keys, strict=True))]  # fmt: skip
    return [o[0] for o in out], tuple(o[1] for o in out), tuple(o[2] for o in out)


def residual(layer: Layer, *, projection: Layer | None = None) -> Layer:
    """`y = layer(x) + x`, or `layer(x) + projection(x)` when the shapes differ.

    Args:
      layer: the residual branch, e.g. `serial(conv2d(64, 3), batch_norm(), relu(),
        conv2d(64, 3))`.
      projection: maps `x` to the branch's output shape, e.g. `conv2d(64, 1, strides=2)`
        for a branch that halves the size and changes the channel count.

    Params (and state): `(branch,)` or `(branch, projection)`. Backward: the branch's and
    the shortcut's input gradients are summed (the identity shortcut passes `dy` through).
    """
    check_layers("residual", [layer] + ([] if projection is None else [projection]))
    layers = (layer,) if projection is None else (layer, projection)
    extra = "" if projection is None else f", projection={projection.name}"
    name = f"residual({layer.name}{extra})"

    def check(in_shape, out, skip):
        if tuple(out) != tuple(skip):
            hint = (" (pass projection=, e.g. a 1x1 conv2d with the output's channels and "
                    "strides)" if projection is None else "")  # fmt: skip
            what = "the input" if projection is None else "the projection's output"
            raise ValueError(
                f"{name}: the branch maps {tuple(in_shape)} to {tuple(out)}, which cannot be "
                f"added to {what} {tuple(skip)}{hint}"
            )

    def init(key, input_shape):
        shapes, params, states = _init_children(layers, key, input_shape)
        check(input_shape, shapes[0], shapes[-1] if projection else input_shape)
        return shapes[0], params, states

    def wiring(params, x, key, states, call):
        outs = _each(params, x, key, states, call)
        skip = outs[1] if projection is not None else x
        check(x.shape, outs[0].shape, skip.shape)
        return outs[0] + skip

    def backward(params, caches, dy):
        dbranch, dx = layer.backward(params[0], caches[0], dy)
        if projection is None:
            return (dbranch,), dx + dy
        dproj, dx_skip = projection.backward(params[1], caches[1], dy)
        return (dbranch, dproj), dx + dx_skip

    return _layer(name, layers, init, wiring, backward)


def concat(*layers: Layer, axis: int = -1) -> Layer:
    """Runs every layer on the same input and concatenates their outputs along `axis`.

    The Inception-style fan-out: `concat(conv2d(16, 1), conv2d(16, 3), max_pool(3,
    strides=1, padding="SAME"))` gives 16 + 16 + C channels. Outputs must agree on every
    other axis. Params (and state): one entry per layer. Backward: `dy` is split back into
    each layer's part and the layers' input gradients are summed.
    """
    check_layers("concat", layers)
    if not layers:
        raise ValueError("concat: needs at least one layer")
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ValueError(f"concat: axis must be an int; got {axis!r}")
    name = "concat(" + ", ".join(lay.name for lay in layers) + (
        f", axis={axis})" if axis != -1 else ")")  # fmt: skip

    def joined(shapes):
        ndim = len(shapes[0])
        if not -ndim <= axis < ndim or any(len(s) != ndim for s in shapes):
            raise ValueError(f"{name}: outputs {shapes} have no common axis {axis}")
        a = axis % ndim
        rest = {s[:a] + s[a + 1 :] for s in shapes}
        if len(rest) != 1:
            raise ValueError(
                f"{name}: outputs {shapes} differ on axes other than {axis}; cannot concatenate"
            )
        return shapes[0][:a] + (sum(s[a] for s in shapes),) + shapes[0][a + 1 :]

    def init(key, input_shape):
        shapes, params, states = _init_children(layers, key, input_shape)
        return joined([tuple(s) for s in shapes]), params, states

    def wiring(params, x, key, states, call):
        outs = _each(params, x, key, states, call)
        joined([tuple(o.shape) for o in outs])
        return jnp.concatenate(outs, axis=axis)

    def backward(params, cache, dy):
        caches, widths = cache
        cuts, total = [], 0
        for w in widths[:-1]:
            total += w.shape[1]
            cuts.append(total)
        grads, dx = [], None
        parts = jnp.split(dy, cuts, axis)
        for layer, p, c, part in zip(layers, params, caches, parts, strict=True):
            g, d = layer.backward(p, c, part)
            grads.append(g)
            dx = d if dx is None else dx + d
        return tuple(grads), dx

    return _layer(name, tuple(layers), init, wiring, backward, widths_axis=axis)
