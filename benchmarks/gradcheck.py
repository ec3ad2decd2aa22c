"""How long the gradient checker takes, cold, in a fresh process: the README Quickstart's
`check_gradients` of a 4-16-3 net and a single small layer's `assert_gradients`.

    python benchmarks/gradcheck.py                       # this tree
    python benchmarks/gradcheck.py --ref 165a179         # before vs after: a commit beside it

Each measurement is a fresh interpreter (nothing compiled yet), timed from after the
imports and the setup to the end of the check, as a user's first check runs; the
interpreters of every tree are interleaved, so a noisy neighbour slows them alike. It also
counts XLA compilations (`jax.monitoring`), where the time goes. Prints a table; a speed
target is read off it on an idle machine (the load average is printed with it), never
asserted by a test.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]

# Run in the child, with the jnet of the tree under test first on sys.path.
CHILD = r"""
import json, sys, time
import jax, jax.monitoring, jax.numpy as jnp
import jnet, jnet.testing
jax.config.update("jax_enable_x64", True)
compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, secs, **kw: compiles.append(secs)
    if event == "/jax/core/compile/backend_compile_duration" else None)
task = sys.argv[1]
if task == "quickstart":
    net = jnet.serial(jnet.dense(16), jnet.tanh(), jnet.dense(3))
    _, params = net.init(jax.random.key(0), (8, 4))
    x = jax.random.normal(jax.random.key(1), (8, 4))
    y = jax.random.randint(jax.random.key(2), (8,), 0, 3)
    run = lambda: jnet.check_gradients(net, jnet.softmax_cross_entropy, params, x, y)
else:
    run = lambda: jnet.testing.assert_gradients(jnet.dense(3), (6, 5))
compiles.clear()
start = time.perf_counter()
report = run()
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "compiles": len(compiles),
                  "compile_s": sum(compiles), "ok": bool(report.ok)}))
"""

TASKS = {
    "quickstart": "check_gradients, 4-16-3 net (README Quickstart)",
    "layer": "assert_gradients(dense(3), (6, 5))",
}


def _tree(ref: str, into: pathlib.Path) -> pathlib.Path:
    """The files of commit `ref`, extracted under `into` (git archive: no worktree)."""
    dest = into / ref
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref],
                             check=True, capture_output=True).stdout  # fmt: skip
    tar = dest / "tree.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    return dest


def _measure(tree: pathlib.Path, task: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", CHILD, task], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{tree} {task}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", nargs="*", default=[], help="commits to time beside this tree")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per row")
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--quick", action="store_true", help="one process per row")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": REPO} | {ref[:12]: _tree(ref, pathlib.Path(tmp)) for ref in args.ref}
        runs: dict[tuple[str, str], list[dict]] = {(t, k): [] for t in trees for k in args.tasks}
        for _ in range(repeats):  # interleaved: every tree and task once per round
            for task in args.tasks:
                for name, tree in trees.items():
                    runs[name, task].append(_measure(tree, task))
    rows = []
    for (name, task), got in runs.items():
        times = [g["seconds"] for g in got]
        rows.append({"tree": name, "task": task, "median_s": statistics.median(times),
                     "min_s": min(times), "compiles": got[0]["compiles"],
                     "compile_s": statistics.median(g["compile_s"] for g in got),
                     "ok": all(g["ok"] for g in got)})  # fmt: skip
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"gradient checker, cold (fresh process, after import); {os.cpu_count()} CPUs, "
          f"load average {load}; {repeats} process(es) per row")  # fmt: skip
    wide = max(len(r["tree"]) for r in rows)
    head = f"{'task':<10} {'tree':<{wide}} {'median s':>9} {'min s':>7} {'compiles':>8} " + (
        f"{'compile s':>9}  ok"
    )
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['task']:<10} {r['tree']:<{wide}} {r['median_s']:>9.2f} {r['min_s']:>7.2f} "
              f"{r['compiles']:>8} {r['compile_s']:>9.2f}  {'yes' if r['ok'] else 'NO'}")
    for task, what in TASKS.items():
        if task in args.tasks:
            print(f"{task}: {what}")
    return rows


if __name__ == "__main__":
    main()
