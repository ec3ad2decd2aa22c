"""The registry of gradient-check cases: every built-in layer and loss, mixed networks,
and the tutorials' architectures. Tests and `python -m jnet.gradcheck` run over it, so a
new layer gets every check by adding one line to `CASES`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jnet import initializers
from jnet import layers as L
from jnet.gradcheck import (
    GradientReport,
    attention_cases,
    check_gradients,
    conv_cases,
    rnn_cases,
    transformer_cases,
)
from jnet.gradcheck.case import Case, draw_input
from jnet.gradcheck.case import binary as _binary
from jnet.gradcheck.case import labels as _labels
from jnet.gradcheck.case import onehot as _onehot
from jnet.gradcheck.case import regression as _regression
from jnet.layers import init_with_state, mlp, serial
from jnet.losses import (
    mean_squared_error,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)


def _mlp(sizes, activation):
    # Random biases: with zero biases a layer after all-dead ReLUs sits exactly on a kink,
    # where finite differences and any subgradient disagree.
    return mlp(sizes, activation, b_init=initializers.normal(0.1))


CASES: dict[str, Case] = {
    # Layers (through MSE against random targets).
    "dense": Case(lambda: L.dense(5), mean_squared_error, (4, 6), _regression),
    "relu": Case(L.relu, mean_squared_error, (4, 6), _regression),
    "leaky_relu": Case(lambda: L.leaky_relu(0.1), mean_squared_error, (4, 6), _regression),
    "sigmoid": Case(L.sigmoid, mean_squared_error, (4, 6), _regression),
    "tanh": Case(L.tanh, mean_squared_error, (4, 6), _regression),
    "softmax": Case(L.softmax, mean_squared_error, (4, 6), _regression),
    "flatten": Case(L.flatten, mean_squared_error, (4, 2, 3), _regression),
    "dropout": Case(lambda: L.dropout(0.3), mean_squared_error, (4, 6), _regression, True),
    # Losses (on an identity network, so dx is the loss gradient).
    "softmax_cross_entropy[labels]": Case(serial, softmax_cross_entropy, (6, 5), _labels),
    "softmax_cross_entropy[one-hot]": Case(serial, softmax_cross_entropy, (6, 5), _onehot),
    "sigmoid_binary_cross_entropy": Case(serial, sigmoid_binary_cross_entropy, (6, 1), _binary),
    "mean_squared_error": Case(serial, mean_squared_error, (6, 3), _regression),
    # Networks that mix them, and the tutorials' architectures (reduced input where large).
    "mixed": Case(
        lambda: serial(
            L.flatten(),
            L.dense(7),
            L.tanh(),
            L.dropout(0.25),
            L.dense(6),
            L.leaky_relu(0.1),
            L.dense(5),
            L.sigmoid(),
            serial(L.dense(4), L.softmax()),
            L.dense(3),
        ),
        softmax_cross_entropy,
        (5, 2, 4),
        _labels,
        True,
    ),
    "t000 784-512-10 relu": Case(
        lambda: _mlp([512, 10], L.relu), softmax_cross_entropy, (8, 784), _labels
    ),
    "t002 [192,5,5,1] tanh": Case(
        lambda: _mlp([5, 5, 1], L.tanh), sigmoid_binary_cross_entropy, (8, 192), _binary
    ),
    "t002 [192,5,5,1] relu": Case(
        lambda: _mlp([5, 5, 1], L.relu), sigmoid_binary_cross_entropy, (8, 192), _binary
    ),
    "t004 xor 2-3-1 sigmoid": Case(
        lambda: _mlp([3, 1], L.sigmoid), mean_squared_error, (4, 2), _regression
    ),
    "t004 784-100-200-10 relu": Case(
        lambda: _mlp([100, 200, 10], L.relu), softmax_cross_entropy, (8, 784), _labels
    ),
}
CASES.update(conv_cases.CASES)
CASES.update(rnn_cases.CASES)
CASES.update(attention_cases.CASES)
CASES.update(transformer_cases.CASES)


def case_inputs(case: Case, dtype: Any = jnp.float64, seed: int = 0, *, with_state: bool = False):
    """Draws `(net, params, x, y, key)` for a registry case, in `dtype`.

    With `with_state=True`: `(net, params, x, y, key, state)`, the state from
    `init_with_state` (`()` for a stateless net), cast to `dtype` where it is floating.
    """
    net = case.net()
    k_init, k_x, k_y, k_drop = jax.random.split(jax.random.key(seed), 4)
    out_shape, params, state = init_with_state(net, k_init, case.input_shape)
    cast = lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p  # noqa: E731
    params, state = jax.tree.map(cast, params), jax.tree.map(cast, state)
    x = draw_input(net, k_x, case.input_shape, dtype)
    y = case.targets(k_y, out_shape, dtype)
    drawn = (net, params, x, y, (k_drop if case.uses_key else None))
    return (*drawn, state) if with_state else drawn


def check_case(name: str, dtype: Any = jnp.float64, **kwargs) -> GradientReport:
    """Runs `check_gradients` on one registry case (a stateful net at its initial state).

    The registry's cases are mostly single layers, each its own case, so by default the
    whole case is checked (`layers=False, per_example=False`): about ten times faster than
    also checking every layer of it on its own; pass `layers=True` to do that too.
    """
    kwargs = {"layers": False, "per_example": False} | kwargs
    case = CASES[name]
    net, params, x, y, key, state = case_inputs(case, dtype, with_state=True)
    return check_gradients(net, case.loss, params, x, y, key=key, state=state, name=name, **kwargs)
