"""Recurrent layers: BPTT vs jax.vjp, masks, references, init, program size, bad input."""

import re

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from _marks import fast_at

import jnet
from jnet.gradcheck import assert_trees_close

N, T, D, H = 3, 7, 4, 5
KINDS = {
    "rnn": lambda **kw: jnet.rnn(H, **kw),
    "rnn relu": lambda **kw: jnet.rnn(H, activation="relu", **kw),
    "rnn sigmoid": lambda **kw: jnet.rnn(H, activation="sigmoid", **kw),
    "lstm": lambda **kw: jnet.lstm(H, **kw),
    "gru": lambda **kw: jnet.gru(H, **kw),
}


def randn(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def random_params(layer, shape, seed=3):
    """Random params (biases included, so no gate sits at its init value)."""
    shapes = jax.eval_shape(lambda k: layer.init(k, shape)[1], jax.random.key(0))
    leaves, treedef = jax.tree.flatten(shapes)
    return treedef.unflatten([0.5 * randn(s.shape, seed + i) for i, s in enumerate(leaves)])


# A mask with padding at the end, one with gaps, an empty sequence (all padding) and a full one.
MASK = jnp.asarray(
    [[1, 1, 1, 1, 0, 0, 0], [1, 0, 1, 1, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0]], bool
)  # fmt: skip


def _hand_and_vjp(layer, params, x, dy):
    """(y, backward's (dparams, dx), jax.vjp's) for x an array or a pair."""

    def f(p, x):
        y = layer.forward(p, x)[0]
        return y[0] if isinstance(y, tuple) else y

    y, cache = layer.forward(params, x)
    dy_in = (dy, None) if isinstance(y, tuple) else dy
    dparams, dx = layer.backward(params, cache, dy_in)
    if isinstance(x, tuple):
        _, vjp = jax.vjp(lambda p, x0: f(p, (x0, x[1])), params, x[0])
        assert dx[1] is None
        dx = dx[0]
    else:
        _, vjp = jax.vjp(f, params, x)
    return (dparams, dx), vjp(dy)


@pytest.mark.slow
@pytest.mark.parametrize("kind", fast_at(list(KINDS), {0}))
def test_backward_matches_jax_vjp_all_modes(kind):
    x = randn((N, T, D), 1)

    @jax.jit
    def everything(x):
        out = []
        for seq in (True, False):
            layer = KINDS[kind](return_sequences=seq)
            params = random_params(layer, x.shape)
            dy = randn((N, T, H) if seq else (N, H), 2)
            for inp in (x, (x, MASK), (x, MASK.astype(x.dtype))):
                out.append(_hand_and_vjp(layer, params, inp, dy))
        return out

    for got, want in everything(x):
        assert_trees_close(got, want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", fast_at(["rnn", "lstm", "gru"], {2}))
def test_masked_steps_keep_the_state_and_get_no_gradient(kind):
    layer = KINDS[kind]()
    params = random_params(layer, (N, T, D))
    x = randn((N, T, D), 1)

    @jax.jit
    def run(x, dy):
        (y, mask), cache = layer.forward(params, (x, MASK))
        _, (dx, dmask) = layer.backward(params, cache, (dy, None))
        assert dmask is None
        x2 = jnp.where(MASK[..., None], x, 100.0)  # other values at the padded steps
        return y, mask, cache[1][0], dx, layer.forward(params, (x2, MASK))[0][0]

    y, mask, states, dx, y2 = run(x, randn((N, T, H), 2))
    np.testing.assert_array_equal(mask, MASK)
    states = jnp.swapaxes(states, 0, 1)  # the carried h, (N, T, H)
    prev = jnp.concatenate([jnp.zeros_like(states[:, :1]), states[:, :-1]], axis=1)
    np.testing.assert_array_equal(states[~MASK], prev[~MASK])  # padded: unchanged
    assert not np.allclose(states[MASK], prev[MASK])
    np.testing.assert_array_equal(y[~MASK], 0.0)  # padded outputs are zeros
    np.testing.assert_array_equal(y[2], 0.0)  # an empty sequence stays at the zero state
    np.testing.assert_array_equal(dx[~MASK], 0.0)
    assert np.all(np.abs(dx[MASK]).sum(-1) > 0)
    np.testing.assert_array_equal(y2, y)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_a_padded_example_matches_running_it_unpadded(kind):
    seq, last = KINDS[kind](), KINDS[kind](return_sequences=False)
    params = random_params(seq, (N, T, D))
    x = randn((N, T, D), 1)
    real = np.flatnonzero(MASK[1])  # example 1 has gaps; example 0 4 real steps at the front

    @jax.jit
    def run(x):
        f = lambda layer, x: layer.forward(params, x)[0]
        return (f(seq, (x, MASK))[0], f(last, (x, MASK)), f(seq, x[:1, :4]),
                f(seq, x[1:2, real]))  # fmt: skip

    y, y_last, y0, y1 = run(x)
    np.testing.assert_allclose(y[:1, :4], y0, rtol=1e-13)
    np.testing.assert_allclose(y_last[0], y0[0, -1], rtol=1e-13)
    np.testing.assert_allclose(y[1, real], y1[0], rtol=1e-13)
    np.testing.assert_allclose(y_last[1], y1[0, -1], rtol=1e-13)


def _reference_lstm(params, x):
    """A straightforward LSTM: a Python loop over time, one example at a time, numpy."""
    w_x, w_h, b = (np.asarray(params[k]) for k in ("w_x", "w_h", "b"))
    sig = lambda v: 1 / (1 + np.exp(-v))
    out = np.zeros(x.shape[:2] + (H,))
    for n in range(x.shape[0]):
        h, c = np.zeros(H), np.zeros(H)
        for t in range(x.shape[1]):
            z = np.asarray(x[n, t]) @ w_x + h @ w_h + b
            i, f, g, o = sig(z[:H]), sig(z[H : 2 * H]), np.tanh(z[2 * H : 3 * H]), sig(z[3 * H :])
            c = f * c + i * g
            h = o * np.tanh(c)
            out[n, t] = h
    return out


def _reference_gru(params, x):
    """PyTorch's GRU equations, reset after the product, in a plain loop."""
    w_x, w_h, b, b_h = (np.asarray(params[k]) for k in ("w_x", "w_h", "b", "b_h"))
    sig = lambda v: 1 / (1 + np.exp(-v))
    out = np.zeros(x.shape[:2] + (H,))
    for n in range(x.shape[0]):
        h = np.zeros(H)
        for t in range(x.shape[1]):
            gx, gh = np.asarray(x[n, t]) @ w_x + b, h @ w_h + b_h
            r, z = sig(gx[:H] + gh[:H]), sig(gx[H : 2 * H] + gh[H : 2 * H])
            n_ = np.tanh(gx[2 * H :] + r * gh[2 * H :])
            h = (1 - z) * n_ + z * h
            out[n, t] = h
    return out


@pytest.mark.parametrize("kind, reference", [("lstm", _reference_lstm), ("gru", _reference_gru)])
def test_forward_matches_a_plain_loop(kind, reference):
    layer = KINDS[kind]()
    params = random_params(layer, (N, T, D))
    x = randn((N, T, D), 1)
    got = jax.jit(lambda x: layer.forward(params, x)[0])(x)
    np.testing.assert_allclose(got, reference(params, x), rtol=1e-12)


def test_rnn_forward_matches_a_plain_loop():
    rnn = jnet.rnn(H)
    p = {k: np.asarray(v) for k, v in random_params(rnn, (N, T, D)).items()}
    x = np.asarray(randn((N, T, D), 1))
    h, ref = np.zeros((N, H)), []
    for t in range(T):
        h = np.tanh(x[:, t] @ p["w_x"] + h @ p["w_h"] + p["b"])
        ref.append(h)
    got = jax.jit(lambda x: rnn.forward(p, x)[0])(x)
    np.testing.assert_allclose(got, np.stack(ref, 1), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_matches_torch_with_its_weights(kind):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(D, H, batch_first=True)
    module = module.double()
    w = {k: jnp.asarray(v.detach().numpy()) for k, v in module.named_parameters()}
    params = {"w_x": w["weight_ih_l0"].T, "w_h": w["weight_hh_l0"].T}
    if kind == "lstm":
        params["b"] = w["bias_ih_l0"] + w["bias_hh_l0"]
    else:
        params |= {"b": w["bias_ih_l0"], "b_h": w["bias_hh_l0"]}
    x = randn((N, T, D), 1)
    want = module(torch.from_numpy(np.array(x)))[0].detach().numpy()
    got = jax.jit(lambda x: KINDS[kind]().forward(params, x)[0])(x)
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.slow
def test_init_shapes_and_forget_bias():
    key = jax.random.key(0)
    out, p = jax.jit(jnet.lstm(8).init, static_argnums=1)(key, (2, 6, 3))
    assert out == (2, 6, 8)
    assert jax.tree.map(jnp.shape, p) == {"w_x": (3, 32), "w_h": (8, 32), "b": (32,)}
    np.testing.assert_array_equal(p["b"][8:16], 1.0)  # forget gate
    np.testing.assert_array_equal(p["b"][:8], 0.0)
    np.testing.assert_array_equal(p["b"][16:], 0.0)
    for k in range(4):  # w_h: an orthogonal (H, H) block per gate
        block = p["w_h"][:, 8 * k : 8 * (k + 1)]
        np.testing.assert_allclose(block.T @ block, np.eye(8), atol=1e-12)
    g = jax.eval_shape(lambda k: jnet.gru(8).init(k, (2, 6, 3))[1], key)
    assert jax.tree.map(jnp.shape, g) == {
        "w_x": (3, 24), "w_h": (8, 24), "b": (24,), "b_h": (24,)
    }  # fmt: skip

    def out_shape(layer, shape):
        got = []
        jax.eval_shape(lambda k: got.append(layer.init(k, shape)[0]), key)
        return got[0]

    assert out_shape(jnet.rnn(8, return_sequences=False), (2, 6, 3)) == (2, 8)
    # A pair of shapes (x, mask) gives a pair back while sequences are returned.
    assert out_shape(jnet.gru(8), ((2, 6, 3), (2, 6))) == ((2, 6, 8), (2, 6))
    assert out_shape(jnet.gru(8, return_sequences=False), ((2, 6, 3), (2, 6))) == (2, 8)


def test_names():
    assert jnet.lstm(64).name == "lstm(64)"
    assert jnet.lstm(64, return_sequences=False).name == "lstm(64, return_sequences=False)"
    assert jnet.rnn(8, activation="relu").name == "rnn(8, activation='relu')"
    assert jnet.gru(3).name == "gru(3)"
    assert jnet.masking().name == "masking()"


def _jaxpr_size(t):
    net = jnet.serial(jnet.lstm(4), jnet.gru(4), jnet.rnn(3, return_sequences=False))
    params = jax.eval_shape(lambda k: net.init(k, (2, t, 3))[1], jax.random.key(0))
    x, mask = jax.ShapeDtypeStruct((2, t, 3), float), jax.ShapeDtypeStruct((2, t), bool)
    grad = jax.grad(lambda p, x, m: jnp.sum(jnet.apply(net)(p, (x, m)) ** 2))
    jaxpr = jax.make_jaxpr(grad)(params, x, mask)
    text = re.sub(r"\d+", "#", str(jaxpr))  # shapes hold t: compare the program, not them

    def count(j):
        return len(j.eqns) + sum(count(sub) for sub in jax.extend.core.subjaxprs(j))

    return count(jaxpr.jaxpr), len(text)


def test_program_size_does_not_grow_with_t():
    assert _jaxpr_size(5) == _jaxpr_size(50)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_bad_input_is_a_value_error_naming_the_layer(jit):
    layer = jnet.lstm(H)
    params = random_params(layer, (N, T, D))
    run = lambda x: layer.forward(params, x)[0]
    run = jax.jit(run) if jit else run
    with pytest.raises(ValueError, match=r"^lstm\(5\): input has shape \(3, 4\); expected 3 axes"):
        run(jnp.ones((N, D)))
    with pytest.raises(ValueError, match=r"^lstm\(5\): .*initialised for 4 input features"):
        run(jnp.ones((N, T, D + 1)))
    with pytest.raises(ValueError, match=r"^lstm\(5\): mask has shape \(3, 6\); expected \(3, 7\)"):
        run((jnp.ones((N, T, D)), jnp.ones((N, T - 1), bool)))
    with pytest.raises(ValueError, match=r"^lstm\(5\): input must be x \(N, T, D\) or a pair"):
        run((jnp.ones((N, T, D)), MASK, MASK))
    with pytest.raises(ValueError, match=r"^lstm\(5\): input must be a floating-point"):
        run(jnp.ones((N, T, D), jnp.int32))
    with pytest.raises(ValueError, match=r"^lstm\(5\): params hold b \(5,\), w_h \(5, 5\)"):
        layer.forward(random_params(jnet.rnn(H), (N, T, D)), jnp.ones((N, T, D)))
    with pytest.raises(ValueError, match=r"^lstm\(5\): params must be a dict with"):
        layer.forward(random_params(jnet.gru(H), (N, T, D)), jnp.ones((N, T, D)))
    net = jnet.serial(jnet.lstm(H), jnet.gru(H, return_sequences=False))
    p2 = random_params(net, (N, T, D))
    with pytest.raises(jnet.LayerError, match=r"^0:lstm\(5\): mask has shape"):
        net.forward(p2, (jnp.ones((N, T, D)), jnp.ones((N, 2))))


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="lstm: hidden must be an int >= 1; got 0"):
        jnet.lstm(0)
    with pytest.raises(ValueError, match="rnn: activation must be one of"):
        jnet.rnn(3, activation="gelu")
    with pytest.raises(ValueError, match="gru: return_sequences must be True or False"):
        jnet.gru(3, return_sequences="no")
    with pytest.raises(ValueError, match=r"gru\(3\): input shape \(2, 3\); expected 3 axes"):
        jnet.gru(3).init(jax.random.key(0), (2, 3))


@pytest.mark.slow
def test_apply_and_jax_grad_take_the_pair_and_masking_matches_it():
    net = jnet.serial(jnet.lstm(H), jnet.gru(4), jnet.rnn(3, return_sequences=False))
    params = random_params(net, (N, T, D))
    x = randn((N, T, D), 1)
    f = jnet.apply(net)
    pure = lambda p, x, m: jnp.sum(net.forward(p, (x, m))[0] ** 2)
    want = jax.grad(pure, argnums=(0, 1))(params, x, MASK)
    for mask in (MASK, MASK.astype(x.dtype)):
        loss = lambda p, x, m: jnp.sum(f(p, (x, m)) ** 2)
        got = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x, mask)
        assert_trees_close(got, want, rtol=1e-10, atol=1e-14)
    # The gradient with respect to the whole pair: float0 for a bool mask, zeros for floats.
    d_pair = jax.grad(lambda xm: jnp.sum(f(params, xm) ** 2), allow_int=True)((x, MASK))
    assert d_pair[1].dtype == jax.dtypes.float0
    assert not jnp.any(jax.grad(lambda m: jnp.sum(f(params, (x, m)) ** 2))(MASK * 1.0))
    # masking(): padded arrays in, the same results as the explicit pair.
    padded = jnp.where(MASK[..., None], x, 0.0)
    masked = jnet.serial(jnet.masking(), net)
    np.testing.assert_allclose(
        masked.forward(((), params), padded)[0],
        net.forward(params, (x, MASK))[0],
        rtol=1e-13,
    )
    g = jax.grad(lambda p: jnp.sum(jnet.apply(masked)(p, padded) ** 2))(((), params))
    assert_trees_close(g[1], want[0], rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_fit_trains_on_padded_sequences():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6, 2)).astype(np.float32)
    x[32:, 3:] = 0.0  # half the sequences are 3 steps long, padded with zeros
    y = (x[:, :3, 0].sum(1) > 0).astype(np.int32)
    net = jnet.serial(
        jnet.masking(), jnet.lstm(8), jnet.lstm(8, return_sequences=False), jnet.dense(2)
    )
    params, _, history = jnet.fit(
        net, jnet.softmax_cross_entropy, 0.5, x, y, epochs=20, key=jax.random.key(0),
        batch_size=16, epochs_per_call=20, progress=False,
    )  # fmt: skip
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert jnet.evaluate(net, jnet.softmax_cross_entropy, params, x, y)["accuracy"] > 0.8


def test_masking_nan_padding_masks_the_all_nan_steps():
    """NaN != NaN: masking(pad_value=nan) used to be accepted and never mask anything."""
    x = np.arange(2 * 4 * 3, dtype=np.float64).reshape(2, 4, 3)
    x[0, 2:] = np.nan  # padding: every feature NaN
    x[1, 1, 0] = np.nan  # one NaN feature: a real step
    layer = jnet.masking(float("nan"))
    assert layer.name == "masking(nan)"
    mask = jax.jit(lambda x: layer.forward((), x)[0][1])(jnp.asarray(x))
    np.testing.assert_array_equal(mask, [[True, True, False, False], [True] * 4])
    assert jnet.masking(np.float32(np.nan)).name == "masking(nan)"
    minus_one = jnet.masking(np.float32(-1))  # a numpy pad value is a number (was refused)
    x[:] = -1
    assert not jax.jit(lambda x: minus_one.forward((), x)[0][1])(jnp.asarray(x)).any()
    assert jnet.masking(1).name == "masking(1)"  # as before
    with pytest.raises(ValueError, match=r"^masking: pad_value must be a number; got 'x'"):
        jnet.masking("x")


def test_a_masked_pair_into_a_layer_that_takes_one_array_is_named():
    """Was `TypeError: can only concatenate tuple` from initializers.py, no layer named."""
    net = jnet.serial(jnet.masking(), jnet.lstm(4), jnet.dense(2))
    with pytest.raises(
        jnet.LayerError,
        match=r"^2:dense\(2\): its input is an \(x, mask\) pair of shapes \(2, 5, 4\) and "
        r"\(2, 5\), .* return_sequences=False",
    ) as e:
        jax.eval_shape(lambda k: net.init(k, (2, 5, 3))[1], jax.random.key(0))  # no compiles
    assert e.value.path == (2,) and e.value.layer_name == "dense(2)"
    with pytest.raises(TypeError, match=r"weight shape of ints \(fan_in, fan_out\); got"):
        jnet.initializers.glorot_normal()(jax.random.key(0), ((2, 5), 2))
    fixed = jnet.serial(jnet.masking(), jnet.lstm(4, return_sequences=False), jnet.dense(2))
    shapes = []
    jax.eval_shape(lambda k: shapes.append(fixed.init(k, (2, 5, 3))[0]), jax.random.key(0))
    assert shapes == [(2, 2)]
