"""The checker's verdicts: a correct layer is never FAILED for how it batches or for a kink,
a fault is never merely noted, and every verdict comes from one engine (issue 22)."""

import os
import pathlib
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from planted_layers import batch_only_dense, bias_only, none_dx, root

import jnet
import jnet.testing
from jnet.gradcheck import NonFiniteInput, NothingToCheck, VJPRow, check_gradients, probes
from jnet.gradcheck.report import vjp_table

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
BARE_NOTE = "per-example gradients: the backward does not run under jax.vmap on bare examples"


@pytest.mark.slow
def test_a_textbook_backward_passes_with_a_note_of_its_own():
    # backward: {"w": x.T @ dy, "b": dy.sum(0)}, dy @ w.T: right on batches, which is what
    # every layer trains on; under jax.vmap on bare (D,) examples it cannot run.
    report = jnet.testing.assert_gradients(batch_only_dense(3), (6, 7))
    assert any(r.output == "per-example" and r.passed for r in report.extra), str(report)
    note = next(n for n in report.notes if BARE_NOTE in n)
    assert "shape (7,)" in note and "TypeError" in note
    _, params = batch_only_dense(3).init(jax.random.key(0), (6, 7))
    x, y = jax.random.normal(jax.random.key(1), (6, 7)), jnp.zeros((6, 3))
    report = check_gradients(batch_only_dense(3), jnet.mean_squared_error, params, x, y)
    assert report.ok and any(BARE_NOTE in n for n in report.notes)


@pytest.mark.slow
def test_a_textbook_backward_passes_the_command_line():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(HERE)]))
    run = subprocess.run(
        [sys.executable, "-m", "jnet.gradcheck", "planted_layers:batch_only_dense",
         "--input-shape", "5,6"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 failed (float64)" in run.stdout and BARE_NOTE in run.stdout


def test_a_tie_within_the_step_is_a_kink_in_float32():
    # Measured on the max_pool case (float32, x64 off): windows of relu zeros, so
    # the one-sided slopes differ by 0.106 at every step, while float32 rounding at the
    # smallest step (0.196) hides that gap. The gap at the second step is well above its
    # floor: a kink, as a relu input at 0 is.
    diffs = [
        (0.10607664634953995, 0.15894135792948738, 0.05321193476959252, 0.012227707894748047),
        (0.1061843732378609, 0.15904908481827462, 0.05331966165744717, 0.04890991800610922),
        (0.10663258903562678, 0.15949730061635137, 0.05376787745490219, 0.19563875845155387),
    ]
    assert probes.judge(-0.11355091001097611, diffs, 0.47855972239439304, 2e-3).status == "kink"
    # A smooth function with a wrong gradient: the slopes agree up to shrinking curvature.
    smooth = [(1.0, 1.0 + 4e-4, 1.0 - 4e-4, 1e-9), (1.0, 1.0 + 1e-4, 1.0 - 1e-4, 4e-9),
              (1.0, 1.0 + 2.5e-5, 1.0 - 2.5e-5, 1.6e-8)]  # fmt: skip
    assert probes.judge(1.5, smooth, 1.0, 2e-3).status == "fail"


@pytest.mark.slow
def test_max_pool_in_float32_passes_and_a_wrong_one_fails():
    net = jnet.serial(jnet.conv2d(3, 3), jnet.batch_norm(), jnet.relu(), jnet.max_pool(2),
                      jnet.flatten(), jnet.dense(2))  # fmt: skip
    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*without float64")
        report = jnet.testing.assert_gradients(
            net, (4, 6, 6, 2), dtype=jnp.float32, seed=0, training=True
        )
        assert report.ok
        pool = jnet.max_pool(2)

        def wrong(params, cache, dy):
            dparams, dx = pool.backward(params, cache, dy)
            return dparams, 1.5 * dx

        bad = jnet.serial(*net.children[:3], pool._replace(backward=wrong), *net.children[4:])
        report = jnet.gradcheck.user.check_layer(
            bad, (4, 6, 6, 2), dtype=jnp.float32, training=True
        )
        assert report.failing_layers == ["3:max_pool(2)"], str(report)


@pytest.mark.slow
def test_a_nan_input_to_a_layer_fails_it():
    net = jnet.serial(root(), jnet.dense(2))
    _, params = net.init(jax.random.key(0), (3, 4))
    x = jnp.asarray(np.linspace(-1.0, 1.0, 12).reshape(3, 4))  # sqrt of a negative: NaN
    report = check_gradients(net, jnet.mean_squared_error, params, x, jnp.zeros((3, 2)),
                             raise_on_failure=False, per_example=False)  # fmt: skip
    assert "1:dense(2)" in report.failing_layers, str(report)
    assert any("1:dense(2): FAILED: its input holds NaN or inf" in n for n in report.notes)
    assert not any("not checked" in n for n in report.notes)


def test_refusals_are_typed():
    with pytest.raises(NothingToCheck):
        jnet.check_vjp(lambda i: i * 2, jnp.arange(3))
    with pytest.raises(NonFiniteInput):
        jnet.check_vjp(jnp.sin, jnp.array([0.0, jnp.nan]))
    with pytest.raises(NonFiniteInput):  # both stay ValueErrors
        check_gradients(jnet.dense(2), jnet.mean_squared_error,
                        jnet.dense(2).init(jax.random.key(0), (1, 2))[1],
                        jnp.array([[jnp.inf, 0.0]]), jnp.zeros((1, 2)))  # fmt: skip


def test_an_empty_batch_is_refused_not_failed():
    """A batch of no examples has no derivative to judge: a typed refusal naming the shape,
    not a FAIL report whose finite differences of a NaN mean read inf."""
    with pytest.raises(NothingToCheck, match=r"x has an empty batch, shape \(0, 5\)"):
        jnet.testing.assert_gradients(jnet.dense(3), (0, 5))


@pytest.mark.slow
def test_dx_none_is_a_zero_gradient_judged_under_the_layers_name():
    layer = none_dx()
    _, params = layer.init(jax.random.key(0), (6, 5))
    x, y = jax.random.normal(jax.random.key(1), (6, 5)), jnp.zeros((6, 5))
    with pytest.raises(jnet.GradientCheckError, match="failing layers .*: none_dx") as e:
        check_gradients(layer, jnet.mean_squared_error, params, x, y, name="net")
    assert "none_dx: backward returned None for dx" in str(e.value)
    assert "has shape ()" not in str(e.value)
    # Where the input does not matter, None is the right gradient.
    jnet.testing.assert_gradients(bias_only(), (6, 5))


@pytest.mark.slow
def test_one_engine_one_row_type():
    net = jnet.serial(jnet.dense(4), jnet.tanh())
    _, params = net.init(jax.random.key(0), (3, 2))
    x = jax.random.normal(jax.random.key(1), (3, 2))
    report = check_gradients(net, jnet.mean_squared_error, params, x, jnp.zeros((3, 4)))
    assert all(type(r) is VJPRow for r in [*report.rows, *report.layers, *report.extra])
    assert [(r.input, r.output) for r in report.rows] == [
        ("0.b", "loss"), ("0.w", "loss"), ("x", "loss")
    ]
    assert report.table() == vjp_table(report.rows)


def test_long_case_names_keep_the_columns_in_line():
    rows = [VJPRow("a", "w", "out", 1, 0.0, 0.0, 1e-9, 0, True),
            VJPRow("serial(conv2d(3, 3), batch_norm(), relu(), max_pool(2), flatten())",
                   "x", "out", 1, 1e-3, 0.5, None, 2, False)]  # fmt: skip
    lines = vjp_table(rows).splitlines()
    assert len({len(line) for line in lines}) == 1, "\n".join(lines)
    end = lines[0].index("rel err") + len("rel err")  # numbers are right-aligned under it
    assert [line[end - 7 : end] for line in lines[2:]] == ["0.0e+00", "5.0e-01"]


@pytest.mark.slow
def test_no_float64_truncation_warnings_with_x64_off():
    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*without float64")  # jnet's own, once
        x = jnp.linspace(-1.0, 1.0, 5, dtype=jnp.float32)
        jnet.testing.assert_gradients(jnp.sin, x)
        jnet.testing.assert_gradients(jnet.dense(2), (3, 2))  # dtype float64: float32 here
