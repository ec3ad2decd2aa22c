"""residual and concat: gradients vs jax.grad of their forward (float64), state threading,
and shape errors addressed to the failing child."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _marks import fast_at

import jnet
from jnet.layers import forward_with_state, init_with_state

B = jnet.initializers.normal(0.1)
NETS = {
    "identity": lambda: jnet.residual(
        jnet.serial(jnet.conv2d(4, 3, b_init=B), jnet.relu(), jnet.conv2d(3, 3))
    ),
    "projection+bn": lambda: jnet.residual(
        jnet.serial(
            jnet.conv2d(6, 3, strides=2),
            jnet.batch_norm(),
            jnet.relu(),
            jnet.conv2d(6, 3, b_init=B),
        ),
        projection=jnet.conv2d(6, 1, strides=2),
    ),  # fmt: skip
    "concat+bn": lambda: jnet.concat(
        jnet.conv2d(2, 1, b_init=B),
        jnet.serial(jnet.conv2d(3, 3), jnet.batch_norm()),
        jnet.max_pool(3, strides=1, padding="SAME"),
    ),
}


@pytest.mark.parametrize(
    "name, train",
    fast_at(
        [("identity", False), ("projection+bn", False), ("projection+bn", True),
         ("concat+bn", True)],
        {0},
        unpack=True,
    ),
)
def test_backward_matches_jax_grad(name, train):
    net = NETS[name]()
    out, params, state = init_with_state(net, jax.random.key(0), (2, 7, 7, 3))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 7, 7, 3)))
    dy = jnp.asarray(rng.normal(size=out))
    key = jax.random.key(1) if train else None

    @jax.jit
    def both(params, x, dy):
        y, cache, new_state = forward_with_state(net, params, x, key=key, state=state)
        ref = lambda p, x: forward_with_state(net, p, x, key=key, state=state)[0]  # noqa: E731
        return y, new_state, net.backward(params, cache, dy), jax.vjp(ref, params, x)[1](dy)

    y, new_state, hand, auto = both(params, x, dy)
    assert y.shape == out
    assert jax.tree.structure(hand[0]) == jax.tree.structure(params)
    scale = max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(auto))
    for got, want in zip(jax.tree.leaves(hand), jax.tree.leaves(auto), strict=True):
        # Absolute against the largest gradient: a conv bias before batch norm has a
        # gradient of exactly 0 (rounding-sized in both), where a relative error means nothing.
        assert float(jnp.max(jnp.abs(got - want))) <= 1e-10 * scale
    if net.stateful and train:  # the batch norm inside moved its running mean
        same = jax.tree.leaves(jax.tree.map(jnp.allclose, new_state, state))
        assert not all(bool(m) for m in same)


@pytest.mark.slow
def test_residual_adds_the_input_and_concat_stacks_channels():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 5, 3)))
    branch = jnet.conv2d(3, 3)
    out, params = jnet.residual(branch).init(jax.random.key(0), x.shape)
    y, _ = jnet.residual(branch).forward(params, x)
    np.testing.assert_allclose(y, branch.forward(params[0], x)[0] + x, rtol=1e-13)
    cat = jnet.concat(jnet.conv2d(2, 1), jnet.max_pool(1))  # max_pool(1) is the identity
    shape, params = cat.init(jax.random.key(0), x.shape)
    assert shape == (2, 5, 5, 5)
    y, _ = cat.forward(params, x)
    np.testing.assert_allclose(y[..., 2:], x, rtol=0)
    assert cat.children[0].name == "conv2d(2, 1)" and len(params) == 2


@pytest.mark.slow
def test_shape_errors_name_the_block_and_its_address():
    with pytest.raises(ValueError, match=r"residual\(conv2d\(5, 3\)\): the branch maps"):
        jnet.residual(jnet.conv2d(5, 3)).init(jax.random.key(0), (2, 7, 7, 3))
    with pytest.raises(ValueError, match="pass projection="):
        jnet.residual(jnet.conv2d(5, 3)).init(jax.random.key(0), (2, 7, 7, 3))
    net = jnet.serial(
        jnet.conv2d(3, 3),
        jnet.residual(jnet.serial(jnet.relu(), jnet.conv2d(3, 3, strides=2)),
                      projection=jnet.conv2d(3, 1)),
    )  # fmt: skip
    with pytest.raises(jnet.LayerError, match=r"^1:residual\(.*projection's output"):
        net.init(jax.random.key(0), (2, 6, 6, 3))
    bad = jnet.serial(jnet.residual(jnet.serial(jnet.relu(), jnet.conv2d(3, 3))))
    _, params = bad.init(jax.random.key(0), (1, 6, 6, 3))
    with pytest.raises(jnet.LayerError, match=r"^0/0/1:conv2d\(3, 3\): .*3 input channels"):
        bad.forward(params, jnp.ones((1, 6, 6, 2)))
    with pytest.raises(ValueError, match="differ on axes other than -1"):
        jnet.concat(jnet.conv2d(2, 1), jnet.max_pool(2)).init(jax.random.key(0), (1, 4, 4, 1))
