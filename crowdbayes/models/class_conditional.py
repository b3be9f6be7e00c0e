"""Class-conditional Dawid-Skene: one accuracy per annotator and true category, errors uniform.

The confusion row of annotator :math:`j` for true category :math:`k` puts :math:`a_{jk}` on the
diagonal and :math:`(1 - a_{jk}) / (K - 1)` on every other category (rater's
``class_conditional_dawid_skene``).
"""

from dataclasses import dataclass
from functools import partial

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from crowdbayes.data import AnnotationData
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.models._shared import (
    Replicate,
    accuracy_start,
    accuracy_to_confusion,
    confusion_rows,
    model_coords,
    observe_labels,
    prevalence_prior,
)
from crowdbayes.priors import AccuracyPriors

__all__ = ["ClassConditional", "ClassConditionalPriors", "build_class_conditional"]


@dataclass(frozen=True)
class ClassConditionalPriors(AccuracyPriors):
    """Priors of the class-conditional model (fields as :class:`AccuracyPriors`).

    Examples
    --------
    >>> ClassConditionalPriors(accuracy_alpha=9.0, accuracy_beta=1.0).accuracy_alpha
    9.0
    """


def build_class_conditional(
    data: AnnotationData,
    priors: ClassConditionalPriors | None = None,
    *,
    replicate: Replicate = "same-items",
) -> pm.Model:
    """Build the class-conditional Dawid-Skene model with the true category marginalised.

    .. math::

        \\pi \\sim \\operatorname{Dirichlet}(\\alpha), \\quad
        a_{jk} \\sim \\operatorname{Beta}(a_0, b_0), \\quad
        \\theta_{jkl} = a_{jk} [k = l] + \\tfrac{1 - a_{jk}}{K - 1} [k \\ne l]

    Parameters
    ----------
    data : AnnotationData
    priors : ClassConditionalPriors, optional

    Returns
    -------
    pymc.Model
        Free variables ``prevalence`` and ``accuracy`` (annotator, true_category); the
        deterministic ``confusion`` (annotator, true_category, category).

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> data = simulate_dawid_skene(n_items=20, n_annotators=3, random_seed=1).data
    >>> sorted(v.name for v in build_class_conditional(data).free_RVs)
    ['accuracy', 'prevalence']
    """
    priors = ClassConditionalPriors() if priors is None else priors
    n_categories = data.n_categories
    with pm.Model(coords=model_coords(data)) as model:
        prevalence = prevalence_prior(data, priors.prevalence)
        accuracy = pm.Beta(
            "accuracy",
            alpha=np.float64(priors.accuracy_alpha),
            beta=np.float64(priors.accuracy_beta),
            dims=("annotator", "true_category"),
        )
        confusion = pm.Deterministic(
            "confusion",
            accuracy_to_confusion(accuracy, n_categories),
            dims=("annotator", "true_category", "category"),
        )
        observe_labels(
            data, pt.log(prevalence), confusion_rows, pt.log(confusion), replicate=replicate
        )
    return model


class ClassConditional(BayesianCrowdModel):
    """Class-conditional Dawid-Skene: one accuracy per annotator and true category.

    Priors: :class:`ClassConditionalPriors` or a dict of its fields.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> sim = simulate_dawid_skene(n_items=200, n_annotators=10, random_seed=0)
    >>> cc = ClassConditional().fit(sim.annotations, method="map", random_seed=0)
    >>> cc.datatree_.posterior["accuracy"].dims
    ('chain', 'draw', 'annotator', 'true_category')
    """

    name, priors_class = "class-conditional", ClassConditionalPriors
    builder = staticmethod(build_class_conditional)
    start = staticmethod(partial(accuracy_start, structure="class_conditional"))
    diagnostic_vars = ("prevalence", "accuracy")
    default_tune = 500
