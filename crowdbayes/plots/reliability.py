"""Figures of what a fit says about annotators and categories: confusion, accuracy, prevalence."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from crowdbayes.plots._common import (
    CONFUSION_CMAP,
    REFERENCE_COLOR,
    TRUTH_COLOR,
    _as_result,
    _ci_percent,
    _label_outer,
    _legend_below,
    _panel_grid,
    _plot_estimates,
    _style_axes,
)

__all__ = ["plot_confusion_grid", "plot_annotator_reliability", "plot_prevalence"]


def _busiest(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` annotators of ``table`` with the most labels, busiest first (ties in order)."""
    return table.sort_values("n_labels", ascending=False, kind="stable").iloc[:n]


def plot_confusion_grid(
    result: Any,
    annotators: Sequence[Any] | None = None,
    max_annotators: int = 12,
) -> Figure:
    """One small heatmap per annotator: P(label given | true category), with intervals.

    Rows are true categories, columns the label the annotator gave. Each cell shows the
    posterior mean and, below it, its interval (omitted for point estimates). All panels share
    one colour scale from 0 to 1, so a spammer's flat matrix stands out against a reliable
    annotator's strong diagonal.

    Parameters
    ----------
    result : FitResult or fitted estimator
    annotators : sequence, optional
        Annotator ids to show, in this order. Default: the ``max_annotators`` annotators with
        the most labels, busiest first.
    max_annotators : int
        How many annotators to show when ``annotators`` is not given.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per annotator, plus the colour bar's.

    Raises
    ------
    ValueError
        When ``annotators`` names an annotator absent from the result, or is empty; when the
        result has no confusion matrices (majority vote).

    Examples
    --------
    >>> import crowdbayes as cb
    >>> from crowdbayes.plots import plot_confusion_grid
    >>> sim = cb.simulate_dawid_skene(n_items=100, n_annotators=8, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> fig = plot_confusion_grid(fit, max_annotators=4)
    >>> len(fig.axes)  # four heatmaps and a colour bar
    5
    """
    res = _as_result(result)
    if "confusion" not in res.summary:
        raise ValueError(
            f"this {res.model_name} result has no confusion matrices; fit a confusion model "
            "such as dawid-skene"
        )
    table = res.annotators()
    if annotators is None:
        if max_annotators < 1:
            raise ValueError(f"max_annotators must be at least 1, got {max_annotators}")
        chosen = list(_busiest(table, max_annotators).index)
    else:
        chosen = list(annotators)
        if not chosen:
            raise ValueError("annotators is empty: name at least one annotator to plot")
        unknown = [a for a in chosen if a not in table.index]
        if unknown:
            raise ValueError(f"annotator(s) not in the result: {unknown[:10]}")

    conf = res.summary["confusion"]
    categories = [str(c) for c in conf["category"].to_numpy()]
    n_cat = len(categories)
    ncols = min(4 if n_cat <= 3 else 3 if n_cat <= 5 else 2, len(chosen))
    # Cells of about 0.75 inch hold "0.00" over "[0.00, 0.00]" at 7.5 points.
    panel = 0.75 * n_cat + 0.8
    fig, panels = _panel_grid(len(chosen), ncols, panel=(panel, panel), margin=(1.0, 0.7))
    cell_font = 8.0 if n_cat <= 3 else 7.5
    images = []
    for ax, annotator in zip(panels, chosen, strict=True):
        cell = conf.sel(annotator=annotator).transpose("true_category", "category", "statistic")
        mean = cell.sel(statistic="mean").to_numpy()
        low = cell.sel(statistic="lower").to_numpy()
        high = cell.sel(statistic="upper").to_numpy()
        images.append(ax.imshow(mean, vmin=0.0, vmax=1.0, cmap=CONFUSION_CMAP, aspect="equal"))
        for r in range(n_cat):
            for c in range(n_cat):
                text = f"{mean[r, c]:.2f}"
                if np.isfinite(low[r, c]) and np.isfinite(high[r, c]):
                    text += f"\n[{low[r, c]:.2f}, {high[r, c]:.2f}]"
                ax.text(
                    c,
                    r,
                    text,
                    ha="center",
                    va="center",
                    fontsize=cell_font,
                    color="white" if mean[r, c] > 0.55 else "black",
                )
        row = table.loc[annotator]
        ax.set_title(
            f"{annotator}  (n={int(row['n_labels'])}, acc {row['accuracy']:.2f})", fontsize=9
        )
        ax.set_xticks(range(n_cat), categories, fontsize=8, rotation=45 if n_cat > 4 else 0)
        ax.set_yticks(range(n_cat), categories, fontsize=8)
        ax.tick_params(length=0)
    _label_outer(panels, ncols, "label given", "true category")
    bar = fig.colorbar(images[0], ax=panels, shrink=0.8, aspect=30)
    bar.set_label("P(label given | true category)", fontsize=9)
    bar.ax.tick_params(labelsize=8)
    has_intervals = bool(np.isfinite(conf.sel(statistic="lower").to_numpy()).any())
    detail = f"mean [{_ci_percent(res)} interval]" if has_intervals else "point estimate"
    fig.suptitle(f"Annotator confusion matrices ({res.model_name}): {detail}", fontsize=11)
    return fig


def plot_annotator_reliability(
    result: Any,
    truth: "pd.Series[float] | None" = None,
    *,
    max_annotators: int | None = 60,
) -> Figure:
    """Forest plot of each annotator's accuracy with its interval, sorted.

    Accuracy is the probability that the annotator's label is correct for a random item. The
    dashed line marks chance (1 / number of categories): an annotator whose interval reaches it
    may be labelling at random.

    Parameters
    ----------
    result : FitResult or fitted estimator
    truth : pandas.Series, optional
        True accuracies indexed by annotator (for example
        :meth:`~crowdbayes.simulate.Simulation.annotator_accuracy`), drawn as crosses.
    max_annotators : int or None
        With more annotators than this, only the ones with the most labels are drawn (the
        title says so). ``None`` draws all.

    Returns
    -------
    matplotlib.figure.Figure
        With one axes: a row per annotator, least accurate at the bottom.

    Raises
    ------
    ValueError
        When ``truth`` shares no annotator with the result.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> from crowdbayes.plots import plot_annotator_reliability
    >>> sim = cb.simulate_dawid_skene(n_items=100, n_annotators=8, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> fig = plot_annotator_reliability(fit, truth=sim.annotator_accuracy())
    >>> len(fig.axes)
    1
    """
    res = _as_result(result)
    table = res.annotators()
    n_total = len(table)
    if max_annotators is not None and n_total > max_annotators:
        table = _busiest(table, max_annotators)
    table = table.sort_values("accuracy", kind="stable")
    true_acc = None
    if truth is not None:
        truth = pd.Series(truth)
        true_acc = truth.reindex(table.index).to_numpy(dtype=float)
        if not np.isfinite(true_acc).any():
            raise ValueError(
                "truth shares no annotator with the result; index it by annotator id "
                f"(result has e.g. {list(table.index[:3])})"
            )

    n = len(table)
    fig = Figure(figsize=(6.4, 0.26 * n + 1.5), layout="constrained")
    ax = fig.subplots()
    y = np.arange(n)
    low = table["accuracy_low"].to_numpy(dtype=float)
    high = table["accuracy_high"].to_numpy(dtype=float)
    has_ci = bool((np.isfinite(low) & np.isfinite(high)).any())
    _plot_estimates(
        ax,
        y,
        table["accuracy"].to_numpy(dtype=float),
        low,
        high,
        horizontal=True,
        linewidth=1.6,
        markersize=4.5,
        label=f"posterior mean, {_ci_percent(res)} interval" if has_ci else "estimate",
    )
    if true_acc is not None:
        ax.plot(true_acc, y, "x", color=TRUTH_COLOR, markersize=6, mew=1.6, label="true accuracy")
    n_cat = res.data.n_categories
    ax.axvline(1.0 / n_cat, color=REFERENCE_COLOR, linestyle="--", linewidth=1.0)
    ax.text(
        1.0 / n_cat,
        n - 0.4,
        f" chance (1/{n_cat})",
        color=REFERENCE_COLOR,
        fontsize=8,
        va="bottom",
    )
    labels = [f"{a} (n={int(k)})" for a, k in zip(table.index, table["n_labels"], strict=True)]
    ax.set_yticks(y, labels, fontsize=max(5.0, 9.0 - n / 25))
    ax.set_ylim(-0.7, n + 0.3)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("accuracy: P(label given = true category)", fontsize=9)
    _style_axes(ax, grid="x")
    shown = f", {n} busiest of {n_total}" if n < n_total else ""
    fig.suptitle(f"Annotator reliability ({res.model_name}{shown})", fontsize=11)
    _legend_below(fig, ax)
    return fig


def plot_prevalence(result: Any) -> Figure:
    """Category prevalence: a point and its interval per category.

    Parameters
    ----------
    result : FitResult or fitted estimator

    Returns
    -------
    matplotlib.figure.Figure
        With one axes, categories along x.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> from crowdbayes.plots import plot_prevalence
    >>> sim = cb.simulate_dawid_skene(n_items=100, n_annotators=8, random_seed=0)
    >>> fig = plot_prevalence(cb.MajorityVote().fit(sim.annotations, random_seed=0))
    >>> fig.axes[0].get_ylabel()
    'prevalence'
    """
    res = _as_result(result)
    table = res.prevalence()
    n = len(table)
    x = np.arange(n)
    mean = table["mean"].to_numpy(dtype=float)
    low = table["low"].to_numpy(dtype=float)
    high = table["high"].to_numpy(dtype=float)
    has_ci = np.isfinite(low) & np.isfinite(high)
    fig = Figure(figsize=(max(3.2, 0.7 * n + 1.6), 3.4), layout="constrained")
    ax = fig.subplots()
    _plot_estimates(ax, x, mean, low, high, markersize=6)
    for xi, m in zip(x, mean, strict=True):
        ax.annotate(
            f"{m:.2f}",
            (xi, m),
            xytext=(6, 0),
            textcoords="offset points",
            fontsize=8,
            va="center",
        )
    ax.set_xticks(x, [str(c) for c in table.index], rotation=45 if n > 6 else 0)
    ax.set_xlim(-0.6, n - 0.4)
    top = np.nanmax(np.where(has_ci, high, mean))
    ax.set_ylim(0.0, min(1.0, top * 1.15 + 0.02))
    ax.set_xlabel("category", fontsize=9)
    ax.set_ylabel("prevalence", fontsize=9)
    _style_axes(ax, grid="y")
    detail = f"mean and {_ci_percent(res)} interval" if has_ci.any() else "point estimate"
    ax.set_title(f"Prevalence ({detail})", fontsize=10)
    return fig
