"""Running a network: `apply` wires its backward into JAX, `value_and_grad` runs both passes.

A network is a `Layer` (usually a `serial`), and its backward is the chain of its layers'
hand-written backwards: JAX never differentiates the forward pass on these paths.
A stateful network (one holding e.g. batch norm) takes and returns its state here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jnet.layers.base import Layer, Params, State, forward_with_state, state_for
from jnet.layers.checks import check_backward
from jnet.losses import Loss, differentiable


def _check_backward(net: Layer, params: Params, x: Any, cache: Any, y: jax.Array) -> None:
    # A combinator has checked each child's backward, with its address; a plain layer
    # is checked here (abstractly, while tracing: no cost at run time).
    if not net.children:
        check_backward(net.name, net.backward, params, x, cache, y)


def apply(net: Layer | Loss) -> Callable[..., Any]:
    """Returns `f(params, x, *, key=None) -> y` whose VJP is `net.backward`.

    `jax.grad`, `jax.vjp`, `jit` and `vmap` of `f` use the hand-written backward
    (wired with `jax.custom_vjp`). Reverse mode only: `jax.jvp` of `f` raises.
    For a stateful net: `f(params, x, *, key=None, state) -> (y, new_state)`; the state
    gets no gradient. Given a `Loss`, returns `f(outputs, targets) -> value` wired the
    same way.
    """
    if isinstance(net, Loss):
        return differentiable(net)

    @jax.custom_vjp
    def f(params, x, key, state):
        y, _, state = forward_with_state(net, params, x, key=key, state=state)
        return y, state

    def f_fwd(params, x, key, state):
        y, cache, new_state = forward_with_state(net, params, x, key=key, state=state)
        _check_backward(net, params, x, cache, y)
        return (y, new_state), (params, cache, state)  # residuals for f_bwd

    def f_bwd(residuals, cotangents):
        params, cache, state = residuals
        dparams, dx = net.backward(params, cache, cotangents[0])
        # Neither the key nor the state gets a gradient.
        return dparams, dx, None, jax.tree.map(jnp.zeros_like, state)

    f.defvjp(f_fwd, f_bwd)

    def applied(params: Params, x: jax.Array, *, key: Any = None, state: State = None) -> Any:
        y, new_state = f(params, x, key, state_for(net, state, "apply"))
        return (y, new_state) if net.stateful else y

    return applied


def loss_and_grads(net: Layer, loss: Loss) -> Callable[..., tuple]:
    """Returns `f(params, x, y, *, key=None, state=()) -> (value, outputs, dparams, dx, state)`.

    One forward and one backward pass, hand-written only; `outputs` are the
    network's (for metrics), `dx` the gradient with respect to the input, `state` the
    network's new state (`()` for a stateless one).
    """

    def f(params, x, y, *, key=None, state=()):
        outputs, cache, state = forward_with_state(net, params, x, key=key, state=state)
        _check_backward(net, params, x, cache, outputs)
        value, loss_cache = loss.forward(outputs, y)
        dparams, dx = net.backward(params, cache, loss.backward(loss_cache))
        return value, outputs, dparams, dx, state

    return f


def value_and_grad(net: Layer, loss: Loss) -> Callable[..., tuple[Any, Params]]:
    """Returns `f(params, x, y, *, key=None) -> (loss_value, grads)`.

    Computed with the hand-written backward passes only (no autodiff). Under `jit`,
    XLA drops the unused gradient with respect to the input. For a stateful net:
    `f(params, x, y, *, key=None, state) -> ((loss_value, new_state), grads)`, the
    layout of `jax.value_and_grad(..., has_aux=True)`.
    """
    grads = loss_and_grads(net, loss)

    def f(params, x, y, *, key=None, state=None):
        value, _, dparams, _, new_state = grads(
            params, x, y, key=key, state=state_for(net, state, "value_and_grad")
        )
        return ((value, new_state) if net.stateful else value), dparams

    return f
