"""benchmarks/ on sys.path, as `python benchmarks/<name>.py` has it: tests import the
scripts and their sibling modules (timing, report, mlp_impls) by name."""

import pathlib
import sys

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
