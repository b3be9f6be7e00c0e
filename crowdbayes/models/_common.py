"""Pieces shared by the model builders: coordinates and the marginal-likelihood potential."""

from typing import Any

import pymc as pm
import pytensor.tensor as pt

from crowdbayes.data import AnnotationData
from crowdbayes.models._likelihood import marginal_log_likelihood

__all__ = ["model_coords", "add_label_likelihood"]


def model_coords(data: AnnotationData) -> dict[str, Any]:
    """Coordinates of every model: the user's ids and label values."""
    categories = list(data.categories)
    return {
        "item": list(data.items),
        "annotator": list(data.annotators),
        "category": categories,
        "true_category": categories,
    }


def add_label_likelihood(
    data: AnnotationData, prevalence: pt.TensorVariable, confusion: pt.TensorVariable
) -> None:
    """Add the marginal likelihood of the labels to the current model as a potential.

    ``confusion`` may be given on the log scale through ``log_confusion`` in the model
    (see the hierarchical builder); here both are probabilities.
    """
    add_label_log_likelihood(data, pt.log(prevalence), pt.log(confusion))


def add_label_log_likelihood(
    data: AnnotationData, log_prevalence: pt.TensorVariable, log_confusion: pt.TensorVariable
) -> None:
    """Add the marginal likelihood of the labels given log prevalence and log confusion."""
    item_ll = marginal_log_likelihood(log_prevalence, log_confusion, data)
    pm.Potential("label_likelihood", item_ll.sum())


__all__ += ["add_label_log_likelihood"]
