"""Posterior and prior predictive checks with statistics that crowd data make informative.

A predictive check replicates the labels: the design (which annotator labelled which item, and
how many times) stays fixed and every label is drawn afresh from the model, given one draw of
its parameters. For a posterior draw :math:`\\theta`, each item's true category is drawn from
its posterior given the data and that draw,

.. math::

    p(z_i = k \\mid y, \\theta) = \\operatorname{softmax}_k \\, \\ell_{ik},

where :math:`\\ell` is the model's ``label_joint`` (gold items keep their gold category), then
each annotation is drawn from the model's ``annotation_log_probability`` given :math:`z_i`.
Both are named variables of every model in the package (the label-model contract of
:mod:`crowdbayes.models._common`), so the check works unchanged for every model family,
including those whose label distribution depends on the item. A prior predictive draw takes
the parameters from the prior and :math:`z_i` from the prevalence instead.

Statistics (each a function of label arrays and :class:`~crowdbayes.data.AnnotationData`,
vectorised over replicate draws) compare the observed labels with the replicates:

* agreement within items: per-item agreement (share of an item's labels equal to its modal
  label), its histogram, mean and the share of unanimous items, and the chance that two labels
  of an item agree (:func:`pairwise_agreement`);
* :func:`self_agreement`: the chance that two labels one annotator gave one item agree (only
  with repeated labels);
* :func:`category_frequencies` and :func:`annotator_frequencies`;
* :func:`vote_count_histogram`: for each category, how many items got 0, 1, ..., n votes for
  it among items with n labels (Carpenter's check of Dawid-Skene on the caries data: a model
  without item difficulty predicts too few unanimous and too few split items).

:func:`predictive_check` tabulates them with posterior predictive p-values and stores the
replicated labels and the p-values in the fit's DataTree.
"""

import warnings
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import xarray as xr

from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.estimators import BayesianCrowdModel, get_model, rebuild_model
from crowdbayes.inference import check_random_seed, seed_to_int
from crowdbayes.models._common import ANNOTATION_LOG_PROBABILITY, LABEL_JOINT
from crowdbayes.models._draws import DrawEvaluator
from crowdbayes.results import CI_PROB, FitResult

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
    "posterior_predictive",
    "prior_predictive",
    "check_table",
    "predictive_check",
]

#: Inner edges of the agreement histogram: bins ``[0, 0.5)``, ``[0.5, 0.6)``, ...,
#: ``[0.9, 1)`` and the unanimous items (agreement exactly 1).
AGREEMENT_EDGES: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)

#: The label functions are compiled with PyTensor's C backend: its compiled operations are
#: cached across graphs, so a new data set compiles in about a second, where the default
#: (Numba) backend compiles every new graph afresh (measured on a busy 2-core machine for a
#: Dawid-Skene model: 9 s with Numba, 0.4 s with C once the cache is warm).
_COMPILE_MODE = "CVM"
#: Statistics whose p-value is one-sided, P(T_rep >= T_obs): distances, where only large is bad.
ONE_SIDED = frozenset({"vote_count_discrepancy"})
#: Elements per chunk of evaluated draws (bounds memory whatever ``n_draws``).
_MAX_ELEMENTS = 4_000_000


# ---------------------------------------------------------------------------- label arrays
def _as_codes(
    labels: Any, data: AnnotationData
) -> tuple[np.ndarray, tuple[Hashable, ...], dict[Hashable, Any]]:
    """Category codes of shape (..., annotation), with the leading dims' names and coords.

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
        dims = tuple(labels.dims[:-1])
        coords = {d: labels[d].to_numpy() for d in dims if d in labels.coords}
        return codes.astype(np.int64), dims, coords
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
    dims = ("draw",) if codes.ndim == 2 else ()
    return codes.astype(np.int64), dims, {}


def _wrap(
    values: np.ndarray,
    lead: tuple[Hashable, ...],
    lead_coords: dict[Hashable, Any],
    dims: tuple[str, ...],
    coords: dict[str, Any],
    name: str,
) -> xr.DataArray:
    return xr.DataArray(values, dims=(*lead, *dims), coords={**lead_coords, **coords}, name=name)


def _counts(codes: np.ndarray, group: np.ndarray, n_groups: int, n_categories: int) -> np.ndarray:
    """Labels of each category per group (item, cell...), shape (..., group, category)."""
    lead = codes.shape[:-1]
    flat = codes.reshape(-1, codes.shape[-1])
    n_samples = flat.shape[0]
    ids = (np.arange(n_samples)[:, None] * n_groups + group[None, :]) * n_categories + flat
    out = np.bincount(ids.ravel(), minlength=n_samples * n_groups * n_categories)
    return out.reshape(*lead, n_groups, n_categories)


def _n_labels(data: AnnotationData) -> np.ndarray:
    return np.bincount(data.item_index, minlength=data.n_items)


# ---------------------------------------------------------------------------- statistics
def item_vote_counts(labels: Any, data: AnnotationData) -> xr.DataArray:
    """How many labels of each category every item received.

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        Category codes (as ``data.label_index``) of shape (annotation,) or (draw, annotation),
        or a DataArray of category values with an ``annotation`` dim (such as the output of
        :func:`posterior_predictive`); its other dims are kept.
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
    codes, lead, lead_coords = _as_codes(labels, data)
    counts = _counts(codes, data.item_index, data.n_items, data.n_categories)
    coords = {"item": data.items.to_numpy(), "category": data.categories.to_numpy()}
    return _wrap(counts, lead, lead_coords, ("item", "category"), coords, "vote_count")


def item_agreement(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Per item: the share of its labels that equal its modal (most frequent) label.

    Ranges from 1 / (number of categories) to 1 (unanimous); 1 for an item with one label.

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        As in :func:`item_vote_counts`.
    data : AnnotationData

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


def _multi_label_items(data: AnnotationData) -> np.ndarray:
    multi = _n_labels(data) >= 2
    if not multi.any():
        raise ValueError("no item has two or more labels: agreement statistics are undefined")
    return multi


def mean_agreement(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Mean :func:`item_agreement` over the items with at least two labels.

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        As in :func:`item_vote_counts`.
    data : AnnotationData

    Returns
    -------
    xarray.DataArray
        Dims: the leading dims of ``labels`` (none for one set of labels).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2, 2],
    ...     "annotator": list("abcab"), "label": [0, 0, 1, 1, 1]}))
    >>> round(float(mean_agreement(data.label_index, data)), 4)
    0.8333
    """
    multi = _multi_label_items(data)
    agreement = item_agreement(labels, data).isel(item=multi)
    return agreement.mean("item").rename("mean_agreement")


def agreement_sd(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Standard deviation of :func:`item_agreement` over the items with at least two labels.

    Items of varying difficulty spread it: some items are unanimous, others split, more often
    than annotators of fixed skill produce.

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        As in :func:`item_vote_counts`.
    data : AnnotationData

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
    >>> round(float(agreement_sd(data.label_index, data)), 4)  # sd of (2/3, 1), ddof 0
    0.1667
    """
    multi = _multi_label_items(data)
    agreement = item_agreement(labels, data).isel(item=multi)
    return agreement.std("item").rename("agreement_sd")


def unanimous_share(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Share of the items with at least two labels whose labels are all the same.

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        As in :func:`item_vote_counts`.
    data : AnnotationData

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
    >>> float(unanimous_share(data.label_index, data))
    0.5
    """
    multi = _multi_label_items(data)
    counts = item_vote_counts(labels, data).isel(item=multi)
    unanimous = counts.max("category") == counts.sum("category")
    return unanimous.mean("item").rename("unanimous_share")


def agreement_histogram(
    labels: Any, data: AnnotationData, edges: Sequence[float] = AGREEMENT_EDGES
) -> xr.DataArray:
    """Number of items (with at least two labels) in each bin of :func:`item_agreement`.

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        As in :func:`item_vote_counts`.
    data : AnnotationData
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
    multi = _multi_label_items(data)
    counts = item_vote_counts(labels, data).isel(item=multi)
    top = counts.max("category").to_numpy()
    total = counts.sum("category").to_numpy()
    bins = np.where(top == total, len(inner) + 1, np.searchsorted(inner, top / total, "right"))
    n_bins = len(inner) + 2
    lead_shape = bins.shape[:-1]
    flat = bins.reshape(-1, bins.shape[-1])
    ids = np.arange(flat.shape[0])[:, None] * n_bins + flat
    hist = np.bincount(ids.ravel(), minlength=flat.shape[0] * n_bins).reshape(*lead_shape, n_bins)
    names = [f"<{inner[0]:g}"]
    names += [f"{lo:g}-{hi:g}" for lo, hi in zip(inner, [*inner[1:], 1.0], strict=True)]
    names.append("1")
    lead = tuple(counts.dims[:-2])
    lead_coords = {d: counts[d].to_numpy() for d in lead if d in counts.coords}
    return _wrap(
        hist, lead, lead_coords, ("agreement_bin",), {"agreement_bin": names}, "agreement_count"
    )


def _pair_agreement(counts: np.ndarray) -> np.ndarray:
    """Per group: the share of pairs of its labels that agree, from counts (..., group, cat)."""
    total = counts.sum(axis=-1)
    pairs = total * (total - 1)
    agree = (counts * (counts - 1)).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return agree / pairs


def pairwise_agreement(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Mean over items (with at least two labels) of the share of pairs of labels that agree.

    For an item with counts :math:`c_k` of its :math:`n` labels,
    :math:`\\sum_k c_k (c_k - 1) / (n (n - 1))` (the observed agreement of Fleiss' kappa).

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        As in :func:`item_vote_counts`.
    data : AnnotationData

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
    multi = _multi_label_items(data)
    counts = item_vote_counts(labels, data).isel(item=multi)
    per_item = _pair_agreement(counts.to_numpy())
    lead = tuple(counts.dims[:-2])
    lead_coords = {d: counts[d].to_numpy() for d in lead if d in counts.coords}
    return _wrap(per_item.mean(axis=-1), lead, lead_coords, (), {}, "pairwise_agreement")


def _repeat_cells(data: AnnotationData) -> tuple[np.ndarray, int]:
    """Cell (item, annotator) index of every annotation and the number of cells."""
    key = data.item_index * data.n_annotators + data.annotator_index
    _, cell = np.unique(key, return_inverse=True)
    return cell.ravel(), int(cell.max()) + 1


def self_agreement(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Mean over (item, annotator) pairs with repeated labels of the share of agreeing pairs.

    How consistent annotators are with themselves when they label an item more than once
    (NaN when no annotator labelled any item twice). Models in which an annotator's labels are
    independent given the true category predict as much disagreement within an annotator as
    between annotators of equal skill.

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        As in :func:`item_vote_counts`.
    data : AnnotationData

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
    codes, lead, lead_coords = _as_codes(labels, data)
    cell, n_cells = _repeat_cells(data)
    counts = _counts(codes, cell, n_cells, data.n_categories)
    repeated = np.bincount(cell, minlength=n_cells) >= 2
    if repeated.any():
        value = _pair_agreement(counts[..., repeated, :]).mean(axis=-1)
    else:
        value = np.full(codes.shape[:-1], np.nan)
    return _wrap(np.asarray(value, dtype=float), lead, lead_coords, (), {}, "self_agreement")


def category_frequencies(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Share of all labels in each category.

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        As in :func:`item_vote_counts`.
    data : AnnotationData

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
    codes, lead, lead_coords = _as_codes(labels, data)
    zero = np.zeros(data.n_annotations, dtype=np.int64)
    counts = _counts(codes, zero, 1, data.n_categories)[..., 0, :]
    coords = {"category": data.categories.to_numpy()}
    share = counts / data.n_annotations
    return _wrap(share, lead, lead_coords, ("category",), coords, "category_frequency")


def annotator_frequencies(labels: Any, data: AnnotationData) -> xr.DataArray:
    """Share of each annotator's labels in each category.

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        As in :func:`item_vote_counts`.
    data : AnnotationData

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
    codes, lead, lead_coords = _as_codes(labels, data)
    counts = _counts(codes, data.annotator_index, data.n_annotators, data.n_categories)
    n_labels = np.bincount(data.annotator_index, minlength=data.n_annotators)
    coords = {"annotator": data.annotators.to_numpy(), "category": data.categories.to_numpy()}
    share = counts / n_labels[:, None]
    return _wrap(share, lead, lead_coords, ("annotator", "category"), coords, "annotator_frequency")


def vote_count_histogram(labels: Any, data: AnnotationData) -> xr.DataArray:
    """For each category, how many items got 0, 1, ..., n votes for it, by number of labels.

    Items are grouped by their number of labels ``n`` (the replicated designs keep it), so
    every group's histogram over ``votes`` sums to the group's number of items. Entries with
    ``votes > n_labels`` are structural zeros.

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        As in :func:`item_vote_counts`.
    data : AnnotationData

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
    n_labels = _n_labels(data)
    groups, group = np.unique(n_labels, return_inverse=True)
    n_groups, n_votes = len(groups), int(groups.max()) + 1
    k = data.n_categories
    values = counts.to_numpy()
    lead_shape = values.shape[:-2]
    flat = values.reshape(-1, data.n_items, k)
    n_samples = flat.shape[0]
    ids = (
        (np.arange(n_samples)[:, None, None] * n_groups + group[None, :, None]) * k
        + np.arange(k)[None, None, :]
    ) * n_votes + flat
    hist = np.bincount(ids.ravel(), minlength=n_samples * n_groups * k * n_votes)
    hist = hist.reshape(*lead_shape, n_groups, k, n_votes)
    lead = tuple(counts.dims[:-2])
    lead_coords = {d: counts[d].to_numpy() for d in lead if d in counts.coords}
    coords = {
        "n_labels": groups,
        "category": data.categories.to_numpy(),
        "votes": np.arange(n_votes),
    }
    return _wrap(hist, lead, lead_coords, ("n_labels", "category", "votes"), coords, "item_count")


def vote_count_discrepancy(labels: Any, data: AnnotationData, expected: Any) -> xr.DataArray:
    """Freeman-Tukey distance of the :func:`vote_count_histogram` from an expected one.

    :math:`\\sum (\\sqrt{h} - \\sqrt{e})^2` over every (n_labels, category, votes) cell with
    ``votes <= n_labels``: one number for Carpenter's vote-count check, defined where the
    expected count is 0. In :func:`check_table` the expectation is the mean histogram of the
    replicates, and the p-value is one-sided (a larger distance is worse).

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        As in :func:`item_vote_counts`.
    data : AnnotationData
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
    lead = tuple(hist.dims[:-3])
    lead_coords = {d: hist[d].to_numpy() for d in lead if d in hist.coords}
    return _wrap(value, lead, lead_coords, (), {}, "vote_count_discrepancy")


def predictive_statistics(labels: Any, data: AnnotationData) -> dict[str, xr.DataArray]:
    """Every check statistic of ``labels``, by name (the ``statistic`` column of the checks).

    ``self_agreement`` is left out when no annotator labelled an item twice; the agreement
    statistics when no item has two labels.

    Parameters
    ----------
    labels : numpy.ndarray or xarray.DataArray
        As in :func:`item_vote_counts`.
    data : AnnotationData

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


# ---------------------------------------------------------------------------- replication
def _check_n_draws(n_draws: Any) -> int:
    if not isinstance(n_draws, int | np.integer) or isinstance(n_draws, bool) or n_draws < 1:
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    return int(n_draws)


def _result_and_model(fit: Any) -> tuple[FitResult, pm.Model]:
    """The FitResult of ``fit`` (estimator or result) and the PyMC model behind it."""
    if isinstance(fit, FitResult):
        result = fit
        model = None
    elif isinstance(fit, BayesianCrowdModel):
        result = fit.result_  # NotFittedError when not fitted
        model = fit.__dict__.get("model_")
    elif hasattr(fit, "result_"):
        raise ValueError(
            f"a {type(fit).__name__} has no probability model to replicate labels from; "
            "predictive checks need a Bayesian model (dawid-skene, ...)"
        )
    else:
        raise ValueError(
            f"expected a fitted crowdbayes estimator or a FitResult, not {type(fit).__name__}"
        )
    if "posterior" not in result.datatree.children:
        raise ValueError(
            f"the {result.model_name!r} result has no posterior; predictive checks need a "
            "Bayesian model (dawid-skene, ...)"
        )
    if model is None:
        model = rebuild_model(result)[1]
    return result, model


@contextmanager
def _c_backend() -> Iterator[None]:
    """Compile with the C backend; its BLAS warning is irrelevant to these small graphs."""
    with warnings.catch_warnings(), pytensor.config.change_flags(mode=_COMPILE_MODE):
        warnings.filterwarnings(
            "ignore", message="PyTensor could not link to a BLAS", category=UserWarning
        )
        yield


def _sample_categorical(log_p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row of log-probabilities (last axis), by the inverse CDF."""
    p = np.exp(log_p - log_p.max(axis=-1, keepdims=True))
    cum = np.cumsum(p, axis=-1)
    u = rng.random(p.shape[:-1]) * cum[..., -1]
    return np.minimum((cum <= u[..., None]).sum(axis=-1), p.shape[-1] - 1)


def _replicate(
    model: pm.Model,
    draws: xr.Dataset,
    data: AnnotationData,
    picked: np.ndarray,
    rng: np.random.Generator,
    *,
    prior: bool,
) -> np.ndarray:
    """Replicated label codes (len(picked), annotation) given the picked draws.

    The true category of each item comes from its posterior given the draw (``label_joint``),
    or, for a prior draw, from the prevalence; gold items keep their gold category.
    """
    names = [ANNOTATION_LOG_PROBABILITY] if prior else [LABEL_JOINT, ANNOTATION_LOG_PROBABILITY]
    missing = [n for n in names if n not in model.named_vars]
    if missing:
        raise ValueError(
            f"the model has no {', '.join(missing)} variable: it does not follow the label-model "
            "contract (crowdbayes.models._common.add_label_model)"
        )
    with _c_backend():
        evaluator = DrawEvaluator(model, names)
    k = data.n_categories
    gold = data.gold_index
    known = gold >= 0
    if prior:
        prevalence = draws["prevalence"].transpose("chain", "draw", "category").to_numpy()
        log_prevalence = np.log(prevalence.reshape(-1, k))
    out = np.empty((len(picked), data.n_annotations), dtype=np.int64)
    rows = np.arange(data.n_annotations)
    for sl, outputs in evaluator.iterate(draws, draws=picked, max_elements=_MAX_ELEMENTS):
        if prior:
            log_z = np.broadcast_to(
                log_prevalence[picked[sl]][:, None, :], (sl.stop - sl.start, data.n_items, k)
            )
        else:
            log_z = outputs[0]
        z = _sample_categorical(log_z, rng)
        z[:, known] = gold[known]
        row_log_p = outputs[-1]  # (draw, annotation, true_category, category)
        chosen = row_log_p[np.arange(len(z))[:, None], rows[None, :], z[:, data.item_index]]
        out[sl] = _sample_categorical(chosen, rng)
    return out


def _as_labels(
    codes: np.ndarray, data: AnnotationData, source: np.ndarray, n_draws_per_chain: int
) -> xr.DataArray:
    values = data.categories.to_numpy()[codes]
    return xr.DataArray(
        values,
        dims=("draw", "annotation"),
        coords={
            "draw": np.arange(codes.shape[0]),
            "annotation": np.arange(data.n_annotations),
            "source_chain": ("draw", source // n_draws_per_chain),
            "source_draw": ("draw", source % n_draws_per_chain),
        },
        name="label",
    )


def posterior_predictive(
    fit: Any, n_draws: int = 200, random_seed: int | np.random.Generator | None = None
) -> xr.DataArray:
    """Replicated labels from the posterior predictive distribution, design kept fixed.

    For each of ``n_draws`` posterior draws (picked at random from all chains, without
    replacement while there are enough), every item's true category is drawn from its
    posterior given the data and the draw (gold items keep theirs), then every annotation is
    drawn from the model given that category. A ``method="map"`` fit has one draw: all
    replicates then share the posterior mode (a plug-in predictive). Models with item effects
    replicate the same items with their posterior effects, so their check asks whether the
    fitted difficulties reproduce the data (lenient where item effects could overfit).

    Parameters
    ----------
    fit : fitted estimator or FitResult
        Of a Bayesian model. A loaded result's model is rebuilt from its provenance
        (:func:`~crowdbayes.estimators.rebuild_model`).
    n_draws : int
        Number of replicated data sets.
    random_seed : int, numpy.random.Generator or None
        The integer seed used is recorded in the ``random_seed`` attribute.

    Returns
    -------
    xarray.DataArray
        Named ``label``, dims (draw, annotation), category values, annotations in the order
        of ``result.data`` (``observed_data``); coords ``source_chain`` and ``source_draw``
        name the posterior draw behind each replicate; attribute ``kind = "posterior"``.

    Raises
    ------
    ValueError
        For majority vote (no model), an unknown input or a bad ``n_draws``.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> sim = cb.simulate_dawid_skene(n_items=20, n_annotators=4, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> rep = posterior_predictive(fit, n_draws=5, random_seed=1)
    >>> rep.dims, rep.shape
    (('draw', 'annotation'), (5, 80))
    """
    n_draws = _check_n_draws(n_draws)
    result, model = _result_and_model(fit)
    return _posterior_replicates(result, model, n_draws, random_seed)


def _posterior_replicates(
    result: FitResult,
    model: pm.Model,
    n_draws: int,
    random_seed: int | np.random.Generator | None,
) -> xr.DataArray:
    seed = seed_to_int(random_seed)
    rng = check_random_seed(seed)
    posterior = result.datatree["posterior"].to_dataset()
    n_chains, n_per_chain = posterior.sizes["chain"], posterior.sizes["draw"]
    n_samples = n_chains * n_per_chain
    picked = np.sort(rng.choice(n_samples, size=n_draws, replace=n_draws > n_samples))
    codes = _replicate(model, posterior, result.data, picked, rng, prior=False)
    labels = _as_labels(codes, result.data, picked, n_per_chain)
    labels.attrs = {"kind": "posterior", "model": result.model_name, "random_seed": seed}
    return labels


def prior_predictive(
    estimator: Any,
    annotations: Any,
    n_draws: int = 200,
    random_seed: int | np.random.Generator | None = None,
    *,
    gold: Any = None,
    categories: Sequence[Hashable] | None = None,
) -> xr.DataArray:
    """Replicated labels from the prior predictive distribution on the design of ``annotations``.

    Parameters are drawn from the model's prior, each item's true category from the drawn
    prevalence (gold items keep theirs), and every annotation from the model given it. The
    observed labels are used only for the design (and the category set).

    Parameters
    ----------
    estimator : BayesianCrowdModel or str
        An estimator (its priors are used) or a model name such as ``"dawid-skene"``.
    annotations : DataFrame, CSV path or AnnotationData
    n_draws : int
    random_seed : int, numpy.random.Generator or None
    gold, categories : optional
        As in :func:`~crowdbayes.data.encode_annotations` (not with AnnotationData).

    Returns
    -------
    xarray.DataArray
        As :func:`posterior_predictive`, with ``kind = "prior"``.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> sim = cb.simulate_dawid_skene(n_items=20, n_annotators=4, random_seed=0)
    >>> rep = prior_predictive(cb.DawidSkene(), sim.annotations, n_draws=5, random_seed=1)
    >>> rep.attrs["kind"], rep.shape
    ('prior', (5, 80))
    """
    n_draws = _check_n_draws(n_draws)
    if isinstance(estimator, str):
        estimator = get_model(estimator)
    if not isinstance(estimator, BayesianCrowdModel):
        raise ValueError(
            "estimator must be a Bayesian crowdbayes estimator or its name, not "
            f"{type(estimator).__name__}"
        )
    if isinstance(annotations, AnnotationData):
        if gold is not None or categories is not None:
            raise ValueError(
                "gold and categories are set when encoding; pass them to encode_annotations"
            )
        data = annotations
    else:
        data = encode_annotations(annotations, categories=categories, gold=gold)
    model = estimator.build_model(data)
    seed = seed_to_int(random_seed)
    rng = check_random_seed(seed)
    free = [rv.name for rv in model.free_RVs]
    with warnings.catch_warnings():
        if all(p.name == "label_likelihood" for p in model.potentials):
            # The label likelihood is the only potential: the prior of the parameters is exact.
            warnings.filterwarnings(
                "ignore", message="The effect of Potentials", category=UserWarning
            )
        with _c_backend():
            tree = pm.sample_prior_predictive(
                draws=n_draws, model=model, var_names=free, random_seed=seed
            )
    prior = tree["prior"].to_dataset()
    picked = np.arange(n_draws)
    codes = _replicate(model, prior, data, picked, rng, prior=True)
    labels = _as_labels(codes, data, picked, n_draws)
    labels.attrs = {"kind": "prior", "model": estimator.name, "random_seed": seed}
    return labels


# ---------------------------------------------------------------------------- the check
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
        Replicated labels, dims (draw, annotation) (:func:`posterior_predictive` or
        :func:`prior_predictive`).
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
    >>> import crowdbayes as cb
    >>> sim = cb.simulate_dawid_skene(n_items=30, n_annotators=4, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> rep = posterior_predictive(fit, n_draws=20, random_seed=1)
    >>> table = check_table(rep, fit.result_.data)
    >>> table.columns.tolist()  # doctest: +NORMALIZE_WHITESPACE
    ['statistic', 'check', 'observed', 'replicated_mean', 'replicated_low', 'replicated_high',
     'ppp_value', 'alternative', 'flag']
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
        frames.append(
            pd.DataFrame(
                {
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
            )
        )
    return pd.concat(frames, ignore_index=True)


def predictive_check(
    fit: Any,
    n_draws: int = 200,
    random_seed: int | np.random.Generator | None = None,
    *,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Posterior predictive check of a fit with crowd-specific statistics.

    Replicates the labels (:func:`posterior_predictive`), compares every statistic of
    :func:`predictive_statistics` with its replicated distribution (:func:`check_table`) and
    stores, in the fit's DataTree, the replicated labels as the ``posterior_predictive`` group
    (variable ``label``, dims draw, annotation) and the p-values as ``ppp_value`` (dim
    ``check``) in the ``summary`` group; both replace those of an earlier check and are kept by
    :meth:`~crowdbayes.results.FitResult.save`.

    A model that ignores item difficulty typically fails on ``agreement_sd``,
    ``vote_count_discrepancy`` and ``vote_counts``: real items are unanimous, and split, more
    often than it predicts. The levels of agreement (``mean_agreement``,
    ``pairwise_agreement``, ``unanimous_share``) also react to the prior: one that shrinks
    accurate annotators towards chance makes the replicates agree less than the data.

    Parameters
    ----------
    fit : fitted estimator or FitResult
        Of a Bayesian model.
    n_draws : int
    random_seed : int, numpy.random.Generator or None
    alpha : float
        Threshold of the ``flag`` column. Many statistics are checked at once: expect a few
        flags by chance, mostly among the per-annotator and per-bin rows.

    Returns
    -------
    pandas.DataFrame
        See :func:`check_table`.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> sim = cb.simulate_dawid_skene(n_items=30, n_annotators=4, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> table = predictive_check(fit, n_draws=20, random_seed=1)
    >>> float(table.set_index("check").loc["unanimous_share", "observed"])
    0.3
    >>> fit.datatree_["summary"]["ppp_value"].dims
    ('check',)
    """
    n_draws = _check_n_draws(n_draws)
    result, model = _result_and_model(fit)
    replicated = _posterior_replicates(result, model, n_draws, random_seed)
    table = check_table(replicated, result.data, alpha=alpha)
    tree = result.datatree
    tree["posterior_predictive"] = xr.DataTree(xr.Dataset({"label": replicated}))
    summary = tree["summary"].to_dataset()
    summary = summary.drop_vars(["ppp_value", "check"], errors="ignore")
    summary["ppp_value"] = xr.DataArray(
        table["ppp_value"].to_numpy(),
        dims="check",
        coords={"check": table["check"].to_numpy(dtype=object)},
    )
    summary["ppp_value"].attrs = {
        "description": "two-sided posterior predictive p-value, 2 min(P(T_rep >= T_obs), "
        "P(T_rep <= T_obs)), capped at 1",
        "n_draws": int(replicated.sizes["draw"]),
        "random_seed": int(replicated.attrs["random_seed"]),
    }
    tree["summary"] = xr.DataTree(summary)
    return table
