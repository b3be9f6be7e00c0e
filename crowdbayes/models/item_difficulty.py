"""Item difficulty (ItemDiff): exchangeable annotators, each item's confusion shifted in logits.

Paun, S., Carpenter, B., Chamberlain, J., Hovy, D., Kruschwitz, U. & Poesio, M. (2018).
Comparing Bayesian models of annotation. *TACL* 6, 571-585 (the ItemDiff model, Figure 5; the
NumPyro example ``examples/annotation.py``, ``item_difficulty``, implements it with a
non-centred item effect).

The model follows Paun et al. exactly: annotators are **exchangeable** (no annotator
parameters). Each item has its own confusion row per true category, pooled around population
logits; the variation across items is the item's difficulty. The estimator therefore reports
the same ``confusion`` for every annotator. Adding annotator effects to these logits gives
:mod:`crowdbayes.models.logistic_random_effects` (LogRndEff), which is the "hierarchical
Dawid-Skene with item-level difficulty" model; keeping ItemDiff without them keeps the two
models distinct, as in the paper, and ItemDiff stays usable when annotators give too few
labels each to estimate their own error rates.

Identifiability follows :mod:`crowdbayes.models.hierarchical_dawid_skene`: the diagonal logit
is fixed at 0 (the free logits are log-odds of each wrong label against the right one) and
their population means have a prior centred on a better-than-chance annotator, which breaks
label switching. Paun et al. fix the last logit instead.

Item effects. Each item has :math:`K - 1` standard-normal values :math:`\\epsilon_{i\\cdot}`
(``item_effect``), **shared across true categories** as in the non-centred NumPyro code: under
the hypothesis :math:`z_i = k` the :math:`m`-th value shifts the logit of the :math:`m`-th wrong
label of :math:`k` (wrong labels in category order, see :func:`wrong_label_slots`), scaled by
:math:`\\chi_{kh}` (``item_scale``). Because the right label's logit is fixed at 0, a positive
value makes the item harder whatever its true category (Paun's last-logit-fixed parametrisation
makes it favour one label instead). The marginal likelihood of the item (summed over
:math:`k`) equals that of the centred form :math:`\\theta_{ik\\cdot} \\sim
\\operatorname{Normal}(\\eta_k, \\chi_k)`: the true category is one of the :math:`K` hypotheses,
so sharing the standard-normal values across them changes nothing but the parametrisation.

Identifiability and sampling. With the true category summed out, an item's label distribution
is a mixture over :math:`k` of logit-normal distributions; a wide component (large
:math:`\\chi_k`) can cover the items of another category, so the posterior is weakly identified
and each item's effect has a posterior that is itself a mixture over the true category. NUTS
mixes slowly, the more so the larger ``item_scale`` and the fewer the labels per item: on
simulated data with a few labels per item chains can disagree even on the prevalence, and the
default settings leave R-hat well above its threshold. On real binary data with ten labels per
item it converges. Run long chains and read the diagnostics; Paun et al. also found ItemDiff
among the weakest models. The figures are in ``benchmarks/DESIGN_MEASUREMENTS.md``.

Point estimates. The joint mode over the global parameters *and* the item effects is
degenerate: with a few labels per item, a large ``item_scale`` lets each item's effect fit its
labels under any true category, so the mode puts almost all the prevalence on one category
and labels far worse than majority vote. :func:`build_item_difficulty_integrated` sums the item
effects out by Gauss-Hermite quadrature; the estimators' ``method="map"`` maximises that.
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
    diagonal_error_rate,
    error_coords,
    error_log_probability,
    error_logits,
    error_mean_prior,
    integrated_item_joint,
    item_quadrature,
    observe_integrated_labels,
    observe_labels,
    prevalence_prior,
    select_label,
    slot_matrix,
    spread_effect,
)
from crowdbayes.priors import LogitPriors

__all__ = [
    "ItemDifficulty",
    "ItemDifficultyPriors",
    "build_item_difficulty",
    "build_item_difficulty_integrated",
    "start_item_difficulty",
]


@dataclass(frozen=True)
class ItemDifficultyPriors(LogitPriors):
    """Priors of the item-difficulty model.

    Parameters
    ----------
    prevalence, prior_accuracy, error_mean_sd : float
        As in :class:`~crowdbayes.models._shared.LogitPriors` (the accuracy on an item of
        average difficulty).
    item_scale : float
        Scale of the HalfNormal prior on each between-item standard deviation
        ``item_scale`` (per true category and wrong label). Default 1, as Paun et al.

    Examples
    --------
    >>> round(ItemDifficultyPriors().mean_location(n_categories=3), 3)
    -1.54
    """

    item_scale: float = 1.0


# ----------------------------------------------------------------------------- the model
def _global_variables(
    data: AnnotationData, priors: ItemDifficultyPriors
) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable]:
    n_categories = data.n_categories
    prevalence = prevalence_prior(data, priors.prevalence)
    error_mean = error_mean_prior(priors, n_categories)
    item_scale = pm.HalfNormal("item_scale", sigma=np.float64(priors.item_scale), dims="error")
    average = error_log_probability(error_mean[None, :], n_categories)[0]
    pm.Deterministic(
        "confusion",
        pt.broadcast_to(pt.exp(average)[None], (data.n_annotators, n_categories, n_categories)),
        dims=("annotator", "true_category", "category"),
    )
    return prevalence, error_mean, item_scale


def _item_rows(
    item_index: np.ndarray,
    annotator_index: np.ndarray,
    label_index: Any,
    item_log_probability: pt.TensorVariable,
    *,
    n_categories: int,
) -> pt.TensorVariable:
    """The row distribution: every annotator labels item ``i`` from the item's own table."""
    per_row = item_log_probability[item_index]
    if label_index is None:
        return per_row
    return select_label(per_row, label_index, n_categories)


def build_item_difficulty(
    data: AnnotationData,
    priors: ItemDifficultyPriors | None = None,
    *,
    replicate: Replicate = "same-items",
) -> pm.Model:
    """Build the item-difficulty model (ItemDiff) with the true category marginalised.

    For true category :math:`k`, wrong label :math:`h \\ne k` and item :math:`i`, with
    :math:`m(k, h)` the rank of :math:`h` among the wrong labels of :math:`k`:

    .. math::

        \\pi &\\sim \\operatorname{Dirichlet}(\\alpha), \\quad
        \\eta_{kh} \\sim \\operatorname{Normal}(m_0, s_0), \\quad
        \\chi_{kh} \\sim \\operatorname{HalfNormal}(s_1), \\quad
        \\epsilon_{im} \\sim \\operatorname{Normal}(0, 1) \\\\
        \\theta_{ikh} &= \\eta_{kh} + \\chi_{kh}\\, \\epsilon_{i, m(k, h)}, \\quad
        \\theta_{ikk} = 0 \\\\
        y_{ir} \\mid z_i = k &\\sim \\operatorname{Categorical}(
        \\operatorname{softmax}(\\theta_{ik\\cdot}))

    with :math:`m_0 = \\log((1 - a) / (a (K - 1)))` for the prior accuracy :math:`a`. Every
    annotator shares the same distribution. The deterministic ``confusion`` is
    :math:`\\operatorname{softmax}(\\eta_k)` (an item of average difficulty,
    :math:`\\epsilon_i = 0`), repeated for every annotator; ``item_error_rate`` is
    :math:`1 - \\operatorname{softmax}(\\theta_{ik\\cdot})_k`.

    Parameters
    ----------
    data : AnnotationData
    priors : ItemDifficultyPriors, optional

    Returns
    -------
    pymc.Model
        Free variables ``prevalence`` (category), ``error_mean`` and ``item_scale`` (error),
        ``item_effect`` (item, wrong_label); deterministic ``confusion``
        (annotator, true_category, category).

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> data = simulate_dawid_skene(n_items=20, n_annotators=3, random_seed=1).data
    >>> sorted(v.name for v in build_item_difficulty(data).free_RVs)
    ['error_mean', 'item_effect', 'item_scale', 'prevalence']
    """
    priors = ItemDifficultyPriors() if priors is None else priors
    n_categories = data.n_categories
    with pm.Model(coords=error_coords(data)) as model:
        prevalence, error_mean, item_scale = _global_variables(data, priors)
        item_effect = pm.Normal("item_effect", 0.0, 1.0, dims=("item", "wrong_label"))
        # Annotators are exchangeable: one (true_category, category) table per item.
        item_logits = error_mean[None, :] + item_scale[None, :] * spread_effect(
            item_effect, n_categories
        )
        item_log_probability = error_log_probability(item_logits, n_categories)
        error_rate = diagonal_error_rate(item_log_probability, n_categories)
        model.add_named_variable(error_rate.copy(name=ITEM_ERROR_RATE))
        rows = partial(_item_rows, n_categories=n_categories)
        observe_labels(data, pt.log(prevalence), rows, item_log_probability, replicate=replicate)
    return model


def build_item_difficulty_integrated(
    data: AnnotationData,
    priors: ItemDifficultyPriors | None = None,
    *,
    max_nodes: int = 256,
) -> pm.Model:
    """The item-difficulty model with the item effects summed out by Gauss-Hermite quadrature.

    The same posterior over the global parameters as :func:`build_item_difficulty`, up to the
    quadrature error; it has no ``item_effect`` free variable. Its deterministic
    ``item_effect`` is each item's posterior mean effect given the global parameters, and
    ``label_joint`` is the per-item joint with the effects integrated out. The estimators'
    ``method="map"`` maximises this model: the joint mode of :func:`build_item_difficulty`
    over global parameters *and* item effects is degenerate (with five labels per item, large
    ``item_scale`` lets every item's effect fit its labels, and the mode puts most items in one
    category). It can also be sampled by NUTS: it has no item-level parameters, so none of
    the per-item posteriors that are mixtures over the true category (see
    ``benchmarks/noncentred.py``).

    Parameters
    ----------
    data : AnnotationData
    priors : ItemDifficultyPriors, optional
    max_nodes : int
        Number of quadrature nodes (Gauss-Hermite per dimension, tensor product over the
        :math:`K - 1` dimensions of an item effect), at most.

    Returns
    -------
    pymc.Model
        Free variables ``prevalence``, ``error_mean``, ``item_scale``; deterministics
        ``confusion`` and ``item_effect`` (item, wrong_label).

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_item_difficulty
    >>> data = simulate_item_difficulty(n_items=20, n_annotators=3, random_seed=1).data
    >>> m = build_item_difficulty_integrated(data)
    >>> sorted(v.name for v in m.free_RVs), sorted(v.name for v in m.deterministics)
    (['error_mean', 'item_scale', 'prevalence'], ['confusion', 'item_effect'])
    """
    priors = ItemDifficultyPriors() if priors is None else priors
    n_categories = data.n_categories
    budget = QUADRATURE_BUDGET // (data.n_items * n_categories * n_categories)
    nodes, log_weights = item_quadrature(n_categories - 1, min(max_nodes, max(budget, 1)))
    counts = np.zeros((data.n_items, n_categories))
    np.add.at(counts, (data.item_index, data.label_index), 1.0)
    with pm.Model(coords=error_coords(data)) as model:
        prevalence, error_mean, item_scale = _global_variables(data, priors)
        node_logits = error_mean[None, :] + item_scale[None, :] * (
            nodes @ slot_matrix(n_categories)
        )
        node_log_probability = error_log_probability(node_logits, n_categories)  # (node, k, l)
        per_item = (counts[:, None, None, :] * node_log_probability[None]).sum(
            axis=-1
        )  # (item, node, k)
        joint, effect_mean = integrated_item_joint(
            data, pt.log(prevalence), per_item, nodes, log_weights
        )
        observe_integrated_labels(data, joint)
        pm.Deterministic("item_effect", effect_mean, dims=("item", "wrong_label"))
    return model


#: Between-item standard deviation of the logits at which NUTS starts the item-effect models
#: (the item effects start at 0, an item of average difficulty).
START_ITEM_SCALE = 0.5


def start_item_difficulty(data: AnnotationData, priors: ItemDifficultyPriors) -> Start:
    """Starting values: population logits of the pooled smoothed EM confusions, average items.

    The label-count weighted mean of the smoothed Dawid-Skene EM confusions (all annotators
    are one); every item starts at average difficulty.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_item_difficulty
    >>> data = simulate_item_difficulty(n_items=20, n_annotators=3, random_seed=1).data
    >>> start_item_difficulty(data, ItemDifficultyPriors()).initial_values["item_effect"].shape
    (20, 2)
    """
    em = em_confusion(data, structure="full", prevalence_concentration=priors.prevalence)
    n_labels = np.bincount(data.annotator_index, minlength=data.n_annotators).astype(float)
    pooled = np.einsum("j,jkl->kl", n_labels, em.start_confusion) / n_labels.sum()
    n_errors = data.n_categories * (data.n_categories - 1)
    values = {
        "error_mean": error_logits(pooled),
        "item_scale": np.full(n_errors, START_ITEM_SCALE),
        "item_effect": np.zeros((data.n_items, data.n_categories - 1)),
    }
    return Start(em=em, initial_values={"prevalence": em.start_prevalence, **values})


class ItemDifficulty(BayesianCrowdModel):
    """Item difficulty (ItemDiff, Paun et al. 2018): exchangeable annotators, items vary.

    Each item's confusion rows are pooled on the logit scale around population logits; how far
    an item's logits lie from them is its difficulty. Annotators share one distribution, as in
    Paun et al.: with annotator effects added the model is
    :class:`~crowdbayes.models.LogisticRandomEffects`, so ``confusion`` (an item of average
    difficulty) is the same for every annotator. The fit reports each item's difficulty: the
    probability that a typical annotator mislabels it (``summary["difficulty"]``, columns
    ``difficulty``, ``difficulty_low``, ``difficulty_high`` of
    :meth:`~crowdbayes.results.FitResult.labels`). ``method="map"`` maximises the model with
    the item effects integrated out (:func:`build_item_difficulty_integrated`), then sets each
    item effect to its posterior mean at that mode; LOO uses that model's per-item
    log-likelihood.

    Priors: :class:`ItemDifficultyPriors` or a dict of its fields.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_item_difficulty
    >>> sim = simulate_item_difficulty(n_items=150, n_annotators=10, error_mean=-3.0,
    ...                                random_seed=0)
    >>> fit = ItemDifficulty().fit(sim.annotations, method="map", random_seed=0)
    >>> bool((fit.labels_["label"] == sim.true_labels).mean() > 0.9)
    True
    >>> fit.labels_.columns[-3:].tolist()
    ['difficulty', 'difficulty_low', 'difficulty_high']
    """

    name, priors_class = "item-difficulty", ItemDifficultyPriors
    builder = staticmethod(build_item_difficulty)
    start = staticmethod(start_item_difficulty)
    integrated_builder = staticmethod(build_item_difficulty_integrated)
    map_log_scales = ("item_scale",)
    diagnostic_vars = ("prevalence", "error_mean", "item_scale")
