"""conv2d: both lowerings against lax.conv_general_dilated (forward) and jax.grad of it
(backward) in float64, the SAME rule, the per-backend default, the dimension numbers the
compiled backward keeps, and bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _marks import fast_at
from jax import lax

import jnet
from jnet.layers import conv, windows

# (input (N, H, W, C), features, kernel_size, strides, padding, dilation)
CONFIGS = [
    ((2, 7, 6, 3), 4, 3, 2, "SAME", 1),
    ((2, 7, 7, 2), 3, 3, 1, "SAME", 2),
    ((1, 8, 5, 2), 4, (2, 3), (2, 1), "VALID", 1),
    ((2, 5, 9, 3), 2, 3, (1, 2), ((2, 0), (1, 3)), (2, 1)),
    ((2, 9, 9, 3), 5, 1, 2, "SAME", 1),
    ((1, 6, 7, 2), 3, 3, 3, 1, 1),
    ((2, 7, 7, 1), 2, 5, 2, "SAME", 1),
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _reference(x, w, b, strides, padding, dilation):
    """XLA's convolution, with the padding given as lax takes it."""
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    return (
        lax.conv_general_dilated(
            x, w, _pair(strides), padding, rhs_dilation=_pair(dilation),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        + b
    )  # fmt: skip


@pytest.mark.parametrize("lowering", ["matmul", "xla"])
@pytest.mark.parametrize("config", fast_at(CONFIGS, {3}))
def test_forward_and_backward_match_xla_and_jax_grad(config, lowering):
    shape, features, k, s, pad, d = config
    layer = jnet.conv2d(features, k, strides=s, padding=pad, dilation=d, lowering=lowering)
    out_shape, params = layer.init(jax.random.key(0), shape)
    rng = np.random.default_rng(1)
    params["b"] = jnp.asarray(rng.normal(size=params["b"].shape))
    x = jnp.asarray(rng.normal(size=shape))
    dy = jnp.asarray(rng.normal(size=out_shape))

    @jax.jit
    def both(params, x, dy):
        y, cache = layer.forward(params, x)
        y_ref, vjp = jax.vjp(lambda p, x: _reference(x, p["w"], p["b"], s, pad, d), params, x)
        return y, y_ref, layer.backward(params, cache, dy), vjp(dy)

    y, y_ref, hand, auto = both(params, x, dy)
    assert y.shape == out_shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(jax.tree.leaves(hand), jax.tree.leaves(auto), strict=True):
        assert got.shape == want.shape
        assert float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want))) <= 1e-10


def test_same_puts_the_extra_row_and_column_at_the_end():
    # 6 rows, kernel 3, stride 2: 3 outputs need 7 rows, so one pad row, at the bottom.
    pads, out = windows.resolve("t", "SAME", (6, 7), (3, 3), (2, 2))
    assert pads == ((0, 1), (1, 1)) and out == (3, 4)
    pads, out = windows.resolve("t", "SAME", (8, 8), (2, 2), (2, 2))
    assert pads == ((0, 0), (0, 0)) and out == (4, 4)
    layer = jnet.conv2d(2, 3, strides=2, lowering="matmul")
    out_shape, params = layer.init(jax.random.key(0), (1, 6, 7, 1))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 6, 7, 1)))
    y, _ = layer.forward(params, x)
    assert out_shape == y.shape == (1, 3, 4, 2)
    np.testing.assert_allclose(y, _reference(x, params["w"], 0.0, 2, "SAME", 1), rtol=1e-12)


def test_default_lowering_is_chosen_by_backend():
    layer = jnet.conv2d(2, 3)
    _, params = layer.init(jax.random.key(0), (1, 5, 5, 1))
    x = jnp.ones((1, 5, 5, 1))
    from jnet import xla_flags

    ynn = jax.default_backend() == "cpu" and not xla_flags.ynn_convolutions_off()
    expected = "matmul" if ynn else "xla"  # tests/test_xla_flags.py: both CPU cases
    assert conv.lowering_for(None) == expected
    jaxpr = str(jax.make_jaxpr(lambda x: layer.forward(params, x)[0])(x))
    assert ("conv_general_dilated" in jaxpr) == (expected == "xla")
    forced = str(jax.make_jaxpr(jnet.conv2d(2, 3, lowering="xla").forward)(params, x))
    assert "conv_general_dilated" in forced


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="a GPU compiles to cuDNN calls")
@pytest.mark.parametrize("strides, dilation", fast_at([(2, 1), (1, 2)], {0}, unpack=True))
def test_xla_lowering_keeps_the_forwards_dimension_numbers_inside_scan(strides, dilation):
    # XLA's CPU backend runs a convolution with other dimension numbers as a naive loop
    # inside lax.scan (~10x slower): all three (y, dx, dw) must stay NHWC/HWIO/NHWC.
    layer = jnet.conv2d(4, 3, strides=strides, dilation=dilation, lowering="xla")
    _, params = layer.init(jax.random.key(0), (2, 9, 9, 3))

    def epoch(params, xs):
        def step(p, x):
            y, cache = layer.forward(p, x)
            dp, dx = layer.backward(p, cache, jnp.cos(y))
            return jax.tree.map(lambda a, g: a - 0.1 * g, p, dp), dx.sum()

        return lax.scan(step, params, xs)

    hlo = jax.jit(epoch).lower(params, jnp.ones((3, 2, 9, 9, 3))).compile().as_text()
    labels = [line.split("dim_labels=")[1].split(",")[0] for line in hlo.splitlines()
              if " convolution(" in line]  # fmt: skip
    assert len(labels) == 3 and set(labels) == {"b01f_01io->b01f"}, labels


def test_init_is_he_normal_with_zero_bias_and_names_follow_the_call():
    shape, params = jnet.conv2d(64, 3).init(jax.random.key(0), (1, 8, 8, 32))
    assert shape == (1, 8, 8, 64)
    assert params["w"].shape == (3, 3, 32, 64) and params["b"].shape == (64,)
    assert abs(float(params["w"].std()) / (2 / (9 * 32)) ** 0.5 - 1) < 0.03
    assert not params["b"].any()
    assert jnet.conv2d(32, 3).name == "conv2d(32, 3)"
    assert jnet.conv2d(32, (3, 5), strides=2, padding="VALID").name == (
        "conv2d(32, (3, 5), strides=2, padding='VALID')"
    )


@pytest.mark.slow  # compiles a forward per bad input; tests/layers/test_errors.py is fast
def test_bad_inputs_raise_value_errors_naming_the_layer():
    layer = jnet.conv2d(4, 3)
    _, params = layer.init(jax.random.key(0), (1, 6, 6, 2))
    with pytest.raises(ValueError, match=r"conv2d\(4, 3\): input has shape \(6, 6, 2\); expected"):
        layer.forward(params, jnp.ones((6, 6, 2)))
    with pytest.raises(ValueError, match=r"conv2d\(4, 3\): .*initialised for 2 input channels"):
        layer.forward(params, jnp.ones((1, 6, 6, 3)))
    with pytest.raises(ValueError, match=r"conv2d\(4, 3, padding='FULL'\): unknown padding"):
        jnet.conv2d(4, 3, padding="FULL")
    with pytest.raises(ValueError, match=r"conv2d\(4, 5, padding='VALID'\): the window covers"):
        jnet.conv2d(4, 5, padding="VALID").init(jax.random.key(0), (1, 3, 3, 1))
    with pytest.raises(ValueError, match="kernel_size must be an int >= 1"):
        jnet.conv2d(4, 0)
    with pytest.raises(ValueError, match="lowering must be"):
        jnet.conv2d(4, 3, lowering="cudnn")
    with pytest.raises(ValueError, match="must be a floating-point array"):
        layer.forward(params, jnp.ones((1, 6, 6, 2), int))
    net = jnet.serial(jnet.conv2d(4, 3), jnet.relu(), jnet.conv2d(8, 3))
    _, net_params = net.init(jax.random.key(0), (1, 6, 6, 2))
    with pytest.raises(jnet.LayerError, match=r"^0:conv2d\(4, 3\): input has shape \(6, 6, 2\)"):
        jax.jit(lambda x: net.forward(net_params, x)[0])(jnp.ones((6, 6, 2)))
    with pytest.raises(ValueError, match="another layer's"):
        jnet.conv2d(8, 3).forward(params, jnp.ones((1, 6, 6, 2)))
