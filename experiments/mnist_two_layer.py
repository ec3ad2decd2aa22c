"""Tutorial 000: a 784-512-10 ReLU/softmax net, full batch on the first 1000 MNIST images.

    python experiments/mnist_two_layer.py                 # the tutorial's run, ~1 min on CPU
    python experiments/mnist_two_layer.py --num-seeds 5   # mean ± std over 5 seeds
    python experiments/mnist_two_layer.py --epochs 100 1000   # report after 100 and 1000
    python experiments/mnist_two_layer.py --data-dir ~/fashion-mnist   # any MNIST-layout data

The tutorial ("Demystifying Neural Networks") trains on the first 1000 training images
and tests on the first 200 test images: init randn * 0.01 for weights and biases, lr 0.1,
full-batch gradient descent on the mean softmax cross entropy. It reports train/test
accuracy 92.4%/87.5% after 250 iterations and 97.1%/91.5% after 500. We report the same,
plus the accuracy on all 10,000 test images (200 images give about ±2% of binomial noise).
The output layer is `dense(10)` with `softmax_cross_entropy` on its logits: the same
function and gradient (softmax - onehot) / N as the tutorial's softmax layer + CE.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import common as ex
from table import print_table, row

if TYPE_CHECKING:
    import jnet

NAME = "mnist_two_layer"
TRAIN_SIZE = 1000  # tutorial: training_images[:1000]
TEST_SIZE = 200  # tutorial: test_images[:200]
HIDDEN = 512  # tutorial: n^H = 512
LR = 0.1  # tutorial: learning rate 0.1, plain gradient descent
EPOCHS = (250, 500)  # tutorial: one run of 250 iterations, one of 500 (full batch: 1 step each)
INIT_STD = 0.01  # tutorial: np.random.randn(...) * 0.01 for w AND b
# The tutorial's reported accuracies: iterations -> (train, test on the first 200).
TUTORIAL = {250: (0.924, 0.875), 500: (0.971, 0.915)}


def parse_args(argv=None):
    epochs = {
        "nargs": "+",
        "default": list(EPOCHS),
        "help": "report accuracies after these many full-batch epochs (= iterations)",
    }
    p = ex.parser(NAME, __doc__, devices=True, epochs=epochs)
    p.add_argument(
        "--train-size", type=ex.positive_int, default=TRAIN_SIZE, help="first N training images"
    )
    p.add_argument(
        "--test-size", type=ex.positive_int, default=TEST_SIZE, help="first N test images"
    )
    p.add_argument("--hidden", type=ex.positive_int, default=HIDDEN, help="hidden units")
    p.add_argument("--lr", type=float, default=LR, help="SGD learning rate")
    p.add_argument(
        "--num-seeds", type=ex.positive_int, default=1, help="runs with seeds seed, seed+1, ..."
    )
    args = ex.parse(p, argv, quick={"train_size": 100, "test_size": 50, "epochs": [10, 20]})
    args.epochs = sorted(set(args.epochs))  # a repeated stop: a 0-epoch stage
    return args


def network(hidden: int) -> jnet.Layer:
    import jnet

    init = jnet.initializers.normal(INIT_STD)
    return jnet.serial(jnet.dense(hidden, init, init), jnet.relu(), jnet.dense(10, init, init))


def fit_in_stages(
    net: Any,
    loss: Any,
    optimizer: Any,
    x: Any,
    y: Any,
    *,
    stops: Sequence[int],
    key: Any,
    evaluate: Callable[[Any], Any],
    log: pathlib.Path | None = None,
    **fit_kwargs: Any,
) -> tuple[Any, dict[str, list], list[Any]]:
    """`jnet.fit` up to each cumulative epoch count in `stops`, evaluating at each stop.

    E.g. `stops=(250, 500)` trains 250 epochs, calls `evaluate(params)`, then 250 more
    from those params. Each stage starts a fresh optimizer state: exactly one
    uninterrupted run for a stateless optimizer (plain SGD), not for momentum or Adam.

    With `log`, stage i logs to `log/epochs-<start>-<stop>/metrics.jsonl` (fit numbers
    each stage's epochs from 1).

    Returns:
      `(params, history, [evaluate(params) at each stop])`, the history's epochs
      numbered across stages.
    """
    import jax

    import jnet

    params = fit_kwargs.pop("params", None)
    history: dict[str, list] = {}
    results = []
    done = 0
    for i, stop in enumerate(stops):
        stage_key = key if i == 0 else jax.random.fold_in(key, i)  # stage 0 draws the init
        params, _, h = jnet.fit(
            net,
            loss,
            optimizer,
            x,
            y,
            epochs=stop - done,
            key=stage_key,
            params=params,
            log_dir=None if log is None else log / f"epochs-{done}-{stop}",
            **fit_kwargs,
        )
        for k, v in h.items():
            history.setdefault(k, []).extend([e + done for e in v] if k == "epoch" else v)
        results.append(evaluate(params))
        done = stop
    return params, history, results


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax  # after the flags: --help and a bad flag answer without loading JAX
    import numpy as np
    import plots

    import jnet.data

    timer = ex.Timer()
    (x, y), (x_all, y_all) = jnet.data.mnist_flat(args.data_dir, train_size=args.train_size)
    x_test, y_test = x_all[: args.test_size], y_all[: args.test_size]
    net, loss = network(args.hidden), jnet.softmax_cross_entropy
    mesh = ex.mesh(args.devices)
    stops = args.epochs

    def evaluate(params):
        return {
            "train": jnet.evaluate(net, loss, params, x, y)["accuracy"],
            "test": jnet.evaluate(net, loss, params, x_test, y_test)["accuracy"],
            "test_all": jnet.evaluate(net, loss, params, x_all, y_all)["accuracy"],
        }

    runs = []
    for seed in ex.seeds(args):
        print(f"seed {seed}: {len(x)} images, 784-{args.hidden}-10, lr {args.lr:g}, {stops} it")
        params, history, at_stop = fit_in_stages(
            net,
            loss,
            args.lr,
            x,
            y,
            stops=stops,
            key=jax.random.key(seed),
            evaluate=evaluate,
            validation=(x_test, y_test),
            mesh=mesh,
            progress=not args.no_progress,
            log=ex.log_dir(args, f"seed{seed}"),
        )
        runs.append({"seed": seed, "params": params, "history": history, "at": at_stop})

    same_setup = (len(x), len(x_test), args.hidden, args.lr) == (
        TRAIN_SIZE,
        TEST_SIZE,
        HIDDEN,
        LR,
    )
    rows = []
    for i, it in enumerate(stops):
        tut = TUTORIAL.get(it) if same_setup else None
        run = f"784-{args.hidden}-10, {it} it"
        col = lambda k, i=i: [r["at"][i][k] for r in runs]
        rows += [
            row(run, f"train acc (first {len(x)})", col("train"), tut and tut[0]),
            row(run, f"test acc (first {len(x_test)})", col("test"), tut and tut[1]),
            row(
                run,
                f"test acc (all {len(x_all)})",
                col("test_all"),
                None,
                note="tutorial: not reported",
            ),
        ]
    print_table(f"Tutorial 000, MNIST 784-{args.hidden}-10 full batch: ours vs tutorial", rows)

    # Plots of the first seed's run.
    first = runs[0]
    marks = []
    if same_setup:
        for it, (tr, te) in TUTORIAL.items():
            marks += [(it, tr, "tutorial: train"), (it, te, "tutorial: test")]
    files = [
        plots.curves(
            first["history"],
            args.out / "curves.png",
            x_label="iteration",
            val_label=f"test (first {len(x_test)})",
            marks=marks,
            title=f"MNIST 784-{args.hidden}-10, first {len(x)} images, lr {args.lr:g} (seed "
            f"{first['seed']})",
        ),
    ]
    logits = jnet.predict(net, first["params"], x_test)
    predicted = np.argmax(logits, axis=-1)
    files.append(
        plots.image_grid(
            ex.images(x_test[:32]),
            y_test[:32],
            predicted[:32],
            args.out / "predictions.png",
            title=f"first 32 test images after {stops[-1]} iterations (red: wrong)",
        )
    )
    files.append(
        plots.misclassified(
            ex.images(x_test),
            y_test,
            predicted,
            args.out / "misclassified.png",
            title=f"misclassified among the first {len(x_test)} test images",
        )
    )
    config = {
        "train_size": len(x),
        "test_size": len(x_test),
        "hidden": args.hidden,
        "lr": args.lr,
        "epochs": stops,
        "init": f"normal({INIT_STD}) for w and b",
    }
    runs = [
        {
            "seed": r["seed"],
            "at": dict(zip(map(str, stops), r["at"], strict=True)),
            "history": ex.history_slice(r["history"], max(1, stops[-1] // 100)),
        }
        for r in runs
    ]
    metrics = {"tutorial": "000", "config": config, "rows": rows, "runs": runs}
    return ex.finish(args, argv, metrics, files, timer())


if __name__ == "__main__":
    main(sys.argv[1:])
