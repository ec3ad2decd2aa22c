"""Recurrent layers: rnn, lstm, gru, with backpropagation through time written by hand.

Inputs are batch-major, `x (N, T, D)` (any further leading axes count as batch); the
initial state is zeros. `return_sequences=True` gives every step's state `(N, T, H)`,
False only the last one, `(N, H)`. The cells' step maths live in `recurrent_cells`.

How it runs (the same for all three; docs/recurrent_backward.md has the derivation):
  forward: a `lax.scan` over time (time-major) does `h_{t-1} w_h` and the gates; the input
    projection `x_t w_x + b` runs inside it on a CPU, and as ONE matmul over all T steps
    before it elsewhere (`recurrent_cells.hoist_input_projection`).
  backward: a reverse `lax.scan` carries dh (and dc for lstm) back through time and
    stacks the pre-activation gradients; after it, `dw_x`, `dw_h`, `db` and `dx` are
    ONE matmul (or sum) each over all steps, so the scan body holds one matmul. The GRU on
    a CPU sums them inside the scan instead (`recurrent_cells.accumulate_in_scan`).
Program size does not grow with T.

Variable-length batches: pass the pair `(x, mask)`, mask `(N, T)` bool (or 0/1 numbers),
True at real steps. A padded step leaves the state unchanged and gets no gradient (its dx
is 0); with `return_sequences=True` its output is zeros and the layer returns the pair
`(y, mask)`, so the next recurrent layer in a `serial` sees the same mask; the last state
(`return_sequences=False`) is the state after each sequence's last real step. The mask's
gradient is `None` (backward returns `(dx, None)`, mirroring the input). The mask may have
gaps, not only padding at the end. `masking(pad_value)` makes the pair from padded arrays.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jnet.layers.base import Layer
from jnet.layers.checks import (
    check_features,
    check_float,
    param_dict,
    positive_int,
    real_number,
    split_pair,
)
from jnet.layers.recurrent_cells import (
    ACTIVATIONS,
    Cell,
    accumulate_in_scan,
    gru_cell,
    hoist_input_projection,
    lstm_cell,
    rnn_cell,
)


def rnn(hidden: int, *, activation: str = "tanh", return_sequences: bool = True) -> Layer:
    """Plain (Elman) recurrent layer, h_t = act(x_t w_x + h_{t-1} w_h + b).

    Args:
      hidden: H, the state size.
      activation: "tanh" (default), "relu" or "sigmoid".
      return_sequences: True: all states `(N, T, H)`; False: the last, `(N, H)`.

    Params: `{"w_x": (D, H), "w_h": (H, H), "b": (H,)}`; init: w_x Glorot normal, w_h
    orthogonal, b zeros.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"rnn: activation must be one of {', '.join(map(repr, ACTIVATIONS))}; "
            f"got {activation!r}"
        )
    extra = "" if activation == "tanh" else f", activation={activation!r}"
    return _recurrent("rnn", hidden, rnn_cell(activation), return_sequences, extra)


def lstm(hidden: int, *, return_sequences: bool = True) -> Layer:
    """Long short-term memory layer; gates in the order input, forget, cell, output.

    i, f, o = sigmoid(.), g = tanh(.) of `x_t w_x + h_{t-1} w_h + b` split in four;
    c_t = f c_{t-1} + i g, h_t = o tanh(c_t).

    Params: `{"w_x": (D, 4H), "w_h": (H, 4H), "b": (4H,)}`, the column blocks [i, f, g, o]
    as in PyTorch and Keras (from `torch.nn.LSTM`: w_x = weight_ih_l0.T, w_h =
    weight_hh_l0.T, b = bias_ih_l0 + bias_hh_l0). Init: w_x Glorot normal per gate
    block, w_h orthogonal per gate block, b zeros except the forget gate's, 1 (so
    the cell remembers by default, Jozefowicz et al. 2015).
    """
    return _recurrent("lstm", hidden, lstm_cell(), return_sequences, "", forget_bias=1.0)


def gru(hidden: int, *, return_sequences: bool = True) -> Layer:
    """Gated recurrent unit with the reset gate applied after the matrix product.

    That is PyTorch's and cuDNN's formulation (Keras `reset_after=True`), not the
    original paper's (Keras `reset_after=False`):
      r = sigmoid(x w_xr + b_r + h w_hr + b_hr),  z = sigmoid(x w_xz + b_z + h w_hz + b_hz),
      n = tanh(x w_xn + b_n + r * (h w_hn + b_hn)),  h_t = (1 - z) n + z h_{t-1}.

    Params: `{"w_x": (D, 3H), "w_h": (H, 3H), "b": (3H,), "b_h": (3H,)}`, column blocks
    [r, z, n] as in PyTorch; `b` is the input-side bias and `b_h` the recurrent one
    (from `torch.nn.GRU`: w_x = weight_ih_l0.T, w_h = weight_hh_l0.T, b = bias_ih_l0,
    b_h = bias_hh_l0). Init: w_x Glorot normal per gate block, w_h orthogonal per
    gate block, biases zeros.
    """
    return _recurrent("gru", hidden, gru_cell(), return_sequences, "")


def masking(pad_value: float = 0.0) -> Layer:
    """Turns a padded `x (N, T, D)` into the pair `(x, mask)` that recurrent layers take.

    A step is padding when ALL its D features equal `pad_value` (as Keras' `Masking`),
    so a real step that happens to be all `pad_value` is masked too: pick a value the
    data never takes. `pad_value=float("nan")` masks NaN padding (steps whose features are
    all NaN, as pandas pads), found with `jnp.isnan` since NaN != NaN. Put it first in a
    `serial` to train on padded arrays with `fit`, whose data must be one array:
    `serial(masking(), lstm(64), lstm(64, return_sequences=False), dense(10))`.
    `pad_value` may be a Python or numpy number.
    """
    value = real_number("masking", "pad_value", pad_value, lambda v: True, "")
    nan = math.isnan(value)
    name = "masking()" if value == 0.0 else f"masking({pad_value})"

    def init(key, input_shape):
        shape = tuple(input_shape)
        if len(shape) < 3:
            raise ValueError(f"{name}: input shape {shape}; expected 3 axes (N, T, D)")
        return (shape, shape[:-1]), ()

    def forward(params, x, *, key=None):
        check_float(name, x)
        if x.ndim < 3:
            raise ValueError(f"{name}: input has shape {x.shape}; expected 3 axes (N, T, D)")
        real = ~jnp.isnan(x) if nan else x != value  # NaN padding: NaN != NaN
        return (x, jnp.any(real, axis=-1)), None

    def backward(params, cache, dy):
        return (), dy[0]  # the mask gets no gradient

    return Layer(init, forward, backward, name)


def _recurrent(
    kind: str, hidden: int, cell: Cell, return_sequences: bool, extra: str, forget_bias=None
) -> Layer:
    positive_int(kind, "hidden", hidden)
    if not isinstance(return_sequences, bool):
        raise ValueError(
            f"{kind}: return_sequences must be True or False; got {return_sequences!r}"
        )
    name = f"{kind}({hidden}{extra}" + ("" if return_sequences else ", return_sequences=False")
    name += ")"
    width = cell.gates * hidden
    keys = {"w_x", "w_h", "b"} | ({"b_h"} if cell.recurrent_bias else set())

    def init(key, input_shape):
        pair = bool(input_shape) and isinstance(input_shape[0], tuple | list)
        x_shape = tuple(input_shape[0] if pair else input_shape)
        if len(x_shape) < 3:
            raise ValueError(f"{name}: input shape {x_shape}; expected 3 axes (N, T, D)")
        d = x_shape[-1]
        dtype = jnp.result_type(float)
        kx, kh = jax.random.split(key)
        # Glorot normal per gate block: each block is a (D, H) map.
        w_x = jax.random.normal(kx, (d, width), dtype) * (2.0 / (d + hidden)) ** 0.5
        ortho = jax.nn.initializers.orthogonal()
        w_h = jnp.concatenate(
            [ortho(k, (hidden, hidden), dtype) for k in jax.random.split(kh, cell.gates)], 1
        )
        b = jnp.zeros(width, dtype)
        if forget_bias is not None:
            b = b.at[hidden : 2 * hidden].set(forget_bias)
        params = {"w_x": w_x, "w_h": w_h, "b": b}
        if cell.recurrent_bias:
            params["b_h"] = jnp.zeros(width, dtype)
        if not return_sequences:
            return x_shape[:-2] + (hidden,), params
        out = x_shape[:-1] + (hidden,)
        return ((out, tuple(input_shape[1])) if pair else out), params

    def check(params, x):
        x, mask, pair = split_pair(name, x)
        check_float(name, x)
        if x.ndim < 3:
            raise ValueError(
                f"{name}: input has shape {x.shape}; expected 3 axes (N, T, D): batch, "
                "time steps, features"
            )
        if x.shape[-2] < 1:
            raise ValueError(f"{name}: input has shape {x.shape}; needs at least one time step")
        p = param_dict(name, params, keys)
        d = p["w_x"].shape[0]
        shapes = {"w_x": (d, width), "w_h": (hidden, width), "b": (width,), "b_h": (width,)}
        if any(p[k].shape != shapes[k] for k in keys):
            got = ", ".join(f"{k} {p[k].shape}" for k in sorted(keys))
            raise ValueError(f"{name}: params hold {got}; they are another layer's")
        check_features(name, x, d)
        if pair:
            if not hasattr(mask, "dtype"):
                raise ValueError(f"{name}: mask must be an array; got {type(mask).__name__}")
            if mask.shape != x.shape[:-1]:
                raise ValueError(
                    f"{name}: mask has shape {mask.shape}; expected {x.shape[:-1]}, "
                    f"(N, T) of the input {x.shape}"
                )
            mask = mask if mask.dtype == jnp.bool_ else mask != 0
        return p, x, mask

    def forward(params, x, *, key=None):
        given = x
        params, x, mask = check(params, x)
        t, d = x.shape[-2:]
        lead = x.shape[:-2]
        xs = jnp.swapaxes(x.reshape(-1, t, d), 0, 1)  # time-major (T, B, D)
        hoist = hoist_input_projection()  # all T input projections as one matmul, or per step
        a = xs @ params["w_x"] + params["b"] if hoist else xs
        m = None if mask is None else jnp.swapaxes(mask.reshape(-1, t), 0, 1)[..., None]
        zero = jnp.zeros((xs.shape[1], hidden), jnp.result_type(xs, params["w_x"], params["b"]))

        def step(state, inputs):
            a_t, m_t = inputs
            a_t = a_t if hoist else a_t @ params["w_x"] + params["b"]
            new, saved = cell.step(params, a_t, state)
            if m_t is not None:  # padded: keep the state
                new = tuple(jnp.where(m_t, n, s) for n, s in zip(new, state, strict=True))
            return new, (new, saved)

        last, (states, saved) = jax.lax.scan(step, (zero,) * cell.states, (a, m))
        cache = (xs, states, saved, m)
        if not return_sequences:
            return last[0].reshape(lead + (hidden,)), cache
        ys = states[0] if m is None else jnp.where(m, states[0], 0)
        y = jnp.swapaxes(ys, 0, 1).reshape(lead + (t, hidden))
        return ((y, given[1]) if m is not None else y), cache

    def backward(params, cache, dy):
        xs, states, saved, m = cache
        t, b, d = xs.shape
        if return_sequences and m is not None:
            dy = dy[0]  # the mask's cotangent is not used
        lead = dy.shape[:-2] if return_sequences else dy.shape[:-1]
        prev = tuple(jnp.concatenate([jnp.zeros_like(s[:1]), s[:-1]]) for s in states)
        dtype = jnp.result_type(states[0], dy)  # one carry dtype, e.g. float32 x, float64 dy
        zero = jnp.zeros((b, hidden), dtype)
        if return_sequences:
            dys, d_last = jnp.swapaxes(dy.reshape(b, t, hidden), 0, 1).astype(dtype), zero
        else:
            dys, d_last = None, dy.reshape(b, hidden).astype(dtype)
        in_scan = accumulate_in_scan(cell)
        w_h_t = params["w_h"].T
        w_x_t = params["w_x"].T if in_scan else None  # each step's dx, summing in the scan

        def weight_grads(x, h_prev, da, du):
            """dw_x, dw_h and the biases from rows of x, h_{t-1}, da and du (du None: da):
            one step's rows inside the scan, or all T steps' stacked after it."""
            du = da if du is None else du
            grads = {"w_x": x.T @ da, "w_h": h_prev.T @ du, "b": da.sum(0)}
            if cell.recurrent_bias:
                grads["b_h"] = du.sum(0)
            return grads

        def step(carry, inputs):
            dstate, acc = carry
            saved_t, prev_t, new_t, dy_t, m_t, x_t = inputs
            dh = dstate[0] if dy_t is None else dstate[0] + dy_t
            direct, da, du = cell.back(params, saved_t, prev_t, new_t, (dh, *dstate[1:]))
            dh_prev = (da if du is None else du) @ w_h_t  # the state's matmul
            if direct[0] is not None:
                dh_prev = dh_prev + direct[0]
            dprev = (dh_prev, *direct[1:])
            if m_t is not None:  # padded: the state passed through untouched
                dprev = tuple(jnp.where(m_t, g, s) for g, s in zip(dprev, dstate, strict=True))
                da = jnp.where(m_t, da, 0)
                du = None if du is None else jnp.where(m_t, du, 0)
            if not in_scan:
                return (dprev, acc), (da, du)
            acc = jax.tree.map(jnp.add, acc, weight_grads(x_t, prev_t[0], da, du))
            return (dprev, acc), da @ w_x_t

        d0 = (d_last,) + (zero,) * (cell.states - 1)
        acc0 = {k: jnp.zeros(params[k].shape, dtype) for k in keys} if in_scan else None
        inputs = (saved, prev, states, dys, m, xs if in_scan else None)
        (_, grads), out = jax.lax.scan(step, (d0, acc0), inputs, reverse=True)
        if in_scan:
            dx = jnp.swapaxes(out, 0, 1)
        else:  # the weight gradients of all T steps at once: one matmul each
            da, du = out
            da2 = da.reshape(-1, width)
            du2 = None if du is None else du.reshape(-1, width)
            grads = weight_grads(xs.reshape(-1, d), prev[0].reshape(-1, hidden), da2, du2)
            dx = jnp.einsum("tbk,dk->btd", da, params["w_x"])
        grads = {k: g.astype(params[k].dtype) for k, g in grads.items()}
        dx = dx.reshape(lead + (t, d)).astype(xs.dtype)
        return grads, ((dx, None) if m is not None else dx)

    return Layer(init, forward, backward, name)
