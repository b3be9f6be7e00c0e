"""MACE: each annotator either knows the true category or spams from a label distribution.

Hovy, D., Berg-Kirkpatrick, T., Vaswani, A. & Hovy, E. (2013). Learning whom to trust with MACE.
*Proceedings of NAACL-HLT 2013*, 1120-1130. https://aclanthology.org/N13-1132

Annotator :math:`j` labels item :math:`i` correctly ("competent") with probability
:math:`c_j`; otherwise (spamming) it draws the label from its own spam distribution
:math:`\\xi_j`, whatever the truth. Hovy et al. give :math:`c_j` independent Beta priors, fix a
uniform prevalence and fit by EM or variational Bayes; here the competences are pooled over
annotators on the logit scale (non-centred) and the prevalence is free, as in every crowdbayes
model.

Identifiability: the confusion :math:`c_j I + (1 - c_j) \\mathbf{1}\\xi_j^\\top` puts every
annotator's extra mass on the diagonal, so a relabelling of the true categories is not a
symmetry of the model unless every competence is 0; the prior on the mean competence, centred
above 0 on the logit scale, keeps the posterior away from that all-spammer corner.
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from crowdbayes.data import AnnotationData
from crowdbayes.em import Start, em_confusion
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.fast.transforms import stick_breaking
from crowdbayes.models._shared import (
    Replicate,
    confusion_rows,
    model_coords,
    non_centred_start,
    observe_labels,
    prevalence_prior,
)
from crowdbayes.priors import PriorsBase, positive_array

__all__ = ["Mace", "MacePriors", "build_mace", "mace_log_confusion", "start_mace"]


@dataclass(frozen=True)
class MacePriors(PriorsBase):
    """Priors of the MACE model.

    Parameters
    ----------
    prevalence : float
        Symmetric Dirichlet concentration of the prevalence. Default 3.
    competence_mean_location : float
        Centre of the Normal prior on the mean competence logit. Default 1 (a typical
        annotator labels 73 % of items competently), which breaks label switching.
    competence_mean_sd : float
        Standard deviation of that Normal prior. Default 1.5.
    competence_scale : float
        Scale of the HalfNormal prior on the between-annotator standard deviation of the
        competence logits. Default 1.
    spam_distribution : float
        Symmetric Dirichlet concentration of each annotator's spam distribution. Default 2:
        mildly towards uniform spamming, which keeps the spam distribution of an annotator with
        few labels off the simplex boundary (Hovy et al. and crowd-kit use 10, which nearly
        forbids biased spammers).

    Examples
    --------
    >>> MacePriors().competence_mean_location
    1.0
    >>> MacePriors(spam_distribution=0.0)
    Traceback (most recent call last):
    ...
    ValueError: prior 'spam_distribution' must be finite and positive, got 0.0
    """

    renamed_fields: ClassVar[dict[str, str]] = {
        "competence_location": "competence_mean_location",
        "mean_scale": "competence_mean_sd",
        "annotator_scale": "competence_scale",
        "spam_concentration": "spam_distribution",
    }
    location_fields: ClassVar[tuple[str, ...]] = ("competence_mean_location",)

    prevalence: float = 3.0
    competence_mean_location: float = 1.0
    competence_mean_sd: float = 1.5
    competence_scale: float = 1.0
    spam_distribution: float = 2.0


def mace_log_confusion(
    competence_logit: pt.TensorVariable, log_spam: pt.TensorVariable
) -> pt.TensorVariable:
    """Log confusion of MACE annotators from competence logits and log spam distributions.

    :math:`\\log \\theta_{jkh} = \\log\\big(c_j [k = h] + (1 - c_j)\\,\\xi_{jh}\\big)`, with
    :math:`\\log c_j` and :math:`\\log(1 - c_j)` as softplus terms of the logit (no
    ``log(0)`` for extreme logits).

    Parameters
    ----------
    competence_logit : TensorVariable, shape (annotator,)
    log_spam : TensorVariable, shape (annotator, category)

    Returns
    -------
    TensorVariable, shape (annotator, true_category, category)

    Examples
    --------
    >>> import numpy as np
    >>> out = mace_log_confusion(pt.as_tensor([0.0]), pt.as_tensor(np.log([[0.2, 0.8]])))
    >>> np.exp(out.eval()).round(2).tolist()
    [[[0.6, 0.4], [0.1, 0.9]]]
    """
    n_categories = log_spam.shape[-1]
    log_competent = -pt.softplus(-competence_logit)  # log c
    log_spam_share = -pt.softplus(competence_logit)  # log (1 - c)
    spam = log_spam_share[:, None] + log_spam  # (annotator, category): log (1 - c) xi_h
    diagonal = pt.logaddexp(log_competent[:, None], spam)  # log (c + (1 - c) xi_h)
    eye = pt.eq(pt.arange(n_categories)[:, None], pt.arange(n_categories)[None, :])
    return pt.where(eye[None, :, :], diagonal[:, None, :], spam[:, None, :])


def build_mace(
    data: AnnotationData, priors: MacePriors | None = None, *, replicate: Replicate = "same-items"
) -> pm.Model:
    """Build the hierarchical MACE model with the true category marginalised.

    .. math::

        \\mu &\\sim \\operatorname{Normal}(m_0, s_0), \\quad
        \\sigma \\sim \\operatorname{HalfNormal}(s_1), \\quad
        \\epsilon_j \\sim \\operatorname{Normal}(0, 1), \\quad
        c_j = \\operatorname{logit}^{-1}(\\mu + \\sigma \\epsilon_j) \\\\
        \\xi_j &\\sim \\operatorname{Dirichlet}(a_\\xi), \\quad
        \\pi \\sim \\operatorname{Dirichlet}(a_\\pi) \\\\
        p(y_{ij} = h \\mid z_i = k) &= c_j [h = k] + (1 - c_j)\\, \\xi_{jh}

    The label distribution does not depend on the item, so the row function is that of a
    confusion-matrix model (:func:`~crowdbayes.models._shared.confusion_rows`).

    Parameters
    ----------
    data : AnnotationData
    priors : MacePriors, optional

    Returns
    -------
    pymc.Model
        Free variables ``prevalence`` (category), ``competence_mean``, ``competence_scale``,
        ``competence_effect`` (annotator) and ``spam_distribution`` (annotator, category);
        deterministic ``competence`` (annotator) and ``confusion``
        (annotator, true_category, category).

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_mace
    >>> data = simulate_mace(n_items=20, n_annotators=3, random_seed=1).data
    >>> sorted(v.name for v in build_mace(data).free_RVs)  # doctest: +NORMALIZE_WHITESPACE
    ['competence_effect', 'competence_mean', 'competence_scale', 'prevalence',
     'spam_distribution']
    """
    priors = MacePriors() if priors is None else priors
    n_categories = data.n_categories
    with pm.Model(coords=model_coords(data)) as model:
        prevalence = prevalence_prior(data, priors.prevalence)
        mean = pm.Normal(
            "competence_mean",
            mu=np.float64(priors.competence_mean_location),
            sigma=np.float64(priors.competence_mean_sd),
        )
        scale = pm.HalfNormal("competence_scale", sigma=np.float64(priors.competence_scale))
        effect = pm.Normal("competence_effect", 0.0, 1.0, dims="annotator")
        logit = mean + scale * effect
        pm.Deterministic("competence", pm.math.invlogit(logit), dims="annotator")
        spam = pm.Dirichlet(
            "spam_distribution",
            a=positive_array(
                priors.spam_distribution,
                (data.n_annotators, n_categories),
                "spam_distribution",
            ),
            default_transform=stick_breaking,
            dims=("annotator", "category"),
        )
        log_confusion = mace_log_confusion(logit, pt.log(spam))
        pm.Deterministic(
            "confusion", pt.exp(log_confusion), dims=("annotator", "true_category", "category")
        )
        observe_labels(data, pt.log(prevalence), confusion_rows, log_confusion, replicate=replicate)
    return model


def start_mace(data: AnnotationData, priors: MacePriors) -> Start:
    """Starting values read off the smoothed Dawid-Skene EM confusions.

    A MACE confusion has :math:`(1 - c_j) \\xi_{jh}` in every off-diagonal cell of column
    :math:`h`: the spam mass of each label comes from the Dawid-Skene confusion's off-diagonal
    cells, the competence from its total.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_mace
    >>> data = simulate_mace(n_items=20, n_annotators=3, random_seed=1).data
    >>> start_mace(data, MacePriors()).initial_values["competence_effect"].shape
    (3,)
    """
    em = em_confusion(data, structure="full", prevalence_concentration=priors.prevalence)
    n_k = data.n_categories
    off = 1.0 - np.eye(n_k)
    spam_mass = (em.start_confusion * off[None]).sum(axis=1) / (n_k - 1)
    spam_share = np.clip(spam_mass.sum(axis=1), 0.05, 0.95)
    mean, scale, effect = non_centred_start(np.log((1.0 - spam_share) / spam_share))
    spam = np.maximum(spam_mass / spam_mass.sum(axis=1, keepdims=True), 0.01)
    values = {
        "competence_mean": np.asarray(mean),
        "competence_scale": np.asarray(scale),
        "competence_effect": effect,
        "spam_distribution": spam / spam.sum(axis=1, keepdims=True),
    }
    return Start(em=em, initial_values={"prevalence": em.start_prevalence, **values})


class Mace(BayesianCrowdModel):
    """MACE (Hovy et al. 2013): each annotator is competent or spams, pooled competences.

    Annotator ``j`` gives the true category with probability ``competence_j`` and otherwise a
    label from its own ``spam_distribution_j``; the competence logits are pooled over
    annotators (see :func:`build_mace`).

    Priors: :class:`MacePriors` or a dict of its fields.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_mace
    >>> sim = simulate_mace(n_items=200, n_annotators=10, random_seed=0)
    >>> mace = Mace().fit(sim.annotations, method="map", random_seed=0)
    >>> bool((mace.labels_["label"] == sim.true_labels).mean() > 0.9)
    True
    >>> mace.datatree_.posterior["competence"].dims
    ('chain', 'draw', 'annotator')
    """

    name, priors_class = "mace", MacePriors
    builder = staticmethod(build_mace)
    start = staticmethod(start_mace)
    diagnostic_vars = ("prevalence", "competence_mean", "competence_scale", "competence")
