"""experiments/ on sys.path, as `python experiments/<name>.py` has it: tests import the
scripts and their sibling modules (common, table, plots, recipes) by name."""

import pathlib
import sys

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"
if str(EXPERIMENTS) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS))
