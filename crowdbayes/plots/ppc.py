"""Posterior and prior predictive check figures: observed labels against replicated ones.

Each check takes a fit whose ``posterior_predictive`` group holds replicated labels (written by
:func:`crowdbayes.predictive.predictive_check`), or the data with replicated labels, dims
(draw, annotation), as :func:`crowdbayes.predictive.posterior_predictive` and
:func:`crowdbayes.predictive.prior_predictive` return them.
"""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from crowdbayes import crowd_statistics
from crowdbayes.data import AnnotationData
from crowdbayes.plots._common import (
    TRUTH_COLOR,
    _as_result,
    _label_outer,
    _legend_below,
    _plot_estimates,
    _style_axes,
)
from crowdbayes.results import CI_PROB

__all__ = ["plot_ppc_agreement", "plot_ppc_annotator_frequencies", "plot_ppc_vote_counts"]


def _ppc_inputs(result: Any, replicated: Any) -> tuple[AnnotationData, xr.DataArray, str]:
    """The design, the replicated labels and a title word ("posterior"/"prior") of a check."""
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
            replicated = res.datatree["posterior_predictive"]["label"].squeeze("chain", drop=True)
    if not isinstance(replicated, xr.DataArray) or replicated.dims != ("draw", "annotation"):
        raise ValueError(
            "replicated must be an xarray.DataArray with dims ('draw', 'annotation'), as "
            "crowdbayes.predictive.posterior_predictive returns"
        )
    kind = str(replicated.attrs.get("kind", "posterior"))
    return data, replicated, kind


def _shown_categories(data: AnnotationData, categories: Sequence[Any] | None) -> list[Any]:
    """The categories to show: ``categories`` (all of the data's when None), checked."""
    shown = list(data.categories) if categories is None else list(categories)
    missing = [c for c in shown if c not in set(data.categories)]
    if missing or not shown:
        raise ValueError(
            f"categories {missing} are not in the data (categories: {list(data.categories)})"
        )
    return shown


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
    _plot_estimates(ax, position, mean, low, high, horizontal=horizontal, label=interval)
    xy = (observed, position) if horizontal else (position, observed)
    ax.plot(*xy, "x", color=TRUTH_COLOR, markersize=6, mew=1.8, label="observed")


def _two_sided_p(replicated: np.ndarray, observed: float) -> float:
    """Two-sided predictive p-value of ``observed`` among the ``replicated`` values."""
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
    data, replicated, kind = _ppc_inputs(result, replicated)
    hist_obs = crowd_statistics.agreement_histogram(data.label_index, data)
    hist_rep = crowd_statistics.agreement_histogram(replicated, data)
    names = [str(b) for b in hist_obs["agreement_bin"].to_numpy()]
    stats = {
        "mean agreement": crowd_statistics.mean_agreement,
        "sd of agreement": crowd_statistics.agreement_sd,
        "unanimous share": crowd_statistics.unanimous_share,
        "pairwise agreement": crowd_statistics.pairwise_agreement,
        "self-agreement": crowd_statistics.self_agreement,
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
    _legend_below(fig, ax_hist)
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
    result, replicated
        As in :func:`plot_ppc_agreement`: a checked fit, or data and its replicated labels.
    max_annotators : int or None
        Show only this many of the busiest annotators (``None``: all).
    categories : sequence, optional
        Categories to show (default: all).

    Returns
    -------
    matplotlib.figure.Figure
        With one axes per category shown (and hidden ones filling the last row).

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
    data, replicated, kind = _ppc_inputs(result, replicated)
    shown = _shown_categories(data, categories)
    col = data.categories.get_indexer(pd.Index(shown))
    n_labels = np.bincount(data.annotator_index, minlength=data.n_annotators)
    order = np.argsort(-n_labels, kind="stable")
    if max_annotators is not None:
        order = order[:max_annotators]
    obs = crowd_statistics.annotator_frequencies(data.label_index, data).to_numpy()[order][:, col]
    rep = crowd_statistics.annotator_frequencies(replicated, data).to_numpy()[:, order][:, :, col]

    n = len(order)
    ncols = min(len(shown), 4)
    nrows = math.ceil(len(shown) / ncols)
    fig = Figure(figsize=(2.6 * ncols + 1.6, nrows * (0.22 * n + 1.2) + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    y = np.arange(n)[::-1]
    names = [f"{data.annotators[int(j)]} (n={int(n_labels[j])})" for j in order]
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
    _legend_below(fig, axes[0])
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
    result, replicated
        As in :func:`plot_ppc_agreement`.
    n_labels : sequence of int, optional
        Item sizes (labels per item) to show. Default: the ``max_groups`` sizes with the most
        items.
    categories : sequence, optional
        Categories to show (default: all; with two categories the panels mirror each other).
    max_groups : int

    Returns
    -------
    matplotlib.figure.Figure
        With one axes per (size, category) shown: a row per size, a column per category.

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
    data, replicated, kind = _ppc_inputs(result, replicated)
    hist_obs = crowd_statistics.vote_count_histogram(data.label_index, data)
    hist_rep = crowd_statistics.vote_count_histogram(replicated, data)
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
    shown = _shown_categories(data, categories)
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
            _style_axes(ax, grid="y")
    _label_outer(list(axes.ravel()), ncols, "votes for the category", "items")
    _legend_below(fig, axes[0, 0])
    fig.suptitle(f"Votes per item: {kind} predictive check", fontsize=11)
    return fig
