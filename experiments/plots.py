"""Plots for the experiments: training curves, image grids, misclassified images, activations.

Figures are `matplotlib.figure.Figure` objects rendered by the Agg (PNG) canvas, not
pyplot: nothing here touches pyplot's global state or backend, so the helpers work
headless, in tests and inside notebooks alike. Each function writes one PNG and
returns its path.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

History = Mapping[str, Sequence[float]]
PathLike = str | os.PathLike
FEW_POINTS = 20  # lines with this many points or fewer get markers: one point is a dot


def _markers(n: int) -> dict:
    """Line kwargs that draw each point when a line has few (a 1-epoch run's curve, one
    point, would otherwise be invisible: a line needs two points)."""
    return {"marker": "o", "ms": 4} if n <= FEW_POINTS else {}


def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)  # attach the Agg canvas: PNG output without pyplot
    return fig


def save(fig: Figure, path: PathLike, dpi: int = 100) -> pathlib.Path:
    """Writes `fig` as a PNG (creating the folder); returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def curves(
    runs: Mapping[str, History] | History,
    path: PathLike,
    *,
    title: str = "",
    x_label: str = "epoch",
    val_label: str = "test",
    log_loss: bool = False,
    marks: Sequence[tuple[float, float, str]] = (),
    show_accuracy: bool = True,
) -> pathlib.Path:
    """Loss (left) and accuracy (right) against epochs, for one run or several.

    Curves of `FEW_POINTS` points or fewer mark each point, so a one-epoch run shows a dot.

    Args:
      runs: a `jnet.fit` history (`epoch`, `loss`, `accuracy`, optional `val_loss`,
        `val_accuracy`), or `{label: history}` for several runs on the same axes.
        Training curves are solid, validation curves dashed.
      path: the PNG to write.
      title: the figure's title.
      x_label: what one step on the x axis is ("iteration" for full-batch runs).
      val_label: what the validation data is called in the legend.
      log_loss: a log scale for the loss.
      marks: reference points `(x, accuracy, label)` drawn on the accuracy panel, e.g.
        the tutorial's reported numbers; points sharing a label share a marker.
      show_accuracy: False draws the loss panel only.
    """
    if "loss" in runs:
        runs = {"": runs}  # a single history
    fig = _figure(9 if show_accuracy else 5, 3.4)
    axes = fig.subplots(1, 2 if show_accuracy else 1, squeeze=False)[0]
    colors = [f"C{i}" for i in range(10)]
    panels = [("loss", "loss")] + ([("accuracy", "accuracy")] if show_accuracy else [])
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for i, (label, h) in enumerate(runs.items()):
            epochs = h.get("epoch") or list(range(1, len(h[key]) + 1))
            prefix = f"{label} " if label else ""
            color = colors[i % len(colors)]
            scale = 100.0 if key == "accuracy" else 1.0
            dots = _markers(len(epochs))
            train = np.asarray(h[key]) * scale
            ax.plot(epochs, train, color=color, label=f"{prefix}train", **dots)
            if f"val_{key}" in h:
                val = np.asarray(h[f"val_{key}"]) * scale
                ax.plot(epochs, val, color=color, ls="--", label=f"{prefix}{val_label}", **dots)
        ax.set(xlabel=x_label, ylabel=ylabel + (" (%)" if key == "accuracy" else ""))
        ax.grid(alpha=0.3)
        if key == "loss" and log_loss:
            ax.set_yscale("log")
        if key == "accuracy":
            labels = list(dict.fromkeys(label for _, _, label in marks))  # one marker each
            for j, label in enumerate(labels):
                xs = [x for x, _, lab in marks if lab == label]
                accs = [acc * 100 for _, acc, lab in marks if lab == label]
                ax.plot(xs, accs, marker="*oxP"[j % 4], ms=9, ls="", color="k", label=label)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def image_grid(
    images: np.ndarray,
    true: Sequence[Any],
    predicted: Sequence[Any] | None,
    path: PathLike,
    *,
    class_names: Sequence[str] | None = None,
    columns: int = 8,
    title: str = "",
    cmap: str = "gray_r",
) -> pathlib.Path:
    """A grid of images, each titled with its true and predicted label; errors in red.

    Args:
      images: (N, H, W) grey or (N, H, W, 3) RGB, floats in [0, 1] or uint8.
      true: N true labels. predicted: N predicted labels, or None to show labels only.
      class_names: names to show instead of label indices.
      columns: images per row.
    """
    images = np.asarray(images)
    n = len(images)
    name = (lambda c: class_names[int(c)]) if class_names else (lambda c: str(int(c)))
    rows = max(1, -(-n // columns))
    top = 0.7 if title else 0.1  # inches above the grid for the title
    height = 1.45 * rows + top
    # A fixed grid, no layout engine: constrained layout costs seconds with many axes.
    fig = _figure(1.25 * columns, height, layout=None)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - top / height, hspace=0.5)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        image = images[i]
        ax.imshow(image, cmap=cmap if image.ndim == 2 else None, interpolation="nearest")
        if predicted is None:
            ax.set_title(name(true[i]), fontsize=8)
        else:
            ok = int(true[i]) == int(predicted[i])
            ax.set_title(
                f"true {name(true[i])}\npred {name(predicted[i])}",
                fontsize=7,
                color="black" if ok else "red",
            )
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.08 / height, va="top")
    return save(fig, path)


def misclassified(
    images: np.ndarray,
    true: Sequence[Any],
    predicted: Sequence[Any],
    path: PathLike,
    *,
    limit: int = 32,
    title: str = "misclassified",
    **grid_kwargs: Any,
) -> pathlib.Path:
    """The first `limit` images whose predicted label differs from the true one, as a grid."""
    true, predicted = np.asarray(true).reshape(-1), np.asarray(predicted).reshape(-1)
    wrong = np.flatnonzero(true != predicted)[:limit]
    title = f"{title}: {int(np.sum(true != predicted))} of {len(true)}"
    columns = grid_kwargs.pop("columns", min(8, max(len(wrong), 1)))
    return image_grid(
        np.asarray(images)[wrong],
        true[wrong],
        predicted[wrong],
        path,
        title=title,
        columns=columns,
        **grid_kwargs,
    )


def activations(
    functions: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: PathLike,
    *,
    title: str = "",
    columns: int = 2,
) -> pathlib.Path:
    """One panel per activation: the function and its derivative against z.

    Args:
      functions: `{name: (z, f(z), f'(z))}`, each (K,).
    """
    rows = -(-len(functions) // columns)
    fig = _figure(4.2 * columns, 3.0 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, (z, y, dy)) in zip(axes, functions.items(), strict=False):
        ax.plot(z, y, label="function")
        ax.plot(z, dy, ls="--", label="derivative")
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set(title=name, xlabel="z")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    for ax in axes[len(functions) :]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def series(
    lines: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: PathLike,
    *,
    x_label: str,
    y_label: str,
    title: str = "",
    log_y: bool = False,
    style: Callable[[str], dict] | None = None,
) -> pathlib.Path:
    """Several `(x, y)` lines on one axis: e.g. the cost of every seed of every config.

    Args:
      lines: `{label: (x, y)}`; a label starting with "_" stays out of the legend.
        Lines of `FEW_POINTS` points or fewer mark each point.
      style: `label -> matplotlib line kwargs` (colour, width, dashes; they win over the
        markers).
    """
    fig = _figure(6, 3.6)
    ax = fig.subplots()
    for label, (x, y) in lines.items():
        ax.plot(x, y, label=label, **{**_markers(len(x)), **(style(label) if style else {})})
    ax.set(xlabel=x_label, ylabel=y_label)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return save(fig, path)


def is_png(path: PathLike) -> bool:
    """True if the file starts with the PNG signature."""
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"
