"""Figures of a fitted crowd model: confusion matrices, annotator reliability, prevalence.

Every function takes a :class:`~crowdbayes.results.FitResult` (or a fitted estimator, whose
``result_`` is used) and returns a :class:`matplotlib.figure.Figure`. Figures are built with the
object-oriented API, not :mod:`matplotlib.pyplot`: they work with any backend (Agg included),
are never registered with pyplot's figure manager (so nothing needs closing), and nothing is
shown. Save one with ``fig.savefig("confusion.png")``.

Intervals are the result's equal-tailed intervals (94 % by default); point estimates
(``method="map"``, majority vote) are drawn without them.
"""

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from crowdbayes.results import CI_PROB, FitResult

__all__ = ["plot_confusion_grid", "plot_annotator_reliability", "plot_prevalence"]
__all__ += ["plot_ppc_agreement", "plot_ppc_annotator_frequencies", "plot_ppc_vote_counts"]

#: Shared look of every figure.
POINT_COLOR = "#1f4e79"
TRUTH_COLOR = "#d1495b"
REFERENCE_COLOR = "0.55"
CONFUSION_CMAP = "Blues"


def _as_result(result: Any) -> FitResult:
    """The FitResult of ``result`` (a FitResult or a fitted estimator)."""
    if isinstance(result, FitResult):
        return result
    fitted = getattr(result, "__dict__", {}).get("result_")
    if isinstance(fitted, FitResult):
        return fitted
    if hasattr(type(result), "datatree_"):
        raise ValueError(
            f"this {type(result).__name__} is not fitted yet; call .fit(annotations) first"
        )
    raise TypeError(
        f"expected a FitResult or a fitted crowdbayes estimator, not {type(result).__name__}"
    )


def _ci_percent(result: FitResult) -> str:
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
        order = table.sort_values("n_labels", ascending=False, kind="stable")
        chosen = list(order.index[:max_annotators])
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
    n_panels = len(chosen)
    ncols = min(4 if n_cat <= 3 else 3 if n_cat <= 5 else 2, n_panels)
    nrows = math.ceil(n_panels / ncols)
    # Cells of about 0.75 inch hold "0.00" over "[0.00, 0.00]" at 7.5 points.
    panel = 0.75 * n_cat + 0.8
    fig = Figure(figsize=(panel * ncols + 1.0, panel * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    cell_font = 8.0 if n_cat <= 3 else 7.5
    images = []
    for pos, annotator in enumerate(chosen):
        ax = axes[pos // ncols, pos % ncols]
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
        if pos % ncols == 0:
            ax.set_ylabel("true category", fontsize=9)
        if pos + ncols >= n_panels:
            ax.set_xlabel("label given", fontsize=9)
    for pos in range(n_panels, nrows * ncols):
        fig.delaxes(axes[pos // ncols, pos % ncols])
    bar = fig.colorbar(images[0], ax=axes.ravel()[:n_panels].tolist(), shrink=0.8, aspect=30)
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
        With one axes.

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
        table = table.sort_values("n_labels", ascending=False, kind="stable").iloc[:max_annotators]
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
    acc = table["accuracy"].to_numpy(dtype=float)
    low = table["accuracy_low"].to_numpy(dtype=float)
    high = table["accuracy_high"].to_numpy(dtype=float)
    has_ci = np.isfinite(low) & np.isfinite(high)
    ci = _ci_percent(res)
    if has_ci.any():
        ax.hlines(y[has_ci], low[has_ci], high[has_ci], color=POINT_COLOR, linewidth=1.6)
    ax.plot(
        acc,
        y,
        "o",
        color=POINT_COLOR,
        markersize=4.5,
        label=f"posterior mean, {ci} interval" if has_ci.any() else "estimate",
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
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def plot_prevalence(result: Any) -> Figure:
    """Category prevalence: a point and its interval per category.

    Parameters
    ----------
    result : FitResult or fitted estimator

    Returns
    -------
    matplotlib.figure.Figure
        With one axes.

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
    if has_ci.any():
        ax.vlines(x[has_ci], low[has_ci], high[has_ci], color=POINT_COLOR, linewidth=2.0)
    ax.plot(x, mean, "o", color=POINT_COLOR, markersize=6)
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


# --- posterior / prior predictive check panels ---
def _ppc_inputs(result: Any, replicated: Any) -> tuple[Any, Any, str]:
    """The design, the replicated labels and a title word ("posterior"/"prior") of a check."""
    import xarray as xr

    from crowdbayes.data import AnnotationData

    if isinstance(result, AnnotationData):
        data = result
        if replicated is None:
            raise ValueError(
                "with AnnotationData, pass the replicated labels: replicated=prior_predictive(...)"
            )
    else:
        res = _as_result(result)
        data = res.data
        if replicated is None:
            if "posterior_predictive" not in res.datatree.children:
                raise ValueError(
                    "the result has no posterior_predictive group: run "
                    "crowdbayes.predictive.predictive_check(fit) first, or pass replicated="
                )
            replicated = res.datatree["posterior_predictive"]["label"]
    if not isinstance(replicated, xr.DataArray) or replicated.dims != ("draw", "annotation"):
        raise ValueError(
            "replicated must be an xarray.DataArray with dims ('draw', 'annotation'), as "
            "crowdbayes.predictive.posterior_predictive returns"
        )
    kind = str(replicated.attrs.get("kind", "posterior"))
    return data, replicated, kind


def _replicated_interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and equal-tailed interval over the first (draw) axis."""
    tail = (1.0 - CI_PROB) / 2.0
    values = np.asarray(values, dtype=float)
    return (
        values.mean(axis=0),
        np.quantile(values, tail, axis=0),
        np.quantile(values, 1.0 - tail, axis=0),
    )


def _observed_vs_replicated(
    ax: Axes,
    position: np.ndarray,
    observed: np.ndarray,
    replicated: np.ndarray,
    *,
    horizontal: bool = False,
) -> None:
    """Replicated mean and interval (line and dot) against the observed value (cross)."""
    mean, low, high = _replicated_interval(replicated)
    interval = f"replicated mean, {100 * CI_PROB:.0f}% interval"
    if horizontal:
        ax.hlines(position, low, high, color=POINT_COLOR, linewidth=2.0)
        ax.plot(mean, position, "o", color=POINT_COLOR, markersize=4, label=interval)
        ax.plot(observed, position, "x", color=TRUTH_COLOR, markersize=6, mew=1.8, label="observed")
    else:
        ax.vlines(position, low, high, color=POINT_COLOR, linewidth=2.0)
        ax.plot(position, mean, "o", color=POINT_COLOR, markersize=4, label=interval)
        ax.plot(position, observed, "x", color=TRUTH_COLOR, markersize=6, mew=1.8, label="observed")


def _two_sided_p(replicated: np.ndarray, observed: float) -> float:
    upper = float(np.mean(replicated >= observed - 1e-12))
    lower = float(np.mean(replicated <= observed + 1e-12))
    return min(1.0, 2.0 * min(upper, lower))


def plot_ppc_agreement(result: Any, replicated: Any = None) -> Figure:
    """Agreement within items, observed against replicated labels.

    Left: how many items (with at least two labels) fall in each bin of agreement (the share
    of an item's labels equal to its modal label; ``1`` = unanimous). Right: the summary
    statistics (mean and standard deviation of item agreement, share of unanimous items,
    pairwise agreement and, with repeated labels, self-agreement) with their two-sided
    posterior predictive p-values. A model without item difficulty predicts too few unanimous
    and too few split items: observed crosses outside the intervals at both ends.

    Parameters
    ----------
    result : FitResult, fitted estimator or AnnotationData
        A fit checked by :func:`crowdbayes.predictive.predictive_check` (its stored replicates
        are used), or the data the ``replicated`` labels belong to.
    replicated : xarray.DataArray, optional
        Replicated labels, dims (draw, annotation), e.g. from
        :func:`crowdbayes.predictive.prior_predictive`.

    Returns
    -------
    matplotlib.figure.Figure
        With two axes.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> from crowdbayes.predictive import predictive_check
    >>> from crowdbayes.plots import plot_ppc_agreement
    >>> sim = cb.simulate_dawid_skene(n_items=40, n_annotators=5, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> _ = predictive_check(fit, n_draws=20, random_seed=0)
    >>> len(plot_ppc_agreement(fit).axes)
    2
    """
    from crowdbayes import predictive

    data, replicated, kind = _ppc_inputs(result, replicated)
    hist_obs = predictive.agreement_histogram(data.label_index, data)
    hist_rep = predictive.agreement_histogram(replicated, data)
    names = [str(b) for b in hist_obs["agreement_bin"].to_numpy()]
    stats = {
        "mean agreement": predictive.mean_agreement,
        "sd of agreement": predictive.agreement_sd,
        "unanimous share": predictive.unanimous_share,
        "pairwise agreement": predictive.pairwise_agreement,
        "self-agreement": predictive.self_agreement,
    }
    rows = []
    for label, fn in stats.items():
        obs = float(fn(data.label_index, data))
        if np.isnan(obs):
            continue
        rows.append((label, obs, fn(replicated, data).to_numpy().astype(float)))

    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    ax_hist, ax_stats = fig.subplots(1, 2, width_ratios=[1.3, 1.0])
    x = np.arange(len(names))
    _observed_vs_replicated(
        ax_hist, x, hist_obs.to_numpy().astype(float), hist_rep.to_numpy().astype(float)
    )
    ax_hist.set_xticks(x, names)
    ax_hist.set_xlabel("item agreement (share of labels equal to the modal label)", fontsize=9)
    ax_hist.set_ylabel("items", fontsize=9)
    ax_hist.set_ylim(bottom=0)
    ax_hist.set_title("Items by agreement", fontsize=10)
    _style_axes(ax_hist, grid="y")

    y = np.arange(len(rows))[::-1]
    observed = np.array([r[1] for r in rows])
    reps = np.stack([r[2] for r in rows], axis=1)
    _observed_vs_replicated(ax_stats, y, observed, reps, horizontal=True)
    for yi, (_, obs, rep) in zip(y, rows, strict=True):
        ax_stats.annotate(
            f"p={_two_sided_p(rep, obs):.2f}",
            (1.0, yi),
            xycoords=("axes fraction", "data"),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=8,
            va="center",
        )
    ax_stats.set_yticks(y, [r[0] for r in rows], fontsize=9)
    ax_stats.set_ylim(-0.6, len(rows) - 0.4)
    ax_stats.set_xlabel("value", fontsize=9)
    ax_stats.set_title("Agreement statistics (p: two-sided)", fontsize=10)
    _style_axes(ax_stats, grid="x")
    handles, labels = ax_hist.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    n_draws = replicated.sizes["draw"]
    fig.suptitle(f"Agreement within items: {kind} predictive check ({n_draws} draws)", fontsize=11)
    return fig


def plot_ppc_annotator_frequencies(
    result: Any,
    replicated: Any = None,
    *,
    max_annotators: int | None = 30,
    categories: Sequence[Any] | None = None,
) -> Figure:
    """Each annotator's share of labels in each category, observed against replicated.

    One panel per category, annotators sorted by number of labels (busiest at the top). An
    annotator whose observed share (cross) falls outside the replicated interval uses the
    category more or less often than the model can explain (a bias the model lacks, or a
    spammer on a skewed label).

    Parameters
    ----------
    result : FitResult, fitted estimator or AnnotationData
        As in :func:`plot_ppc_agreement`.
    replicated : xarray.DataArray, optional
    max_annotators : int or None
        Show only this many of the busiest annotators (``None``: all).
    categories : sequence, optional
        Categories to show (default: all).

    Returns
    -------
    matplotlib.figure.Figure
        With one axes per category shown.

    Raises
    ------
    ValueError
        For a category that is not in the data.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> from crowdbayes.predictive import posterior_predictive
    >>> from crowdbayes.plots import plot_ppc_annotator_frequencies
    >>> sim = cb.simulate_dawid_skene(n_items=40, n_annotators=5, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> rep = posterior_predictive(fit, n_draws=20, random_seed=0)
    >>> len(plot_ppc_annotator_frequencies(fit.result_.data, rep).axes)
    3
    """
    from crowdbayes import predictive

    data, replicated, kind = _ppc_inputs(result, replicated)
    shown = list(data.categories) if categories is None else list(categories)
    missing = [c for c in shown if c not in set(data.categories)]
    if missing or not shown:
        raise ValueError(
            f"categories {missing} are not in the data (categories: {list(data.categories)})"
        )
    col = data.categories.get_indexer(pd.Index(shown))
    n_labels = np.bincount(data.annotator_index, minlength=data.n_annotators)
    order = np.argsort(-n_labels, kind="stable")
    if max_annotators is not None:
        order = order[:max_annotators]
    obs = predictive.annotator_frequencies(data.label_index, data).to_numpy()[order][:, col]
    rep = predictive.annotator_frequencies(replicated, data).to_numpy()[:, order][:, :, col]

    n = len(order)
    ncols = min(len(shown), 4)
    nrows = math.ceil(len(shown) / ncols)
    fig = Figure(figsize=(2.6 * ncols + 1.6, nrows * (0.22 * n + 1.2) + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    y = np.arange(n)[::-1]
    names = [f"{data.annotators[j]} (n={int(n_labels[j])})" for j in order]
    for k, ax in enumerate(axes):
        if k >= len(shown):
            ax.set_visible(False)
            continue
        _observed_vs_replicated(ax, y, obs[:, k], rep[:, :, k], horizontal=True)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_title(f"share labelled {shown[k]}", fontsize=10)
        _style_axes(ax, grid="x")
        if k % ncols == 0:
            ax.set_yticks(y, names, fontsize=max(5.0, 9.0 - n / 25))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    extra = f", {n} busiest of {data.n_annotators}" if n < data.n_annotators else ""
    fig.suptitle(f"Annotator label frequencies: {kind} predictive check{extra}", fontsize=11)
    return fig


def plot_ppc_vote_counts(
    result: Any,
    replicated: Any = None,
    *,
    n_labels: Sequence[int] | None = None,
    categories: Sequence[Any] | None = None,
    max_groups: int = 3,
) -> Figure:
    """Carpenter's check: how many items got 0, 1, ..., n votes for each category.

    One panel per (number of labels n, category): items with n labels, counted by the number
    of their labels in the category, observed (crosses) against replicated (intervals). A
    model without item difficulty misses at both ends and in the middle: real data have more
    unanimous items and more evenly split items than it predicts.

    Parameters
    ----------
    result : FitResult, fitted estimator or AnnotationData
        As in :func:`plot_ppc_agreement`.
    replicated : xarray.DataArray, optional
    n_labels : sequence of int, optional
        Item sizes (labels per item) to show. Default: the ``max_groups`` sizes with the most
        items.
    categories : sequence, optional
        Categories to show (default: all; with two categories the panels mirror each other).
    max_groups : int

    Returns
    -------
    matplotlib.figure.Figure
        With one axes per (size, category) shown.

    Raises
    ------
    ValueError
        For an item size or category absent from the data.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> from crowdbayes.predictive import predictive_check
    >>> from crowdbayes.plots import plot_ppc_vote_counts
    >>> sim = cb.simulate_dawid_skene(n_items=40, n_annotators=5, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> _ = predictive_check(fit, n_draws=20, random_seed=0)
    >>> fig = plot_ppc_vote_counts(fit, categories=[1])
    >>> fig.axes[0].get_title()
    'n = 5 labels: votes for 1'
    """
    from crowdbayes import predictive

    data, replicated, kind = _ppc_inputs(result, replicated)
    hist_obs = predictive.vote_count_histogram(data.label_index, data)
    hist_rep = predictive.vote_count_histogram(replicated, data)
    sizes = hist_obs["n_labels"].to_numpy()
    if n_labels is None:
        per_size = hist_obs.isel(category=0).sum("votes").to_numpy()
        groups = sizes[np.argsort(-per_size, kind="stable")[: max(1, max_groups)]]
        groups = np.sort(groups)
    else:
        groups = np.asarray(list(n_labels))
        absent = [int(g) for g in groups if g not in set(sizes.tolist())]
        if absent or len(groups) == 0:
            raise ValueError(f"no item has {absent} labels (item sizes: {sizes.tolist()})")
    shown = list(data.categories) if categories is None else list(categories)
    missing = [c for c in shown if c not in set(data.categories)]
    if missing or not shown:
        raise ValueError(
            f"categories {missing} are not in the data (categories: {list(data.categories)})"
        )
    nrows, ncols = len(groups), len(shown)
    fig = Figure(figsize=(min(3.2 * ncols, 14.0) + 0.6, 2.6 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r, n in enumerate(groups):
        votes = np.arange(int(n) + 1)
        for c, category in enumerate(shown):
            ax = axes[r, c]
            sel = {"n_labels": n, "category": category}
            obs = hist_obs.sel(sel).to_numpy()[votes].astype(float)
            rep = hist_rep.sel(sel).to_numpy()[:, votes].astype(float)
            _observed_vs_replicated(ax, votes, obs, rep)
            ax.set_xticks(votes if n <= 12 else votes[:: math.ceil(len(votes) / 12)])
            ax.set_ylim(bottom=0)
            ax.set_title(f"n = {int(n)} labels: votes for {category}", fontsize=9)
            if r == nrows - 1:
                ax.set_xlabel("votes for the category", fontsize=9)
            if c == 0:
                ax.set_ylabel("items", fontsize=9)
            _style_axes(ax, grid="y")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    fig.suptitle(f"Votes per item: {kind} predictive check", fontsize=11)
    return fig


# --- simulation-based calibration ---
__all__ += ["plot_sbc_ranks"]


def plot_sbc_ranks(
    result: Any,
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
    from scipy import stats

    from crowdbayes.sbc import rank_histogram

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
    n_panels = len(names)
    ncols = min(4, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(2.6 * ncols + 0.4, 2.0 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for pos, name in enumerate(names):
        ax = axes[pos // ncols, pos % ncols]
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
        if pos % ncols == 0:
            ax.set_ylabel("simulations", fontsize=8)
        if pos + ncols >= n_panels:
            ax.set_xlabel("normalised rank", fontsize=8)
        _style_axes(ax, grid="y", fontsize=7.0)
    for pos in range(n_panels, nrows * ncols):
        fig.delaxes(axes[pos // ncols, pos % ncols])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    combined = float(table["p_adjusted"].min())
    fig.suptitle(
        f"SBC rank histograms: {result.model}, {result.n_simulations} simulations, {shown}; "
        f"combined p = {combined:.2g}",
        fontsize=10,
    )
    return fig


# --- calibration and item uncertainty ---
__all__ += ["plot_reliability_diagram", "plot_item_uncertainty"]


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
    from crowdbayes.metrics import calibration_table, expected_calibration_error

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
    (:func:`crowdbayes.predictive.item_agreement`). Items that are hard, or whose labels
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
        With one axes.

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
    from crowdbayes import predictive

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
        agreement = predictive.item_agreement(res.data.label_index, res.data)
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
        fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    against = "difficulty" if has_difficulty else "observed agreement"
    ax.set_title(
        f"Item uncertainty against {against} ({res.model_name}, {len(table)} items)", fontsize=10
    )
    return fig
