"""experiments/*.py: every script's --quick run prints its table, writes metrics.json and PNGs.

The scripts are imported by name (conftest.py puts experiments/ on sys.path) and their
`main(argv)` run in-process, as flax's train_test.py runs one tiny epoch: the same code
path as the full runs, on tiny sizes. Also: any MNIST-layout folder via --data-dir, and
results.py. The flags themselves are tested in test_experiment_flags.py.
"""

import importlib
import json
import pathlib
import re

import _scripts_support as scripts
import common as ex
import numpy as np
import pytest
import table
from plots import is_png

from jnet import data

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"
# Every script with a main() but the speed run (tested in tests/benchmarks: it wants a GPU).
SCRIPTS = sorted(
    p.stem
    for p in EXPERIMENTS.glob("*.py")
    # (the CNN scripts' quick runs are in test_cnn_experiments.py, shakespeare_char's in
    # test_shakespeare_char.py: it trains through jnet.lm, without fit's epoch logs)
    if "\nif __name__ ==" in p.read_text()
    and p.stem not in ("speedrun", "results", "mnist_cnn", "cat_cnn", "shakespeare_char")
)
NEEDS_DATA = {"mnist_two_layer", "mnist_csv", "mnist_minibatch", "cat_classifier"}
METRIC_KEYS = {"script", "tutorial", "command", "config", "rows", "files", "seconds", "device"}
TABLE_HEADER = ["run", "metric", "ours", "tutorial", "note"]


LONG_FLOAT = re.compile(r"\d\.\d{7,}")  # e.g. 0.9150000214576721: not rounded for people


def load_script(name: str):
    return importlib.import_module(name)


def run_quick(name, tmp_path, capsys, *extra, data_dir=None):
    argv = ["--quick", "--no-progress", "--out", str(tmp_path), *extra]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    metrics = load_script(name).main(argv)
    return metrics, capsys.readouterr().out


def check_outputs(metrics, out, folder: pathlib.Path):
    """The printed table, metrics.json and the PNG files of one run."""
    assert not LONG_FLOAT.search(out), LONG_FLOAT.search(out)
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == TABLE_HEADER)
    assert set(lines[header + 1]) <= {"-", " "}  # the rule under the header
    assert len(lines) > header + 2
    saved = json.loads((folder / "metrics.json").read_text())
    assert METRIC_KEYS <= set(saved)
    assert saved["rows"] and all(set(table.COLUMNS) <= set(r) for r in saved["rows"])
    assert saved["config"].get("quick", True)
    for row in saved["rows"]:  # every row is printed
        assert any(row["run"] in line and row["metric"] in line for line in lines), row
    assert saved["files"]
    if saved["script"] != "activations":  # every training run logs its epochs as it goes
        logs = list(folder.glob("logs/**/metrics.jsonl"))
        assert logs and all(json.loads(f.read_text().splitlines()[-1])["epoch"] for f in logs)
    for name in saved["files"]:
        assert name.endswith(".png") and is_png(folder / name), name
    if metrics is not None:  # main()'s value, in-process
        assert saved["rows"] == json.loads(json.dumps(ex._jsonable(metrics["rows"])))


# activations trains nothing: its quick run in-process is the fast path's check of the whole
# write path. The others read the run of the users' command, a fresh `python
# experiments/<name>.py --quick ...` (tests/_scripts_support.py: once per session).
QUICK = [n if n == "activations" else pytest.param(n, marks=pytest.mark.slow) for n in SCRIPTS]


@pytest.mark.parametrize("name", QUICK)
def test_quick_run(name, tmp_path, capsys, request, tmp_path_factory):
    script = f"experiments/{name}.py"
    data_dir = request.getfixturevalue("data_dir") if scripts.needs_data(script) else None
    if name == "activations":
        metrics, out = run_quick(name, tmp_path, capsys, data_dir=data_dir)
        check_outputs(metrics, out, tmp_path)
        return
    done = scripts.run(script, tmp_path_factory, data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    check_outputs(None, done.stdout, done.out)


@pytest.mark.slow
def test_quick_tuned(tmp_path, capsys, data_dir):
    metrics, out = run_quick("mnist_minibatch", tmp_path, capsys, "--tuned", data_dir=data_dir)
    check_outputs(metrics, out, tmp_path)
    assert set(metrics["runs"]) == {"tuned-plain", "tuned-dropout"}
    assert "98.8%" in out and "98.5%" in out  # the targets beside our numbers


@pytest.mark.slow
def test_any_mnist_layout_folder(tmp_path, capsys):
    """A tiny fake MNIST in IDX layout (not the original files) runs end to end."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fake"
    folder.mkdir()
    for stem, n in (("train", 120), ("t10k", 60)):
        data.write_idx(
            folder / f"{stem}-images-idx3-ubyte.gz",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        )
        data.write_idx(folder / f"{stem}-labels-idx1-ubyte", rng.integers(0, 10, n, np.uint8))
    out_dir = tmp_path / "out"
    metrics, out = run_quick("mnist_two_layer", out_dir, capsys, data_dir=folder)
    check_outputs(metrics, out, out_dir)
    assert metrics["config"]["train_size"] == 100 and metrics["config"]["test_size"] == 50
    assert "test acc (all 60)" in out  # every test image of the fake set


@pytest.mark.slow
def test_results_md(tmp_path, capsys):
    results = tmp_path / "results"
    run_quick("xor", results / "xor", capsys)
    run_quick("activations", results / "activations", capsys)
    report = load_script("results")
    md = tmp_path / "docs" / "results.md"
    with pytest.raises(SystemExit, match="no metrics.json"):  # quick runs are left out
        report.main(["--results", str(results), "--out", str(md)])
    report.main(["--results", str(results), "--out", str(md), "--include-quick"])
    text = md.read_text()
    assert text.index("Tutorial 004: XOR") < text.index("activation functions")
    assert "| run | metric | ours | tutorial | note |" in text
    assert "python experiments/xor.py --quick" in text


@pytest.mark.slow
def test_devices_flag(tmp_path, data_dir):
    """--devices 2 trains data-parallel over 2 (forced host) CPU devices: a fresh process."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    script = EXPERIMENTS / "mnist_two_layer.py"
    argv = ["--quick", "--no-progress", "--devices", "2", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, str(script), *argv, "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["config"]["devices"] == 2 and saved["device"]["device_count"] == 2


def test_results_md_keeps_the_sections_it_has_no_results_for(tmp_path):
    report = load_script("results")
    md = tmp_path / "results.md"
    md.write_text("# Results\n\nintro\n\n## Tutorial 004: XOR\n\nold xor text\n\n"
                  "## Tutorial 002: activation functions and their derivatives\n\nstale\n\n"
                  "## A section of another machine\n\nkept text\n")  # fmt: skip
    folder = tmp_path / "results" / "activations"
    folder.mkdir(parents=True)
    metrics = {"command": "python experiments/activations.py", "seconds": 2.0, "files": [],
               "rows": [table.row("relu", "max err", 0.0, None, unit="")]}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    report.main(["--results", str(tmp_path / "results"), "--out", str(md)])
    text = md.read_text()
    assert "old xor text" in text and "kept text" in text  # no results here: kept as they were
    assert "stale" not in text and "python experiments/activations.py" in text  # rerun: updated
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert heads == ["## Tutorial 004: XOR",
                     "## Tutorial 002: activation functions and their derivatives",
                     "## A section of another machine"]  # fmt: skip
