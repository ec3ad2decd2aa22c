"""fit on host batches (a numpy generator) against fit on arrays kept on the device.

    python benchmarks/host_data.py [--epochs 4] [--repeats 3] [--data-dir DIR] [--quick]

The MNIST MLP of tutorial 004 (784-100-200-10 ReLU, SGD 0.05 / 0.1 on the last layer,
batch 64, 937 steps an epoch) trained by `jnet.fit` two ways: `x, y` arrays (the data on
the device, each batch gathered there) and `data=` a numpy generator yielding shuffled
`(x_batch, y_batch)` pairs (stacked per compiled call and sent to the device while the
previous call runs). Time per epoch is `(T - t1) / (E - 1)`: T the wall time of a whole
`fit` call of E epochs, t1 its first epoch as the history reports it (which holds the
compilation), so everything after the first epoch counts, host work included; the median of
`--repeats` rounds, the two paths alternating first. Target: host / arrays <= 1.15.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time


def batches(x, y, size: int, seed: int = 0):
    """Shuffled minibatches, pass after pass (numpy on the host, as a data loader would)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(x))
        for i in range(0, len(x) - size + 1, size):
            idx = order[i : i + size]
            yield x[idx], y[idx]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4, help="E, the longer run's epochs (>= 2)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-dir", type=pathlib.Path, default=None)
    p.add_argument("--quick", action="store_true", help="6,400 images, 2 epochs, 1 round")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2")
    import jax
    import numpy as np
    import optax

    import jnet
    import jnet.data

    n = 6400 if args.quick else None
    epochs, repeats = (2, 1) if args.quick else (args.epochs, args.repeats)
    (x, y), _ = jnet.data.mnist_flat(args.data_dir, train_size=n)
    y = y.astype(np.int32)
    net = jnet.serial(jnet.dense(100), jnet.relu(), jnet.dense(200), jnet.relu(), jnet.dense(10))
    opt = jnet.per_layer(optax.sgd(0.05), {-1: optax.sgd(0.1)})
    steps = len(x) // 64

    def arrays(e: int):
        return jnet.fit(net, jnet.softmax_cross_entropy, opt, x, y, batch_size=64, epochs=e,
                        key=jax.random.key(0), progress=False)  # fmt: skip

    def host(e: int):
        return jnet.fit(net, jnet.softmax_cross_entropy, opt, data=batches(x, y, 64),
                        steps_per_epoch=steps, epochs=e, key=jax.random.key(0),
                        progress=False)  # fmt: skip

    paths = {"arrays (on device)": arrays, "host (numpy generator)": host}
    per_epoch: dict[str, list[float]] = {name: [] for name in paths}
    losses = {}
    for r in range(repeats):
        order = list(paths.items())[r % 2 :] + list(paths.items())[: r % 2]
        for name, run in order:
            start = time.perf_counter()
            history = run(epochs).history
            wall = time.perf_counter() - start
            losses[name] = history["loss"][-1]
            per_epoch[name].append((wall - history["seconds"][0]) / (epochs - 1))
    base = statistics.median(per_epoch["arrays (on device)"])
    device = jax.devices()[0].device_kind
    print(f"MNIST MLP 784-100-200-10, batch 64, {steps} steps an epoch, {len(x)} images; "
          f"median of {repeats} round(s), E = {epochs}; {device}")  # fmt: skip
    print(f"{'path':<24} {'s / epoch':>10} {'/ arrays':>9} {'final loss':>11}")
    print("-" * 58)
    for name in paths:
        t = statistics.median(per_epoch[name])
        print(f"{name:<24} {t:>10.3f} {t / base:>9.2f} {losses[name]:>11.4f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
