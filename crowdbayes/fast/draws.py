"""Label posteriors of the confusion-matrix models evaluated on many posterior draws at once.

For a draw of the prevalence :math:`\\pi` and confusion matrices :math:`\\theta`, item :math:`i`'s
joint with its true category is :math:`\\log \\pi_k + \\sum_r n_r \\log \\theta_{a_r, k, y_r}`
over its unique label rows; normalised over :math:`k` it is :math:`p(z_i = k \\mid y_i)` and its
log-sum-exp the item's log-likelihood. These numba kernels compute both from stored draws
(NumPy arrays in, nothing to compile per data set), in one pass over the rows per draw.
"""

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np

from crowdbayes.data import CompressedAnnotations

__all__ = ["label_joint_draws", "label_posterior_draws", "normalise_joint", "row_inputs"]


@numba.njit(cache=True, nogil=True)
def _item_sum_kernel(
    log_confusion: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    count: np.ndarray,
    item_starts: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    n_items = item_starts.shape[0] - 1
    k = log_confusion.shape[1]
    out = np.zeros((n_items, k))
    for i in range(n_items):
        for r in range(item_starts[i], item_starts[i + 1]):
            a = annotator[r]
            h = label[r]
            c = count[r]
            for t in range(k):
                out[i, t] += c * log_confusion[a, t, h]
    return out


@numba.njit(cache=True, nogil=True)
def _joint_draws_kernel(
    log_prevalence: np.ndarray,
    log_confusion: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    count: np.ndarray,
    item_starts: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    # log pi_k + sum_r count_r log theta[a_r, k, y_r] per sample: (sample, item, true_category)
    n_samples, k = log_prevalence.shape
    n_items = item_starts.shape[0] - 1
    out = np.empty((n_samples, n_items, k))
    for s in range(n_samples):
        item_sums = _item_sum_kernel(log_confusion[s], annotator, label, count, item_starts)
        for i in range(n_items):
            for t in range(k):
                out[s, i, t] = log_prevalence[s, t] + item_sums[i, t]
    return out


def label_joint_draws(
    log_prevalence: np.ndarray, log_confusion: np.ndarray, rows: CompressedAnnotations
) -> np.ndarray:
    """:math:`\\log \\pi_k + \\sum_r n_r \\log \\theta_{a_r, k, y_r}` per sample, item and category.

    The ``label_joint`` of a confusion-matrix model evaluated on many posterior samples at once
    (NumPy arrays in, no PyTensor function to compile).

    Parameters
    ----------
    log_prevalence : numpy.ndarray, shape (sample, true_category)
    log_confusion : numpy.ndarray, shape (sample, annotator, true_category, category)
    rows : CompressedAnnotations

    Returns
    -------
    numpy.ndarray, shape (sample, item, true_category)

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 2], "annotator": list("abb"),
    ...                                         "label": [0, 1, 1]}))
    >>> conf = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.4, 0.6]]])
    >>> joint = label_joint_draws(np.log([[0.5, 0.5]]), np.log(conf)[None], data.compressed)
    >>> np.exp(joint).round(3).tolist()  # item 1: 0.5 * 0.9 * 0.3, 0.5 * 0.2 * 0.6
    [[[0.135, 0.06], [0.15, 0.3]]]
    """
    return _joint_draws_kernel(
        np.ascontiguousarray(log_prevalence, dtype=np.float64),
        np.ascontiguousarray(log_confusion, dtype=np.float64),
        *row_inputs(rows),
    )


@numba.njit(nogil=True, inline="always")
def _normalise_item(
    joint: np.ndarray, out: np.ndarray, gold: int, k: int
) -> float:  # pragma: no cover - compiled
    """One item's log joint (k,) -> label probabilities in ``out`` (may be ``joint`` itself).

    Returns the item's log-likelihood. A gold item becomes a point mass and keeps its gold
    category's joint; an item impossible under every category (all -inf) gets uniform
    probabilities and log-likelihood -inf.
    """
    if gold >= 0:
        ll = joint[gold]
        for t in range(k):
            out[t] = 0.0
        out[gold] = 1.0
        return ll
    m = joint[0]
    for t in range(1, k):
        if joint[t] > m:
            m = joint[t]
    if m == -np.inf:
        for t in range(k):
            out[t] = 1.0 / k
        return -np.inf
    total = 0.0
    for t in range(k):
        e = np.exp(joint[t] - m)
        out[t] = e
        total += e
    for t in range(k):
        out[t] /= total
    return m + np.log(total)


@functools.cache
def _label_posterior_kernel_for(n_categories: int) -> Any:
    """:func:`label_joint_draws` and :func:`normalise_joint` in one pass, for ``n_categories``.

    Writes :math:`p(z_i = k \\mid y_i)` into ``probs`` and :math:`\\log p(y_i)` into ``item_ll``
    per sample, without the (sample, item, category) joint in between; the known number of
    categories lets LLVM unroll the loops over them (as in :func:`_marginal_kernel_for`).
    """
    k_fixed = int(n_categories)

    @numba.njit(cache=True, nogil=True)
    def label_posterior(  # type: ignore[no-untyped-def]
        log_prevalence, log_confusion, annotator, label, count, starts, gold, probs, item_ll
    ):  # pragma: no cover
        n_samples = log_prevalence.shape[0]
        n_items = starts.shape[0] - 1
        shape = log_confusion.shape
        if log_prevalence.shape[1] != k_fixed or shape[2] != k_fixed or shape[3] != k_fixed:
            raise ValueError("the draws have the wrong number of categories")
        joint = np.empty(k_fixed)
        for s in range(n_samples):
            log_theta = log_confusion[s]
            for i in range(n_items):
                for t in range(k_fixed):
                    joint[t] = log_prevalence[s, t]
                for r in range(starts[i], starts[i + 1]):
                    a = annotator[r]
                    h = label[r]
                    c = count[r]
                    for t in range(k_fixed):
                        joint[t] += c * log_theta[a, t, h]
                item_ll[s, i] = _normalise_item(joint, probs[s, i], gold[i], k_fixed)

    return label_posterior


#: Threads of :func:`label_posterior_draws` (the kernel releases the GIL).
_LABEL_THREADS = 4


def label_posterior_draws(
    log_prevalence: np.ndarray,
    log_confusion: np.ndarray,
    rows: CompressedAnnotations,
    gold: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Label probabilities and item log-likelihoods per sample from confusion-matrix draws.

    The same values as ``normalise_joint(label_joint_draws(...), gold)`` (probabilities, and
    the item log-likelihoods it returns), computed in one pass over the rows per sample, over
    up to four threads.

    Parameters
    ----------
    log_prevalence : numpy.ndarray, shape (sample, true_category)
    log_confusion : numpy.ndarray, shape (sample, annotator, true_category, category)
    rows : CompressedAnnotations
    gold : numpy.ndarray of int, shape (item,)
        Gold category code of each item, -1 where unknown: a gold item's probabilities are a
        point mass and its log-likelihood its gold category's joint.

    Returns
    -------
    probabilities : numpy.ndarray, shape (sample, item, true_category)
        :math:`p(z_i = k \\mid y_i)` per sample.
    item_log_likelihood : numpy.ndarray, shape (sample, item)
        :math:`\\log p(y_i)` per sample.

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 2], "annotator": list("abb"),
    ...                                         "label": [0, 1, 1]}))
    >>> conf = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.4, 0.6]]])
    >>> probs, ll = label_posterior_draws(np.log([[0.5, 0.5]]), np.log(conf)[None],
    ...                                   data.compressed, np.array([-1, -1]))
    >>> probs.round(3).tolist(), np.exp(ll).round(3).tolist()  # item 1: 0.135 vs 0.06
    ([[[0.692, 0.308], [0.333, 0.667]]], [[0.195, 0.45]])
    """
    log_prevalence = np.ascontiguousarray(log_prevalence, dtype=np.float64)
    log_confusion = np.ascontiguousarray(log_confusion, dtype=np.float64)
    n_samples, k = log_prevalence.shape
    inputs = [*row_inputs(rows), np.asarray(gold, dtype=np.int64)]
    n_items = len(inputs[3]) - 1
    probs = np.empty((n_samples, n_items, k))
    item_ll = np.empty((n_samples, n_items))
    kernel = _label_posterior_kernel_for(k)
    bounds = np.linspace(0, n_samples, min(_LABEL_THREADS, max(n_samples // 64, 1)) + 1)
    parts = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def run(part: slice) -> None:
        kernel(log_prevalence[part], log_confusion[part], *inputs, probs[part], item_ll[part])

    if len(parts) == 1:
        run(parts[0])
    else:
        with ThreadPoolExecutor(len(parts)) as pool:
            list(pool.map(run, parts))
    return probs, item_ll


@numba.njit(cache=True, nogil=True)
def _normalise_joint_kernel(joint: np.ndarray, gold: np.ndarray) -> np.ndarray:  # pragma: no cover
    n_samples, n_items, k = joint.shape
    item_ll = np.empty((n_samples, n_items))
    for s in range(n_samples):
        for i in range(n_items):
            item_ll[s, i] = _normalise_item(joint[s, i], joint[s, i], gold[i], k)
    return item_ll


def normalise_joint(joint: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Turn per-draw joints :math:`\\log p(z_i = k, y_i)` into label probabilities, in place.

    Parameters
    ----------
    joint : numpy.ndarray of float64, shape (sample, item, true_category)
        Overwritten with :math:`p(z_i = k \\mid y_i)`.
    gold : numpy.ndarray of int64, shape (item,)
        Gold category code, or -1. Gold items become a point mass and keep their gold
        category's joint as log-likelihood.

    Returns
    -------
    numpy.ndarray, shape (sample, item)
        Each item's log-likelihood :math:`\\log p(y_i)` (log-sum-exp of the joint).

    Examples
    --------
    >>> joint = np.log(np.array([[[0.1, 0.3], [0.2, 0.2]]]))
    >>> ll = normalise_joint(joint, np.array([-1, 1]))
    >>> joint.round(2).tolist(), np.exp(ll).round(2).tolist()
    ([[[0.25, 0.75], [0.0, 1.0]]], [[0.4, 0.2]])
    """
    if joint.dtype != np.float64 or not joint.flags.c_contiguous:
        raise ValueError("joint must be a C-contiguous float64 array")
    return _normalise_joint_kernel(joint, np.asarray(gold, dtype=np.int64))


def row_inputs(rows: CompressedAnnotations) -> list[np.ndarray]:
    """The kernels' row arrays: ``annotator``, ``label``, ``count`` and ``item_starts``.

    ``annotator`` and ``label`` are int64 codes, ``count`` float64, ``item_starts`` (int64) each
    item's first row, then the number of rows.

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 2], "annotator": list("abb"),
    ...                                         "label": [0, 1, 1]}))
    >>> [a.tolist() for a in row_inputs(data.compressed)]
    [[0, 1, 1], [0, 1, 1], [1.0, 1.0, 1.0], [0, 2, 3]]
    """
    starts = np.append(rows.item_starts, len(rows.item_index)).astype(np.int64)
    return [
        np.asarray(rows.annotator_index, dtype=np.int64),
        np.asarray(rows.label_index, dtype=np.int64),
        np.asarray(rows.count, dtype=np.float64),
        starts,
    ]
