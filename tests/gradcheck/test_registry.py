"""Whole-network gradients: hand-written backward vs jax.grad, finite differences, jit and vmap.

Every test that takes `name` is parametrized over `jnet.gradcheck.registry.CASES`, so a new
layer, loss or architecture gets all of these checks by adding one line to the registry.
Compiling dominates the run time, so each test compiles one program where it can.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _registry_support import CHECKED, SMOKE, names
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jnet
from jnet.gradcheck import TOLERANCES, GradientCheckError, assert_trees_close, check_gradients
from jnet.gradcheck.registry import CASES, case_inputs, check_case


@functools.cache
def inputs(name):
    """`(net, params, x, y, key)` for a registry case, drawn once per session (float64)."""
    return case_inputs(CASES[name])


def n_leaves(tree):
    return len(jax.tree.leaves(tree))


# 1. check_gradients: jax.grad (relative error) and central finite differences, every case.


@pytest.mark.parametrize("name", names(CHECKED))
def test_check_gradients_float64(name):
    report = check_case(name, jnp.float64)
    assert report.ok, report.table()
    x = inputs(name)[2]
    ids = jnp.issubdtype(x.dtype, jnp.integer)  # token ids get no row
    assert len(report.rows) == n_leaves(inputs(name)[1]) + (not ids)  # every leaf, and x
    assert report.rows[-1].input != "x" if ids else report.rows[-1].input == "x"
    assert all(r.rel_err <= 1e-10 for r in report.rows), report.table()


@pytest.mark.parametrize("name", names(SMOKE))
def test_check_gradients_float32(name):
    net, params, x, y, key = inputs(name)
    to32 = lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a
    params, x, y = jax.tree.map(to32, (params, x, y))
    report = check_gradients(net, CASES[name].loss, params, x, y, key=key, name=name,
                             layers=False, per_example=False)  # fmt: skip
    assert report.ok, report.table()
    assert all(r.rel_err <= TOLERANCES["float32"][0] for r in report.rows), report.table()


# 2. The registry's networks checked layer by layer too (each layer on the activations that
# flow into it, and per-example gradients): no false alarm, at ties and kinks included.
NETWORKS = ["mixed", "cnn conv2d-relu-max_pool-conv2d-relu-global_avg_pool-dense",
            "residual projection conv2d stride 2", "lstm-gru-rnn stack T=50 masked"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_registry_networks_pass_layer_by_layer(name):
    report = check_case(name, jnp.float64, layers=True, per_example=True, raise_on_failure=False)
    assert report.ok and not report.failing_layers, str(report)


# 3. jax.test_util.check_grads, reverse mode, on apply(net) composed with the loss.


@pytest.mark.parametrize("name", names(SMOKE))
def test_check_grads_through_apply(name):
    net, params, x, y, key = inputs(name)
    f = jnet.apply(net)
    # check_grads steps every input at once along an unnormalised direction; its default step
    # (1e-4) then crosses ReLU kinks in the 784-512 nets. A smaller step, same tolerances.
    loss = jax.jit(lambda p, x: jnet.apply(CASES[name].loss)(f(p, x, key=key), y))
    if jnp.issubdtype(x.dtype, jnp.integer):  # token ids: the params alone
        check_grads(lambda p: loss(p, x), (params,), order=1, modes=("rev",), eps=1e-6)
    else:
        check_grads(loss, (params, x), order=1, modes=("rev",), eps=1e-6)


# 4. apply (custom_vjp) == value_and_grad (hand-written only), eagerly, under jit and vmap.


def _through_apply(name):
    net, _, _, _, key = inputs(name)
    f = jnet.apply(net)
    return lambda p, x, y: jnet.apply(CASES[name].loss)(f(p, x, key=key), y)


def _per_example_loss(name):
    """`(loss_i(p, x_i, y_i, key_i), bare)`: one example's loss, for jax.vmap.

    A net that also runs on a single example (dense, activations, MLPs) gets the bare
    per-example shapes (`bare`), which is what its backward sees under vmap. One whose
    shapes depend on the batch axis (`flatten()` merges all axes but the first) keeps a
    batch axis of 1.
    """
    case = CASES[name]
    net, params, x, _, _ = inputs(name)
    f = jnet.apply(net)

    def init_shapes(in_shape):  # (output shape, params' shapes), traced only
        out = {}

        def init(key):
            out["shape"], params = net.init(key, in_shape)
            return params

        params = jax.eval_shape(init, jax.random.key(0))
        return out["shape"], jax.tree.map(jnp.shape, params)

    out_shape, _ = init_shapes(x.shape)
    try:
        one_shape, one_params = init_shapes(x.shape[1:])
        bare = one_shape == out_shape[1:] and one_params == jax.tree.map(jnp.shape, params)
    except ValueError:
        bare = False

    def loss_i(p, x_i, y_i, k_i):
        if bare:
            return jnet.apply(case.loss)(f(p, x_i, key=k_i), y_i)
        return jnet.apply(case.loss)(f(p, x_i[None], key=k_i), y_i[None])

    return loss_i, bare


@pytest.mark.parametrize("name", names(SMOKE))
def test_apply_grad_matches_value_and_grad_under_jit_and_vmap(name):
    net, params, x, y, key = inputs(name)
    n = x.shape[0]
    through_apply = _through_apply(name)
    grad_i = jax.grad(_per_example_loss(name)[0], argnums=(0, 1))
    # A batch draws one (N, ...) dropout mask, so with a key the per-example reference is a
    # sequential loop (lax.map) over the examples, each with the key vmap gives it.
    keys = None if key is None else jax.random.split(key, n)
    if jnp.issubdtype(x.dtype, jnp.integer):  # token ids get no gradient: params only
        grad_p = jax.grad(_per_example_loss(name)[0])
        per = jax.jit(jax.vmap(grad_p, in_axes=(None, 0, 0, None)))(params, x, y, None)
        value, grads = jnet.value_and_grad(net, CASES[name].loss)(params, x, y, key=key)
        assert_trees_close(jax.tree.map(lambda g: g.mean(0), per), grads, rtol=1e-10,
                           atol=1e-14)  # fmt: skip
        return

    @jax.jit
    def everything(p, x, y):
        hand = jnet.value_and_grad(net, CASES[name].loss)(p, x, y, key=key)
        v_auto, (g_auto, dx) = jax.value_and_grad(through_apply, argnums=(0, 1))(p, x, y)
        per = jax.vmap(grad_i, in_axes=(None, 0, 0, None if key is None else 0))(p, x, y, keys)
        loop = None if key is None else jax.lax.map(lambda a: grad_i(p, *a), (x, y, keys))
        return hand, (v_auto, g_auto), dx, per, loop

    if name == "batch_norm[train] (N, C)":
        # One (C,) example is one value per channel: batch_norm refuses to train on it (it used
        # to give the bias and zero gradients, so the per-example parts compared zeros with
        # zeros). After a conv2d an example still has H * W values per channel: checked below.
        value, grads = jax.jit(jnet.value_and_grad(net, CASES[name].loss))(params, x, y, key=key)
        v_auto, (g_auto, _) = jax.value_and_grad(through_apply, argnums=(0, 1))(params, x, y)
        np.testing.assert_allclose(v_auto, value, rtol=1e-12)
        assert_trees_close(g_auto, grads, rtol=1e-10, atol=1e-14)
        with pytest.raises(ValueError, match="expected more than 1 value per channel"):
            grad_i(params, x[0], y[0], None if keys is None else keys[0])
        return
    (value, grads), (v_auto, g_auto), dx, (per_p, per_x), loop = everything(params, x, y)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    np.testing.assert_allclose(v_auto, value, rtol=1e-12)
    assert_trees_close(g_auto, grads, rtol=1e-10, atol=1e-14)
    # Every loss is a mean over the batch: the batch gradient of the parameters is the mean
    # of the per-example ones, and example i's input gradient is n times the batch one.
    mean_p = jax.tree.map(lambda g: g.mean(0), per_p)
    assert per_x.shape == x.shape
    if key is None:
        assert_trees_close(mean_p, grads, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(per_x, n * dx, rtol=1e-10, atol=1e-14)
    else:
        assert_trees_close(per_p, loop[0], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(per_x, loop[1], rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_apply_grad_eager_matches_jit():
    name = "dense"
    net, params, x, y, key = inputs(name)
    through_apply = _through_apply(name)
    value, grads = jnet.value_and_grad(net, CASES[name].loss)(params, x, y, key=key)
    v_eager, g_eager = jax.value_and_grad(through_apply)(params, x, y)
    v_jit, g_jit = jax.jit(jax.value_and_grad(through_apply))(params, x, y)
    np.testing.assert_allclose(v_eager, value, rtol=1e-12)
    np.testing.assert_allclose(v_jit, value, rtol=1e-12)
    assert_trees_close(g_eager, grads, rtol=1e-10, atol=1e-14)
    assert_trees_close(g_jit, grads, rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_vmap_sees_bare_per_example_shapes_for_mlps():
    # Guards _per_example_loss: these must run unbatched under vmap, not fall back to (1, ...).
    for name in ("dense", "relu", "dropout", "t002 [192,5,5,1] relu", "t000 784-512-10 relu"):
        assert _per_example_loss(name)[1], name
    assert not _per_example_loss("mixed")[1]


def test_apply_is_reverse_mode_only():
    net = jnet.dense(3)
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    x = jnp.ones((2, 4))
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda x: jnet.apply(net)(params, x), (x,), (x,))


# A user-defined layer, y = x * w, whose backward can be made wrong on purpose.


def scale_layer(dw_factor=1.0, dx_factor=1.0):
    def init(key, input_shape):
        return tuple(input_shape), {"w": jax.random.normal(key, tuple(input_shape[-1:]))}

    def forward(params, x, *, key=None):
        return x * params["w"], x  # cache = x

    def backward(params, x, dy):
        dw = (x * dy).reshape(-1, x.shape[-1]).sum(0)
        return {"w": dw_factor * dw}, dx_factor * dy * params["w"]

    return jnet.Layer(init, forward, backward)


def _user_case(net, in_shape=(4, 3)):
    out_shape, params = net.init(jax.random.key(1), in_shape)
    rng = np.random.default_rng(0)
    return params, jnp.asarray(rng.normal(size=in_shape)), jnp.asarray(rng.normal(size=out_shape))


@pytest.mark.slow
def test_user_defined_layer_passes_check_gradients():
    for net in (scale_layer(), jnet.serial(jnet.dense(4), jnet.tanh(), scale_layer())):
        params, x, y = _user_case(net)
        report = check_gradients(net, jnet.mean_squared_error, params, x, y, name="user")
        assert report.ok and len(report.rows) == n_leaves(params) + 1


def test_apply_uses_the_hand_written_backward():
    net = scale_layer(dw_factor=2.0)  # dw is twice the true gradient; dx is right
    params, x, y = _user_case(net)
    loss = jnet.mean_squared_error

    def through_apply(p, x):
        return jnet.apply(loss)(jnet.apply(net)(p, x), y)

    def pure(p, x):
        return loss.forward(net.forward(p, x)[0], y)[0]

    gp_apply, gx_apply = jax.grad(through_apply, argnums=(0, 1))(params, x)
    gp_true, gx_true = jax.grad(pure, argnums=(0, 1))(params, x)
    np.testing.assert_allclose(gp_apply["w"], 2.0 * gp_true["w"], rtol=1e-12)
    np.testing.assert_allclose(gx_apply, gx_true, rtol=1e-12)
    assert not np.allclose(gp_apply["w"], gp_true["w"])
    # value_and_grad (hand-written path) carries the same wrong gradient.
    np.testing.assert_allclose(
        jnet.value_and_grad(net, loss)(params, x, y)[1]["w"], gp_apply["w"], rtol=1e-12
    )


@pytest.mark.parametrize(
    "net, leaf",
    [
        (scale_layer(dw_factor=2.0), "w"),
        (scale_layer(dx_factor=2.0), "x"),
        (jnet.serial(jnet.dense(3), jnet.tanh(), scale_layer(dw_factor=2.0)), "2.w"),
    ],
    ids=["dw", "dx", "in-serial"],
)
def test_check_gradients_names_the_wrong_leaf(net, leaf):
    params, x, y = _user_case(net)
    with pytest.raises(GradientCheckError, match=f"user: gradient of leaf '{leaf}' is wrong") as e:
        check_gradients(net, jnet.mean_squared_error, params, x, y, name="user")
    # The whole network's table in the message (output `loss`) marks exactly that leaf.
    cells = [line.split() for line in str(e.value).splitlines()]
    failing = [c[2] for c in cells if c[:1] == ["FAIL"] and c[3] == "loss"]
    assert failing == [leaf]


def test_check_gradients_rejects_wrong_dparams_structure():
    good = scale_layer()

    def backward(params, x, dy):
        dparams, dx = good.backward(params, x, dy)
        return [dparams["w"]], dx  # a list, not the params' dict

    net = good._replace(backward=backward)
    params, x, y = _user_case(net)
    with pytest.raises(ValueError, match="structure"):  # named while tracing
        check_gradients(net, jnet.mean_squared_error, params, x, y)


# 9. Random MLPs built from the registry's activation factories and loss cases.

ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh", "softmax"]


def _targets(loss_case, out_shape, rng):
    if loss_case == "softmax_cross_entropy[labels]":
        return jnp.asarray(rng.integers(0, out_shape[-1], out_shape[:-1]))
    if loss_case == "softmax_cross_entropy[one-hot]":
        return jax.nn.one_hot(rng.integers(0, out_shape[-1], out_shape[:-1]), out_shape[-1])
    if loss_case == "sigmoid_binary_cross_entropy":
        return jnp.asarray(rng.integers(0, 2, out_shape[:1]).astype(float))  # (N,) for (N, 1)
    return jnp.asarray(rng.normal(size=out_shape))


@pytest.mark.slow
@settings(max_examples=3, deadline=None)
@given(
    sizes=st.lists(st.integers(2, 6), min_size=1, max_size=3),
    activation=st.sampled_from(ACTIVATIONS),
    loss_case=st.sampled_from(
        [
            "softmax_cross_entropy[labels]",
            "softmax_cross_entropy[one-hot]",
            "sigmoid_binary_cross_entropy",
            "mean_squared_error",
        ]
    ),
    batch=st.integers(1, 5),
    in_dim=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_random_mlps_pass_check_gradients(sizes, activation, loss_case, batch, in_dim, seed):
    out_dim = 1 if loss_case == "sigmoid_binary_cross_entropy" else 3
    net = jnet.mlp([*sizes, out_dim], CASES[activation].net)
    # Random parameters from numpy (jax.random would compile for every new shape); random
    # biases keep ReLUs off their kink.
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda k: net.init(k, (batch, in_dim))[1], jax.random.key(0))
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape)), shapes)
    x = jnp.asarray(rng.normal(size=(batch, in_dim)))
    y = _targets(loss_case, (batch, out_dim), rng)
    report = check_gradients(net, CASES[loss_case].loss, params, x, y, name="mlp")
    assert report.ok and max(r.rel_err for r in report.rows) <= 1e-10, report.table()


def test_check_gradients_takes_explicit_tolerances_including_zero():
    net = scale_layer(dw_factor=1 + 1e-12)  # off by 1e-12: inside float64's default rtol
    params, x, y = _user_case(net)
    assert check_gradients(net, jnet.mean_squared_error, params, x, y).ok
    with pytest.raises(GradientCheckError, match="leaf 'w'"):
        check_gradients(net, jnet.mean_squared_error, params, x, y, rtol=0.0)
    with pytest.raises(ValueError, match="fd_eps must be positive; got 0"):
        check_gradients(net, jnet.mean_squared_error, params, x, y, fd_eps=0.0)


def test_check_gradients_refuses_unknown_dtypes_and_non_finite_inputs():
    net = scale_layer()
    params, x, y = _user_case(net)
    half = jax.tree.map(lambda a: a.astype(jnp.float16), (params, x, y))
    with pytest.raises(ValueError, match="no default tolerances for float16"):
        check_gradients(net, jnet.mean_squared_error, *half)
    bad = jax.tree.map(lambda a: a.at[0].set(jnp.nan), params)
    with pytest.raises(ValueError, match="params contain NaN or inf; nothing to check"):
        check_gradients(net, jnet.mean_squared_error, bad, x, y)


@pytest.mark.slow
def test_per_example_check_notes_a_net_that_refuses_a_batch_of_one():
    """batch_norm training on one (C,) example refuses it (one value per channel): a note,
    not a FAIL of its backward under vmap."""
    report = check_case("batch_norm[train] (N, C)", per_example=True, raise_on_failure=False)
    assert report.ok, str(report)
    refused = "per-example gradients not checked: the net refuses a batch of one"
    notes = [n for n in report.notes if refused in n]
    assert notes and "more than 1 value per channel" in notes[0], report.notes
