"""Kinks (relu, leaky relu, max) are reported as kinks, not failures; real errors still fail."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet.gradcheck import check_gradients

ZEROS = jnp.array([[0.0, 1.0, 0.0, -2.0], [0.0, 0.0, 3.0, -1.0], [0.5, 0.0, 0.0, 0.0]])


@pytest.mark.slow
def test_relu_and_max_at_exact_kinks_pass_check_vjp():
    for f in (jax.nn.relu, lambda x: jnp.where(x > 0, x, 0.1 * x), lambda x: jnp.max(x, 1)):
        report = jnet.check_vjp(f, ZEROS, probes=6)
        assert report.ok, str(report)


def test_a_wrong_relu_backward_at_kinks_still_fails():
    @jax.custom_vjp
    def relu(x):
        return jax.nn.relu(x)

    relu.defvjp(lambda x: (relu(x), x), lambda x, g: (jnp.where(x > 0, 1.5 * g, 0.0),))
    assert not jnet.check_vjp(relu, ZEROS, probes=6).ok
    assert not jnet.check_vjp(relu, ZEROS, reference=jax.nn.relu).ok


@pytest.mark.slow
def test_relu_network_on_exact_zeros_passes_check_gradients():
    # Zero biases and inputs with exact zeros: relu's input sits on its kink, in the first
    # layer directly and after the dense layers for the all-zero example.
    net = jnet.serial(jnet.relu(), jnet.dense(5), jnet.relu(), jnet.dense(3), jnet.leaky_relu(0.1))
    _, params = net.init(jax.random.key(0), ZEROS.shape)
    x = jnp.concatenate([ZEROS, jnp.zeros((1, 4))])
    y = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)))
    report = check_gradients(net, jnet.mean_squared_error, params, x, y, order=2)
    assert report.ok, str(report)
    assert report.failing_layers == []
