"""Layers one at a time: backward vs jax.vjp, shapes, dropout's mask, initializers."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry_support import NAMES

import jnet
from jnet import initializers
from jnet.gradcheck import assert_trees_close
from jnet.gradcheck.registry import CASES, case_inputs


@functools.cache
def inputs(name):
    """`(net, params, x, y, key)` for a registry case, drawn once per session (float64)."""
    return case_inputs(CASES[name])


def randn(shape, seed=0):
    # numpy, not jax.random: every new shape would cost a threefry compile.
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def _leading_axes_inputs(name):
    """`(net, params, x, key)` with input `(2, 3, ...)` in place of the case's `(N, ...)`.

    Params come from the case's own input shape when the net does not care about leading
    axes (dense, activations, MLPs): then this really runs the same layer on more axes.
    A net whose parameters depend on them (`flatten()` merges all but the first axis) is
    initialised for the new shape instead.
    """
    case = CASES[name]
    net, params, _, _, key = inputs(name)
    shape = (2, 3) + tuple(case.input_shape[1:])
    new_shapes = jax.eval_shape(lambda k: net.init(k, shape)[1], jax.random.key(0))
    if jax.tree.map(jnp.shape, new_shapes) != jax.tree.map(jnp.shape, params):
        params = net.init(jax.random.key(0), shape)[1]
    x = randn(shape, seed=1)
    if net.vocab_size is not None:  # token ids
        x = jnp.asarray(np.random.default_rng(1).integers(0, net.vocab_size, shape))
    return net, params, x, key


def _check_vjp(net, key, *pairs):
    """backward(params, cache, dy) against jax.vjp of the forward, for each `(params, x)`.

    All of them in one compiled program: compiling is what costs here.
    """

    def both(p, x, dy):
        y, cache = net.forward(p, x, key=key)
        y_ref, vjp = jax.vjp(lambda p, x: net.forward(p, x, key=key)[0], p, x)
        return y, y_ref, net.backward(p, cache, dy), vjp(dy)

    dys = []
    for params, x in pairs:
        out = jax.eval_shape(lambda p, x: net.forward(p, x, key=key)[0], params, x)
        dys.append(randn(out.shape, seed=2).astype(out.dtype))
    results = jax.jit(lambda args: [both(*a) for a in args])(
        [(p, x, dy) for (p, x), dy in zip(pairs, dys, strict=True)]
    )
    for (params, x), (y, y_ref, (dparams, dx), want) in zip(pairs, results, strict=True):
        np.testing.assert_array_equal(y, y_ref)
        assert jax.tree.structure(dparams) == jax.tree.structure(params)
        if params == ():
            assert dparams == ()
        if jnp.issubdtype(x.dtype, jnp.integer):  # token ids get no gradient
            assert dx is None
            assert_trees_close(dparams, want[0], rtol=1e-12, atol=1e-13)
            continue
        assert dx.shape == x.shape and dx.dtype == x.dtype
        # atol: a gradient that is zero in exact arithmetic (a conv bias before a training
        # batch norm) comes out as rounding noise, ~1e-15 times the terms summed.
        assert_trees_close((dparams, dx), want, rtol=1e-12, atol=1e-13)


# 2. Layer-level VJP: backward(params, cache, dy) == jax.vjp of the forward, every case, on
#    the case's (N, ...) input and on one with an extra leading axis, (2, 3, ...).


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_jax_vjp(name):
    net, params, x, _, key = inputs(name)
    _, params2, x2, _ = _leading_axes_inputs(name)
    _check_vjp(net, key, (params, x), (params2, x2))


@pytest.mark.slow
def test_leading_axes_really_reuse_the_params():
    # Guards the helper: for dense and the MLPs the (2, 3, d) input runs on the (N, d) params.
    for name in ("dense", "t002 [192,5,5,1] relu"):
        net, params, x, _ = _leading_axes_inputs(name)
        ref = inputs(name)[1]
        assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref)
        assert net.forward(params, x)[0].shape[:2] == (2, 3)


@pytest.mark.parametrize(
    "layer, in_shape",
    [
        (jnet.dense(4), (6,)),  # one example, as under vmap
        (jnet.tanh(), ()),
        (jnet.flatten(2), (2, 3, 4, 5)),
        (jnet.flatten(2), (4, 5)),  # flatten(ndim) needs no batch axis
        (jnet.softmax(), (2, 1, 3, 5)),
    ],
    ids=["dense-1d", "tanh-0d", "flatten2-4d", "flatten2-2d", "softmax-4d"],
)
def test_backward_matches_jax_vjp_on_other_ranks(layer, in_shape):
    _, params = layer.init(jax.random.key(0), in_shape)
    _check_vjp(layer, None, (params, randn(in_shape)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [1, 7])
def test_init_output_shape_matches_forward(name, batch):
    case = CASES[name]
    net = case.net()
    shape = (batch,) + tuple(case.input_shape[1:])
    out_shape = []

    def init(key):  # shapes only: eval_shape traces without running or compiling
        s, params = net.init(key, shape)
        out_shape.append(s)
        return params

    params = jax.eval_shape(init, jax.random.key(0))
    key = jax.random.key(1) if case.uses_key else None
    x = jax.ShapeDtypeStruct(shape, jnp.int32 if net.vocab_size else jnp.float64)

    def forward(p, x):
        return net.forward(p, x, key=key)[0]

    if batch == 1 and name == "batch_norm[train] (N, C)":  # one value per channel: refused
        with pytest.raises(ValueError, match="more than 1 value per channel when training"):
            jax.eval_shape(forward, params, x)
        return
    out = jax.eval_shape(forward, params, x)
    assert out.shape == tuple(out_shape[0])
    assert out_shape[0][0] == batch


@pytest.mark.slow
def test_forward_is_plain_math():
    # Forward values against direct formulas, so the vjp tests are not comparing a wrong
    # forward with its own (consistent) gradient.
    x = jnp.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    fwd = lambda layer, p=(): layer.forward(p, x)[0]
    np.testing.assert_allclose(fwd(jnet.relu()), [[0, 0, 0, 0.5, 3.0]])
    np.testing.assert_allclose(fwd(jnet.leaky_relu(0.1)), [[-0.2, -0.05, 0, 0.5, 3.0]])
    np.testing.assert_allclose(fwd(jnet.sigmoid()), 1 / (1 + np.exp(-np.asarray(x))))
    np.testing.assert_allclose(fwd(jnet.tanh()), np.tanh(x))
    e = np.exp(np.asarray(x))
    np.testing.assert_allclose(fwd(jnet.softmax()), e / e.sum(-1, keepdims=True))
    w, b = jnp.arange(10.0).reshape(5, 2), jnp.array([1.0, -1.0])
    np.testing.assert_allclose(fwd(jnet.dense(2), {"w": w, "b": b}), np.asarray(x) @ w + b)
    assert jnet.flatten().forward((), jnp.zeros((4, 2, 3)))[0].shape == (4, 6)


def test_relu_gradient_at_zero_is_zero():
    _, dx = jnet.relu().backward((), jnet.relu().forward((), jnp.zeros(3))[1], jnp.ones(3))
    np.testing.assert_array_equal(dx, 0.0)


# 5. Dropout.


def test_dropout_backward_reuses_the_forward_mask():
    rate = 0.3
    layer = jnet.dropout(rate)
    x = randn((64, 50), seed=0)
    dy = randn(x.shape, seed=1)
    y, cache = layer.forward((), x, key=jax.random.key(2))
    dparams, dx = layer.backward((), cache, dy)
    dropped = np.asarray(y == 0)  # x is nonzero almost surely
    assert dparams == ()
    assert 0.2 < dropped.mean() < 0.4
    np.testing.assert_array_equal(np.asarray(dx)[dropped], 0.0)
    np.testing.assert_allclose(np.asarray(dx)[~dropped], np.asarray(dy / (1 - rate))[~dropped])
    np.testing.assert_allclose(np.asarray(y)[~dropped], np.asarray(x / (1 - rate))[~dropped])


@pytest.mark.slow
def test_dropout_through_apply_uses_one_mask():
    layer = jnet.dropout(0.5)
    x = randn((64, 50), seed=0)
    key = jax.random.key(4)
    f = jnet.apply(layer)
    y, vjp = jax.vjp(lambda x: f((), x, key=key), x)
    (dx,) = vjp(jnp.ones_like(y))
    np.testing.assert_array_equal(dx == 0, y == 0)
    np.testing.assert_allclose(dx[y != 0], 2.0)
    # jit draws the same mask as eager for the same key.
    np.testing.assert_array_equal(jax.jit(lambda x: f((), x, key=key))(x), y)


def test_dropout_keys_choose_the_mask():
    layer = jnet.dropout(0.5)
    x = jnp.ones((64, 50))
    y1 = layer.forward((), x, key=jax.random.key(1))[0]
    np.testing.assert_array_equal(layer.forward((), x, key=jax.random.key(1))[0], y1)
    assert np.any(layer.forward((), x, key=jax.random.key(2))[0] != y1)
    # serial splits its key, so two dropout layers in one network draw different masks.
    _, caches = jnet.serial(layer, layer).forward(((), ()), x, key=jax.random.key(1))
    assert np.any(caches[0] != caches[1])


@pytest.mark.parametrize("layer", [jnet.dropout(0.5), jnet.dropout(0.0)], ids=["0.5", "0.0"])
def test_dropout_without_key_is_the_identity(layer):
    x = randn((4, 5), seed=0)
    dy = randn((4, 5), seed=1)
    y, cache = layer.forward((), x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(layer.backward((), cache, dy)[1], dy)
    _, vjp = jax.vjp(lambda x: jnet.apply(layer)((), x), x)
    np.testing.assert_array_equal(vjp(dy)[0], dy)


def test_dropout_rate_0_with_a_key_is_the_identity():
    x = randn((4, 5), seed=0)
    np.testing.assert_array_equal(jnet.dropout(0.0).forward((), x, key=jax.random.key(0))[0], x)


@pytest.mark.slow
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_preserves_the_mean(rate):
    n = 1_000_000
    y = jnet.dropout(rate).forward((), jnp.ones(n), key=jax.random.key(7))[0]
    sd = math.sqrt(rate / (1 - rate) / n)  # std of the mean of n scaled Bernoullis
    assert abs(float(y.mean()) - 1.0) < 5 * sd
    assert abs(float((y == 0).mean()) - rate) < 5 * math.sqrt(rate * (1 - rate) / n)
    # Per unit too: over many keys, E[y] = x.
    x = randn((20,), seed=0)
    keys = jax.random.split(jax.random.key(1), 20_000)
    ys = jax.vmap(lambda k: jnet.dropout(rate).forward((), x, key=k)[0])(keys)
    tol = 5 * np.abs(x) * math.sqrt(rate / (1 - rate) / len(keys))
    assert np.all(np.abs(ys.mean(0) - x) < tol)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_rate_outside_0_1_raises(rate):
    with pytest.raises(ValueError, match=r"dropout: rate .* \[0, 1\); got"):
        jnet.dropout(rate)


@pytest.mark.slow
def test_dropout_is_in_the_registry_with_a_key():
    # So the registry tests (tests/gradcheck/test_registry.py) all run dropout
    # with a fixed key: with a real mask, and the same one on every call.
    assert CASES["dropout"].uses_key and CASES["mixed"].uses_key
    net, params, x, _, key = inputs("dropout")
    y = net.forward(params, x, key=key)[0]
    assert np.any(y == 0) and np.any(y != 0)
    again = case_inputs(CASES["dropout"])
    np.testing.assert_array_equal(net.forward(params, x, key=again[-1])[0], y)


# 7. Initializers.

KEY = jax.random.key(42)
FAN_IN, FAN_OUT = 600, 400  # unequal, so fan_in / fan_out mix-ups show


def _moments(w):
    w = np.asarray(w)
    n = w.size
    return w.mean(), w.std(), n


@pytest.mark.slow
@pytest.mark.parametrize(
    "init_fn, std",
    [
        (initializers.normal(0.01), 0.01),
        (initializers.glorot_normal(), math.sqrt(2 / (FAN_IN + FAN_OUT))),
        (initializers.he_normal(), math.sqrt(2 / FAN_IN)),
        (initializers.lecun_normal(), 1 / math.sqrt(FAN_IN)),
    ],
    ids=["normal(0.01)", "glorot_normal", "he_normal", "lecun_normal"],
)
def test_normal_initializers_have_the_right_std(init_fn, std):
    w = init_fn(KEY, (FAN_IN, FAN_OUT))
    assert w.shape == (FAN_IN, FAN_OUT)
    mean, sd, n = _moments(w)
    assert abs(mean) < 5 * std / math.sqrt(n)
    assert abs(sd / std - 1) < 5 / math.sqrt(2 * n)  # std of a sample std: sigma / sqrt(2n)
    # Untruncated: about 4.55% of a normal lies beyond two standard deviations.
    beyond = np.mean(np.abs(np.asarray(w)) > 2 * std)
    assert abs(beyond - 0.0455) < 5 * math.sqrt(0.0455 * 0.9545 / n)
    assert init_fn(KEY, (FAN_IN, FAN_OUT), jnp.float32).dtype == jnp.float32


def test_uniform_initializer():
    w = np.asarray(initializers.uniform(-0.5, 0.5)(KEY, (FAN_IN, FAN_OUT)))
    assert w.min() >= -0.5 and w.max() < 0.5
    assert w.min() < -0.499 and w.max() > 0.499
    sd = 1 / math.sqrt(12)
    assert abs(w.mean()) < 5 * sd / math.sqrt(w.size)
    assert abs(w.std() / sd - 1) < 0.01
    b = np.asarray(initializers.uniform(2.0, 3.0)(KEY, (1000,)))
    assert b.min() >= 2.0 and b.max() < 3.0 and abs(b.mean() - 2.5) < 0.05


def test_zeros_initializer():
    z = initializers.zeros()(KEY, (3, 4), jnp.float32)
    assert z.shape == (3, 4) and z.dtype == jnp.float32
    np.testing.assert_array_equal(z, 0.0)


@pytest.mark.parametrize("init_fn", [initializers.glorot_normal(), initializers.he_normal()])
def test_fan_initializers_need_a_matrix(init_fn):
    with pytest.raises(ValueError, match=r"\(fan_in, fan_out\); got \(5,\)"):
        init_fn(KEY, (5,))


def test_dense_uses_its_initializers():
    layer = jnet.dense(FAN_OUT, w_init=initializers.normal(0.01), b_init=initializers.uniform(2, 3))
    out_shape, params = layer.init(KEY, (5, FAN_IN))
    assert out_shape == (5, FAN_OUT)
    assert params["w"].shape == (FAN_IN, FAN_OUT) and params["b"].shape == (FAN_OUT,)
    assert abs(float(params["w"].std()) / 0.01 - 1) < 0.02
    assert float(params["b"].min()) >= 2 and float(params["b"].max()) < 3
    # Defaults: Glorot normal weights, zero biases.
    _, default = jnet.dense(FAN_OUT).init(KEY, (5, FAN_IN))
    glorot = math.sqrt(2 / (FAN_IN + FAN_OUT))
    assert abs(float(default["w"].std()) / glorot - 1) < 0.02
    np.testing.assert_array_equal(default["b"], 0.0)


def test_init_is_deterministic_in_the_key():
    net = jnet.serial(jnet.dense(4), jnet.relu(), jnet.dense(2))
    _, a = net.init(jax.random.key(0), (3, 5))
    _, b = net.init(jax.random.key(0), (3, 5))
    _, c = net.init(jax.random.key(1), (3, 5))
    assert_trees_close(a, b, rtol=0)
    assert not np.allclose(a[0]["w"], c[0]["w"])


@pytest.mark.slow
def test_mlp_is_dense_activation_dropout_then_dense():
    net = jnet.mlp([5, 4, 3], jnet.tanh, dropout_rate=0.5, w_init=initializers.normal(0.01))
    out_shape, params = net.init(jax.random.key(0), (2, 6))
    assert out_shape == (2, 3)
    # dense, tanh, dropout, dense, tanh, dropout, dense: parameters only on the dense layers
    assert [bool(p) for p in params] == [True, False, False, True, False, False, True]
    assert [p["w"].shape for p in params if p] == [(6, 5), (5, 4), (4, 3)]
    x = jnp.ones((2, 6))
    assert not np.array_equal(
        net.forward(params, x, key=jax.random.key(1))[0], net.forward(params, x)[0]
    )


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: jnet.dense(0), ValueError, r"dense: n is the number of output features.*got 0"),
        (lambda: jnet.dense(2.5), ValueError, r"an int >= 1; got 2.5"),
        (lambda: jnet.dense(3, compute_dtype=jnp.int8), ValueError, r"compute_dtype .* int8"),
        (lambda: jnet.dropout(None), ValueError, r"dropout: rate .*; got None"),
        (lambda: jnet.flatten(2.5), ValueError, r"flatten: ndim .*; got 2.5"),
        (lambda: jnet.mlp([]), ValueError, r"mlp: sizes is a list of layer widths"),
        (lambda: jnet.mlp(10), ValueError, r"mlp: sizes .*; got 10"),
        (lambda: jnet.serial(jnet.dense), TypeError, r"argument 0 .* function dense \(call"),
        (lambda: jnet.serial(jnet.relu(), [jnet.relu()]), TypeError, r"argument 1 .* got list"),
    ],
)
def test_bad_layer_arguments_are_refused_by_name(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_dense_refuses_another_layers_params():
    narrow, wide = jnet.dense(3), jnet.dense(7)
    _, params = wide.init(KEY, (2, 5))
    with pytest.raises(ValueError, match=r"dense\(3\): params hold w \(5, 7\) and b \(7,\)"):
        narrow.forward(params, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"params must be a dict with \['b', 'w'\]; got \['w'\]"):
        narrow.forward({"w": params["w"]}, jnp.ones((2, 5)))


def test_a_python_list_input_is_named_not_dumped():
    net = jnet.serial(jnet.dense(3))
    _, params = net.init(KEY, (1, 2))
    with pytest.raises(
        ValueError, match=r"0:dense\(3\): input must be an array; got list"
    ):
        jnet.value_and_grad(net, jnet.softmax_cross_entropy)(params, [[1.0, 2.0]], jnp.array([0]))


def test_glorot_uniform_has_the_glorot_limit_and_counts_a_kernels_receptive_field():
    w = np.asarray(initializers.glorot_uniform()(KEY, (FAN_IN, FAN_OUT)))
    limit = math.sqrt(6 / (FAN_IN + FAN_OUT))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    assert abs(w.std() - limit / math.sqrt(3)) < 0.05 * limit
    k = np.asarray(initializers.he_normal()(KEY, (3, 3, 16, 32)))  # fan_in = 3 * 3 * 16
    assert abs(k.std() - math.sqrt(2 / 144)) < 0.05 * math.sqrt(2 / 144)
