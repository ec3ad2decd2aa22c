"""The training engine on small synthetic data: step, L2, per-layer rates, fit and evaluate."""

import importlib
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_support import all_finite, assert_trees_equal, float32, without_seconds

import jnet
import jnet.train as train
from jnet.gradcheck import assert_trees_close
from jnet.network import value_and_grad

CE, BCE, MSE = (
    jnet.softmax_cross_entropy,
    jnet.sigmoid_binary_cross_entropy,
    jnet.mean_squared_error,
)

GLOROT, ZEROS = float32(jnet.initializers.glorot_normal()), float32(jnet.initializers.zeros())


def blobs(n: int = 120, d: int = 8, classes: int = 3, seed: int = 0):
    """Separable-ish float32 clusters: x (n, d), integer labels (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(0, 2, (classes, d))
    return (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


def capture_grads() -> optax.GradientTransformation:
    """An 'optimizer' whose state is the last gradient it was given (updates: zero)."""
    return optax.GradientTransformation(
        lambda params: jax.tree.map(jnp.zeros_like, params),
        lambda grads, state, params=None: (jax.tree.map(jnp.zeros_like, grads), grads),
    )


# --- one step ---------------------------------------------------------------------------


@pytest.mark.slow
def test_l2_gradient_matches_autodiff_and_skips_biases():
    x, y = blobs(16, 5)
    x = x.astype(np.float64)
    net = jnet.serial(jnet.dense(7), jnet.tanh(), jnet.dense(3))
    params = net.init(jax.random.key(0), (1, 5))[1]
    # Non-zero biases, so that decaying them would show.
    params = tuple(p | {"b": jnp.linspace(-1, 1, p["b"].size)} if p else p for p in params)
    state = jnet.init_state(net, capture_grads(), jax.random.key(0), (1, 5), params)
    l2 = 0.3

    new, metrics = jax.jit(jnet.make_step(net, CE, capture_grads(), l2=l2))(state, (x, y))
    grads = new.opt_state  # captured: the hand-written gradient with the L2 term

    def objective(p):  # through the pure forward: JAX differentiates it itself
        return CE.forward(net.forward(p, x)[0], y)[0] + l2 * jnet.l2_penalty(p)

    value, reference = jax.jit(jax.value_and_grad(objective))(params)
    assert_trees_close(grads, reference, rtol=1e-10)
    assert metrics["loss"] == pytest.approx(float(value), rel=1e-12)

    # l2_penalty is 0.5 * sum(w ** 2) over the weight matrices only.
    weights = [params[0]["w"], params[2]["w"]]
    expected = 0.5 * sum(float(np.sum(np.asarray(w) ** 2)) for w in weights)
    assert float(jnet.l2_penalty(params)) == pytest.approx(expected, rel=1e-12)

    # Against the step without L2: biases get the same gradient, weights gain l2 * w.
    plain, _ = jax.jit(jnet.make_step(net, CE, capture_grads()))(state, (x, y))
    for i in (0, 2):
        np.testing.assert_allclose(grads[i]["b"], plain.opt_state[i]["b"], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(
            grads[i]["w"] - plain.opt_state[i]["w"], l2 * params[i]["w"], rtol=1e-10, atol=1e-14
        )


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [{-1: optax.sgd(0.1)}, {4: optax.sgd(0.1)}])
def test_per_layer_learning_rates(overrides):
    # Tutorial 004: lr 0.05 everywhere except 0.1 for the output layer.
    x, y = blobs(32, 12, classes=10)
    net = jnet.serial(jnet.dense(100), jnet.relu(), jnet.dense(200), jnet.relu(), jnet.dense(10))
    optimizer = train.per_layer(optax.sgd(0.05), overrides)
    state = jnet.init_state(net, optimizer, jax.random.key(0), (1, 12))
    old = state.params
    _, grads = value_and_grad(net, CE)(old, x, y)

    new, _ = jnet.make_step(net, CE, optimizer)(state, (x, y))
    for i, lr in ((0, 0.05), (2, 0.05), (4, 0.1)):
        for name in ("w", "b"):
            # optax.sgd: params + (-lr) * grad, bit for bit.
            expected = old[i][name] + (-lr) * grads[i][name]
            assert np.array_equal(new.params[i][name], expected), (i, name)
    assert new.params[1] == new.params[3] == ()


def test_per_layer_refuses_a_layer_the_network_lacks():
    net = jnet.serial(jnet.dense(4), jnet.relu(), jnet.dense(2))
    for index in (3, -4):
        optimizer = train.per_layer(optax.sgd(0.1), {index: optax.sgd(1.0)})
        with pytest.raises(ValueError, match=f"layer index {index} is outside the network's 3"):
            jnet.init_state(net, optimizer, jax.random.key(0), (1, 5))


def test_step_and_state_refuse_misuse_by_name():
    net = jnet.serial(jnet.dense(3))
    state = jnet.init_state(net, optax.sgd(0.1), jax.random.key(0), (1, 8))
    x, y = blobs(20)
    step = jnet.make_step(net, CE, optax.sgd(0.1))
    with pytest.raises(TypeError, match=r"step: batch must be a pair \(x, y\); got ndarray"):
        step(state, x, y)
    with pytest.raises(TypeError, match="step: state must be a jnet.TrainState"):
        step((state.params, state.opt_state), (x, y))
    with pytest.raises(TypeError, match="init_state: key must be one JAX PRNG key"):
        jnet.init_state(net, optax.sgd(0.1), 0, (1, 8))
    with pytest.raises(ValueError, match="per_layer: needs the params of a serial network"):
        jnet.init_state(
            jnet.dense(3), train.per_layer(optax.sgd(0.1), {0: optax.sgd(1)}), jax.random.key(0),
            (1, 8),
        )  # fmt: skip


@pytest.mark.slow
def test_train_step_matches_make_step_and_donates():
    x, y = blobs(40, 6)
    net = jnet.serial(jnet.dense(16), jnet.relu(), jnet.dropout(0.3), jnet.dense(3))
    optimizer = optax.adam(1e-2)
    state = jnet.init_state(net, optimizer, jax.random.key(0), (1, 6))
    batch, key = (jnp.asarray(x), jnp.asarray(y)), jax.random.key(5)

    expected, expected_metrics = jnet.make_step(net, CE, optimizer, l2=1e-3)(state, batch, key)
    donated = jax.tree.map(jnp.copy, state)
    got, metrics = jnet.train_step(net, CE, optimizer, l2=1e-3)(donated, batch, key)

    assert_trees_close(got.params, expected.params, rtol=1e-12)
    assert_trees_close(got.opt_state, expected.opt_state, rtol=1e-12)
    assert int(got.step) == int(expected.step) == 1
    assert_trees_close(metrics, expected_metrics, rtol=1e-12)
    # The old state's buffers were handed to the new one.
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(donated.params))


# --- fit: determinism, compilation, progress ----------------------------------------------


def small_fit(key, **kwargs):
    x, y = blobs()
    net = jnet.serial(jnet.dense(16), jnet.relu(), jnet.dropout(0.2), jnet.dense(3))
    options = dict(epochs=3, batch_size=16, key=key, progress=False) | kwargs
    return jnet.fit(net, CE, optax.adam(1e-2), x, y, **options)


@pytest.mark.slow
def test_same_key_same_run_bit_for_bit():
    params_a, _, history_a = small_fit(jax.random.key(7))
    params_b, _, history_b = small_fit(jax.random.key(7))
    assert_trees_equal(params_a, params_b)
    assert without_seconds(history_a) == without_seconds(history_b)

    params_c, _, history_c = small_fit(jax.random.key(8))
    assert history_c["loss"] != history_a["loss"]
    assert not np.array_equal(params_c[0]["w"], params_a[0]["w"])


@pytest.mark.slow  # the fast path's budget (CI runs it)
def test_an_epoch_compiles_once_per_run(monkeypatch, caplog, tmp_path):
    # 103 examples in batches of 10: the last 3 are dropped, never a batch of another shape.
    x, y = blobs(103)
    engines = []
    make_epochs = train.make_epochs
    fit_module = importlib.import_module("jnet.train.prepare")  # where fit builds its engine
    monkeypatch.setattr(
        fit_module,
        "make_epochs",
        lambda *a, **k: engines.append(make_epochs(*a, **k)) or engines[-1],
    )
    net = jnet.serial(jnet.dense(16), jnet.relu(), jnet.dense(3))
    caplog.set_level(logging.WARNING)
    with jax.log_compiles(True):
        _, _, history = jnet.fit(
            net,
            CE,
            optax.adam(1e-2),
            x,
            y,
            epochs=7,
            epochs_per_call=3,
            checkpoint_every=3,
            checkpoint_dir=tmp_path,
            batch_size=10,
            validation=(x[:17], y[:17]),
            key=jax.random.key(0),
            progress=False,
        )
    assert history["epoch"] == list(range(1, 8))  # 7 calls of 1 epoch: 1 divides 7 and 3
    compiles = [r.getMessage() for r in caplog.records if "Compiling jit(run)" in r.getMessage()]
    assert len(compiles) == 1, compiles
    (engine,) = engines
    assert engine.run._cache_size() == 1
    assert engine.steps_per_epoch == 10 and engine.epochs == 1


@pytest.mark.slow
def test_epochs_drop_the_partial_batch():
    x, y = blobs(103)
    net = jnet.serial(jnet.dense(4), jnet.relu(), jnet.dense(3))
    state = jnet.init_state(net, optax.sgd(0.1), jax.random.key(0), (1, 8))
    engine = train.make_epochs(net, CE, optax.sgd(0.1), num_examples=103, batch_size=10, epochs=2)
    stop = jnp.asarray(train.NO_STOP, jnp.int32)
    for _ in range(2):  # a second call: same shapes, no recompile
        data = (jnp.asarray(x), jnp.asarray(y), None)
        state, (bad_step, _), metrics = engine.run(state, *data, stop)
    assert int(state.step) == 40 and int(bad_step) == -1
    assert metrics["loss"].shape == (2,) and np.all(np.isfinite(metrics["loss"]))
    assert engine.run._cache_size() == 1
    with pytest.raises(ValueError, match="batch_size 200 exceeds the 103"):
        train.make_epochs(net, CE, optax.sgd(0.1), num_examples=103, batch_size=200, epochs=1)


@pytest.mark.slow
def test_progress_bar(capfd):
    small_fit(jax.random.key(0), epochs=2, progress=True)
    out, err = capfd.readouterr()
    assert "epoch" in err and "2/2" in err, err
    assert out == ""

    small_fit(jax.random.key(0), epochs=2, progress=False)
    assert capfd.readouterr() == ("", "")


# --- input validation at the boundary -----------------------------------------------------

BAD_INPUTS = {
    "length": (lambda x, y: (x, y[:-1]), r"same length.*\(20, 8\).*\(19,\)"),
    "label 10": (lambda x, y: (x, np.where(y == 0, 10, y)), r"\[0, 10\).*10 outputs.*\[\d, 10\]"),
    "label -1": (lambda x, y: (x, np.where(y == 0, -1, y)), r"\[0, 10\).*got labels in \[-1, "),
    "nan": (lambda x, y: (np.where(x > 1, np.nan, x), y), r"x contains \d+ NaN or inf"),
    "inf": (lambda x, y: (np.where(x > 1, np.inf, x).astype(np.float32), y), r"NaN or inf"),
    "uint8": (lambda x, y: ((np.abs(x) * 50).astype(np.uint8), y), r"floating point.*uint8"),
    "width": (
        lambda x, y: (x[:, :3], y),
        r"x of shape \(20, 3\) and dtype float\d+ does not fit .*dense\(10\)",
    ),
    "y (N, 1)": (lambda x, y: (x, y[:, None]), r"y of shape \(20, 1\) does not fit .*\(20, 10\)"),
    "int one-hot": (lambda x, y: (x, np.eye(10, dtype=int)[y]), r"looks one-hot but is int"),
    "2x one-hot": (lambda x, y: (x, 2 * np.eye(10)[y]), r"targets must lie in \[0, 1\]"),
    "half one-hot": (lambda x, y: (x, 0.5 * np.eye(10)[y]), r"must sum to 1 .* \[0.5, 0.5\]"),
}


@pytest.mark.parametrize(
    "where, case",
    [
        (where, case)
        for where in ("fit", "evaluate", "fit(validation)")
        for case in sorted(BAD_INPUTS)
        if (where, case) != ("fit", "width")  # fit sizes a fresh network to x
    ],
)
def test_bad_data_is_refused_with_a_clear_message(case, where):
    x, y = blobs(20, classes=10)
    assert y.min() == 0 and 0 < x.max()  # the corruptions below change something
    bad_x, bad_y = BAD_INPUTS[case][0](x, y)
    net = jnet.serial(jnet.dense(10))
    with pytest.raises(ValueError, match=BAD_INPUTS[case][1]) as info:
        if where == "fit":
            jnet.fit(net, CE, 0.1, bad_x, bad_y, epochs=1, key=jax.random.key(0), progress=False)
        elif where == "fit(validation)":
            jnet.fit(
                net,
                CE,
                0.1,
                x,
                y,
                validation=(bad_x, bad_y),
                epochs=1,
                key=jax.random.key(0),
                progress=False,
            )
        else:
            params = net.init(jax.random.key(0), (1, 8))[1]
            jnet.evaluate(net, CE, params, bad_x, bad_y)
    assert str(info.value).startswith(where + ":")


BAD_ARGUMENTS = {
    "epochs 0": (dict(epochs=0), ValueError, r"epochs must be a positive integer; got 0"),
    "epochs 2.0": (dict(epochs=2.0), ValueError, r"epochs must be a positive integer; got 2.0"),
    "batch 0": (dict(batch_size=0), ValueError, r"batch_size must be .* or None; got 0"),
    "batch '4'": (dict(batch_size="4"), ValueError, r"batch_size must be .*; got '4'"),
    "every 0": (dict(checkpoint_every=0), ValueError, r"checkpoint_every must be"),
    "per call -1": (dict(epochs_per_call=-1), ValueError, r"epochs_per_call must be"),
    "eval batch 0": (dict(eval_batch_size=0), ValueError, r"eval_batch_size must be"),
    "optimizer str": (dict(optimizer="adam"), TypeError, r"optax GradientTransformation"),
    "optimizer fn": (dict(optimizer=optax.adam), TypeError, r"got function"),
    "key 0": (dict(key=0), TypeError, r"key must be one JAX PRNG key.*got int 0"),
    "keys": (dict(key=jax.random.split(jax.random.key(0))), TypeError, r"shape \(2,\)"),
    "validation": (dict(validation=np.zeros((4, 8))), ValueError, r"validation must be a pair"),
    "swapped": (dict(net=CE, loss=jnet.dense(3)), TypeError, r"net must be a jnet.Layer"),
    "int params": (
        dict(params=({"w": np.zeros((8, 3), int), "b": np.zeros(3, int)},)),
        ValueError,
        r"floating point; params\[0\]\['b'\] has dtype int",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_bad_arguments_are_refused_by_name(case):
    x, y = blobs(20)
    call = dict(net=jnet.serial(jnet.dense(3)), loss=CE, optimizer=0.1, epochs=1)
    call |= dict(key=jax.random.key(0), progress=False) | BAD_ARGUMENTS[case][0]
    net, loss, optimizer = call.pop("net"), call.pop("loss"), call.pop("optimizer")
    _, error, message = BAD_ARGUMENTS[case]
    with pytest.raises(error, match=message) as info:
        jnet.fit(net, loss, optimizer, x, y, **call)
    assert str(info.value).startswith("fit:")


def test_a_copy_of_a_builtin_loss_gets_its_label_checks():
    x, y = blobs(20)
    copy = jnet.Loss(*CE)  # e.g. a user's own Loss built from the built-in's functions
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        jnet.fit(jnet.serial(jnet.dense(3)), copy, 0.1, x, np.where(y == 0, 7, y), epochs=1,
                 key=jax.random.key(0), progress=False)  # fmt: skip


@pytest.mark.slow
def test_learning_rates_may_be_numpy_or_jax_scalars():
    x, y = blobs(20)
    runs = [
        jnet.fit(
            jnet.serial(jnet.dense(3)),
            CE,
            lr,
            x,
            y,
            epochs=2,
            key=jax.random.key(0),
            progress=False,
        )  # fmt: skip
        for lr in (0.25, np.float32(0.25), jnp.asarray(0.25, jnp.float32))  # exact in float32
    ]
    assert_trees_equal(runs[0][0], runs[1][0])
    assert_trees_equal(runs[0][0], runs[2][0])


def test_evaluate_and_predict_check_batch_size_and_take_empty_input():
    net = jnet.serial(jnet.dense(3))
    params = net.init(jax.random.key(0), (1, 8))[1]
    x, y = blobs(20)
    with pytest.raises(ValueError, match="evaluate: batch_size must be a positive integer"):
        jnet.evaluate(net, CE, params, x, y, batch_size=0)
    with pytest.raises(ValueError, match="predict: batch_size must be a positive integer"):
        jnet.predict(net, params, x, batch_size=-1)
    with pytest.raises(ValueError, match=r"predict: x must have a batch axis.*shape \(\)"):
        jnet.predict(net, params, 1.0)
    assert jnet.predict(net, params, x[:0]).shape == (0, 3)


# --- evaluate -----------------------------------------------------------------------------


def numpy_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.slow
def test_evaluate_softmax_matches_numpy():
    x, y = blobs(37, 6, classes=4)
    x = x.astype(np.float64)
    net = jnet.serial(jnet.dense(4))
    params = net.init(jax.random.key(3), (1, 6))[1]
    logits = x @ np.asarray(params[0]["w"]) + np.asarray(params[0]["b"])
    accuracy = np.mean(logits.argmax(1) == y)
    loss = -np.mean(numpy_log_softmax(logits)[np.arange(37), y])
    assert 0.2 < accuracy < 0.9  # neither trivial nor perfect

    got = jnet.evaluate(net, CE, params, x, y)
    # Accuracy is a float32 mean (jnp.mean of booleans) even in float64.
    assert got["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert got["loss"] == pytest.approx(loss, rel=1e-12)
    # 37 is not a multiple of 10: four compiled batches of 10, 10, 10 and 7.
    batched = jnet.evaluate(net, CE, params, x, y, batch_size=10)
    assert batched["accuracy"] == pytest.approx(got["accuracy"], abs=1e-6)
    assert batched["loss"] == pytest.approx(got["loss"], rel=1e-12)
    # One-hot targets score the same.
    one_hot = jnet.evaluate(net, CE, params, x, np.eye(4)[y], batch_size=10)
    assert one_hot["accuracy"] == pytest.approx(got["accuracy"], abs=1e-6)
    assert one_hot["loss"] == pytest.approx(got["loss"], rel=1e-12)

    # A softmax output layer trained with MSE: argmax of the probabilities.
    soft = jnet.serial(jnet.dense(4), jnet.softmax())
    probs = np.exp(numpy_log_softmax(logits))
    got = jnet.evaluate(soft, MSE, params + ((),), x, np.eye(4)[y], batch_size=8)
    assert got["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert got["loss"] == pytest.approx(np.mean((probs - np.eye(4)[y]) ** 2), rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("target_shape", ["(N,)", "(N, 1)"])
def test_evaluate_binary_matches_numpy(target_shape):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(45, 3))
    y = (x[:, 0] + 0.8 * rng.normal(size=45) > 0).astype(np.float64)
    targets = y if target_shape == "(N,)" else y[:, None]
    net = jnet.serial(jnet.dense(1))
    params = net.init(jax.random.key(2), (1, 3))[1]
    z = (x @ np.asarray(params[0]["w"]) + np.asarray(params[0]["b"]))[:, 0]

    # Logits with binary cross entropy: predict 1 where z > 0 (probability > 0.5).
    accuracy = np.mean((z > 0) == (y > 0.5))
    loss = np.mean(np.logaddexp(z, 0) - z * y)
    assert 0.2 < accuracy < 1
    for batch_size in (45, 7):
        got = jnet.evaluate(net, BCE, params, x, targets, batch_size=batch_size)
        assert got["accuracy"] == pytest.approx(accuracy, abs=1e-6)
        assert got["loss"] == pytest.approx(loss, rel=1e-12)

    # A sigmoid output layer (e.g. trained with MSE): threshold 0.5 on the probability.
    sig = jnet.serial(jnet.dense(1), jnet.sigmoid())
    p = 1 / (1 + np.exp(-z))
    got = jnet.evaluate(sig, MSE, params + ((),), x, targets, batch_size=7)
    assert got["accuracy"] == pytest.approx(np.mean((p > 0.5) == (y > 0.5)), abs=1e-6)
    assert got["loss"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
    assert got["accuracy"] == pytest.approx(accuracy, abs=1e-6)  # same decisions either way


# --- an overflow in a call's last update -------------------------------------------------


@pytest.mark.slow
def test_overflow_in_the_last_update_is_divergence():
    x, y = blobs(64, 8)
    x = x * 100
    net = jnet.serial(jnet.dense(3, GLOROT, ZEROS))
    optimizer = optax.sgd(1e37)
    state = jnet.init_state(net, optimizer, jax.random.key(0), (1, 8))
    new, metrics = jnet.make_step(net, CE, optimizer)(state, (x, y))
    assert np.isfinite(metrics["loss"]) and not np.all(np.isfinite(new.params[0]["w"]))

    # The run's one update overflows: every loss was finite, so the update is to blame.
    with pytest.raises(jnet.DivergenceError) as info:
        jnet.fit(net, CE, optimizer, x, y, epochs=1, key=jax.random.key(0), progress=False)
    e = info.value
    assert "the update of epoch 1, step 1 of 1 (global step 0) made the parameters" in str(e)
    assert int(e.state.step) == 0 and all_finite(e.state) and e.history["epoch"] == []


def testepochs_per_call_divides_every_call():
    # (epochs left, limit, checkpoint_every, epochs done) -> epochs per call
    assert train.epochs_per_call(500, 100, None, 0) == 100
    assert train.epochs_per_call(60_000, 60_000, None, 0) == 60_000
    assert train.epochs_per_call(10, 4, None, 0) == 2
    assert train.epochs_per_call(7, 3, 3, 0) == 1
    assert train.epochs_per_call(12, 100, 4, 0) == 4
    assert train.epochs_per_call(8, 100, 4, 2) == 2  # resumed mid-interval: calls of 2
    assert train.epochs_per_call(101, 100, None, 0) == 1  # a prime: one epoch per call
