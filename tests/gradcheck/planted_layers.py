"""Layers and functions with planted gradient bugs, and their correct twins.

Also the user module of the CLI test: `python -m jnet.gradcheck planted_layers:good_net`.
"""

import jax
import jax.numpy as jnp

import jnet


def scale(dw=1.0, dx=1.0, name="scale"):
    """y = x * w (w per feature); dw or dx scaled by a planted factor."""

    def init(key, input_shape):
        return tuple(input_shape), {"w": 1.0 + 0.5 * jax.random.normal(key, input_shape[-1:])}

    def forward(params, x, *, key=None):
        return x * params["w"], x  # cache = x

    def backward(params, x, dy):
        gw = (x * dy).reshape(-1, x.shape[-1]).sum(0)
        return {"w": dw * gw}, dx * dy * params["w"]

    return jnet.Layer(init, forward, backward, name)


def affine(db=1.0, name="affine"):
    """y = x * w + b: two parameter leaves; db scaled by a planted factor."""

    def init(key, input_shape):
        kw, kb = jax.random.split(key)
        d = input_shape[-1:]
        return tuple(input_shape), {"w": jax.random.normal(kw, d), "b": jax.random.normal(kb, d)}

    def forward(params, x, *, key=None):
        return x * params["w"] + params["b"], x

    def backward(params, x, dy):
        dy2 = dy.reshape(-1, dy.shape[-1])
        gw = (x.reshape(dy2.shape) * dy2).sum(0)
        return {"w": gw, "b": db * dy2.sum(0)}, dy * params["w"]

    return jnet.Layer(init, forward, backward, name)


def cube(second_order_bug=False, name="cube"):
    """y = x ** 3. The bug: backward treats the saved x as a constant (stop_gradient), so
    the first derivative is right and the second is lost."""

    def init(key, input_shape):
        return tuple(input_shape), ()

    def forward(params, x, *, key=None):
        return x**3, x

    def backward(params, x, dy):
        saved = jax.lax.stop_gradient(x) if second_order_bug else x
        return (), 3 * saved**2 * dy

    return jnet.Layer(init, forward, backward, name)


def batch_only_dense(n=3, name="batch_only_dense"):
    """A dense layer whose backward assumes a batch axis (`x.T @ dy`): right on batches,
    wrong on the per-example shapes jax.vmap shows it."""
    good = jnet.dense(n)

    def backward(params, x, dy):
        return {"w": x.T @ dy, "b": dy.sum(0)}, dy @ params["w"].T

    return good._replace(backward=backward, name=name)


def centering(bug=1.0, name="centering"):
    """A stateful layer: y = x - mean over the batch in training (running mean updated),
    y = x - running mean in inference. `bug` scales the mean's share of dx."""

    def init(key, input_shape):
        return tuple(input_shape), (), {"mean": jnp.zeros(input_shape[-1:])}

    def forward(params, x, *, key=None, state):
        if key is None:
            return x - state["mean"], None, state
        mean = x.mean(0)
        return x - mean, x.shape[0], {"mean": 0.9 * state["mean"] + 0.1 * mean}

    def backward(params, n, dy):
        if n is None:
            return (), dy
        return (), dy - bug * dy.mean(0)

    return jnet.Layer(init, forward, backward, name, stateful=True)


def two_outputs(out1_scale=1.0):
    """A custom_vjp f(x, w) -> (sin(x) * w, sum(x**2)); the second output's rule is scaled."""

    @jax.custom_vjp
    def f(x, w):
        return jnp.sin(x) * w, jnp.sum(x**2)

    def fwd(x, w):
        return f(x, w), (x, w)

    def bwd(res, g):
        (x, w), (g0, g1) = res, g
        return g0 * w * jnp.cos(x) + out1_scale * 2 * x * g1, g0 * jnp.sin(x)

    f.defvjp(fwd, bwd)
    return f


def two_outputs_reference(x, w):
    return jnp.sin(x) * w, jnp.sum(x**2)


# CLI factories (called with no arguments).
def good_net():
    return jnet.serial(jnet.dense(8), jnet.tanh(), scale(), jnet.dense(4))


def bad_net():
    return jnet.serial(jnet.dense(8), jnet.tanh(), scale(dw=1.5), jnet.dense(4))


def none_dx(name="none_dx"):
    """y = x * w, whose backward returns dx=None (the contract's zero gradient): wrong, as
    y depends on x."""
    layer = scale(name=name)

    def backward(params, x, dy):
        return {"w": (x * dy).reshape(-1, x.shape[-1]).sum(0)}, None

    return layer._replace(backward=backward)


def bias_only(name="bias_only"):
    """y = b, broadcast over x's shape: dx=None is right, x does not matter."""

    def init(key, input_shape):
        return tuple(input_shape), {"b": jax.random.normal(key, input_shape[-1:])}

    def forward(params, x, *, key=None):
        return jnp.broadcast_to(params["b"], x.shape), None

    def backward(params, cache, dy):
        return {"b": dy.reshape(-1, dy.shape[-1]).sum(0)}, None

    return jnet.Layer(init, forward, backward, name)


def lookup(add=True, name="lookup"):
    """A user's own embedding, integer ids -> rows of w (50, 4), which does not declare its
    vocab_size (the CLI needs --input-dtype and --input-range). The bug (`add=False`): the
    backward writes each token's gradient instead of adding it, so a repeated token keeps
    only one of its gradients."""

    def init(key, input_shape):
        return tuple(input_shape) + (4,), {"w": jax.random.normal(key, (50, 4))}

    def forward(params, x, *, key=None):
        return params["w"][x], x

    def backward(params, x, dy):
        rows, at = dy.reshape(-1, 4), jnp.zeros((50, 4), dy.dtype).at[x.reshape(-1)]
        return {"w": at.add(rows) if add else at.set(rows)}, None

    return jnet.Layer(init, forward, backward, name)


def root(name="root"):
    """y = sqrt(x): NaN for negative inputs, which the next layer then receives."""

    def init(key, input_shape):
        return tuple(input_shape), ()

    def forward(params, x, *, key=None):
        y = jnp.sqrt(x)
        return y, y

    def backward(params, y, dy):
        return (), dy / (2 * y)

    return jnet.Layer(init, forward, backward, name)


def lookup_net():
    return jnet.serial(lookup(), jnet.dense(3))


def bad_lookup_net():
    return jnet.serial(lookup(add=False), jnet.dense(3))


def embedding_net():
    return jnet.serial(jnet.embedding(50, 4), jnet.layer_norm(), jnet.dense(3))
