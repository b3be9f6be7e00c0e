"""Fused per-item sums of confusion-matrix log-probabilities: one PyTensor Op and its gradient.

Every confusion-matrix model (Dawid-Skene, hierarchical Dawid-Skene, class-conditional,
one-coin, MACE) needs, per item :math:`i` and true category :math:`k`,

.. math::

    J_{ik} = \\sum_{r \\in i} n_r \\, \\log \\theta_{a_r, k, y_r}

over the item's unique label rows :math:`r` (annotator :math:`a_r`, label :math:`y_r`, count
:math:`n_r`). Written with PyTensor's indexing, this is a two-index gather from the
(annotator, true_category, category) array followed by a scatter-add into (item,
true_category); its gradient is the reverse scatter and gather. Those general indexing Ops
dominate the cost of a log-density gradient (about 0.9 ms at 25k labels, 7x a single pass over
the rows). :class:`ConfusionItemSum` does the sum in one pass over the rows (they are sorted by
item), and :class:`ConfusionItemSumGrad` its exact gradient in another:

.. math::

    \\frac{\\partial L}{\\partial \\log \\theta_{j,k,h}} = \\sum_{r: a_r = j, y_r = h}
        n_r \\, \\frac{\\partial L}{\\partial J_{i(r), k}}.

Both have NumPy-free numba kernels (used by PyTensor's numba backend, which nutpie compiles,
and by ``perform`` in the other backends) and JAX implementations (for the ``numpyro`` and
``blackjax`` samplers; JAX differentiates those itself).

:class:`ConfusionMarginal`, the log-density term every confusion-matrix model's NUTS run
evaluates, fuses the sum, the log-sum-exp over true categories and the gradient into one pass,
and runs it in probability space (a rescaled running product per item, so no ``exp``/``log``
per item) with a kernel compiled for the data's number of categories (loops LLVM can unroll).
Items whose product would lose precision are redone in log space, so the result equals the
log-space computation to rounding. At 25k labels, K = 3, one evaluation went from 0.6-0.8 ms
(log space, any K) to 0.25-0.3 ms. Up to 12 categories the kernel is generated with one scalar
per category and checks for rescaling once per 4 rows of an item whose rows all have count one
(:func:`_fixed_marginal_source`): a third faster again on real data. The data (row indices,
counts, item offsets, each row's place in the probability table, which items have only count-one
rows) are Op *inputs*, not properties, so one compiled kernel serves every data set and numba's
on-disk cache is reused across fits. This is not a general autodiff: it is the
hand-derived gradient of one sum, checked against PyTensor's own gradient of the indexing form
in the tests.
"""

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_type, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import (
    register_funcify_and_cache_key,
    register_funcify_default_op_cache_key,
)

from crowdbayes.data import CompressedAnnotations
from crowdbayes.models._transforms import generated_function, source_version

__all__ = [
    "ConfusionItemSum",
    "ConfusionItemSumGrad",
    "ConfusionMarginal",
    "confusion_item_sum",
    "confusion_marginal_log_likelihood",
    "label_joint_draws",
    "label_posterior_draws",
    "marginal_row_inputs",
    "normalise_joint",
    "register_jax",
]


_SOURCE_VERSION = source_version(__file__)  # salt of the Ops' numba cache keys


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
        *_row_inputs(rows),
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
    inputs = [*_row_inputs(rows), np.asarray(gold, dtype=np.int64)]
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
def _item_sum_grad_kernel(
    output_grad: np.ndarray,
    log_confusion: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    count: np.ndarray,
    item_starts: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    n_items = item_starts.shape[0] - 1
    k = log_confusion.shape[1]
    grad = np.zeros(log_confusion.shape)
    for i in range(n_items):
        for r in range(item_starts[i], item_starts[i + 1]):
            a = annotator[r]
            h = label[r]
            c = count[r]
            for t in range(k):
                grad[a, t, h] += c * output_grad[i, t]
    return grad


@numba.njit(cache=True, nogil=True)
def _log_space_item(
    log_prevalence: np.ndarray,
    log_confusion: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    count: np.ndarray,
    start: int,
    stop: int,
    joint: np.ndarray,
) -> float:  # pragma: no cover - compiled
    """One item's log-likelihood in log space; ``joint`` receives its responsibilities."""
    k = log_prevalence.shape[0]
    for t in range(k):
        joint[t] = log_prevalence[t]
    for r in range(start, stop):
        a = annotator[r]
        h = label[r]
        c = count[r]
        for t in range(k):
            joint[t] += c * log_confusion[a, t, h]
    m = joint[0]
    for t in range(1, k):
        if joint[t] > m:
            m = joint[t]
    norm = 0.0
    for t in range(k):
        joint[t] = np.exp(joint[t] - m)
        norm += joint[t]
    for t in range(k):
        joint[t] /= norm  # p(z_i = t | y_i): the gradient of the item's term
    return m + np.log(norm)


@numba.njit(cache=True, nogil=True)
def _gold_item(
    log_prevalence: np.ndarray,
    log_confusion: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    count: np.ndarray,
    start: int,
    stop: int,
    gold: int,
    joint: np.ndarray,
) -> float:  # pragma: no cover - compiled
    """A gold item keeps its gold category's term; its responsibility is a point mass."""
    total = log_prevalence[gold]
    for r in range(start, stop):
        total += count[r] * log_confusion[annotator[r], gold, label[r]]
    for t in range(joint.shape[0]):
        joint[t] = 0.0
    joint[gold] = 1.0
    return total


@numba.njit(cache=True, nogil=True)
def _marginal_log_space_kernel(
    log_prevalence: np.ndarray,
    log_confusion: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    count: np.ndarray,
    item_starts: np.ndarray,
    gold: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The marginal kernel in log space: one log-sum-exp per item (the reference form)."""
    n_items = item_starts.shape[0] - 1
    k = log_prevalence.shape[0]
    total = 0.0
    grad_prevalence = np.zeros(k)
    grad_confusion = np.zeros(log_confusion.shape)
    joint = np.empty(k)
    for i in range(n_items):
        start, stop = item_starts[i], item_starts[i + 1]
        if gold[i] >= 0:
            total += _gold_item(
                log_prevalence, log_confusion, annotator, label, count, start, stop, gold[i], joint
            )
        else:
            total += _log_space_item(
                log_prevalence, log_confusion, annotator, label, count, start, stop, joint
            )
        for t in range(k):
            grad_prevalence[t] += joint[t]
        for r in range(start, stop):
            a = annotator[r]
            h = label[r]
            c = count[r]
            for t in range(k):
                grad_confusion[a, t, h] += c * joint[t]
    return np.asarray(total), grad_prevalence, grad_confusion


#: Smallest positive normal float64: a scaled product below it has lost precision.
_TINY = float(np.finfo(np.float64).tiny)


@numba.njit(nogil=True, inline="always")
def _marginal_body(
    log_prevalence: np.ndarray,
    log_confusion: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    count: np.ndarray,
    item_starts: np.ndarray,
    gold: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The marginal kernel in probability space (see :func:`_marginal_kernel_for`).

    Per item, the joint :math:`\\pi_k \\prod_r \\theta_{a_r,k,y_r}^{n_r}` is a running
    product of probabilities, rescaled (and the scale's log kept) whenever its largest entry
    leaves [1e-150, 1e150]; the item norms are multiplied and their log taken only when that
    product leaves [1e-200, 1e200]. This needs no ``exp`` or ``log`` per item, which is most
    of the cost of the log-space form. Every probability is at most one, so an entry can only
    fall below the smallest normal float (losing precision) and never come back without a
    rescale: such items (and every item when some log-probability is positive) are computed
    in log space instead, so the result equals the log-space kernel to rounding.
    (The prevalence is scaled by its largest entry, so it may be unnormalised.)
    """
    n_items = item_starts.shape[0] - 1
    n_annotators = log_confusion.shape[0]
    grad_prevalence = np.zeros(k)
    joint = np.empty(k)
    if np.max(log_confusion) > 0.0:  # not probabilities: the scaled product could overflow
        return _marginal_log_space_kernel(
            log_prevalence, log_confusion, annotator, label, count, item_starts, gold
        )
    # theta[a, h, t]: the k true categories of one (annotator, label) pair are contiguous
    theta = np.empty((n_annotators, k, k))
    for a in range(n_annotators):
        for t in range(k):
            for h in range(k):
                theta[a, h, t] = np.exp(log_confusion[a, t, h])
    top = log_prevalence[0]
    for t in range(1, k):
        if log_prevalence[t] > top:
            top = log_prevalence[t]
    prevalence = np.empty(k)
    for t in range(k):
        prevalence[t] = np.exp(log_prevalence[t] - top)
    grad_theta = np.zeros((n_annotators, k, k))
    total = 0.0
    norms = 1.0
    for i in range(n_items):
        start, stop = item_starts[i], item_starts[i + 1]
        g = gold[i]
        if g >= 0:
            total += _gold_item(
                log_prevalence, log_confusion, annotator, label, count, start, stop, g, joint
            )
        else:
            offset = top  # the log of the scale the product carries
            for t in range(k):
                joint[t] = prevalence[t]
            for r in range(start, stop):
                a = annotator[r]
                h = label[r]
                c = count[r]
                if c == 1.0:
                    for t in range(k):
                        joint[t] *= theta[a, h, t]
                else:
                    for t in range(k):
                        joint[t] *= np.exp(c * log_confusion[a, t, h])
                m = joint[0]
                for t in range(1, k):
                    m = max(m, joint[t])
                if m < 1e-150:
                    lowest = joint[0]
                    for t in range(1, k):
                        lowest = min(lowest, joint[t])
                    if not lowest >= _TINY:
                        break  # precision lost (or nan): the log-space pass below redoes it
                    scale = 1.0 / m
                    for t in range(k):
                        joint[t] *= scale
                    offset += np.log(m)
            lowest = joint[0]
            for t in range(1, k):
                lowest = min(lowest, joint[t])
            if lowest >= _TINY:
                total += offset
                norm = 0.0
                for t in range(k):
                    norm += joint[t]
                if norm < 1e-100:
                    total += np.log(norm)
                else:
                    norms *= norm
                    if norms < 1e-200 or norms > 1e200:
                        total += np.log(norms)
                        norms = 1.0
                scale = 1.0 / norm
                for t in range(k):
                    joint[t] *= scale  # p(z_i = t | y_i): the gradient of the item's term
            else:
                total += _log_space_item(
                    log_prevalence, log_confusion, annotator, label, count, start, stop, joint
                )
        for t in range(k):
            grad_prevalence[t] += joint[t]
        for r in range(start, stop):
            a = annotator[r]
            h = label[r]
            c = count[r]
            for t in range(k):
                grad_theta[a, h, t] += c * joint[t]
    total += np.log(norms)
    grad_confusion = np.empty((n_annotators, k, k))
    for a in range(n_annotators):
        for t in range(k):
            for h in range(k):
                grad_confusion[a, t, h] = grad_theta[a, h, t]
    return np.asarray(total), grad_prevalence, grad_confusion


#: Largest number of categories with a generated kernel (:func:`_fixed_marginal_source`).
_MAX_GENERATED_CATEGORIES = 12
#: Rows of a unit-count item multiplied between two rescaling checks in the generated kernel.
_BLOCK = 4


def _fixed_marginal_source(k: int) -> str:
    """Source of the marginal kernel for ``k`` categories, each one a scalar variable.

    The same computation as :func:`_marginal_body`, with two changes that take a third off its
    time on real data (rte, sp_amt: 53-60 -> 38-40 us): the per-category products are scalars
    (registers) instead of a heap array, and an item whose rows all have count one multiplies
    ``_BLOCK`` rows between rescaling checks, reading each row's offset into the
    (annotator, label, true category) table from ``cell``. When every confusion entry is at
    least 1e-30 this cannot take the largest entry from 1e-150 below the smallest normal
    float; an entry that loses precision in a block is still caught at its end (entries only
    shrink), and the item is redone in log space as in :func:`_marginal_body`.
    """
    ts = range(k)

    def each(template: str, indent: int) -> list[str]:
        return [" " * indent + template.format(t=t) for t in ts]

    def rescale(indent: int) -> list[str]:
        pad = " " * indent
        return [
            f"{pad}m = max({', '.join(f'j{t}' for t in ts)})",
            f"{pad}if m < 1e-150:",
            f"{pad}    lowest = min({', '.join(f'j{t}' for t in ts)})",
            f"{pad}    if not lowest >= _TINY:",
            f"{pad}        lost = True",
            f"{pad}        break",
            f"{pad}    scale = 1.0 / m",
            *each("    j{t} *= scale", indent),
            f"{pad}    offset += np.log(m)",
        ]

    lines = [
        f"def marginal_k{k}(",
        "    log_prevalence, log_confusion, annotator, label, count, starts, gold, cell, unit",
        "):",
        f"    if log_prevalence.shape[0] != {k} or log_confusion.shape[2] != {k}:",
        "        raise ValueError('log_prevalence has the wrong number of categories')",
        "    if np.max(log_confusion) > 0.0:",
        "        return _marginal_log_space_kernel(",
        "            log_prevalence, log_confusion, annotator, label, count, starts, gold",
        "        )",
        "    n_items = starts.shape[0] - 1",
        "    n_annotators = log_confusion.shape[0]",
        f"    theta = np.empty(n_annotators * {k * k})",
        "    smallest = 1.0",
        "    for a in range(n_annotators):",
        f"        for t in range({k}):",
        f"            for h in range({k}):",
        "                value = np.exp(log_confusion[a, t, h])",
        f"                theta[(a * {k} + h) * {k} + t] = value",
        "                smallest = min(smallest, value)",
        "    blocks = smallest >= 1e-30",
        f"    grad_theta = np.zeros(n_annotators * {k * k})",
        f"    joint = np.empty({k})",
        "    top = log_prevalence[0]",
        *[f"    top = max(top, log_prevalence[{t}])" for t in range(1, k)],
        *each("p{t} = np.exp(log_prevalence[{t}] - top)", 4),
        *each("g{t} = 0.0", 4),
        "    total = 0.0",
        "    norms = 1.0",
        "    for i in range(n_items):",
        "        start = starts[i]",
        "        stop = starts[i + 1]",
        "        done = False",
        "        if gold[i] < 0:",
        "            offset = top",
        *each("j{t} = p{t}", 12),
        "            lost = False",
        "            if blocks and unit[i]:",
        "                r = start",
        "                while r < stop:",
        f"                    end = min(r + {_BLOCK}, stop)",
        "                    for u in range(r, end):",
        f"                        b = cell[u] * {k}",
        *each("j{t} *= theta[b + {t}]", 24),
        "                    r = end",
        *rescale(20),
        "            else:",
        "                for r in range(start, stop):",
        f"                    b = cell[r] * {k}",
        "                    c = count[r]",
        "                    if c == 1.0:",
        *each("j{t} *= theta[b + {t}]", 24),
        "                    else:",
        *each("j{t} *= np.exp(c * log_confusion[annotator[r], {t}, label[r]])", 24),
        *rescale(20),
        f"            lowest = min({', '.join(f'j{t}' for t in ts)})",
        "            if not lost and lowest >= _TINY:",
        "                total += offset",
        f"                norm = {' + '.join(f'j{t}' for t in ts)}",
        "                if norm < 1e-100:",
        "                    total += np.log(norm)",
        "                else:",
        "                    norms *= norm",
        "                    if norms < 1e-200 or norms > 1e200:",
        "                        total += np.log(norms)",
        "                        norms = 1.0",
        "                scale = 1.0 / norm",
        *each("w{t} = j{t} * scale", 16),
        "                done = True",
        "        if not done:",
        "            if gold[i] >= 0:",
        "                total += _gold_item(",
        "                    log_prevalence, log_confusion, annotator, label, count, start, stop,",
        "                    gold[i], joint,",
        "                )",
        "            else:",
        "                total += _log_space_item(",
        "                    log_prevalence, log_confusion, annotator, label, count, start, stop,",
        "                    joint,",
        "                )",
        *each("w{t} = joint[{t}]", 12),
        *each("g{t} += w{t}", 8),
        "        for r in range(start, stop):",
        f"            b = cell[r] * {k}",
        "            c = count[r]",
        *each("grad_theta[b + {t}] += c * w{t}", 12),
        "    total += np.log(norms)",
        f"    grad_prevalence = np.empty({k})",
        *each("grad_prevalence[{t}] = g{t}", 4),
        f"    grad_confusion = np.empty((n_annotators, {k}, {k}))",
        "    for a in range(n_annotators):",
        f"        for t in range({k}):",
        f"            for h in range({k}):",
        f"                grad_confusion[a, t, h] = grad_theta[(a * {k} + h) * {k} + t]",
        "    return np.asarray(total), grad_prevalence, grad_confusion",
    ]
    return "\n".join(lines) + "\n"


@functools.cache
def _marginal_kernel_for(n_categories: int | None) -> Any:
    """The marginal kernel compiled for ``n_categories`` categories (None: any number).

    A known number of categories lets LLVM unroll and vectorise the loops over categories,
    which more than halves the kernel's time for the usual 2-10 categories (measured in
    ``benchmarks/SPEED.md``). Up to ``_MAX_GENERATED_CATEGORIES`` the kernel is generated
    (:func:`_fixed_marginal_source`) and cached on disk by numba under a key of its source;
    above, it is :func:`_marginal_body` with the number fixed (the closure's value is part of
    numba's cache key). Arguments: those of :class:`ConfusionMarginal`.
    """
    if n_categories is None:

        @numba.njit(cache=True, nogil=True)
        def marginal_any(  # type: ignore[no-untyped-def]
            log_prevalence, log_confusion, annotator, label, count, starts, gold, cell, unit
        ):  # pragma: no cover
            k = log_prevalence.shape[0]
            return _marginal_body(
                log_prevalence, log_confusion, annotator, label, count, starts, gold, k
            )

        return marginal_any
    k_fixed = int(n_categories)
    if 2 <= k_fixed <= _MAX_GENERATED_CATEGORIES:  # (max() of the scalars needs two)
        py_func = generated_function(
            _fixed_marginal_source(k_fixed),
            f"marginal_k{k_fixed}",
            {
                "__name__": __name__,
                "np": np,
                "_TINY": _TINY,
                "_gold_item": _gold_item,
                "_log_space_item": _log_space_item,
                "_marginal_log_space_kernel": _marginal_log_space_kernel,
            },
            salt=f"marginal|{_SOURCE_VERSION}",
        )
        return numba.njit(cache=True, nogil=True)(py_func)

    @numba.njit(cache=True, nogil=True)
    def marginal_fixed(  # type: ignore[no-untyped-def]
        log_prevalence, log_confusion, annotator, label, count, starts, gold, cell, unit
    ):  # pragma: no cover
        if log_prevalence.shape[0] != k_fixed:
            raise ValueError("log_prevalence has the wrong number of categories")
        return _marginal_body(
            log_prevalence, log_confusion, annotator, label, count, starts, gold, k_fixed
        )

    return marginal_fixed


def marginal_row_inputs(
    rows: CompressedAnnotations, n_categories: int, gold: np.ndarray
) -> list[np.ndarray]:
    """The data inputs of :class:`ConfusionMarginal`, after its two log-probability arrays.

    ``annotator``, ``label``, ``count``, ``item_starts`` (as :class:`ConfusionItemSum`),
    ``gold`` (int64, -1 where unknown), then ``cell``: each row's annotator x
    ``n_categories`` + label (its place in the kernel's probability table), and ``unit``: 1
    for each item whose rows all have count one (int8).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 1, 2], "annotator": list("abbb"),
    ...                                         "label": [0, 1, 1, 1]}))
    >>> *_, cell, unit = marginal_row_inputs(data.compressed, 2, np.array([-1, -1]))
    >>> cell.tolist(), unit.tolist()  # item 1: b gave label 1 twice (one row, count 2)
    ([0, 3, 3], [0, 1])
    """
    annotator, label, count, starts = _row_inputs(rows)
    cell = annotator * int(n_categories) + label
    repeated = np.zeros(len(starts) - 1, dtype=np.int64)
    if len(count):
        repeated = np.add.reduceat((count != 1.0).astype(np.int64), starts[:-1])
    unit = (repeated == 0).astype(np.int8)
    return [annotator, label, count, starts, np.asarray(gold, dtype=np.int64), cell, unit]


def _marginal_kernel(
    log_prevalence: np.ndarray,
    log_confusion: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    count: np.ndarray,
    item_starts: np.ndarray,
    gold: np.ndarray,
    cell: np.ndarray,
    unit: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Total marginal log-likelihood and its gradients (see :class:`ConfusionMarginal`)."""
    kernel = _marginal_kernel_for(int(log_prevalence.shape[0]))
    return kernel(
        log_prevalence, log_confusion, annotator, label, count, item_starts, gold, cell, unit
    )


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


def _check_inputs(*inputs: Any) -> list[pt.TensorVariable]:
    log_confusion, annotator, label, count, item_starts = (pt.as_tensor_variable(x) for x in inputs)
    if log_confusion.ndim != 3 or log_confusion.dtype != "float64":
        raise TypeError("log_confusion must be float64, shape (annotator, true_category, category)")
    for name, var in (("annotator", annotator), ("label", label), ("item_starts", item_starts)):
        if var.ndim != 1 or var.dtype != "int64":
            raise TypeError(f"{name} must be a 1-d int64 array")
    if count.ndim != 1 or count.dtype != "float64":
        raise TypeError("count must be a 1-d float64 array")
    return [log_confusion, annotator, label, count, item_starts]


class ConfusionItemSum(Op):
    """Per item and true category, the count-weighted sum of its rows' log confusion entries.

    Inputs: ``log_confusion`` (annotator, true_category, category) float64; ``annotator``,
    ``label`` (row,) int64; ``count`` (row,) float64; ``item_starts`` (item + 1,) int64, the
    offset of each item's first row and the number of rows last (rows sorted by item). Output:
    (item, true_category) float64. Use :func:`confusion_item_sum`.
    """

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:
        checked = _check_inputs(*inputs)
        k = checked[0].type.shape[1]
        out = pt.tensor(dtype="float64", shape=(None, k))
        return Apply(self, checked, [out])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        outputs[0][0] = _item_sum_kernel(*inputs)

    def infer_shape(self, node: Apply, shapes: list[Any]) -> list[Any]:
        return [(shapes[4][0] - 1, shapes[0][1])]

    def connection_pattern(self, node: Apply) -> list[list[bool]]:
        return [[True], [False], [False], [False], [False]]

    def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
        log_confusion, *rest = inputs
        grad = ConfusionItemSumGrad()(cotangents[0], log_confusion, *rest)
        return [grad] + [disconnected_type() for _ in rest]


class ConfusionItemSumGrad(Op):
    """Gradient of :class:`ConfusionItemSum` with respect to ``log_confusion``.

    Inputs: the output gradient (item, true_category), then the inputs of
    :class:`ConfusionItemSum`. Output: (annotator, true_category, category). Not differentiable
    again (NUTS needs first derivatives only).
    """

    __props__ = ()

    def make_node(self, output_grad: Any, *inputs: Any) -> Apply:  # type: ignore[override]
        checked = _check_inputs(*inputs)
        output_grad = pt.as_tensor_variable(output_grad).astype("float64")
        return Apply(self, [output_grad, *checked], [checked[0].type()])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        outputs[0][0] = _item_sum_grad_kernel(*inputs)

    def infer_shape(self, node: Apply, shapes: list[Any]) -> list[Any]:
        return [shapes[1]]

    def connection_pattern(self, node: Apply) -> list[list[bool]]:
        return [[True], [True], [False], [False], [False], [False]]

    def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
        return [
            grad_not_implemented(self, 0, inputs[0]),
            grad_not_implemented(self, 1, inputs[1]),
        ] + [disconnected_type() for _ in inputs[2:]]


class ConfusionMarginal(Op):
    """Total marginal log-likelihood of a confusion-matrix model and its gradient, in one pass.

    Inputs: ``log_prevalence`` (true_category,), then the inputs of :class:`ConfusionItemSum`,
    then ``gold`` (item,) int64 (gold category code or -1), ``cell`` (row,) int64 and
    ``unit`` (item,) int8 (see :func:`marginal_row_inputs`). Outputs: the scalar
    :math:`\\sum_i \\log \\sum_k \\pi_k \\prod_r \\theta_{a_r,k,y_r}^{n_r}` (gold items:
    their gold term), and its gradients with respect to ``log_prevalence`` and
    ``log_confusion`` (the posterior responsibilities summed per item and per row). The
    gradient of the first output is read off the other two, so a log-density-and-gradient
    evaluation runs the kernel once.
    """

    __props__ = ()

    def make_node(self, log_prevalence: Any, *inputs: Any) -> Apply:  # type: ignore[override]
        *rest, gold, cell, unit = inputs
        checked = _check_inputs(*rest)
        log_prevalence = pt.as_tensor_variable(log_prevalence)
        gold, cell, unit = (pt.as_tensor_variable(x) for x in (gold, cell, unit))
        if log_prevalence.ndim != 1 or log_prevalence.dtype != "float64":
            raise TypeError("log_prevalence must be a 1-d float64 array")
        for name, var, dtype in (
            ("gold", gold, "int64"),
            ("cell", cell, "int64"),
            ("unit", unit, "int8"),
        ):
            if var.ndim != 1 or var.dtype != dtype:
                raise TypeError(f"{name} must be a 1-d {dtype} array")
        outputs = [pt.scalar(dtype="float64"), log_prevalence.type(), checked[0].type()]
        return Apply(self, [log_prevalence, *checked, gold, cell, unit], outputs)

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        for store, value in zip(outputs, _marginal_kernel(*inputs), strict=True):
            store[0] = value

    def infer_shape(self, node: Apply, shapes: list[Any]) -> list[Any]:
        return [(), shapes[0], shapes[1]]

    def connection_pattern(self, node: Apply) -> list[list[bool]]:
        return [[True, True, True], [True, True, True]] + [[False] * 3] * 7

    def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
        from pytensor.gradient import DisconnectedType

        for g in cotangents[1:]:
            if not isinstance(g.type, DisconnectedType):
                raise NotImplementedError("second derivatives of ConfusionMarginal")
        _, grad_prevalence, grad_confusion = outputs
        g = cotangents[0]
        return [g * grad_prevalence, g * grad_confusion] + [disconnected_type() for _ in range(7)]


@register_funcify_and_cache_key(ConfusionMarginal)
def _numba_marginal(op: Op, node: Apply | None = None, **kwargs: Any) -> tuple[Any, str]:
    # the number of categories is the static length of log_prevalence, when the graph knows it
    k = None if node is None else node.inputs[0].type.shape[0]
    return _marginal_kernel_for(k), f"crowdbayes.ConfusionMarginal.{_SOURCE_VERSION:x}.k={k}"


@register_funcify_default_op_cache_key(ConfusionItemSum)
def _numba_item_sum(op: Op, node: Apply | None = None, **kwargs: Any) -> Any:
    return _item_sum_kernel, _SOURCE_VERSION


@register_funcify_default_op_cache_key(ConfusionItemSumGrad)
def _numba_item_sum_grad(op: Op, node: Apply | None = None, **kwargs: Any) -> Any:
    return _item_sum_grad_kernel, _SOURCE_VERSION


def confusion_item_sum(
    log_confusion: pt.TensorVariable, rows: CompressedAnnotations, n_annotators: int
) -> pt.TensorVariable:
    """Per item and true category, :math:`\\sum_r n_r \\log \\theta_{a_r, k, y_r}` (PyTensor).

    Parameters
    ----------
    log_confusion : TensorVariable
        Log confusion matrices, shape (annotator, true_category, category), or any shape that
        broadcasts to it (for example one matrix shared by every annotator).
    rows : CompressedAnnotations
        Unique label rows sorted by item, with counts.
    n_annotators : int
        Number of annotators (``log_confusion`` is broadcast to it).

    Returns
    -------
    TensorVariable, shape (item, true_category)

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 2], "annotator": list("abb"),
    ...                                         "label": [0, 1, 1]}))
    >>> conf = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.4, 0.6]]])
    >>> out = confusion_item_sum(pt.as_tensor(np.log(conf)), data.compressed, 2).eval()
    >>> np.exp(out).round(3).tolist()  # item 1: 0.9 * 0.3 and 0.2 * 0.6; item 2: 0.3 and 0.6
    [[0.27, 0.12], [0.3, 0.6]]
    """
    out = ConfusionItemSum()(_broadcast_confusion(log_confusion, n_annotators), *_row_inputs(rows))
    return cast(pt.TensorVariable, out)


def _broadcast_confusion(log_confusion: Any, n_annotators: int) -> pt.TensorVariable:
    log_confusion = pt.as_tensor_variable(log_confusion).astype("float64")
    if log_confusion.ndim > 3:
        raise ValueError("log_confusion must have at most 3 dimensions")
    if log_confusion.ndim < 3 or log_confusion.type.shape[0] != n_annotators:
        k_true, k = log_confusion.shape[-2], log_confusion.shape[-1]
        log_confusion = pt.broadcast_to(log_confusion, (n_annotators, k_true, k))
    return log_confusion


def _row_inputs(rows: CompressedAnnotations) -> list[np.ndarray]:
    starts = np.append(rows.item_starts, len(rows.item_index)).astype(np.int64)
    return [
        np.asarray(rows.annotator_index, dtype=np.int64),
        np.asarray(rows.label_index, dtype=np.int64),
        np.asarray(rows.count, dtype=np.float64),
        starts,
    ]


def confusion_marginal_log_likelihood(
    log_prevalence: pt.TensorVariable,
    log_confusion: pt.TensorVariable,
    rows: CompressedAnnotations,
    n_annotators: int,
    gold: np.ndarray,
    n_categories: int | None = None,
) -> pt.TensorVariable:
    """Sum over items of the marginal log-likelihood, fused with its gradient (PyTensor).

    Equal to ``marginal_from_joint(log_prevalence + confusion_item_sum(...), data).sum()``.

    Parameters
    ----------
    log_prevalence : TensorVariable, shape (true_category,)
    log_confusion : TensorVariable
        Shape (annotator, true_category, category) or broadcastable to it.
    rows : CompressedAnnotations
    n_annotators : int
    gold : numpy.ndarray of int, shape (item,)
        Gold category code of each item, -1 where unknown.
    n_categories : int, optional
        Default: the static last dimension of ``log_confusion``.

    Returns
    -------
    TensorVariable, scalar

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 2], "annotator": list("abb"),
    ...                                         "label": [0, 1, 1]}))
    >>> conf = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.4, 0.6]]])
    >>> ll = confusion_marginal_log_likelihood(pt.as_tensor(np.log([0.5, 0.5])),
    ...     pt.as_tensor(np.log(conf)), data.compressed, 2, np.array([-1, -1]))
    >>> round(float(np.exp(ll.eval())), 6)  # (0.5 * 0.27 + 0.5 * 0.12) * (0.5 * 0.3 + 0.5 * 0.6)
    0.08775
    """
    log_confusion = _broadcast_confusion(log_confusion, n_annotators)
    log_prevalence = pt.as_tensor_variable(log_prevalence).astype("float64")
    if n_categories is None:
        n_categories = log_confusion.type.shape[-1]
    if n_categories is None:
        raise ValueError("n_categories is needed when log_confusion's shape is not static")
    outputs = ConfusionMarginal()(
        log_prevalence, log_confusion, *marginal_row_inputs(rows, n_categories, gold)
    )
    return cast(pt.TensorVariable, cast(list, outputs)[0])


_JAX_REGISTERED = False


def register_jax() -> None:
    """Give the Ops here and in ``_transforms`` JAX implementations (``numpyro``, ``blackjax``).

    Called by :func:`crowdbayes.inference.sample_posterior` before a JAX sampler compiles the
    model; importing JAX only then keeps ``import crowdbayes`` light.
    """
    global _JAX_REGISTERED
    if _JAX_REGISTERED:
        return
    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    def item_sum(log_confusion: Any, annotator: Any, label: Any, count: Any, starts: Any) -> Any:
        n_items = starts.shape[0] - 1
        item = jnp.searchsorted(starts, jnp.arange(annotator.shape[0]), side="right") - 1
        terms = log_confusion[annotator, :, label] * count[:, None]
        return jax.ops.segment_sum(terms, item, num_segments=n_items, indices_are_sorted=True)

    @jax_funcify.register(ConfusionItemSum)
    def _jax_item_sum(op: Op, **kwargs: Any) -> Any:
        return item_sum

    def marginal(log_prevalence: Any, log_confusion: Any, *rest: Any) -> Any:
        *rows, gold = rest[:5]  # cell and unit speed up the numba kernel only
        joint = log_prevalence[None, :] + item_sum(log_confusion, *rows)
        free = jax.nn.logsumexp(joint, axis=1)
        known = jnp.take_along_axis(joint, jnp.maximum(gold, 0)[:, None], axis=1)[:, 0]
        return jnp.where(gold >= 0, known, free).sum()

    @jax_funcify.register(ConfusionMarginal)
    def _jax_marginal(op: Op, **kwargs: Any) -> Any:
        def value_and_grads(log_prevalence: Any, log_confusion: Any, *rest: Any) -> Any:
            value, grads = jax.value_and_grad(marginal, argnums=(0, 1))(
                log_prevalence, log_confusion, *rest
            )
            return value, grads[0], grads[1]

        return value_and_grads

    @jax_funcify.register(ConfusionItemSumGrad)
    def _jax_item_sum_grad(op: Op, **kwargs: Any) -> Any:
        def grad(output_grad: Any, log_confusion: Any, *rest: Any) -> Any:
            _, vjp = jax.vjp(lambda lc: item_sum(lc, *rest), log_confusion)
            return vjp(output_grad)[0]

        return grad

    from crowdbayes.models._transforms import register_jax as register_transforms_jax

    register_transforms_jax()
    _JAX_REGISTERED = True
