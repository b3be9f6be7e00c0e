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
the centred form samples badly. Measured (``benchmarks/noncentred.py``: 2000 simulated labels,
400 items, 20 annotators, 3 categories; nutpie, 4 chains x 1000 draws): non-centred min bulk
ESS 32 of the global parameters, max R-hat 1.10, 406 s; centred ESS 6, R-hat 1.70, 870 s.
Even non-centred, mixing is slow: with the true category summed out, each item effect's
posterior is a mixture over the category (:mod:`crowdbayes.models.item_difficulty`); with 400
items, 3 categories, 5 labels each and ``item_scale`` 2.0 the default run gave R-hat 1.23 and
ESS 14. With two categories it mixes well (same benchmark, binary: ESS 246, R-hat 1.01) and on
real binary data with ten labels per item it is adequate (rte: R-hat 1.02, ESS 293; temp:
1.03, 172).
"""

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from crowdbayes.data import AnnotationData
from crowdbayes.models._common import LABEL_JOINT, add_label_model
from crowdbayes.models._likelihood import marginal_from_joint
from crowdbayes.models._priors import (
    PriorsBase,
    check_positive,
    check_probability,
    positive_array,
)
from crowdbayes.models._transforms import stick_breaking
from crowdbayes.models.item_difficulty import (
    QUADRATURE_BUDGET,
    diagonal_error_rate,
    difficulty_coords,
    error_log_probability,
    integrated_item_joint,
    item_quadrature,
    select_label,
    slot_matrix,
    spread_effect,
)

__all__ = [
    "LogisticRandomEffectsPriors",
    "build_logistic_random_effects",
    "build_logistic_random_effects_integrated",
]


@dataclass(frozen=True)
class LogisticRandomEffectsPriors(PriorsBase):
    """Priors of the logistic random-effects model.

    Parameters
    ----------
    prevalence : float
        Symmetric Dirichlet concentration of the prevalence. Default 3.
    prior_accuracy : float
        Accuracy (errors spread evenly) of a typical annotator on an item of average
        difficulty at which the prior on the population mean logits is centred. Default 0.7.
    mean_scale : float
        Standard deviation of the Normal prior on each population mean logit. Default 1.5.
    annotator_scale : float
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

    prevalence: float = 3.0
    prior_accuracy: float = 0.7
    mean_scale: float = 1.5
    annotator_scale: float = 1.0
    item_scale: float = 1.0

    def __post_init__(self) -> None:
        check_positive(self.prevalence, "prevalence")
        check_probability(self.prior_accuracy, "prior_accuracy")
        check_positive(self.mean_scale, "mean_scale")
        check_positive(self.annotator_scale, "annotator_scale")
        check_positive(self.item_scale, "item_scale")

    def mean_location(self, n_categories: int) -> float:
        """Prior centre of a wrong-vs-right log-odds: ``log((1-a) / (a (K-1)))``."""
        a = self.prior_accuracy
        return float(np.log((1.0 - a) / (a * (n_categories - 1))))


def _global_variables(
    data: AnnotationData, priors: LogisticRandomEffectsPriors
) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable, pt.TensorVariable]:
    """Prevalence, population means, both scales, annotator logits and ``confusion``."""
    n_categories = data.n_categories
    prevalence = pm.Dirichlet(
        "prevalence",
        a=positive_array(priors.prevalence, (n_categories,), "prevalence"),
        dims="category",
        default_transform=stick_breaking,
    )
    error_mean = pm.Normal(
        "error_mean",
        mu=np.float64(priors.mean_location(n_categories)),
        sigma=np.float64(priors.mean_scale),
        dims="error",
    )
    error_scale = pm.HalfNormal(
        "error_scale", sigma=np.float64(priors.annotator_scale), dims="error"
    )
    item_scale = pm.HalfNormal("item_scale", sigma=np.float64(priors.item_scale), dims="error")
    annotator_effect = pm.Normal("annotator_effect", 0.0, 1.0, dims=("annotator", "error"))
    annotator_logits = error_mean[None, :] + error_scale[None, :] * annotator_effect
    pm.Deterministic(
        "confusion",
        pt.exp(error_log_probability(annotator_logits, n_categories)),
        dims=("annotator", "true_category", "category"),
    )
    return prevalence, error_mean, item_scale, annotator_logits


def build_logistic_random_effects(
    data: AnnotationData, priors: LogisticRandomEffectsPriors | None = None
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
    with pm.Model(coords=difficulty_coords(data)) as model:
        prevalence, error_mean, item_scale, annotator_logits = _global_variables(data, priors)
        item_effect = pm.Normal("item_effect", 0.0, 1.0, dims=("item", "wrong_label"))
        item_shift = item_scale[None, :] * spread_effect(item_effect, n_categories)

        def row_log_probability(
            item_index: np.ndarray, annotator_index: np.ndarray, label_index: np.ndarray | None
        ) -> pt.TensorVariable:
            logits = annotator_logits[annotator_index] + item_shift[item_index]
            log_probability = error_log_probability(logits, n_categories)
            if label_index is None:
                return log_probability
            return select_label(log_probability, label_index, n_categories)

        typical = error_log_probability(error_mean[None, :] + item_shift, n_categories)
        add_label_model(
            data,
            pt.log(prevalence),
            row_log_probability,
            item_error_rate=diagonal_error_rate(typical, n_categories),
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
    with pm.Model(coords=difficulty_coords(data)) as model:
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
        joint.name = LABEL_JOINT
        model.add_named_variable(joint)
        pm.Potential("label_likelihood", marginal_from_joint(joint, data).sum())
        pm.Deterministic("item_effect", effect_mean, dims=("item", "wrong_label"))
    return model
