"""The training state: everything training changes, as one pytree (and one checkpoint)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jnet import arguments
from jnet.layers import Layer, Params, State, init_with_state


class TrainState(NamedTuple):
    """Everything training changes, as one pytree (and one checkpoint).

    Attributes:
      params: the network's parameters.
      opt_state: the optax optimizer state.
      step: int32 scalar, optimizer updates applied so far.
      key: PRNG key, split once per epoch for the permutation, dropout and augmentation.
      model_state: the network's state (e.g. batch norm's running statistics), `()` for a
        stateless network; updated by the forward pass, never by the optimizer.
    """

    params: Params
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array
    model_state: State = ()


class DivergenceError(FloatingPointError):
    """The loss, the parameters or the optimizer state turned NaN or inf.

    `.state`/`.params` hold the last finite state, `.history` the epochs before it.
    """

    def __init__(self, message: str, state: TrainState, history: dict):
        super().__init__(message)
        self.state, self.params, self.history = state, state.params, history


def init_state(
    net: Layer,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    input_shape: Sequence[int],
    params: Params | None = None,
    model_state: State | None = None,
) -> TrainState:
    """A fresh state for inputs of `input_shape` (e.g. `(1, 784)`, batch axis first).

    `params=None` draws them (and the network's state) with `net.init` from one half of
    `key`; the other half becomes the state's key. The one place a TrainState is built.
    """
    arguments.prng_key("init_state", key)
    init_key, train_key = jax.random.split(key)
    if params is None or (net.stateful and model_state is None):
        _, drawn, drawn_state = init_with_state(net, init_key, tuple(input_shape))
        params = drawn if params is None else params
        model_state = drawn_state if model_state is None else model_state
    model_state = () if model_state is None else model_state
    return TrainState(
        params, optimizer.init(params), jnp.zeros((), jnp.int32), train_key, model_state
    )
