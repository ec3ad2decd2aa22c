"""A layer whose backward returns the wrong thing is named while tracing, not by XLA."""

import jax
import jax.numpy as jnp
import pytest

import jnet
from jnet import network
from jnet.layers import combinators


def scale_layer(bug: str | None = None) -> jnet.Layer:
    """y = x * a; `bug` plants a wrong backward output."""

    def init(key, shape):
        return shape, {"a": jnp.ones(shape[-1])}

    def forward(p, x, *, key=None):
        return x * p["a"], x

    def backward(p, x, dy):
        dparams, dx = {"a": (dy * x).sum(0)}, dy * p["a"]
        if bug == "structure":
            dparams = {"b": dparams["a"]}
        elif bug == "dx shape":
            dx = dx[:, :2]
        elif bug == "dx dtype":
            dx = dx.astype(jnp.float32)
        elif bug == "dparams shape":
            dparams = {"a": dparams["a"][:2]}
        elif bug == "not a pair":
            return dparams
        return dparams, dx

    return jnet.Layer(init, forward, backward, name=f"scale[{bug}]")


BUGS = {
    "structure": r"backward returned dparams of structure .*'b'.*expected the structure of params",
    "dx shape": r"backward returned dx of shape \(3, 2\).*expected shape \(3, 4\)",
    "dx dtype": r"backward returned dx of shape \(3, 4\) and dtype float32.*dtype float64",
    "dparams shape": r"backward returned dparams\['a'\] of shape \(2,\).*expected shape \(4,\)",
    "not a pair": r"backward must return a pair \(dparams, dx\)",
}
X, Y = jnp.ones((3, 5)), jnp.zeros(3, int)


def net_with(bug):
    net = jnet.serial(jnet.dense(4), scale_layer(bug), jnet.dense(2))
    return net, net.init(jax.random.key(0), (3, 5))[1]


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_value_and_grad_names_the_layer_and_the_mismatch(bug):
    net, params = net_with(bug)
    with pytest.raises(ValueError, match=rf"^1:scale\[{bug}\]: " + BUGS[bug]):
        jnet.value_and_grad(net, jnet.softmax_cross_entropy)(params, X, Y)


@pytest.mark.parametrize("bug", ["structure", "dx shape"])
def test_jax_grad_through_apply_names_it_too(bug):
    net, params = net_with(bug)
    with pytest.raises(ValueError, match=rf"^1:scale\[{bug}\]: " + BUGS[bug]):
        jax.jit(jax.grad(lambda p: jnet.apply(net)(p, X).sum()))(params)


def test_fit_blames_the_layer_not_the_data():
    net, _ = net_with("dx shape")
    with pytest.raises(ValueError, match=r"^fit: 1:scale\[dx shape\]: backward returned dx"):
        jnet.fit(net, jnet.softmax_cross_entropy, 0.1, X, Y, epochs=1, key=jax.random.key(0),
                 progress=False)  # fmt: skip


def test_a_layer_outside_serial_is_checked():
    layer = scale_layer("dx shape")
    _, params = layer.init(jax.random.key(0), (3, 4))
    with pytest.raises(ValueError, match=r"^scale\[dx shape\]: backward returned dx"):
        jax.grad(lambda p: jnet.apply(layer)(p, jnp.ones((3, 4))).sum())(params)


def test_a_correct_layer_passes_and_costs_nothing_at_run_time(monkeypatch):
    net, params = net_with(None)
    value_and_grad = jnet.value_and_grad(net, jnet.softmax_cross_entropy)
    loss, _ = jax.jit(value_and_grad)(params, X, Y)
    assert jnp.isfinite(loss)

    # The check runs while tracing only: the traced program is the same without it. (A new
    # function each time: JAX would reuse its trace of the same function object.)
    def program():
        fresh = jnet.value_and_grad(net, jnet.softmax_cross_entropy)
        return str(jax.make_jaxpr(fresh)(params, X, Y))

    calls = []
    real = combinators.check_backward
    monkeypatch.setattr(combinators, "check_backward", lambda *a: calls.append(real(*a)))
    checked = program()
    assert len(calls) == len(net.children)  # every layer's backward was checked
    monkeypatch.setattr(combinators, "check_backward", lambda *args: None)
    monkeypatch.setattr(network, "check_backward", lambda *args: None)
    assert "dot_general" in checked and program() == checked
