"""Rank histograms of a simulation-based calibration (:mod:`crowdbayes.sbc`)."""

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from crowdbayes.plots._common import (
    POINT_COLOR,
    REFERENCE_COLOR,
    TRUTH_COLOR,
    _label_outer,
    _legend_below,
    _panel_grid,
    _style_axes,
)
from crowdbayes.sbc import SBCResult, rank_histogram

__all__ = ["plot_sbc_ranks"]


def plot_sbc_ranks(
    result: SBCResult,
    *,
    parameters: Sequence[str] | None = None,
    bins: int | None = None,
    prob: float = 0.99,
    max_panels: int = 24,
) -> Figure:
    """Rank histograms of a simulation-based calibration, one panel per parameter.

    Each panel shows how many simulations put the true value in each bin of normalised rank
    (posterior draws below the truth, divided by their number), the count expected under
    uniformity (line) and the band holding each bin's count with probability ``prob`` under
    uniformity (binomial, per bin). Bars outside the band in many bins, a U shape (posterior too
    narrow), a hump (too wide) or a slope (biased) point to a problem. Panels whose
    Holm-adjusted p-value is below 0.01 are drawn in red.

    Parameters
    ----------
    result : SBCResult
        From :func:`crowdbayes.sbc.simulation_based_calibration`.
    parameters : sequence of str, optional
        Scalar parameters to show (names as in ``result.ranks["parameter"]``). Default: all,
        or the ``max_panels`` with the smallest p-values when there are more.
    bins : int, optional
        Default as in :meth:`~crowdbayes.sbc.SBCResult.uniformity`.
    prob : float
        Probability of the uniformity band.
    max_panels : int

    Returns
    -------
    matplotlib.figure.Figure
        One axes per parameter shown.

    Raises
    ------
    ValueError
        For an unknown parameter, or ``prob`` outside (0, 1).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from crowdbayes.plots import plot_sbc_ranks
    >>> from crowdbayes.sbc import SBCResult
    >>> rng = np.random.default_rng(0)
    >>> ranks = pd.DataFrame({"simulation": np.tile(np.arange(100), 2),
    ...                       "variable": "x", "parameter": np.repeat(["x[0]", "x[1]"], 100),
    ...                       "rank": rng.integers(0, 50, 200), "n_ranks": 49})
    >>> fits = pd.DataFrame({"flagged": [False] * 100, "permuted_chains": [""] * 100})
    >>> fig = plot_sbc_ranks(SBCResult("toy", ranks, fits))
    >>> len(fig.axes)
    2
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie strictly between 0 and 1, got {prob}")
    table = result.uniformity(bins)
    if parameters is None:
        names = list(table.index)
        shown = f"{len(names)} parameters"
        if len(names) > max_panels:
            worst = set(table["p"].nsmallest(max_panels).index)
            names = [n for n in names if n in worst]
            shown = f"the {max_panels} of {len(table)} parameters with the smallest p"
    else:
        names = list(parameters)
        unknown = [n for n in names if n not in table.index]
        if unknown or not names:
            raise ValueError(
                f"parameter(s) not in the result: {unknown or names}; "
                f"choose from e.g. {list(table.index[:4])}"
            )
        shown = f"{len(names)} parameters"
    ranks = result.ranks
    ncols = min(4, len(names))
    fig, panels = _panel_grid(len(names), ncols, panel=(2.6, 2.0), margin=(0.4, 0.9))
    for ax, name in zip(panels, names, strict=True):
        group = ranks[ranks["parameter"] == name]
        n_bins = int(table.loc[name, "df"]) + 1
        observed, expected = rank_histogram(
            group["rank"].to_numpy(), group["n_ranks"].to_numpy(), n_bins
        )
        n_sims = len(group)
        low = stats.binom.ppf((1.0 - prob) / 2.0, n_sims, expected / n_sims)
        high = stats.binom.ppf((1.0 + prob) / 2.0, n_sims, expected / n_sims)
        edges = np.arange(n_bins + 1) / n_bins
        p_adjusted = float(table.loc[name, "p_adjusted"])
        ax.stairs(
            observed,
            edges,
            fill=True,
            color=TRUTH_COLOR if p_adjusted < 0.01 else POINT_COLOR,
            alpha=0.75,
            label="simulations",
        )
        # The band on top of the bars, translucent, so that both of its edges stay visible.
        ax.stairs(
            high,
            edges,
            baseline=low,
            fill=True,
            color=REFERENCE_COLOR,
            alpha=0.35,
            linewidth=0,
            label=f"{100 * prob:.0f}% band if uniform",
        )
        ax.stairs(expected, edges, color="black", linewidth=1.0, label="expected")
        ax.set_xlim(0.0, 1.0)
        ax.set_title(f"{name}\np = {float(table.loc[name, 'p']):.2g}", fontsize=8)
        _style_axes(ax, grid="y", fontsize=7.0)
    _label_outer(panels, ncols, "normalised rank", "simulations", fontsize=8.0)
    _legend_below(fig, panels[0], ncols=3)
    combined = float(table["p_adjusted"].min())
    fig.suptitle(
        f"SBC rank histograms: {result.model}, {result.n_simulations} simulations, {shown}; "
        f"combined p = {combined:.2g}",
        fontsize=10,
    )
    return fig
