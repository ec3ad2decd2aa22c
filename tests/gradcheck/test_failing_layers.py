"""check_gradients names the faulty layer (report.failing_layers), not the leaves it spoils."""

import jax
import numpy as np
import pytest
from planted_layers import affine, centering, scale

import jnet
from jnet.gradcheck import GradientCheckError, check_gradients
from jnet.gradcheck.layers import sites


def inputs(net, shape=(4, 3), seed=0):
    out_shape, params, state = jnet.init_with_state(net, jax.random.key(seed), shape)
    rng = np.random.default_rng(seed)
    x = jax.numpy.asarray(rng.normal(size=shape))
    y = jax.numpy.asarray(rng.normal(size=out_shape))
    return params, x, y, state


def check(net, **kw):
    params, x, y, state = inputs(net)
    state = state if net.stateful else None
    return check_gradients(
        net, jnet.mean_squared_error, params, x, y, state=state, raise_on_failure=False, **kw
    )


@pytest.mark.slow
def test_correct_network_passes_every_layer():
    net = jnet.serial(jnet.dense(4), jnet.tanh(), scale(), affine(), jnet.dense(2))
    report = check(net)
    assert report.ok, str(report)
    assert report.failing_layers == []
    checked = {r.case for r in report.layers}
    assert checked == {"0:dense(4)", "1:tanh()", "2:scale", "3:affine", "4:dense(2)", "loss"}


@pytest.mark.slow
def test_wrong_dx_right_dparams_names_only_that_layer():
    net = jnet.serial(jnet.dense(3), jnet.tanh(), scale(dx=2.0), jnet.dense(2))
    report = check(net)
    assert report.failing_layers == ["2:scale"]
    bad = [(r.input, r.passed) for r in report.layers if r.case == "2:scale"]
    assert bad == [("w", True), ("x", False)]  # dparams right, dx wrong
    # The whole-network table blames the leaves upstream of it, which are innocent.
    assert {r.input for r in report.rows if not r.passed} == {"0.w", "0.b", "x"}


@pytest.mark.slow
def test_one_of_two_parameter_leaves_wrong_is_named():
    net = jnet.serial(jnet.dense(3), jnet.tanh(), affine(db=1.5), jnet.dense(2))
    report = check(net)
    assert report.failing_layers == ["2:affine"]
    assert [r.input for r in report.layers if not r.passed] == ["b"]


@pytest.mark.slow
def test_nested_serial_address_and_the_raised_message():
    inner = jnet.serial(jnet.dense(3), scale(dw=2.0))
    net = jnet.serial(jnet.dense(3), inner, jnet.tanh())
    params, x, y, _ = inputs(net)
    with pytest.raises(GradientCheckError, match="(?m)failing layers .*: 1/1:scale$") as e:
        check_gradients(net, jnet.mean_squared_error, params, x, y, name="user")
    assert "gradient of leaf '1.1.w' is wrong" in str(e.value)
    assert "failing layers: 1/1:scale" in str(e.value)  # the report under the message


def test_layers_see_the_activations_that_flow_into_them():
    net = jnet.serial(jnet.dense(3), jnet.serial(jnet.tanh(), jnet.dense(2)))
    params, x, _, _ = inputs(net)
    found = sites(net, params, x)
    assert [s.address for s in found] == ["0:dense(3)", "1/0:tanh()", "1/1:dense(2)"]
    h = jnet.dense(3).forward(params[0], x)[0]
    np.testing.assert_array_equal(found[1].x, h)
    np.testing.assert_array_equal(found[2].x, jax.numpy.tanh(h))


def test_combinators_are_walked_into_through_their_wiring():
    block = jnet.residual(jnet.serial(jnet.dense(3), jnet.tanh()))
    net = jnet.serial(jnet.dense(3), block)
    params, x, _, _ = inputs(net)
    found = sites(net, params, x)
    assert [s.address for s in found] == ["0:dense(3)", "1/0/0:dense(3)", "1/0/1:tanh()"]
    h = jnet.dense(3).forward(params[0], x)[0]
    np.testing.assert_array_equal(found[1].x, h)  # the branch gets the block's input
    # A combinator whose wiring does not reproduce its forward (here: it drops the skip
    # connection) is one site.
    liar = block._replace(wiring=lambda p, x, k, s, call: call(0, p[0], x, k, s[0]))
    found = sites(jnet.serial(jnet.dense(3), liar), params, x)
    assert [s.address for s in found] == ["0:dense(3)", f"1:{block.name}"]


@pytest.mark.slow
def test_dropout_layers_get_the_masks_of_the_whole_run():
    net = jnet.serial(jnet.dense(6), jnet.dropout(0.5), jnet.dense(2))
    params, x, y, _ = inputs(net)
    key = jax.random.key(3)
    found = sites(net, params, x, key=key)
    y_seq = found[-1].layer.forward(found[-1].params, found[-1].x)[0]
    np.testing.assert_array_equal(y_seq, net.forward(params, x, key=key)[0])
    report = check_gradients(net, jnet.mean_squared_error, params, x, y, key=key)
    assert report.ok


@pytest.mark.slow
def test_stateful_layer_in_training_and_inference():
    good = jnet.serial(jnet.dense(3), centering(), jnet.dense(2))
    params, x, y, state = inputs(good)
    for key in (None, jax.random.key(1)):
        report = check_gradients(good, jnet.mean_squared_error, params, x, y, key=key, state=state)
        assert report.ok, str(report)
    assert any("per-example gradients not checked" in n for n in report.notes)
    bad = jnet.serial(jnet.dense(3), centering(bug=0.5), jnet.dense(2))
    report = check_gradients(
        bad, jnet.mean_squared_error, params, x, y, key=jax.random.key(1), state=state,
        raise_on_failure=False,
    )  # fmt: skip
    assert report.failing_layers == ["1:centering"]


@pytest.mark.slow
def test_state_defaults_to_the_initial_state():
    net = jnet.serial(centering(), jnet.dense(2))
    params, x, y, _ = inputs(net)
    report = check_gradients(net, jnet.mean_squared_error, params, x, y)
    assert report.ok and any("initial state" in n for n in report.notes)


@pytest.mark.slow
def test_a_wrong_loss_is_named_loss():
    good = jnet.mean_squared_error
    loss = jnet.Loss(good.forward, lambda cache: 3.0 * good.backward(cache))
    net = jnet.serial(jnet.dense(3), jnet.dense(2))
    params, x, y, _ = inputs(net)
    report = check_gradients(net, loss, params, x, y, raise_on_failure=False)
    assert report.failing_layers == ["loss"]
