"""Pooling against lax.reduce_window and its jax.grad in float64, ties included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _marks import fast_at
from jax import lax

import jnet
from jnet.layers import windows

# (input shape, window, strides, padding); the first tiles the input (the reshape path).
CONFIGS = [
    ((2, 6, 4, 3), 2, None, "VALID"),
    ((2, 7, 7, 2), 2, None, "VALID"),
    ((2, 7, 5, 2), 3, 2, "SAME"),
    ((1, 6, 5, 2), (2, 3), 1, "VALID"),
    ((2, 6, 6, 1), 3, 2, ((1, 0), (0, 1))),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _reference(kind, x, window, strides, padding):
    k = _pair(window)
    s = k if strides is None else _pair(strides)
    pads, _ = windows.resolve("ref", windows.padding_spec("ref", padding), x.shape[1:3], k, s)
    pads = ((0, 0), *pads, (0, 0))
    if kind == "max_pool":
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, *k, 1), (1, *s, 1), pads)
    return lax.reduce_window(x, 0.0, lax.add, (1, *k, 1), (1, *s, 1), pads) / (k[0] * k[1])


def _inputs(shape, rng):
    """Continuous values, relu'd ones (windows of zeros) and small integers (many ties)."""
    x = rng.normal(size=shape)
    return [x, np.maximum(x, 0.0), np.round(x), np.zeros(shape)]


@pytest.mark.parametrize("kind", ["max_pool", "avg_pool"])
@pytest.mark.parametrize("config", fast_at(CONFIGS, {3}))
def test_pool_matches_reduce_window_and_its_gradient_with_ties(kind, config):
    shape, window, strides, padding = config
    layer = getattr(jnet, kind)(window, strides=strides, padding=padding)
    out_shape, params = layer.init(jax.random.key(0), shape)
    assert params == ()
    rng = np.random.default_rng(0)

    @jax.jit
    def both(x, dy):
        y, cache = layer.forward((), x)
        y_ref, vjp = jax.vjp(lambda x: _reference(kind, x, window, strides, padding), x)
        return y, y_ref, layer.backward((), cache, dy)[1], vjp(dy)[0]

    for x in _inputs(shape, rng):
        dy = jnp.asarray(rng.normal(size=out_shape))
        y, y_ref, dx, dx_ref = both(jnp.asarray(x), dy)
        assert y.shape == out_shape
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)


def test_max_pool_ties_send_the_gradient_to_the_first_maximum_only():
    x = jnp.array([[0.0, 1, 1], [1, 1, 0], [0, 0, 0]]).reshape(1, 3, 3, 1)
    layer = jnet.max_pool(2, strides=1)
    y, cache = layer.forward((), x)
    dx = layer.backward((), cache, jnp.ones_like(y))[1][0, :, :, 0]
    # Windows at (0,0) and (0,1) both pick (0,1); (1,0) picks (1,0); (1,1) picks (1,1).
    np.testing.assert_array_equal(dx, [[0, 2, 0], [1, 1, 0], [0, 0, 0]])
    zeros = jnp.zeros((1, 4, 4, 1))
    y, cache = jnet.max_pool(2).forward((), zeros)
    dx = jnet.max_pool(2).backward((), cache, jnp.ones_like(y))[1]
    assert float(dx.sum()) == 4.0  # exactly one element per window, not 1/4 of each
    np.testing.assert_array_equal(dx[0, ::2, ::2, 0], jnp.ones((2, 2)))


def test_global_avg_pool():
    layer = jnet.global_avg_pool()
    shape, _ = layer.init(jax.random.key(0), (2, 3, 5, 4))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 5, 4)))
    y, cache = layer.forward((), x)
    assert shape == y.shape == (2, 4)
    np.testing.assert_allclose(y, x.mean((1, 2)), rtol=1e-13)
    dy = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4)))
    ref = jax.vjp(lambda x: x.mean((1, 2)), x)[1](dy)[0]
    np.testing.assert_allclose(layer.backward((), cache, dy)[1], ref, rtol=1e-13)


def test_bad_inputs_raise_value_errors_naming_the_layer():
    with pytest.raises(ValueError, match=r"max_pool\(3\): the window covers \(3, 3\) pixels"):
        jnet.max_pool(3).init(jax.random.key(0), (1, 2, 5, 1))
    with pytest.raises(ValueError, match=r"avg_pool\(3\): the window covers"):
        jnet.avg_pool(3).forward((), jnp.ones((1, 5, 2, 1)))
    with pytest.raises(ValueError, match=r"max_pool\(2\): input has shape \(4, 4\); expected 4"):
        jnet.max_pool(2).forward((), jnp.ones((4, 4)))
    with pytest.raises(ValueError, match=r"max_pool\(2, padding='full'\): unknown padding"):
        jnet.max_pool(2, padding="full")
    with pytest.raises(ValueError, match=r"global_avg_pool\(\): input has shape"):
        jnet.global_avg_pool().forward((), jnp.ones((2, 4)))
    net = jnet.serial(jnet.conv2d(2, 3), jnet.max_pool(4))
    with pytest.raises(jnet.LayerError, match=r"^1:max_pool\(4\): the window covers"):
        net.init(jax.random.key(0), (1, 3, 3, 1))


@pytest.mark.slow
@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[2]], ids=["tiled", "same-strided"])
def test_max_pool_propagates_a_nan_wherever_it_lies_in_its_window(config):
    """A NaN makes its window's max NaN, as lax.reduce_window max (it was dropped unless it
    came first: [1, nan, 2, 0] gave 2); the gradient goes to the window's first NaN, as
    jax.vjp of the forward sends it."""
    shape, window, strides, padding = config
    layer = jnet.max_pool(window, strides=strides, padding=padding)
    out_shape, _ = layer.init(jax.random.key(0), shape)
    rng = np.random.default_rng(0)
    base = rng.normal(size=shape)
    dy = jnp.asarray(rng.normal(size=out_shape))

    @jax.jit
    def both(x):
        y, cache = layer.forward((), x)
        dx_auto = jax.vjp(lambda x: layer.forward((), x)[0], x)[1](dy)[0]
        return y, _reference("max_pool", x, window, strides, padding), layer.backward(
            (), cache, dy
        )[1], dx_auto  # fmt: skip

    pixels = [np.unravel_index(i, shape[1:3]) for i in range(shape[1] * shape[2])]
    for k, (i, j) in enumerate(pixels):  # a NaN at every pixel of image 0, channel 0
        x = base.copy()
        x[0, i, j, 0] = np.nan
        if k % 3 == 0:  # and a second NaN in some windows: the first one takes dy
            i2, j2 = pixels[(k + 1) % len(pixels)]
            x[0, i2, j2, 0] = np.nan
        y, y_ref, dx, dx_auto = both(jnp.asarray(x))
        np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
        np.testing.assert_allclose(y, y_ref, rtol=0, atol=0)  # NaNs compare equal here
        np.testing.assert_allclose(dx, dx_auto, rtol=1e-12, atol=1e-15)


def test_max_pool_nan_example_from_the_issue():
    layer = jnet.max_pool(2)

    @jax.jit
    def run(x):
        y, cache = layer.forward((), x)
        return y, layer.backward((), cache, jnp.ones_like(y))[1]

    y, dx = run(jnp.array([1.0, jnp.nan, 2.0, 0.0]).reshape(1, 2, 2, 1))
    assert np.isnan(float(y[0, 0, 0, 0]))  # was 2.0
    dx = dx.ravel()
    np.testing.assert_array_equal(dx, [0.0, 1.0, 0.0, 0.0])  # the NaN takes dy
