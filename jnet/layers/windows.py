"""Sliding windows over NHWC images, shared by convolution and pooling.

- Padding specs: "SAME", "VALID", an int, or `((top, bottom), (left, right))`, resolved to
  explicit pairs with the XLA/TensorFlow SAME rule (an odd total puts the extra row or
  column at the end).
- `window_slices`: the kh * kw shifted, strided slices of a padded input, one per kernel
  tap, in row-major tap order. A convolution concatenates them (im2col), a pooling layer
  reduces them elementwise.
- `scatter_slices`: the transpose of `window_slices`: each tap's gradient is placed back
  where its slice came from (`lax.pad` with interior padding for the stride, negative
  padding to crop the forward's zero padding) and the taps are summed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from jax import lax

Pads = tuple[tuple[int, int], tuple[int, int]]


def check_images(name: str, shape: Sequence[int]) -> None:
    """Raises unless `shape` is `(N, H, W, C)`; more leading axes are batch axes too."""
    if len(shape) < 4:
        raise ValueError(
            f"{name}: input has shape {tuple(shape)}; expected 4 axes (N, H, W, C) "
            "(more leading axes count as batch axes)"
        )


def fold(x: jax.Array) -> jax.Array:
    """`(..., H, W, C)` as `(N, H, W, C)`: extra leading axes merged into the batch."""
    return x if x.ndim == 4 else x.reshape((-1,) + x.shape[-3:])


def padding_spec(name: str, padding: Any) -> str | Pads:
    """Checks a padding argument at construction: "SAME", "VALID" or explicit pairs."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(
                f"{name}: unknown padding {padding!r}; use 'SAME', 'VALID', an int, or "
                "((top, bottom), (left, right))"
            )
        return padding.upper()
    if isinstance(padding, int) and not isinstance(padding, bool):
        padding = ((padding, padding), (padding, padding))
    ok = (
        isinstance(padding, tuple | list)
        and len(padding) == 2
        and all(
            isinstance(p, tuple | list)
            and len(p) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in p)
            for p in padding
        )
    )
    if not ok:
        raise ValueError(
            f"{name}: padding must be 'SAME', 'VALID', an int >= 0 or "
            f"((top, bottom), (left, right)) of ints >= 0; got {padding!r}"
        )
    return (tuple(padding[0]), tuple(padding[1]))


def dilated(size: int, dilation: int) -> int:
    """The extent of `size` taps spaced `dilation` apart."""
    return 1 + dilation * (size - 1)


def resolve(
    name: str,
    padding: str | Pads,
    in_hw: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int] = (1, 1),
) -> tuple[Pads, tuple[int, int]]:
    """Explicit padding pairs and the output size `(ho, wo)` for an input of size `in_hw`.

    Raises a ValueError naming the layer when the (dilated) window does not fit.
    """
    extent = [dilated(k, d) for k, d in zip(window, dilation, strict=True)]
    if padding == "VALID":
        pads = ((0, 0), (0, 0))
    elif padding == "SAME":
        pairs = []
        for n, k, s in zip(in_hw, extent, strides, strict=True):
            total = max((-(-n // s) - 1) * s + k - n, 0)  # out = ceil(n / s)
            pairs.append((total // 2, total - total // 2))  # the extra one at the end
        pads = (pairs[0], pairs[1])
    else:
        pads = padding
    out = tuple(
        (n + lo + hi - k) // s + 1
        for n, (lo, hi), k, s in zip(in_hw, pads, extent, strides, strict=True)
    )
    if any(n + lo + hi < k for n, (lo, hi), k in zip(in_hw, pads, extent, strict=True)):
        raise ValueError(
            f"{name}: the window covers {tuple(extent)} pixels but the input is only "
            f"{tuple(in_hw)} (padding {pads}); the output would be empty"
        )
    return pads, out


def pad(x: jax.Array, pads: Pads, value: Any = 0.0) -> jax.Array:
    """Pads the H and W axes of an NHWC array."""
    if pads == ((0, 0), (0, 0)):
        return x
    cfg = [(0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)]
    return lax.pad(x, lax.convert_element_type(value, x.dtype), cfg)


def window_slices(
    xp: jax.Array,
    window: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    out_hw: Sequence[int],
) -> list[jax.Array]:
    """The `kh * kw` slices `xp[:, i*dh :: sh, j*dw :: sw, :]` of size `out_hw`, row-major."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = window, strides, dilation, out_hw
    n, _, _, c = xp.shape
    parts = []
    for i in range(kh):
        for j in range(kw):
            start = (0, i * dh, j * dw, 0)
            limit = (n, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, c)
            parts.append(lax.slice(xp, start, limit, (1, sh, sw, 1)))
    return parts


def scatter_slices(
    parts: Sequence[jax.Array],
    in_hw: Sequence[int],
    pads: Pads,
    window: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
) -> jax.Array:
    """Transpose of `window_slices` followed by cropping `pads`: the input-sized sum.

    Tap (i, j)'s slice goes back to rows `i*dh - top + sh * r` (and likewise columns):
    interior padding spreads it by the stride, edge padding (negative where it crops the
    forward's zero padding) puts it in place. XLA fuses the pads and the sum into one loop.
    """
    (_, kw), (sh, sw), (dh, dw) = window, strides, dilation
    (h, w), ((top, bottom), (left, right)) = in_hw, pads
    hp, wp = h + top + bottom, w + left + right
    ho, wo = parts[0].shape[1:3]
    total = None
    for idx, part in enumerate(parts):
        i, j = divmod(idx, kw)
        rows = (i * dh - top, hp - (i * dh + (ho - 1) * sh + 1) - bottom, sh - 1)
        cols = (j * dw - left, wp - (j * dw + (wo - 1) * sw + 1) - right, sw - 1)
        placed = lax.pad(part, lax.convert_element_type(0, part.dtype),
                         [(0, 0, 0), rows, cols, (0, 0, 0)])  # fmt: skip
        total = placed if total is None else total + placed
    return total
