"""Pooling over NHWC images: max, average and global average, each with a hand-written backward.

Both windowed pools reduce the kh * kw shifted slices of the (padded) input elementwise
(`windows.window_slices`); when the windows tile the input exactly (window == strides, no
padding, divisible sizes) the slices are views of one reshape instead. Backward scatters
each tap's share back (`windows.scatter_slices`), or reshapes it back in the tiled case.

Max pooling sends each window's gradient to exactly one maximum: the first in row-major
window order, the element `jax.grad` of `lax.reduce_window` max picks (XLA's
select-and-scatter with `>=`). After a relu, windows full of zeros are the common case, so
the rule matters: all taps of an all-zero window are maxima, only the top-left one gets dy.
A NaN anywhere in a window makes its maximum NaN (as `lax.reduce_window` max), wherever it
lies, and the window's gradient goes to its first NaN.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jnet.layers import windows
from jnet.layers.base import Layer
from jnet.layers.checks import check_float, int_pair


def _options(kind, window, strides, padding):
    opts = [repr(window)]
    if strides is not None:
        opts.append(f"strides={strides!r}")
    if padding != "VALID":
        opts.append(f"padding={padding!r}")
    return f"{kind}({', '.join(opts)})"


def _pool(kind: str, window: Any, strides: Any, padding: Any) -> Layer:
    name = _options(kind, window, strides, padding)
    win = int_pair(name, "window", window)
    stride = win if strides is None else int_pair(name, "strides", strides)
    pad_spec = windows.padding_spec(name, padding)
    ones = (1, 1)

    def geometry(shape):
        windows.check_images(name, shape)
        pads, out_hw = windows.resolve(name, pad_spec, shape[-3:-1], win, stride)
        tiled = (
            win == stride
            and pads == ((0, 0), (0, 0))
            and all(n == o * k for n, o, k in zip(shape[-3:-1], out_hw, win, strict=True))
        )
        return pads, out_hw, tiled

    def taps(x):  # the kh * kw slices of each (N, H, W, C) window, row-major
        pads, out_hw, tiled = geometry(x.shape)
        if tiled:  # a reshape: (N, Ho, kh, Wo, kw, C)
            n, _, _, c = x.shape
            t = x.reshape(n, out_hw[0], win[0], out_hw[1], win[1], c)
            return [t[:, :, i, :, j, :] for i in range(win[0]) for j in range(win[1])], tiled
        fill = -jnp.inf if kind == "max_pool" else 0.0  # padding never wins a max
        xp = windows.pad(x, pads, fill)
        return windows.window_slices(xp, win, stride, ones, out_hw), tiled

    def untaps(parts, x_shape, tiled):  # transpose of taps: input-sized sum of the parts
        pads, out_hw, _ = geometry(x_shape)
        if tiled:
            n, _, _, c = x_shape
            t = jnp.stack(parts, axis=0).reshape(win[0], win[1], n, out_hw[0], out_hw[1], c)
            return t.transpose(2, 3, 0, 4, 1, 5).reshape(x_shape)
        return windows.scatter_slices(parts, x_shape[1:3], pads, win, stride, ones)

    def init(key, input_shape):
        _, out_hw, _ = geometry(tuple(input_shape))
        return (*input_shape[:-3], *out_hw, input_shape[-1]), ()

    def check(x):
        check_float(name, x)
        windows.check_images(name, x.shape)

    def unfold(y4, x):  # (N', Ho, Wo, C) back to x's leading axes
        return y4.reshape(x.shape[:-3] + y4.shape[1:])

    if kind == "max_pool":

        def forward(params, x, *, key=None):
            check(x)
            parts, _ = taps(windows.fold(x))
            y = parts[0]
            for p in parts[1:]:
                # A select, not jnp.maximum: autodiff of this forward then also gives a tied
                # window's gradient to its first maximum (maximum would split it), so
                # checking backward against jax.vjp of forward compares like with like.
                # y stays when it is >= p or NaN: a NaN p wins (y >= NaN is False) and then
                # stays, as in lax.reduce_window max (a bare p > y would drop it).
                y = jnp.where((y >= p) | jnp.isnan(y), y, p)
            return unfold(y, x), (x, y)

        def backward(params, cache, dy):
            x_in, y = cache
            x, dy = windows.fold(x_in), windows.fold(dy)
            parts, tiled = taps(x)
            taken = jnp.zeros(y.shape, bool)
            grads = []
            for p in parts:  # the first maximum in window order takes dy, the rest 0
                pick = ((p == y) | (jnp.isnan(p) & jnp.isnan(y))) & ~taken  # or first NaN
                taken = taken | pick
                grads.append(jnp.where(pick, dy, 0))
            return (), untaps(grads, x.shape, tiled).reshape(x_in.shape)

    else:
        size = win[0] * win[1]

        def forward(params, x, *, key=None):
            check(x)
            parts, _ = taps(windows.fold(x))
            y = sum(parts[1:], parts[0]) / size  # padded zeros count (as flax's default)
            return unfold(y, x), x

        def backward(params, x_in, dy):
            x, dy = windows.fold(x_in), windows.fold(dy)
            _, _, tiled = geometry(x.shape)
            share = dy / size
            return (), untaps([share] * size, x.shape, tiled).reshape(x_in.shape)

    return Layer(init, forward, backward, name)


def max_pool(
    window: int | tuple[int, int], *, strides: int | tuple[int, int] | None = None,
    padding: Any = "VALID",
) -> Layer:  # fmt: skip
    """Max over `window` patches of NHWC images.

    Args:
      window: `k` or `(kh, kw)`.
      strides: an int or a pair; default the window (non-overlapping).
      padding: "VALID" (default), "SAME", an int or `((top, bottom), (left, right))`;
        padded pixels are -inf, so they never win.

    Shapes: `(N, H, W, C)` -> `(N, Ho, Wo, C)` (more leading axes are batch axes); no
    params. Backward: each window's gradient goes to its first maximum in row-major order
    (as `jax.grad` of `lax.reduce_window` max), also when the window holds ties. A window
    holding a NaN gives NaN (as `lax.reduce_window` max); its gradient goes to its first NaN.
    """
    return _pool("max_pool", window, strides, padding)


def avg_pool(
    window: int | tuple[int, int], *, strides: int | tuple[int, int] | None = None,
    padding: Any = "VALID",
) -> Layer:  # fmt: skip
    """Mean over `window` patches of NHWC images (padded zeros count, as flax's default).

    Arguments and shapes as `max_pool`; backward spreads `dy / (kh * kw)` over each window.
    """
    return _pool("avg_pool", window, strides, padding)


def global_avg_pool() -> Layer:
    """Mean over the spatial axes: `(N, H, W, C)` -> `(N, C)`; no params."""
    name = "global_avg_pool()"

    def init(key, input_shape):
        windows.check_images(name, input_shape)
        return (*input_shape[:-3], input_shape[-1]), ()

    def forward(params, x, *, key=None):
        check_float(name, x)
        windows.check_images(name, x.shape)
        return x.mean((-3, -2)), x  # cache = x, for its shape

    def backward(params, x, dy):
        h, w = x.shape[-3:-1]
        return (), jnp.broadcast_to((dy / (h * w))[..., None, None, :], x.shape)

    return Layer(init, forward, backward, name)
