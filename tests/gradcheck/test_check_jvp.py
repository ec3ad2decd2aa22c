"""check_jvp: a custom_jvp rule in forward mode, its transpose, and (order 2) its own JVP."""

import json

import jax
import jax.numpy as jnp
import pytest

import jnet
import jnet.testing

X = jnp.linspace(-2.0, 2.0, 7) + 0.05  # off relu's kink


def _sin_with(rule):
    @jax.custom_jvp
    def f(x):
        return jnp.sin(x)

    f.defjvp(rule)
    return f


@pytest.mark.slow
def test_jax_nn_custom_jvp_functions_pass():
    jnet.testing.assert_jvp(jax.nn.relu, X, reference=lambda x: jnp.maximum(x, 0.0))
    jnet.testing.assert_jvp(jax.nn.softplus, X, reference=lambda x: jnp.log1p(jnp.exp(x)),
                            order=2)  # fmt: skip
    a = jnp.arange(12.0).reshape(3, 4) / 5
    report = jnet.check_jvp(lambda a: jax.nn.logsumexp(a, axis=1), a, order=2,
                            reference=lambda a: jnp.log(jnp.exp(a).sum(1)))  # fmt: skip
    assert report.ok, str(report)
    assert {(r.mode, r.order) for r in report.rows} == {("jvp", 1), ("vjp", 1), ("jvp", 2)}


def test_a_wrong_rule_fails_forward_and_reverse():
    wrong = _sin_with(lambda p, t: (jnp.sin(p[0]), 1.5 * jnp.cos(p[0]) * t[0]))
    for reference in (jnp.sin, None):
        report = jnet.check_jvp(wrong, X, reference=reference, probes=2)
        assert not report.ok
        assert {(r.mode, r.passed) for r in report.rows} == {("jvp", False), ("vjp", False)}
    text = str(report)
    assert text.startswith("check_jvp(f): FAILED") and "mode" in text.splitlines()[1]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and {r["mode"] for r in data["rows"]} == {"jvp", "vjp"}
    with pytest.raises(AssertionError, match=r"check_jvp\(f\): FAILED"):
        jnet.testing.assert_jvp(wrong, (X,))


def test_a_rule_not_linear_in_its_tangent_fails_and_says_so():
    nonlinear = _sin_with(lambda p, t: (jnp.sin(p[0]), jnp.cos(p[0]) * t[0] ** 2))
    report = jnet.check_jvp(nonlinear, X, probes=2)  # no bare AssertionError
    assert not report.ok
    assert [r.passed for r in report.rows if r.mode == "vjp"] == [False]
    assert any("cannot derive the reverse mode by transposing the rule" in n
               and "linear in the input tangents" in n for n in report.notes)  # fmt: skip
    report = jnet.check_vjp(nonlinear, X, probes=2)  # was a bare AssertionError
    assert not report.ok and "by transposing f's custom_jvp rule" in str(report)


def test_stop_gradient_inside_a_rule_fails_at_order_2():
    @jax.custom_jvp
    def cube(x):
        return x**3

    cube.defjvp(lambda p, t: (cube(p[0]), 3 * jax.lax.stop_gradient(p[0]) ** 2 * t[0]))
    assert jnet.check_jvp(cube, X, reference=lambda x: x**3, probes=2).ok  # right to order 1
    report = jnet.check_jvp(cube, X, reference=lambda x: x**3, order=2, probes=2)
    assert [(r.output, r.order, r.mode) for r in report.failing] == [("dout", 2, "jvp")]


def test_rows_name_arguments_and_outputs():
    def f(x, w):
        return {"a": jax.nn.relu(x) * w, "b": jnp.sum(x)}

    report = jnet.check_jvp(f, X, X + 1.0, names=("x", "w"), probes=1)
    assert report.ok, str(report)
    assert {(r.input, r.output) for r in report.rows} == {
        (i, o) for i in ("x", "w") for o in ("out.a", "out.b")
    }
    assert {r.input for r in jnet.check_jvp(f, X, X, probes=1).rows} == {"arg0", "arg1"}
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        jnet.check_jvp(jnp.sin, X, order=3)
