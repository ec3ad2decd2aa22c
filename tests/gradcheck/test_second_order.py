"""order=2: Hessian-vector products through the hand-written backward passes; per-example
gradients under jax.vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from planted_layers import batch_only_dense, cube

import jnet
from jnet.gradcheck import check_gradients


def inputs(net, shape=(4, 3)):
    out_shape, params = net.init(jax.random.key(0), shape)
    rng = np.random.default_rng(0)
    return params, jnp.asarray(rng.normal(size=shape)), jnp.asarray(rng.normal(size=out_shape))


@pytest.mark.slow
def test_layer_wrong_only_to_second_order_is_named():
    net = jnet.serial(jnet.dense(4), cube(second_order_bug=True), jnet.dense(2))
    params, x, y = inputs(net)
    first = check_gradients(net, jnet.mean_squared_error, params, x, y)  # order 1: all right
    assert first.ok
    report = check_gradients(
        net, jnet.mean_squared_error, params, x, y, order=2, raise_on_failure=False
    )
    assert report.failing_layers == ["1:cube"]
    assert all(r.passed for r in report.layers if r.order == 1)
    assert [r.order for r in report.extra if not r.passed]  # the whole loss's HVPs too
    good = jnet.serial(jnet.dense(4), cube(), jnet.dense(2))
    assert check_gradients(good, jnet.mean_squared_error, params, x, y, order=2).ok


def test_check_vjp_order_two_catches_a_stop_gradient():
    @jax.custom_vjp
    def f(x):
        return jnp.tanh(x)

    def bwd(y, g):
        return (g * (1 - jax.lax.stop_gradient(y) ** 2),)  # right value, no second derivative

    f.defvjp(lambda x: (jnp.tanh(x), jnp.tanh(x)), bwd)
    x = jnp.linspace(-1.0, 1.0, 5)
    assert jnet.check_vjp(f, x, reference=jnp.tanh).ok
    report = jnet.check_vjp(f, x, reference=jnp.tanh, order=2)
    assert [(r.output, r.order) for r in report.failing] == [("d/darg0", 2)]


@pytest.mark.slow
def test_backward_for_batches_only_passes_per_example_with_a_note():
    # Issue 22: a backward that does not run on bare examples has no wrong gradient; the
    # per-example check takes batches of one (the shapes of training) and notes the rest.
    net = jnet.serial(batch_only_dense(3), jnet.tanh())
    params, x, y = inputs(net)
    report = check_gradients(net, jnet.mean_squared_error, params, x, y, raise_on_failure=False)
    assert report.ok and report.failing_layers == [], str(report)
    assert any(r.output == "per-example" for r in report.extra)
    assert any("the backward does not run under jax.vmap on bare examples" in n
               for n in report.notes)  # fmt: skip
    good = jnet.serial(jnet.dense(3), jnet.tanh())
    report = check_gradients(good, jnet.mean_squared_error, params, x, y)
    assert any("per-example gradients under jax.vmap" in n for n in report.notes)
    assert not any("does not run" in n for n in report.notes)
