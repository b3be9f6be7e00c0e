"""Logistic random effects (LogRndEff): annotator ability and item difficulty on the logit scale.

Paun, S., Carpenter, B., Chamberlain, J., Hovy, D., Kruschwitz, U. & Poesio, M. (2018).
Comparing Bayesian models of annotation. *TACL* 6, 571-585 (the LogRndEff model, Figure 7,
after Carpenter (2008), *Multilevel Bayesian models of categorical data annotation*; the
NumPyro example ``examples/annotation.py``, ``logistic_random_effects``).

It is hierarchical Dawid-Skene (:mod:`crowdbayes.models.hierarchical_dawid_skene`) with an
item-level difficulty term added to every wrong-label logit: annotator :math:`j` on item
:math:`i` of true category :math:`k` gives wrong label :math:`h` with log-odds
:math:`\\beta_{jkh} + \\chi_{kh} \\epsilon_{i, m(k, h)}` against the right one. Annotator
logits :math:`\\beta` are non-centred around population means; item effects are non-centred,
standard normal, shared across true categories and mapped onto the wrong labels of each
category as in :mod:`crowdbayes.models.item_difficulty` (a positive value makes the item harder
whatever its true category; the item's marginal likelihood is that of the centred form
:math:`\\theta_{ik\\cdot} \\sim \\operatorname{Normal}(0, \\chi_k)`). The identification
convention (diagonal logit 0, population means centred better than chance) is that of
hierarchical Dawid-Skene.

Why non-centred item effects: most items get five labels or fewer, so each item effect is
weakly identified and its posterior is dominated by the prior's scale, the funnel geometry that
the centred form samples badly: ``benchmarks/noncentred.py`` compares the two, and the
centred form mixes far more slowly and takes longer. Even non-centred, mixing is slow with
more than two categories: with the true category summed out, each item effect's posterior is
a mixture over the category (:mod:`crowdbayes.models.item_difficulty`); on simulated data with
three categories and five labels per item the default settings leave R-hat well above its
threshold (the fit reports it). With two categories it mixes well, and on real binary data
with ten labels per item it is adequate. The figures are in
``benchmarks/DESIGN_MEASUREMENTS.md``.
"""

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from crowdbayes.data import AnnotationData
from crowdbayes.em import Start, em_confusion
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.models._shared import (
    ITEM_ERROR_RATE,
    QUADRATURE_BUDGET,
    Replicate,
    annotator_logits,
    diagonal_error_rate,
    error_coords,
    error_log_probability,
    error_logits,
    error_mean_prior,
    integrated_item_joint,
    item_quadrature,
    non_centred_start,
    observe_integrated_labels,
    observe_labels,
    prevalence_prior,
    select_label,
    slot_matrix,
    spread_effect,
)
from crowdbayes.priors import LogitPriors

__all__ = [
    "LogisticRandomEffects",
    "LogisticRandomEffectsPriors",
    "build_logistic_random_effects",
    "build_logistic_random_effects_integrated",
    "start_logistic_random_effects",
]

#: Between-item standard deviation of the logits at which NUTS starts (item effects at 0).
START_ITEM_SCALE = 0.5


@dataclass(frozen=True)
class LogisticRandomEffectsPriors(LogitPriors):
    """Priors of the logistic random-effects model.

    Parameters
    ----------
    prevalence, prior_accuracy, error_mean_sd : float
        As in :class:`~crowdbayes.models._shared.LogitPriors` (the accuracy of a typical
        annotator on an item of average difficulty).
    error_scale : float
        Scale of the HalfNormal prior on each between-annotator standard deviation
        ``error_scale``. Default 1.
    item_scale : float
        Scale of the HalfNormal prior on each between-item standard deviation ``item_scale``.
        Default 1.

    Examples
    --------
    >>> round(LogisticRandomEffectsPriors().mean_location(n_categories=2), 3)
    -0.847
    """

    error_scale: float = 1.0
    item_scale: float = 1.0


def _global_variables(
    data: AnnotationData, priors: LogisticRandomEffectsPriors
) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable, pt.TensorVariable]:
    """Prevalence, population means, both scales, annotator logits and ``confusion``."""
    n_categories = data.n_categories
    prevalence = prevalence_prior(data, priors.prevalence)
    error_mean = error_mean_prior(priors, n_categories)
    logits = annotator_logits(priors, error_mean)
    item_scale = pm.HalfNormal("item_scale", sigma=np.float64(priors.item_scale), dims="error")
    pm.Deterministic(
        "confusion",
        pt.exp(error_log_probability(logits, n_categories)),
        dims=("annotator", "true_category", "category"),
    )
    return prevalence, error_mean, item_scale, logits


def _annotator_item_rows(
    item_index: np.ndarray,
    annotator_index: np.ndarray,
    label_index: Any,
    annotator_logits: pt.TensorVariable,
    item_shift: pt.TensorVariable,
    *,
    n_categories: int,
) -> pt.TensorVariable:
    """The row distribution: softmax of the annotator's logits shifted by the item's."""
    logits = annotator_logits[annotator_index] + item_shift[item_index]
    log_probability = error_log_probability(logits, n_categories)
    if label_index is None:
        return log_probability
    return select_label(log_probability, label_index, n_categories)


def build_logistic_random_effects(
    data: AnnotationData,
    priors: LogisticRandomEffectsPriors | None = None,
    *,
    replicate: Replicate = "same-items",
) -> pm.Model:
    """Build the logistic random-effects model (LogRndEff) with the true category marginalised.

    For annotator :math:`j`, item :math:`i`, true category :math:`k` and wrong label
    :math:`h \\ne k`, with :math:`m(k, h)` the rank of :math:`h` among the wrong labels of
    :math:`k`:

    .. math::

        \\mu_{kh} &\\sim \\operatorname{Normal}(m_0, s_0), \\quad
        \\sigma_{kh} \\sim \\operatorname{HalfNormal}(s_1), \\quad
        \\chi_{kh} \\sim \\operatorname{HalfNormal}(s_2) \\\\
        \\delta_{jkh} &\\sim \\operatorname{Normal}(0, 1), \\quad
        \\epsilon_{im} \\sim \\operatorname{Normal}(0, 1) \\\\
        \\beta_{jkh} &= \\mu_{kh} + \\sigma_{kh} \\delta_{jkh} \\\\
        \\psi_{ijkh} &= \\beta_{jkh} + \\chi_{kh} \\epsilon_{i, m(k, h)}, \\quad
        \\psi_{ijkk} = 0 \\\\
        y_{ir} \\mid z_i = k &\\sim \\operatorname{Categorical}(
        \\operatorname{softmax}(\\psi_{i j_{ir} k \\cdot}))

    with :math:`m_0 = \\log((1 - a) / (a (K - 1)))`. The deterministic ``confusion`` is
    :math:`\\operatorname{softmax}(\\beta_{jk\\cdot})` (an item of average difficulty);
    ``item_error_rate`` is the error rate of a typical annotator
    (:math:`\\beta = \\mu`) on item :math:`i`,
    :math:`1 - \\operatorname{softmax}(\\mu_{k\\cdot} + \\chi_{k\\cdot}\\epsilon_{i, m(k,
    \\cdot)})_k`. The label distribution is computed per annotation row (log-softmax over the
    category axis of (row, K, K) logits).

    Parameters
    ----------
    data : AnnotationData
    priors : LogisticRandomEffectsPriors, optional

    Returns
    -------
    pymc.Model
        Free variables ``prevalence`` (category), ``error_mean``, ``error_scale`` and
        ``item_scale`` (error), ``annotator_effect`` (annotator, error), ``item_effect``
        (item, wrong_label); deterministic ``confusion`` (annotator, true_category, category).

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> data = simulate_dawid_skene(n_items=20, n_annotators=3, random_seed=1).data
    >>> sorted(v.name for v in build_logistic_random_effects(data).free_RVs)
    ['annotator_effect', 'error_mean', 'error_scale', 'item_effect', 'item_scale', 'prevalence']
    """
    priors = LogisticRandomEffectsPriors() if priors is None else priors
    n_categories = data.n_categories
    with pm.Model(coords=error_coords(data)) as model:
        prevalence, error_mean, item_scale, annotator_logits = _global_variables(data, priors)
        item_effect = pm.Normal("item_effect", 0.0, 1.0, dims=("item", "wrong_label"))
        item_shift = item_scale[None, :] * spread_effect(item_effect, n_categories)

        typical = error_log_probability(error_mean[None, :] + item_shift, n_categories)
        error_rate = diagonal_error_rate(typical, n_categories)
        model.add_named_variable(error_rate.copy(name=ITEM_ERROR_RATE))
        observe_labels(
            data,
            pt.log(prevalence),
            partial(_annotator_item_rows, n_categories=n_categories),
            annotator_logits,
            item_shift,
            replicate=replicate,
        )
    return model


def build_logistic_random_effects_integrated(
    data: AnnotationData,
    priors: LogisticRandomEffectsPriors | None = None,
    *,
    max_nodes: int = 64,
) -> pm.Model:
    """The logistic random-effects model with the item effects summed out by quadrature.

    As :func:`~crowdbayes.models.item_difficulty.build_item_difficulty_integrated`: the same
    posterior over the other parameters up to the quadrature error, a deterministic
    ``item_effect`` (each item's posterior mean effect), used by ``method="map"`` because the
    joint mode over item effects is degenerate. The number of nodes is lowered (to at least 2
    per dimension) so that rows x nodes x K x K stays within ``QUADRATURE_BUDGET``.

    Parameters
    ----------
    data : AnnotationData
    priors : LogisticRandomEffectsPriors, optional
    max_nodes : int

    Returns
    -------
    pymc.Model
        Free variables ``prevalence``, ``error_mean``, ``error_scale``, ``item_scale``,
        ``annotator_effect``; deterministics ``confusion`` and ``item_effect``.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_logistic_random_effects
    >>> data = simulate_logistic_random_effects(n_items=20, n_annotators=3, random_seed=1).data
    >>> m = build_logistic_random_effects_integrated(data)
    >>> "item_effect" in [v.name for v in m.free_RVs]
    False
    """
    priors = LogisticRandomEffectsPriors() if priors is None else priors
    n_categories = data.n_categories
    rows = data.compressed
    n_rows = len(rows.item_index)
    budget = QUADRATURE_BUDGET // (n_rows * n_categories * n_categories)
    nodes, log_weights = item_quadrature(n_categories - 1, min(max_nodes, max(budget, 1)))
    n_nodes = len(nodes)
    onehot = np.eye(n_categories)[rows.label_index]
    with pm.Model(coords=error_coords(data)) as model:
        prevalence, error_mean, item_scale, annotator_logits = _global_variables(data, priors)
        node_shift = item_scale[None, :] * (nodes @ slot_matrix(n_categories))  # (node, error)
        logits = annotator_logits[rows.annotator_index][:, None, :] + node_shift[None]
        log_probability = error_log_probability(
            logits.reshape((n_rows * n_nodes, -1)), n_categories
        ).reshape((n_rows, n_nodes, n_categories, n_categories))
        terms = (log_probability * onehot[:, None, None, :]).sum(axis=-1)  # (row, node, k)
        terms = terms * rows.count[:, None, None].astype("float64")
        per_item = pt.inc_subtensor(
            pt.zeros((data.n_items, n_nodes, n_categories))[rows.item_index], terms
        )
        joint, effect_mean = integrated_item_joint(
            data, pt.log(prevalence), per_item, nodes, log_weights
        )
        observe_integrated_labels(data, joint)
        pm.Deterministic("item_effect", effect_mean, dims=("item", "wrong_label"))
    return model


def start_logistic_random_effects(
    data: AnnotationData, priors: LogisticRandomEffectsPriors
) -> Start:
    """Starting values: annotator logits from the smoothed EM confusions, average items.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_logistic_random_effects
    >>> data = simulate_logistic_random_effects(n_items=20, n_annotators=3, random_seed=1).data
    >>> start = start_logistic_random_effects(data, LogisticRandomEffectsPriors())
    >>> start.initial_values["annotator_effect"].shape
    (3, 6)
    """
    em = em_confusion(data, structure="full", prevalence_concentration=priors.prevalence)
    mean, scale, effect = non_centred_start(error_logits(em.start_confusion))
    values = {
        "error_mean": mean,
        "error_scale": scale,
        "item_scale": np.full(len(mean), START_ITEM_SCALE),
        "annotator_effect": effect,
        "item_effect": np.zeros((data.n_items, data.n_categories - 1)),
    }
    return Start(em=em, initial_values={"prevalence": em.start_prevalence, **values})


class LogisticRandomEffects(BayesianCrowdModel):
    """Logistic random effects (LogRndEff, Paun et al. 2018; Carpenter 2008).

    Hierarchical Dawid-Skene with an item difficulty term: each wrong-label logit is an
    annotator's (pooled around population means) plus the item's (pooled around 0).
    ``confusion`` is each annotator's on an item of average difficulty; each item's difficulty
    (the probability that a typical annotator mislabels it) is reported as for
    :class:`~crowdbayes.models.ItemDifficulty`, and the mode and LOO use the model with the
    item effects integrated out (:func:`build_logistic_random_effects_integrated`).

    Priors: :class:`LogisticRandomEffectsPriors` or a dict of its fields.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_logistic_random_effects
    >>> sim = simulate_logistic_random_effects(n_items=150, n_annotators=10, random_seed=0)
    >>> fit = LogisticRandomEffects().fit(sim.annotations, method="map", random_seed=0)
    >>> bool((fit.labels_["label"] == sim.true_labels).mean() > 0.9)
    True
    >>> fit.datatree_.posterior["item_effect"].dims
    ('chain', 'draw', 'item', 'wrong_label')
    """

    name, priors_class = "logistic-random-effects", LogisticRandomEffectsPriors
    builder = staticmethod(build_logistic_random_effects)
    start = staticmethod(start_logistic_random_effects)
    integrated_builder = staticmethod(build_logistic_random_effects_integrated)
    map_log_scales = ("item_scale",)
    diagnostic_vars = ("prevalence", "error_mean", "error_scale", "item_scale", "confusion")
