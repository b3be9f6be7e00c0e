"""The fused marginal likelihood of the confusion-matrix models: one numba pass, value and gradient.

Every confusion-matrix model's likelihood is, per item :math:`i` with unique label rows :math:`r`
(annotator :math:`a_r`, label :math:`y_r`, count :math:`n_r`),

.. math::

    \\log p(y_i) = \\log \\sum_k \\pi_k \\prod_r \\theta_{a_r, k, y_r}^{n_r}

(gold items keep their gold category's term). The models state it in PyTensor
(:class:`crowdbayes.models._shared.ConfusionMixture`); under the numba backend
:mod:`crowdbayes.fast.rewrites` replaces its sum over items and that sum's gradient with
:func:`marginal_log_likelihood`, which returns the total and its gradients with respect to the
log prevalence and the log confusion in one pass over the rows (the gradients are the posterior
responsibilities :math:`p(z_i = k \\mid y_i)`, summed per category and per row).

The pass runs in probability space: per item a running product of probabilities, rescaled (and
the scale's log kept) when its largest entry falls below 1e-150, so no ``exp`` or ``log`` is
needed per item. An item whose product loses precision (an entry below the smallest normal
float), and every item when a log-probability is positive, is redone in log space
(:func:`_log_space_item`), so the result equals the log-space computation to rounding. For 2 to
``_MAX_GENERATED_CATEGORIES`` categories the kernel is generated with one scalar per category
(:func:`_fixed_marginal_source`); otherwise the log-space kernel runs. This is the hand-derived
gradient of one sum, checked against PyTensor's gradient of the reference graph in the tests,
not a general autodiff.
"""

import functools
from typing import Any

import numba
import numpy as np

from crowdbayes.data import CompressedAnnotations
from crowdbayes.fast.codegen import generated_function, source_version
from crowdbayes.fast.draws import row_inputs

__all__ = ["marginal_log_likelihood", "marginal_row_inputs"]

_SOURCE_VERSION = source_version(__file__)  # salt of the generated kernels' cache keys


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
    cell: np.ndarray,
    unit: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The marginal kernel in log space: one log-sum-exp per item (the reference form).

    Takes the generated kernels' arguments; ``cell`` and ``unit`` are not needed here.
    """
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

#: Largest number of categories with a generated kernel (:func:`_fixed_marginal_source`).
_MAX_GENERATED_CATEGORIES = 12
#: Rows of a unit-count item multiplied between two rescaling checks in the generated kernel.
_BLOCK = 4


def _fixed_marginal_source(k: int) -> str:
    """Source of the marginal kernel for ``k`` categories, each one a scalar variable.

    The per-category products are scalars (registers), and an item whose rows all have count
    one multiplies ``_BLOCK`` rows between rescaling checks, reading each row's offset into the
    (annotator, label, true category) probability table from ``cell``. When every confusion
    entry is at least 1e-30 a block cannot take the largest entry from 1e-150 below the
    smallest normal float; an entry that loses precision in a block is still caught at its end
    (entries only shrink), and the item is redone in log space.
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
        "            log_prevalence, log_confusion, annotator, label, count, starts, gold,",
        "            cell, unit,",
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
def _marginal_kernel_for(n_categories: int) -> Any:
    """The marginal kernel for ``n_categories`` categories (:func:`marginal_log_likelihood`).

    From 2 to ``_MAX_GENERATED_CATEGORIES`` categories the kernel is generated
    (:func:`_fixed_marginal_source`) and cached on disk by numba under a key of its source; a
    known number of categories lets LLVM unroll the loops over them. Otherwise the log-space
    kernel runs.
    """
    k = int(n_categories)
    if not 2 <= k <= _MAX_GENERATED_CATEGORIES:
        return _marginal_log_space_kernel
    py_func = generated_function(
        _fixed_marginal_source(k),
        f"marginal_k{k}",
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


def marginal_row_inputs(
    rows: CompressedAnnotations, n_categories: int, gold: np.ndarray
) -> list[np.ndarray]:
    """The data arguments of :func:`marginal_log_likelihood`, after its two log arrays.

    ``annotator``, ``label``, ``count``, ``item_starts`` (see
    :func:`~crowdbayes.fast.draws.row_inputs`),
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
    annotator, label, count, starts = row_inputs(rows)
    cell = annotator * int(n_categories) + label
    repeated = np.zeros(len(starts) - 1, dtype=np.int64)
    if len(count):
        repeated = np.add.reduceat((count != 1.0).astype(np.int64), starts[:-1])
    unit = (repeated == 0).astype(np.int8)
    return [annotator, label, count, starts, np.asarray(gold, dtype=np.int64), cell, unit]


def marginal_log_likelihood(
    log_prevalence: np.ndarray, log_confusion: np.ndarray, *rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Total marginal log-likelihood and its gradients with respect to both log arrays.

    Parameters
    ----------
    log_prevalence : numpy.ndarray, shape (true_category,)
    log_confusion : numpy.ndarray, shape (annotator, true_category, category)
    *rows : numpy.ndarray
        ``annotator, label, count, item_starts, gold, cell, unit``, from
        :func:`marginal_row_inputs`.

    Returns
    -------
    total : numpy.ndarray, shape ()
    grad_prevalence : numpy.ndarray, shape (true_category,)
    grad_confusion : numpy.ndarray, shape (annotator, true_category, category)

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 2], "annotator": list("abb"),
    ...                                         "label": [0, 1, 1]}))
    >>> conf = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.4, 0.6]]])
    >>> rows = marginal_row_inputs(data.compressed, 2, np.array([-1, -1]))
    >>> total, _, _ = marginal_log_likelihood(np.log([0.5, 0.5]), np.log(conf), *rows)
    >>> round(float(np.exp(total)), 6)  # (0.5 * 0.27 + 0.5 * 0.12) * (0.5 * 0.3 + 0.5 * 0.6)
    0.08775
    """
    kernel = _marginal_kernel_for(int(log_prevalence.shape[0]))
    return kernel(log_prevalence, log_confusion, *rows)
