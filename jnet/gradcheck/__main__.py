"""`python -m jnet.gradcheck`: checks every registry case, prints a table, exits 1 on failure."""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

from jnet.gradcheck import TOLERANCES, GradientReport
from jnet.gradcheck.registry import CASES, check_case


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jnet.gradcheck",
        description="Check every built-in layer, loss and tutorial architecture's hand-written "
        "gradient against jax.grad and finite differences.",
    )
    parser.add_argument("--dtype", default="float64", choices=sorted(TOLERANCES))
    parser.add_argument("cases", nargs="*", help=f"default: all of {', '.join(CASES)}")
    args = parser.parse_args(argv)
    unknown = [name for name in args.cases if name not in CASES]
    if unknown:  # argparse `choices` would print all names on every usage line
        known = ", ".join(map(repr, CASES))  # quoted: some names hold spaces
        parser.error(f"unknown case(s) {', '.join(map(repr, unknown))}; known cases: {known}")
    jax.config.update("jax_enable_x64", True)
    rows = []
    for name in args.cases or CASES:
        rows += check_case(name, jnp.dtype(args.dtype), raise_on_failure=False).rows
    report = GradientReport(rows)
    print(report.table())
    failed = sum(not r.passed for r in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed ({args.dtype})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
