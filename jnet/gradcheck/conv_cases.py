"""Gradient-check cases for the convolutional family: conv2d (both lowerings), pooling,
batch norm (inference and training mode), residual and concat blocks, and a small CNN.

Inputs are small (compiling dominates) and odd-sized where the padding rule matters.
Convolutions before a relu get random biases, so no pre-activation sits on the kink.
Batch norm runs in both modes, each through a stateless view of its own forward and
backward: inference with fixed running statistics, and training (with a key) on the batch's
statistics, which couple the examples (the stateful layer itself, state threaded through
serial and fit, is checked in tests/layers/test_norm.py and tests/train/).
"""

from __future__ import annotations

import jax.numpy as jnp

from jnet import initializers
from jnet import layers as L
from jnet.gradcheck.case import Case
from jnet.gradcheck.case import labels as _labels
from jnet.gradcheck.case import regression as _regression
from jnet.losses import mean_squared_error, softmax_cross_entropy

_B = initializers.normal(0.1)


def _minus_one(key, shape, dtype=float):
    return jnp.full(shape, -1.0, dtype)


def _stateless(bn: L.Layer, *, training: bool) -> L.Layer:
    """A stateless view of a batch norm: its own forward and backward, nothing else.

    Training (the forward's key passes through: batch statistics) or inference (no key,
    running statistics that are not the init values: mean 0.5, var 2).
    """
    mean, var = (0.0, 1.0) if training else (0.5, 2.0)

    def init(key, input_shape):
        shape, params, _ = bn.init(key, input_shape)
        return shape, params

    def forward(params, x, *, key=None):
        c = x.shape[-1]
        state = {"mean": jnp.full((c,), mean, x.dtype), "var": jnp.full((c,), var, x.dtype)}
        y, cache, _ = bn.forward(params, x, key=key if training else None, state=state)
        return y, cache

    return L.Layer(init, forward, bn.backward, f"{bn.name}[{'train' if training else 'inference'}]")


def _inference(bn: L.Layer) -> L.Layer:
    return _stateless(bn, training=False)


def _training(bn: L.Layer) -> L.Layer:
    return _stateless(bn, training=True)


def _conv(low, *args, **kwargs):
    return lambda: L.conv2d(*args, lowering=low, **kwargs)


def _conv_cases():
    cases = {}
    for low in ("matmul", "xla"):
        cases |= {
            f"conv2d 3x3 stride 2 SAME odd [{low}]": Case(
                _conv(low, 3, 3, strides=2), mean_squared_error, (2, 7, 6, 2), _regression
            ),
            f"conv2d 3x3 dilation 2 VALID [{low}]": Case(
                _conv(low, 2, 3, dilation=2, padding="VALID"), mean_squared_error, (2, 7, 7, 2),
                _regression,
            ),
            f"conv2d 2x3 stride (2,1) explicit padding [{low}]": Case(
                _conv(low, 3, (2, 3), strides=(2, 1), padding=((1, 0), (2, 1))),
                mean_squared_error, (2, 6, 5, 2), _regression,
            ),
            f"conv2d 1x1 stride 2 [{low}]": Case(
                _conv(low, 3, 1, strides=2), mean_squared_error, (2, 5, 5, 3), _regression
            ),
        }  # fmt: skip
    return cases


CASES: dict[str, Case] = {
    "conv2d 3x3 SAME": Case(lambda: L.conv2d(3, 3), mean_squared_error, (2, 5, 5, 2), _regression),
    **_conv_cases(),
    "max_pool 2": Case(lambda: L.max_pool(2), mean_squared_error, (2, 6, 4, 2), _regression),
    "max_pool 3 stride 2 SAME odd": Case(
        lambda: L.max_pool(3, strides=2, padding="SAME"), mean_squared_error, (2, 7, 5, 2),
        _regression,
    ),
    # Negative biases make many all-zero windows after the relu: ties. The tie-broken
    # gradient dies in the relu (its pre-activations are < 0), so finite differences agree
    # (no pre-activation lies within float32's finite-difference step of the kink here);
    # tests/layers/test_pool.py checks the tie rule itself against reduce_window's gradient.
    "max_pool ties after relu": Case(
        lambda: L.serial(
            L.conv2d(2, 3, b_init=_minus_one), L.relu(), L.max_pool(2),
        ),
        mean_squared_error, (1, 6, 6, 1), _regression,  # 8 of 18 windows tied, both dtypes
    ),
    "avg_pool 2": Case(lambda: L.avg_pool(2), mean_squared_error, (2, 4, 6, 2), _regression),
    "avg_pool 3 stride 2 SAME odd": Case(
        lambda: L.avg_pool(3, strides=2, padding="SAME"), mean_squared_error, (2, 5, 7, 2),
        _regression,
    ),
    "global_avg_pool": Case(L.global_avg_pool, mean_squared_error, (2, 3, 5, 4), _regression),
    "batch_norm[inference] after conv2d": Case(  # no relu: float32's FD step crossed its kink
        lambda: L.serial(L.conv2d(3, 3, b_init=_B), _inference(L.batch_norm())),
        mean_squared_error, (2, 5, 5, 2), _regression,
    ),
    # Training mode: the batch statistics couple the examples, so each example's gradient
    # depends on the others. Its key (uses_key) makes it training and tells the per-example
    # checks to compare one example at a time with a loop, not with the batch's mean.
    "batch_norm[train] (N, C)": Case(
        lambda: _training(L.batch_norm()), mean_squared_error, (6, 4), _regression, True,
    ),
    "batch_norm[train] after conv2d": Case(
        lambda: L.serial(L.conv2d(3, 3, b_init=_B), _training(L.batch_norm())),
        mean_squared_error, (3, 5, 5, 2), _regression, True,
    ),
    "residual conv2d-batch_norm[train]-relu-conv2d": Case(
        lambda: L.residual(L.serial(
            L.conv2d(4, 3, b_init=_B), _training(L.batch_norm()), L.relu(), L.conv2d(3, 3),
        )),
        mean_squared_error, (2, 5, 5, 3), _regression, True,
    ),
    "residual conv2d-relu-conv2d": Case(
        lambda: L.residual(L.serial(L.conv2d(4, 3, b_init=_B), L.relu(), L.conv2d(3, 3))),
        mean_squared_error, (2, 5, 5, 3), _regression,
    ),
    "residual projection conv2d stride 2": Case(
        lambda: L.residual(
            L.serial(L.conv2d(4, 3, strides=2, b_init=_B), L.relu(), L.conv2d(4, 3)),
            projection=L.conv2d(4, 1, strides=2),
        ),
        mean_squared_error, (2, 5, 5, 2), _regression,
    ),
    "concat conv2d 1x1 | conv2d 3x3 | max_pool": Case(
        lambda: L.concat(L.conv2d(2, 1), L.conv2d(3, 3), L.max_pool(3, strides=1, padding="SAME")),
        mean_squared_error, (2, 5, 5, 2), _regression,
    ),
    "cnn conv2d-relu-max_pool-conv2d-relu-global_avg_pool-dense": Case(
        lambda: L.serial(
            L.conv2d(4, 3, b_init=_B), L.relu(), L.max_pool(2), L.conv2d(6, 3, b_init=_B),
            L.relu(), L.global_avg_pool(), L.dense(5),
        ),
        softmax_cross_entropy, (3, 8, 8, 1), _labels,
    ),
}  # fmt: skip
