"""Gradient-check cases for the recurrent layers (rnn, lstm, gru): T = 1, 3 and 50, with
and without masks, both return modes, and a masked stack of all three in a `serial`.
Four cases a layer (each costs compiles in every registry test): T=1 all steps, T=3
masked last state, T=50 masked all steps, T=50 last state. More combinations (gaps in
the mask, relu, T=50 unmasked sequences) are in tests/layers/test_recurrent.py.

`check_gradients` takes one input array, so a masked case wraps its layer in `_masked`,
a test fixture that draws each sequence's length from the data itself (from its first
feature at step 0) and runs the layer on `(x, mask)`. A mask that is a function of x
stays right under `jax.vmap` (each example draws its own) and on more leading axes, and
its gradient is zero, as it is for the layer's mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jnet import layers as L
from jnet.gradcheck.case import Case
from jnet.gradcheck.case import labels as _labels
from jnet.gradcheck.case import regression as _regression
from jnet.layers import Layer, serial
from jnet.losses import mean_squared_error, softmax_cross_entropy


def _masked(layer: Layer, pair_out: bool) -> Layer:
    """Runs `layer` on `(x, mask)` with lengths ceil(T * sigmoid(2 x[..., 0, 0])), >= 1.

    `pair_out`: the layer returns `(y, mask)` (return_sequences=True); the mask is dropped.
    """

    def mask_of(x):
        t = x.shape[-2]
        lengths = jnp.ceil(t * jax.nn.sigmoid(2 * x[..., 0, 0]))
        return jnp.arange(t) < jnp.maximum(lengths, 1)[..., None]

    def init(key, input_shape):
        out, params = layer.init(key, (tuple(input_shape), tuple(input_shape[:-1])))
        return (out[0] if pair_out else out), params

    def forward(params, x, *, key=None):
        y, cache = layer.forward(params, (x, mask_of(x)), key=key)
        return (y[0] if pair_out else y), cache

    def backward(params, cache, dy):
        dparams, dx = layer.backward(params, cache, (dy, None) if pair_out else dy)
        return dparams, dx[0]

    return Layer(init, forward, backward, f"masked({layer.name})")


def _cases(kind: str, factory) -> dict[str, Case]:
    seq = lambda: factory(5)
    last = lambda: factory(5, return_sequences=False)
    return {
        f"{kind} T=1": Case(seq, mean_squared_error, (3, 1, 4), _regression),
        f"{kind} T=3 masked last": Case(
            lambda: serial(_masked(last(), False), L.dense(3)), softmax_cross_entropy,
            (3, 3, 4), _labels,
        ),
        f"{kind} T=50 masked": Case(
            lambda: _masked(seq(), True), mean_squared_error, (3, 50, 4), _regression
        ),
        f"{kind} T=50 last": Case(
            lambda: serial(last(), L.dense(3)), softmax_cross_entropy, (3, 50, 4), _labels
        ),
    }  # fmt: skip


CASES: dict[str, Case] = {
    **_cases("rnn", L.rnn),
    **_cases("lstm", L.lstm),
    **_cases("gru", L.gru),
    # A stack in a serial: the mask travels from lstm to gru to rnn with the sequences.
    "lstm-gru-rnn stack T=50 masked": Case(
        lambda: serial(
            _masked(serial(L.lstm(5), L.gru(4), L.rnn(3, return_sequences=False)), False),
            L.dense(3),
        ),
        softmax_cross_entropy,
        (3, 50, 4),
        _labels,
    ),
}
