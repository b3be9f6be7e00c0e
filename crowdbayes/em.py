"""Closed-form MAP-EM for the confusion-matrix models: starting values and fast point estimates.

This is the model-specific EM of Dawid & Skene (1979) with the Dirichlet / Beta prior
pseudo-counts added in the M-step, so its fixed point is the posterior mode (densities without
Jacobian, as :func:`pymc.find_MAP`). It starts from majority vote. It is not a general optimiser:
it exists to start NUTS in the labelled mode (guarding against label switching) and to give
``method="map"`` in milliseconds.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np

from crowdbayes.data import AnnotationData
from crowdbayes.fast.draws import label_posterior_draws
from crowdbayes.fast.kernels import marginal_log_likelihood, marginal_row_inputs

__all__ = ["EMResult", "Start", "dirichlet_confusion", "em_confusion", "vote_shares"]

Structure = Literal["full", "class_conditional", "one_coin"]
_FLOOR = 1e-6


@dataclass(frozen=True, eq=False)
class EMResult:
    """The posterior mode found by :func:`em_confusion`.

    Attributes
    ----------
    prevalence : numpy.ndarray, shape (category,)
    confusion : numpy.ndarray, shape (annotator, true_category, category)
    accuracy : numpy.ndarray
        Shape (annotator, true_category) for ``class_conditional``, (annotator,) for
        ``one_coin``, the confusion diagonal for ``full``.
    label_posterior : numpy.ndarray, shape (item, category)
    log_posterior : float
        Log-likelihood plus log prior density (without normalising constants) at the mode.
    n_iter : int
    converged : bool
    start_prevalence, start_confusion, start_accuracy : numpy.ndarray
        The same quantities with the prior pseudo-counts added in full (posterior means given
        the final expected counts) instead of the mode's "minus one": always inside the
        simplex, even where a Dirichlet concentration below 1 puts the mode on its boundary.
        These start NUTS; the mode itself would start it at log(0).
    """

    prevalence: np.ndarray
    confusion: np.ndarray
    accuracy: np.ndarray
    label_posterior: np.ndarray
    log_posterior: float
    n_iter: int
    converged: bool
    start_prevalence: np.ndarray
    start_confusion: np.ndarray
    start_accuracy: np.ndarray


@dataclass
class Start:
    """Where a fit starts: the EM estimate, NUTS's starting values and, if known, the mode.

    Attributes
    ----------
    em : EMResult
        The EM run the starting values come from (its iterations are recorded).
    initial_values : dict
        Constrained values of the model's free variables; each chain is jittered around them.
    mode : dict, optional
        The exact posterior mode (every free and deterministic variable), where EM finds it;
        otherwise ``method="map"`` optimises.
    """

    em: EMResult
    initial_values: dict[str, np.ndarray]
    mode: dict[str, np.ndarray] | None = None


def vote_shares(data: AnnotationData) -> np.ndarray:
    """Share of each item's labels that went to each category (gold items: their gold label).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> df = pd.DataFrame({"item": [1, 1, 1], "annotator": ["a", "b", "c"], "label": [0, 0, 1]})
    >>> vote_shares(encode_annotations(df)).round(3).tolist()
    [[0.667, 0.333]]
    """
    counts = np.zeros((data.n_items, data.n_categories))
    np.add.at(counts, (data.item_index, data.label_index), 1.0)
    shares = counts / counts.sum(axis=1, keepdims=True)
    known = data.gold_index >= 0
    if known.any():
        shares[known] = 0.0
        shares[known, data.gold_index[known]] = 1.0
    return shares


def _label_counts(data: AnnotationData, weights: np.ndarray) -> np.ndarray:
    """Expected counts N[j, k, l] = sum over rows of count * weights[item, k] * [label = l]."""
    rows = data.compressed
    n_j, n_k = data.n_annotators, data.n_categories
    key = rows.annotator_index * n_k + rows.label_index
    out = np.empty((n_j, n_k, n_k))
    for k in range(n_k):
        w = rows.count * weights[rows.item_index, k]
        out[:, k, :] = np.bincount(key, weights=w, minlength=n_j * n_k).reshape(n_j, n_k)
    return out


def _normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.maximum(x, 0.0) + _FLOOR
    return x / x.sum(axis=axis, keepdims=True)


def _accuracy_to_confusion(accuracy: np.ndarray, n_categories: int) -> np.ndarray:
    acc = accuracy if accuracy.ndim == 2 else np.repeat(accuracy[:, None], n_categories, axis=1)
    eye = np.eye(n_categories)
    return acc[:, :, None] * eye + ((1.0 - acc) / (n_categories - 1))[:, :, None] * (1.0 - eye)


def dirichlet_confusion(
    pseudo_count: float, prior_accuracy: float, n_categories: int
) -> np.ndarray:
    """Dirichlet concentration of a confusion row: ``pseudo_count`` split with mass on the diagonal.

    The diagonal entry is ``pseudo_count * prior_accuracy``; the rest is spread evenly over the
    other categories (rater's default parametrisation).

    Examples
    --------
    >>> dirichlet_confusion(8.0, 0.6, 3).round(2).tolist()
    [[4.8, 1.6, 1.6], [1.6, 4.8, 1.6], [1.6, 1.6, 4.8]]
    """
    off = pseudo_count * (1.0 - prior_accuracy) / (n_categories - 1)
    out = np.full((n_categories, n_categories), off)
    np.fill_diagonal(out, pseudo_count * prior_accuracy)
    return out


def em_confusion(
    data: AnnotationData,
    *,
    structure: Structure = "full",
    prevalence_concentration: np.ndarray | float = 3.0,
    confusion_concentration: np.ndarray | None = None,
    accuracy_prior: tuple[float, float] = (4.8, 3.2),
    max_iter: int = 500,
    tol: float = 1e-8,
) -> EMResult:
    """Find the posterior mode of a confusion-matrix model by EM, starting from majority vote.

    Parameters
    ----------
    data : AnnotationData
    structure : {"full", "class_conditional", "one_coin"}
        Which confusion structure: Dawid-Skene, one accuracy per annotator and category, one
        accuracy per annotator.
    prevalence_concentration : float or array of shape (category,)
    confusion_concentration : array of shape (annotator, category, category), optional
        Dirichlet concentrations for ``full`` (default: rater's pseudo-count 8, accuracy 0.6).
    accuracy_prior : (float, float)
        Beta prior of accuracies for the other structures.
    max_iter : int
    tol : float
        Stop when the log posterior changes by less than ``tol`` times its magnitude.

    Returns
    -------
    EMResult

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> sim = simulate_dawid_skene(n_items=300, n_annotators=10, random_seed=0)
    >>> em = em_confusion(sim.data)
    >>> em.converged
    True
    >>> bool((em.label_posterior.argmax(1) == sim.true_labels.to_numpy()).mean() > 0.9)
    True
    """
    n_j, n_k = data.n_annotators, data.n_categories
    alpha = np.broadcast_to(np.asarray(prevalence_concentration, dtype=float), (n_k,))
    if structure == "full":
        beta = (
            np.broadcast_to(dirichlet_confusion(8.0, 0.6, n_k), (n_j, n_k, n_k))
            if confusion_concentration is None
            else np.broadcast_to(confusion_concentration, (n_j, n_k, n_k))
        )
    elif structure not in ("class_conditional", "one_coin"):
        raise ValueError(f"unknown structure {structure!r}")
    a0, b0 = accuracy_prior

    def m_step(
        weight_sum: np.ndarray, counts: np.ndarray, shift: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Parameters given expected counts: the mode (shift 1) or the mean (shift 0).

        ``weight_sum`` (category,): expected number of items per true category; ``counts``
        (annotator, true_category, category): expected label counts.
        """
        prevalence = _normalise(weight_sum + alpha - shift)
        if structure == "full":
            confusion = _normalise(counts + beta - shift)
            return prevalence, confusion, np.diagonal(confusion, axis1=1, axis2=2).copy()
        correct = np.diagonal(counts, axis1=1, axis2=2)
        total = counts.sum(axis=2)
        if structure == "one_coin":
            correct, total = correct.sum(axis=1), total.sum(axis=1)
        accuracy = (correct + a0 - shift) / (total + a0 + b0 - 2.0 * shift)
        accuracy = np.clip(accuracy, _FLOOR, 1.0 - _FLOOR)
        return prevalence, _accuracy_to_confusion(accuracy, n_k), accuracy

    posterior = vote_shares(data)
    weight_sum, counts = posterior.sum(axis=0), _label_counts(data, posterior)
    row_inputs = marginal_row_inputs(data.compressed, n_k, data.gold_index)
    previous = -np.inf
    log_post = -np.inf
    converged = False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        # M-step: posterior mode given expected counts.
        prevalence, confusion, accuracy = m_step(weight_sum, counts, 1.0)
        # E-step: one pass over the rows gives the log-likelihood and the expected counts (the
        # gradients of the marginal log-likelihood with respect to the log parameters).
        log_lik, weight_sum, counts = marginal_log_likelihood(
            np.log(prevalence), np.ascontiguousarray(np.log(confusion)), *row_inputs
        )
        log_prior = float(((alpha - 1.0) * np.log(prevalence)).sum())
        if structure == "full":
            log_prior += float(((beta - 1.0) * np.log(confusion)).sum())
        else:
            log_prior += float(
                ((a0 - 1.0) * np.log(accuracy) + (b0 - 1.0) * np.log1p(-accuracy)).sum()
            )
        log_post = float(log_lik) + log_prior
        if abs(log_post - previous) <= tol * max(1.0, abs(log_post)):
            converged = True
            break
        previous = log_post
    # Starting values for NUTS: posterior means given the final expected counts.
    start_prevalence, start_confusion, start_accuracy = m_step(weight_sum, counts, 0.0)
    probabilities, _ = label_posterior_draws(
        np.log(prevalence)[None], np.log(confusion)[None], data.compressed, data.gold_index
    )
    posterior = probabilities[0]
    return EMResult(
        start_prevalence=start_prevalence,
        start_confusion=start_confusion,
        start_accuracy=start_accuracy,
        prevalence=prevalence,
        confusion=confusion,
        accuracy=accuracy,
        label_posterior=posterior,
        log_posterior=log_post,
        n_iter=n_iter,
        converged=converged,
    )
