"""Every GPU figure in one prepared run: each benchmark as its own process, with its own timeout.

    JNET_DATA_DIR=data python benchmarks/gpu_all.py              # on a GPU machine, < 9 minutes
    python benchmarks/gpu_all.py --quick                         # toy sizes, on any CPU (CI)

Steps, in this order (the most wanted figures first), each with its own time limit inside a
total budget (`--budget`, 540 s), so one that fails or hangs loses only itself:

  mlp         benchmarks/mlp.py T1-T3, with its bf16 and proto-floor rows (and its `gpu` section)
  speedrun    experiments/speedrun.py: the MLP speed run, and bf16 vs float32 on the tuned run
  cnn-speed   experiments/mnist_cnn.py --parts speed: training seconds to 99.0% test
  cnn         benchmarks/cnn.py --no-torch
  resnet      benchmarks/resnet.py --no-torch
  lstm        benchmarks/lstm.py --cells lstm gru rnn --no-torch
  transformer benchmarks/transformer.py --no-torch            (when the file exists)
  gpt         experiments/shakespeare_char.py --config gpu --iters 500 (when the file exists)

bf16 is measured where a layer has it: `dense(compute_dtype=bfloat16)`, i.e. the MLP rows and
the speed run's comparison. Each step's output goes to `<out>/<step>.log` (its own results
beside it, in `<out>/<step>/`), `<out>/summary.json` lists every step's command, exit status
and seconds, and the `gpu-all` sections of BENCHMARKS.md and README.md (between their
markers) get the table and each step's printed figures. `--quick` runs every step that has a
toy size (the transformer and GPT steps have none here: their own tests cover them), writes
its markdown into copies in `<out>/`, and never touches the repository's files.

The driver itself never starts JAX: a JAX process on the GPU takes most of its memory, and
the steps run one after another in processes of their own.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import report  # noqa: E402  (benchmarks/ is not a package)

BUDGET_S = 540  # the whole run: 9 minutes
TAIL_LINES = 40  # of each step's log in the markdown: its tables


class Step(NamedTuple):
    """One benchmark process. `{out}` in an argument is the step's own results folder.

    Attributes:
      name: its name in the table and its log's file name.
      script: the script, relative to the repository root.
      argv: its arguments on a GPU.
      quick: its arguments with `--quick` (toy sizes, CPU); None: not run with `--quick`.
      timeout_s: its time limit on a GPU (with `--quick`, the driver's `--step-timeout`).
      what: what it measures, for the table.
    """

    name: str
    script: str
    argv: tuple[str, ...]
    quick: tuple[str, ...] | None
    timeout_s: int
    what: str


TINY_CONV = ("--steps", "2", "--repeats", "1", "--batch", "8", "--lowering", "matmul", "--no-torch")
STEPS = (
    Step("mlp", "benchmarks/mlp.py",
         ("--tasks", "T1", "T2", "T3", "--bf16", "--variants", "--no-numpy", "--out", "{out}",
          "--write-md", "BENCHMARKS.md"),
         ("--quick", "--synthetic", "--repeats", "1", "--tasks", "T1", "--bf16", "--no-numpy",
          "--out", "{out}"),
         100, "MLP T1-T3, jnet vs jax.grad reference, bf16 rows"),
    Step("speedrun", "experiments/speedrun.py",
         ("--bf16-compare", "--no-progress", "--out", "{out}"),
         ("--quick", "--no-progress", "--out", "{out}"),
         75, "MLP speed run to 98.0% (5 seeds); bf16 vs float32, tuned run"),
    Step("cnn-speed", "experiments/mnist_cnn.py",
         ("--parts", "speed", "--no-progress", "--out", "{out}"),
         ("--parts", "speed", "--quick", "--no-progress", "--out", "{out}"),
         100, "MNIST CNN speed run: training seconds to 99.0% test (5 seeds)"),
    Step("cnn", "benchmarks/cnn.py", ("--steps", "50", "--repeats", "5", "--no-torch"),
         TINY_CONV, 45, "MNIST CNN step, jnet vs jax.grad"),
    Step("resnet", "benchmarks/resnet.py", ("--steps", "50", "--repeats", "5", "--no-torch"),
         TINY_CONV, 60, "ResNet block stack step, jnet vs jax.grad"),
    Step("lstm", "benchmarks/lstm.py",
         ("--cells", "lstm", "gru", "rnn", "--steps", "50", "--repeats", "5", "--no-torch",
          "--json", "{out}/lstm.json"),
         ("--steps", "2", "--repeats", "1", "--batch-size", "8", "--hidden", "8", "--no-torch",
          "--json", "{out}/lstm.json"),
         60, "LSTM, GRU and RNN steps (row-by-row MNIST), jnet vs jax.grad"),
    Step("transformer", "benchmarks/transformer.py", ("--no-torch",), None, 60,
         "transformer step, jnet vs jax.grad"),
    # 500 of the GPU config's 5000 iterations: its ms per iteration within this run's budget;
    # the whole run (~3 min on an A100 for nanoGPT) is a device call of its own (BENCHMARKS.md).
    Step("gpt", "experiments/shakespeare_char.py", ("--config", "gpu", "--iters", "500"), None,
         90, "character GPT on tiny Shakespeare: ms per iteration, GPU config (500 iterations)"),
)  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="toy sizes on any device (CI)")
    p.add_argument(
        "--out", type=pathlib.Path, default=None,
        help="results folder (default results/gpu/<UTC date and time>, or ...-quick)",
    )  # fmt: skip
    p.add_argument("--only", nargs="+", choices=[s.name for s in STEPS], default=None)
    p.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all the steps")
    p.add_argument(
        "--step-timeout", type=float, default=120.0, help="with --quick: each step's limit (s)"
    )
    p.add_argument(
        "--no-markdown", action="store_true", help="leave BENCHMARKS.md and README.md alone"
    )
    args = p.parse_args(argv)
    if args.budget <= 0 or args.step_timeout <= 0:
        p.error("--budget and --step-timeout must be positive")
    if args.out is None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H%M")
        args.out = REPO / "results" / "gpu" / (stamp + ("-quick" if args.quick else ""))
    if args.out.exists() and not args.out.is_dir():
        p.error(f"--out: {args.out} is a file; expected a folder")
    return args


def device() -> str:
    """The GPU's name from nvidia-smi (no JAX here), else the CPU's."""
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split("\n")  # fmt: skip
        if names[0].strip():
            return names[0].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"CPU ({report._cpu_model() or platform.processor() or '?'}, {os.cpu_count()} cores)"


def run_step(step: Step, args: argparse.Namespace, time_left: float) -> dict[str, Any]:
    """Runs one step as its own process; its output goes to `<out>/<name>.log`."""
    step_argv = step.quick if args.quick else step.argv
    folder = args.out / step.name
    argv = [a.replace("{out}", str(folder)) for a in step_argv or ()]
    shown = [a.replace("{out}", f"<out>/{step.name}") for a in step_argv or ()]
    row = {"step": step.name, "what": step.what, "command": shlex.join(
        ["python", step.script, *shown]), "seconds": None, "returncode": None}  # fmt: skip
    if step_argv is None:
        return {**row, "status": "not in --quick"}
    if not (REPO / step.script).is_file():
        return {**row, "status": f"missing ({step.script} not in this checkout)"}
    if time_left < 1:
        return {**row, "status": "skipped (the budget was spent)"}
    limit = min(args.step_timeout if args.quick else step.timeout_s, time_left)
    log = args.out / f"{step.name}.log"
    print(f"[gpu_all] {step.name}: {row['command']} (limit {limit:.0f} s)", flush=True)
    start = time.perf_counter()
    with log.open("w") as f:
        f.write(f"$ {row['command']}\n")
        f.flush()
        try:  # a new session: on timeout the step's whole process group is killed
            proc = subprocess.Popen([sys.executable, step.script, *argv], cwd=REPO, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            rc = proc.wait(timeout=limit)
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            rc, status = proc.wait(), f"timed out after {limit:.0f} s"
    seconds = time.perf_counter() - start
    print(f"[gpu_all] {step.name}: {status}, {seconds:.1f} s", flush=True)
    return {**row, "status": status, "seconds": round(seconds, 1), "returncode": rc,
            "log": log.name}  # fmt: skip


def log_tail(path: pathlib.Path, n: int = TAIL_LINES) -> str:
    """The last `n` lines of a log, progress bars' carriage returns resolved."""
    text = path.read_bytes().decode(errors="replace")  # read_text would turn \r into \n
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    return "\n".join(line for line in lines[-n:] if line.strip())


def sections(summary: dict[str, Any]) -> tuple[str, str]:
    """`(BENCHMARKS.md's gpu-all section, README.md's)` from the summary."""
    head = ["step", "what", "status", "seconds", "command"]
    rows = [[s["step"], s["what"], s["status"], "-" if s["seconds"] is None else s["seconds"],
             f"`{s['command']}`"] for s in summary["steps"]]  # fmt: skip
    intro = (f"Measured {summary['date']} on {summary['device']} by `{summary['command']}` "
             f"({summary['seconds']:.0f} s in all" + ("; --quick: toy sizes, not figures"
             if summary["quick"] else "") + ").")  # fmt: skip
    bench = ["## Every GPU figure in one run (`benchmarks/gpu_all.py`)", "", intro, "",
             report.markdown_table(head, rows), ""]  # fmt: skip
    for s in summary["steps"]:
        if s.get("log"):
            bench += [f"### {s['step']}: {s['status']}", "", "```",
                      log_tail(summary["out"] / s["log"]), "```", ""]  # fmt: skip
    ok = sum(s["status"] == "ok" for s in summary["steps"])
    readme = [f"GPU figures: {intro} {ok} of {len(rows)} steps ok; the figures are in "
              "BENCHMARKS.md's `gpu-all` section.", "",
              report.markdown_table(head[:4], [r[:4] for r in rows])]  # fmt: skip
    return "\n".join(bench), "\n".join(readme)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    steps = [s for s in STEPS if args.only is None or s.name in args.only]
    results = [run_step(s, args, args.budget - (time.perf_counter() - start)) for s in steps]
    summary = {
        "command": shlex.join(["python", "benchmarks/gpu_all.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device(), "quick": args.quick, "out": args.out,
        "seconds": time.perf_counter() - start, "steps": results,
        "jnet_data_dir": os.environ.get("JNET_DATA_DIR"),
    }  # fmt: skip
    report.write_json(args.out / "summary.json", summary)
    if not args.no_markdown:
        bench, readme = sections(summary)
        for name, text in (("BENCHMARKS.md", bench), ("README.md", readme)):
            target = REPO / name
            if args.quick:  # a copy: toy figures never land in the repository's files
                target = shutil.copyfile(REPO / name, args.out / name)
            report.update_markdown(pathlib.Path(target), "gpu-all", text, report.MD_TEMPLATE)
    for s in results:
        print(f"{s['step']:<12} {s['status']:<40} {s['seconds'] or '-'}")
    print(f"[gpu_all] {summary['seconds']:.0f} s; results in {args.out}")
    return summary


if __name__ == "__main__":
    summary = main()
    sys.exit(0 if all(s["status"] in ("ok", "not in --quick") or s["status"].startswith("missing")
                      for s in summary["steps"]) else 1)  # fmt: skip
