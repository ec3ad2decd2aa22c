"""2-D convolution (NHWC inputs, HWIO kernels) with two lowerings, each hand-differentiated.

- "matmul" (im2col): the kh * kw shifted, strided slices of the padded input concatenated
  on the channel axis, then one matmul with the kernel reshaped to `(kh * kw * in, out)`.
  Backward: `dw = patches^T @ dy` (one matmul) and `dx = dy @ w^T`, whose kh * kw column
  blocks are scattered back where their slices came from and summed.
- "xla": `lax.conv_general_dilated` (cuDNN on a GPU). Backward: the input gradient is the
  transposed convolution (dy dilated by the strides, convolved with the flipped kernel,
  in/out swapped), the kernel gradient a correlation of x with dy (batch and feature axes
  exchanged), with the paddings of JAX's own transpose rules (`jax/_src/lax/convolution.py`).

By default, chosen at trace time, GPUs and TPUs get "xla"; so does a CPU whose 2-D
convolutions run on XLA's Eigen kernels (`jnet.xla_flags.prefer_eigen_kernels`, 15-25%
faster a step), while one that leaves them to YNNPACK (XLA's default) gets "matmul", the
faster there (BENCHMARKS.md). docs/conv_backward.md derives both backward passes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jnet import initializers, xla_flags
from jnet.layers import windows
from jnet.layers.base import Layer
from jnet.layers.checks import check_float, int_pair, param_dict, positive_int

LOWERINGS = ("matmul", "xla")
_DN = ("NHWC", "HWIO", "NHWC")


def lowering_for(lowering: str | None) -> str:
    """The lowering to trace: `lowering` if given, else "xla", except on a CPU whose
    convolutions go to YNNPACK (jnet.xla_flags): there "matmul" is the faster."""
    if lowering is not None:
        return lowering
    if jax.default_backend() == "cpu" and not xla_flags.ynn_convolutions_off():
        return "matmul"
    return "xla"


def _name(features, kernel_size, strides, padding, dilation, lowering) -> str:
    opts = [repr(features), repr(kernel_size)]
    for key, value, default in (
        ("strides", strides, 1),
        ("padding", padding, "SAME"),
        ("dilation", dilation, 1),
        ("lowering", lowering, None),
    ):
        if value != default:
            opts.append(f"{key}={value!r}")
    return f"conv2d({', '.join(opts)})"


def conv2d(
    features: int,
    kernel_size: int | tuple[int, int],
    *,
    strides: int | tuple[int, int] = 1,
    padding: Any = "SAME",
    dilation: int | tuple[int, int] = 1,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    lowering: str | None = None,
) -> Layer:
    """2-D convolution `y = conv(x, w) + b` over NHWC images.

    Args:
      features: output channels.
      kernel_size: `kh` or `(kh, kw)`.
      strides: an int or a pair.
      padding: "SAME" (output `ceil(in / stride)`; XLA/TensorFlow rule, an odd total pads
        the extra row/column at the end), "VALID", an int, or `((top, bottom), (left, right))`.
      dilation: kernel (atrous) dilation, an int or a pair.
      w_init: kernel initializer, `(kh, kw, in, features)`; default He normal (fans count
        the receptive field).
      b_init: bias initializer, `(features,)`; default zeros.
      lowering: None (chosen at trace time: "xla", except "matmul" on a CPU that leaves
        convolutions to YNNPACK; see `jnet.xla_flags`), "matmul" (im2col: shifted slices
        and one matmul) or "xla" (`lax.conv_general_dilated`).

    Shapes: x `(N, H, W, in)` -> y `(N, Ho, Wo, features)` (more leading axes are batch axes);
    params `{"w": (kh, kw, in, features), "b": (features,)}`.
    """
    name = _name(features, kernel_size, strides, padding, dilation, lowering)
    positive_int(name, "features", features)
    window = int_pair(name, "kernel_size", kernel_size)
    stride = int_pair(name, "strides", strides)
    dil = int_pair(name, "dilation", dilation)
    pad_spec = windows.padding_spec(name, padding)
    if lowering not in (None, *LOWERINGS):
        raise ValueError(f"{name}: lowering must be None, 'matmul' or 'xla'; got {lowering!r}")
    w_init = w_init or initializers.he_normal()
    b_init = b_init or initializers.zeros()

    def geometry(shape):  # (pads, (ho, wo)) for an input shape, checked
        windows.check_images(name, shape)
        return windows.resolve(name, pad_spec, shape[-3:-1], window, stride, dil)

    def init(key, input_shape):
        _, (ho, wo) = geometry(input_shape)
        wkey, bkey = jax.random.split(key)
        params = {
            "w": w_init(wkey, (*window, input_shape[-1], features)),
            "b": b_init(bkey, (features,)),
        }
        return (*input_shape[:-3], ho, wo, features), params

    def forward(params, x, *, key=None):
        check_float(name, x)
        windows.check_images(name, x.shape)
        params = param_dict(name, params, {"w", "b"})
        w, b = params["w"], params["b"]
        if w.ndim != 4 or w.shape[:2] != window or w.shape[3] != features or b.shape != (features,):
            raise ValueError(
                f"{name}: params hold w {w.shape} and b {b.shape}, not "
                f"({window[0]}, {window[1]}, in, {features}) and ({features},): "
                "they are another layer's"
            )
        if x.shape[-1] != w.shape[2]:
            raise ValueError(
                f"{name}: input has shape {x.shape} but this layer was initialised for "
                f"{w.shape[2]} input channels; expected (N, H, W, {w.shape[2]})"
            )
        pads, out_hw = geometry(x.shape)
        x4 = windows.fold(x)
        if lowering_for(lowering) == "xla":
            y = lax.conv_general_dilated(
                x4, w, stride, pads, rhs_dilation=dil, dimension_numbers=_DN
            )
        else:
            patches = _patches(x4, pads, window, stride, dil, out_hw)
            y = patches @ w.reshape(-1, features)
        y = y.reshape(x.shape[:-3] + y.shape[1:])
        return y + b, x  # cache = x; the matmul lowering re-slices it in backward

    def backward(params, x_in, dy):
        w = params["w"]
        pads, out_hw = geometry(x_in.shape)
        x, dy = windows.fold(x_in), windows.fold(dy)
        db = dy.sum((0, 1, 2))
        if lowering_for(lowering) == "xla":
            dw = _kernel_grad(x, dy, window, pads, stride, dil)
            dx = _input_grad(dy, w, x.shape[1:3], pads, stride, dil)
        else:
            patches = _patches(x, pads, window, stride, dil, out_hw)
            k = patches.shape[-1]
            dw = (patches.reshape(-1, k).T @ dy.reshape(-1, features)).reshape(w.shape)
            dpatches = dy @ w.reshape(k, features).T  # (N, Ho, Wo, kh * kw * in)
            c = x.shape[3]
            parts = [dpatches[..., t * c : (t + 1) * c] for t in range(window[0] * window[1])]
            dx = windows.scatter_slices(parts, x.shape[1:3], pads, window, stride, dil)
        return {"w": dw, "b": db}, dx.reshape(x_in.shape)

    return Layer(init, forward, backward, name)


def _patches(x, pads, window, strides, dilation, out_hw):
    """im2col: `(N, Ho, Wo, kh * kw * C)`, tap-major then channel (matches HWIO reshaped)."""
    parts = windows.window_slices(windows.pad(x, pads), window, strides, dilation, out_hw)
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)


def _extents(k_hw, out_hw, strides, dilation):
    """The dilated kernel's extent and the stride-dilated output's, per spatial axis."""
    k_ext = [windows.dilated(k, d) for k, d in zip(k_hw, dilation, strict=True)]
    out_ext = [windows.dilated(o, s) for o, s in zip(out_hw, strides, strict=True)]
    return k_ext, out_ext


def _input_grad(dy, w, in_hw, pads, strides, dilation):
    """`dx` as a transposed convolution: one `lax.conv_general_dilated` (JAX's padding rule).

    dy dilated by the strides (lhs_dilation), padded so that every input pixel sees every
    tap that touched it, correlated with the flipped kernel, in and out swapped.

    Like `_kernel_grad`, it keeps the forward's dimension numbers (NHWC, HWIO, NHWC) and
    transposes its operands explicitly instead: inside `lax.scan`, XLA's CPU backend runs a
    convolution with any other dimension numbers (those of JAX's own transpose rules) as a
    naive loop, ~10x slower (BENCHMARKS.md).
    """
    k_ext, out_ext = _extents(w.shape[:2], dy.shape[1:3], strides, dilation)
    dx_pads = []
    for n, k, o, (lo, _) in zip(in_hw, k_ext, out_ext, pads, strict=True):
        before = k - lo - 1
        dx_pads.append((before, n + k - 1 - o - before))
    w_flipped = lax.rev(w, (0, 1)).transpose(0, 1, 3, 2)  # (kh, kw, out, in)
    return lax.conv_general_dilated(
        dy, w_flipped, (1, 1), dx_pads, lhs_dilation=strides, rhs_dilation=dilation,
        dimension_numbers=_DN,
    )  # fmt: skip


def _kernel_grad(x, dy, k_hw, pads, strides, dilation):
    """`dw` as a correlation of x with dy over the batch: one `lax.conv_general_dilated`.

    x as C images `(C, H, W, N)` of N channels, dy as an `(Ho, Wo, N, out)` kernel; the
    forward's strides become the dilation of dy, its dilation the stride over x. The result
    `(C, kh, kw, out)` is the kernel's HWIO, transposed.
    """
    k_ext, out_ext = _extents(k_hw, dy.shape[1:3], strides, dilation)
    dw_pads = []
    for n, k, o, (lo, _) in zip(x.shape[1:3], k_ext, out_ext, pads, strict=True):
        dw_pads.append((lo, o - n + k - lo - 1))
    # The barrier keeps x the stored activation: without it XLA fuses the layers that
    # produced x (batch norm, relu, residual sums) into the transpose and recomputes them
    # there, through a strided read (a quarter of the ResNet benchmark's step).
    x_cn = lax.optimization_barrier(x).transpose(3, 1, 2, 0)
    dw = lax.conv_general_dilated(
        x_cn, dy.transpose(1, 2, 0, 3), dilation, dw_pads, rhs_dilation=strides,
        dimension_numbers=_DN,
    )  # fmt: skip
    return dw.transpose(1, 2, 0, 3)
