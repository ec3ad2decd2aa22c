"""Collects every experiment's metrics.json into docs/results.md (ours vs the tutorials).

    python experiments/results.py                 # results/*/metrics.json -> docs/results.md
    python experiments/results.py --images        # also copy the README images to docs/images

Run the experiments first (each writes `results/<name>/metrics.json`); this script only
reads them, so the table always shows numbers that a command produced. A section whose
results folder is not here (run on another machine, or long ago) is kept as the file has
it, so rerunning one experiment updates its section alone. Smoke runs (`--quick`) are left
out unless `--include-quick` is given.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

import common as ex
from table import table_lines

# Sections in reading order; any other results folder with a metrics.json follows.
ORDER = [
    "mnist_two_layer",
    "mnist_csv",
    "mnist_minibatch",
    "mnist_minibatch_tuned",
    "mnist_minibatch_tuned_cpu",
    "cat_classifier",
    "xor",
    "activations",
    "mnist_cnn",
    "mnist_cnn_plain",
    "mnist_cnn_bn",
    "mnist_cnn_speed_cpu",
    "cat_cnn",
]
TITLES = {
    "mnist_two_layer": "Tutorial 000: MNIST 784-512-10, full batch on 1000 images",
    "mnist_csv": "Tutorial 003: MNIST from a Kaggle-layout CSV, full batch",
    "mnist_minibatch": "Tutorial 004: MNIST 784-100-200-10, minibatch SGD",
    "mnist_minibatch_tuned": "Tuned plain MLPs on MNIST (with and without dropout)",
    "mnist_minibatch_tuned_cpu": "Tuned plain MLPs on MNIST, one seed on the CPU (for the time)",
    "cat_classifier": "Tutorial 002 and the deep-learning course: cat vs non-cat",
    "xor": "Tutorial 004: XOR",
    "activations": "Tutorial 002: activation functions and their derivatives",
    "mnist_cnn": "MNIST CNNs: plain, batch norm + shifts, speed run to 99%",
    "mnist_cnn_plain": "MNIST plain CNN, no augmentation (3 seeds, the full recipe)",
    "mnist_cnn_bn": "MNIST CNN with batch norm + on-device shifts (3 seeds, the full recipe)",
    "mnist_cnn_speed_cpu": "MNIST CNN speed run to 99%, on the CPU",
    "cat_cnn": "Cat vs non-cat with a CNN (flips + shifts) beside the course's MLP",
}
# Why our numbers may differ from the tutorial's: facts about each setup, not results.
NOTES = {
    "mnist_two_layer": (
        "Same data, network, init scale, learning rate and iterations as the tutorial; only the "
        "random draw differs. 200 test images give about ±2 points of binomial noise, so the "
        "spread over seeds is shown, and the accuracy on all 10,000 test images beside it "
        "(lower: the first 200 test images are easier than the rest)."
    ),
    "mnist_csv": (
        "Kaggle's train.csv is not here: the CSV is 42,000 MNIST training images in a seeded "
        "shuffle, in Kaggle's layout (`--csv` reads Kaggle's own file). Each seed has its own "
        "shuffle (its own 1,000 test rows) and initial weights. The tutorial's 784-20-10 divides "
        "its gradient by 42,000 instead of 41,000 (a 2.4% smaller step), and its DenseLayer "
        "back-propagates through freshly updated weights; both effects are far below the spread."
    ),
    "mnist_minibatch": (
        "The notebook was never run, so there is no number to match. Its gradients are those of "
        "the batch-mean loss (`grad_biases = grad_output.mean(0) * B` is a sum over the batch of "
        "the mean loss's gradient), exactly jnet's, so its learning rates carry over unchanged. "
        "It walks the data in file order with a last partial batch of 32; jnet shuffles every "
        "epoch and drops the partial batch."
    ),
    "mnist_minibatch_tuned": (
        "Hyperparameters chosen on a 55,000/5,000 train/validation split "
        "(`--val-size 5000`), then trained on all 60,000 images; the targets are the issue's "
        "(98.5% plain, 98.8% with dropout; the dropout paper reports 1.25% error for a 3x1024 "
        "ReLU net). The first seed's time includes compiling."
    ),
    "mnist_minibatch_tuned_cpu": (
        "The same command on the shared 2-core CPU, one seed, to show what it costs there."
    ),
    "cat_classifier": (
        "With randn * 0.01 the cost sits on a plateau near 0.644 (predicting 'non-cat' for "
        "everything: 34% test accuracy) until it escapes at an iteration that depends on the "
        "draw, so JAX seeds spread widely. 'tutorial's init' starts from the tutorial's own "
        "weights (np.random.seed(1), its randn calls in its order) and lands on its numbers. "
        "The tanh run's cost oscillates from iteration ~2100 on (lr 0.03 is near the edge of "
        "stability), so rounding differences between numpy and XLA change the late trace, not "
        "the test accuracy. For the course's rows the reference is the course's printout."
    ),
    "xor": (
        "The tutorial's notebook was not run. It has no biases (kept at zero here with "
        "optax.set_to_zero) and steps on the summed half squared error: lr 0.1 there is lr 0.2 "
        "on jnet's mean squared error over 4 examples."
    ),
    "activations": (
        "Derivatives from the hand-written backward passes (dy = 1), compared with jax.grad of "
        "the forward pass and the tutorial's closed forms (float32)."
    ),
    "mnist_cnn": (
        "The goals (99.3% plain, 99.5% with batch norm and shifts) sit in the tutorial column; "
        "the anchors are in the notes. The speed run's time is the compiled training chunks "
        "alone (compile and the test evaluations between chunks excluded)."
    ),
    "mnist_cnn_plain": "The `plain` part alone, on the 2-core CPU (`--parts plain`).",
    "mnist_cnn_bn": "The `bn` part alone, on the 2-core CPU (`--parts bn`).",
    "mnist_cnn_speed_cpu": (
        "The speed run's recipe on the 2-core CPU, alone on it; the goal (< 0.5 s) is for a GPU."
    ),
    "cat_cnn": (
        "50 test images: one image is 2 points. The tutorial column holds the course's 4-layer "
        "MLP from its own initial weights (80%); over JAX seeds that MLP averages 72.4%."
    ),
}
# README images: (results file, docs/images name).
IMAGES = [
    ("mnist_two_layer/curves.png", "mnist_two_layer_curves.png"),
    ("mnist_two_layer/predictions.png", "mnist_two_layer_predictions.png"),
]
MAX_IMAGE_BYTES = 200_000


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python experiments/results.py",
        description=__doc__.strip().splitlines()[0],
        epilog="\n".join(__doc__.strip().splitlines()[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--results",
        type=pathlib.Path,
        default=ex.RESULTS_DIR,
        help="folder holding one sub-folder per experiment (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("docs/results.md"),
        help="the Markdown file to write (default: %(default)s)",
    )
    p.add_argument(
        "--images",
        action="store_true",
        help="copy the README images into docs/images/ (next to --out)",
    )
    p.add_argument("--include-quick", action="store_true", help="include --quick smoke runs")
    return p.parse_args(argv)


def load(results: pathlib.Path, include_quick: bool) -> list[dict]:
    found = {p.parent.name: p for p in sorted(results.glob("*/metrics.json"))}
    # A quick run's folder, `<name>-quick`, sorts (and is titled) as its script's.
    rank = lambda n: (ORDER.index(base(n)) if base(n) in ORDER else len(ORDER), n)
    names = sorted(found, key=rank)
    out = []
    for name in names:
        metrics = json.loads(found[name].read_text())
        if metrics.get("config", {}).get("quick") and not include_quick:
            print(f"skipping {found[name]}: a --quick smoke run", file=sys.stderr)
            continue
        out.append({"name": name, **metrics})
    return out


def base(name: str) -> str:
    """A results folder's experiment: `xor-quick` -> `xor`."""
    return name.removesuffix(ex.QUICK_SUFFIX)


def section(m: dict) -> list[str]:
    dev = m.get("device", {})
    kind, backend = dev.get("device_kind", "?"), dev.get("backend", "?")
    where = kind if kind.lower() == backend else f"{kind} ({backend})"
    where += f", {dev.get('cpu_count', '?')} CPU cores, jax {dev.get('jax', '?')}"
    note = NOTES.get(base(m["name"]))
    return [
        f"## {TITLES.get(base(m['name']), m['name'])}"
        + (" (quick)" if m["name"] != base(m["name"]) else ""),
        "",
        f"```\n{m['command']}\n```",
        "",
        f"Ran on {where} in {m.get('seconds', float('nan')):.0f} s; plots (written to "
        f"`results/{m['name']}/`): " + ", ".join(f"`{f}`" for f in m.get("files", [])),
        "",
        *table_lines(m["rows"], markdown=True),
        "",
        *([note, ""] if note else []),
    ]


def kept_sections(path: pathlib.Path) -> dict[str, list[str]]:
    """The `## ` sections of an existing results file, by heading (none if it is absent)."""
    sections: dict[str, list[str]] = {}
    if path.exists():
        current = None
        for line in path.read_text().splitlines():
            if line.startswith("## "):
                current = sections.setdefault(line, [])
            if current is not None:
                current.append(line)
    return sections


def main(argv=None) -> pathlib.Path:
    args = parse_args(argv)
    metrics = load(args.results, args.include_quick)
    if not metrics:
        raise SystemExit(f"no metrics.json under {args.results}/*/: run the experiments first")
    fresh = {section(m)[0]: section(m) for m in metrics}
    # Sections in ORDER: fresh ones replace kept ones of the same heading; then the rest.
    kept = kept_sections(args.out)
    ordered = [TITLES[n] for n in ORDER if n in TITLES]
    heads = [f"## {t}" for t in ordered if f"## {t}" in kept or f"## {t}" in fresh]
    heads += [h for h in [*kept, *fresh] if h not in heads]
    lines = [
        "# Results: jnet beside the tutorials",
        "",
        "Generated by `python experiments/results.py` from `results/*/metrics.json`; do not "
        'edit by hand. "ours" with several seeds reads mean ± sample std (n = seeds); '
        '"tutorial" is the number the tutorial printed ("-": it printed none). The commands '
        "assume `JNET_DATA_DIR` names the folder holding `mnist/` and `catvnoncat/` (or pass "
        "`--data-dir`).",
        "",
    ]
    for head in heads:
        lines += fresh.get(head) or kept[head]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines).rstrip("\n") + "\n")
    print(f"wrote {args.out} ({len(fresh)} experiments updated, {len(heads) - len(fresh)} kept)")
    if args.images:
        folder = args.out.parent / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for src, dst in IMAGES:
            src = args.results / src
            size = src.stat().st_size
            if size > MAX_IMAGE_BYTES:
                raise SystemExit(f"{src} is {size} bytes, over {MAX_IMAGE_BYTES}: shrink it")
            shutil.copyfile(src, folder / dst)
            print(f"copied {src} -> {folder / dst} ({size // 1000} KB)")
    return args.out


if __name__ == "__main__":
    main(sys.argv[1:])
