"""Tutorial 004: MNIST 784-100-200-10, minibatch SGD; `--tuned`: the best plain MLPs we made.

    python experiments/mnist_minibatch.py                   # the tutorial's run, ~3 min on CPU
    python experiments/mnist_minibatch.py --tuned           # both tuned MLPs (long on CPU)
    python experiments/mnist_minibatch.py --tuned dropout   # only the one with dropout
    python experiments/mnist_minibatch.py --tuned plain --val-size 5000   # tune on validation

Tutorial 004's network: 784-100-200-10 ReLU, Glorot-normal init (randn * sqrt(2 / (in +
out)), jnet's default for `dense`), biases 0, softmax cross entropy, SGD with batch 64 and
lr 0.05 on the two hidden layers, 0.1 on the last, 32 epochs; pixels / 255. The notebook
was never run, so it reports no accuracy: we report ours on all 10,000 test images.

How its gradient scaling maps onto jnet's: the tutorial's loss gradient is
`(softmax - onehot) / B`, the gradient of the *mean* cross entropy over the batch of
B = 64. Its Dense layer then computes `grad_weights = input.T @ grad_output` (a sum over
the batch) and `grad_biases = grad_output.mean(axis=0) * B`, which is also a sum over
the batch. Both are therefore exactly the gradient of the mean loss, as in jnet:
`softmax_cross_entropy` is the batch mean with backward `(softmax - onehot) / B`, and
`dense` backward returns `x.T @ dy` and `dy.sum(0)`. So the tutorial's learning rates
carry over unchanged: `jnet.per_layer(optax.sgd(0.05), {-1: optax.sgd(0.1)})`.
(Had the biases used a mean, their step would have been 64 times smaller.)
Two differences remain: the tutorial walks the training set in file order, without
shuffling, ending each epoch with a partial batch of 32; jnet's `fit` draws a new
permutation every epoch and drops the partial batch (937 steps of 64 per epoch).

`--tuned` trains plain MLPs chosen for test accuracy in reasonable CPU time; their
hyperparameters were chosen on a 55,000/5,000 train/validation split (`--val-size 5000`),
then the final runs train on all 60,000 images and report the 10,000 test images.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import common as ex
from table import print_table, row

if TYPE_CHECKING:
    import optax

    import jnet

NAME = "mnist_minibatch"

TUTORIAL: dict[str, Any] = {
    "hidden": (100, 200),  # tutorial: Dense(784, 100), Dense(100, 200), Dense(200, 10)
    "dropout": None,  # (input rate, hidden rate) or None
    "optimizer": "sgd",  # plain SGD, per layer: lr on hidden layers, last_lr on the last
    "lr": 0.05,  # tutorial: Dense(..., learning_rate=0.05) for the hidden layers
    "last_lr": 0.1,  # tutorial: the last Dense keeps its default learning_rate=0.1
    "batch_size": 64,  # tutorial: batch_size = 64
    "epochs": 32,  # tutorial: n_epochs = 32
    "l2": 0.0,
    "init": "glorot_normal",  # tutorial: normal(0, sqrt(2 / (in + out))), biases 0
}
# The tuned configurations (see the module docstring for how they were chosen).
TUNED: dict[str, dict[str, Any]] = {
    "plain": {
        "hidden": (1024, 1024),
        "dropout": None,
        "optimizer": "adam",  # Adam with a one-cycle (warm-up, cosine down) learning rate
        "lr": 1e-3,  # the peak learning rate
        "last_lr": None,
        "batch_size": 128,
        "epochs": 20,  # 10 was 0.06 points worse on validation, 40 no better
        "l2": 0.0,  # L2 1e-4 and 5e-4 (with Adam or SGD + momentum) did not help on validation
        "init": "he_normal",  # randn * sqrt(2 / fan_in): keeps ReLU activations at unit scale
    },
    "dropout": {
        "hidden": (2048, 2048),  # wider than the dropout paper's 3x1024: better in 40 epochs
        "dropout": (0.2, 0.5),  # the dropout paper's rates: 0.2 on inputs, 0.5 on hidden units
        "optimizer": "adam",
        "lr": 1e-3,
        "last_lr": None,
        "batch_size": 128,
        "epochs": 40,
        "l2": 0.0,
        "init": "he_normal",
    },
}
OVERRIDABLE = ("hidden", "lr", "batch_size", "epochs", "l2", "optimizer", "dropout", "init")


def parse_args(argv=None):
    epochs = {"default": None, "help": "epochs of every configuration (default: its own)"}
    p = ex.parser(NAME, __doc__, devices=True, epochs=epochs)
    p.add_argument(
        "--tuned",
        nargs="?",
        const="both",
        choices=["plain", "dropout", "both"],
        default=None,
        help="run the tuned MLPs instead of the tutorial's (default with --tuned: both)",
    )
    p.add_argument(
        "--val-size",
        type=ex.positive_int,
        default=None,
        help="hold out N training images as validation and report on them instead "
        "of the test set (for tuning)",
    )
    g = p.add_argument_group("overrides (apply to every configuration run)")
    g.add_argument("--hidden", type=ex.positive_int, nargs="+", default=None)
    g.add_argument("--lr", type=float, default=None)
    g.add_argument("--batch-size", type=ex.positive_int, default=None)
    g.add_argument("--l2", type=float, default=None)
    g.add_argument("--optimizer", choices=["sgd", "adam", "momentum"], default=None)
    g.add_argument("--dropout", type=float, nargs=2, default=None, metavar=("INPUT", "HIDDEN"))
    g.add_argument("--init", choices=["glorot_normal", "he_normal", "lecun_normal"], default=None)
    g.add_argument(
        "--train-size", type=ex.positive_int, default=None, help="first N training images"
    )
    p.add_argument(
        "--num-seeds", type=ex.positive_int, default=1, help="runs with seeds seed, seed+1, ..."
    )
    quick = {"train_size": 512, "epochs": 2, "hidden": [32, 32]}
    # The tuned runs have their own results folder: they never replace the tutorial run's.
    return ex.parse(p, argv, quick, name=lambda a: f"{NAME}_tuned" if a.tuned else NAME)


def configs(args) -> dict[str, dict[str, Any]]:
    chosen = (
        {"tutorial": TUTORIAL}
        if args.tuned is None
        else {f"tuned-{k}": v for k, v in TUNED.items() if args.tuned in (k, "both")}
    )
    out = {}
    for name, cfg in chosen.items():
        cfg = dict(cfg)
        for key in OVERRIDABLE:
            value = getattr(args, key)
            if value is not None:
                cfg[key] = tuple(value) if isinstance(value, list) else value
        out[name] = cfg
    return out


def network(cfg: dict[str, Any]) -> jnet.Layer:
    import jnet

    init = getattr(jnet.initializers, cfg["init"])()
    layers = []
    drop_in, drop_hidden = cfg["dropout"] or (0.0, 0.0)
    if drop_in:
        layers.append(jnet.dropout(drop_in))
    for n in cfg["hidden"]:
        layers += [jnet.dense(n, init), jnet.relu()]
        if drop_hidden:
            layers.append(jnet.dropout(drop_hidden))
    return jnet.serial(*layers, jnet.dense(10, init))


def optimizer(cfg: dict[str, Any], steps: int) -> optax.GradientTransformation:
    """The configuration's optax optimizer; `steps` is the total number of updates.

    Each rate goes through `optax.inject_hyperparams`: it lives in the optimizer state,
    so a divergence error can name it.
    """
    import optax

    import jnet

    if cfg["optimizer"] == "sgd":
        sgd = optax.inject_hyperparams(optax.sgd)
        if cfg.get("last_lr") is None:
            return sgd(learning_rate=cfg["lr"])
        # Tutorial 004: each Dense has its own rate; the last layer keeps 0.1.
        return jnet.per_layer(sgd(learning_rate=cfg["lr"]), {-1: sgd(learning_rate=cfg["last_lr"])})
    # One cycle: linear warm-up over the first 30% of the steps, then cosine down to ~0.
    schedule = optax.cosine_onecycle_schedule(steps, cfg["lr"], pct_start=0.3)
    if cfg["optimizer"] == "momentum":
        return optax.inject_hyperparams(optax.sgd)(
            learning_rate=schedule, momentum=0.9, nesterov=True
        )
    return optax.inject_hyperparams(optax.adam)(learning_rate=schedule)


def describe(cfg: dict[str, Any]) -> str:
    arch = "-".join(map(str, (784, *cfg["hidden"], 10)))
    opt = cfg["optimizer"]
    lr = f"lr {cfg['lr']:g}" + (f"/{cfg['last_lr']:g} last" if cfg.get("last_lr") else "")
    sched = "" if opt == "sgd" else " one-cycle"
    drop = f", dropout {cfg['dropout'][0]:g}/{cfg['dropout'][1]:g}" if cfg["dropout"] else ""
    l2 = f", L2 {cfg['l2']:g}" if cfg["l2"] else ""
    return (
        f"{arch} {cfg['init']}, {opt}{sched} {lr}, batch {cfg['batch_size']}, "
        f"{cfg['epochs']} ep{l2}{drop}"
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax  # after the flags: --help and a bad flag answer without loading JAX
    import numpy as np
    import plots

    import jnet.data

    timer = ex.Timer()
    (x, y), (x_test, y_test) = jnet.data.mnist_flat(args.data_dir, train_size=args.train_size)
    eval_name = "test"
    if args.val_size is not None:  # tuning: never look at the test set
        (x, y), (x_test, y_test) = jnet.data.train_val_split(
            x, y, val_size=args.val_size, seed=args.seed
        )
        eval_name = "validation"
    print(f"{len(x)} training images, {len(x_test)} {eval_name} images")
    loss = jnet.softmax_cross_entropy
    mesh = ex.mesh(args.devices)
    results: dict[str, list] = {}
    for name, cfg in configs(args).items():
        net = network(cfg)
        steps = (len(x) // cfg["batch_size"]) * cfg["epochs"]
        results[name] = []
        for seed in ex.seeds(args):
            print(f"{name}, seed {seed}: {describe(cfg)}")
            t = ex.Timer()
            with ex.naming_rates(describe(cfg)):
                params, _, history = jnet.fit(
                    net,
                    loss,
                    optimizer(cfg, steps),
                    x,
                    y,
                    epochs=cfg["epochs"],
                    batch_size=cfg["batch_size"],
                    key=jax.random.key(seed),
                    l2=cfg["l2"],
                    validation=(x_test, y_test),
                    mesh=mesh,
                    progress=not args.no_progress,
                    log_dir=ex.log_dir(args, f"{name}-seed{seed}"),
                )
            seconds = t()
            final = jnet.evaluate(net, loss, params, x_test, y_test)
            train = jnet.evaluate(net, loss, params, x, y)
            results[name].append(
                {
                    "seed": seed,
                    "params": params,
                    "history": history,
                    "seconds": seconds,
                    "final": {
                        eval_name: final["accuracy"],
                        "train": train["accuracy"],
                        f"{eval_name}_loss": final["loss"],
                    },
                }
            )

    targets = {"tuned-plain": 0.985, "tuned-dropout": 0.988}
    rows = []
    for name, runs in results.items():
        cfg = configs(args)[name]
        run = f"{name}: {describe(cfg)}"
        note = {"tutorial": "tutorial not run (no number)"}.get(name, "target, not a tutorial")
        rows.append(
            row(
                run,
                f"{eval_name} acc ({len(x_test)})",
                [r["final"][eval_name] for r in runs],
                targets.get(name),
                note=note,
            )
        )
        rows.append(row(run, f"train acc ({len(x)})", [r["final"]["train"] for r in runs], None))
        rows.append(
            row(
                run,
                "training time (s)",
                [r["seconds"] for r in runs],
                None,
                unit="s",
                note=ex.device_info()["device_kind"] + "; the first seed includes compiling",
            )
        )
    print_table(f"Tutorial 004, MNIST minibatch: ours vs tutorial ({eval_name} set)", rows)

    files = []
    for name, runs in results.items():
        r = runs[0]
        files.append(
            plots.curves(
                r["history"],
                args.out / f"curves_{name}.png",
                val_label=eval_name,
                title=f"{name}: {describe(configs(args)[name])}",
            )
        )
    name = list(results)[-1]  # the tuned run with dropout, when both ran
    net, r = network(configs(args)[name]), results[name][0]
    predicted = np.argmax(jnet.predict(net, r["params"], x_test), axis=-1)
    files.append(
        plots.image_grid(
            ex.images(x_test[:32]),
            y_test[:32],
            predicted[:32],
            args.out / f"predictions_{name}.png",
            title=f"{name}: first 32 {eval_name} images",
        )
    )
    files.append(
        plots.misclassified(
            ex.images(x_test),
            y_test,
            predicted,
            args.out / f"misclassified_{name}.png",
            title=f"{name}: misclassified {eval_name} images",
        )
    )
    config = {
        "configs": configs(args),
        "train_size": len(x),
        "eval_set": eval_name,
        "eval_size": len(x_test),
    }
    metrics = {
        "tutorial": "004",
        "config": config,
        "rows": rows,
        "runs": ex.records(results, ("seed", "final", "seconds")),
    }
    return ex.finish(args, argv, metrics, files, timer())


if __name__ == "__main__":
    main(sys.argv[1:])
