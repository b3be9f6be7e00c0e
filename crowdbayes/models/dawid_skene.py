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
from numpy.typing import ArrayLike

from crowdbayes.data import AnnotationData
from crowdbayes.models._common import add_label_likelihood, model_coords
from crowdbayes.models._priors import (
    PriorsBase,
    check_positive,
    check_probability,
    dirichlet_confusion,
    positive_array,
)
from crowdbayes.models._transforms import stick_breaking

__all__ = ["DawidSkenePriors", "build_dawid_skene"]


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


def build_dawid_skene(data: AnnotationData, priors: DawidSkenePriors | None = None) -> pm.Model:
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
    alpha = priors.prevalence_concentration(data.n_categories)
    beta = priors.confusion_concentration(data.n_annotators, data.n_categories)
    with pm.Model(coords=model_coords(data)) as model:
        prevalence = pm.Dirichlet(
            "prevalence", a=alpha, dims="category", default_transform=stick_breaking
        )
        confusion = pm.Dirichlet(
            "confusion",
            a=beta,
            dims=("annotator", "true_category", "category"),
            default_transform=stick_breaking,
        )
        add_label_likelihood(data, prevalence, confusion)
    return model
