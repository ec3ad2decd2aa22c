"""Shared plumbing of `experiments/*.py`: flags, metrics.json and the results table.

Every experiment script is `main(argv) -> dict`: it parses the shared flags (`parser`,
`parse`) plus its own, trains through `jnet.fit`, prints a table that puts our numbers
beside the tutorial's and writes `metrics.json` next to its PNG plots (`finish`).
`experiments/results.py` turns the metrics files into `docs/results.md`.

The scripts import this file as a sibling module (`import common as ex`: running
`python experiments/x.py` puts `experiments/` on `sys.path`). It imports nothing heavy at
the top, so a script that parses its flags before importing JAX answers `--help` at once.

The table itself (rows, formatting) is `experiments/table.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pathlib
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

RESULTS_DIR = pathlib.Path("results")
DATA_DIR_ENV = "JNET_DATA_DIR"  # jnet.data.DATA_DIR_ENV, without importing jnet (and JAX)
QUICK_SUFFIX = "-quick"  # --quick runs write to results/<name>-quick/, never over a full run


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


def existing_folder(text: str) -> pathlib.Path:
    """argparse `type=` for `--data-dir`: a folder that exists (a named folder is never created)."""
    path = pathlib.Path(text).expanduser()
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{path} {what} (a data folder is never created)")
    return path


def parser(
    name: str,
    doc: str | None,
    *,
    data: bool = True,
    devices: bool = False,
    epochs: dict[str, Any] | None = None,
) -> argparse.ArgumentParser:
    """An ArgumentParser with the flags every experiment shares.

    Every script gets `--out`, `--seed`, `--quick` and `--no-progress`; the others only
    where they mean something.

    Args:
      name: the script's name, e.g. "mnist_two_layer"; `--out` defaults to `results/<name>`
        (`results/<name>-quick` with `--quick`).
      doc: the script's `__doc__`: its first line is the description, the rest the epilog.
      data: offer `--data-dir` (scripts that read a dataset).
      devices: offer `--devices N` (data parallelism), for scripts that pass a mesh to fit.
      epochs: offer `--epochs`, with these `add_argument` keywords (`default`, `help`,
        `nargs`, ...); for scripts that train.
    """
    lines = (doc or name).strip().splitlines()
    p = argparse.ArgumentParser(
        prog=f"python experiments/{name}.py",
        description=lines[0],
        epilog="\n".join(lines[1:]).strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(name=name, script=name)  # name: of the results folder; script: the file
    if data:
        p.add_argument(
            "--data-dir",
            type=existing_folder,
            default=None,
            help="folder holding the dataset's files (or a folder with mnist/ and catvnoncat/ "
            "sub-folders); it must exist. Default: $JNET_DATA_DIR/<dataset>, else "
            "~/.cache/jnet/<dataset> (MNIST is downloaded there)",
        )
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help=f"results folder for metrics.json and the PNG plots (default: {RESULTS_DIR}/"
        f"{name}, or {RESULTS_DIR}/{name}{QUICK_SUFFIX} with --quick)",
    )
    p.add_argument("--seed", type=int, default=0, help="first PRNG seed (default: %(default)s)")
    if epochs is not None:
        p.add_argument("--epochs", **{"type": positive_int, **epochs})
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
    p: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    quick: dict[str, Any],
    *,
    name: Callable[[argparse.Namespace], str] | None = None,
) -> argparse.Namespace:
    """Parses `argv`; with `--quick`, `quick` replaces the defaults (explicit flags still win).

    Before JAX starts, asks XLA:CPU for Eigen's convolutions and matrix products
    (`jnet.xla_flags`).

    Then settles `args.out` and checks it now, not after minutes of training: without
    `--out`, results go to `results/<name>` (`results/<name>-quick` with `--quick`), where
    `name` is the parser's or `name(args)`; and a `--quick` run never replaces a full run's
    metrics.json, even with an explicit `--out`. In a multi-process run, processes other
    than 0 write to `<out>/process<i>/`.
    """
    args = p.parse_args(argv)
    if args.quick:
        p.set_defaults(**quick)
        args = p.parse_args(argv)
    from jnet import xla_flags  # XLA:CPU's Eigen kernels (faster CNNs, RNNs), before JAX starts

    xla_flags.prefer_eigen_kernels()
    if getattr(args, "data_dir", False) is None and os.environ.get(DATA_DIR_ENV):
        try:  # a $JNET_DATA_DIR that does not exist: say so now, like a bad --data-dir
            existing_folder(os.environ[DATA_DIR_ENV])
        except argparse.ArgumentTypeError as e:
            p.error(f"${DATA_DIR_ENV}: {e}")
    if name is not None:
        args.name = name(args)
    if args.out is None:
        args.out = RESULTS_DIR / (args.name + (QUICK_SUFFIX if args.quick else ""))
    existing = next(f for f in (args.out, *args.out.parents) if f.exists())  # "." or "/" exist
    if not existing.is_dir():
        where = "" if existing == args.out else f" (on the way to {args.out})"
        p.error(f"argument --out: {existing}{where} is a file; expected a folder for the results")
    old = args.out / "metrics.json"
    if args.quick and old.is_file() and not _is_quick(old):
        p.error(
            f"argument --out: {old} holds a full run's results, which a --quick run never "
            f"replaces (pass another --out, or none for {RESULTS_DIR}/{args.name}{QUICK_SUFFIX})"
        )
    process = _process_index()
    if process > 0:
        # Every process computes the same numbers; process 0 writes to --out, the others
        # to a sub-folder, never the same file.
        args.out = args.out / f"process{process}"
    return args


def _is_quick(path: pathlib.Path) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("config", {}).get("quick"))
    except (OSError, ValueError, AttributeError):
        return False  # unreadable: treat it as a full run's, never overwrite it quietly


def _process_index() -> int:
    """This process's index in a multi-process JAX run (`python -m jnet.distributed`), or 0."""
    if "jax" not in sys.modules:  # one process unless jnet.distributed has set JAX up
        return 0
    import jax

    return jax.process_index() if jax.process_count() > 1 else 0


def seeds(args: argparse.Namespace) -> list[int]:
    """`[seed, seed + 1, ..., seed + num_seeds - 1]` (num_seeds defaults to 1)."""
    return list(range(args.seed, args.seed + (getattr(args, "num_seeds", None) or 1)))


def mesh(devices: int | None) -> Any:
    """A data-parallel mesh over the first `devices` devices, or None for one device."""
    if devices is None:
        return None
    from jnet import parallel

    return parallel.data_mesh(devices)


def command(script: str, argv: Sequence[str] | None) -> str:
    """The shell command that reproduces a run, e.g. `python experiments/xor.py --seed 1`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"experiments/{script}.py", *map(str, argv)])


def device_info() -> dict[str, Any]:
    """Where the run happened: JAX backend, device kind and count, host, versions."""
    import jax

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
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _jsonable(value: Any) -> Any:
    """numpy/jax scalars and arrays, paths and tuples -> plain JSON values (NaN -> null)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pathlib.Path):
        return str(value)
    if hasattr(value, "__array__") and not isinstance(value, np.generic):  # numpy, jax arrays
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
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    metrics: dict[str, Any],
    files: Sequence[pathlib.Path],
    seconds: float,
) -> dict[str, Any]:
    """The end every experiment shares: writes `args.out/metrics.json`, says so; returns it.

    `metrics` holds `tutorial`, `config`, the table's `rows` and whatever else the script
    keeps (per-run records: see `records`). Added here: `script` (`args.name`), the
    `command` that reproduces the run, `seeds`, `quick` and (where the script has the
    flag) `devices` in `config`, the plots' file names, the run's `seconds` and `device`.
    """
    config = {**metrics.get("config", {}), "seeds": seeds(args), "quick": args.quick}
    if hasattr(args, "devices"):
        config["devices"] = args.devices
    metrics = {
        "script": args.name,
        "tutorial": metrics.get("tutorial"),
        "command": command(args.script, argv),
        **metrics,
        "config": config,
        "files": [f.name for f in files],
        "seconds": seconds,
    }
    print(f"\nwrote {write_metrics(args.out, metrics)} and {len(files)} plots")
    return metrics


def records(
    results: dict[str, list[dict[str, Any]]],
    keys: Sequence[str],
    *,
    history_every: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """`{config: [run's `keys` (+ its history) per run]}`: the per-run part of metrics.json.

    `history_every` keeps every n-th epoch of each run's `history` (`history_slice`);
    None keeps all of it.
    """

    def one(run: dict[str, Any]) -> dict[str, Any]:
        h = run["history"]
        return {
            **{k: run[k] for k in keys},
            "history": h if history_every is None else history_slice(h, history_every),
        }

    return {name: [one(r) for r in runs] for name, runs in results.items()}


def log_dir(args: argparse.Namespace, run: str) -> pathlib.Path:
    """`<out>/logs/<run>/`: where `jnet.fit(log_dir=...)` appends the run's `metrics.jsonl`.

    A rerun into the same `--out` starts that log afresh (fit appends, for resumes), as it
    replaces its metrics.json; `run` names one training run, e.g. `"784-20-10-seed0"`.
    """
    folder = args.out / "logs" / run.replace(" ", "-").replace("'", "")
    for old in folder.rglob("metrics.jsonl") if folder.is_dir() else ():
        old.unlink()
    return folder


@contextlib.contextmanager
def naming_rates(learning_rates: str) -> Iterator[None]:
    """Makes a divergence inside say the script's `learning_rates` (e.g. "lr 0.05, last 0.1").

    `jnet.fit` names the learning rate of a plain float or an `optax.inject_hyperparams`
    optimizer itself; with several rates (`jnet.per_layer`) it cannot pick one, so the
    script, which knows them, adds them to the `DivergenceError`.
    """
    try:
        yield
    except FloatingPointError as e:  # jnet.DivergenceError
        if learning_rates not in str(e):
            e.args = (f"{e} (this run: {learning_rates})", *e.args[1:])
        raise


class Timer:
    """Wall-clock seconds since creation: `t = Timer(); ...; t()`."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def images(x: Any, side: int = 28) -> Any:
    """Flattened grey images (N, side*side) in [0, 1] back to (N, side, side) for plotting."""
    import numpy as np

    return np.asarray(x).reshape(len(x), side, side)


def history_slice(history: dict[str, list], every: int) -> dict[str, list]:
    """Every `every`-th epoch of a history (epochs every, 2*every, ...), for JSON files."""
    keep = [i for i, e in enumerate(history["epoch"]) if e % every == 0]
    return {k: [v[i] for i in keep] for k, v in history.items()}
