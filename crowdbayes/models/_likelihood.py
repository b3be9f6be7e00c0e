"""The marginal likelihood shared by every confusion-matrix model, in PyTensor and in NumPy.

For item :math:`i` with labels :math:`y_{ir}` from annotators :math:`j_{ir}` (each unique row
weighted by its count :math:`n_{ir}`), the true category :math:`z_i` is summed out:

.. math::

    \\log p(y_i \\mid \\pi, \\theta) = \\log \\sum_{k} \\pi_k
        \\prod_r \\theta_{j_{ir}, k, y_{ir}}^{n_{ir}}

computed as a log-sum-exp over categories. An item with a gold label :math:`g_i` contributes the
single term :math:`k = g_i`. The per-row terms are gathered over the long format (one row per
unique label given) and summed per item; no items x annotators array is built.
"""

from collections.abc import Iterator

import numpy as np
import pytensor.tensor as pt

from crowdbayes.data import AnnotationData, CompressedAnnotations
from crowdbayes.models._kernels import label_joint_draws

__all__ = [
    "sum_rows_by_item",
    "marginal_from_joint",
    "item_category_log_likelihood",
    "marginal_log_likelihood",
    "label_log_posterior",
    "iter_label_log_posterior",
]


def sum_rows_by_item(terms: pt.TensorVariable, rows: CompressedAnnotations) -> pt.TensorVariable:
    """Sum per-row terms of shape (row, true_category), weighted by counts, per item (PyTensor).

    Parameters
    ----------
    terms : TensorVariable, shape (row, true_category)
        :math:`\\log p(y_r \\mid z = k)` for each unique row of ``rows``.
    rows : CompressedAnnotations

    Returns
    -------
    TensorVariable, shape (item, true_category)

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 2], "annotator": list("abb"),
    ...                                         "label": [0, 1, 1]}))
    >>> sum_rows_by_item(pt.ones((3, 2)), data.compressed).eval().tolist()
    [[2.0, 2.0], [1.0, 1.0]]
    """
    n_categories = terms.shape[1]
    terms = terms * rows.count[:, None].astype("float64")
    totals = pt.zeros((rows.n_items, n_categories))
    return pt.inc_subtensor(totals[rows.item_index], terms)


def marginal_from_joint(joint: pt.TensorVariable, data: AnnotationData) -> pt.TensorVariable:
    """Per-item log-likelihood from the joint :math:`\\log p(z_i = k, y_i)` (PyTensor).

    Free items sum the true category out (log-sum-exp); gold items keep their gold category's
    term.

    Parameters
    ----------
    joint : TensorVariable, shape (item, true_category)
    data : AnnotationData

    Returns
    -------
    TensorVariable, shape (item,)

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 2], "annotator": list("ab"),
    ...                                         "label": [0, 1]}))
    >>> marginal_from_joint(pt.as_tensor(np.log([[0.2, 0.3], [0.1, 0.1]])), data).exp().eval()
    array([0.5, 0.2])
    """
    gold = data.gold_index
    if not (gold >= 0).any():
        return pt.logsumexp(joint, axis=1)
    free = np.flatnonzero(gold < 0)
    known = np.flatnonzero(gold >= 0)
    out = pt.zeros(data.n_items)
    out = pt.set_subtensor(out[free], pt.logsumexp(joint[free], axis=1))
    return pt.set_subtensor(out[known], joint[known, gold[known]])


def item_category_log_likelihood(
    log_confusion: pt.TensorVariable, rows: CompressedAnnotations
) -> pt.TensorVariable:
    """Per item and true category, the log-probability of the item's labels (PyTensor).

    Parameters
    ----------
    log_confusion : TensorVariable, shape (annotator, true_category, category)
        Log confusion matrices.
    rows : CompressedAnnotations

    Returns
    -------
    TensorVariable, shape (item, true_category)
    """
    terms = log_confusion[rows.annotator_index, :, rows.label_index]  # (row, true_category)
    return sum_rows_by_item(terms, rows)


def marginal_log_likelihood(
    log_prevalence: pt.TensorVariable,
    log_confusion: pt.TensorVariable,
    data: AnnotationData,
    rows: CompressedAnnotations | None = None,
) -> pt.TensorVariable:
    """Per-item log-likelihood with the true category marginalised out (PyTensor).

    Parameters
    ----------
    log_prevalence : TensorVariable, shape (true_category,)
    log_confusion : TensorVariable, shape (annotator, true_category, category)
    data : AnnotationData
    rows : CompressedAnnotations, optional
        ``data.compressed`` when already computed.

    Returns
    -------
    TensorVariable, shape (item,)
        In item order; gold items contribute their gold category's joint term.
    """
    rows = data.compressed if rows is None else rows
    joint = log_prevalence[None, :] + item_category_log_likelihood(log_confusion, rows)
    return marginal_from_joint(joint, data)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    # NumPy's, not scipy.special.logsumexp: scipy's array-API checks touch ``jax`` in
    # sys.modules, which ArviZ registers as a lazy module, so the first call imports JAX
    # (1.3 s of a small fit) wherever the jax extra is installed
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(a - top), axis=axis)) + np.squeeze(top, axis=axis)


def label_log_posterior(
    log_prevalence: np.ndarray,
    log_confusion: np.ndarray,
    data: AnnotationData,
    rows: CompressedAnnotations | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Log posterior of each item's true category, and each item's log-likelihood, per draw.

    Parameters
    ----------
    log_prevalence : numpy.ndarray, shape (draw, true_category)
    log_confusion : numpy.ndarray, shape (draw, annotator, true_category, category)
    data : AnnotationData
    rows : CompressedAnnotations, optional

    Returns
    -------
    log_posterior : numpy.ndarray, shape (draw, item, true_category)
        :math:`\\log p(z_i = k \\mid y, \\pi, \\theta)` for each draw; gold items are a point mass.
    item_log_likelihood : numpy.ndarray, shape (draw, item)
        :math:`\\log p(y_i \\mid \\pi, \\theta)`, as in :func:`marginal_log_likelihood`.
    """
    rows = data.compressed if rows is None else rows
    joint = label_joint_draws(log_prevalence, log_confusion, rows)
    gold = data.gold_index
    known = np.flatnonzero(gold >= 0)
    if len(known):
        mask = np.zeros(joint.shape[1:])
        mask[known] = -np.inf
        mask[known, gold[known]] = 0.0
        joint = joint + mask[None]
    item_ll = _logsumexp(joint, axis=2)
    return joint - item_ll[..., None], item_ll


def iter_label_log_posterior(
    log_prevalence: np.ndarray,
    log_confusion: np.ndarray,
    data: AnnotationData,
    *,
    max_elements: int = 20_000_000,
) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Yield :func:`label_log_posterior` over chunks of draws, bounding memory.

    Parameters
    ----------
    log_prevalence : numpy.ndarray, shape (draw, true_category)
    log_confusion : numpy.ndarray, shape (draw, annotator, true_category, category)
    data : AnnotationData
    max_elements : int
        Upper bound on the number of float64 values in one chunk's largest array.

    Yields
    ------
    draws : slice
        Which draws this chunk covers.
    log_posterior, item_log_likelihood : numpy.ndarray
        As returned by :func:`label_log_posterior` for those draws.
    """
    rows = data.compressed
    n_draws = log_prevalence.shape[0]
    per_draw = max(len(rows.item_index), data.n_items) * data.n_categories
    chunk = max(1, min(n_draws, max_elements // max(per_draw, 1)))
    for start in range(0, n_draws, chunk):
        sl = slice(start, min(start + chunk, n_draws))
        log_post, item_ll = label_log_posterior(
            log_prevalence[sl], log_confusion[sl], data, rows=rows
        )
        yield sl, log_post, item_ll
