"""Pieces shared by the model builders: coordinates and the label model every builder adds.

Every model in the package is a mixture over each item's true category :math:`z_i` of a
per-label distribution :math:`p(y_r = h \\mid z_i = k, \\text{item}, \\text{annotator})`. A builder
describes that distribution once, as a :data:`RowLogProbability` function of index arrays, and
:func:`add_label_model` turns it into

* the potential ``label_likelihood``: :math:`\\sum_i \\log \\sum_k \\pi_k \\prod_r p(y_r \\mid k)`,
  over the compressed long format (unique rows with counts);
* three named (not stored) variables that the estimators evaluate on posterior draws:
  ``label_joint`` (item, true_category), :math:`\\log \\pi_k + \\log p(y_i \\mid z_i = k)`;
  ``annotation_log_probability`` (annotation, true_category, category), the distribution of
  every label given (for predictive checks); and, for models with item difficulty,
  ``item_error_rate`` (item, true_category), the probability that a typical annotator mislabels
  the item if its true category is :math:`k`.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from crowdbayes.data import AnnotationData
from crowdbayes.models._kernels import confusion_item_sum, confusion_marginal_log_likelihood
from crowdbayes.models._likelihood import marginal_from_joint, sum_rows_by_item

__all__ = [
    "LABEL_JOINT",
    "ANNOTATION_LOG_PROBABILITY",
    "ITEM_ERROR_RATE",
    "RowLogProbability",
    "model_coords",
    "add_label_model",
    "confusion_row_log_probability",
    "add_label_likelihood",
    "add_label_log_likelihood",
]

LABEL_JOINT = "label_joint"
ANNOTATION_LOG_PROBABILITY = "annotation_log_probability"
ITEM_ERROR_RATE = "item_error_rate"

#: ``f(item_index, annotator_index, label_index)``: with a label index, the log-probability of
#: each row's label under each true category, shape (row, true_category); with ``None``, of every
#: label value, shape (row, true_category, category).
RowLogProbability = Callable[[np.ndarray, np.ndarray, np.ndarray | None], pt.TensorVariable]


def model_coords(data: AnnotationData) -> dict[str, Any]:
    """Coordinates of every model: the user's ids and label values."""
    categories = list(data.categories)
    return {
        "item": list(data.items),
        "annotator": list(data.annotators),
        "category": categories,
        "true_category": categories,
    }


def _name(var: pt.TensorVariable, name: str) -> pt.TensorVariable:
    model = pm.modelcontext(None)
    var = pt.as_tensor_variable(var)
    var = var.copy(name=name) if var.name is not None or var.owner is None else var
    var.name = name
    model.add_named_variable(var)
    return var


def add_label_model(
    data: AnnotationData,
    log_prevalence: pt.TensorVariable,
    row_log_probability: RowLogProbability,
    item_error_rate: pt.TensorVariable | None = None,
    item_log_probability: pt.TensorVariable | None = None,
    total_log_likelihood: pt.TensorVariable | None = None,
) -> None:
    """Add the marginal label likelihood and the named variables to the current model.

    Parameters
    ----------
    data : AnnotationData
    log_prevalence : TensorVariable, shape (true_category,)
    row_log_probability : RowLogProbability
        The model's per-label distribution given the true category.
    item_error_rate : TensorVariable, shape (item, true_category), optional
        For models with item difficulty: P(a typical annotator mislabels item i | z_i = k).
    item_log_probability : TensorVariable, shape (item, true_category), optional
        :math:`\\log p(y_i \\mid z_i = k)` when the model computes it faster than by summing
        ``row_log_probability`` over rows (the confusion-matrix models use
        :func:`~crowdbayes.models._kernels.confusion_item_sum`).
    total_log_likelihood : TensorVariable, scalar, optional
        The potential's value when the model computes it (with its gradient) faster than
        from ``label_joint``; it must equal the sum of the per-item marginals.
    """
    rows = data.compressed
    if item_log_probability is None:
        terms = row_log_probability(rows.item_index, rows.annotator_index, rows.label_index)
        item_log_probability = sum_rows_by_item(terms, rows)
    joint = _name(log_prevalence[None, :] + item_log_probability, LABEL_JOINT)
    if total_log_likelihood is None:
        total_log_likelihood = marginal_from_joint(joint, data).sum()
    pm.Potential("label_likelihood", total_log_likelihood)
    every = row_log_probability(data.item_index, data.annotator_index, None)
    _name(every, ANNOTATION_LOG_PROBABILITY)
    if item_error_rate is not None:
        _name(item_error_rate, ITEM_ERROR_RATE)


def confusion_row_log_probability(log_confusion: pt.TensorVariable) -> RowLogProbability:
    """The row distribution of a model with one confusion matrix per annotator.

    Parameters
    ----------
    log_confusion : TensorVariable, shape (annotator, true_category, category)

    Returns
    -------
    RowLogProbability

    Examples
    --------
    >>> import numpy as np
    >>> f = confusion_row_log_probability(pt.as_tensor(np.log([[[0.9, 0.1], [0.2, 0.8]]])))
    >>> np.exp(f(np.array([0]), np.array([0]), np.array([1])).eval()).round(2).tolist()
    [[0.1, 0.8]]
    """

    def row_log_probability(
        item_index: np.ndarray, annotator_index: np.ndarray, label_index: np.ndarray | None
    ) -> pt.TensorVariable:
        if label_index is None:
            return log_confusion[annotator_index]
        return log_confusion[annotator_index, :, label_index]

    return row_log_probability


def add_label_likelihood(
    data: AnnotationData, prevalence: pt.TensorVariable, confusion: pt.TensorVariable
) -> None:
    """Add the label model of a confusion-matrix model given probabilities."""
    add_label_log_likelihood(data, pt.log(prevalence), pt.log(confusion))


def add_label_log_likelihood(
    data: AnnotationData, log_prevalence: pt.TensorVariable, log_confusion: pt.TensorVariable
) -> None:
    """Add the label model of a confusion-matrix model given log prevalence and log confusion.

    The per-item sums go through the fused :func:`~crowdbayes.models._kernels.confusion_item_sum`
    and the potential through
    :func:`~crowdbayes.models._kernels.confusion_marginal_log_likelihood`.
    """
    add_label_model(
        data,
        log_prevalence,
        confusion_row_log_probability(log_confusion),
        item_log_probability=confusion_item_sum(log_confusion, data.compressed, data.n_annotators),
        total_log_likelihood=confusion_marginal_log_likelihood(
            log_prevalence,
            log_confusion,
            data.compressed,
            data.n_annotators,
            data.gold_index,
            n_categories=data.n_categories,
        ),
    )
