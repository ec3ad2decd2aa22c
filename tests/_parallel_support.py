"""Parent side of the subprocess tests (test_parallel, test_distributed): env, results."""

from __future__ import annotations

import os
import pathlib

import numpy as np

WORKER = pathlib.Path(__file__).with_name("_parallel_worker.py")
# float32 sums in another order (per-device partials); Adam divides by sqrt(v), which lifts
# rounding in near-zero gradients to ~1e-6 in the params (seen with jax 0.11 on CPU).
F32 = {"rtol": 1e-5, "atol": 1e-5}


def worker_env(tmp: pathlib.Path, xla_flags: str) -> dict[str, str]:
    """The child's environment: CPU only, its device count, a compile cache in `tmp`."""
    env = dict(os.environ)
    # Optimization level 0: the LLVM backend compiles several times faster; same HLO.
    env["XLA_FLAGS"] = f"{xla_flags} --xla_backend_optimization_level=0".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["JNET_TEST_XLA_CACHE"] = str(tmp / "xla_cache")
    return env


def tail(path: pathlib.Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no output)"


def leaves(arrays: dict, prefix: str) -> list[np.ndarray]:
    keys = sorted(
        (k for k in arrays if k.startswith(prefix + "/")), key=lambda k: int(k.rsplit("/", 1)[1])
    )
    assert keys, f"no arrays saved under {prefix}"
    return [arrays[k] for k in keys]


def assert_history_close(a: dict, b: dict, **tol) -> None:
    assert a.keys() == b.keys() and a["epoch"] == b["epoch"]
    for k in a:
        if k not in ("epoch", "seconds"):
            np.testing.assert_allclose(a[k], b[k], err_msg=k, **tol)
