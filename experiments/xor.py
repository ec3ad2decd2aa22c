"""Tutorial 004's XOR: a 2-3-1 net, sigmoid hidden, linear output, MSE, 60,000 epochs.

    python experiments/xor.py            # seconds: all 60,000 epochs in one compiled loop

The tutorial's net has no biases; its weights start as np.random.uniform (U(0, 1)) after
np.random.seed(42). Its update, `w += lr * X.T @ (error ...)` with error = y - output, is
gradient descent with lr 0.1 on the *summed* half squared error 0.5 * sum((y - out)^2).
jnet's `mean_squared_error` is the mean of (out - y)^2 over the 4 examples, whose gradient
is 2 / 4 = 1/2 of that, so the same step needs lr 0.1 * 4 / 2 = 0.2 here (`--lr` is
given in the tutorial's units and converted). The biases are kept at zero by giving them
`optax.set_to_zero()` updates. (The tutorial also updates `w_output` before it uses it
to back-propagate to the hidden layer; jnet uses the weights of the forward pass.)

We run: the tutorial's exact initial weights without biases; `--num-seeds` JAX draws of
U(0, 1) without biases; and the same with trainable biases (zero init). The tutorial
printed no result (the notebook was not run): we print the truth table.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import common as ex
from table import print_table, row

if TYPE_CHECKING:
    import optax

    import jnet

NAME = "xor"
HIDDEN = 3  # tutorial: hiddenLayerSize = 3
LR = 0.1  # tutorial: LR = 0.1, on the summed half squared error
EPOCHS = 60_000  # tutorial: epochs = 60000
NUMPY_SEED = 42  # tutorial: RANDOM_SEED = 42; np.random.seed(RANDOM_SEED)


def parse_args(argv=None):
    epochs = {"default": EPOCHS, "help": "full-batch epochs (default: %(default)s)"}
    p = ex.parser(NAME, __doc__, data=False, epochs=epochs)  # its 4 examples are built in
    p.add_argument(
        "--lr",
        type=float,
        default=LR,
        help="learning rate in the tutorial's units (sum of half squared errors)",
    )
    p.add_argument("--num-seeds", type=ex.positive_int, default=5, help="JAX draws per variant")
    return ex.parse(p, argv, {"epochs": 2000, "num_seeds": 1})


def network() -> jnet.Layer:
    import jnet

    u01 = jnet.initializers.uniform(0.0, 1.0)  # tutorial: np.random.uniform(size=...)
    return jnet.serial(jnet.dense(HIDDEN, u01), jnet.sigmoid(), jnet.dense(1, u01))


def optimizer(lr: float, biases: bool) -> optax.GradientTransformation:
    import jax
    import optax

    # inject_hyperparams keeps the rate in the optimizer state: a divergence error names it.
    sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=lr)
    if biases:
        return sgd

    def labels(params):  # "frozen" for every bias leaf, "sgd" for every weight
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "frozen" if path[-1].key == "b" else "sgd", params
        )

    return optax.multi_transform({"sgd": sgd, "frozen": optax.set_to_zero()}, labels)


def numpy_init(dtype) -> tuple:
    """The tutorial's weights: np.random.seed(42), uniform (2, 3) then (3, 1); no biases."""
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.RandomState(NUMPY_SEED)
    w_hidden, w_output = rng.uniform(size=(2, HIDDEN)), rng.uniform(size=(HIDDEN, 1))
    dense = lambda w: {"w": jnp.asarray(w, dtype), "b": jnp.zeros(w.shape[1], dtype)}
    return (dense(w_hidden), (), dense(w_output))


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax  # after the flags: --help and a bad flag answer without loading JAX
    import numpy as np
    import plots

    import jnet.data

    timer = ex.Timer()
    x, y = jnet.data.xor()
    net, loss = network(), jnet.mean_squared_error
    lr = args.lr * len(x) / 2  # summed half squared error -> mean squared error
    print(
        f"XOR 2-{HIDDEN}-1, lr {args.lr:g} (tutorial units) = {lr:g} on jnet's MSE, "
        f"{args.epochs} epochs in one compiled call"
    )
    starts = [("no bias, tutorial's init", False, args.seed, numpy_init(x.dtype))]
    starts += [(f"no bias, seed {s}", False, s, None) for s in ex.seeds(args)]
    starts += [(f"bias, seed {s}", True, s, None) for s in ex.seeds(args)]
    runs = []
    for label, biases, seed, params0 in starts:
        t = ex.Timer()
        params, _, history = jnet.fit(
            net,
            loss,
            optimizer(lr, biases),
            x,
            y,
            epochs=args.epochs,
            key=jax.random.key(seed),
            params=params0,
            epochs_per_call=args.epochs,
            progress=not args.no_progress,
            log_dir=ex.log_dir(args, label.replace(",", "")),
        )
        seconds = t()
        out = jnet.predict(net, params, x)[:, 0]
        runs.append(
            {
                "label": label,
                "biases": biases,
                "seed": seed,
                "seconds": seconds,
                "history": history,
                "outputs": out,
                "mse": float(np.mean((out - y[:, 0]) ** 2)),
                "correct": int(np.sum(np.round(out) == y[:, 0])),
            }
        )
        print(
            f"  {label}: MSE {runs[-1]['mse']:.2e}, {runs[-1]['correct']}/4 correct after "
            f"rounding, {seconds:.1f} s (compile included)"
        )

    print("\nTruth table (outputs after training):")
    shown = [r for r in runs if r["label"].endswith("tutorial's init") or r["seed"] == args.seed]
    header = "x0 x1 | XOR | " + " | ".join(f"{r['label']:>24}" for r in shown)
    print(header)
    print("-" * len(header))
    for i, (a, b) in enumerate(x.astype(int)):
        cells = " | ".join(f"{r['outputs'][i]:>24.4f}" for r in shown)
        print(f" {a}  {b} |  {int(y[i, 0])}  | {cells}")

    rows = []
    for variant, group in (
        ("no bias, tutorial's init", [runs[0]]),
        ("no bias, JAX seeds", [r for r in runs[1:] if not r["biases"]]),
        ("bias, JAX seeds", [r for r in runs if r["biases"]]),
    ):
        run = f"XOR 2-{HIDDEN}-1 {variant}"
        rows += [
            row(
                run, "final MSE", [r["mse"] for r in group], None, unit="", note="tutorial: not run"
            ),
            row(run, "truth table right (of 4)", [r["correct"] for r in group], None, unit=""),
            row(
                run,
                f"seconds for {args.epochs} epochs",
                [r["seconds"] for r in group],
                None,
                unit="s",
                note="one compiled call, compile included",
            ),
        ]
    print_table(f"Tutorial 004, XOR ({args.epochs} full-batch epochs): ours", rows)

    every = max(1, args.epochs // 2000)  # plot 2000 points at most: a small PNG
    thin = lambda h: {k: v[every - 1 :: every] for k, v in h.items()}
    files = [
        plots.curves(
            {r["label"]: thin(r["history"]) for r in shown},
            args.out / "curves.png",
            log_loss=True,
            title=f"XOR 2-{HIDDEN}-1, MSE; accuracy = outputs rounded at 0.5",
        )
    ]
    config = {
        "hidden": HIDDEN,
        "lr_tutorial_units": args.lr,
        "lr_jnet_mse": lr,
        "epochs": args.epochs,
        "init": "uniform(0, 1)",
        "numpy_seed": NUMPY_SEED,
    }
    keys = ("label", "biases", "seed", "seconds", "mse", "correct", "outputs")
    metrics = {
        "tutorial": "004",
        "config": config,
        "rows": rows,
        "runs": [{k: r[k] for k in keys} for r in runs],
        "truth_table": {"x": x, "y": y[:, 0], **{r["label"]: r["outputs"] for r in shown}},
    }
    return ex.finish(args, argv, metrics, files, timer())


if __name__ == "__main__":
    main(sys.argv[1:])
