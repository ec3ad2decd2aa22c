"""experiments/*.py: every script's --quick run prints its table, writes metrics.json and PNGs.

The scripts are imported from experiments/ and their `main(argv)` run in-process, as
flax's train_test.py runs one tiny epoch: the same code path as the full runs, on tiny
sizes. Also: --help, any MNIST-layout folder via --data-dir, and report.py.
"""

import argparse
import importlib.util
import json
import pathlib

import numpy as np
import pytest

from jnet import data
from jnet import experiment as ex
from jnet.plots import is_png

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = [
    "mnist_two_layer",
    "mnist_csv",
    "mnist_minibatch",
    "cat_classifier",
    "xor",
    "activations",
]
NEEDS_DATA = {"mnist_two_layer", "mnist_csv", "mnist_minibatch", "cat_classifier"}
METRIC_KEYS = {"script", "tutorial", "command", "config", "rows", "files", "seconds", "device"}
TABLE_HEADER = ["run", "metric", "ours", "tutorial", "note"]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick(name, tmp_path, capsys, *extra, data_dir=None):
    argv = ["--quick", "--no-progress", "--out", str(tmp_path), *extra]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    metrics = load_script(name).main(argv)
    return metrics, capsys.readouterr().out


def check_outputs(metrics, out, folder: pathlib.Path):
    """The printed table, metrics.json and the PNG files of one run."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == TABLE_HEADER)
    assert set(lines[header + 1]) <= {"-", " "}  # the rule under the header
    assert len(lines) > header + 2
    saved = json.loads((folder / "metrics.json").read_text())
    assert METRIC_KEYS <= set(saved)
    assert saved["rows"] and all(set(ex.COLUMNS) <= set(r) for r in saved["rows"])
    assert saved["config"].get("quick", True)
    for row in saved["rows"]:  # every row is printed
        assert any(row["run"] in line and row["metric"] in line for line in lines), row
    assert saved["files"]
    for name in saved["files"]:
        assert name.endswith(".png") and is_png(folder / name), name
    assert saved["rows"] == json.loads(json.dumps(ex._jsonable(metrics["rows"])))


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        load_script(name).parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--data-dir", "--out", "--seed", "--quick", "--no-progress"):
        assert flag in out
    assert ("--devices" in out) == name.startswith("mnist")  # data parallel: the MNIST scripts


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_run(name, tmp_path, capsys, request):
    data_dir = request.getfixturevalue("data_dir") if name in NEEDS_DATA else None
    metrics, out = run_quick(name, tmp_path, capsys, data_dir=data_dir)
    check_outputs(metrics, out, tmp_path)


def test_quick_tuned(tmp_path, capsys, data_dir):
    metrics, out = run_quick("mnist_minibatch", tmp_path, capsys, "--tuned", data_dir=data_dir)
    check_outputs(metrics, out, tmp_path)
    assert set(metrics["runs"]) == {"tuned-plain", "tuned-dropout"}
    assert "98.8%" in out and "98.5%" in out  # the targets beside our numbers


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


def test_report(tmp_path, capsys):
    results = tmp_path / "results"
    run_quick("xor", results / "xor", capsys)
    run_quick("activations", results / "activations", capsys)
    report = load_script("report")
    md = tmp_path / "docs" / "results.md"
    with pytest.raises(SystemExit, match="no metrics.json"):  # quick runs are left out
        report.main(["--results", str(results), "--out", str(md)])
    report.main(["--results", str(results), "--out", str(md), "--include-quick"])
    text = md.read_text()
    assert text.index("Tutorial 004: XOR") < text.index("activation functions")
    assert "| run | metric | ours | tutorial | note |" in text
    assert "python experiments/xor.py --quick" in text


def test_table_formatting():
    rows = [
        ex.row("a", "acc", [0.9, 0.92], 0.915),
        ex.row("b", "cost", 0.000123, None, unit=""),
        ex.row("c", "time", [1.0, 3.0], None, unit="s", note="cpu"),
        ex.row("d", "acc", [0.9866, 0.9870], None),
    ]
    lines = ex.table_lines(rows)
    assert lines[0].split() == TABLE_HEADER
    assert "91.0 ± 1.4% (n=2)" in lines[2] and "91.5%" in lines[2]
    assert "0.000123" in lines[3] and lines[3].split()[-1] == "-"
    assert "2.0 ± 1.4 s (n=2)" in lines[4]
    assert "98.68 ± 0.03% (n=2)" in lines[5]  # a small spread gets two decimals
    md = ex.table_lines(rows, markdown=True)
    assert md[0] == "| run | metric | ours | tutorial | note |" and len(md) == 6


def test_positive_int():
    assert ex.positive_int("3") == 3
    for text in ("0", "-5", "2.5", "ten"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integer"):
            ex.positive_int(text)


# Flags that count things: 0 or less used to train on a slice, nothing, or divide by zero.
BAD_COUNTS = [
    ("mnist_two_layer", ["--train-size", "-5"]),  # was: all but the last 5 images
    ("mnist_two_layer", ["--test-size", "0"]),
    ("mnist_two_layer", ["--hidden", "0"]),
    ("mnist_two_layer", ["--iterations", "10", "0"]),
    ("mnist_two_layer", ["--num-seeds", "0"]),  # was: a metrics.json with nothing trained
    ("mnist_two_layer", ["--devices", "0"]),
    ("mnist_minibatch", ["--batch-size", "0"]),  # was: ZeroDivisionError
    ("mnist_minibatch", ["--epochs", "0"]),
    ("mnist_minibatch", ["--hidden", "32", "0"]),
    ("mnist_minibatch", ["--train-size", "-1"]),
    ("mnist_minibatch", ["--val-size", "-1"]),
    ("mnist_minibatch", ["--num-seeds", "0"]),
    ("mnist_csv", ["--rows", "0"]),
    ("mnist_csv", ["--test-rows", "0"]),
    ("mnist_csv", ["--epochs-small", "0"]),
    ("mnist_csv", ["--epochs-deep", "-1"]),
    ("cat_classifier", ["--iterations", "0"]),  # was: with --quick, the full 2,500
    ("cat_classifier", ["--num-seeds", "0"]),
    ("xor", ["--epochs", "0"]),
    ("xor", ["--num-seeds", "1.5"]),
    ("activations", ["--points", "0"]),
    ("speedrun", ["--seeds", "0"]),
]


@pytest.mark.parametrize(
    "name, argv", BAD_COUNTS, ids=[f"{n} {' '.join(a)}" for n, a in BAD_COUNTS]
)
def test_count_flags_must_be_positive(name, argv, capsys):
    with pytest.raises(SystemExit) as e:
        load_script(name).parse_args(["--quick", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {argv[0]}: " in err and "positive integer" in err


@pytest.mark.parametrize("name", SCRIPTS)
def test_out_that_is_a_file_fails_before_the_run(name, tmp_path, capsys):
    file = tmp_path / "results"
    file.write_text("not a folder")
    for out in (file, file / "sub"):
        with pytest.raises(SystemExit) as e:
            load_script(name).parse_args(["--quick", "--out", str(out)])
        assert e.value.code == 2
        assert f"error: argument --out: {file}" in capsys.readouterr().err
    assert load_script(name).parse_args(["--out", str(tmp_path / "new")])  # not there yet: ok


def test_csv_test_rows_below_rows(capsys):
    script = load_script("mnist_csv")
    with pytest.raises(SystemExit):
        script.parse_args(["--rows", "100", "--test-rows", "100"])
    assert "--test-rows 100 must be below --rows 100" in capsys.readouterr().err
    assert script.parse_args(["--csv", "any.csv", "--rows", "100", "--test-rows", "100"])


def test_repeated_iterations_are_one_stop():
    args = load_script("mnist_two_layer").parse_args(["--iterations", "20", "10", "10"])
    assert args.iterations == [10, 20]


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
