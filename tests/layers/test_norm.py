"""batch_norm: both modes against jax.grad in float64, the running statistics, the state
contract through serial and apply, and global statistics over 8 sharded CPU devices."""

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _marks import fast_at

import jnet
from jnet.gradcheck import assert_trees_close


def _setup(shape, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[-1]
    params = {"scale": jnp.asarray(rng.normal(size=c)), "bias": jnp.asarray(rng.normal(size=c))}
    state = {"mean": jnp.asarray(rng.normal(size=c)), "var": jnp.asarray(rng.uniform(0.5, 2, c))}
    x = jnp.asarray(3 * rng.normal(size=shape) + 1)
    return params, state, x, jnp.asarray(rng.normal(size=shape))


def _reference(params, x, *, train, state, eps=1e-5):
    axes = tuple(range(x.ndim - 1))
    mean, var = (x.mean(axes), x.var(axes)) if train else (state["mean"], state["var"])
    return params["scale"] * (x - mean) / jnp.sqrt(var + eps) + params["bias"]


@pytest.mark.parametrize("shape", fast_at([(6, 3), (2, 4, 5, 3), (3, 2, 4)], {1}))
@pytest.mark.parametrize("train", [True, False], ids=["train", "inference"])
def test_backward_matches_jax_grad(shape, train):
    bn = jnet.batch_norm(momentum=0.8)
    params, state, x, dy = _setup(shape)
    key = jax.random.key(0) if train else None

    @jax.jit
    def both(params, x, state, dy):
        y, cache, new_state = bn.forward(params, x, key=key, state=state)
        ref = lambda p, x: _reference(p, x, train=train, state=state)  # noqa: E731
        y_ref, vjp = jax.vjp(ref, params, x)
        return y, y_ref, new_state, bn.backward(params, cache, dy), vjp(dy)

    y, y_ref, new_state, hand, auto = both(params, x, state, dy)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(jax.tree.leaves(hand), jax.tree.leaves(auto), strict=True):
        assert float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want))) <= 1e-10
    axes = tuple(range(len(shape) - 1))
    if train:  # momentum * old + (1 - momentum) * batch, biased variance
        np.testing.assert_allclose(new_state["mean"], 0.8 * state["mean"] + 0.2 * x.mean(axes))
        np.testing.assert_allclose(new_state["var"], 0.8 * state["var"] + 0.2 * x.var(axes))
    else:
        assert new_state is state or all(
            bool((new_state[k] == state[k]).all()) for k in ("mean", "var")
        )


def test_init_and_state_flow_through_serial_and_apply():
    net = jnet.serial(jnet.dense(4), jnet.batch_norm(), jnet.relu(), jnet.dense(2))
    assert net.stateful
    out, params, state = net.init(jax.random.key(0), (8, 3))
    assert out == (8, 2)
    assert state[0] == () and state[2] == () and state[3] == ()
    np.testing.assert_array_equal(state[1]["mean"], jnp.zeros(4))
    np.testing.assert_array_equal(state[1]["var"], jnp.ones(4))
    np.testing.assert_array_equal(params[1]["scale"], jnp.ones(4))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)))
    f = jnet.apply(net)
    y_train, s1 = f(params, x, key=jax.random.key(1), state=state)
    assert not np.allclose(s1[1]["mean"], 0.0)  # a training step moved the running mean
    y_eval, s2 = f(params, x, state=s1)
    assert_trees_close(s2, s1, rtol=0)  # inference leaves the state alone
    assert not np.allclose(y_train, y_eval)
    # Gradients through apply's custom_vjp are the hand-written ones; state gets none.
    g = jax.grad(lambda p: f(p, x, key=jax.random.key(1), state=state)[0].sum())(params)
    assert jax.tree.structure(g) == jax.tree.structure(params)
    with pytest.raises(ValueError, match="stateful"):
        f(params, x)


def test_bad_inputs_raise_value_errors_naming_the_layer():
    bn = jnet.batch_norm()
    _, params, state = bn.init(jax.random.key(0), (4, 3))
    with pytest.raises(ValueError, match=r"batch_norm\(\): .*initialised for 3 channels"):
        bn.forward(params, jnp.ones((4, 5)), state=state)
    with pytest.raises(ValueError, match=r"batch_norm\(\): input has shape \(3,\)"):
        bn.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"batch_norm\(momentum=1.5\): momentum must be"):
        jnet.batch_norm(momentum=1.5)
    with pytest.raises(ValueError, match="params must be a dict"):
        bn.forward(state, jnp.ones((4, 3)), state=state)


def test_training_on_one_value_per_channel_is_an_error():
    """It used to return zeros (the bias) and a zero gradient, silently. Shapes are static,
    so the check runs at trace time (eval_shape: nothing compiles)."""
    bn = jnet.batch_norm()
    _, params, state = bn.init(jax.random.key(0), (1, 3))
    key = jax.random.key(1)

    def train(shape):
        x = jax.ShapeDtypeStruct(shape, jnp.float32)
        return jax.eval_shape(lambda x: bn.forward(params, x, key=key, state=state)[0], x)

    for shape in ((1, 3), (1, 1, 1, 3)):
        with pytest.raises(
            ValueError,
            match=r"^batch_norm\(\): expected more than 1 value per "
            r"channel when training; the input has shape \(1, (1, 1, )?3\)",
        ):
            train(shape)
    assert train((1, 2, 1, 3)).shape == (1, 2, 1, 3)  # two values per channel: fine
    x = jax.ShapeDtypeStruct((1, 3), jnp.float32)  # inference: fine
    assert jax.eval_shape(lambda x: bn.forward(params, x, state=state)[0], x).shape == (1, 3)


@pytest.mark.slow
def test_fit_with_batch_size_one_names_the_batch_norm():
    net = jnet.serial(jnet.dense(3), jnet.batch_norm(), jnet.relu(), jnet.dense(2))
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    y = np.arange(8) % 2
    with pytest.raises(jnet.LayerError, match=r"1:batch_norm\(\): expected more than 1 value"):
        jnet.fit(net, jnet.softmax_cross_entropy, 0.1, x, y, epochs=1, key=jax.random.key(0),
                 batch_size=1, progress=False)  # fmt: skip


def test_eps_must_be_finite_and_positive_and_numpy_numbers_are_numbers():
    for eps in (float("inf"), float("nan"), 0.0, -1e-5, "1e-5", True):
        with pytest.raises(ValueError, match=r"eps must be a number > 0 and finite; got"):
            jnet.batch_norm(eps=eps)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\]; got nan"):
        jnet.batch_norm(momentum=float("nan"))
    # numpy scalars (e.g. from a config array) are numbers: this was an unrelated TypeError.
    bn = jnet.batch_norm(momentum=np.float32(0.9), eps=np.float64(1e-3))
    assert bn.name == "batch_norm(momentum=np.float32(0.9), eps=np.float64(0.001))"
    assert jnet.batch_norm(momentum=np.float64(0.9), eps=jnp.asarray(1e-5)).name == "batch_norm()"
    assert jnet.batch_norm(momentum=1).name == "batch_norm(momentum=1)"  # as before
    _, params, state = bn.init(jax.random.key(0), (4, 2))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 2)))
    new = jax.jit(lambda x: bn.forward(params, x, key=jax.random.key(1), state=state)[2])(x)
    momentum = float(np.float32(0.9))
    np.testing.assert_allclose(new["mean"], (1 - momentum) * x.mean(0), rtol=1e-12)


def test_a_state_of_the_wrong_shape_is_named_not_the_input():
    bn = jnet.batch_norm()
    _, params, state = bn.init(jax.random.key(0), (4, 3))
    other = {"mean": jnp.zeros(5), "var": jnp.ones(5)}
    with pytest.raises(ValueError, match=r"^batch_norm\(\): state holds mean \(5,\), var \(5,\); "
                       r"expected \(3,\) each") as e:  # fmt: skip
        bn.forward(params, jnp.ones((4, 3)), state=other)
    assert "input" not in str(e.value)
    with pytest.raises(ValueError, match=r"^batch_norm\(\): params hold scale \(3,\), bias \(2,\)"):
        bn.forward({**params, "bias": jnp.zeros(2)}, jnp.ones((4, 3)), state=state)


SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import jnet
    assert len(jax.devices()) == 8
    bn = jnet.batch_norm()
    _, params, state = bn.init(jax.random.key(0), (16, 4, 4, 3))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 4, 4, 3)) * 2 + 1, jnp.float32)
    dy = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32)
    def step(params, x, state, dy):
        y, cache, new_state = bn.forward(params, x, key=jax.random.key(0), state=state)
        return y, new_state, bn.backward(params, cache, dy)
    one = jax.jit(step)(params, x, state, dy)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    shard = lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))
    many = jax.jit(step)(params, shard(x), state, shard(dy))
    assert len(many[0].sharding.device_set) == 8
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(many)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)
    print("same on 1 and 8 devices")
    """
)


@pytest.mark.slow
def test_batch_statistics_are_global_over_eight_sharded_devices():
    repo = pathlib.Path(__file__).resolve().parents[2]  # this checkout's jnet, not an installed one
    env = {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED], env={**os.environ, **env}, capture_output=True,
        text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "same on 1 and 8 devices" in proc.stdout
