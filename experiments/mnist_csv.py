"""Tutorial 003: MNIST from a Kaggle-layout CSV, 784-20-10 and 784-30-20-10, full batch.

    python experiments/mnist_csv.py                        # CSV from MNIST, 5 seeds, ~10 min
    python experiments/mnist_csv.py --csv ~/kaggle/train.csv   # Kaggle's own train.csv
    python experiments/mnist_csv.py --epochs 100 50        # 100 and 50 epochs of the two nets

The tutorial reads Kaggle's digit-recognizer `train.csv` (42,000 rows: label, 784 pixels),
shuffles it, keeps the last 1,000 rows as a test set and divides pixels by 255. Kaggle's
file is not here, so by default we write a stand-in with the same layout and size: 42,000
MNIST training images in a seeded shuffle (`jnet.data.mnist_to_csv`); `--csv` reads any
file in that layout instead. Both nets are ReLU + softmax cross entropy (mean over the
batch), init U(-0.5, 0.5) for weights and biases, lr 0.1, full batch on 41,000 rows:

  784-20-10, 500 epochs: the tutorial prints the training accuracy every 10 epochs,
    84.4% at epoch 320 (counting from 0, i.e. after 320 updates).
  784-30-20-10, 200 epochs: it prints the test accuracy every 10 epochs, 81.3% at epoch
    190 (after 191 updates: it trains, then predicts).

Each seed shuffles the rows its own way (so it has its own 1,000 test rows) and draws its
own initial weights: the table shows mean ± std over `--num-seeds` (default 5) runs.

Two small departures of the tutorial's code, for the record: its 784-20-10 divides the
gradient by m = 42,000 (all rows) instead of 41,000 (a 2.4% smaller step), and its
DenseLayer class back-propagates through the weights it has just updated.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import common as ex
from table import print_table, row

if TYPE_CHECKING:
    import numpy as np

    import jnet

NAME = "mnist_csv"
ROWS = 42_000  # Kaggle's train.csv has 42,000 labelled rows
TEST_ROWS = 1_000  # tutorial: the last 1000 rows after the shuffle
LR = 0.1  # tutorial: alpha 0.1 for both nets
EPOCHS_SMALL = 500  # 784-20-10
EPOCHS_DEEP = 200  # 784-30-20-10
# The tutorial's printed numbers, epoch (from 0) -> accuracy.
# fmt: off
TUTORIAL_SMALL_TRAIN = dict(zip(range(0, 330, 10), [
    0.0756, 0.2983, 0.4287, 0.5088, 0.5665, 0.6085, 0.6423, 0.6700, 0.6926, 0.7106, 0.7258,
    0.7395, 0.7499, 0.7594, 0.7687, 0.7769, 0.7828, 0.7897, 0.7958, 0.8018, 0.8066, 0.8109,
    0.8151, 0.8191, 0.8228, 0.8253, 0.8285, 0.8313, 0.8336, 0.8364, 0.8391, 0.8416, 0.8441,
], strict=True))
TUTORIAL_DEEP_TEST = dict(zip(range(0, 200, 10), [
    0.085, 0.221, 0.361, 0.447, 0.506, 0.577, 0.614, 0.647, 0.672, 0.708, 0.723, 0.738,
    0.751, 0.763, 0.776, 0.791, 0.797, 0.804, 0.810, 0.813,
], strict=True))
# fmt: on
CURVE = {"accuracy": "train", "val_accuracy": "test"}  # fit's history key -> its data split


def parse_args(argv=None):
    epochs = {
        "nargs": "+",
        "default": [EPOCHS_SMALL, EPOCHS_DEEP],
        "metavar": "N",
        "help": "full-batch epochs of 784-20-10 and of 784-30-20-10 (one number: both; "
        "default: %(default)s)",
    }
    p = ex.parser(NAME, __doc__, devices=True, epochs=epochs)
    p.add_argument(
        "--csv",
        type=str,
        default=None,
        help="a Kaggle-layout CSV to read (default: make one from MNIST in --out)",
    )
    p.add_argument(
        "--rows", type=ex.positive_int, default=ROWS, help="rows of the CSV made from MNIST"
    )
    p.add_argument(
        "--test-rows", type=ex.positive_int, default=TEST_ROWS, help="last N rows: the test set"
    )
    p.add_argument("--lr", type=float, default=LR, help="SGD learning rate")
    p.add_argument(
        "--num-seeds",
        type=ex.positive_int,
        default=5,
        help="runs with seeds seed, seed+1, ... (shuffle, init)",
    )
    quick = {"rows": 600, "test_rows": 100, "epochs": [20], "num_seeds": 1}
    args = ex.parse(p, argv, quick)
    if len(args.epochs) > 2:
        p.error(f"argument --epochs: one or two numbers (one per net), got {len(args.epochs)}")
    args.epochs_small, args.epochs_deep = args.epochs[0], args.epochs[-1]
    if args.csv is None and args.test_rows >= args.rows:  # a --csv is checked once read
        p.error(f"--test-rows {args.test_rows} must be below --rows {args.rows} (the rest train)")
    return args


def network(*hidden: int) -> jnet.Layer:
    import jnet

    init = jnet.initializers.uniform(-0.5, 0.5)  # tutorial: np.random.rand(...) - 0.5, w and b
    return jnet.mlp([*hidden, 10], w_init=init, b_init=init)


def load(args) -> tuple[np.ndarray, np.ndarray, str]:
    """The CSV's rows as `(x float32 (N, 784) in [0, 1], y int64 (N,), path)`."""
    from jnet import data

    if args.csv:
        path = args.csv
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"mnist_{args.rows}_seed{args.seed}.csv"
        if not path.exists():
            print(f"writing {path} ({args.rows} MNIST training images, seeded shuffle)")
            data.mnist_to_csv(path, args.data_dir, num_rows=args.rows, seed=args.seed)
    pixels, labels = data.load_csv(path)
    return data.scale(pixels), labels, str(path)


def split(x: np.ndarray, y: np.ndarray, test_rows: int, seed: int):
    """Shuffles the rows with `seed` (tutorial: np.random.shuffle(data)); the last are test."""
    import numpy as np

    if test_rows >= len(y):
        raise ValueError(f"--test-rows {test_rows} must be below the CSV's {len(y)} rows")
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    m = len(y) - test_rows
    return (x[:m], y[:m]), (x[m:], y[m:])


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax  # after the flags: --help and a bad flag answer without loading JAX
    import numpy as np
    import plots

    import jnet

    timer = ex.Timer()
    x_all, y_all, csv_path = load(args)
    loss = jnet.softmax_cross_entropy
    mesh = ex.mesh(args.devices)
    configs = {  # name -> (net, epochs, tutorial's curve, which curve it is)
        "784-20-10": (network(20), args.epochs_small, TUTORIAL_SMALL_TRAIN, "accuracy"),
        "784-30-20-10": (network(30, 20), args.epochs_deep, TUTORIAL_DEEP_TEST, "val_accuracy"),
    }
    results = {name: [] for name in configs}
    for seed in ex.seeds(args):
        # Each seed draws its own shuffle (so its own 1000 test rows) and initial weights.
        (x, y), (x_test, y_test) = split(x_all, y_all, args.test_rows, seed)
        print(f"seed {seed}: {csv_path}: {len(x)} training rows, {len(x_test)} test rows")
        fit_kwargs = dict(validation=(x_test, y_test), mesh=mesh, progress=not args.no_progress)
        for i, (name, (net, epochs, _, _)) in enumerate(configs.items()):
            print(f"seed {seed}: {name}, lr {args.lr:g}, {epochs} full-batch epochs")
            key = jax.random.fold_in(jax.random.key(seed), i)
            log = ex.log_dir(args, f"{name}-seed{seed}")
            params, _, history = jnet.fit(
                net, loss, args.lr, x, y, epochs=epochs, key=key, log_dir=log, **fit_kwargs
            )
            final = {
                "train": jnet.evaluate(net, loss, params, x, y)["accuracy"],
                "test": jnet.evaluate(net, loss, params, x_test, y_test)["accuracy"],
            }
            results[name].append(
                {"seed": seed, "history": history, "final": final, "params": params}
            )

    same = (len(x), len(x_test), args.lr) == (ROWS - TEST_ROWS, TEST_ROWS, LR)
    deep = results["784-30-20-10"]
    rows = []
    # fit's history["accuracy"][e] is the training batch accuracy before update e+1, i.e.
    # after e updates: the tutorial's print at epoch e. history["val_accuracy"][e] is
    # measured after update e+1: the tutorial's deep-net print at epoch e.
    for name, (_, epochs, tutorial, key) in configs.items():
        runs, which, at = results[name], CURVE[key], max(tutorial)  # the tutorial's last print
        if epochs > at:
            values = [r["history"][key][at] for r in runs]
            rows.append(
                row(name, f"{which} acc, epoch {at}", values, tutorial[at] if same else None)
            )
        rows += [
            row(
                name,
                f"{split} acc, end ({epochs} ep)",
                [r["final"][split] for r in runs],
                None,
                note="tutorial: not reported",
            )
            for split in ("train", "test")
        ]
    print_table(
        f"Tutorial 003, MNIST CSV ({len(x)} train / {len(x_test)} test rows, "
        "full batch): ours vs tutorial",
        rows,
    )

    files = []
    for (name, (_, _, tutorial, key)), stem in zip(configs.items(), ("small", "deep"), strict=True):
        h = results[name][0]["history"]
        which = CURVE[key]  # the curve the tutorial printed
        lines = {}
        for r in results[name]:  # that curve for every seed: the spread the tutorial is in
            acc = np.asarray(r["history"][key]) * 100
            lines[f"ours: {which}, seed {r['seed']}"] = (np.arange(len(acc)), acc)
        if same:
            lines[f"tutorial: {which}"] = (list(tutorial), [v * 100 for v in tutorial.values()])
        style = lambda label: (
            {"marker": "o", "ls": "", "ms": 4, "color": "k"}
            if label.startswith("tutorial")
            else {"lw": 1.0}
        )
        files.append(
            plots.series(
                lines,
                args.out / f"accuracy_{stem}.png",
                x_label=f"epoch (the {which} accuracy the tutorial prints at that epoch)",
                y_label=f"{which} accuracy (%)",
                title=f"{name}, U(-0.5, 0.5) init, lr {args.lr:g}, full batch",
                style=style,
            )
        )
        files.append(
            plots.curves(h, args.out / f"curves_{stem}.png", title=f"{name} (seed {args.seed})")
        )
    net, _, _, _ = configs["784-30-20-10"]
    _, (x_test, y_test) = split(x_all, y_all, args.test_rows, args.seed)  # the first seed's
    predicted = np.argmax(jnet.predict(net, deep[0]["params"], x_test[:32]), axis=-1)
    files.append(
        plots.image_grid(
            ex.images(x_test[:32]),
            y_test[:32],
            predicted,
            args.out / "predictions.png",
            title=f"784-30-20-10 after {args.epochs_deep} epochs: first 32 test rows",
        )
    )
    config = {
        "csv": csv_path,
        "train_rows": len(x),
        "test_rows": len(x_test),
        "lr": args.lr,
        "epochs": {"784-20-10": args.epochs_small, "784-30-20-10": args.epochs_deep},
        "init": "uniform(-0.5, 0.5) for w and b",
    }
    metrics = {
        "tutorial": "003",
        "config": config,
        "rows": rows,
        "runs": ex.records(results, ("seed", "final"), history_every=10),
    }
    return ex.finish(args, argv, metrics, files, timer())


if __name__ == "__main__":
    main(sys.argv[1:])
