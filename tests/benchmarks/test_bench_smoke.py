"""Smoke tests of benchmarks/mlp.py and the speed run at toy sizes (no timing checks).

conftest.py puts benchmarks/ on sys.path: the script and its modules import by name.
"""

import json
import pathlib
import subprocess
import sys

import pytest
import report
import timing

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    import mlp

    return mlp


@pytest.mark.slow
def test_benchmark_prints_the_table_and_writes_json_and_markdown(bench, tmp_path, capsys):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nkept text\n\n<!-- BEGIN gpu -->\nold gpu\n<!-- END gpu -->\n")
    argv = ["--quick", "--synthetic", "--repeats", "1", "--tasks", "T1", "T2"]
    result = bench.main(argv + ["--json", str(tmp_path / "r.json"), "--write-md", str(md)])
    out = capsys.readouterr().out

    rows = {(r["task"], r["impl"]): r for r in result["rows"]}
    assert set(rows) == {(t, i) for t in ("T1", "T2") for i in ("jnet", "reference", "numpy")}
    for r in rows.values():
        assert r["median_s"] > 0 and len(r["times_s"]) == 1
        assert r["per_step_s"] == pytest.approx(r["median_s"] / r["steps"])
    assert rows["T1", "jnet"]["steps"] == 20 and rows["T2", "jnet"]["steps"] == 1024 // 64
    assert rows["T1", "reference"]["vs_reference"] == 1.0
    assert rows["T2", "numpy"]["vs_numpy"] == 1.0
    # Same init, same batches, same update: all three end on the same loss.
    for task in ("T1", "T2"):
        ref = rows[task, "reference"]["final_loss"]
        for impl in ("jnet", "numpy"):
            assert rows[task, impl]["final_loss"] == pytest.approx(ref, rel=1e-3)

    assert "| task | impl | median |" in out and "| T2 | numpy |" in out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["environment"]["versions"]["jax"] and saved["environment"]["device"]
    assert len(saved["rows"]) == 6 and "python benchmarks/mlp.py --quick" in saved["command"]

    text = md.read_text()
    assert "kept text" in text and "old gpu" in text  # the other section is kept
    assert "<!-- BEGIN cpu -->" in text and "| T1 | jnet |" in text
    assert "--quick --synthetic" in text  # the exact command is recorded


def test_markdown_section_is_replaced_not_appended(tmp_path):
    md = tmp_path / "B.md"
    report.update_markdown(md, "cpu", "first", report.MD_TEMPLATE)
    report.update_markdown(md, "cpu", "second", report.MD_TEMPLATE)
    text = md.read_text()
    assert "second" in text and "first" not in text and text.count("<!-- BEGIN cpu -->") == 1


def test_kernel_count_reads_the_innermost_loop():
    import jax
    import jax.numpy as jnp

    def f(x):
        return jax.lax.scan(lambda c, _: (jnp.sin(c) * 2 + 1, None), x, None, length=3)[0]

    count = timing.kernel_count(jax.jit(f).lower(jnp.ones(4, jnp.float32)).compile())
    assert count is None or count >= 1


@pytest.mark.slow
def test_speedrun_quick_runs_on_real_mnist(data_dir, tmp_path):
    sys.path.insert(0, str(REPO / "experiments"))  # the speed-run script, as python runs it
    import speedrun

    out = speedrun.main(["--quick", "--data-dir", str(data_dir), "--out", str(tmp_path)])
    best = out["speedrun"]["best"]
    assert best["seconds"] > 0 and best["compile_s"] > 0
    assert 0.3 < best["accuracy_min"] <= best["accuracy_mean"] <= 1.0  # 1 epoch of 2048 images
    assert "| quick | 784-32-10 |" in out["speedrun"]["table"]


def test_interleaved_rounds_rotate_the_order():
    calls = []
    impls = [timing.Impl(n, lambda n=n: calls.append(n) or n) for n in "abc"]
    last, times = timing.time_interleaved(impls, repeats=3)
    assert last == {"a": "a", "b": "b", "c": "c"}  # the warm-up's results
    assert calls == list("abcabcbcacab")  # warm-up, then rounds rotated by one
    stats = timing.summarize(times)
    assert set(stats) == set("abc") and all(len(s["times_s"]) == 3 for s in stats.values())
    assert all(s["min_s"] <= s["median_s"] <= s["max_s"] for s in stats.values())


def test_report_formats_for_people():
    assert [report.seconds(v) for v in (2.5, 0.0123, 4.5e-6, None)] == [
        "2.50 s", "12.3 ms", "4.5 us", "-"
    ]  # fmt: skip
    assert report.markdown_table(["a", "b"], [[1, "x"]]) == "| a | b |\n|---|---|\n| 1 | x |"


def test_help_is_fast_and_no_script_loads_another_with_importlib():
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "load_data.py"), "--help"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0 and "usage:" in done.stdout
    for path in (REPO / "benchmarks").glob("*.py"):
        assert "spec_from_file_location" not in path.read_text(), path


def test_every_benchmark_imports_and_parses_its_flags_in_process():
    # The timed runs are slow tests (or not tests at all); this keeps every script's module
    # level and flags exercised on the fast path.
    import cnn
    import load_data
    import lstm
    import mlp
    import resnet

    assert mlp.parse_args(["--quick", "--synthetic"]).quick
    assert lstm.parse_args(["--steps", "3"]).steps == 3
    assert resnet.parse_args(["--no-torch"]).no_torch
    names = [c.name for c in cnn.network().children]
    assert names[:3] == ["conv2d(32, 3)", "relu()", "max_pool(2)"]
    with pytest.raises(SystemExit):
        load_data.main(["--repeats"])  # a flag without its value: argparse's usage error
