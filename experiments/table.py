"""The experiments' results table: rows of "ours vs the tutorial's", printed and in Markdown.

A table row is a plain dict (JSON-ready):

    {"run": "784-512-10, 250 it", "metric": "test acc (first 200)",
     "ours": [0.875, 0.89], "tutorial": 0.875, "unit": "%", "note": "..."}

`ours` is one number or a list (one per seed: printed as mean ± sample std). Numbers are
printed rounded for people (`fmt`); metrics.json keeps them in full.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

Row = dict[str, Any]


def mean_std(values: float | Iterable[float]) -> tuple[float, float | None, int]:
    """`(mean, sample std or None for one value, count)`."""
    vals = [float(values)] if isinstance(values, int | float) else [float(v) for v in values]
    if not vals:
        return math.nan, None, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None), len(vals)


def fmt(value: Any, unit: str = "%") -> str:
    """Formats a number or a list (mean ± std (n=...)), rounded for people.

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
    if isinstance(ours, list | tuple) or hasattr(ours, "__array__") and getattr(ours, "ndim", 0):
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
