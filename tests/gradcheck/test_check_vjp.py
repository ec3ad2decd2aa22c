"""check_vjp: any function's VJP (its custom_vjp rule) vs a reference's autodiff and FD."""

import json
import warnings

import jax
import jax.numpy as jnp
import pytest
from planted_layers import two_outputs, two_outputs_reference

import jnet
from jnet.gradcheck import tolerances

X = jnp.linspace(-1.0, 1.0, 6)
W = jnp.arange(6.0) / 3


@pytest.mark.parametrize("reference", [two_outputs_reference, None], ids=["ref", "fd-only"])
def test_wrong_scale_in_one_of_two_outputs_is_named(reference):
    report = jnet.check_vjp(two_outputs(1.5), X, W, reference=reference)
    assert not report.ok
    assert report.failing_outputs == ["out.1"]
    assert report.failing_inputs == ["arg0"]  # out.1 = sum(x**2) does not depend on w
    good = jnet.check_vjp(two_outputs(), X, W, reference=reference)
    assert good.ok, str(good)
    assert len(good.rows) == 4  # 2 inputs x 2 outputs


def test_report_table_and_json():
    report = jnet.check_vjp(two_outputs(1.5), X, W, reference=two_outputs_reference, probes=3)
    text = str(report)
    assert "FAILED" in text and "tolerances (float64, size 12): rtol 1.0e-10" in text
    assert "probes: 3" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["probes"] == 3
    assert {(r["input"], r["output"]) for r in data["rows"] if not r["passed"]} == {
        ("arg0", "out.1")
    }


@pytest.mark.slow
def test_pytrees_and_integer_arguments():
    def f(params, x, labels):
        logits = x @ params["w"] + params["b"]
        return {"logits": logits, "picked": jnp.take_along_axis(logits, labels[:, None], 1)}

    params = {"w": jnp.ones((3, 4)) / 2, "b": jnp.arange(4.0)}
    x, labels = jnp.arange(6.0).reshape(2, 3) / 5, jnp.array([1, 3])
    report = jnet.check_vjp(f, params, x, labels, reference=f, names=("", "x", "labels"))
    assert report.ok, str(report)
    assert {r.input for r in report.rows} == {"w", "b", "x"}
    assert {r.output for r in report.rows} == {"out.logits", "out.picked"}
    assert any("labels: int" in n and "skipped" in n for n in report.notes)


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        jnet.check_vjp(jnp.sin, X, order=3)
    with pytest.raises(ValueError, match="probes must be an int >= 1"):
        jnet.check_vjp(jnp.sin, X, probes=0)
    with pytest.raises(ValueError, match="no floating-point array"):
        jnet.check_vjp(lambda i: i * 2, jnp.arange(3))
    with pytest.raises(ValueError, match="arg0 contains NaN"):
        jnet.check_vjp(jnp.sin, X.at[0].set(jnp.nan))
    with pytest.raises(ValueError, match="reference's"):
        jnet.check_vjp(jnp.sin, X, reference=lambda x: jnp.sin(x)[:2])


def test_float32_one_percent_wrong_fails_and_right_passes():
    x32, w32 = X.astype(jnp.float32), W.astype(jnp.float32)
    for reference in (two_outputs_reference, None):
        bad = jnet.check_vjp(two_outputs(1.01), x32, w32, reference=reference)
        assert bad.failing_outputs == ["out.1"], str(bad)
        good = jnet.check_vjp(two_outputs(), x32, w32, reference=reference)
        assert good.ok, str(good)
        assert good.tolerances.dtype == "float32" and good.tolerances.rtol == 1e-5
    assert "float32" in str(good) and "fd_tol 2.0e-03" in str(good)


def test_tolerances_scale_with_size_but_stay_below_one_percent():
    small = tolerances.for_dtype(jnp.float32, 10)
    big = tolerances.for_dtype(jnp.float32, 10**6)
    huge = tolerances.for_dtype(jnp.float32, 10**12)
    assert small.rtol == 1e-5 < big.rtol < huge.rtol == 1e-3
    assert tolerances.for_dtype(jnp.float64, 10**9).rtol == 1e-10  # strict, whatever the size
    assert tolerances.for_dtype(jnp.bfloat16, 10).rtol >= 2e-2


def test_warns_once_without_x64(monkeypatch):
    monkeypatch.setattr(tolerances, "_warned_x64", False)
    with jax.enable_x64(False), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = jnp.linspace(-1.0, 1.0, 5, dtype=jnp.float32)
        assert jnet.check_vjp(jnp.sin, x, reference=jnp.sin).ok
        jnet.check_vjp(jnp.sin, x)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert 'jax.config.update("jax_enable_x64", True)' in messages[0]
