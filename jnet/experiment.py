"""Shared plumbing for `experiments/*.py`: flags, data, metrics.json and the results table.

Every experiment script is `main(argv) -> dict`: it parses the shared flags
(`--data-dir`, `--out`, `--seed`, `--quick`, `--no-progress`, and `--devices` where it
trains on MNIST) plus its own (most add `--num-seeds`),
trains through `jnet.fit`, prints a table that puts our numbers beside the tutorial's
(`print_table`) and writes `metrics.json` (`write_metrics`) next to its PNG plots.
`experiments/report.py` turns the metrics files into `docs/results.md`.

A table row is a plain dict (JSON-ready):

    {"run": "784-512-10, 250 it", "metric": "test acc (first 200)",
     "ours": [0.875, 0.89], "tutorial": 0.875, "unit": "%", "note": "..."}

`ours` is one number or a list (one per seed: printed as mean ± sample std).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np

from jnet.train import fit

Row = dict[str, Any]

RESULTS_DIR = pathlib.Path("results")


def positive_int(text: str) -> int:
    """argparse `type=` for flags that count things (sizes, iterations, seeds): an int >= 1.

    A plain `int` lets `--train-size -5` slice off the last 5 images and `--num-seeds 0`
    train nothing; this makes argparse refuse them with the flag's name.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {value}")
    return value


def parser(name: str, doc: str | None, *, devices: bool = True) -> argparse.ArgumentParser:
    """An ArgumentParser with the flags every experiment shares.

    Args:
      name: the script's name, e.g. "mnist_two_layer"; `--out` defaults to `results/<name>`.
      doc: the script's `__doc__`: its first line is the description, the rest the epilog.
      devices: offer `--devices N` (data parallelism), for scripts that pass a mesh to fit.
    """
    lines = (doc or name).strip().splitlines()
    p = argparse.ArgumentParser(
        prog=f"python experiments/{name}.py",
        description=lines[0],
        epilog="\n".join(lines[1:]).strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data-dir",
        type=pathlib.Path,
        default=None,
        help="folder holding the dataset's files (or a folder with mnist/ and catvnoncat/ "
        "sub-folders); default: $JNET_DATA_DIR/<dataset>, else ~/.cache/jnet/<dataset>",
    )
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=RESULTS_DIR / name,
        help="results folder for metrics.json and the PNG plots (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="first PRNG seed (default: %(default)s)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and few iterations: a smoke run for CI (seconds, not minutes)",
    )
    if devices:
        p.add_argument(
            "--devices",
            type=positive_int,
            default=None,
            metavar="N",
            help="data-parallel over the first N devices (a mesh with a 'data' axis); "
            "default: one device, no mesh",
        )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def parse(
    p: argparse.ArgumentParser, argv: Sequence[str] | None, quick: dict[str, Any]
) -> argparse.Namespace:
    """Parses `argv`; with `--quick`, `quick` replaces the defaults (explicit flags still win).

    In a multi-process run, processes other than 0 write to `<out>/process<i>/`.
    """
    args = p.parse_args(argv)
    if args.quick:
        p.set_defaults(**quick)
        args = p.parse_args(argv)
    # Fail now, not with FileExistsError when the results are written after the whole run.
    existing = next(f for f in (args.out, *args.out.parents) if f.exists())  # "." or "/" exist
    if not existing.is_dir():
        where = "" if existing == args.out else f" (on the way to {args.out})"
        p.error(f"argument --out: {existing}{where} is a file; expected a folder for the results")
    if jax.process_count() > 1 and jax.process_index() > 0:
        # Multi-process runs (`python -m jnet.distributed`): every process computes the same
        # numbers; process 0 writes to --out, the others to a sub-folder, never the same file.
        args.out = args.out / f"process{jax.process_index()}"
    return args


def seeds(args: argparse.Namespace) -> list[int]:
    """`[seed, seed + 1, ..., seed + num_seeds - 1]` (num_seeds defaults to 1)."""
    return list(range(args.seed, args.seed + getattr(args, "num_seeds", 1)))


def mesh(devices: int | None) -> Any:
    """A data-parallel mesh over the first `devices` devices, or None for one device."""
    if devices is None:
        return None
    from jnet import parallel

    return parallel.data_mesh(devices)


def command(name: str, argv: Sequence[str] | None) -> str:
    """The shell command that reproduces a run, e.g. `python experiments/xor.py --seed 1`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"experiments/{name}.py", *map(str, argv)])


def device_info() -> dict[str, Any]:
    """Where the run happened: JAX backend, device kind and count, host, versions."""
    devs = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device_kind": devs[0].device_kind,
        "device_count": len(devs),
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "x64": bool(jax.config.jax_enable_x64),
    }


def _jsonable(value: Any) -> Any:
    """numpy/jax scalars and arrays, paths and tuples -> plain JSON values (NaN -> null)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pathlib.Path):
        return str(value)
    if isinstance(value, np.ndarray | jax.Array):
        return _jsonable(np.asarray(value).tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(out: pathlib.Path, metrics: dict[str, Any]) -> pathlib.Path:
    """Writes `out/metrics.json` (creating `out`), with device info added; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    payload = {**metrics, "device": device_info()}
    path.write_text(json.dumps(_jsonable(payload), indent=1, allow_nan=False) + "\n")
    return path


def finish(
    out: pathlib.Path, metrics: dict[str, Any], files: Sequence[pathlib.Path], seconds: float
) -> dict[str, Any]:
    """Adds the plots' names and the run time, writes `out/metrics.json`, says so; returns it."""
    metrics = {**metrics, "files": [f.name for f in files], "seconds": seconds}
    print(f"\nwrote {write_metrics(out, metrics)} and {len(files)} plots")
    return metrics


def mean_std(values: float | Iterable[float]) -> tuple[float, float | None, int]:
    """`(mean, sample std or None for one value, count)`."""
    vals = [float(values)] if isinstance(values, int | float) else [float(v) for v in values]
    if not vals:
        return math.nan, None, 0
    mean = float(np.mean(vals))
    return mean, (float(np.std(vals, ddof=1)) if len(vals) > 1 else None), len(vals)


def fmt(value: Any, unit: str = "%") -> str:
    """Formats a number or a list (mean ± std (n=...)).

    Units: "%" shows fractions as percent with one decimal (two when the std is under 0.1
    points), "s" seconds with one decimal, "" four significant digits.
    """
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    mean, std, n = mean_std(value)
    if math.isnan(mean):
        return "nan"
    if unit == "%":
        digits = 2 if std is not None and std < 1e-3 else 1  # show spreads under 0.1 points
        one = lambda v: f"{v * 100:.{digits}f}"
    elif unit == "s":
        one = lambda v: f"{v:.1f}"
    else:
        one = lambda v: f"{v:.4g}"
    text = one(mean) + ("" if std is None else f" ± {one(std)}")
    text += {"%": "%", "s": " s"}.get(unit, "")
    return text + (f" (n={n})" if n > 1 else "")


def row(
    run: str,
    metric: str,
    ours: Any,
    tutorial: Any = None,
    *,
    unit: str = "%",
    note: str = "",
) -> Row:
    """A results-table row; `ours` is a number or one number per seed."""
    if isinstance(ours, np.ndarray | list | tuple):
        ours = [float(v) for v in ours]
    elif ours is not None:
        ours = float(ours)
    return {
        "run": run,
        "metric": metric,
        "ours": ours,
        "tutorial": tutorial,
        "unit": unit,
        "note": note,
    }


COLUMNS = ("run", "metric", "ours", "tutorial", "note")


def table_lines(rows: Sequence[Row], markdown: bool = False) -> list[str]:
    """The rows as aligned text columns (or a Markdown table): run, metric, ours, tutorial, note."""
    cells = [
        [
            r["run"],
            r["metric"],
            fmt(r["ours"], r.get("unit", "%")),
            fmt(r["tutorial"], r.get("unit", "%")),
            r.get("note", ""),
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(COLUMNS)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
    return [line(COLUMNS), line(["-" * w for w in widths])] + [line(r) for r in cells]


def print_table(title: str, rows: Sequence[Row]) -> None:
    """Prints the "ours vs tutorial" table under a title line."""
    print(f"\n{title}")
    for line in table_lines(rows):
        print(line)


class Timer:
    """Wall-clock seconds since creation: `t = Timer(); ...; t()`."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def load_mnist(
    data_dir: str | os.PathLike | None,
    train_size: int | None = None,
    test_size: int | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST-layout IDX data, flattened and scaled: the first `train_size`/`test_size` images.

    Returns:
      `(x_train, y_train), (x_test, y_test)`: x float32 (N, 784) in [0, 1], y int64 (N,);
      `images(x)` gives them back as (N, 28, 28) for plotting.
    """
    from jnet import data

    (x, y), (xt, yt) = data.mnist(data_dir, download=data_dir is None)
    x, y = x[:train_size], y[:train_size]
    xt, yt = xt[:test_size], yt[:test_size]
    return (data.scale(data.flatten(x)), y), (data.scale(data.flatten(xt)), yt)


def images(x: np.ndarray, side: int = 28) -> np.ndarray:
    """Flattened grey images (N, side*side) in [0, 1] back to (N, side, side) for plotting."""
    return np.asarray(x).reshape(len(x), side, side)


def history_slice(history: dict[str, list], every: int) -> dict[str, list]:
    """Every `every`-th epoch of a history (epochs every, 2*every, ...), for JSON files."""
    keep = [i for i, e in enumerate(history["epoch"]) if e % every == 0]
    return {k: [v[i] for i in keep] for k, v in history.items()}


def fit_in_stages(
    net: Any,
    loss: Any,
    optimizer: Any,
    x: Any,
    y: Any,
    *,
    stops: Sequence[int],
    key: jax.Array,
    evaluate: Any,
    **fit_kwargs: Any,
) -> tuple[Any, dict[str, list], list[Any]]:
    """`jnet.fit` up to each cumulative epoch count in `stops`, evaluating at each stop.

    E.g. `stops=(250, 500)` trains 250 epochs, calls `evaluate(params)`, then 250 more
    from those params. Each stage starts a fresh optimizer state: exactly one
    uninterrupted run for a stateless optimizer (plain SGD), not for momentum or Adam.

    Returns:
      `(params, history, [evaluate(params) at each stop])`, the history's epochs
      numbered across stages.
    """
    params = fit_kwargs.pop("params", None)
    history: dict[str, list] = {}
    results = []
    done = 0
    for i, stop in enumerate(stops):
        stage_key = key if i == 0 else jax.random.fold_in(key, i)  # stage 0 draws the init
        params, h = fit(
            net,
            loss,
            optimizer,
            x,
            y,
            epochs=stop - done,
            key=stage_key,
            params=params,
            **fit_kwargs,
        )
        for k, v in h.items():
            history.setdefault(k, []).extend([e + done for e in v] if k == "epoch" else v)
        results.append(evaluate(params))
        done = stop
    return params, history, results
