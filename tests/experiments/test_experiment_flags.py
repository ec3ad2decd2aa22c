"""experiments/*.py command lines: the shared flags, fast --help, where results go, data folders.

Everything here parses flags only (no training), except the divergence tests (slow).
"""

import argparse
import importlib
import json
import pathlib
import subprocess
import sys
import time

import common as ex
import pytest
import table

import jnet

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"
SCRIPTS = [
    "mnist_two_layer",
    "mnist_csv",
    "mnist_minibatch",
    "cat_classifier",
    "xor",
    "activations",
    "speedrun",
    "mnist_cnn",
    "cat_cnn",
]
READS_DATA = {"mnist_two_layer", "mnist_csv", "mnist_minibatch", "cat_classifier", "speedrun"}
READS_DATA |= {"mnist_cnn", "cat_cnn"}
TRAINS = set(SCRIPTS) - {"activations"}
COMMON = ("--out", "--seed", "--quick", "--no-progress")
TABLE_HEADER = ["run", "metric", "ours", "tutorial", "note"]


def load_script(name: str):
    return importlib.import_module(name)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_lists_the_common_flags(name, capsys):
    with pytest.raises(SystemExit) as e:
        load_script(name).parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in COMMON:
        assert flag in out, flag
    assert ("--data-dir" in out) == (name in READS_DATA)
    assert ("--epochs" in out) == (name in TRAINS)
    assert ("--devices" in out) == name.startswith("mnist")  # data parallel: the MNIST scripts


# Imports the script and asks for --help in a fresh process: no JAX before the flags parse.
HELP = """
import sys
sys.path.insert(0, {folder!r})
sys.argv = [{script!r}, "--help"]
import {name} as script
try:
    script.main()
except SystemExit as e:
    assert e.code == 0, e.code
assert "jax" not in sys.modules, "JAX was imported before the flags were parsed"
assert "matplotlib" not in sys.modules
"""


def _timed(code: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done, time.perf_counter() - start


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_answers_without_importing_jax(name):
    done, _ = _timed(HELP.format(folder=str(EXPERIMENTS), script=f"{name}.py", name=name))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: python experiments/" in done.stdout


@pytest.mark.slow  # about 1 s a script, and an import of JAX to compare with
def test_help_answers_in_well_under_a_second():
    _, bare = _timed("pass")  # the interpreter's own start: seconds on a loaded machine
    _, jax_import = _timed("import jax")
    # Well under a second beyond the start on a quiet machine (0.2 s measured); on a busy
    # one everything slows, so the bound grows with JAX's own import time there.
    bound = max(1.0, 0.5 * (jax_import - bare))
    for name in SCRIPTS:
        code = HELP.format(folder=str(EXPERIMENTS), script=f"{name}.py", name=name)
        done, seconds = _timed(code)
        assert done.returncode == 0, done.stderr[-2000:]
        assert seconds - bare < bound, f"{name} --help: {seconds:.2f} s, bare python {bare:.2f} s"


@pytest.mark.slow  # the fast path's budget (CI runs it)
def test_import_jnet_does_not_import_matplotlib():
    code = "import jnet, sys; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_library_never_imports_from_experiments():
    package = pathlib.Path(jnet.__file__).parent
    for path in package.rglob("*.py"):
        text = path.read_text()
        for name in ("common", "table", "plots", "recipes"):
            assert f"import {name}\n" not in text and f"from {name} import" not in text, path


# --- where results go ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_writes_to_its_own_folder(name, tmp_path):
    script = load_script(name)
    assert script.parse_args([]).out == ex.RESULTS_DIR / name
    assert script.parse_args(["--quick"]).out == ex.RESULTS_DIR / f"{name}-quick"
    assert script.parse_args(["--quick", "--out", str(tmp_path)]).out == tmp_path


def test_tuned_minibatch_has_its_own_folders():
    script = load_script("mnist_minibatch")
    assert script.parse_args(["--tuned"]).out == ex.RESULTS_DIR / "mnist_minibatch_tuned"
    quick = script.parse_args(["--tuned", "--quick"]).out
    assert quick == ex.RESULTS_DIR / "mnist_minibatch_tuned-quick"


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_never_replaces_a_full_run(name, tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "metrics.json").write_text(json.dumps({"config": {"quick": False}}))
    with pytest.raises(SystemExit) as e:
        load_script(name).parse_args(["--quick", "--out", str(full)])
    assert e.value.code == 2
    assert "holds a full run's results" in capsys.readouterr().err
    (full / "metrics.json").write_text(json.dumps({"config": {"quick": True}}))
    assert load_script(name).parse_args(["--quick", "--out", str(full)])  # a quick run's: ok


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


# --- data folders -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(READS_DATA))
def test_a_named_data_folder_that_does_not_exist_is_an_error(name, tmp_path, capsys):
    missing = tmp_path / "nonexistent" / "dir"
    with pytest.raises(SystemExit) as e:
        load_script(name).parse_args(["--data-dir", str(missing)])
    assert e.value.code == 2
    assert f"argument --data-dir: {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "nonexistent").exists()  # never created


@pytest.mark.parametrize("name", sorted(READS_DATA))
def test_a_missing_jnet_data_dir_fails_before_the_run(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JNET_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as e:
        load_script(name).parse_args([])
    assert e.value.code == 2
    assert "$JNET_DATA_DIR: " in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
    assert load_script(name).parse_args(["--data-dir", str(tmp_path)])  # a named one wins


def test_mnist_csv_with_a_missing_data_dir_downloads_nothing(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    with pytest.raises(SystemExit):
        load_script("mnist_csv").main(["--quick", "--out", str(tmp_path / "o"), "--data-dir",
                                       str(missing)])  # fmt: skip
    assert not missing.exists() and not (tmp_path / "o").exists()


def test_a_missing_jnet_data_dir_is_an_error_never_created(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("JNET_DATA_DIR", str(missing))
    with pytest.raises(jnet.data.DataError, match=r"\$JNET_DATA_DIR: .*nowhere does not exist"):
        jnet.data.mnist_flat()
    with pytest.raises(jnet.data.DataError, match="never created"):
        jnet.data.mnist()
    assert not missing.exists()


# --- counts and formatting ----------------------------------------------------------------

# Flags that count things: 0 or less used to train on a slice, nothing, or divide by zero.
BAD_COUNTS = [
    ("mnist_two_layer", ["--train-size", "-5"]),  # was: all but the last 5 images
    ("mnist_two_layer", ["--test-size", "0"]),
    ("mnist_two_layer", ["--hidden", "0"]),
    ("mnist_two_layer", ["--epochs", "10", "0"]),
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
    ("mnist_csv", ["--epochs", "0"]),
    ("mnist_csv", ["--epochs", "10", "-1"]),
    ("cat_classifier", ["--epochs", "0"]),  # was: with --quick, the full 2,500
    ("cat_classifier", ["--num-seeds", "0"]),
    ("xor", ["--epochs", "0"]),
    ("xor", ["--num-seeds", "1.5"]),
    ("activations", ["--points", "0"]),
    ("speedrun", ["--num-seeds", "0"]),
    ("speedrun", ["--epochs", "0"]),
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


def test_csv_epochs_takes_one_or_two(capsys):
    script = load_script("mnist_csv")
    args = script.parse_args(["--epochs", "7"])
    assert (args.epochs_small, args.epochs_deep) == (7, 7)
    args = script.parse_args(["--epochs", "7", "3"])
    assert (args.epochs_small, args.epochs_deep) == (7, 3)
    with pytest.raises(SystemExit):
        script.parse_args(["--epochs", "1", "2", "3"])
    assert "one or two numbers" in capsys.readouterr().err


def test_csv_test_rows_below_rows(capsys):
    script = load_script("mnist_csv")
    with pytest.raises(SystemExit):
        script.parse_args(["--rows", "100", "--test-rows", "100"])
    assert "--test-rows 100 must be below --rows 100" in capsys.readouterr().err
    assert script.parse_args(["--csv", "any.csv", "--rows", "100", "--test-rows", "100"])


def test_repeated_epochs_are_one_stop():
    args = load_script("mnist_two_layer").parse_args(["--epochs", "20", "10", "10"])
    assert args.epochs == [10, 20]


def test_table_formatting():
    rows = [
        table.row("a", "acc", [0.9, 0.92], 0.915),
        table.row("b", "cost", 0.000123, None, unit=""),
        table.row("c", "time", [1.0, 3.0], None, unit="s", note="cpu"),
        table.row("d", "acc", [0.9866, 0.9870], None),
        table.row("e", "acc", 0.9150000214576721, None),
    ]
    lines = table.table_lines(rows)
    assert lines[0].split() == TABLE_HEADER
    assert "91.0 ± 1.4% (n=2)" in lines[2] and "91.5%" in lines[2]
    assert "0.000123" in lines[3] and lines[3].split()[-1] == "-"
    assert "2.0 ± 1.4 s (n=2)" in lines[4]
    assert "98.68 ± 0.03% (n=2)" in lines[5]  # a small spread gets two decimals
    assert lines[6].split()[2] == "91.5%"  # rounded for people
    md = table.table_lines(rows, markdown=True)
    assert md[0] == "| run | metric | ours | tutorial | note |" and len(md) == 7


def test_positive_int():
    assert ex.positive_int("3") == 3
    for text in ("0", "-5", "2.5", "ten"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integer"):
            ex.positive_int(text)


# --- divergence names the learning rate ----------------------------------------------------


@pytest.mark.slow
def test_xor_divergence_names_its_learning_rate(tmp_path):
    argv = ["--quick", "--no-progress", "--epochs", "50", "--num-seeds", "1", "--lr", "1e30"]
    with pytest.raises(FloatingPointError, match=r"learning rate 2e\+30"):
        load_script("xor").main([*argv, "--out", str(tmp_path)])


@pytest.mark.slow
def test_minibatch_divergence_names_both_learning_rates(tmp_path, data_dir):
    argv = ["--quick", "--no-progress", "--epochs", "1", "--lr", "1e300", "--out", str(tmp_path)]
    with pytest.raises(FloatingPointError, match=r"lr 1e\+300/0.1 last"):
        load_script("mnist_minibatch").main([*argv, "--data-dir", str(data_dir)])


def test_speed_run_recipes_build_in_process():
    import optax
    import recipes

    net = recipes.network(recipes.SPEEDRUN)
    assert [c.name for c in net.children][0] == "dense(2048)"
    opt = recipes.optimizer(recipes.QUICK, total_steps=10)
    assert isinstance(opt, optax.GradientTransformation)
    with pytest.raises(ValueError, match="unknown optimizer"):
        recipes.optimizer(recipes.QUICK._replace(optimizer="rmsprop"), 10)
