"""Fast mode: random projections make a million-parameter layer cheap to check."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet


def conv(features, kernel=3):
    """A custom conv layer (lax.conv_general_dilated, NHWC) with a hand-written backward."""
    dims = ("NHWC", "HWIO", "NHWC")

    def init(key, input_shape):
        w = jax.random.normal(key, (kernel, kernel, input_shape[-1], features)) * 0.05
        return (*input_shape[:-1], features), {"w": w}

    def run(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)

    def forward(params, x, *, key=None):
        return run(x, params["w"]), x

    def backward(params, x, dy):
        w = params["w"]
        # dx: the output gradient convolved with the flipped kernel, in/out swapped.
        dx = run(dy, jnp.flip(w, (0, 1)).swapaxes(2, 3))
        # dw: the input correlated with the output gradient (batch and features swapped).
        pad = kernel // 2
        dw = jax.lax.conv_general_dilated(
            x, dy, (1, 1), [(pad, pad), (pad, pad)],
            dimension_numbers=("CHWN", "IHWO", "HWNC"),
        )  # fmt: skip
        return {"w": dw.reshape(w.shape)}, dx

    return jnet.Layer(init, forward, backward, f"conv({features}, {kernel})")


@pytest.mark.slow
def test_a_million_parameter_conv_checks_in_seconds():
    layer = conv(256)  # 3 * 3 * 448 * 256 = 1,032,192 parameters
    _, params = layer.init(jax.random.key(0), (2, 6, 6, 448))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 6, 448)))
    hand = jnet.apply(layer)
    start = time.perf_counter()
    report = jnet.check_vjp(
        hand, params, x, reference=lambda p, x: layer.forward(p, x)[0], probes=2, names=("", "x")
    )
    seconds = time.perf_counter() - start
    assert report.ok, str(report)
    assert sum(np.size(a) for a in jax.tree.leaves(params)) > 10**6
    assert "probes: 2" in str(report) and report.probes == 2
    assert seconds < 60, seconds  # ~ a few seconds alone; the bound allows a busy machine

    # A planted error in dw: one wrong kernel tap of a million is still caught.
    def bad_backward(params, x, dy):
        dparams, dx = layer.backward(params, x, dy)
        return {"w": dparams["w"].at[1, 1].multiply(1.01)}, dx

    wrong = jnet.apply(layer._replace(backward=bad_backward))
    report = jnet.check_vjp(
        wrong, params, x, reference=lambda p, x: layer.forward(p, x)[0], probes=2, names=("", "x")
    )
    assert report.failing_inputs == ["w"]
