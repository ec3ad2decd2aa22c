"""Losses: reference values, extreme logits, and `jnet.apply(loss)` gradients = `loss.backward`."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _marks import fast_at

import jnet

SCE = jnet.softmax_cross_entropy
BCE = jnet.sigmoid_binary_cross_entropy
MSE = jnet.mean_squared_error

RNG = np.random.default_rng(0)
LOGITS = jnp.asarray(RNG.normal(size=(6, 4)) * 3)
LABELS = jnp.asarray(RNG.integers(0, 4, 6))
ONEHOT = jax.nn.one_hot(LABELS, 4, dtype=jnp.float64)
SOFT = jax.nn.softmax(jnp.asarray(RNG.normal(size=(6, 4))))  # soft targets are fine too
BINARY = jnp.asarray(RNG.integers(0, 2, 6).astype(float))
TARGETS = jnp.asarray(RNG.normal(size=(6, 4)))

# (loss, outputs, targets, optax reference value). Each is a mean over the batch.
REFERENCES = {
    "sce-labels": (
        SCE,
        LOGITS,
        LABELS,
        optax.softmax_cross_entropy_with_integer_labels(LOGITS, LABELS).mean(),
    ),
    "sce-onehot": (SCE, LOGITS, ONEHOT, optax.softmax_cross_entropy(LOGITS, ONEHOT).mean()),
    "sce-soft": (SCE, LOGITS, SOFT, optax.softmax_cross_entropy(LOGITS, SOFT).mean()),
    "bce-(N,)": (
        BCE,
        LOGITS[:, 0],
        BINARY,
        optax.sigmoid_binary_cross_entropy(LOGITS[:, 0], BINARY).mean(),
    ),
    "bce-(N,1)": (
        BCE,
        LOGITS[:, :1],
        BINARY,
        optax.sigmoid_binary_cross_entropy(LOGITS[:, 0], BINARY).mean(),
    ),
    "bce-(N,1)-(N,1)": (
        BCE,
        LOGITS[:, :1],
        BINARY[:, None],
        optax.sigmoid_binary_cross_entropy(LOGITS[:, 0], BINARY).mean(),
    ),
    "bce-(N,C)": (
        BCE,
        LOGITS,
        (TARGETS > 0).astype(float),
        optax.sigmoid_binary_cross_entropy(LOGITS, (TARGETS > 0).astype(float)).mean(),
    ),
    "mse": (MSE, LOGITS, TARGETS, optax.squared_error(LOGITS, TARGETS).mean()),
    "mse-(N,1)-(N,)": (
        MSE,
        LOGITS[:, :1],
        TARGETS[:, 0],
        np.mean((LOGITS[:, 0] - TARGETS[:, 0]) ** 2),
    ),
}


@pytest.mark.parametrize("case", REFERENCES)
def test_value_matches_optax(case):
    loss, outputs, targets, want = REFERENCES[case]
    value, _ = loss.forward(outputs, targets)
    assert value.shape == ()
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(jnet.apply(loss)(outputs, targets), want, rtol=1e-12)


@pytest.mark.parametrize("case", fast_at(list(REFERENCES), {0, 4}))
def test_call_gradient_is_loss_backward(case):
    loss, outputs, targets, _ = REFERENCES[case]
    _, cache = loss.forward(outputs, targets)
    hand = loss.backward(cache)
    assert hand.shape == outputs.shape

    @jax.jit
    def grads(outputs):
        return (
            jax.grad(jnet.apply(loss))(outputs, targets),  # custom_vjp: bwd is loss.backward ...
            jax.grad(lambda o: 3.0 * jnet.apply(loss)(o, targets))(
                outputs
            ),  # ... times the cotangent
            jax.grad(lambda o: loss.forward(o, targets)[0])(outputs),  # autodiff of forward
        )

    call, call3, auto = grads(outputs)
    np.testing.assert_allclose(
        jax.grad(jnet.apply(loss))(outputs, targets), hand, rtol=1e-14
    )  # eager
    np.testing.assert_allclose(call, hand, rtol=1e-12)
    np.testing.assert_allclose(call3, 3 * hand, rtol=1e-12)
    # And loss.backward is the true gradient.
    np.testing.assert_allclose(hand, auto, rtol=1e-12, atol=1e-16)


def test_targets_get_no_gradient():
    for loss, outputs, targets in [(SCE, LOGITS, ONEHOT), (MSE, LOGITS, TARGETS)]:
        np.testing.assert_array_equal(jax.grad(jnet.apply(loss), argnums=1)(outputs, targets), 0.0)


# Extreme logits: +-1e4 overflow exp() in any dtype, so only a stable form stays finite.

BIG = 1e4
X_LOGITS = jnp.array([[BIG, -BIG, 0.0], [-BIG, BIG, BIG], [-BIG, -BIG, -BIG], [0.0, BIG, -BIG]])
X_LABELS = jnp.array([0, 0, 2, 2])
# -log softmax(z)[label] = logsumexp(z) - z[label], by hand: logsumexp is max + log(count).
X_SCE = np.mean([0.0, 2 * BIG + np.log(2), np.log(3), 2 * BIG])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", fast_at([jnp.float64, jnp.float32], {1}))
@pytest.mark.parametrize("targets", ["labels", "one-hot"])
def test_softmax_cross_entropy_extreme_logits(dtype, targets):
    logits = X_LOGITS.astype(dtype)
    y = X_LABELS if targets == "labels" else jax.nn.one_hot(X_LABELS, 3, dtype=dtype)
    value, grad = jax.value_and_grad(jnet.apply(SCE))(logits, y)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, X_SCE, rtol=1e-6)
    # Gradient (softmax - onehot) / N, exactly representable here.
    p = np.array([[1, 0, 0], [0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [0, 1, 0]])
    want = (p - np.asarray(jax.nn.one_hot(X_LABELS, 3))) / 4
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", fast_at([jnp.float64, jnp.float32], {1}))
@pytest.mark.parametrize("shape", [(4,), (4, 1)])
def test_sigmoid_binary_cross_entropy_extreme_logits(dtype, shape):
    logits = jnp.array([BIG, BIG, -BIG, -BIG], dtype).reshape(shape)
    y = jnp.array([1.0, 0.0, 1.0, 0.0], dtype)
    value, grad = jax.value_and_grad(jnet.apply(BCE))(logits, y)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, (0 + BIG + BIG + 0) / 4, rtol=1e-6)
    np.testing.assert_allclose(grad.reshape(-1), np.array([0, 1, -1, 0]) / 4, atol=1e-7)
    assert grad.shape == shape


@pytest.mark.slow
@pytest.mark.parametrize("dtype", fast_at([jnp.float64, jnp.float32], {1}))
def test_mean_squared_error_extreme_outputs(dtype):
    outputs = jnp.array([[BIG, -BIG], [0.0, BIG]], dtype)
    targets = jnp.array([[0.0, 0.0], [0.0, -BIG]], dtype)
    value, grad = jax.value_and_grad(jnet.apply(MSE))(outputs, targets)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, (BIG**2 + BIG**2 + 0 + 4 * BIG**2) / 4, rtol=1e-6)
    np.testing.assert_allclose(grad, 2 * (outputs - targets) / 4, rtol=1e-6)


@pytest.mark.slow
def test_losses_under_vmap_take_per_example_shapes():
    # Per example, (N, 1) logits and (N,) targets become (1,) and (): still interchangeable.
    per_example = jax.vmap(jnet.apply(BCE))(LOGITS[:, :1], BINARY)
    np.testing.assert_allclose(
        per_example.mean(), jnet.apply(BCE)(LOGITS[:, :1], BINARY), rtol=1e-12
    )
    per_example = jax.vmap(jnet.apply(SCE))(LOGITS, LABELS)
    np.testing.assert_allclose(per_example.mean(), jnet.apply(SCE)(LOGITS, LABELS), rtol=1e-12)
    per_example = jax.vmap(jnet.apply(MSE))(LOGITS, TARGETS)
    np.testing.assert_allclose(per_example.mean(), jnet.apply(MSE)(LOGITS, TARGETS), rtol=1e-12)


@pytest.mark.slow
def test_softmax_cross_entropy_over_extra_leading_axes():
    logits = LOGITS.reshape(2, 3, 4)
    np.testing.assert_allclose(
        jnet.apply(SCE)(logits, LABELS.reshape(2, 3)), jnet.apply(SCE)(LOGITS, LABELS), rtol=1e-14
    )


def test_a_loss_is_not_callable_but_apply_of_it_jits():
    # jax.jit needs a weak reference to what it compiles, which a NamedTuple cannot give:
    # a Loss is data; jnet.apply(loss) is the function (compiled twice: no crash).
    with pytest.raises(TypeError):
        jax.jit(SCE)
    f = jax.jit(jnet.apply(SCE))
    np.testing.assert_allclose(f(LOGITS, LABELS), SCE.forward(LOGITS, LABELS)[0], rtol=1e-14)
    np.testing.assert_allclose(jax.jit(jnet.apply(SCE))(LOGITS, LABELS), f(LOGITS, LABELS))


def test_labels_outside_the_classes_make_the_loss_nan_not_zero():
    # Under jit nothing can raise: an all-zero one-hot row must not pass for a perfect fit.
    logits = jnp.zeros((2, 3))
    value = jax.jit(lambda z, t: jnet.softmax_cross_entropy.forward(z, t)[0])
    assert np.isnan(value(logits, jnp.array([0, 3]))) and np.isnan(
        value(logits, jnp.array([-1, 0]))
    )
    assert np.isclose(value(logits, jnp.array([0, 2])), np.log(3))
