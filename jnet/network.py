"""Networks: `serial` composes layers into a layer; `apply` and `value_and_grad` run it.

A network is a `Layer`, so it nests, and its backward is the chain of its layers'
hand-written backwards: JAX never differentiates the forward pass on these paths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

from jnet.layers import Layer, Params, dense, dropout, relu
from jnet.losses import Loss, differentiable


def _split(key, n):
    return [None] * n if key is None else list(jax.random.split(key, n))


def serial(*layers: Layer) -> Layer:
    """Chains layers: `serial(dense(512), relu(), dense(10))`. `serial()` is the identity.

    Params and caches are tuples with one entry per layer; one key is split among them.
    A ValueError raised by a layer is prefixed with its position, e.g. `serial[2]: ...`.
    """
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            hint = " (call the factory: dense(10), relu())" if callable(layer) else ""
            raise TypeError(
                f"serial: argument {i} must be a jnet.Layer; got {type(layer).__name__}"
                f" {getattr(layer, '__name__', '')}".rstrip()
                + hint
            )

    def init(key, input_shape):
        params = []
        shape = tuple(input_shape)
        for i, (layer, k) in enumerate(
            zip(layers, jax.random.split(key, max(len(layers), 1))[: len(layers)], strict=True)
        ):
            shape, p = _at(i, layer.init, k, shape)
            params.append(p)
        return shape, tuple(params)

    def forward(params, x, *, key=None):
        if len(params) != len(layers):
            raise ValueError(
                f"serial: got params for {len(params)} layers but the network has {len(layers)}"
            )
        caches = []
        for i, (layer, p, k) in enumerate(
            zip(layers, params, _split(key, len(layers)), strict=True)
        ):
            x, cache = _at(i, layer.forward, p, x, key=k)
            caches.append(cache)
        return x, tuple(caches)

    def backward(params, caches, dy):
        grads = [None] * len(layers)
        for i in reversed(range(len(layers))):
            grads[i], dy = layers[i].backward(params[i], caches[i], dy)
        return tuple(grads), dy

    return Layer(init, forward, backward)


def mlp(
    sizes: Sequence[int],
    activation: Callable[[], Layer] = relu,
    *,
    dropout_rate: float = 0.0,
    **dense_kwargs: Any,
) -> Layer:
    """`dense, activation, [dropout], ..., dense`: a multilayer perceptron.

    Args:
      sizes: the widths of the dense layers; the last is the output (logits).
      activation: factory of the hidden activation, e.g. `jnet.tanh`.
      dropout_rate: if > 0, a `dropout` after every hidden activation.
      **dense_kwargs: passed to every `dense` (`w_init`, `b_init`, `compute_dtype`).

    Example: `mlp([512, 10], w_init=jnet.init.normal(0.01), b_init=jnet.init.normal(0.01))`
    is tutorial 000's 784-512-10.
    """
    if isinstance(sizes, int) or not len(sizes):
        raise ValueError(f"mlp: sizes is a list of layer widths, e.g. [512, 10]; got {sizes!r}")
    layers = []
    for n in sizes[:-1]:
        layers += [dense(n, **dense_kwargs), activation()]
        if dropout_rate:
            layers.append(dropout(dropout_rate))
    return serial(*layers, dense(sizes[-1], **dense_kwargs))


def _at(i, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        raise ValueError(f"serial[{i}]: {e}") from None


def apply(net: Layer | Loss) -> Callable[..., jax.Array]:
    """Returns `f(params, x, *, key=None) -> y` whose VJP is `net.backward`.

    `jax.grad`, `jax.vjp`, `jit` and `vmap` of `f` use the hand-written backward
    (wired with `jax.custom_vjp`). Reverse mode only: `jax.jvp` of `f` raises.
    Given a `Loss`, returns `f(outputs, targets) -> value` wired the same way.
    """
    if isinstance(net, Loss):
        return differentiable(net)

    @jax.custom_vjp
    def f(params, x, key):
        return net.forward(params, x, key=key)[0]

    def f_fwd(params, x, key):
        y, cache = net.forward(params, x, key=key)
        return y, (params, cache)  # residuals for f_bwd

    def f_bwd(residuals, dy):
        params, cache = residuals
        dparams, dx = net.backward(params, cache, dy)
        return dparams, dx, None  # the key gets no cotangent

    f.defvjp(f_fwd, f_bwd)

    def applied(params: Params, x: jax.Array, *, key: Any = None) -> jax.Array:
        return f(params, x, key)

    return applied


def loss_and_grads(net: Layer, loss: Loss) -> Callable[..., tuple]:
    """Returns `f(params, x, y, *, key=None) -> (loss_value, outputs, dparams, dx)`.

    One forward and one backward pass, hand-written only; `outputs` are the
    network's (for metrics), `dx` the gradient with respect to the input.
    """

    def f(params, x, y, *, key=None):
        outputs, cache = net.forward(params, x, key=key)
        value, loss_cache = loss.forward(outputs, y)
        dparams, dx = net.backward(params, cache, loss.backward(loss_cache))
        return value, outputs, dparams, dx

    return f


def value_and_grad(net: Layer, loss: Loss) -> Callable[..., tuple[jax.Array, Params]]:
    """Returns `f(params, x, y, *, key=None) -> (loss_value, grads)`.

    Computed with the hand-written backward passes only (no autodiff). Under `jit`,
    XLA drops the unused gradient with respect to the input.
    """
    grads = loss_and_grads(net, loss)

    def f(params, x, y, *, key=None):
        value, _, dparams, _ = grads(params, x, y, key=key)
        return value, dparams

    return f
