"""Statistics of crowd labels for predictive checks, and the table that compares them.

Each statistic is a function of labels and their design (:class:`~crowdbayes.data.AnnotationData`)
and needs no model. The labels are codes (as ``data.label_index``) of shape (annotation,) or
(draw, annotation), or a DataArray of category values with an ``annotation`` dim, such as the
replicates of :mod:`crowdbayes.predictive`; a statistic keeps their leading (draw) dims.

* agreement within items: per-item agreement (share of an item's labels equal to its modal
  label), its histogram, mean and the share of unanimous items, and the chance that two labels
  of an item agree (:func:`pairwise_agreement`);
* :func:`self_agreement`: the chance that two labels one annotator gave one item agree;
* :func:`category_frequencies` and :func:`annotator_frequencies`;
* :func:`vote_count_histogram`: for each category, how many items got 0, 1, ..., n votes for
  it among items with n labels (Carpenter's check of Dawid-Skene on the caries data: a model
  without item difficulty predicts too few unanimous and too few split items).

:func:`check_table` sets each statistic of the observed labels against its replicates, with
posterior predictive p-values.
"""

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from crowdbayes.data import AnnotationData
from crowdbayes.results import CI_PROB

__all__ = [
    "AGREEMENT_EDGES",
    "ONE_SIDED",
    "item_vote_counts",
    "item_agreement",
    "mean_agreement",
    "agreement_sd",
    "unanimous_share",
    "agreement_histogram",
    "pairwise_agreement",
    "self_agreement",
    "category_frequencies",
    "annotator_frequencies",
    "vote_count_histogram",
    "vote_count_discrepancy",
    "predictive_statistics",
    "check_table",
]

#: Inner edges of the agreement histogram: bins ``[0, 0.5)``, ``[0.5, 0.6)``, ...,
#: ``[0.9, 1)`` and the unanimous items (agreement exactly 1).
AGREEMENT_EDGES: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
#: Statistics whose p-value is one-sided, P(T_rep >= T_obs): distances, where only large is bad.
ONE_SIDED = frozenset({"vote_count_discrepancy"})

#: Leading (draw) dims of a statistic, and the coords among them.
_Lead = tuple[tuple[Hashable, ...], dict[Hashable, Any]]


# ---------------------------------------------------------------------------- label arrays
def _lead(da: xr.DataArray, n_own: int) -> _Lead:
    """The dims of ``da`` before its last ``n_own`` dims, and their coords."""
    dims = tuple(da.dims[: da.ndim - n_own])
    return dims, {d: da[d].to_numpy() for d in dims if d in da.coords}


def _wrap(values: np.ndarray, lead: _Lead, name: str, own: dict[str, Any]) -> xr.DataArray:
    """A statistic's DataArray: the dims of ``lead``, then ``own`` (its dims and coords)."""
    dims, coords = lead
    return xr.DataArray(values, dims=(*dims, *own), coords={**coords, **own}, name=name)


def _as_codes(labels: Any, data: AnnotationData) -> tuple[np.ndarray, _Lead]:
    """Category codes of shape (..., annotation), with the leading dims and their coords.

    A DataArray holds category values along a last ``annotation`` dim; a NumPy array holds
    codes (as ``data.label_index``), shape (annotation,) or (draw, annotation).
    """
    n = data.n_annotations
    if isinstance(labels, xr.DataArray):
        if "annotation" not in labels.dims:
            raise ValueError(
                f"labels must have an 'annotation' dim (dims given: {list(labels.dims)})"
            )
        labels = labels.transpose(..., "annotation")
        values = labels.to_numpy()
        if values.shape[-1] != n:
            raise ValueError(f"labels have {values.shape[-1]} annotations; the data have {n}")
        codes = data.categories.get_indexer(pd.Index(values.ravel())).reshape(values.shape)
        if (codes < 0).any():
            bad = pd.unique(values.ravel()[codes.ravel() < 0])[:5]
            raise ValueError(f"labels outside the categories {list(data.categories)}: {list(bad)}")
        return codes.astype(np.int64), _lead(labels, 1)
    codes = np.asarray(labels)
    if codes.ndim not in (1, 2) or codes.shape[-1] != n:
        raise ValueError(
            f"labels must have shape (annotation,) or (draw, annotation) with {n} annotations, "
            f"got {codes.shape}"
        )
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(
            f"label codes must be integers (as data.label_index), not {codes.dtype}; pass "
            "category values as an xarray.DataArray with an 'annotation' dim"
        )
    if codes.size and (codes.min() < 0 or codes.max() >= data.n_categories):
        raise ValueError(f"label codes must lie in 0..{data.n_categories - 1}")
    return codes.astype(np.int64), (("draw",) if codes.ndim == 2 else (), {})


def _counts(values: np.ndarray, group: np.ndarray, n_groups: int, n_values: int) -> np.ndarray:
    """How often each value ``0..n_values - 1`` occurs in each group, for every leading index.

    ``values`` has shape (..., element) and ``group`` gives each element's group (item,
    annotator, cell...); the result has shape (..., group, value).
    """
    lead = values.shape[:-1]
    flat = values.reshape(-1, values.shape[-1])
    n_samples = flat.shape[0]
    ids = (np.arange(n_samples)[:, None] * n_groups + group[None, :]) * n_values + flat
    out = np.bincount(ids.ravel(), minlength=n_samples * n_groups * n_values)
    return out.reshape(*lead, n_groups, n_values)


def _votes(labels: Any, data: AnnotationData, by: str) -> xr.DataArray:
    """Labels of each category per item or per annotator (``by``), dims (..., by, category)."""
    codes, lead = _as_codes(labels, data)
    index = data.item_index if by == "item" else data.annotator_index
    names = data.items if by == "item" else data.annotators
    counts = _counts(codes, index, len(names), data.n_categories)
    own = {by: names.to_numpy(), "category": data.categories.to_numpy()}
    return _wrap(counts, lead, "vote_count", own)


def _n_labels(data: AnnotationData) -> np.ndarray:
    return np.bincount(data.item_index, minlength=data.n_items)


def _multi_label_votes(labels: Any, data: AnnotationData) -> xr.DataArray:
    """:func:`item_vote_counts` of the items with two or more labels, where agreement is defined."""
    multi = _n_labels(data) >= 2
    if not multi.any():
        raise ValueError("no item has two or more labels: agreement statistics are undefined")
    return item_vote_counts(labels, data).isel(item=multi)


def _multi_label_agreement(labels: Any, data: AnnotationData) -> xr.DataArray:
    """:func:`item_agreement` of the items with at least two labels."""
    votes = _multi_label_votes(labels, data)
    return votes.max("category") / votes.sum("category")


def _pair_agreement(counts: np.ndarray) -> np.ndarray:
    """Per group: the share of pairs of its labels that agree, from counts (..., group, cat)."""
    total = counts.sum(axis=-1)
    pairs = total * (total - 1)
    agree = (counts * (counts - 1)).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return agree / pairs


# ---------------------------------------------------------------------------- statistics
def item_vote_counts(labels: Any, data: AnnotationData) -> xr.DataArray:
    """How many labels of each category every item received.

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        Category codes (as ``data.label_index``) of shape (annotation,) or (draw, annotation),
        or a DataArray of category values with an ``annotation`` dim (such as the output of
        :func:`~crowdbayes.predictive.posterior_predictive`); its other dims are kept.
    data : AnnotationData
        The design the labels belong to.

    Returns
    -------
    xarray.DataArray
        Dims (..., item, category).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2, 2],
    ...     "annotator": list("abcab"), "label": [0, 0, 1, 1, 1]}))
    >>> item_vote_counts(data.label_index, data).values.tolist()
    [[2, 1], [0, 2]]
    """
    return _votes(labels, data, "item")


def item_agreement(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Per item: the share of its labels that equal its modal (most frequent) label.

    Ranges from 1 / (number of categories) to 1 (unanimous); 1 for an item with one label.

    Parameters
    ----------
    labels, data
        As in :func:`item_vote_counts`.

    Returns
    -------
    xarray.DataArray
        Dims (..., item).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2, 2],
    ...     "annotator": list("abcab"), "label": [0, 0, 1, 1, 1]}))
    >>> item_agreement(data.label_index, data).values.round(3).tolist()
    [0.667, 1.0]
    """
    counts = item_vote_counts(labels, data)
    agreement = counts.max("category") / _n_labels(data)
    return agreement.rename("agreement")


def mean_agreement(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Mean :func:`item_agreement` over the items with at least two labels.

    Parameters
    ----------
    labels, data
        As in :func:`item_vote_counts`.

    Returns
    -------
    xarray.DataArray
        One mean per replicate: the leading dims of ``labels`` (none for one set of labels).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2, 2],
    ...     "annotator": list("abcab"), "label": [0, 0, 1, 1, 1]}))
    >>> round(float(mean_agreement(data.label_index, data)), 4)
    0.8333
    """
    return _multi_label_agreement(labels, data).mean("item").rename("mean_agreement")


def agreement_sd(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Standard deviation of :func:`item_agreement` over the items with at least two labels.

    Items of varying difficulty spread it: some items are unanimous, others split, more often
    than annotators of fixed skill produce.

    Parameters
    ----------
    labels, data
        As in :func:`item_vote_counts`.

    Returns
    -------
    xarray.DataArray
        One standard deviation (ddof 0) per replicate, over the leading dims of ``labels``.

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2, 2],
    ...     "annotator": list("abcab"), "label": [0, 0, 1, 1, 1]}))
    >>> round(float(agreement_sd(data.label_index, data)), 4)  # sd of (2/3, 1)
    0.1667
    """
    return _multi_label_agreement(labels, data).std("item").rename("agreement_sd")


def unanimous_share(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Share of the items with at least two labels whose labels are all the same.

    Parameters
    ----------
    labels, data
        As in :func:`item_vote_counts`.

    Returns
    -------
    xarray.DataArray
        A share in [0, 1] for each replicate (leading dims of ``labels``).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2, 2],
    ...     "annotator": list("abcab"), "label": [0, 0, 1, 1, 1]}))
    >>> float(unanimous_share(data.label_index, data))
    0.5
    """
    unanimous = _multi_label_agreement(labels, data) == 1.0
    return unanimous.mean("item").rename("unanimous_share")


def agreement_histogram(
    labels: Any, data: AnnotationData, edges: Sequence[float] = AGREEMENT_EDGES
) -> xr.DataArray:
    """Number of items (with at least two labels) in each bin of :func:`item_agreement`.

    Parameters
    ----------
    labels, data
        As in :func:`item_vote_counts`.
    edges : sequence of float
        Increasing inner bin edges in (0, 1). Bins are ``[0, e0)``, ``[e0, e1)``, ...,
        ``[e_last, 1)`` and a last bin ``1`` of the unanimous items.

    Returns
    -------
    xarray.DataArray
        Dims (..., agreement_bin); the bin labels are strings (``"0.5-0.6"``, ..., ``"1"``).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2, 2],
    ...     "annotator": list("abcab"), "label": [0, 0, 1, 1, 1]}))
    >>> h = agreement_histogram(data.label_index, data)
    >>> dict(zip(h["agreement_bin"].values.tolist(), h.values.tolist()))
    {'<0.5': 0, '0.5-0.6': 0, '0.6-0.7': 1, '0.7-0.8': 0, '0.8-0.9': 0, '0.9-1': 0, '1': 1}
    """
    inner = np.asarray(edges, dtype=float)
    if inner.ndim != 1 or np.any(np.diff(inner) <= 0) or inner.min() <= 0 or inner.max() >= 1:
        raise ValueError(f"edges must be increasing and inside (0, 1), got {list(edges)}")
    agreement = _multi_label_agreement(labels, data)
    share = agreement.to_numpy()
    bins = np.where(share == 1.0, len(inner) + 1, np.searchsorted(inner, share, "right"))
    hist = _counts(bins, np.zeros(bins.shape[-1], dtype=np.int64), 1, len(inner) + 2)[..., 0, :]
    ranges = [f"{lo:g}-{hi:g}" for lo, hi in zip(inner, [*inner[1:], 1.0], strict=True)]
    names = [f"<{inner[0]:g}", *ranges, "1"]
    return _wrap(hist, _lead(agreement, 1), "agreement_count", {"agreement_bin": names})


def pairwise_agreement(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Mean over items (with at least two labels) of the share of pairs of labels that agree.

    For an item with counts :math:`c_k` of its :math:`n` labels,
    :math:`\\sum_k c_k (c_k - 1) / (n (n - 1))` (the observed agreement of Fleiss' kappa).

    Parameters
    ----------
    labels, data
        As in :func:`item_vote_counts`.

    Returns
    -------
    xarray.DataArray
        Dims: the leading dims of ``labels``.

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2, 2],
    ...     "annotator": list("abcab"), "label": [0, 0, 1, 1, 1]}))
    >>> round(float(pairwise_agreement(data.label_index, data)), 4)  # (1/3 + 1) / 2
    0.6667
    """
    counts = _multi_label_votes(labels, data)
    per_item = _pair_agreement(counts.to_numpy())
    return _wrap(per_item.mean(axis=-1), _lead(counts, 2), "pairwise_agreement", {})


def self_agreement(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Mean over (item, annotator) pairs with repeated labels of the share of agreeing pairs.

    How consistent annotators are with themselves when they label an item more than once
    (NaN when no annotator labelled any item twice). Models in which an annotator's labels are
    independent given the true category predict as much disagreement within an annotator as
    between annotators of equal skill.

    Parameters
    ----------
    labels, data
        As in :func:`item_vote_counts`.

    Returns
    -------
    xarray.DataArray
        Dims: the leading dims of ``labels``.

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2, 2, 2],
    ...     "annotator": list("aabbba"), "label": [0, 0, 1, 1, 0, 1]}))
    >>> float(self_agreement(data.label_index, data))  # a on item 1: 1, b on item 2: 0
    0.5
    """
    codes, lead = _as_codes(labels, data)
    # Each annotation's cell: its (item, annotator) pair.
    key = data.item_index * data.n_annotators + data.annotator_index
    cell = np.unique(key, return_inverse=True)[1].ravel()
    n_cells = int(cell.max()) + 1
    counts = _counts(codes, cell, n_cells, data.n_categories)
    repeated = np.bincount(cell, minlength=n_cells) >= 2
    if repeated.any():
        value = _pair_agreement(counts[..., repeated, :]).mean(axis=-1)
    else:
        value = np.full(codes.shape[:-1], np.nan)
    return _wrap(np.asarray(value, dtype=float), lead, "self_agreement", {})


def category_frequencies(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Share of all labels in each category.

    Parameters
    ----------
    labels, data
        As in :func:`item_vote_counts`.

    Returns
    -------
    xarray.DataArray
        Dims (..., category).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2, 2],
    ...     "annotator": list("abcab"), "label": [0, 0, 1, 1, 1]}))
    >>> category_frequencies(data.label_index, data).values.tolist()
    [0.4, 0.6]
    """
    counts = item_vote_counts(labels, data).sum("item")
    return (counts / data.n_annotations).rename("category_frequency")


def annotator_frequencies(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Share of each annotator's labels in each category.

    Parameters
    ----------
    labels, data
        As in :func:`item_vote_counts`.

    Returns
    -------
    xarray.DataArray
        Dims (..., annotator, category); rows sum to 1.

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2, 2],
    ...     "annotator": list("abcab"), "label": [0, 0, 1, 1, 1]}))
    >>> annotator_frequencies(data.label_index, data).values.tolist()
    [[0.5, 0.5], [0.5, 0.5], [0.0, 1.0]]
    """
    counts = _votes(labels, data, "annotator")
    return (counts / counts.sum("category")).rename("annotator_frequency")


def vote_count_histogram(labels: Any, data: AnnotationData) -> xr.DataArray:
    """For each category, how many items got 0, 1, ..., n votes for it, by number of labels.

    Items are grouped by their number of labels ``n`` (the replicated designs keep it), so
    every group's histogram over ``votes`` sums to the group's number of items. Entries with
    ``votes > n_labels`` are structural zeros.

    Parameters
    ----------
    labels, data
        As in :func:`item_vote_counts`.

    Returns
    -------
    xarray.DataArray
        Dims (..., n_labels, category, votes).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 2, 2, 3, 3],
    ...     "annotator": list("ababab"), "label": [0, 0, 1, 0, 1, 1]}))
    >>> h = vote_count_histogram(data.label_index, data)
    >>> h.sel(n_labels=2, category=1).values.tolist()  # items with 0, 1, 2 votes for 1
    [1, 1, 1]
    """
    counts = item_vote_counts(labels, data)
    groups, group = np.unique(_n_labels(data), return_inverse=True)
    n_groups, n_votes, k = len(groups), int(groups.max()) + 1, data.n_categories
    # Each (item, category) count is a value counted in the group (n_labels, category).
    values = counts.to_numpy().reshape(*counts.shape[:-2], data.n_items * k)
    cell_group = (group[:, None] * k + np.arange(k)[None, :]).ravel()
    hist = _counts(values, cell_group, n_groups * k, n_votes)
    hist = hist.reshape(*counts.shape[:-2], n_groups, k, n_votes)
    own = {"n_labels": groups, "category": data.categories.to_numpy(), "votes": np.arange(n_votes)}
    return _wrap(hist, _lead(counts, 2), "item_count", own)


def vote_count_discrepancy(labels: Any, data: AnnotationData, expected: Any) -> xr.DataArray:
    """Freeman-Tukey distance of the :func:`vote_count_histogram` from an expected one.

    :math:`\\sum (\\sqrt{h} - \\sqrt{e})^2` over every (n_labels, category, votes) cell with
    ``votes <= n_labels``: one number for Carpenter's vote-count check, defined where the
    expected count is 0. In :func:`check_table` the expectation is the mean histogram of the
    replicates, and the p-value is one-sided (a larger distance is worse).

    Parameters
    ----------
    labels, data
        As in :func:`item_vote_counts`.
    expected : array-like or xarray.DataArray
        Expected item counts, shaped like ``vote_count_histogram(data.label_index, data)``.

    Returns
    -------
    xarray.DataArray
        Dims: the leading dims of ``labels``.

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 2, 2, 3, 3],
    ...     "annotator": list("ababab"), "label": [0, 0, 1, 0, 1, 1]}))
    >>> h = vote_count_histogram(data.label_index, data)
    >>> float(vote_count_discrepancy(data.label_index, data, h))
    0.0
    """
    hist = vote_count_histogram(labels, data)
    shape = hist.shape[-3:]
    expected_arr = np.asarray(expected, dtype=float)
    if expected_arr.shape != shape:
        raise ValueError(f"expected must have the shape {shape} of the vote-count histogram")
    cells = hist["votes"].to_numpy()[None, :] <= hist["n_labels"].to_numpy()[:, None]
    diff = (np.sqrt(hist.to_numpy()) - np.sqrt(expected_arr)) ** 2
    value = np.where(cells[:, None, :], diff, 0.0).sum(axis=(-3, -2, -1))
    return _wrap(value, _lead(hist, 3), "vote_count_discrepancy", {})


def predictive_statistics(labels: Any, data: AnnotationData) -> dict[str, xr.DataArray]:
    """Every check statistic of ``labels``, by name (the ``statistic`` column of the checks).

    ``self_agreement`` is left out when no annotator labelled an item twice; the agreement
    statistics when no item has two labels.

    Parameters
    ----------
    labels, data
        As in :func:`item_vote_counts`.

    Returns
    -------
    dict of str to xarray.DataArray

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2, 2],
    ...     "annotator": list("abcab"), "label": [0, 0, 1, 1, 1]}))
    >>> list(predictive_statistics(data.label_index, data))  # doctest: +NORMALIZE_WHITESPACE
    ['category_frequency', 'mean_agreement', 'agreement_sd', 'unanimous_share',
     'pairwise_agreement', 'agreement_histogram', 'annotator_frequency', 'vote_counts']
    """
    stats: dict[str, xr.DataArray] = {"category_frequency": category_frequencies(labels, data)}
    if (_n_labels(data) >= 2).any():
        stats["mean_agreement"] = mean_agreement(labels, data)
        stats["agreement_sd"] = agreement_sd(labels, data)
        stats["unanimous_share"] = unanimous_share(labels, data)
        stats["pairwise_agreement"] = pairwise_agreement(labels, data)
        self_agree = self_agreement(labels, data)
        if not bool(np.isnan(self_agree).all()):
            stats["self_agreement"] = self_agree
        stats["agreement_histogram"] = agreement_histogram(labels, data)
    stats["annotator_frequency"] = annotator_frequencies(labels, data)
    stats["vote_counts"] = vote_count_histogram(labels, data)
    return stats


# ---------------------------------------------------------------------------- the check table
def _row_names(name: str, da: xr.DataArray) -> tuple[list[str], np.ndarray]:
    """Check names of every element of a statistic (no sample dims) and the rows to keep."""
    if da.ndim == 0:
        return [name], np.array([True])
    frame = da.to_dataframe(name="_value").reset_index()
    dims = list(da.dims)
    names = [
        f"{name}[" + ", ".join(f"{d}={row[d]}" for d in dims) + "]"
        for row in frame.to_dict("records")
    ]
    keep = np.ones(len(names), dtype=bool)
    if name == "vote_counts":
        keep = frame["votes"].to_numpy() <= frame["n_labels"].to_numpy()
    return names, keep


def _ppp(replicated: np.ndarray, observed: np.ndarray, alternative: str) -> np.ndarray:
    """Posterior predictive p-value per column (ties count on both sides)."""
    tol = 1e-12 * np.maximum(1.0, np.abs(observed))
    upper = (replicated >= observed - tol).mean(axis=0)
    if alternative == "greater":
        return upper
    lower = (replicated <= observed + tol).mean(axis=0)
    return np.minimum(1.0, 2.0 * np.minimum(upper, lower))


def check_table(
    replicated: xr.DataArray,
    data: AnnotationData,
    *,
    observed: Any = None,
    alpha: float = 0.05,
    prob: float = CI_PROB,
) -> pd.DataFrame:
    """Compare every statistic of the observed labels with its replicated distribution.

    Parameters
    ----------
    replicated : xarray.DataArray
        Replicated labels, dims (draw, annotation), as
        :func:`~crowdbayes.predictive.posterior_predictive` or
        :func:`~crowdbayes.predictive.prior_predictive` return them.
    data : AnnotationData
        The design and (unless ``observed`` is given) the observed labels.
    observed : numpy.ndarray or xarray.DataArray, optional
        Observed labels (default ``data.label_index``).
    alpha : float
        ``flag`` marks the statistics whose p-value is below this.
    prob : float
        Mass of the replicated interval (equal-tailed).

    Returns
    -------
    pandas.DataFrame
        One row per check: ``statistic`` (the family, a key of :func:`predictive_statistics`),
        ``check`` (its unique name, with the element in brackets), ``observed``,
        ``replicated_mean``, ``replicated_low``, ``replicated_high`` (the interval),
        ``ppp_value`` (posterior predictive p-value: two-sided,
        :math:`\\min(1, 2 \\min(P(T_{rep} \\ge T_{obs}), P(T_{rep} \\le T_{obs})))`, except
        one-sided :math:`P(T_{rep} \\ge T_{obs})` for ``vote_count_discrepancy``, whose
        expectation is the replicates' mean histogram; ties count on both sides, so a statistic
        the replicates always reproduce gets 1), ``alternative`` (``"two-sided"`` or
        ``"greater"``) and ``flag`` (``ppp_value < alpha``). With ``S`` draws the smallest
        nonzero two-sided p-value is ``2 / S``.

    Examples
    --------
    Labels shuffled across annotations keep the category frequencies, not the agreement:

    >>> import numpy as np
    >>> import xarray as xr
    >>> import crowdbayes as cb
    >>> data = cb.simulate_dawid_skene(n_items=30, n_annotators=4, random_seed=0).data
    >>> rng = np.random.default_rng(1)
    >>> shuffled = [data.categories[rng.permutation(data.label_index)] for _ in range(50)]
    >>> table = check_table(xr.DataArray(shuffled, dims=("draw", "annotation")), data)
    >>> flags = table.set_index("check")["flag"]
    >>> bool(flags["category_frequency[category=0]"]), bool(flags["mean_agreement"])
    (False, True)
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    if not isinstance(replicated, xr.DataArray) or replicated.dims != ("draw", "annotation"):
        raise ValueError(
            "replicated must be an xarray.DataArray with dims ('draw', 'annotation'), as "
            "posterior_predictive returns"
        )
    observed_labels = data.label_index if observed is None else observed
    obs_stats = predictive_statistics(observed_labels, data)
    rep_stats = predictive_statistics(replicated, data)
    expected = rep_stats["vote_counts"].mean("draw")
    obs_stats["vote_count_discrepancy"] = vote_count_discrepancy(observed_labels, data, expected)
    rep_stats["vote_count_discrepancy"] = vote_count_discrepancy(replicated, data, expected)
    tail = (1.0 - prob) / 2.0
    frames = []
    for name, obs in obs_stats.items():
        rep = rep_stats[name].transpose("draw", *obs.dims)
        checks, keep = _row_names(name, obs)
        obs_flat = obs.to_numpy().astype(float).reshape(-1)[keep]
        rep_flat = rep.to_numpy().astype(float).reshape(rep.sizes["draw"], -1)[:, keep]
        alternative = "greater" if name in ONE_SIDED else "two-sided"
        p = _ppp(rep_flat, obs_flat, alternative)
        columns = {
            "statistic": name,
            "check": np.asarray(checks, dtype=object)[keep],
            "observed": obs_flat,
            "replicated_mean": rep_flat.mean(axis=0),
            "replicated_low": np.quantile(rep_flat, tail, axis=0),
            "replicated_high": np.quantile(rep_flat, 1.0 - tail, axis=0),
            "ppp_value": p,
            "alternative": alternative,
            "flag": p < alpha,
        }
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True)
