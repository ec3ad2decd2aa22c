"""Every experiment and benchmark script run as its users run it: `python <dir>/<name>.py ...`
from the repository root, in a fresh interpreter (nothing imported by the test process
helps it, as `jnet.data` once helped sequential_mnist.py), with its smallest flags.

Each command runs once per test session (`run`): the generic checks of
tests/experiments/test_scripts.py and the scripts' own tests (their tables, metrics.json,
losses) read the same run, so CI pays for each script once.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import NamedTuple

REPO = pathlib.Path(__file__).resolve().parents[1]
# The modules the scripts of each folder import by name: not scripts themselves.
SHARED = {
    "experiments": {"common", "plots", "recipes", "table"},
    "benchmarks": {"conv_flags", "mlp_impls", "report", "timing"},
}
QUICK = ["--quick", "--no-progress", "--out", "{out}"]
DATA = ["--data-dir", "{data}"]
# Each script's smallest run; "{out}" is a fresh folder, "{data}" the data folder (a script
# whose command names it is skipped without the data).
COMMANDS = {
    "experiments/activations.py": QUICK,
    "experiments/xor.py": QUICK,
    "experiments/mnist_two_layer.py": QUICK + DATA,
    "experiments/mnist_csv.py": QUICK + DATA,
    "experiments/mnist_minibatch.py": QUICK + DATA,
    "experiments/cat_classifier.py": QUICK + DATA,
    "experiments/sequential_mnist.py": QUICK + DATA,
    "experiments/speedrun.py": QUICK + DATA,
    "experiments/mnist_cnn.py": QUICK + DATA,
    "experiments/cat_cnn.py": QUICK + DATA,
    # Collects a results folder (activations' quick run, copied there first: see `run`).
    "experiments/results.py": [
        "--results", "{out}/results", "--out", "{out}/results.md", "--include-quick"
    ],
    "benchmarks/mlp.py": ["--quick", "--synthetic", "--repeats", "1", "--tasks", "T1", "--out",
                          "{out}"],
    "benchmarks/cnn.py": ["--steps", "1", "--repeats", "1", "--batch", "8", "--probe-steps", "1",
                          "--no-torch"],
    "benchmarks/resnet.py": ["--steps", "2", "--repeats", "1", "--batch", "8", "--no-torch"],
    "benchmarks/lstm.py": ["--steps", "1", "--repeats", "1", "--batch-size", "8", "--hidden",
                           "8", "--no-torch", "--data-dir", "{data}/mnist"],
    "benchmarks/load_data.py": ["--repeats", "1", *DATA],
    "experiments/shakespeare_char.py": QUICK + DATA + ["--iters", "30", "--top-k", "5"],
    "benchmarks/transformer.py": ["--quick", "--write-md", "{out}/BENCHMARKS.md"],
    "benchmarks/attention_memory.py": ["--quick"],
    "benchmarks/host_data.py": ["--quick", *DATA],
    "benchmarks/gradcheck.py": ["--quick", "--tasks", "layer"],
    "benchmarks/gpu_all.py": ["--quick", "--out", "{out}"],
}  # fmt: skip


class Run(NamedTuple):
    """One finished command: its exit status, output, folder and wall time."""

    script: str
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    out: pathlib.Path
    seconds: float

    def metrics(self) -> dict:
        return json.loads((self.out / "metrics.json").read_text())


_RUNS: dict[str, Run] = {}


def scripts_found() -> set[str]:
    """Every script in experiments/ and benchmarks/ (all .py files but the shared modules)."""
    return {
        f"{folder}/{path.name}"
        for folder, shared in SHARED.items()
        for path in (REPO / folder).glob("*.py")
        if path.stem not in shared
    }


def needs_data(script: str) -> bool:
    return any("{data}" in a for a in COMMANDS[script])


def run(script: str, tmp_path_factory, data_dir: pathlib.Path | None = None) -> Run:
    """`python <script> <its COMMANDS flags>` from the repository root, once per session."""
    if script in _RUNS:
        return _RUNS[script]
    out = tmp_path_factory.mktemp(pathlib.Path(script).stem)
    if script == "experiments/results.py":  # it collects what another script wrote
        source = run("experiments/activations.py", tmp_path_factory).out / "metrics.json"
        (out / "results" / "activations-quick").mkdir(parents=True)
        shutil.copy(source, out / "results" / "activations-quick" / "metrics.json")
    fill = {"{out}": str(out), "{data}": str(data_dir)}
    argv = [_fill(a, fill) for a in COMMANDS[script]]
    env = dict(os.environ)
    # This checkout's jnet (as an editable install gives it); the data where the test finds
    # it (cnn.py and resnet.py read $JNET_DATA_DIR, falling back to random images).
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    if data_dir is not None:
        env["JNET_DATA_DIR"] = str(data_dir)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, script, *argv], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=1800,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    result = Run(script, argv, done.returncode, done.stdout, done.stderr, out, seconds)
    _RUNS[script] = result
    return result


def _fill(arg: str, fill: dict[str, str]) -> str:
    for key, value in fill.items():
        arg = arg.replace(key, value)
    return arg
