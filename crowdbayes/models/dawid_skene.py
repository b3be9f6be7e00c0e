"""Dawid-Skene: a full confusion matrix per annotator, with Dirichlet priors.

Dawid, A. P. & Skene, A. M. (1979). Maximum likelihood estimation of observer error-rates using
the EM algorithm. *Applied Statistics* 28(1), 20-28. The Bayesian form and default priors follow
the R package rater (Pullin, Vukcevic et al.), and the plate diagram of Paun et al. (2018),
Figure 2.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import ArrayLike

from crowdbayes.data import AnnotationData
from crowdbayes.em import Start, dirichlet_confusion, em_confusion
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.fast.transforms import stick_breaking
from crowdbayes.models._shared import (
    Replicate,
    confusion_rows,
    model_coords,
    observe_labels,
    prevalence_prior,
)
from crowdbayes.priors import PriorsBase, check_positive, check_probability, positive_array

__all__ = ["DawidSkene", "DawidSkenePriors", "build_dawid_skene", "start_dawid_skene"]


@dataclass(frozen=True, eq=False)
class DawidSkenePriors(PriorsBase):
    """Priors of the Dawid-Skene model.

    Parameters
    ----------
    prevalence : float or array of shape (category,)
        Dirichlet concentration of the category prevalence. Default 3 for every category
        (rater's default).
    confusion : float or array, optional
        Shape (), (category, category) or (annotator, category, category).
        Dirichlet concentration of each confusion row (true category -> given label). A scalar
        applies to every entry. Default ``None``: built from ``pseudo_count`` and
        ``prior_accuracy``.
    pseudo_count : float
        Total concentration of a confusion row when ``confusion`` is None. Default 8.
    prior_accuracy : float
        Share of ``pseudo_count`` on the diagonal when ``confusion`` is None. Default 0.6,
        which makes every annotator better than chance a priori and breaks the label-switching
        symmetry.

    Examples
    --------
    >>> DawidSkenePriors().confusion_concentration(n_annotators=2, n_categories=2)[0].tolist()
    [[4.8, 3.2], [3.2, 4.8]]
    """

    prevalence: float | ArrayLike = 3.0
    confusion: float | ArrayLike | None = None
    pseudo_count: float = 8.0
    prior_accuracy: float = 0.6

    def __post_init__(self) -> None:
        check_positive(self.pseudo_count, "pseudo_count")
        check_probability(self.prior_accuracy, "prior_accuracy")
        for name in ("prevalence", "confusion"):
            value = getattr(self, name)
            if value is not None and not np.isscalar(value):
                object.__setattr__(self, name, np.asarray(value, dtype=float))

    def __eq__(self, other: Any) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    def prevalence_concentration(self, n_categories: int) -> np.ndarray:
        """Dirichlet concentration of the prevalence, shape (category,)."""
        return positive_array(self.prevalence, (n_categories,), "prevalence")

    def confusion_concentration(self, n_annotators: int, n_categories: int) -> np.ndarray:
        """Dirichlet concentration of every confusion row, shape (annotator, category, category)."""
        shape = (n_annotators, n_categories, n_categories)
        if self.confusion is None:
            base = dirichlet_confusion(self.pseudo_count, self.prior_accuracy, n_categories)
            return positive_array(base, shape, "confusion")
        return positive_array(self.confusion, shape, "confusion")


def build_dawid_skene(
    data: AnnotationData,
    priors: DawidSkenePriors | None = None,
    *,
    replicate: Replicate = "same-items",
) -> pm.Model:
    """Build the Bayesian Dawid-Skene model with the true category marginalised.

    .. math::

        \\pi &\\sim \\operatorname{Dirichlet}(\\alpha) \\\\
        \\theta_{j,k} &\\sim \\operatorname{Dirichlet}(\\beta_{j,k}) \\\\
        z_i &\\sim \\operatorname{Categorical}(\\pi) \\quad\\text{(summed out)} \\\\
        y_{ir} \\mid z_i = k &\\sim \\operatorname{Categorical}(\\theta_{j_{ir},k})

    Parameters
    ----------
    data : AnnotationData
    priors : DawidSkenePriors, optional

    Returns
    -------
    pymc.Model
        Free variables ``prevalence`` (category) and ``confusion``
        (annotator, true_category, category).

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> data = simulate_dawid_skene(n_items=20, n_annotators=3, random_seed=1).data
    >>> model = build_dawid_skene(data)
    >>> sorted(v.name for v in model.free_RVs)
    ['confusion', 'prevalence']
    """
    priors = DawidSkenePriors() if priors is None else priors
    beta = priors.confusion_concentration(data.n_annotators, data.n_categories)
    with pm.Model(coords=model_coords(data)) as model:
        prevalence = prevalence_prior(data, priors.prevalence)
        confusion = pm.Dirichlet(
            "confusion",
            a=beta,
            dims=("annotator", "true_category", "category"),
            default_transform=stick_breaking,
        )
        # y_r | z_i = k ~ Categorical(confusion[annotator_r, k]); z_i ~ Categorical(prevalence)
        observe_labels(
            data, pt.log(prevalence), confusion_rows, pt.log(confusion), replicate=replicate
        )
    return model


def start_dawid_skene(data: AnnotationData, priors: DawidSkenePriors) -> Start:
    """EM for the Dawid-Skene posterior: its fixed point is the exact mode of the model.

    NUTS starts at the smoothed EM estimate (posterior means given EM's label probabilities).

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> data = simulate_dawid_skene(n_items=20, n_annotators=3, random_seed=1).data
    >>> sorted(start_dawid_skene(data, DawidSkenePriors()).initial_values)
    ['confusion', 'prevalence']
    """
    em = em_confusion(
        data,
        structure="full",
        prevalence_concentration=priors.prevalence_concentration(data.n_categories),
        confusion_concentration=priors.confusion_concentration(
            data.n_annotators, data.n_categories
        ),
    )
    return Start(
        em=em,
        initial_values={"prevalence": em.start_prevalence, "confusion": em.start_confusion},
        mode={"prevalence": em.prevalence, "confusion": em.confusion},
    )


class DawidSkene(BayesianCrowdModel):
    """Bayesian Dawid-Skene: a full confusion matrix per annotator (Dirichlet priors).

    Priors: :class:`DawidSkenePriors` or a dict of its fields (default: rater's (prevalence
    Dirichlet(3); confusion rows Dirichlet with pseudo-count 8 and prior accuracy 0.6)).

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> sim = simulate_dawid_skene(n_items=200, n_annotators=10, random_seed=0)
    >>> ds = DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> bool((ds.labels_["label"] == sim.true_labels).mean() > 0.9)
    True
    """

    name, priors_class = "dawid-skene", DawidSkenePriors
    builder = staticmethod(build_dawid_skene)
    start = staticmethod(start_dawid_skene)
    relabel_exact = True
    default_tune = 500
    default_target_accept = 0.65
