"""experiments/sequential_mnist.py: --help before JAX loads, and a --quick run end to end."""

import importlib.util
import pathlib
import subprocess
import sys

import _scripts_support as scripts
import pytest
from plots import is_png

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "sequential_mnist.py"


def load_script():
    spec = importlib.util.spec_from_file_location("experiments_sequential_mnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_is_instant_and_names_the_common_flags():
    code = (
        f"import sys; sys.argv = ['sequential_mnist.py', '--help']; sys.path.insert(0, "
        f"{str(SCRIPT.parent)!r})\n"
        f"import runpy\ntry:\n    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "assert 'jax' not in sys.modules, 'JAX was imported before parsing'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for flag in ("--data-dir", "--out", "--seed", "--epochs", "--quick", "--no-progress"):
        assert flag in out.stdout


def test_adding_problem_targets_are_the_marked_sums():
    x, y = load_script().adding_problem(64, 10, seed=0)
    assert x.shape == (64, 10, 2) and y.shape == (64, 1)
    assert (x[..., 1].sum(1) == 2).all()
    assert (x[:, :5, 1].sum(1) == 1).all()  # one mark in each half
    assert abs((x[..., 0] * x[..., 1]).sum(1, keepdims=True) - y).max() < 1e-6


@pytest.mark.slow
def test_quick_run(tmp_path_factory, data_dir):
    """`python experiments/sequential_mnist.py --quick ...` in a fresh process: run in-process
    it passed while the script never imported jnet.data (the test process had)."""
    done = scripts.run("experiments/sequential_mnist.py", tmp_path_factory, data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = done.metrics()
    assert saved["config"]["quick"]
    assert len(saved["rows"]) == 4  # lstm, rnn on MNIST; lstm, rnn on the adding problem
    for row in saved["rows"]:
        assert row["run"] in done.stdout
    assert sorted(saved["files"]) == ["adding_curves.png", "mnist_curves.png"]
    assert all(is_png(done.out / f) for f in saved["files"])
    assert set(saved["runs"]) == {
        "mnist lstm seed 0", "mnist rnn seed 0", "adding T=20 lstm", "adding T=20 rnn"
    }  # fmt: skip
