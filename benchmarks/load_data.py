"""Load times of jnet.data on the real files: median of a few runs, as a table.

    python benchmarks/load_data.py [--data-dir ../shared/data] [--repeats 5]

The data folder (holding mnist/ and catvnoncat/) follows jnet.data's rule: `--data-dir`,
else $JNET_DATA_DIR, else ~/.cache/jnet; a named folder must exist.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=pathlib.Path, default=None)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    from timing import median_time

    import jnet.data as data  # after the flags: --help answers without loading JAX

    root = data.paths.named_folder(args.data_dir) or data.data_root()
    mnist_dir, cat_dir = root / "mnist", root / "catvnoncat"

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
