"""Hierarchical Dawid-Skene: annotator confusion logits pooled around population means.

Paun, S., Carpenter, B., Chamberlain, J., Hovy, D., Kruschwitz, U. & Poesio, M. (2018).
Comparing Bayesian models of annotation. *TACL* 6, 571-585 (the HierDawidSkene model, Figure 4).

Identifiability: each confusion row is a softmax over logits whose **diagonal entry is fixed at
0**; the :math:`K - 1` free logits are the log-odds of each wrong label against the right one.
Their population means have a prior centred on a better-than-chance annotator, which breaks the
label-switching symmetry (Paun et al. and the NumPyro example fix the last logit instead and
leave label switching to post-processing). Annotator effects are non-centred.

Known limitation: with many categories and sparse annotators (such as 8 categories and 3 labels
per item, ``benchmarks/sparse_many_categories.py``) the free population means can represent a
permuted labelling at little prior cost, and NUTS chains settle in different permuted modes. The
per-chain check reports it (every chain permuted, R-hat far above its threshold); use
:func:`build_dawid_skene` there.
"""

from dataclasses import dataclass

import pymc as pm
import pytensor.tensor as pt

from crowdbayes.data import AnnotationData
from crowdbayes.em import Start, em_confusion
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.models._shared import (
    Replicate,
    annotator_logits,
    confusion_rows,
    error_coords,
    error_logits,
    error_mean_prior,
    non_centred_start,
    observe_labels,
    off_diagonal_coords,
    prevalence_prior,
)
from crowdbayes.priors import LogitPriors

__all__ = [
    "HierarchicalDawidSkene",
    "HierarchicalDawidSkenePriors",
    "build_hierarchical_dawid_skene",
    "start_hierarchical_dawid_skene",
]


@dataclass(frozen=True)
class HierarchicalDawidSkenePriors(LogitPriors):
    """Priors of the hierarchical Dawid-Skene model.

    Parameters
    ----------
    prevalence, prior_accuracy, error_mean_sd : float
        As in :class:`~crowdbayes.models._shared.LogitPriors`.
    error_scale : float
        Scale of the HalfNormal prior on each between-annotator standard deviation. Default 1.

    Examples
    --------
    >>> round(HierarchicalDawidSkenePriors().mean_location(n_categories=2), 3)
    -0.847
    """

    error_scale: float = 1.0


def build_hierarchical_dawid_skene(
    data: AnnotationData,
    priors: HierarchicalDawidSkenePriors | None = None,
    *,
    replicate: Replicate = "same-items",
) -> pm.Model:
    """Build the hierarchical Dawid-Skene model with the true category marginalised.

    .. math::

        \\mu_{kl} &\\sim \\operatorname{Normal}(m_0, s_0), \\quad
        \\sigma_{kl} \\sim \\operatorname{HalfNormal}(s_1), \\quad
        \\epsilon_{jkl} \\sim \\operatorname{Normal}(0, 1) \\qquad (k \\ne l) \\\\
        \\eta_{jkl} &= \\mu_{kl} + \\sigma_{kl}\\,\\epsilon_{jkl}, \\quad \\eta_{jkk} = 0, \\quad
        \\theta_{jk} = \\operatorname{softmax}(\\eta_{jk})

    Parameters
    ----------
    data : AnnotationData
    priors : HierarchicalDawidSkenePriors, optional

    Returns
    -------
    pymc.Model
        Free variables ``prevalence``, ``error_mean`` and ``error_scale`` (error),
        ``annotator_effect`` (annotator, error); deterministic ``confusion``.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> data = simulate_dawid_skene(n_items=20, n_annotators=3, random_seed=1).data
    >>> sorted(v.name for v in build_hierarchical_dawid_skene(data).free_RVs)
    ['annotator_effect', 'error_mean', 'error_scale', 'prevalence']
    """
    priors = HierarchicalDawidSkenePriors() if priors is None else priors
    n_categories = data.n_categories
    rows, cols = off_diagonal_coords(n_categories)
    with pm.Model(coords=error_coords(data)) as model:
        prevalence = prevalence_prior(data, priors.prevalence)
        error_mean = error_mean_prior(priors, n_categories)
        logits = pt.zeros((data.n_annotators, n_categories, n_categories))
        logits = pt.set_subtensor(logits[:, rows, cols], annotator_logits(priors, error_mean))
        log_confusion = pt.special.log_softmax(logits, axis=-1)
        pm.Deterministic(
            "confusion", pt.exp(log_confusion), dims=("annotator", "true_category", "category")
        )
        observe_labels(data, pt.log(prevalence), confusion_rows, log_confusion, replicate=replicate)
    return model


def start_hierarchical_dawid_skene(
    data: AnnotationData, priors: HierarchicalDawidSkenePriors
) -> Start:
    """Starting values from the smoothed Dawid-Skene EM confusions' logits.

    The smoothed (posterior-mean) confusions, not the mode: the EM mode sits on the simplex
    boundary when a Dirichlet concentration is below 1 (many categories), at logits of -inf.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> data = simulate_dawid_skene(n_items=20, n_annotators=3, random_seed=1).data
    >>> start = start_hierarchical_dawid_skene(data, HierarchicalDawidSkenePriors())
    >>> start.initial_values["annotator_effect"].shape
    (3, 6)
    """
    em = em_confusion(data, structure="full")
    mean, scale, effect = non_centred_start(error_logits(em.start_confusion))
    values = {"error_mean": mean, "error_scale": scale, "annotator_effect": effect}
    return Start(em=em, initial_values={"prevalence": em.start_prevalence, **values})


class HierarchicalDawidSkene(BayesianCrowdModel):
    """Hierarchical Dawid-Skene (Paun et al. 2018): confusion logits pooled over annotators.

    Priors: :class:`HierarchicalDawidSkenePriors` or a dict of its fields.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_hierarchical_dawid_skene
    >>> sim = simulate_hierarchical_dawid_skene(n_items=200, n_annotators=10, random_seed=0)
    >>> hds = HierarchicalDawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> bool((hds.labels_["label"] == sim.true_labels).mean() > 0.9)
    True
    """

    name, priors_class = "hierarchical-dawid-skene", HierarchicalDawidSkenePriors
    builder = staticmethod(build_hierarchical_dawid_skene)
    start = staticmethod(start_hierarchical_dawid_skene)
    diagnostic_vars = ("prevalence", "error_mean", "error_scale", "annotator_effect")
