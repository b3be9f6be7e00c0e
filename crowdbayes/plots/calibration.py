"""Figures of how far label probabilities can be trusted: calibration and item uncertainty."""

import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from crowdbayes import crowd_statistics
from crowdbayes.metrics import calibration_table, expected_calibration_error
from crowdbayes.plots._common import (
    POINT_COLOR,
    REFERENCE_COLOR,
    TRUTH_COLOR,
    _as_result,
    _ci_percent,
    _legend_below,
    _style_axes,
)

__all__ = ["plot_reliability_diagram", "plot_item_uncertainty"]


def _probabilities_and_name(probabilities: Any) -> tuple[pd.DataFrame, str | None]:
    """Label probabilities (items x categories) and, for a fit, the model's name."""
    if isinstance(probabilities, pd.DataFrame):
        return probabilities, None
    res = _as_result(probabilities)
    return res.label_probabilities(), res.model_name


def plot_reliability_diagram(
    probabilities: Any,
    gold: "pd.Series[Any]",
    n_bins: int = 10,
    ax: Axes | None = None,
) -> Figure:
    """Reliability diagram: confidence of the predicted label against its observed accuracy.

    Items with a gold label are put in ``n_bins`` equal-width bins of their confidence (the
    probability of their most probable category). Each bin is drawn as a bar from its lower to
    its upper edge, as high as the share of its items whose most probable category is the gold
    one, with a dot at (mean confidence, accuracy) and its number of items written above it.
    A calibrated model's dots lie on the diagonal; dots below it are over-confident. The title
    gives the expected calibration error
    (:func:`~crowdbayes.metrics.expected_calibration_error`). The numbers are those of
    :func:`~crowdbayes.metrics.calibration_table`.

    Parameters
    ----------
    probabilities : pandas.DataFrame, FitResult or fitted estimator
        Items x categories, rows summing to 1, indexed by item (like ``fit.label_probs_`` or
        crowd-kit's ``fit_predict_proba``), or a fit whose label probabilities are used.
    gold : pandas.Series
        Known true label per item, indexed by item; items without one are left out.
    n_bins : int
        Number of equal-width confidence bins of ``[0, 1]``.
    ax : matplotlib.axes.Axes, optional
        Draw into this axes (e.g. one panel of a grid) instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The new figure (one axes), or the figure ``ax`` belongs to.

    Raises
    ------
    ValueError
        As :func:`~crowdbayes.metrics.calibration_table`: no item in common, gold labels
        that are not categories, malformed probabilities, a bad ``n_bins``.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> from crowdbayes.plots import plot_reliability_diagram
    >>> sim = cb.simulate_dawid_skene(n_items=200, n_annotators=8, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> fig = plot_reliability_diagram(fit, sim.true_labels, n_bins=5)
    >>> fig.axes[0].get_title().startswith("Reliability diagram (dawid-skene): ECE =")
    True
    """
    probs, name = _probabilities_and_name(probabilities)
    table = calibration_table(probs, gold, n_bins=n_bins)
    ece = expected_calibration_error(probs, gold, n_bins=n_bins)
    if ax is None:
        fig = Figure(figsize=(4.6, 4.4), layout="constrained")
        ax = fig.subplots()
    else:
        root = ax.get_figure(root=True)
        if not isinstance(root, Figure):
            raise ValueError("ax must belong to a matplotlib Figure")
        fig = root
    lower = table["lower"].to_numpy(dtype=float)
    upper = table["upper"].to_numpy(dtype=float)
    acc = table["accuracy"].to_numpy(dtype=float)
    conf = table["confidence"].to_numpy(dtype=float)
    counts = table["n_items"].to_numpy()
    ax.bar(
        lower,
        acc,
        width=upper - lower,
        align="edge",
        color=POINT_COLOR,
        alpha=0.25,
        edgecolor=POINT_COLOR,
        linewidth=0.8,
        label="accuracy per bin",
    )
    ax.plot([0.0, 1.0], [0.0, 1.0], "--", color=REFERENCE_COLOR, linewidth=1.0, label="calibrated")
    ax.plot(conf, acc, "o", color=POINT_COLOR, markersize=5, label="mean confidence, accuracy")
    for x, y, n in zip(conf, acc, counts, strict=True):
        ax.annotate(
            f"{int(n)}",
            (x, y),
            xytext=(0, 5),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7.5,
            color=TRUTH_COLOR,
        )
    # The predicted label's probability is at least 1 / K: start at the bin edge below it.
    x_min = math.floor(n_bins / probs.shape[1]) / n_bins
    ax.set_xlim(x_min, 1.0)
    ax.set_ylim(0.0, 1.08)
    ax.set_xlabel("confidence (probability of the predicted label)", fontsize=9)
    ax.set_ylabel("accuracy (share of predicted labels = gold)", fontsize=9)
    _style_axes(ax, grid="y")
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
        ncols=3,
        fontsize=7.5,
        frameon=False,
        handlelength=1.5,
    )
    who = f" ({name})" if name is not None else ""
    ax.set_title(
        f"Reliability diagram{who}: ECE = {ece:.3f}\n{int(counts.sum())} gold items, "
        "items per bin in red",
        fontsize=10,
    )
    return fig


def plot_item_uncertainty(
    result: Any,
    *,
    uncertainty: Literal["mode", "entropy"] = "mode",
) -> Figure:
    """Each item's posterior uncertainty against its difficulty or its observed agreement.

    For models with item difficulty (``summary["difficulty"]``: item-difficulty,
    logistic-random-effects, GLAD) the x axis is the difficulty, the probability that a typical
    annotator mislabels the item, with its interval as a horizontal bar. For the other models
    it is the item's observed agreement: the share of its labels equal to its modal label
    (:func:`crowdbayes.crowd_statistics.item_agreement`). Items that are hard, or whose labels
    disagree, should be the uncertain ones; a model that is sure of an item its annotators split
    over has explained the disagreement by annotator error.

    Parameters
    ----------
    result : FitResult or fitted estimator
    uncertainty : {"mode", "entropy"}
        ``"mode"``: 1 minus the posterior probability of the item's most probable category
        (0 = certain); ``"entropy"``: the entropy of the item's category probabilities (nats).

    Returns
    -------
    matplotlib.figure.Figure
        With one axes, a dot per item.

    Raises
    ------
    ValueError
        For an unknown ``uncertainty``.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> from crowdbayes.plots import plot_item_uncertainty
    >>> sim = cb.simulate_dawid_skene(n_items=100, n_annotators=8, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> fig = plot_item_uncertainty(fit)
    >>> fig.axes[0].get_xlabel()
    'observed agreement (share of labels equal to the modal label)'
    """
    if uncertainty not in ("mode", "entropy"):
        raise ValueError(f"uncertainty must be 'mode' or 'entropy', got {uncertainty!r}")
    res = _as_result(result)
    table = res.labels()
    if uncertainty == "mode":
        y = 1.0 - table["probability"].to_numpy(dtype=float)
        y_label = "1 - P(most probable category)"
    else:
        y = table["entropy"].to_numpy(dtype=float)
        y_label = "entropy of the label probabilities (nats)"
    has_difficulty = "difficulty" in table.columns
    if has_difficulty:
        x = table["difficulty"].to_numpy(dtype=float)
        low = table["difficulty_low"].to_numpy(dtype=float)
        high = table["difficulty_high"].to_numpy(dtype=float)
        x_label = "difficulty: P(a typical annotator mislabels the item)"
    else:
        agreement = crowd_statistics.item_agreement(res.data.label_index, res.data)
        by_item = pd.Series(agreement.to_numpy(), index=res.data.items)
        x = by_item.reindex(table.index).to_numpy(dtype=float)
        low = high = np.full_like(x, np.nan)
        x_label = "observed agreement (share of labels equal to the modal label)"
    has_ci = np.isfinite(low) & np.isfinite(high)

    fig = Figure(figsize=(5.6, 4.2), layout="constrained")
    ax = fig.subplots()
    if has_ci.any():
        ax.hlines(
            y[has_ci],
            low[has_ci],
            high[has_ci],
            color=POINT_COLOR,
            linewidth=0.8,
            alpha=0.35,
            label=f"{_ci_percent(res)} interval of the difficulty",
        )
    ax.plot(
        x,
        y,
        "o",
        color=POINT_COLOR,
        markersize=3.5,
        alpha=0.6,
        markeredgewidth=0,
        label="item (posterior mean)" if has_difficulty else "item",
    )
    ax.set_xlabel(x_label, fontsize=9)
    ax.set_ylabel(y_label, fontsize=9)
    if not has_difficulty:
        ax.set_xlim(min(1.0 / res.data.n_categories, float(np.nanmin(x))) - 0.03, 1.03)
    ax.set_ylim(bottom=min(0.0, float(np.nanmin(y))))
    _style_axes(ax, grid="y")
    if has_ci.any():
        _legend_below(fig, ax)
    against = "difficulty" if has_difficulty else "observed agreement"
    ax.set_title(
        f"Item uncertainty against {against} ({res.model_name}, {len(table)} items)", fontsize=10
    )
    return fig
