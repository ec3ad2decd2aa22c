"""benchmarks/gpu_all.py: every step in its own process and time limit; --quick on the CPU.

conftest.py puts benchmarks/ on sys.path.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import gpu_all
import pytest
from _scripts_support import run as run_script

REPO = pathlib.Path(__file__).resolve().parents[2]


def fake_repo(tmp_path, monkeypatch):
    """A repository of three tiny scripts (ok, failing, hanging) and the steps that run them."""
    scripts = {
        "ok.py": "import sys; print('table of', sys.argv[1:]); print('\\rbar 50%\\rbar 100%')",
        "fail.py": "raise SystemExit(3)",
        "hang.py": "import time; print('started', flush=True); time.sleep(60)",
    }
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
    for name in ("BENCHMARKS.md", "README.md"):
        marked = "<!-- BEGIN gpu-all -->\npending\n<!-- END gpu-all -->"
        (tmp_path / name).write_text(f"# {name}\n\n{marked}\n")
    steps = (
        gpu_all.Step("hang", "hang.py", ("--x",), ("--x",), 1, "hangs"),
        gpu_all.Step("fail", "fail.py", (), (), 30, "fails"),
        gpu_all.Step("ok", "ok.py", ("--out", "{out}"), ("--out", "{out}"), 30, "works"),
        gpu_all.Step("absent", "absent.py", (), (), 30, "not written yet"),
        gpu_all.Step("gpu-only", "ok.py", (), None, 30, "no toy size"),
    )
    monkeypatch.setattr(gpu_all, "REPO", tmp_path)
    monkeypatch.setattr(gpu_all, "STEPS", steps)
    return tmp_path


@pytest.mark.slow  # starts and kills processes
def test_a_failing_or_hanging_step_loses_only_itself(tmp_path, monkeypatch):
    repo = fake_repo(tmp_path, monkeypatch)
    summary = gpu_all.main(["--out", str(repo / "res")])
    status = {s["step"]: s["status"] for s in summary["steps"]}
    assert status == {
        "hang": "timed out after 1 s",
        "fail": "failed (exit 3)",
        "ok": "ok",
        "absent": "missing (absent.py not in this checkout)",
        "gpu-only": "ok",
    }
    ok = next(s for s in summary["steps"] if s["step"] == "ok")
    assert ok["command"] == "python ok.py --out '<out>/ok'"
    assert f"--out', '{repo / 'res' / 'ok'}'" in (repo / "res" / "ok.log").read_text()
    assert "started" in (repo / "res" / "hang.log").read_text()
    saved = json.loads((repo / "res" / "summary.json").read_text())
    assert [s["step"] for s in saved["steps"]] == list(status)
    # Outside --quick the repository's own sections are replaced, the rest kept.
    bench, readme = ((repo / n).read_text() for n in ("BENCHMARKS.md", "README.md"))
    assert "pending" not in bench and "pending" not in readme
    assert "# BENCHMARKS.md" in bench and "### ok: ok" in bench and "bar 100%" in bench
    assert "bar 50%" not in bench  # progress bars resolved to their last state
    assert "| hang | hangs | timed out after 1 s |" in readme and "2 of 5 steps ok" in readme


def test_quick_skips_steps_without_a_toy_size_and_writes_copies(tmp_path, monkeypatch):
    repo = fake_repo(tmp_path, monkeypatch)
    summary = gpu_all.main(["--quick", "--out", str(repo / "q"), "--only", "ok", "gpu-only"])
    assert [s["status"] for s in summary["steps"]] == ["ok", "not in --quick"]
    assert "pending" in (repo / "README.md").read_text()  # the repository's files untouched
    assert "### ok: ok" in (repo / "q" / "BENCHMARKS.md").read_text()
    assert "--quick: toy sizes" in (repo / "q" / "README.md").read_text()


@pytest.mark.slow
def test_the_budget_bounds_every_step(tmp_path, monkeypatch):
    repo = fake_repo(tmp_path, monkeypatch)
    summary = gpu_all.main(["--out", str(repo / "b"), "--budget", "1.5", "--no-markdown"])
    status = [s["status"] for s in summary["steps"]]
    assert status[0] == "timed out after 1 s" and "skipped (the budget was spent)" in status
    assert "pending" in (repo / "BENCHMARKS.md").read_text()


def test_the_repository_documents_and_marks_the_gpu_run():
    """README and BENCHMARKS.md carry the section the run replaces, and the device command."""
    readme, bench = ((REPO / n).read_text() for n in ("README.md", "BENCHMARKS.md"))
    for text in (readme, bench):
        assert "<!-- BEGIN gpu-all -->" in text and "<!-- END gpu-all -->" in text
    assert "pip install --no-deps -e ." in bench and "benchmarks/gpu_all.sh" in bench
    for step in gpu_all.STEPS:
        assert (REPO / step.script).is_file() or step.name in ("transformer", "gpt"), step


@pytest.mark.parametrize("quick", [False, True], ids=["gpu", "quick"])
def test_every_steps_flags_parse_with_its_scripts_own_parser(quick, tmp_path, monkeypatch):
    """A renamed flag in a benchmark breaks this fast test, not the GPU run."""
    monkeypatch.syspath_prepend(str(REPO / "experiments"))
    for step in gpu_all.STEPS:
        argv = step.quick if quick else step.argv
        if argv is None or not (REPO / step.script).is_file():
            continue
        argv = [a.replace("{out}", str(tmp_path / step.name)) for a in argv]
        spec = importlib.util.spec_from_file_location(f"_gpu_all_{step.name}", REPO / step.script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        args = module.parse_args(argv)
        if step.name in ("cnn", "resnet"):
            assert args.no_torch and args.lowering == ("matmul" if quick else None)


@pytest.mark.slow
def test_quick_run_of_every_step(tmp_path_factory):
    """The real steps at toy sizes on the CPU (about 1.5 min of CPU time), as CI runs them:
    the run tests/experiments/test_scripts.py checks too."""
    before = {n: (REPO / n).read_text() for n in ("README.md", "BENCHMARKS.md")}
    proc = run_script("benchmarks/gpu_all.py", tmp_path_factory)
    tmp_path = proc.out
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    status = {s["step"]: s["status"] for s in summary["steps"]}
    assert status == {s.name: "ok" if s.quick else "not in --quick" for s in gpu_all.STEPS}
    for s in summary["steps"]:
        if s["status"] == "ok":
            assert (tmp_path / f"{s['step']}.log").stat().st_size > 0
    assert json.loads((tmp_path / "lstm" / "lstm.json").read_text())["rows"]
    assert "### resnet: ok" in (tmp_path / "BENCHMARKS.md").read_text()
    assert before == {n: (REPO / n).read_text() for n in before}  # --quick wrote copies only


def test_the_shell_wrapper_runs_the_driver():
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_all.sh", "--help"], cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0 and "--quick" in proc.stdout, proc.stderr
