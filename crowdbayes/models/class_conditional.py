"""Class-conditional Dawid-Skene: one accuracy per annotator and true category, errors uniform.

The confusion row of annotator :math:`j` for true category :math:`k` puts :math:`a_{jk}` on the
diagonal and :math:`(1 - a_{jk}) / (K - 1)` on every other category (rater's
``class_conditional_dawid_skene``).
"""

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from crowdbayes.data import AnnotationData
from crowdbayes.models._common import add_label_likelihood, model_coords
from crowdbayes.models._priors import AccuracyPriors, positive_array
from crowdbayes.models._transforms import stick_breaking

__all__ = ["ClassConditionalPriors", "build_class_conditional", "accuracy_to_confusion"]


@dataclass(frozen=True)
class ClassConditionalPriors(AccuracyPriors):
    """Priors of the class-conditional model (fields as :class:`AccuracyPriors`).

    Examples
    --------
    >>> ClassConditionalPriors(accuracy_alpha=9.0, accuracy_beta=1.0).accuracy_alpha
    9.0
    """


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
    >>> import numpy as np
    >>> accuracy_to_confusion(pt.as_tensor(np.array([0.9])), 2).eval().round(2).tolist()
    [[[0.9, 0.1], [0.1, 0.9]]]
    """
    if accuracy.ndim == 1:
        accuracy = pt.repeat(accuracy[:, None], n_categories, axis=1)
    eye = pt.eye(n_categories)
    acc = accuracy[:, :, None]
    return acc * eye + (1.0 - acc) / (n_categories - 1) * (1.0 - eye)


def build_class_conditional(
    data: AnnotationData, priors: ClassConditionalPriors | None = None
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
        prevalence = pm.Dirichlet(
            "prevalence",
            a=positive_array(priors.prevalence, (n_categories,), "prevalence"),
            dims="category",
            default_transform=stick_breaking,
        )
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
        add_label_likelihood(data, prevalence, confusion)
    return model
