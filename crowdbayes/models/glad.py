"""GLAD: annotator ability times item inverse difficulty sets the chance of a correct label.

Whitehill, J., Ruvolo, P., Wu, T., Bergsma, J. & Movellan, J. (2009). Whose vote should count
more: optimal integration of labels from labelers of unknown expertise. *Advances in Neural
Information Processing Systems 22*, 2035-2043.

Annotator :math:`j` labels item :math:`i` correctly with probability
:math:`\\operatorname{logit}^{-1}(\\alpha_j \\beta_i)`, with ability :math:`\\alpha_j \\in
\\mathbb{R}` and inverse difficulty :math:`\\beta_i > 0`; a wrong label is uniform over the other
:math:`K - 1` categories (the multi-class form of crowd-kit's ``GLAD``; Whitehill et al. treat
the binary case). Whitehill et al. and crowd-kit give every ability and every log inverse
difficulty an independent Normal prior with mean 1 and fit by EM; here both are pooled
(non-centred), the abilities around a free population mean and the log inverse difficulties
around 0.

Identifiability: only the product :math:`\\alpha_j \\beta_i` enters the likelihood; fixing the
mean of :math:`\\log \\beta_i` at 0 fixes the scale (crowd-kit's prior mean 1 on
:math:`\\log \\beta_i` is absorbed into the abilities here). Negating every ability while
swapping the two categories of a binary task is an exact symmetry of the likelihood; the prior
on the mean ability, centred above 0, selects the better-than-chance mode.

Parametrisation: the item effects are non-centred. With a handful of labels per item the data
say little about any one item, and the centred form (:math:`\\log \\beta_i \\sim
\\operatorname{Normal}(0, \\tau)`) has the funnel between :math:`\\tau` and the item effects,
which NUTS samples badly: on simulated data its effective sample size of the global parameters
is far below the non-centred form's, most of all with five labels per item (figures in
``benchmarks/DESIGN_MEASUREMENTS.md``).

Known limitation: on data with many unanimous items and near-perfect annotators (such as the
``temp`` dataset) the posterior of the mean and spread of abilities and of :math:`\\tau` runs
far past its prior, and NUTS mixes badly (high R-hat, low ESS and many divergences with the
default settings). The fit reports it; its labels are still good, but its intervals are not to
be trusted there.
"""

from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from crowdbayes.data import AnnotationData
from crowdbayes.em import Start, em_confusion
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.models._shared import (
    ITEM_ERROR_RATE,
    Replicate,
    integrated_item_joint,
    item_quadrature,
    model_coords,
    non_centred_start,
    observe_integrated_labels,
    observe_labels,
    prevalence_prior,
)
from crowdbayes.priors import PriorsBase

__all__ = ["Glad", "GladPriors", "build_glad", "build_glad_integrated", "glad_rows", "start_glad"]


@dataclass(frozen=True)
class GladPriors(PriorsBase):
    """Priors of the GLAD model.

    Parameters
    ----------
    prevalence : float
        Symmetric Dirichlet concentration of the prevalence. Default 3.
    ability_mean_location : float
        Centre of the Normal prior on the mean ability. Default 1 (crowd-kit's prior mean of
        every ability): a typical annotator labels an average item correctly 73 % of the
        time. Positive, which breaks the sign symmetry.
    ability_mean_sd : float
        Standard deviation of that Normal prior. Default 1.
    ability_scale : float
        Scale of the HalfNormal prior on the between-annotator standard deviation of the
        abilities. Default 1.
    item_scale : float
        Scale of the HalfNormal prior on the between-item standard deviation of the log
        inverse difficulties. Default 0.5.

    Examples
    --------
    >>> GladPriors().item_scale
    0.5
    >>> GladPriors(item_scale=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: prior 'item_scale' must be finite and positive, got -1.0
    """

    renamed_fields: ClassVar[dict[str, str]] = {
        "ability_location": "ability_mean_location",
        "mean_scale": "ability_mean_sd",
        "annotator_scale": "ability_scale",
    }
    location_fields: ClassVar[tuple[str, ...]] = ("ability_mean_location",)

    prevalence: float = 3.0
    ability_mean_location: float = 1.0
    ability_mean_sd: float = 1.0
    ability_scale: float = 1.0
    item_scale: float = 0.5


def _coin_log_probabilities(
    eta: pt.TensorVariable, n_categories: int
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Log P(correct) and log P(one given wrong label) for logits ``eta``."""
    log_right = -pt.softplus(-eta)
    log_wrong = -pt.softplus(eta) - np.log(n_categories - 1.0)
    return log_right, log_wrong


def glad_rows(
    item_index: Any,
    annotator_index: Any,
    label_index: Any,
    ability: pt.TensorVariable,
    inverse_difficulty: pt.TensorVariable,
    *,
    n_categories: int,
) -> pt.TensorVariable:
    """The row distribution of GLAD (a :data:`~crowdbayes.models._shared.RowLogProbability`).

    For a row of annotator :math:`j` on item :math:`i`, with :math:`\\eta = \\alpha_j \\beta_i`:
    :math:`\\log p(y = h \\mid z = k)` is :math:`\\log \\operatorname{logit}^{-1}(\\eta)` when
    :math:`h = k` and :math:`\\log(1 - \\operatorname{logit}^{-1}(\\eta)) - \\log(K - 1)`
    otherwise.

    Examples
    --------
    >>> lp = glad_rows([0, 1], [0, 0], [2, 2], pt.as_tensor([2.0]), pt.as_tensor([0.5, 1.0]),
    ...                n_categories=3)
    >>> np.exp(lp.eval()).round(3)
    array([[0.134, 0.134, 0.731],
           [0.06 , 0.06 , 0.881]])
    """
    eye = np.eye(n_categories, dtype=bool)
    eta = ability[annotator_index] * inverse_difficulty[item_index]
    log_right, log_wrong = _coin_log_probabilities(eta, n_categories)
    if label_index is None:
        return pt.where(eye[None], log_right[:, None, None], log_wrong[:, None, None])
    right = pt.eq(pt.as_tensor(label_index)[:, None], pt.arange(n_categories)[None, :])
    return pt.where(right, log_right[:, None], log_wrong[:, None])


def _global_variables(
    data: AnnotationData, priors: GladPriors
) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable, pt.TensorVariable]:
    """Prevalence, mean ability, abilities (non-centred) and item scale, in the current model."""
    prevalence = prevalence_prior(data, priors.prevalence)
    ability_mean = pm.Normal(
        "ability_mean",
        mu=np.float64(priors.ability_mean_location),
        sigma=np.float64(priors.ability_mean_sd),
    )
    ability_scale = pm.HalfNormal("ability_scale", sigma=np.float64(priors.ability_scale))
    ability_effect = pm.Normal("ability_effect", 0.0, 1.0, dims="annotator")
    item_scale = pm.HalfNormal("item_scale", sigma=np.float64(priors.item_scale))
    return prevalence, ability_mean, ability_mean + ability_scale * ability_effect, item_scale


def build_glad(
    data: AnnotationData, priors: GladPriors | None = None, *, replicate: Replicate = "same-items"
) -> pm.Model:
    """Build the hierarchical GLAD model with the true category marginalised.

    .. math::

        \\mu &\\sim \\operatorname{Normal}(m_0, s_0), \\quad
        \\sigma \\sim \\operatorname{HalfNormal}(s_1), \\quad
        \\epsilon_j \\sim \\operatorname{Normal}(0, 1), \\quad
        \\alpha_j = \\mu + \\sigma \\epsilon_j \\\\
        \\tau &\\sim \\operatorname{HalfNormal}(s_2), \\quad
        \\delta_i \\sim \\operatorname{Normal}(0, 1), \\quad
        \\beta_i = \\exp(\\tau \\delta_i), \\quad
        \\pi \\sim \\operatorname{Dirichlet}(a_\\pi) \\\\
        p(y_{ij} = h \\mid z_i = k) &= \\begin{cases}
            \\operatorname{logit}^{-1}(\\alpha_j \\beta_i) & h = k \\\\
            \\big(1 - \\operatorname{logit}^{-1}(\\alpha_j \\beta_i)\\big) / (K - 1) & h \\ne k
        \\end{cases}

    ``confusion`` is each annotator's confusion on an item of average difficulty
    (:math:`\\beta_i = 1`). ``item_error_rate`` (a named variable, evaluated on the draws, not
    stored) is
    :math:`1 - \\operatorname{logit}^{-1}(\\mu \\beta_i)`: how often a typical annotator
    mislabels item :math:`i`, the same for every true category.

    Parameters
    ----------
    data : AnnotationData
    priors : GladPriors, optional

    Returns
    -------
    pymc.Model
        Free variables ``prevalence`` (category), ``ability_mean``, ``ability_scale``,
        ``ability_effect`` (annotator), ``item_scale`` and ``item_effect`` (item);
        deterministic ``ability`` (annotator), ``inverse_difficulty`` (item) and ``confusion``
        (annotator, true_category, category).

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_glad
    >>> data = simulate_glad(n_items=20, n_annotators=3, random_seed=1).data
    >>> sorted(v.name for v in build_glad(data).free_RVs)  # doctest: +NORMALIZE_WHITESPACE
    ['ability_effect', 'ability_mean', 'ability_scale', 'item_effect', 'item_scale',
     'prevalence']
    """
    priors = GladPriors() if priors is None else priors
    n_categories = data.n_categories
    with pm.Model(coords=model_coords(data)) as model:
        prevalence, ability_mean, ability, item_scale = _global_variables(data, priors)
        ability = pm.Deterministic("ability", ability, dims="annotator")
        item_effect = pm.Normal("item_effect", 0.0, 1.0, dims="item")
        inverse_difficulty = pm.Deterministic(
            "inverse_difficulty", pt.exp(item_scale * item_effect), dims="item"
        )
        eye = np.eye(n_categories)
        log_right, log_wrong = _coin_log_probabilities(ability, n_categories)
        pm.Deterministic(
            "confusion",
            pt.exp(
                eye[None] * log_right[:, None, None] + (1.0 - eye[None]) * log_wrong[:, None, None]
            ),
            dims=("annotator", "true_category", "category"),
        )
        typical_error = pt.sigmoid(-ability_mean * inverse_difficulty)  # (item,)
        error_rate = pt.outer(typical_error, pt.ones(n_categories))
        model.add_named_variable(error_rate.copy(name=ITEM_ERROR_RATE))
        observe_labels(
            data,
            pt.log(prevalence),
            partial(glad_rows, n_categories=n_categories),
            ability,
            inverse_difficulty,
            replicate=replicate,
        )
    return model


def build_glad_integrated(
    data: AnnotationData, priors: GladPriors | None = None, *, max_nodes: int = 20
) -> pm.Model:
    """GLAD with each item's inverse difficulty summed out by Gauss-Hermite quadrature.

    The same priors as :func:`build_glad`; its ``label_joint`` is each item's joint with
    :math:`\\delta_i` integrated out, given the global parameters and the annotators'
    abilities. The estimator evaluates it on the posterior draws of :func:`build_glad` to store
    each item's log-likelihood for PSIS-LOO: conditional on the item's own
    :math:`\\delta_i`, fitted to that item's labels, the importance weights are unstable.

    Parameters
    ----------
    data : AnnotationData
    priors : GladPriors, optional
    max_nodes : int
        Gauss-Hermite nodes (at most 20).

    Returns
    -------
    pymc.Model
        Free variables ``prevalence``, ``ability_mean``, ``ability_scale``, ``ability_effect``
        and ``item_scale``; no item-level variable.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_glad
    >>> data = simulate_glad(n_items=20, n_annotators=3, random_seed=1).data
    >>> names = sorted(v.name for v in build_glad_integrated(data).free_RVs)
    >>> names  # doctest: +NORMALIZE_WHITESPACE
    ['ability_effect', 'ability_mean', 'ability_scale', 'item_scale', 'prevalence']
    """
    priors = GladPriors() if priors is None else priors
    n_categories = data.n_categories
    rows = data.compressed
    nodes, log_weights = item_quadrature(1, max_nodes)
    right = np.eye(n_categories)[rows.label_index]  # (row, true_category): is the label k?
    count = rows.count.astype("float64")[:, None, None]
    with pm.Model(coords=model_coords(data)) as model:
        prevalence, _, ability, item_scale = _global_variables(data, priors)
        node_inverse_difficulty = pt.exp(item_scale * nodes[:, 0])  # (node,)
        eta = ability[rows.annotator_index][:, None] * node_inverse_difficulty[None, :]
        log_right, log_wrong = _coin_log_probabilities(eta, n_categories)  # (row, node)
        terms = count * pt.where(right[:, None, :], log_right[..., None], log_wrong[..., None])
        per_item = pt.inc_subtensor(
            pt.zeros((data.n_items, len(nodes), n_categories))[rows.item_index], terms
        )
        joint, _ = integrated_item_joint(data, pt.log(prevalence), per_item, nodes, log_weights)
        observe_integrated_labels(data, joint)
    return model


def start_glad(data: AnnotationData, priors: GladPriors) -> Start:
    """Starting values from the one-coin EM accuracies (an average item, inverse difficulty 1).

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_glad
    >>> data = simulate_glad(n_items=20, n_annotators=3, random_seed=1).data
    >>> start_glad(data, GladPriors()).initial_values["item_effect"].shape
    (20,)
    """
    em = em_confusion(data, structure="one_coin", prevalence_concentration=priors.prevalence)
    accuracy = np.clip(em.start_accuracy, 0.02, 0.98)
    mean, scale, effect = non_centred_start(np.log(accuracy / (1.0 - accuracy)))
    values = {
        "ability_mean": np.asarray(mean),
        "ability_scale": np.asarray(scale),
        "ability_effect": effect,
        "item_scale": np.asarray(0.3),
        "item_effect": np.zeros(data.n_items),
    }
    return Start(em=em, initial_values={"prevalence": em.start_prevalence, **values})


class Glad(BayesianCrowdModel):
    """GLAD (Whitehill et al. 2009): annotator ability times item inverse difficulty.

    Annotator ``j`` labels item ``i`` correctly with probability
    ``logit^-1(ability_j * inverse_difficulty_i)``, wrong labels uniform over the other
    categories; abilities and log inverse difficulties are pooled (see :func:`build_glad`).
    The fit reports each item's ``difficulty``: the probability that a typical annotator
    mislabels it. LOO uses the model with the inverse difficulties integrated out
    (:func:`build_glad_integrated`).

    Priors: :class:`GladPriors` or a dict of its fields.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_glad
    >>> sim = simulate_glad(n_items=200, n_annotators=10, random_seed=0)
    >>> glad = Glad().fit(sim.annotations, method="map", random_seed=0)
    >>> bool((glad.labels_["label"] == sim.true_labels).mean() > 0.85)
    True
    >>> glad.labels_.columns[-3:].tolist()
    ['difficulty', 'difficulty_low', 'difficulty_high']
    """

    name, priors_class = "glad", GladPriors
    builder = staticmethod(build_glad)
    start = staticmethod(start_glad)
    diagnostic_vars = ("prevalence", "ability_mean", "ability_scale", "item_scale", "ability")
    integrated_builder = staticmethod(build_glad_integrated)
