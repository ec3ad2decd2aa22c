"""experiments/plots.py: a curve of one or a few points is drawn (markers), checked in the PNG."""

import matplotlib.colors
import matplotlib.image
import numpy as np
import plots
import pytest


@pytest.fixture
def figures(monkeypatch):
    """The figures the helpers save, kept to find their axes in the PNG."""
    kept = []
    save = plots.save

    def keep(fig, path, dpi=100):
        kept.append(fig)
        return save(fig, path, dpi)

    monkeypatch.setattr(plots, "save", keep)
    return kept


def _pixels_of(png, fig, ax, color) -> int:
    """How many pixels of `color` lie in `ax`'s plot area of the PNG, its legend left out."""
    image = matplotlib.image.imread(png)[..., :3] * 255
    height, width = image.shape[:2]
    assert (width, height) == tuple(fig.canvas.get_width_height())  # the same pixels as fig
    rows, cols = np.mgrid[0:height, 0:width]
    up = height - rows  # display coordinates count from the bottom

    def within(box, pad=0):
        return (cols >= box.x0 - pad) & (cols <= box.x1 + pad) & (up >= box.y0 - pad) & (
            up <= box.y1 + pad
        )  # fmt: skip

    area = within(ax.get_window_extent(), pad=-2) & ~within(ax.get_legend().get_window_extent(), 2)
    target = np.array(matplotlib.colors.to_rgb(color)) * 255
    return int((area & (np.abs(image - target).max(-1) < 40)).sum())


def test_a_one_epoch_run_draws_its_points(tmp_path, figures):
    """One epoch used to give empty axes: a line through one point draws nothing."""
    one = {"epoch": [1], "loss": [0.7], "accuracy": [0.6], "val_loss": [0.8],
           "val_accuracy": [0.55]}  # fmt: skip
    rnn = {**one, "loss": [0.9], "accuracy": [0.4], "val_loss": [1.0], "val_accuracy": [0.3]}
    png = plots.curves({"lstm": one, "rnn": rnn}, tmp_path / "c.png")
    (fig,) = figures
    for ax in fig.axes:  # loss and accuracy panels, both runs (C0 and C1)
        assert all(line.get_marker() == "o" for line in ax.get_lines())
        for color in ("C0", "C1"):
            assert _pixels_of(png, fig, ax, color) > 10, (ax.get_ylabel(), color)


@pytest.mark.slow  # about 2 s: two more figures
def test_many_points_are_a_plain_line_and_series_marks_few(tmp_path, figures):
    n = plots.FEW_POINTS + 1
    history = {"loss": list(np.linspace(1, 0.1, n)), "accuracy": list(np.linspace(0.5, 0.9, n))}
    plots.curves(history, tmp_path / "many.png")
    png = plots.series({"cost": ([0], [1.0])}, tmp_path / "s.png", x_label="i", y_label="c")
    curves_fig, series_fig = figures
    assert {line.get_marker() for line in curves_fig.axes[0].get_lines()} == {"None"}
    (ax,) = series_fig.axes
    assert ax.get_lines()[0].get_marker() == "o" and _pixels_of(png, series_fig, ax, "C0") > 10
