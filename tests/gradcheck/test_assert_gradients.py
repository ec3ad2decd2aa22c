"""jnet.testing.assert_gradients: an AssertionError whose message is the report."""

import jax
import jax.monitoring
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


def _python_branch_on_init():
    """A dense-like layer whose init decides in Python on a drawn value (cannot be traced)."""
    base = jnet.dense(3)

    def init(key, shape):
        out, params = base.init(key, shape)
        if float(params["w"][0, 0]) > 100.0:  # concrete only outside jit
            raise AssertionError("unreachable")
        return out, params

    return jnet.Layer(init, base.forward, base.backward, name="branchy")


def test_an_init_that_does_not_trace_is_drawn_eagerly():
    report = jnet.testing.assert_gradients(_python_branch_on_init(), (4, 2))
    assert report.ok


def test_a_small_layer_check_compiles_few_programs():
    """The single layer's check is a handful of programs, not one per eager operation
    (issue 22's speed: 94 compilations at 165a179, 21 before one program per check)."""
    seen = []

    def listen(event, secs, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            seen.append(secs)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        jnet.testing.assert_gradients(jnet.dense(7), (6, 9))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert len(seen) <= 8, len(seen)
