"""One-coin model: a single accuracy per annotator, errors spread evenly over other categories.

The simplest reliability model (the "one-coin" Dawid-Skene of crowd-kit's
``OneCoinDawidSkene``; Paun et al. 2018 call its multinomial relative the pooled model).
"""

from dataclasses import dataclass

import numpy as np
import pymc as pm

from crowdbayes.data import AnnotationData
from crowdbayes.models._common import add_label_likelihood, model_coords
from crowdbayes.models._priors import AccuracyPriors, positive_array
from crowdbayes.models._transforms import stick_breaking
from crowdbayes.models.class_conditional import accuracy_to_confusion

__all__ = ["OneCoinPriors", "build_one_coin"]


@dataclass(frozen=True)
class OneCoinPriors(AccuracyPriors):
    """Priors of the one-coin model (fields as :class:`AccuracyPriors`).

    Examples
    --------
    >>> OneCoinPriors(accuracy_alpha=9.0, accuracy_beta=1.0).accuracy_alpha
    9.0
    """


def build_one_coin(data: AnnotationData, priors: OneCoinPriors | None = None) -> pm.Model:
    """Build the one-coin model with the true category marginalised.

    .. math::

        a_j \\sim \\operatorname{Beta}(a_0, b_0), \\quad
        \\theta_{jkl} = a_j [k = l] + \\tfrac{1 - a_j}{K - 1} [k \\ne l]

    Parameters
    ----------
    data : AnnotationData
    priors : OneCoinPriors, optional

    Returns
    -------
    pymc.Model
        Free variables ``prevalence`` and ``accuracy`` (annotator); the deterministic
        ``confusion``.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> data = simulate_dawid_skene(n_items=20, n_annotators=3, random_seed=1).data
    >>> sorted(v.name for v in build_one_coin(data).free_RVs)
    ['accuracy', 'prevalence']
    """
    priors = OneCoinPriors() if priors is None else priors
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
            dims="annotator",
        )
        confusion = pm.Deterministic(
            "confusion",
            accuracy_to_confusion(accuracy, n_categories),
            dims=("annotator", "true_category", "category"),
        )
        add_label_likelihood(data, prevalence, confusion)
    return model
