"""`python -m jnet.gradcheck`: checks registry cases, or a user's layer factory.

    python -m jnet.gradcheck                       # every built-in case (float64)
    python -m jnet.gradcheck dense relu            # some of them
    python -m jnet.gradcheck mypkg.layers:my_layer --input-shape 8,16 [--loss NAME]
    python -m jnet.gradcheck mypkg:my_embedding --input-shape 4,8 --input-dtype int32 \
        --input-range 0,50                        # integer input (token ids)

Prints the tables; exits 0 when every check holds, 1 otherwise (naming the failing
layers), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

from jnet.gradcheck import TOLERANCES, GradientReport
from jnet.gradcheck.registry import CASES, check_case
from jnet.gradcheck.user import LOSSES, check_layer, load_factory


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 8,16; got {text!r}") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1; got {text!r}")
    return shape


def _range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH like 0,50; got {text!r}") from None
    if not 0 <= low < high:
        raise argparse.ArgumentTypeError(f"need 0 <= LOW < HIGH; got {text!r}")
    return low, high


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jnet.gradcheck",
        description="Check hand-written gradients against jax.grad and finite differences: "
        "every built-in layer, loss and tutorial architecture, or your own layer factory "
        "(MODULE:FACTORY, called with no arguments), as a whole and layer by layer.",
    )
    parser.add_argument("--dtype", default="float64", choices=sorted(TOLERANCES))
    parser.add_argument(
        "--input-shape", type=_shape, help="for MODULE:FACTORY: input shape with batch, e.g. 8,16"
    )
    parser.add_argument(
        "--input-dtype", choices=("float", "int32", "int64"), default="float",
        help="for MODULE:FACTORY: integer input (token ids) instead of floats in --dtype; "
        "a layer with a vocab_size (an embedding first) gets ids in [0, vocab_size) anyway",
    )  # fmt: skip
    parser.add_argument(
        "--input-range", type=_range,
        help="for MODULE:FACTORY with integer input: ids drawn from [LOW, HIGH), e.g. 0,50",
    )  # fmt: skip
    parser.add_argument(
        "--loss", default="mean_squared_error", choices=sorted(LOSSES),
        help="for MODULE:FACTORY (default mean_squared_error against random targets)",
    )  # fmt: skip
    parser.add_argument("--order", type=int, default=1, choices=(1, 2), help="2: also HVPs")
    parser.add_argument("--probes", type=int, default=2, help="random projections per layer")
    parser.add_argument("--training", action="store_true", help="pass a key (dropout, stats)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--layers", action="store_true",
        help="registry cases: also check each layer on its own and per-example gradients "
        "(a user's MODULE:FACTORY always is; the registry's cases are single layers already)",
    )  # fmt: skip
    parser.add_argument(
        "cases",
        nargs="*",
        help=f"MODULE:FACTORY, or registry cases (default all: {', '.join(CASES)})",
    )
    args = parser.parse_args(argv)
    factories = [c for c in args.cases if ":" in c]
    if args.probes < 1:
        parser.error(f"--probes must be >= 1; got {args.probes}")
    if factories and len(factories) != len(args.cases):
        parser.error("give either MODULE:FACTORY specs or registry case names, not both")
    if factories and args.input_shape is None:
        parser.error("MODULE:FACTORY needs --input-shape, e.g. --input-shape 8,16")
    if args.input_range is not None and args.input_dtype == "float":
        parser.error("--input-range is for integer input: add --input-dtype int32")
    if (args.input_dtype != "float" or args.input_range) and not factories:
        parser.error("--input-dtype and --input-range are for MODULE:FACTORY")
    unknown = [name for name in args.cases if name not in CASES and ":" not in name]
    if unknown:  # argparse `choices` would print all names on every usage line
        known = ", ".join(map(repr, CASES))  # quoted: some names hold spaces
        parser.error(f"unknown case(s) {', '.join(map(repr, unknown))}; known cases: {known}")
    jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(args.dtype)
    options = dict(order=args.order, probes=args.probes, raise_on_failure=False)
    reports = []
    if factories:
        for spec in factories:
            try:
                layer = load_factory(spec)
            except ValueError as e:
                parser.error(str(e))
            if args.input_dtype != "float" and not args.input_range and layer.vocab_size is None:
                parser.error(f"--input-dtype {args.input_dtype} needs --input-range LOW,HIGH: "
                             f"{spec} does not say which ids it takes")  # fmt: skip
            reports.append(
                check_layer(
                    layer,
                    args.input_shape,
                    loss=args.loss,
                    dtype=dtype,
                    training=args.training,
                    seed=args.seed,
                    input_dtype=None if args.input_dtype == "float" else args.input_dtype,
                    input_range=args.input_range,
                    name=spec,
                    **options,
                )  # fmt: skip
            )
    else:
        options |= dict(layers=args.layers, per_example=args.layers)
        reports = [
            check_case(name, dtype, seed=args.seed, **options) for name in args.cases or CASES
        ]
    report = GradientReport(
        [r for rep in reports for r in rep.rows],
        [r for rep in reports for r in rep.layers],
        [r for rep in reports for r in rep.extra],
        [n for rep in reports for n in rep.notes],
        reports[0].tolerances if len(reports) == 1 else None,
    )
    print(report)
    failed = sum(not r.passed for r in [*report.rows, *report.layers, *report.extra])
    total = len(report.rows) + len(report.layers) + len(report.extra)
    print(f"\n{total - failed} passed, {failed} failed ({args.dtype})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
