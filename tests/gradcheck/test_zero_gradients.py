"""Gradients that are zero in exact arithmetic: rounding noise is not an error, a real one is."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet.gradcheck import check_gradients
from jnet.gradcheck.tolerances import error_scale, for_dtype


@pytest.mark.slow
def test_a_conv_bias_before_a_training_batch_norm_passes():
    # The norm subtracts the batch mean, so the bias's gradient is exactly zero; computed, it
    # is ~1e-17 of noise on both paths, which is a 100% "relative error" against itself.
    net = jnet.serial(jnet.conv2d(3, 3), jnet.batch_norm(), jnet.relu(), jnet.dense(2))
    _, params, state = jnet.layers.init_with_state(net, jax.random.key(0), (4, 5, 5, 2))
    rng = np.random.default_rng(0)
    params[0]["b"] = jnp.asarray(rng.normal(size=3))
    x, y = jnp.asarray(rng.normal(size=(4, 5, 5, 2))), jnp.asarray(rng.integers(0, 2, (4, 5, 5)))
    report = check_gradients(net, jnet.softmax_cross_entropy, params, x, y, key=jax.random.key(1),
                             state=state, layers=False, per_example=False)  # fmt: skip
    bias = next(r for r in report.rows if r.input == "0.b")
    assert bias.abs_err < 1e-15 and bias.rel_err <= 1e-10 and bias.passed, report.table()


def test_the_floor_is_the_whole_gradients_rounding_level():
    f64, f32 = for_dtype(jnp.float64, 100), for_dtype(jnp.float32, 100)
    assert error_scale(0.5, 1.0, f64) == 0.5  # a leaf with a gradient of its own: itself
    assert error_scale(0.0, 1.0, f64) == pytest.approx(10 * np.finfo(np.float64).eps / 1e-10)
    assert error_scale(0.0, 1.0, f32) == pytest.approx(10 * np.finfo(np.float32).eps / f32.rtol)
    # A real error in a tiny leaf still fails in float64: 1e-12 of the largest entry.
    assert 1e-12 / error_scale(1e-13, 1.0, f64) > f64.rtol
    # An exact check (rtol 0) has no floor.
    assert error_scale(0.0, 1.0, f64._replace(rtol=0.0)) == np.finfo(np.float64).tiny
