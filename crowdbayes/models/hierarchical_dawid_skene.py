"""Hierarchical Dawid-Skene: annotator confusion logits pooled around population means.

Paun, S., Carpenter, B., Chamberlain, J., Hovy, D., Kruschwitz, U. & Poesio, M. (2018).
Comparing Bayesian models of annotation. *TACL* 6, 571-585 (the HierDawidSkene model, Figure 4).

Identifiability: each confusion row is a softmax over logits whose **diagonal entry is fixed at
0**; the :math:`K - 1` free logits are the log-odds of each wrong label against the right one.
Their population means have a prior centred on a better-than-chance annotator, which breaks the
label-switching symmetry (Paun et al. and the NumPyro example fix the last logit instead and
leave label switching to post-processing). Annotator effects are non-centred.

Known limitation: with many categories and sparse annotators (measured: 8 categories, 100
annotators, 3 labels per item) the free population means can represent a permuted labelling at
little prior cost, and NUTS chains settle in different permuted modes. The per-chain check reports
it (every chain permuted, R-hat far above 1.01); use :func:`build_dawid_skene` there.
"""

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from crowdbayes.data import AnnotationData
from crowdbayes.models._common import add_label_log_likelihood, model_coords
from crowdbayes.models._priors import (
    PriorsBase,
    check_positive,
    check_probability,
    positive_array,
)
from crowdbayes.models._transforms import stick_breaking

__all__ = [
    "HierarchicalDawidSkenePriors",
    "build_hierarchical_dawid_skene",
    "off_diagonal_coords",
]


@dataclass(frozen=True)
class HierarchicalDawidSkenePriors(PriorsBase):
    """Priors of the hierarchical Dawid-Skene model.

    Parameters
    ----------
    prevalence : float
        Symmetric Dirichlet concentration of the prevalence. Default 3.
    prior_accuracy : float
        Accuracy (errors spread evenly) at which the prior on the population mean logits is
        centred. Default 0.7.
    mean_scale : float
        Standard deviation of the Normal prior on each population mean logit. Default 1.5.
    annotator_scale : float
        Scale of the HalfNormal prior on each between-annotator standard deviation. Default 1.

    Examples
    --------
    >>> round(HierarchicalDawidSkenePriors().mean_location(n_categories=2), 3)
    -0.847
    """

    prevalence: float = 3.0
    prior_accuracy: float = 0.7
    mean_scale: float = 1.5
    annotator_scale: float = 1.0

    def __post_init__(self) -> None:
        check_positive(self.prevalence, "prevalence")
        check_probability(self.prior_accuracy, "prior_accuracy")
        check_positive(self.mean_scale, "mean_scale")
        check_positive(self.annotator_scale, "annotator_scale")

    def mean_location(self, n_categories: int) -> float:
        """Prior centre of a wrong-vs-right log-odds: ``log((1-a) / (a (K-1)))``."""
        a = self.prior_accuracy
        return float(np.log((1.0 - a) / (a * (n_categories - 1))))


def off_diagonal_coords(n_categories: int) -> tuple[np.ndarray, np.ndarray]:
    """Row (true category) and column (label) of every off-diagonal cell, row-major.

    Examples
    --------
    >>> [a.tolist() for a in off_diagonal_coords(3)]
    [[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]]
    """
    rows, cols = np.nonzero(~np.eye(n_categories, dtype=bool))
    return rows, cols


def build_hierarchical_dawid_skene(
    data: AnnotationData, priors: HierarchicalDawidSkenePriors | None = None
) -> pm.Model:
    """Build the hierarchical Dawid-Skene model with the true category marginalised.

    .. math::

        \\mu_{kl} &\\sim \\operatorname{Normal}(m_0, s_0), \\quad
        \\sigma_{kl} \\sim \\operatorname{HalfNormal}(s_1), \\quad
        \\epsilon_{jkl} \\sim \\operatorname{Normal}(0, 1) \\qquad (k \\ne l) \\\\
        \\eta_{jkl} &= \\mu_{kl} + \\sigma_{kl}\\,\\epsilon_{jkl}, \\quad \\eta_{jkk} = 0, \\quad
        \\theta_{jk} = \\operatorname{softmax}(\\eta_{jk})

    Parameters
    ----------
    data : AnnotationData
    priors : HierarchicalDawidSkenePriors, optional

    Returns
    -------
    pymc.Model
        Free variables ``prevalence``, ``error_mean`` and ``error_scale`` (error),
        ``annotator_effect`` (annotator, error); deterministic ``confusion``.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> data = simulate_dawid_skene(n_items=20, n_annotators=3, random_seed=1).data
    >>> sorted(v.name for v in build_hierarchical_dawid_skene(data).free_RVs)
    ['annotator_effect', 'error_mean', 'error_scale', 'prevalence']
    """
    priors = HierarchicalDawidSkenePriors() if priors is None else priors
    n_categories = data.n_categories
    rows, cols = off_diagonal_coords(n_categories)
    coords = model_coords(data)
    coords["error"] = [
        f"{data.categories[r]}->{data.categories[c]}" for r, c in zip(rows, cols, strict=True)
    ]
    with pm.Model(coords=coords) as model:
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
        error_scale = pm.HalfNormal(
            "error_scale", sigma=np.float64(priors.annotator_scale), dims="error"
        )
        effect = pm.Normal("annotator_effect", 0.0, 1.0, dims=("annotator", "error"))
        logits = pt.zeros((data.n_annotators, n_categories, n_categories))
        logits = pt.set_subtensor(
            logits[:, rows, cols], error_mean[None, :] + error_scale[None, :] * effect
        )
        log_confusion = pt.special.log_softmax(logits, axis=-1)
        pm.Deterministic(
            "confusion", pt.exp(log_confusion), dims=("annotator", "true_category", "category")
        )
        add_label_log_likelihood(data, pt.log(prevalence), log_confusion)
    return model
