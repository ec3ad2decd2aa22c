"""jnet.testing.assert_gradients: an AssertionError whose message is the report."""

import jax.numpy as jnp
import pytest
from planted_layers import scale, two_outputs, two_outputs_reference

import jnet
import jnet.testing


@pytest.mark.slow
def test_layers_pass_or_raise_with_the_report():
    report = jnet.testing.assert_gradients(jnet.serial(jnet.dense(4), scale()), (3, 2))
    assert report.ok
    with pytest.raises(AssertionError, match="failing layers: 1:scale") as e:
        jnet.testing.assert_gradients(jnet.serial(jnet.dense(4), scale(dw=1.1)), (3, 2))
    assert "each layer on its own" in str(e.value) and "tolerances (float64" in str(e.value)


@pytest.mark.slow
def test_losses_by_name_and_training_mode():
    net = jnet.serial(jnet.dense(5), jnet.dropout(0.5), jnet.dense(3))
    jnet.testing.assert_gradients(net, (4, 2), loss="softmax_cross_entropy", training=True)
    one = jnet.serial(jnet.dense(3), jnet.dense(1))
    jnet.testing.assert_gradients(one, (4, 2), loss=jnet.sigmoid_binary_cross_entropy)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        jnet.testing.assert_gradients(net, (4, 2), loss="hinge")


def test_functions_with_their_arguments():
    x, w = jnp.linspace(-1.0, 1.0, 4), jnp.ones(4)
    jnet.testing.assert_gradients(two_outputs(), (x, w), reference=two_outputs_reference)
    jnet.testing.assert_gradients(jnp.sin, x)  # a single array is the only argument
    with pytest.raises(AssertionError, match=r"check_vjp\(f\): FAILED"):
        jnet.testing.assert_gradients(two_outputs(2.0), (x, w))
    with pytest.raises(TypeError, match="expected a jnet.Layer or a function"):
        jnet.testing.assert_gradients(3, (x,))
