"""benchmarks/gradcheck.py as its users run it: a separate process from the repository root
(no timing checks)."""

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_gradcheck_benchmark_prints_its_table():
    run = subprocess.run(
        [sys.executable, "benchmarks/gradcheck.py", "--quick", "--tasks", "layer"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "load average" in lines[0] and lines[1].split()[:3] == ["task", "tree", "median"]
    assert lines[3].split()[:2] == ["layer", "this"] and lines[3].endswith("yes")
