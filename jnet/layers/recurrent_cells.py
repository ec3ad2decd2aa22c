"""The three recurrent cells' step maths: one forward step and its hand-written backward.

`recurrent.py` runs a cell over time (the scans, masks, the matmuls outside the scan);
a cell only says what one step computes. Everything here is time-major and per step:

  a  (N, gates*H): the input projection x_t w_x + b (computed for all steps at once
     before the scan, or per step inside it: `hoist_input_projection`);
  state: a tuple, (h,) for rnn and gru, (h, c) for lstm, each (N, H).

  step(params, a, state) -> (new_state, saved): saved is what `back` needs beyond the
    states (which the driver keeps anyway);
  back(params, saved, prev, new, dnew) -> (dprev_direct, da, du):
    dnew is the gradient reaching the new state; da (N, gates*H) the gradient of the
    pre-activation a; du that of the recurrent term u = h_{t-1} w_h (+ b_h), or None
    when it equals da; dprev_direct the gradient reaching the previous state by paths
    other than u (the driver adds du w_h^T to its h part).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Cell(NamedTuple):
    gates: int  # w_x is (D, gates * H)
    states: int  # 1: (h,), 2: (h, c)
    step: Callable
    back: Callable
    recurrent_bias: bool = False  # a separate b_h (GRU, reset after the product)


def hoist_input_projection() -> bool:
    """Whether the forward computes `x_t w_x + b` of all T steps as one matmul before its scan
    (True), or each step's `(N, D) x (D, gates*H)` product inside the scan body (False).

    Decided at trace time by the backend: False on a CPU, True elsewhere. On XLA:CPU the
    per-step product measured 0.71-0.82x the hoisted step's time for an LSTM(128) at D = 28,
    128 and 512 on a loaded machine, about the same on a quieter one (BENCHMARKS.md, LSTM):
    hoisting writes a `(T, N, gates*H)` array and reads it back a slice per step, memory
    traffic that costs more than the small matmuls save when the caches are contended.
    On a GPU one large matmul saves T small kernel launches. The backward is the same
    either way (its weight gradients are one matmul each over all steps).
    """
    return jax.default_backend() != "cpu"


def accumulate_in_scan(cell: Cell) -> bool:
    """Whether the backward's reverse scan also sums the weight gradients and computes each
    step's dx (True), or stacks the pre-activation gradients and does all T steps' `dw_x`,
    `dw_h`, the biases and `dx` as one matmul (or sum) each after it (False).

    Decided at trace time: True on a CPU for a cell whose recurrent gradient `du` differs
    from `da` (the GRU's, `recurrent_bias`), False otherwise. After the scan the GRU needs two
    stacked `(T, N, 3H)` arrays, da and du, written in the scan and read back; summing in the
    scan spares both, and measured 0.84-0.86x the other form's training step on a 2-core CPU
    (BENCHMARKS.md, GRU). The LSTM and the RNN stack one array (their du is da): the LSTM
    measured alike either way, the RNN 1.1-1.2x slower summing in the scan. Off the CPU the
    three extra small matmuls per step would be three more kernel launches (not measured).
    """
    return cell.recurrent_bias and jax.default_backend() == "cpu"


# Activations by name, each with its derivative written in terms of its output y.
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "tanh": (jnp.tanh, lambda y: 1 - y * y),
    "sigmoid": (jax.nn.sigmoid, lambda y: y * (1 - y)),
    "relu": (jax.nn.relu, lambda y: (y > 0).astype(y.dtype)),
}


def rnn_cell(activation: str) -> Cell:
    """h' = act(a + h w_h); `saved` is nothing: the derivative comes from h' itself."""
    act, dact = ACTIVATIONS[activation]

    def step(params, a, state):
        (h,) = state
        return (act(a + h @ params["w_h"]),), ()

    def back(params, saved, prev, new, dnew):
        da = dnew[0] * dact(new[0])
        return (None,), da, None

    return Cell(1, 1, step, back)


def lstm_cell() -> Cell:
    """Gates in the order input, forget, cell, output (PyTorch and Keras).

    z = a + h w_h = [z_i, z_f, z_g, z_o]; i, f, o = sigmoid(z_i, z_f, z_o), g = tanh(z_g);
    c' = f c + i g;  h' = o tanh(c').
    """

    def step(params, a, state):
        h, c = state
        z = a + h @ params["w_h"]
        hidden = h.shape[-1]
        i, f, o = (jax.nn.sigmoid(z[:, k * hidden : (k + 1) * hidden]) for k in (0, 1, 3))
        g = jnp.tanh(z[:, 2 * hidden : 3 * hidden])
        c_new = f * c + i * g
        return (o * jnp.tanh(c_new), c_new), (i, f, g, o)

    def back(params, acts, prev, new, dnew):
        (_, c_prev), (_, c_new), (dh, dc) = prev, new, dnew
        i, f, g, o = acts
        tc = jnp.tanh(c_new)
        dc = dc + dh * o * (1 - tc * tc)  # through h' = o tanh(c')
        dz = jnp.concatenate(
            [dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
             dh * tc * o * (1 - o)],
            axis=-1,
        )  # fmt: skip
        return (None, dc * f), dz, None

    return Cell(4, 2, step, back)


def gru_cell() -> Cell:
    """Reset applied after the matrix product (PyTorch, cuDNN; Keras reset_after=True).

    Gates in the order reset, update, new (PyTorch's r, z, n); with u = h w_h + b_h:
      r = sigmoid(a_r + u_r),  z = sigmoid(a_z + u_z),  n = tanh(a_n + r * u_n),
      h' = (1 - z) n + z h.
    Applying r after the product keeps one (N, H) x (H, 3H) matmul per step for all
    three gates; reset before it would need a second, dependent one for (r * h) w_hn.
    """

    def step(params, a, state):
        (h,) = state
        u = h @ params["w_h"] + params["b_h"]
        hidden = h.shape[-1]
        rz = jax.nn.sigmoid(a[:, : 2 * hidden] + u[:, : 2 * hidden])
        r, z = rz[:, :hidden], rz[:, hidden:]
        u_n = u[:, 2 * hidden :]
        n = jnp.tanh(a[:, 2 * hidden :] + r * u_n)
        return (n + z * (h - n),), (rz, n, u_n)

    def back(params, saved, prev, new, dnew):
        rz, n, u_n = saved
        r, z = jnp.split(rz, 2, axis=-1)
        ((h,), (dh,)) = prev, dnew
        dan = dh * (1 - z) * (1 - n * n)  # gradient of n's pre-activation a_n + r u_n
        dar = dan * u_n * r * (1 - r)
        daz = dh * (h - n) * z * (1 - z)
        da = jnp.concatenate([dar, daz, dan], axis=-1)
        du = jnp.concatenate([dar, daz, dan * r], axis=-1)
        return (dh * z,), da, du

    return Cell(3, 1, step, back, recurrent_bias=True)
