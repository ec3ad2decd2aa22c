"""Mixed precision: `dense(..., compute_dtype=bfloat16)` runs its matmuls in bf16 while
parameters, outputs, loss and gradients stay float32; its hand-written backward is checked
at honest bf16 tolerances."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jnet
import jnet.data
from jnet.gradcheck import TOLERANCES
from jnet.network import value_and_grad

BF16 = jnp.bfloat16
RTOL, FD_TOL, FD_EPS = TOLERANCES["bfloat16"]  # vs jax.grad, vs finite differences, step


def mlp(compute_dtype=None, sizes=(16, 10)):
    return jnet.mlp(sizes, compute_dtype=compute_dtype)


def float32_inputs(net, n=8, d=12, classes=10, seed=0):
    """float32 params and x (conftest turns on float64, so cast on purpose), integer labels."""
    key_p, key_x, key_y = jax.random.split(jax.random.PRNGKey(seed), 3)
    _, params = net.init(key_p, (1, d))
    params = jax.tree.map(lambda p: p.astype(jnp.float32), params)
    x = jax.random.normal(key_x, (n, d), jnp.float32)
    y = jax.random.randint(key_y, (n,), 0, classes)
    return params, x, y


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [(10,), (16, 8, 10)])
def test_bf16_gradients_pass_at_bf16_tolerances(sizes):
    net = mlp(BF16, sizes)
    params, x, y = float32_inputs(net)
    # Params are float32, so the dtype default would be float32's 1e-5: name bf16's.
    report = jnet.check_gradients(
        net, jnet.softmax_cross_entropy, params, x, y, rtol=RTOL, fd_tol=FD_TOL, fd_eps=FD_EPS
    )
    assert report.ok, report.table()


@pytest.mark.slow
def test_bf16_gradients_are_close_to_the_float32_gradients():
    # Same params: bf16 matmuls should move each gradient by about bf16's 2**-8 relative.
    params, x, y = float32_inputs(mlp())
    loss = jnet.softmax_cross_entropy
    v32, g32 = jax.jit(value_and_grad(mlp(), loss))(params, x, y)
    v16, g16 = jax.jit(value_and_grad(mlp(BF16), loss))(params, x, y)
    assert abs(float(v16) - float(v32)) <= 1e-2 * abs(float(v32))
    for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32), strict=True):
        assert a.dtype == jnp.float32
        scale = float(jnp.max(jnp.abs(b)))
        assert float(jnp.max(jnp.abs(a - b))) <= RTOL * scale
        assert not np.array_equal(np.asarray(a), np.asarray(b))  # bf16 did change something


@pytest.mark.slow
def test_bf16_matmuls_really_run_in_bf16_and_outputs_stay_float32():
    net = mlp(BF16)
    params, x, y = float32_inputs(net)
    jaxpr = jax.make_jaxpr(value_and_grad(net, jnet.softmax_cross_entropy))(params, x, y)
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 6  # per layer: forward, weight gradient, input gradient
    for eqn in dots:
        assert [v.aval.dtype for v in eqn.invars] == [jnp.dtype(BF16)] * 2, eqn
        assert eqn.outvars[0].aval.dtype == jnp.float32, eqn  # accumulated in float32
    out = jnet.apply(net)(params, x)
    assert out.dtype == jnp.float32


@pytest.mark.slow
def test_bf16_train_step_keeps_float32_params():
    net = mlp(BF16)
    params, x, y = float32_inputs(net)
    opt = optax.adam(1e-3)
    state = jnet.init_state(net, opt, jax.random.key(0), x.shape, params)
    state, metrics = jnet.train_step(net, jnet.softmax_cross_entropy, opt)(state, (x, y))
    assert {p.dtype for p in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert metrics["loss"].dtype == jnp.float32


@pytest.mark.slow
def test_bf16_under_vmap_matches_the_batch():
    # Per-example gradients (vmap sees (d,) shapes) sum to the batch gradient.
    net = mlp(BF16)
    params, x, y = float32_inputs(net)
    f = jnet.apply(net)

    def loss(p, xi, yi):
        return jnet.apply(jnet.softmax_cross_entropy)(f(p, xi[None]), yi[None])

    per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(params, x, y)
    batch = jax.grad(lambda p: jnet.apply(jnet.softmax_cross_entropy)(f(p, x), y))(params)
    for a, b in zip(jax.tree.leaves(per_example), jax.tree.leaves(batch), strict=True):
        np.testing.assert_allclose(a.sum(0) / len(x), b, rtol=RTOL, atol=RTOL * float(jnp.max(b)))


@pytest.mark.slow
def test_bf16_trains_mnist_as_well_as_float32(data_dir):
    (x, y), (xte, yte) = jnet.data.mnist_flat(data_dir, train_size=4096, test_size=2000)
    accs = {}
    for name, dtype in (("float32", None), ("bfloat16", BF16)):
        net = mlp(dtype, (64, 10))
        params, _, _ = jnet.fit(
            net,
            jnet.softmax_cross_entropy,
            optax.adam(3e-3),
            x,
            y,
            epochs=2,
            batch_size=128,
            key=jax.random.PRNGKey(0),
            progress=False,
        )
        params = jax.tree.map(lambda p: p.astype(jnp.float32), params)
        accs[name] = jnet.evaluate(
            net, jnet.softmax_cross_entropy, params, xte, yte
        )["accuracy"]
    assert accs["float32"] > 0.85
    assert abs(accs["bfloat16"] - accs["float32"]) <= 0.01, accs
