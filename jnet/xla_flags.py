"""XLA:CPU's kernels: YNNPACK's or Eigen's, for convolutions and matrix products.

Since jaxlib 0.10, XLA:CPU hands most 2-D convolutions and matrix products to YNNPACK.
On the 2-core CPUs of BENCHMARKS.md two of its choices cost time:

- convolutions: YNNPACK's kernel gradient of a convolution (a window as large as the image,
  a 3 x 3 output) is slower than Eigen's (12.5 vs 7.0 ms for one 32-channel 14 x 14 layer),
  and with Eigen's convolutions the "xla" lowering of `conv2d` beats the "matmul" one by
  15-25% a training step on every CNN of `experiments/` and `benchmarks/`;
- matrix products inside a recurrent layer's scan: YNNPACK runs each step's
  `(128, 128) x (128, 512)` product on one core (the same time on one core or two), Eigen
  on both; an LSTM(128) training step takes 0.7-0.8 of the time with Eigen's products.
  The MLP, CNN, ResNet and transformer steps measured alike either way.

The switch is one XLA flag, which only takes effect if it is in `XLA_FLAGS` before JAX
starts its backends:

    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-individual_dot

`prefer_eigen_kernels()` adds it (jnet's experiment and benchmark scripts call it first);
`conv2d(lowering=None)` reads the flags to pick its CPU lowering.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

OPTION = "xla_cpu_experimental_ynn_fusion_type"
EIGEN_KERNELS = f"--{OPTION}=-individual_convolution,-individual_dot"
# jaxlib releases known to accept the flag; an unknown XLA flag aborts the process.
TESTED_JAXLIB = ((0, 10), (0, 12))  # [from, to]


def ynn_convolutions_off(flags: str | None = None) -> bool:
    """Whether `flags` (default `$XLA_FLAGS`) take 2-D convolutions away from YNNPACK."""
    return _ynn_off("individual_convolution", flags)


def ynn_dots_off(flags: str | None = None) -> bool:
    """Whether `flags` (default `$XLA_FLAGS`) take matrix products away from YNNPACK."""
    return _ynn_off("individual_dot", flags)


def _ynn_off(kind: str, flags: str | None) -> bool:
    """The option's last setting counts: a list of modifiers (`-individual_convolution`,
    `+reduce`) changes the default set, a plain list replaces it."""
    flags = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    values = [f.split("=", 1)[1] for f in flags.split() if f.startswith(f"--{OPTION}=")]
    if not values:
        return False
    items = [v.strip().lower() for v in values[-1].split(",") if v.strip()]
    if any(v[0] in "+-" for v in items):
        return f"-{kind}" in items
    return not any(v.endswith(kind) for v in items)


def _jaxlib_tested() -> bool:
    try:
        version = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return False
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    return TESTED_JAXLIB[0] <= major_minor <= TESTED_JAXLIB[1]


def prefer_eigen_kernels() -> bool:
    """Adds `EIGEN_KERNELS` to `$XLA_FLAGS`; returns whether convolutions avoid YNNPACK.

    Leaves everything as it is where the flags already set the option (the user's choice),
    where JAX has started its backends (too late: the flag would not apply, and the
    default lowering must match the backend that runs), or where jaxlib is outside the
    releases tested to accept the flag. Affects only XLA:CPU; GPUs ignore it.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if f"--{OPTION}=" in flags or not _jaxlib_tested() or _backends_started():
        return ynn_convolutions_off(flags)
    os.environ["XLA_FLAGS"] = f"{flags} {EIGEN_KERNELS}".strip()
    return True


def _backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()
