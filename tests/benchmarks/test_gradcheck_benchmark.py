"""benchmarks/gradcheck.py as its users run it: a separate process from the repository root
(no timing checks)."""

import pathlib

import pytest
from _scripts_support import run as run_script

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_gradcheck_benchmark_prints_its_table(tmp_path_factory):
    run = run_script("benchmarks/gradcheck.py", tmp_path_factory)  # shared with test_scripts
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "load average" in lines[0] and lines[1].split()[:3] == ["task", "tree", "median"]
    assert lines[3].split()[:2] == ["layer", "this"] and lines[3].endswith("yes")
