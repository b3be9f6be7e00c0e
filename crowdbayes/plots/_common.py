"""What every figure of :mod:`crowdbayes.plots` shares: colours, inputs, axes and layout."""

import math
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from crowdbayes.estimators import CrowdModel
from crowdbayes.results import CI_PROB, FitResult

#: Shared look of every figure.
POINT_COLOR = "#1f4e79"
TRUTH_COLOR = "#d1495b"
REFERENCE_COLOR = "0.55"
CONFUSION_CMAP = "Blues"


def _as_result(result: Any) -> FitResult:
    """The FitResult of ``result`` (a FitResult or a fitted estimator)."""
    if isinstance(result, FitResult):
        return result
    if isinstance(result, CrowdModel):
        return result.result_  # NotFittedError (a ValueError) before fit
    raise TypeError(
        f"expected a FitResult or a fitted crowdbayes estimator, not {type(result).__name__}"
    )


def _ci_percent(result: FitResult) -> str:
    """The result's interval probability as a percentage, e.g. "94%"."""
    prob = float(result.datatree.attrs.get("ci_prob", CI_PROB))
    return f"{100 * prob:.0f}%"


def _style_axes(ax: Axes, *, grid: Literal["x", "y"] | None = None, fontsize: float = 9.0) -> None:
    """The shared styling: no top/right spines, light grid along ``grid`` ("x" or "y")."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=fontsize, length=3)
    if grid is not None:
        ax.grid(True, axis=grid, color="0.88", linewidth=0.8)
        ax.set_axisbelow(True)


def _plot_estimates(
    ax: Axes,
    position: np.ndarray,
    estimate: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    *,
    horizontal: bool = False,
    linewidth: float = 2.0,
    markersize: float = 4.0,
    label: str | None = None,
) -> None:
    """A dot per estimate and a line over its interval, where both ends of it are finite.

    ``position`` runs along the y axis when ``horizontal`` (the values along x), else along x.
    """
    position = np.asarray(position)
    has_ci = np.isfinite(low) & np.isfinite(high)
    if has_ci.any():
        lines = ax.hlines if horizontal else ax.vlines
        lines(position[has_ci], low[has_ci], high[has_ci], color=POINT_COLOR, linewidth=linewidth)
    xy = (estimate, position) if horizontal else (position, estimate)
    ax.plot(*xy, "o", color=POINT_COLOR, markersize=markersize, label=label)


def _panel_grid(
    n_panels: int,
    ncols: int,
    panel: tuple[float, float],
    margin: tuple[float, float],
) -> tuple[Figure, list[Axes]]:
    """A figure with ``n_panels`` axes, ``ncols`` to a row; the empty cells of the last row removed.

    The figure is ``panel`` (width, height) inches a cell plus ``margin`` inches.
    """
    nrows = math.ceil(n_panels / ncols)
    figsize = (panel[0] * ncols + margin[0], panel[1] * nrows + margin[1])
    fig = Figure(figsize=figsize, layout="constrained")
    cells = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in cells[n_panels:]:
        fig.delaxes(ax)
    return fig, cells[:n_panels]


def _label_outer(
    panels: list[Axes], ncols: int, xlabel: str, ylabel: str, *, fontsize: float = 9.0
) -> None:
    """Axis labels on the panels of a grid (filled row by row) at its left and bottom edges."""
    for pos, ax in enumerate(panels):
        if pos % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=fontsize)
        if pos + ncols >= len(panels):
            ax.set_xlabel(xlabel, fontsize=fontsize)


def _legend_below(fig: Figure, ax: Axes, *, ncols: int = 2) -> None:
    """The legend of the labelled artists of ``ax``, centred below the figure's axes."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=8, frameon=False)
