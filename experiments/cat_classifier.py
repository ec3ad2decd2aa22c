"""Tutorial 002 and the deep-learning course: cat vs non-cat with small L-layer nets, full batch.

    python experiments/cat_classifier.py                  # 4 configurations x (5 seeds + 1)
    python experiments/cat_classifier.py --configs course-4layer --num-seeds 10
    python experiments/cat_classifier.py --epochs 500     # every configuration, 500 iterations

Data: the course's 209 training and 50 test images (64x64x3, pixels / 255, flattened to
12,288 features). Every net is dense layers with tanh or ReLU in between and one output
unit; the loss is `sigmoid_binary_cross_entropy` on that unit's logit, which is the
tutorial's sigmoid output + binary cross entropy in one step: softplus(z) - t z equals
-t log(sigmoid(z)) - (1 - t) log(1 - sigmoid(z)), with the same gradient sigmoid(z) - t
as the tutorial's dZ = A - Y (and it stays finite when the sigmoid saturates).
Prediction is logit > 0, i.e. probability > 0.5. Plain full-batch gradient descent.

  tutorial-tanh / -relu: [12288, 5, 5, 1], init randn * 0.01, lr 0.03, 3000 iterations
    (tutorial 002: test accuracy 68% with tanh, 42% with ReLU).
  course-2layer: [12288, 7, 1] ReLU, randn * 0.01, lr 0.0075, 2500 iterations
    (course: train 100%, test 72%).
  course-4layer: [12288, 20, 7, 5, 1] ReLU, randn / sqrt(fan_in), lr 0.0075, 2500
    iterations (course: train 98.6%, test 80%).

The outcome depends on the initial weights (with randn * 0.01 the cost sits on a plateau
near 0.644, the entropy of "34% cats", until it escapes at an iteration that depends on
the draw), so each configuration runs with `--num-seeds` JAX seeds (mean ± std), plus
once from the tutorial's own initial weights: `np.random.seed(1)` and its randn calls in
its order (layer by layer, W of shape (out, in); jnet's `w` is its transpose). That run
starts where the tutorial's did, so its cost can be compared with the printed one.
Computation is float64 like numpy's (`--float32` to change), since the late escape from
the plateau is sensitive to rounding.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import common as ex
from table import print_table, row

if TYPE_CHECKING:
    import jnet

NAME = "cat_classifier"


def _config(hidden, activation, lr, iterations, init, tutorial) -> dict[str, Any]:
    keys = ("hidden", "activation", "lr", "iterations", "init", "tutorial")
    return dict(zip(keys, (hidden, activation, lr, iterations, init, tutorial), strict=True))


# name -> (hidden widths, activation, lr, iterations, init, the tutorial's accuracies)
CONFIGS: dict[str, dict[str, Any]] = {
    "tutorial-tanh": _config((5, 5), "tanh", 0.03, 3000, "randn*0.01", {"test": 0.68}),
    "tutorial-relu": _config((5, 5), "relu", 0.03, 3000, "randn*0.01", {"test": 0.42}),
    "course-2layer": _config(
        (7,), "relu", 0.0075, 2500, "randn*0.01", {"train": 1.0, "test": 0.72}
    ),
    "course-4layer": _config(
        (20, 7, 5), "relu", 0.0075, 2500, "randn/sqrt(fan_in)", {"train": 0.986, "test": 0.80}
    ),
}
# Tutorial 002 prints the cost after every 100 iterations (computed before update i+1).
# fmt: off
TUTORIAL_COSTS = {
    "tutorial-tanh": [
        0.6556, 0.6468, 0.6447, 0.6441, 0.6440, 0.6440, 0.6440, 0.6439, 0.6439, 0.6439,
        0.6439, 0.6439, 0.6438, 0.6438, 0.6437, 0.6434, 0.6429, 0.6413, 0.6361, 0.6124,
        0.5112, 0.5288, 0.4312, 0.3821, 0.3387, 0.2349, 0.2206, 0.1927, 0.4669, 0.1040,
    ],
    "tutorial-relu": [
        0.6556, 0.6468, 0.6447, 0.6441, 0.6440, 0.6440, 0.6440, 0.6440, 0.6440, 0.6440,
        0.6439, 0.6439, 0.6439, 0.6439, 0.6439, 0.6439, 0.6438, 0.6437, 0.6435, 0.6432,
        0.6423, 0.6395, 0.6259, 0.5408, 0.5262, 0.4727, 0.4386, 0.3493, 0.1877, 0.3641,
    ],
}
# fmt: on
NUMPY_SEED = 1  # tutorial 002 and the course: np.random.seed(1) before drawing weights


def parse_args(argv=None):
    epochs = {
        "default": None,
        "help": "full-batch epochs (= iterations) of every configuration "
        "(default: each configuration's own)",
    }
    p = ex.parser(NAME, __doc__, epochs=epochs)  # nothing to split over devices: 209 images
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument(
        "--num-seeds", type=ex.positive_int, default=5, help="JAX seeds per configuration"
    )
    p.add_argument("--float32", action="store_true", help="compute in float32 (default 64)")
    p.add_argument(
        "--no-numpy-init",
        action="store_true",
        help="skip the runs from the tutorial's own numpy initial weights",
    )
    quick = {"num_seeds": 1, "epochs": 30, "configs": ["course-4layer"]}
    return ex.parse(p, argv, quick)


def network(cfg: dict[str, Any]) -> jnet.Layer:
    import jnet

    if cfg["init"] == "randn*0.01":
        init = jnet.initializers.normal(0.01)
    else:
        init = jnet.initializers.lecun_normal()  # randn / sqrt(fan_in)
    act = {"tanh": jnet.tanh, "relu": jnet.relu}[cfg["activation"]]
    return jnet.mlp([*cfg["hidden"], 1], act, w_init=init)


def numpy_init(cfg: dict[str, Any], n_in: int, dtype) -> tuple:
    """The tutorial's initial weights: np.random.seed(1), then randn(out, in) per layer."""
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.RandomState(NUMPY_SEED)  # the legacy generator behind np.random.seed
    dims = (n_in, *cfg["hidden"], 1)
    params = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:], strict=True):
        w = rng.randn(fan_out, fan_in)
        w = w * 0.01 if cfg["init"] == "randn*0.01" else w / np.sqrt(fan_in)
        params.append({"w": jnp.asarray(w.T, dtype), "b": jnp.zeros(fan_out, dtype)})
        params.append(())  # the activation after it (none after the last dense)
    return tuple(params[:-1])


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax  # after the flags: --help and a bad flag answer without loading JAX
    import numpy as np
    import plots

    import jnet
    from jnet import data

    if not args.float32:
        jax.config.update("jax_enable_x64", True)  # numpy's float64, as the tutorials
    dtype = np.float32 if args.float32 else np.float64
    timer = ex.Timer()
    (x_img, y), (xt_img, yt), classes = data.cat_vs_noncat(args.data_dir)
    x = data.scale(data.flatten(x_img), dtype)  # tutorial: X / 255
    x_test = data.scale(data.flatten(xt_img), dtype)
    print(
        f"{len(x)} training images ({int(y.sum())} cats), {len(x_test)} test images "
        f"({int(yt.sum())} cats), {x.shape[1]} features, {dtype.__name__}"
    )
    loss = jnet.sigmoid_binary_cross_entropy
    results: dict[str, list] = {}
    for name in args.configs:
        cfg = dict(CONFIGS[name])
        if args.epochs is not None:
            cfg["iterations"] = args.epochs
        net = network(cfg)
        starts = [(f"seed {s}", s, None) for s in ex.seeds(args)]
        if not args.no_numpy_init:
            starts.append(("tutorial init", args.seed, numpy_init(cfg, x.shape[1], dtype)))
        results[name] = []
        for label, seed, params0 in starts:
            print(
                f"{name}, {label}: {cfg['hidden']} {cfg['activation']}, lr {cfg['lr']}, "
                f"{cfg['iterations']} iterations"
            )
            params, _, history = jnet.fit(
                net,
                loss,
                cfg["lr"],
                x,
                y,
                epochs=cfg["iterations"],
                key=jax.random.key(seed),
                params=params0,
                validation=(x_test, yt),
                progress=not args.no_progress,
                log_dir=ex.log_dir(args, f"{name}-{label}"),
            )
            results[name].append(
                {
                    "label": label,
                    "seed": seed,
                    "params": params,
                    "history": history,
                    "train": jnet.evaluate(net, loss, params, x, y)["accuracy"],
                    "test": jnet.evaluate(net, loss, params, x_test, yt)["accuracy"],
                    "test_predicted": (jnet.predict(net, params, x_test)[:, 0] > 0).astype(int),
                    "cost_every_100": history["loss"][99::100],
                }
            )

    rows = []
    for name, runs in results.items():
        cfg, tut = CONFIGS[name], CONFIGS[name]["tutorial"]
        arch = "-".join(map(str, (x.shape[1], *cfg["hidden"], 1)))
        run = f"{name} [{arch}] {cfg['activation']}"
        seeded = [r for r in runs if r["label"] != "tutorial init"]
        exact = [r for r in runs if r["label"] == "tutorial init"]
        full = args.epochs is None  # the tutorial's own run length
        for split in ("train", "test"):
            if seeded:
                rows.append(
                    row(
                        run,
                        f"{split} acc, JAX seeds",
                        [r[split] for r in seeded],
                        tut.get(split) if full else None,
                        note="" if split in tut else "tutorial: not reported",
                    )
                )
            if exact:
                rows.append(
                    row(
                        run,
                        f"{split} acc, tutorial's init",
                        exact[0][split],
                        tut.get(split) if full else None,
                        note="same initial weights as the tutorial",
                    )
                )
        if exact and name in TUTORIAL_COSTS and full:
            h = exact[0]["history"]["loss"]
            for it in (100, 1000, 2000, 3000):
                rows.append(
                    row(
                        run,
                        f"cost at {it} it, tutorial's init",
                        h[it - 1],
                        TUTORIAL_COSTS[name][it // 100 - 1],
                        unit="",
                    )
                )
    print_table(
        f"Tutorial 002 + course, cat vs non-cat ({len(x)} train / {len(x_test)} "
        "test images): ours vs tutorial",
        rows,
    )

    files = []
    # Cost every 100 iterations (the tutorial's own printout), every run.
    lines, colors = {}, {name: f"C{i}" for i, name in enumerate(results)}
    for name, runs in results.items():
        for r in runs:
            h = np.asarray(r["history"]["loss"])
            every = np.arange(99, len(h), 100) if len(h) >= 100 else np.arange(len(h))
            tag = name if r["label"] == "tutorial init" else f"_{name} {r['label']}"
            lines[tag + (" (tutorial's init)" if not tag.startswith("_") else "")] = (
                every + 1,
                h[every],
            )
        if name in TUTORIAL_COSTS and args.epochs is None:
            lines[f"{name}: tutorial's printout"] = (
                np.arange(100, 3001, 100),
                TUTORIAL_COSTS[name],
            )
    style = lambda label: {  # tutorial printout: dots; JAX seeds: thin lines
        "color": colors[label.lstrip("_").split(" ")[0].rstrip(":")],
        **({"marker": "o", "ms": 3, "ls": ""} if "printout" in label else {}),
        **({"lw": 0.6, "alpha": 0.5} if label.startswith("_") else {}),
    }
    files.append(
        plots.series(
            lines,
            args.out / "costs.png",
            x_label="iteration",
            y_label="cost (binary cross entropy)",
            title="cost every 100 iterations; thick: tutorial's initial weights, thin: JAX seeds",
            style=style,
        )
    )
    files.append(
        plots.curves(
            {name: runs[-1]["history"] for name, runs in results.items()},
            args.out / "curves.png",
            x_label="iteration",
            title="train (solid) and test (dashed), last run of each config",
        )
    )
    # The misclassified test images of the last run of the last configuration (by default
    # course-4layer from the course's initial weights, as its notebook shows them).
    name = list(results)[-1]
    r = results[name][-1]
    files.append(
        plots.misclassified(
            xt_img,
            yt,
            r["test_predicted"],
            args.out / "misclassified.png",
            class_names=classes,
            title=f"{name} ({r['label']}): misclassified test images",
            columns=6,
        )
    )
    files.append(
        plots.image_grid(
            xt_img[:24],
            yt[:24],
            r["test_predicted"][:24],
            args.out / "predictions.png",
            class_names=classes,
            columns=8,
            title=f"{name} ({r['label']}): first 24 test images",
        )
    )
    config = {
        "configs": {k: CONFIGS[k] for k in results},
        "numpy_seed": None if args.no_numpy_init else NUMPY_SEED,
        "epochs_override": args.epochs,
        "dtype": dtype.__name__,
    }
    keys = ("label", "seed", "train", "test", "cost_every_100")
    metrics = {
        "tutorial": "002",
        "config": config,
        "rows": rows,
        "runs": ex.records(results, keys, history_every=10),
    }
    return ex.finish(args, argv, metrics, files, timer())


if __name__ == "__main__":
    main(sys.argv[1:])
