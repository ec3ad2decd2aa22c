"""The `Layer` contract: three pure functions and a name, optionally with state.

A stateless layer (the usual case):
  init(key, input_shape) -> (output_shape, params)
  forward(params, x, *, key=None) -> (y, cache)
  backward(params, cache, dy) -> (dparams, dx)

A stateful layer (`stateful=True`, e.g. batch norm's running statistics) has state that
training updates but no optimizer touches:
  init(key, input_shape) -> (output_shape, params, state)
  forward(params, x, *, key=None, state) -> (y, cache, new_state)
  backward is the same; state gets no gradient.

`init_with_state` and `forward_with_state` call either kind the stateful way (a stateless
layer's state is `()`), so combinators and the training engine need one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

Params = Any
Cache = Any
State = Any
Shape = tuple[int, ...]


class Layer(NamedTuple):
    """Three pure functions and a name (cf. `optax.GradientTransformation`).

    Attributes:
      init: `(key, input_shape) -> (output_shape, params)`; `input_shape` has a
        leading batch dimension of any size. Stateful: `-> (output_shape, params, state)`.
      forward: `(params, x, *, key=None) -> (y, cache)`; `key=None` means inference.
        Stateful: `(params, x, *, key=None, state) -> (y, cache, new_state)`.
      backward: `(params, cache, dy) -> (dparams, dx)`; `dparams` has the pytree
        structure of `params`, `dx` the shape and dtype of `x`.
      name: shown by `repr`, in error messages, gradient reports and `jnet.summary`;
        built-in factories name a layer after their call, e.g. `dense(512)`.
      stateful: whether `init` and `forward` carry state (see the module docstring).
      children: the layers a combinator is built from, in the order of its params
        (empty for a plain layer); `summary` and the gradient checker walk them.
      chained: whether the children run one after another, each on the previous one's
        output (`serial`); False where each child gets the combinator's own input
        (`residual`, `concat`). Informative: `wiring` is what the walks follow.
      wiring: how a combinator runs its children, `(params, x, key, states, call) -> y`
        (`states`: one per child, `()` for a stateless one; see `run_children`). It calls
        `call(i, params_i, x_i, key_i, state_i) -> y_i` for each child with exactly the
        params, input, key and state its forward gives that child, and combines their
        outputs as its forward does (serial's and residual's forwards are their wiring).
        None: a plain layer, or an opaque one. `jnet.summary` and the gradient checker's
        culprit finder walk into a combinator through it (the checker verifies that it
        reproduces the forward's output).
      vocab_size: set when the input is integer token ids in `[0, vocab_size)` (an
        `embedding`, or a network that starts with one): `fit`/`evaluate`'s data check,
        `summary` and the gradient checker then take integer inputs.
    """

    init: Callable[..., tuple]
    forward: Callable[..., tuple]
    backward: Callable[[Params, Cache, jax.Array], tuple[Params, jax.Array]]
    name: str = "layer"
    stateful: bool = False
    children: tuple[Layer, ...] = ()
    chained: bool = False
    wiring: Callable[..., Any] | None = None
    vocab_size: int | None = None

    def __repr__(self) -> str:
        return f"Layer({self.name})"


def init_with_state(
    layer: Layer, key: jax.Array, input_shape: Shape
) -> tuple[Shape, Params, State]:
    """`(output_shape, params, state)` for any layer; a stateless layer's state is `()`."""
    if layer.stateful:
        return layer.init(key, tuple(input_shape))
    out_shape, params = layer.init(key, tuple(input_shape))
    return out_shape, params, ()


def forward_with_state(
    layer: Layer, params: Params, x: jax.Array, *, key: Any = None, state: State = ()
) -> tuple[jax.Array, Cache, State]:
    """`(y, cache, new_state)` for any layer; a stateless layer passes `state` through."""
    if layer.stateful:
        return layer.forward(params, x, key=key, state=state)
    y, cache = layer.forward(params, x, key=key)
    return y, cache, state


def run_children(
    layer: Layer, params: Params, x: Any, key: Any, state: State, call: Callable[..., Any]
) -> Any:
    """`layer.wiring(params, x, key, state, call)`; a stateless layer's state is `()` per child."""
    if not layer.stateful:
        state = ((),) * len(layer.children)
    return layer.wiring(params, x, key, state, call)


def state_for(net: Layer, state: State, where: str) -> State:
    """`state` for a stateful net (a ValueError naming `where` when it is missing), `()`
    for a stateless one, whatever was passed."""
    if net.stateful and state is None:
        raise ValueError(
            f"{where}: {net.name} is stateful (it holds e.g. batch norm); pass state=, the "
            "model state that init or fit returned"
        )
    return state if net.stateful else ()
