"""One-coin model: a single accuracy per annotator, errors spread evenly over other categories.

The simplest reliability model (the "one-coin" Dawid-Skene of crowd-kit's
``OneCoinDawidSkene``; Paun et al. 2018 call its multinomial relative the pooled model).
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

__all__ = ["OneCoin", "OneCoinPriors", "build_one_coin"]


@dataclass(frozen=True)
class OneCoinPriors(AccuracyPriors):
    """Priors of the one-coin model (fields as :class:`AccuracyPriors`).

    Examples
    --------
    >>> OneCoinPriors(accuracy_alpha=9.0, accuracy_beta=1.0).accuracy_alpha
    9.0
    """


def build_one_coin(
    data: AnnotationData,
    priors: OneCoinPriors | None = None,
    *,
    replicate: Replicate = "same-items",
) -> pm.Model:
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
        prevalence = prevalence_prior(data, priors.prevalence)
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
        observe_labels(
            data, pt.log(prevalence), confusion_rows, pt.log(confusion), replicate=replicate
        )
    return model


class OneCoin(BayesianCrowdModel):
    """One-coin model: one accuracy per annotator, errors uniform.

    Priors: :class:`OneCoinPriors` or a dict of its fields.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> sim = simulate_dawid_skene(n_items=200, n_annotators=10, random_seed=0)
    >>> OneCoin().fit(sim.annotations, method="map", random_seed=0).annotators_.shape
    (10, 4)
    """

    name, priors_class = "one-coin", OneCoinPriors
    builder = staticmethod(build_one_coin)
    start = staticmethod(partial(accuracy_start, structure="one_coin"))
    diagnostic_vars = ("prevalence", "accuracy")
    default_tune = 500
    default_target_accept = 0.65
