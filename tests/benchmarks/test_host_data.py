"""benchmarks/host_data.py as its users run it: a separate process from the repository root."""

import pathlib

import pytest
from _scripts_support import run

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_host_data_quick_prints_both_paths(tmp_path_factory, data_dir):
    done = run("benchmarks/host_data.py", tmp_path_factory, data_dir)  # shared with test_scripts
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    rows = {
        line.split("  ")[0]: line.split() for line in lines if line.startswith(("arrays", "host"))
    }
    assert set(rows) == {"arrays (on device)", "host (numpy generator)"}
    assert rows["arrays (on device)"][-2] == "1.00"
    assert all(float(r[-1]) < 2.3 for r in rows.values())  # both trained: loss below chance
