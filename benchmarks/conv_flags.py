"""The flags `cnn.py` and `resnet.py` share: steps per timed epoch, repeats, batch, probe steps
(or one `--lowering` for both rows, no probe).

No JAX until the flags are parsed: `--help` and a bad flag answer before anything heavy
loads. Then XLA:CPU is asked for its Eigen convolutions (`jnet.xla_flags`), before JAX starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def parse(doc: str, argv: Sequence[str] | None, *, steps: int, probe_steps: int):
    """The parsed flags, each count checked >= 1; `doc`'s first line is the description."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--steps", type=int, default=steps, help="SGD steps per timed epoch")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument(
        "--probe-steps", type=int, default=probe_steps, help="steps of the reference probe"
    )
    p.add_argument("--no-torch", action="store_true")
    p.add_argument(
        "--lowering", choices=("xla", "matmul"), default=None,
        help="run jnet and the reference in this conv lowering, without the probe",
    )  # fmt: skip
    args = p.parse_args(argv)
    for flag in ("steps", "repeats", "batch", "probe_steps"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    from jnet import xla_flags  # XLA:CPU's Eigen convolutions, set before JAX starts

    xla_flags.prefer_eigen_kernels()
    return args
