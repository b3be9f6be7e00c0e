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
mixes slowly: on 150 simulated binary items with 7 labels each (2 chains x 250 draws), bulk ESS
3-8 and R-hat 1.34-1.97 with ``item_scale`` 1.5 (chains disagreeing on the prevalence, 0.24 vs
0.68), ESS 8-19 and R-hat 1.06-1.18 with ``item_scale`` 1.0; with the default 4 chains x
1000 draws on 400 items, 3 categories, 5 labels each and ``item_scale`` 2.0, R-hat 1.35 and
ESS 9. On real binary data with ten labels per item it converges (temp: R-hat 1.003, ESS 3105;
rte: 1.023, 162). Run long chains and read the diagnostics; Paun et al. also found ItemDiff
among the weakest models.

Point estimates. The joint mode over the global parameters *and* the item effects is
degenerate: with a few labels per item, a large ``item_scale`` lets each item's effect fit its
labels under any true category (measured on 150 simulated items, 3 categories, 5 labels each:
the joint mode put 97 % of the prevalence on one category, ``item_scale`` 5.6, accuracy 0.45
against majority vote's 0.88). :func:`build_item_difficulty_integrated` sums the item effects
out by Gauss-Hermite quadrature; the estimators' ``method="map"`` maximises that.
"""

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numpy.polynomial.hermite_e import hermegauss

from crowdbayes.data import AnnotationData
from crowdbayes.models._common import LABEL_JOINT, add_label_model, model_coords
from crowdbayes.models._likelihood import marginal_from_joint
from crowdbayes.models._priors import (
    PriorsBase,
    check_positive,
    check_probability,
    positive_array,
)
from crowdbayes.models._transforms import stick_breaking
from crowdbayes.models.hierarchical_dawid_skene import off_diagonal_coords

__all__ = [
    "ItemDifficultyPriors",
    "build_item_difficulty",
    "build_item_difficulty_integrated",
    "wrong_label_slots",
    "slot_matrix",
    "spread_effect",
    "error_log_probability",
    "select_label",
    "diagonal_error_rate",
    "difficulty_coords",
    "item_quadrature",
    "integrated_item_joint",
]

#: Upper bound on the (row or item) x node x category x category values of the quadrature.
QUADRATURE_BUDGET = 2_000_000


@dataclass(frozen=True)
class ItemDifficultyPriors(PriorsBase):
    """Priors of the item-difficulty model.

    Parameters
    ----------
    prevalence : float
        Symmetric Dirichlet concentration of the prevalence. Default 3.
    prior_accuracy : float
        Accuracy (errors spread evenly) on an item of average difficulty at which the prior on
        the population mean logits is centred. Default 0.7 (better than chance).
    mean_scale : float
        Standard deviation of the Normal prior on each population mean logit. Default 1.5.
    item_scale : float
        Scale of the HalfNormal prior on each between-item standard deviation
        ``item_scale`` (per true category and wrong label). Default 1, as Paun et al.

    Examples
    --------
    >>> round(ItemDifficultyPriors().mean_location(n_categories=3), 3)
    -1.54
    """

    prevalence: float = 3.0
    prior_accuracy: float = 0.7
    mean_scale: float = 1.5
    item_scale: float = 1.0

    def __post_init__(self) -> None:
        check_positive(self.prevalence, "prevalence")
        check_probability(self.prior_accuracy, "prior_accuracy")
        check_positive(self.mean_scale, "mean_scale")
        check_positive(self.item_scale, "item_scale")

    def mean_location(self, n_categories: int) -> float:
        """Prior centre of a wrong-vs-right log-odds: ``log((1-a) / (a (K-1)))``."""
        a = self.prior_accuracy
        return float(np.log((1.0 - a) / (a * (n_categories - 1))))


# ----------------------------------------------------------------------------- shared helpers
def wrong_label_slots(n_categories: int) -> np.ndarray:
    """For every off-diagonal cell (row-major), the rank of its label among the wrong labels.

    The item effect's :math:`m`-th value goes to the :math:`m`-th wrong label of each true
    category, wrong labels taken in category order.

    Examples
    --------
    >>> wrong_label_slots(3).tolist()  # cells 0->1, 0->2, 1->0, 1->2, 2->0, 2->1
    [0, 1, 0, 1, 0, 1]
    """
    return np.tile(np.arange(n_categories - 1), n_categories)


def slot_matrix(n_categories: int) -> np.ndarray:
    """0/1 matrix (K - 1, K (K - 1)): ``effect @ slot_matrix`` spreads an item effect on cells."""
    slots = wrong_label_slots(n_categories)
    return (np.arange(n_categories - 1)[:, None] == slots[None, :]).astype(np.float64)


def spread_effect(effect: pt.TensorVariable, n_categories: int) -> pt.TensorVariable:
    """(n, K - 1) item effects -> (n, K (K - 1)) on the off-diagonal cells, row-major.

    The :math:`m`-th value goes to the :math:`m`-th wrong label of every true category, so the
    result is ``K`` copies side by side (``effect[:, wrong_label_slots(K)]`` without advanced
    indexing).

    Examples
    --------
    >>> spread_effect(pt.as_tensor(np.array([[1.0, 2.0]])), 3).eval().tolist()
    [[1.0, 2.0, 1.0, 2.0, 1.0, 2.0]]
    """
    return pt.concatenate([effect] * n_categories, axis=1)


def error_log_probability(error_logits: pt.TensorVariable, n_categories: int) -> pt.TensorVariable:
    """Log-probabilities of every label from off-diagonal logits, diagonal logit 0.

    Each row's logits are put together by concatenation and basic slicing (no advanced
    indexing or matrix product, so the graph and its gradient are cheap in every backend).

    Parameters
    ----------
    error_logits : TensorVariable, shape (n, K (K - 1))
        Log-odds of each wrong label against the right one, off-diagonal cells row-major
        (:func:`~crowdbayes.models.hierarchical_dawid_skene.off_diagonal_coords`).
    n_categories : int

    Returns
    -------
    TensorVariable, shape (n, true_category, category)
        Log-softmax over the last axis.

    Examples
    --------
    >>> lp = error_log_probability(pt.as_tensor(np.log([[1.0, 3.0]])), 2)
    >>> np.exp(lp.eval()).round(2).tolist()
    [[[0.5, 0.5], [0.75, 0.25]]]
    """
    error_logits = pt.as_tensor_variable(error_logits)
    zero = pt.zeros_like(error_logits[:, :1])
    wrong = n_categories - 1
    rows = []
    for k in range(n_categories):
        cells = error_logits[:, k * wrong : (k + 1) * wrong]
        rows.append(pt.concatenate([cells[:, :k], zero, cells[:, k:]], axis=1))
    logits = pt.stack(rows, axis=1)
    return pt.special.log_softmax(logits, axis=-1)


def select_label(
    log_probability: pt.TensorVariable, label_index: np.ndarray, n_categories: int
) -> pt.TensorVariable:
    """``log_probability[r, :, label_index[r]]`` for (row, K, K) log-probabilities -> (row, K).

    Examples
    --------
    >>> lp = pt.as_tensor(np.arange(8.0).reshape(2, 2, 2))
    >>> select_label(lp, np.array([1, 0]), 2).eval().tolist()
    [[1.0, 3.0], [4.0, 6.0]]
    """
    onehot = np.eye(n_categories)[np.asarray(label_index)]
    return (log_probability * onehot[:, None, :]).sum(axis=-1)


def diagonal_error_rate(log_probability: pt.TensorVariable, n_categories: int) -> pt.TensorVariable:
    """``1 - P(right label)`` per row and true category from (n, K, K) log-probabilities.

    Examples
    --------
    >>> lp = pt.as_tensor(np.log([[[0.9, 0.1], [0.3, 0.7]]]))
    >>> diagonal_error_rate(lp, 2).eval().round(2).tolist()
    [[0.1, 0.3]]
    """
    right = (log_probability * np.eye(n_categories)[None]).sum(axis=-1)
    return -pt.expm1(right)


def difficulty_coords(data: AnnotationData) -> dict[str, list[object]]:
    """Model coordinates plus ``error`` (off-diagonal cells) and ``wrong_label`` (K - 1 slots).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1], "annotator": ["a", "b"],
    ...                                         "label": ["x", "y"]}))
    >>> c = difficulty_coords(data)
    >>> c["error"], c["wrong_label"]
    (['x->y', 'y->x'], [0])
    """
    rows, cols = off_diagonal_coords(data.n_categories)
    coords = model_coords(data)
    coords["error"] = [
        f"{data.categories[r]}->{data.categories[c]}" for r, c in zip(rows, cols, strict=True)
    ]
    coords["wrong_label"] = list(range(data.n_categories - 1))
    return coords


def item_quadrature(n_dims: int, max_nodes: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and log-weights for a standard normal in ``n_dims`` dimensions.

    A tensor product of the same rule in every dimension, with as many nodes per dimension as
    ``max_nodes`` allows (at most 20, at least 2).

    Returns
    -------
    nodes : numpy.ndarray, shape (node, n_dims)
    log_weights : numpy.ndarray, shape (node,)
        They sum (in probability) to 1.

    Examples
    --------
    >>> nodes, logw = item_quadrature(1, max_nodes=5)
    >>> round(float(np.exp(logw) @ nodes[:, 0] ** 2), 12)  # E[e^2] = 1
    1.0
    >>> item_quadrature(2, max_nodes=256)[0].shape
    (256, 2)
    """
    per_dim = int(np.clip(np.floor(max_nodes ** (1.0 / n_dims) + 1e-9), 2, 20))
    x, w = hermegauss(per_dim)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * n_dims), indexing="ij")
    weights = np.meshgrid(*([w] * n_dims), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    log_weights = np.sum([np.log(g.ravel()) for g in weights], axis=0)
    return nodes, log_weights


def integrated_item_joint(
    data: AnnotationData,
    log_prevalence: pt.TensorVariable,
    item_label_log_probability: pt.TensorVariable,
    nodes: np.ndarray,
    log_weights: np.ndarray,
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Item effects summed out by quadrature: the per-item joint and the effects' posterior mean.

    Parameters
    ----------
    data : AnnotationData
    log_prevalence : TensorVariable, shape (true_category,)
    item_label_log_probability : TensorVariable, shape (item, node, true_category)
        :math:`\\sum_r \\log p(y_{ir} \\mid z_i = k, \\epsilon_i = \\text{node})`.
    nodes, log_weights : numpy.ndarray
        From :func:`item_quadrature`.

    Returns
    -------
    joint : TensorVariable, shape (item, true_category)
        :math:`\\log \\pi_k + \\log \\int \\phi(\\epsilon) p(y_i \\mid k, \\epsilon)\\,d\\epsilon`.
    effect_mean : TensorVariable, shape (item, K - 1)
        :math:`E[\\epsilon_i \\mid y_i]` with the true category summed out (gold items: given
        their gold category).
    """
    node_joint = item_label_log_probability + log_weights[None, :, None]
    joint = log_prevalence[None, :] + pt.logsumexp(node_joint, axis=1)
    gold = data.gold_index
    mask = np.zeros((data.n_items, data.n_categories))
    known = np.flatnonzero(gold >= 0)
    mask[known] = -np.inf
    mask[known, gold[known]] = 0.0
    full = node_joint + log_prevalence[None, None, :] + mask[:, None, :]
    full = full - pt.logsumexp(full, axis=(1, 2), keepdims=True)
    node_probability = pt.exp(full).sum(axis=2)  # (item, node)
    return joint, (node_probability[:, :, None] * nodes[None]).sum(axis=1)


# ----------------------------------------------------------------------------- the model
def _global_variables(
    data: AnnotationData, priors: ItemDifficultyPriors
) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable]:
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
    item_scale = pm.HalfNormal("item_scale", sigma=np.float64(priors.item_scale), dims="error")
    average = error_log_probability(error_mean[None, :], n_categories)[0]
    pm.Deterministic(
        "confusion",
        pt.broadcast_to(pt.exp(average)[None], (data.n_annotators, n_categories, n_categories)),
        dims=("annotator", "true_category", "category"),
    )
    return prevalence, error_mean, item_scale


def build_item_difficulty(
    data: AnnotationData, priors: ItemDifficultyPriors | None = None
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
    with pm.Model(coords=difficulty_coords(data)) as model:
        prevalence, error_mean, item_scale = _global_variables(data, priors)
        item_effect = pm.Normal("item_effect", 0.0, 1.0, dims=("item", "wrong_label"))
        # Annotators are exchangeable: one (true_category, category) table per item.
        item_logits = error_mean[None, :] + item_scale[None, :] * spread_effect(
            item_effect, n_categories
        )
        item_log_probability = error_log_probability(item_logits, n_categories)

        def row_log_probability(
            item_index: np.ndarray, annotator_index: np.ndarray, label_index: np.ndarray | None
        ) -> pt.TensorVariable:
            per_row = item_log_probability[item_index]
            if label_index is None:
                return per_row
            return select_label(per_row, label_index, n_categories)

        add_label_model(
            data,
            pt.log(prevalence),
            row_log_probability,
            item_error_rate=diagonal_error_rate(item_log_probability, n_categories),
        )
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
    with pm.Model(coords=difficulty_coords(data)) as model:
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
        joint.name = LABEL_JOINT
        model.add_named_variable(joint)
        pm.Potential("label_likelihood", marginal_from_joint(joint, data).sum())
        pm.Deterministic("item_effect", effect_mean, dims=("item", "wrong_label"))
    return model
