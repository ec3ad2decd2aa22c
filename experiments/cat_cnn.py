"""Cat vs non-cat with a small CNN, random flips and shifts: beside the course's 4-layer MLP.

    python experiments/cat_cnn.py                  # 5 seeds
    python experiments/cat_cnn.py --num-seeds 10 --epochs 100

Data: the course's 209 training and 50 test images (64x64x3 RGB, pixels / 255, NHWC).
The network: four 3x3 convolutions (16, 32, 64, 64 channels), each with batch norm and
relu, max_pool 2 after the first three (64 -> 32 -> 16 -> 8), global average pooling,
dropout 0.3, dense 1; `sigmoid_binary_cross_entropy` on the logit (prediction: logit > 0).
Adam, 5% warm-up then cosine decay, batch 32 (6 steps an epoch), 30 epochs. Every batch
is flipped left-right with probability 1/2 and shifted by up to 4 pixels
(`jnet.augment`), drawn on the device inside the compiled epoch.

The reference is `experiments/cat_classifier.py`'s course-4layer MLP [12288, 20, 7, 5, 1]:
80% test accuracy from the course's own initial weights, 72.4 ± 2.2% over 5 JAX seeds.
The goal is 86%. With 50 test images one image is 2 points, so the spread over seeds is
part of the result.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import common as ex
from table import print_table, row

if TYPE_CHECKING:
    import jnet

NAME = "cat_cnn"
CONFIG: dict[str, Any] = {
    "channels": (16, 32, 64, 64),
    "epochs": 30,
    "batch_size": 32,
    "lr": 2e-3,
    "shift": 4,
    "flip": True,
    "dropout": 0.3,
}
MLP_TEST = 0.80  # course-4layer from the course's weights (cat_classifier.py)
MLP_SEEDS = "72.4 ± 2.2% over 5 seeds"
GOAL = 0.86


def parse_args(argv=None):
    epochs = {"default": CONFIG["epochs"], "help": "epochs of every seed (default: %(default)s)"}
    p = ex.parser(NAME, __doc__, epochs=epochs)  # nothing to split over devices: 209 images
    p.add_argument("--num-seeds", type=ex.positive_int, default=5, help="seeds seed, seed+1, ...")
    p.add_argument("--lr", type=float, default=CONFIG["lr"], help="peak Adam rate")
    p.add_argument("--batch-size", type=ex.positive_int, default=CONFIG["batch_size"])
    p.add_argument("--shift", type=int, default=CONFIG["shift"], help="largest shift (px)")
    p.add_argument("--no-flip", action="store_true", help="no random left-right flips")
    quick = {"num_seeds": 1, "epochs": 2}
    return ex.parse(p, argv, quick)


def config(args) -> dict[str, Any]:
    cfg = dict(CONFIG, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size)
    cfg.update(shift=args.shift, flip=not args.no_flip)
    if args.quick:
        cfg["channels"] = (4, 4, 8, 8)
    return cfg


def network(cfg: dict[str, Any]) -> jnet.Layer:
    import jnet

    layers = []
    for i, n in enumerate(cfg["channels"]):
        layers += [jnet.conv2d(n, 3), jnet.batch_norm(), jnet.relu()]
        if i < len(cfg["channels"]) - 1:
            layers.append(jnet.max_pool(2))
    return jnet.serial(*layers, jnet.global_avg_pool(), jnet.dropout(cfg["dropout"]), jnet.dense(1))


def augmentation(cfg: dict[str, Any]):
    import jnet

    augs = [jnet.augment.random_flip()] if cfg["flip"] else []
    if cfg["shift"]:
        augs.append(jnet.augment.random_shift(cfg["shift"]))
    return jnet.augment.compose(*augs) if augs else None


def describe(cfg: dict[str, Any]) -> str:
    aug = " + ".join(
        (["flips"] if cfg["flip"] else [])
        + ([f"shifts <= {cfg['shift']} px"] if cfg["shift"] else [])
    )
    return (
        f"CNN {'-'.join(map(str, cfg['channels']))} + BN, GAP, Adam {cfg['lr']:g}, "
        f"batch {cfg['batch_size']}, {cfg['epochs']} ep, {aug or 'no augmentation'}"
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax  # after the flags: --help and a bad flag answer without loading JAX
    import numpy as np
    import optax
    import plots

    import jnet
    from jnet import data

    timer = ex.Timer()
    (x_img, y), (xt_img, yt), classes = data.cat_vs_noncat(args.data_dir)
    x, xt = data.scale(x_img), data.scale(xt_img)  # uint8 -> float32 in [0, 1], NHWC
    print(
        f"{len(x)} training images ({int(y.sum())} cats), {len(xt)} test images "
        f"({int(yt.sum())} cats), {x.shape[1:]}",
        flush=True,
    )
    cfg = config(args)
    net, loss = network(cfg), jnet.sigmoid_binary_cross_entropy
    steps = len(x) // cfg["batch_size"] * cfg["epochs"]
    runs = []
    for seed in ex.seeds(args):
        print(f"seed {seed}: {describe(cfg)}", flush=True)
        schedule = optax.warmup_cosine_decay_schedule(
            cfg["lr"] / 10, cfg["lr"], max(steps // 20, 1), steps, end_value=0.0
        )
        t = ex.Timer()
        with ex.naming_rates(f"lr {cfg['lr']:g}"):
            params, state, history = jnet.fit(
                net,
                loss,
                optax.inject_hyperparams(optax.adam)(learning_rate=schedule),
                x,
                y,
                epochs=cfg["epochs"],
                batch_size=cfg["batch_size"],
                key=jax.random.key(seed),
                augment=augmentation(cfg),
                validation=(xt, yt),
                epochs_per_call=10,  # 6 steps an epoch: fewer round trips to the host
                progress=not args.no_progress,
                log_dir=ex.log_dir(args, f"seed{seed}"),
            )
        seconds = t()
        runs.append(
            {
                "seed": seed,
                "seconds": seconds,
                "history": history,
                "train": jnet.evaluate(net, loss, params, x, y, state=state)["accuracy"],
                "test": jnet.evaluate(net, loss, params, xt, yt, state=state)["accuracy"],
                "test_predicted": (jnet.predict(net, params, xt, state=state)[:, 0] > 0).astype(
                    int
                ),
            }
        )
        print(f"  train {runs[-1]['train']:.3f}, test {runs[-1]['test']:.3f}, {seconds:.0f} s")

    run = describe(cfg)
    full = args.epochs == CONFIG["epochs"] and not args.quick
    reduced = "" if full else "not the default run length; "
    tests = [r["test"] for r in runs]
    rows = [
        row(
            run,
            "test acc, JAX seeds",
            tests,
            MLP_TEST,
            note=f"{reduced}tutorial column: the course's 4-layer MLP ({MLP_SEEDS}); goal 86%",
        ),
        row(run, "test acc, worst / best seed", min(tests), None, note=f"best {max(tests):.0%}"),
        row(run, "train acc, JAX seeds", [r["train"] for r in runs], 0.986, note="MLP: 98.6%"),
        row(run, "training time (s)", [r["seconds"] for r in runs], None, unit="s",
            note=ex.device_info()["device_kind"] + "; the first seed includes compiling"),
    ]  # fmt: skip
    print_table(
        f"Cat vs non-cat ({len(x)} train / {len(xt)} test images): CNN vs the course's MLP",
        rows,
    )

    files = [
        plots.curves(
            {f"seed {r['seed']}": r["history"] for r in runs},
            args.out / "curves.png",
            title="train (solid) and test (dashed), every seed",
        )
    ]
    r = runs[-1]
    files.append(
        plots.misclassified(
            xt_img, yt, r["test_predicted"], args.out / "misclassified.png",
            class_names=classes, title=f"seed {r['seed']}: misclassified test images", columns=6,
        )
    )  # fmt: skip
    files.append(
        plots.image_grid(
            xt_img[:24], yt[:24], r["test_predicted"][:24], args.out / "predictions.png",
            class_names=classes, columns=8, title=f"seed {r['seed']}: first 24 test images",
        )
    )  # fmt: skip
    metrics = {
        "tutorial": "course",
        "config": {**cfg, "mlp_reference": {"test": MLP_TEST, "seeds": MLP_SEEDS}, "goal": GOAL},
        "rows": rows,
        "runs": ex.records({"cnn": runs}, ("seed", "seconds", "train", "test"), history_every=None),
        "test_mean": float(np.mean(tests)),
    }
    return ex.finish(args, argv, metrics, files, timer())


if __name__ == "__main__":
    main(sys.argv[1:])
