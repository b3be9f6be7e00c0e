"""What the model files share: starts, coordinates, parametrisations, the label likelihood.

Every model is a mixture over each item's true category :math:`z_i`,
:math:`p(y_i) = \\sum_k \\pi_k \\prod_{r \\in i} p(y_r \\mid z_i = k)`. A model file states the
per-label distribution as a :data:`RowLogProbability` function of its parameters and passes it
to :func:`observe_labels`, which adds the observed variable ``labels``: its log-density is the
per-item log-likelihood (true category summed out; gold items keep their gold term) and its
generative graph replicates every label. The confusion-matrix models' likelihood is a
:class:`ConfusionMixture` node (plain PyTensor inside), which :mod:`crowdbayes.fast` replaces by
a fused numba kernel under the numba backend.
"""

from collections.abc import Callable
from typing import Any, Literal, cast

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from numpy.polynomial.hermite_e import hermegauss
from numpy.typing import ArrayLike
from pytensor.compile.builders import SymbolicOp
from pytensor.gradient import disconnected_type

from crowdbayes.data import AnnotationData
from crowdbayes.em import Start, em_confusion
from crowdbayes.fast.transforms import stick_breaking
from crowdbayes.priors import AccuracyPriors, positive_array
from crowdbayes.summaries import CONFUSION_ROWS_TAG, ITEM_ERROR_RATE, LABEL_JOINT

__all__ = [
    "ITEM_ERROR_RATE",
    "QUADRATURE_BUDGET",
    "LABEL_JOINT",
    "ConfusionMixture",
    "RowLogProbability",
    "accuracy_start",
    "accuracy_to_confusion",
    "confusion_rows",
    "diagonal_error_rate",
    "annotator_logits",
    "error_coords",
    "error_mean_prior",
    "error_log_probability",
    "error_logits",
    "non_centred_start",
    "integrated_item_joint",
    "item_quadrature",
    "mixture_log_likelihood",
    "model_coords",
    "observe_integrated_labels",
    "observe_labels",
    "off_diagonal_coords",
    "prevalence_prior",
    "select_label",
    "slot_matrix",
    "spread_effect",
    "sum_rows_by_item",
    "wrong_label_slots",
]


#: ``f(item_index, annotator_index, label_index, *params)``: log p(each row's label | k), shape
#: (row, true_category); with ``label_index=None``, of every label, (row, true_category, category).
RowLogProbability = Callable[..., pt.TensorVariable]


# ---------------------------------------------------------------------------- starting values
def accuracy_start(data: AnnotationData, priors: AccuracyPriors, structure: str) -> Start:
    """EM start of the accuracy models (one-coin, class-conditional); EM's point is the mode.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> data = simulate_dawid_skene(n_items=20, n_annotators=3, random_seed=1).data
    >>> accuracy_start(data, AccuracyPriors(), "one_coin").initial_values["accuracy"].shape
    (3,)
    """
    em = em_confusion(
        data,
        structure=structure,  # type: ignore[arg-type]
        prevalence_concentration=priors.prevalence,
        accuracy_prior=(priors.accuracy_alpha, priors.accuracy_beta),
    )
    return Start(
        em=em,
        initial_values={"prevalence": em.start_prevalence, "accuracy": em.start_accuracy},
        mode={"prevalence": em.prevalence, "accuracy": em.accuracy, "confusion": em.confusion},
    )


def prevalence_prior(data: AnnotationData, concentration: float | ArrayLike) -> pt.TensorVariable:
    """The ``prevalence`` Dirichlet every model has, on the stick-breaking transform.

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1], "annotator": ["a", "b"],
    ...                                         "label": [0, 1]}))
    >>> with pm.Model(coords=model_coords(data)):
    ...     prevalence = prevalence_prior(data, 3.0)
    >>> prevalence.eval().shape
    (2,)
    """
    alpha = positive_array(concentration, (data.n_categories,), "prevalence")
    return pm.Dirichlet("prevalence", a=alpha, dims="category", default_transform=stick_breaking)


# -------------------------------------------------------------------------------- coordinates
def model_coords(data: AnnotationData) -> dict[str, Any]:
    """Coordinates of every model: the user's ids and label values, and annotation numbers.

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 2], "annotator": ["a", "b"],
    ...                                         "label": ["x", "y"]}))
    >>> sorted(model_coords(data))
    ['annotation', 'annotator', 'category', 'item', 'true_category']
    """
    categories = list(data.categories)
    return {
        "item": list(data.items),
        "annotator": list(data.annotators),
        "category": categories,
        "true_category": categories,
        "annotation": np.arange(data.n_annotations),
    }


def off_diagonal_coords(n_categories: int) -> tuple[np.ndarray, np.ndarray]:
    """Row (true category) and column (label) of every off-diagonal cell, row-major.

    Examples
    --------
    >>> [a.tolist() for a in off_diagonal_coords(3)]
    [[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]]
    """
    rows, cols = np.nonzero(~np.eye(n_categories, dtype=bool))
    return rows, cols


def error_logits(confusion: np.ndarray) -> np.ndarray:
    """Off-diagonal log-odds against the diagonal of (..., K, K) confusion rows, row-major.

    Examples
    --------
    >>> error_logits(np.array([[0.8, 0.2], [0.4, 0.6]])).round(3).tolist()
    [-1.386, -0.405]
    """
    rows, cols = off_diagonal_coords(confusion.shape[-1])
    log_confusion = np.log(confusion)
    return log_confusion[..., rows, cols] - log_confusion[..., rows, rows]


def non_centred_start(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Population mean, scale and standardised effects of per-annotator values (first axis).

    Starting values of a non-centred hierarchy ``mean + scale * effect``: the scale is kept
    within [0.2, 3] and the effects within [-3, 3], so no chain starts in a funnel's neck or
    far in a tail.

    Examples
    --------
    >>> mean, scale, effect = non_centred_start(np.array([1.0, 2.0, 3.0]))
    >>> float(mean), round(float(scale), 3), effect.round(2).tolist()
    (2.0, 0.816, [-1.22, 0.0, 1.22])
    """
    mean = values.mean(axis=0)
    scale = np.clip(values.std(axis=0), 0.2, 3.0)
    return mean, scale, np.clip((values - mean) / scale, -3.0, 3.0)


def error_coords(data: AnnotationData) -> dict[str, list[object]]:
    """Model coordinates plus ``error`` and ``wrong_label``, for the logit models.

    ``error``: the off-diagonal cells ``"true->label"``, row-major; ``wrong_label``: the K - 1
    slots of an item effect.

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1], "annotator": ["a", "b"],
    ...                                         "label": ["x", "y"]}))
    >>> coords = error_coords(data)
    >>> coords["error"], coords["wrong_label"]
    (['x->y', 'y->x'], [0])
    """
    rows, cols = off_diagonal_coords(data.n_categories)
    coords = model_coords(data)
    coords["error"] = [
        f"{data.categories[r]}->{data.categories[c]}" for r, c in zip(rows, cols, strict=True)
    ]
    coords["wrong_label"] = list(range(data.n_categories - 1))
    return coords


def error_mean_prior(priors: Any, n_categories: int) -> pt.TensorVariable:
    """``error_mean`` (dims ``error``): the population wrong-vs-right logits.

    Normal around the log-odds of ``priors.prior_accuracy``, with sd ``priors.error_mean_sd``
    (:class:`~crowdbayes.priors.LogitPriors`).

    Examples
    --------
    >>> from crowdbayes.priors import LogitPriors
    >>> with pm.Model(coords={"error": ["0->1", "1->0"]}):
    ...     error_mean_prior(LogitPriors(), 2).eval().shape
    (2,)
    """
    return pm.Normal(
        "error_mean",
        mu=np.float64(priors.mean_location(n_categories)),
        sigma=np.float64(priors.error_mean_sd),
        dims="error",
    )


def annotator_logits(priors: Any, error_mean: pt.TensorVariable) -> pt.TensorVariable:
    """Each annotator's wrong-vs-right logits pooled around ``error_mean``, non-centred.

    Adds ``error_scale`` (HalfNormal(``priors.error_scale``), dims ``error``) and
    ``annotator_effect`` (standard normal, dims ``annotator, error``) and returns
    ``error_mean + error_scale * annotator_effect`` (annotator, error).

    Examples
    --------
    >>> from crowdbayes.models import HierarchicalDawidSkenePriors
    >>> with pm.Model(coords={"error": ["0->1", "1->0"], "annotator": ["a", "b", "c"]}):
    ...     logits = annotator_logits(HierarchicalDawidSkenePriors(), pt.zeros(2))
    >>> logits.eval().shape
    (3, 2)
    """
    error_scale = pm.HalfNormal("error_scale", sigma=np.float64(priors.error_scale), dims="error")
    effect = pm.Normal("annotator_effect", 0.0, 1.0, dims=("annotator", "error"))
    return error_mean[None, :] + error_scale[None, :] * effect


# --------------------------------------------------------------------------- parametrisations
def accuracy_to_confusion(accuracy: pt.TensorVariable, n_categories: int) -> pt.TensorVariable:
    """Confusion matrices from accuracies, errors spread evenly over the other categories.

    Parameters
    ----------
    accuracy : TensorVariable, shape (annotator, true_category) or (annotator,)
    n_categories : int

    Returns
    -------
    TensorVariable, shape (annotator, true_category, category)

    Examples
    --------
    >>> accuracy_to_confusion(pt.as_tensor(np.array([0.9])), 2).eval().round(2).tolist()
    [[[0.9, 0.1], [0.1, 0.9]]]
    """
    if accuracy.ndim == 1:
        accuracy = pt.repeat(accuracy[:, None], n_categories, axis=1)
    eye = pt.eye(n_categories)
    acc = accuracy[:, :, None]
    return acc * eye + (1.0 - acc) / (n_categories - 1) * (1.0 - eye)


def error_log_probability(error_logits: pt.TensorVariable, n_categories: int) -> pt.TensorVariable:
    """Log-probabilities of every label from off-diagonal logits, diagonal logit 0.

    Each row's logits are put together by concatenation and basic slicing (no advanced
    indexing or matrix product, so the graph and its gradient are cheap in every backend).

    Parameters
    ----------
    error_logits : TensorVariable, shape (n, K (K - 1))
        Log-odds of each wrong label against the right one, off-diagonal cells row-major
        (:func:`off_diagonal_coords`).
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
    return pt.special.log_softmax(pt.stack(rows, axis=1), axis=-1)


def wrong_label_slots(n_categories: int) -> np.ndarray:
    """For every off-diagonal cell (row-major), the rank of its label among the wrong labels.

    An item effect's :math:`m`-th value goes to the :math:`m`-th wrong label of each true
    category, wrong labels taken in category order.

    Examples
    --------
    >>> wrong_label_slots(3).tolist()  # cells 0->1, 0->2, 1->0, 1->2, 2->0, 2->1
    [0, 1, 0, 1, 0, 1]
    """
    return np.tile(np.arange(n_categories - 1), n_categories)


def slot_matrix(n_categories: int) -> np.ndarray:
    """0/1 matrix (K - 1, K (K - 1)): ``effect @ slot_matrix`` spreads an item effect on cells.

    Examples
    --------
    >>> slot_matrix(2).tolist()
    [[1.0, 1.0]]
    """
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


def select_label(
    log_probability: pt.TensorVariable, label_index: Any, n_categories: int
) -> pt.TensorVariable:
    """``log_probability[r, :, label_index[r]]`` for (row, K, K) log-probabilities -> (row, K).

    >>> select_label(pt.as_tensor(np.arange(8.0).reshape(2, 2, 2)), [1, 0], 2).eval().tolist()
    [[1.0, 3.0], [4.0, 6.0]]
    """
    onehot = pt.eq(pt.as_tensor(label_index)[:, None], pt.arange(n_categories)[None, :])
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


# -------------------------------------------------------------------------------- quadrature
#: Upper bound on the (row or item) x node x category x category values of the quadrature.
QUADRATURE_BUDGET = 2_000_000


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
    effect_mean : TensorVariable, shape (item, n_dims)
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


# -------------------------------------------------------------------------- label likelihood
def sum_rows_by_item(terms: pt.TensorVariable, item_index: Any, n_items: Any) -> pt.TensorVariable:
    """Sum per-row terms of shape (row, true_category) per item -> (item, true_category).

    Examples
    --------
    >>> sum_rows_by_item(pt.ones((3, 2)), np.array([0, 0, 1]), 2).eval().tolist()
    [[2.0, 2.0], [1.0, 1.0]]
    """
    return pt.zeros((n_items, terms.shape[1]))[item_index].inc(terms)


def mixture_log_likelihood(joint: pt.TensorVariable, gold: Any) -> pt.TensorVariable:
    """Per-item :math:`\\log p(y_i)` from the joint :math:`\\log p(z_i = k, y_i)` (item, k).

    Free items sum the true category out (log-sum-exp); gold items (``gold >= 0``) keep their
    gold category's term.

    Examples
    --------
    >>> joint = pt.as_tensor(np.log([[0.2, 0.3], [0.1, 0.1]]))
    >>> mixture_log_likelihood(joint, np.array([-1, 1])).exp().eval().round(2).tolist()
    [0.5, 0.1]
    """
    gold = pt.as_tensor(gold)
    known = pt.take_along_axis(joint, pt.maximum(gold, 0)[:, None], axis=1)[:, 0]
    return pt.where(pt.ge(gold, 0), known, pt.logsumexp(joint, axis=1))


def confusion_rows(
    item_index: Any, annotator_index: Any, label_index: Any, log_confusion: pt.TensorVariable
) -> pt.TensorVariable:
    """The row distribution of a confusion-matrix model: ``confusion[annotator, k, label]``.

    :func:`observe_labels` evaluates the likelihood of a model with this row distribution as a
    :class:`ConfusionMixture`.

    Examples
    --------
    >>> log_confusion = pt.as_tensor(np.log([[[0.9, 0.1], [0.2, 0.8]]]))
    >>> np.exp(confusion_rows([0], [0], [1], log_confusion).eval()).round(2).tolist()
    [[0.1, 0.8]]
    """
    if label_index is None:
        return log_confusion[annotator_index]
    return log_confusion[annotator_index, :, label_index]


class ConfusionMixture(SymbolicOp):
    """Per-item log-likelihood of a confusion-matrix model (true category summed out).

    Inputs: ``log_prevalence`` (true_category,), ``log_confusion`` (annotator,
    true_category, category), and per label row ``annotator``, ``label`` and ``item`` (int64),
    then ``gold`` (item,) int64 (gold category code or -1). Output, per item:
    :math:`\\log \\sum_k \\pi_k \\prod_r \\theta_{a_r, k, y_r}` (gold items: their gold term).
    Its inner graph is that expression in PyTensor, which every backend can run; under the
    numba backend :mod:`crowdbayes.fast.rewrites` swaps its sum over items, and that sum's
    gradient (:class:`ConfusionMixturePullback`), for a fused kernel.
    """

    @staticmethod
    def filter_inputs(*inputs: Any) -> tuple[pt.TensorVariable, ...]:
        log_prevalence, log_confusion, *rows = inputs
        floats = [
            pt.as_tensor_variable(x).astype("float64") for x in (log_prevalence, log_confusion)
        ]
        return (*floats, *(pt.as_tensor_variable(x).astype("int64") for x in rows))

    def build_inner_graph(  # type: ignore[override]
        self,
        log_prevalence: pt.TensorVariable,
        log_confusion: pt.TensorVariable,
        annotator: pt.TensorVariable,
        label: pt.TensorVariable,
        item: pt.TensorVariable,
        gold: pt.TensorVariable,
    ) -> list[pt.TensorVariable]:
        rows = confusion_rows(item, annotator, label, log_confusion)  # (row, true_category)
        joint = log_prevalence + sum_rows_by_item(rows, item, gold.shape[0])
        return [mixture_log_likelihood(joint, gold)]

    def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
        grads = ConfusionMixturePullback()(*inputs, cotangents[0])
        return [*cast(list, grads), *(disconnected_type() for _ in inputs[2:])]

    def connection_pattern(self, node: Any) -> list[list[bool]]:
        return [[True], [True], [False], [False], [False], [False]]


class ConfusionMixturePullback(SymbolicOp):
    """Gradient of :class:`ConfusionMixture` given its output's cotangent (item,).

    Inputs: those of :class:`ConfusionMixture`, then the cotangent. Outputs: the gradients
    with respect to ``log_prevalence`` and ``log_confusion`` (PyTensor's, of the reference).
    """

    @staticmethod
    def filter_inputs(*inputs: Any) -> tuple[pt.TensorVariable, ...]:
        *mixture_inputs, cotangent = inputs
        cotangent = pt.as_tensor_variable(cotangent).astype("float64")
        return (*ConfusionMixture.filter_inputs(*mixture_inputs), cotangent)

    def build_inner_graph(self, *inputs: pt.TensorVariable) -> list[pt.TensorVariable]:  # type: ignore[override]
        *args, cotangent = inputs
        (out,) = ConfusionMixture.build_inner_graph(cast(Any, None), *args)
        return cast(
            list[pt.TensorVariable],
            pytensor.grad(None, wrt=args[:2], known_grads={out: cotangent}),
        )


Replicate = Literal["same-items", "new-items"]


def observe_labels(
    data: AnnotationData,
    log_prevalence: pt.TensorVariable,
    row_log_probability: RowLogProbability,
    *params: pt.TensorVariable,
    replicate: Replicate = "same-items",
) -> pt.TensorVariable:
    """Add the observed ``labels`` variable: the marginal label likelihood of the model.

    Parameters
    ----------
    data : AnnotationData
    log_prevalence : TensorVariable, shape (true_category,)
    row_log_probability : RowLogProbability
        The model's distribution of one label given the true category, a function of the rows'
        indices and ``params`` only (:func:`confusion_rows` for the confusion-matrix models).
    *params : TensorVariable
        The model tensors ``row_log_probability`` reads.
    replicate : {"same-items", "new-items"}
        How the generative graph (``pm.sample_posterior_predictive``) draws each item's true
        category: from its posterior given the observed labels and the parameters ("the same
        items, labelled again"; gold items keep theirs), or from the prevalence ("new items",
        which with parameters from the prior is the prior predictive).

    Returns
    -------
    TensorVariable
        ``labels``, dims ``annotation``, observed at ``data.label_index``. Its log-density has
        one value per item (dims ``item``): :math:`\\log \\sum_k \\pi_k \\prod_{r \\in i}
        p(y_r \\mid k)`; the model also gets the named variable ``label_joint`` (item,
        true_category), :math:`\\log \\pi_k + \\sum_{r \\in i} \\log p(y_r \\mid k)`.

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 2], "annotator": list("abb"),
    ...                                         "label": [0, 1, 1]}))
    >>> conf = np.log([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.4, 0.6]]])
    >>> with pm.Model(coords=model_coords(data)) as m:
    ...     labels = observe_labels(data, pt.log([0.5, 0.5]), confusion_rows, pt.as_tensor(conf))
    >>> np.exp(m.logp(sum=False)[0].eval()).round(4).tolist()  # 0.5 * 0.27 + 0.5 * 0.12, ...
    [0.195, 0.45]
    """
    item, annotator, observed = data.item_index, data.annotator_index, data.label_index
    gold, n_items, k = data.gold_index, data.n_items, data.n_categories
    fused = row_log_probability is confusion_rows

    def joint_of(log_prevalence: Any, labels: Any, *params: Any) -> pt.TensorVariable:
        rows = row_log_probability(item, annotator, labels, *params)  # (row, true_category)
        return log_prevalence + sum_rows_by_item(rows, item, n_items)

    def logp(labels: Any, log_prevalence: Any, *params: Any) -> pt.TensorVariable:
        if fused:
            out = ConfusionMixture()(log_prevalence, params[0], annotator, labels, item, gold)
            return cast(pt.TensorVariable, out)
        return mixture_log_likelihood(joint_of(log_prevalence, labels, *params), gold)

    def replicate_labels(log_prevalence: Any, *args: Any) -> pt.TensorVariable:
        *params, _ = args  # the last is the size PyMC passes
        if replicate == "same-items":
            z_logits = joint_of(log_prevalence, observed, *params)
        else:
            z_logits = pt.broadcast_to(log_prevalence, (n_items, k))
        z = pm.Categorical.dist(logit_p=z_logits)
        z = pt.where(pt.ge(gold, 0), gold, z)
        every = row_log_probability(item, annotator, None, *params)  # (row, true, category)
        return pm.Categorical.dist(logit_p=every[np.arange(len(item)), z[item]])

    model = pm.modelcontext(None)
    joint = joint_of(log_prevalence, observed, *params).copy(name=LABEL_JOINT)
    setattr(joint.tag, CONFUSION_ROWS_TAG, fused)
    model.add_named_variable(joint)
    cores = ",".join(
        "(" + ",".join(f"p{i}_{d}" for d in range(p.ndim)) + ")" for i, p in enumerate(params)
    )
    return pm.CustomDist(
        "labels",
        log_prevalence,
        *params,
        logp=logp,
        dist=replicate_labels,
        signature=f"(k),{cores}->(r)",
        observed=observed,
        dims="annotation",
    )


def _no_replication(*args: Any, **kwargs: Any) -> np.ndarray:
    raise NotImplementedError(
        "a model with the item effects integrated out serves the log-likelihood and the mode; "
        "replicate labels from the model with item effects"
    )


def observe_integrated_labels(data: AnnotationData, joint: pt.TensorVariable) -> pt.TensorVariable:
    """Add ``labels`` observed through a per-item joint whose item effects are integrated out.

    The log-density is :func:`mixture_log_likelihood` of ``joint`` (item, true_category), as in
    :func:`observe_labels`; these models serve the per-item log-likelihood and the mode, so the
    variable has no generative graph (replication raises NotImplementedError).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 2], "annotator": ["a", "b"],
    ...                                         "label": [0, 1]}))
    >>> with pm.Model(coords=model_coords(data)) as m:
    ...     _ = observe_integrated_labels(data, pt.as_tensor(np.log([[0.2, 0.3], [0.1, 0.1]])))
    >>> np.exp(m.logp(sum=False)[0].eval()).round(2).tolist()
    [0.5, 0.2]
    """
    gold = data.gold_index

    def logp(labels: Any, joint: Any, design: Any) -> pt.TensorVariable:
        return mixture_log_likelihood(joint, gold)

    model = pm.modelcontext(None)
    model.add_named_variable(pt.as_tensor(joint).copy(name=LABEL_JOINT))
    return pm.CustomDist(
        "labels",
        joint,
        data.label_index,
        logp=logp,
        random=_no_replication,
        signature="(i,k),(r)->(r)",
        observed=data.label_index,
        dims="annotation",
    )
