"""Load times of jnet.data on the real files: median of a few runs, as a table.

    python benchmarks/load_data.py [--data-dir ../shared/data] [--repeats 5]

The data folder defaults to $JNET_DATA_DIR, else ../shared/data next to the repository.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import tempfile
import time

import jnet.data as data

REPO = pathlib.Path(__file__).resolve().parents[1]


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("JNET_DATA_DIR", REPO.parent / "shared" / "data")
    p.add_argument("--data-dir", type=pathlib.Path, default=pathlib.Path(default))
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    mnist_dir, cat_dir = args.data_dir / "mnist", args.data_dir / "catvnoncat"

    with tempfile.TemporaryDirectory() as tmp:
        csv = data.mnist_to_csv(pathlib.Path(tmp) / "train.csv", mnist_dir)  # 42,000 rows
        cases = [
            ("mnist, 4 IDX .gz files (70,000 images)", lambda: data.mnist(mnist_dir)),
            ("mnist, same + verify=True (SHA-256)", lambda: data.mnist(mnist_dir, verify=True)),
            ("cat_vs_noncat, 2 h5 files (259 images)", lambda: data.cat_vs_noncat(cat_dir)),
            ("load_csv, Kaggle layout (42,000 rows)", lambda: data.load_csv(csv)),
        ]
        print(f"{'load':<42} {'median s':>9}   (of {args.repeats} runs)")
        print("-" * 64)
        for name, fn in cases:
            print(f"{name:<42} {median_time(fn, args.repeats):>9.3f}")


if __name__ == "__main__":
    main()
