"""experiments/shakespeare_char.py as a separate process from the repository root: --quick
on tiny Shakespeare and on a --text file; its flags."""

import json
import pathlib
import subprocess
import sys

import pytest
from _scripts_support import run

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = "experiments/shakespeare_char.py"


def _run(*argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow  # compiles a GPT, its evaluation and its sampler: ~20-60 s
def test_quick_run_writes_metrics_plot_and_samples(tmp_path_factory, data_dir):
    if not (data_dir / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip("tiny Shakespeare not found")
    done = run(SCRIPT, tmp_path_factory, data_dir)  # the run test_scripts.py checks too
    out = done.out
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    rows = {r["metric"]: r for r in metrics["rows"]}
    assert {"val loss", "train loss", "train time"} <= rows.keys()
    # 30 iterations of a tiny GPT already beat the uniform guess, ln 65 = 4.17 nats.
    assert 2.0 < rows["val loss"]["ours"] < 4.17 and rows["train loss"]["ours"] < 4.17
    assert metrics["config"]["iters"] == 30 and metrics["config"]["top_k"] == 5
    assert metrics["history"]["iteration"] == [10, 20, 30]  # --quick evaluates every 10
    assert len(metrics["history"]["step_losses"]) == 30
    sample = (out / "samples.txt").read_text()
    assert len(sample) == 500 and sample in done.stdout
    assert (out / "loss.png").stat().st_size > 1000
    assert "val loss" in done.stdout and "nats per character" in done.stdout


@pytest.mark.slow
def test_quick_run_on_a_text_file(tmp_path):
    text = tmp_path / "poem.txt"
    text.write_text("the quick brown fox jumps over the lazy dog; ça va, naïve café.\n" * 40)
    out = tmp_path / "run"
    done = _run("--quick", "--no-progress", "--text", str(text), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["text"] == str(text)
    sample = (out / "samples.txt").read_text()
    assert len(sample) == 500 and set(sample) <= set(text.read_text())


@pytest.mark.slow  # three interpreters (~2 s each on the loaded CPU)
def test_flags_are_checked_before_jax_starts(tmp_path):
    done = _run("--temperature", "0", "--out", str(tmp_path))
    assert done.returncode == 2 and "--temperature: must be positive" in done.stderr
    done = _run("--iters", "0")
    assert done.returncode == 2 and "--iters" in done.stderr
    done = _run("--text", str(tmp_path / "missing.txt"))
    assert done.returncode == 2 and "missing.txt: file not found" in done.stderr
    done = _run("--lr", "0")
    assert done.returncode == 2 and "--lr: must be positive" in done.stderr


def test_settings_follow_the_flags():
    import shakespeare_char as sc

    args = sc.parse_args(["--config", "gpu", "--iters", "500"])
    cfg = sc.settings(args)
    assert (cfg["layers"], cfg["heads"], cfg["dim"], cfg["block_size"], cfg["batch"]) == (
        6,
        6,
        384,
        256,
        64,
    )
    assert cfg["iters"] == 500 and cfg["dropout"] == 0.2 and cfg["bias"] is False
    cpu = sc.settings(sc.parse_args([]))
    assert (cpu["layers"], cpu["heads"], cpu["dim"], cpu["block_size"], cpu["batch"]) == (
        4,
        4,
        128,
        64,
        12,
    )
    assert cpu["iters"] == 2000 and cpu["lr"] == 1e-3 and cpu["dropout"] == 0.0
    assert str(args.out).endswith("shakespeare_char-gpu")


def test_learning_rate_flags():
    import shakespeare_char as sc

    cfg = sc.settings(sc.parse_args([]))  # nanoGPT's: lr 1e-3, cosine down to lr / 10
    assert (cfg["lr"], cfg["min_lr"]) == (1e-3, 1e-3 / 10)
    cfg = sc.settings(sc.parse_args(["--lr", "3e-3"]))
    assert (cfg["lr"], cfg["min_lr"]) == (3e-3, 3e-3 / 10)
    cfg = sc.settings(sc.parse_args(["--lr", "3e-3", "--min-lr", "1e-4"]))
    assert (cfg["lr"], cfg["min_lr"]) == (3e-3, 1e-4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "0"], "--lr: must be positive and finite"),
        (["--lr", "inf"], "--lr: must be positive and finite"),
        (["--lr", "fast"], "--lr: expected a number"),
        (["--min-lr", "-1"], "--min-lr: must be positive and finite"),
        (["--min-lr", "2e-3"], "--min-lr: 0.002 exceeds the peak learning rate 0.001"),
    ],
)
def test_bad_learning_rates_are_refused(argv, message, capsys):
    import shakespeare_char as sc

    with pytest.raises(SystemExit) as exc:
        sc.parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
