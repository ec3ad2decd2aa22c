"""Combinators: layers made of layers. `serial` chains them (`residual.py` branches,
`tie.py` shares a weight; the models built from layers are in `jnet.models`).

A combinator is itself a `Layer`, so networks nest, and its backward is the chain of its
children's hand-written backwards. Inside a combinator a child is addressed as
`<index>:<name>` (e.g. `2:dense(10)`), nested addresses join with "/" (`1/0:dense(8)`):
error messages, gradient reports and `jnet.summary` all use that address.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

from jnet.layers.base import Layer, forward_with_state, init_with_state
from jnet.layers.checks import BackwardError, check_backward


class LayerError(ValueError):
    """A ValueError raised inside a combinator, carrying the failing child's address.

    Attributes:
      path: child indices from the outermost combinator down, e.g. `(1, 0)`.
      layer_name: the failing layer's name, e.g. `"dense(8)"`.
      problem: what went wrong, without the address.
      in_backward: whether the layer's backward returned something malformed
        (`checks.BackwardError`) rather than its forward refusing the input.
    """

    def __init__(
        self, path: tuple[int, ...], layer_name: str, problem: str, in_backward: bool = False
    ):
        self.path, self.layer_name, self.problem = path, layer_name, problem
        self.in_backward = in_backward
        super().__init__(f"{address(path, layer_name)}: {problem}")


def address(path: Sequence[int], name: str) -> str:
    """`"1/0:dense(8)"` for path (1, 0) and name "dense(8)"."""
    return "/".join(str(i) for i in path) + f":{name}"


def at(index: int, layer: Layer, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Calls `fn` (a method of child `index`), re-raising its ValueError with the address."""
    try:
        return fn(*args, **kwargs)
    except LayerError as e:  # from a nested combinator: prepend our index
        raise LayerError((index, *e.path), e.layer_name, e.problem, e.in_backward) from None
    except ValueError as e:
        problem = str(e)
        prefix = f"{layer.name}: "
        if problem.startswith(prefix):  # the layer named itself: say it once
            problem = problem[len(prefix) :]
        raise LayerError((index,), layer.name, problem, isinstance(e, BackwardError)) from None


def check_layers(where: str, layers: Sequence[Any]) -> None:
    """Raises a TypeError naming the first argument that is not a `Layer`."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            hint = " (call the factory: dense(10), relu())" if callable(layer) else ""
            raise TypeError(
                f"{where}: argument {i} must be a jnet.Layer; got {type(layer).__name__}"
                f" {getattr(layer, '__name__', '')}".rstrip()
                + hint
            )


def _is_pair(shape: Any) -> bool:
    """Whether `shape` is an `(x, mask)` pair of shapes (a masked recurrent layer's output)."""
    return len(shape) == 2 and all(isinstance(s, tuple | list) for s in shape)


def _init_child(layer: Layer, key: jax.Array, shape: Any) -> tuple:
    """A child's `init_with_state`; a TypeError from a layer given an `(x, mask)` pair it
    cannot take becomes a ValueError saying so (`at` then adds the child's address)."""
    try:
        return init_with_state(layer, key, shape)
    except TypeError as e:
        if not _is_pair(shape):
            raise
        raise ValueError(
            f"its input is an (x, mask) pair of shapes {tuple(shape[0])} and "
            f"{tuple(shape[1])}, as a masked recurrent layer with return_sequences=True "
            "passes on, and it takes one array; give the last recurrent layer before it "
            f"return_sequences=False ({type(e).__name__}: {e})"
        ) from e


def _split(key, n):
    return [None] * n if key is None else list(jax.random.split(key, n))


def serial(*layers: Layer, name: str | None = None) -> Layer:
    """Chains layers: `serial(dense(512), relu(), dense(10))`. `serial()` is the identity.

    Params, caches and state are tuples with one entry per layer; one key is split among
    them. The result is stateful if any child is (its state: one entry per child, `()` for
    stateless ones). A ValueError raised by a child is re-raised as a `LayerError`
    addressed `<index>:<name>`, e.g. `2:dense(10): input has shape ...`.
    """
    check_layers("serial", layers)
    stateful = any(layer.stateful for layer in layers)
    if name is None:
        name = "serial(" + ", ".join(layer.name for layer in layers) + ")"

    def init(key, input_shape):
        params, states = [], []
        shape = tuple(input_shape)
        keys = jax.random.split(key, max(len(layers), 1))[: len(layers)]
        for i, (layer, k) in enumerate(zip(layers, keys, strict=True)):
            shape, p, s = at(i, layer, _init_child, layer, k, shape)
            params.append(p)
            states.append(s)
        if stateful:
            return shape, tuple(params), tuple(states)
        return shape, tuple(params)

    def wiring(params, x, key, states, call):
        for i, (p, k, s) in enumerate(zip(params, _split(key, len(layers)), states, strict=True)):
            x = call(i, p, x, k, s)
        return x

    def forward_stateful(params, x, *, key=None, state):
        if not isinstance(params, tuple | list) or len(params) != len(layers):
            got = len(params) if isinstance(params, tuple | list) else type(params).__name__
            raise ValueError(f"{name}: got params for {got} layers but it has {len(layers)}")
        if not isinstance(state, tuple) or len(state) != len(layers):
            raise ValueError(f"{name}: state must be a tuple with one entry per layer")
        return run_checked(layers, wiring, params, x, key, state)

    def forward(params, x, *, key=None):
        y, caches, _ = forward_stateful(params, x, key=key, state=((),) * len(layers))
        return y, caches

    def backward(params, caches, dy):
        grads = [None] * len(layers)
        for i in reversed(range(len(layers))):
            grads[i], dy = layers[i].backward(params[i], caches[i], dy)
        return tuple(grads), dy

    return Layer(
        init, forward_stateful if stateful else forward, backward, name, stateful,
        tuple(layers), chained=True, wiring=wiring,
        vocab_size=layers[0].vocab_size if layers else None,
    )  # fmt: skip


def run_checked(
    layers, wiring, params, x, key, state, outs: list | None = None
) -> tuple[Any, tuple, tuple]:
    """A combinator's forward through its `wiring`: `(y, caches, states)`, one cache and
    state per child; each child's errors re-raised with its address and its backward's
    output checked (abstractly) at the input it got. `outs`, if given, receives the
    children's outputs."""
    n = len(layers)
    caches, states, ys = [None] * n, [None] * n, [None] * n

    def call(i, p, x_i, k, s):
        layer = layers[i]
        y, caches[i], states[i] = at(i, layer, forward_with_state, layer, p, x_i, key=k, state=s)
        at(i, layer, check_backward, layer.name, layer.backward, p, x_i, caches[i], y)
        ys[i] = y
        return y

    y = wiring(params, x, key, state, call)
    if outs is not None:
        outs.extend(ys)
    return y, tuple(caches), tuple(states)

