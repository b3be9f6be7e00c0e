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

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from crowdbayes.data import AnnotationData
from crowdbayes.models._common import add_label_log_likelihood, model_coords
from crowdbayes.models._priors import PriorsBase, check_positive, positive_array
from crowdbayes.models._transforms import stick_breaking

__all__ = ["MacePriors", "build_mace", "mace_log_confusion"]


@dataclass(frozen=True)
class MacePriors(PriorsBase):
    """Priors of the MACE model.

    Parameters
    ----------
    prevalence : float
        Symmetric Dirichlet concentration of the prevalence. Default 3.
    competence_location : float
        Centre of the Normal prior on the mean competence logit. Default 1 (a typical
        annotator labels 73 % of items competently), which breaks label switching.
    mean_scale : float
        Standard deviation of that Normal prior. Default 1.5.
    annotator_scale : float
        Scale of the HalfNormal prior on the between-annotator standard deviation of the
        competence logits. Default 1.
    spam_concentration : float
        Symmetric Dirichlet concentration of each annotator's spam distribution. Default 2:
        mildly towards uniform spamming, which keeps the spam distribution of an annotator with
        few labels off the simplex boundary (Hovy et al. and crowd-kit use 10, which nearly
        forbids biased spammers).

    Examples
    --------
    >>> MacePriors().competence_location
    1.0
    >>> MacePriors(spam_concentration=0.0)
    Traceback (most recent call last):
    ...
    ValueError: prior 'spam_concentration' must be finite and positive, got 0.0
    """

    prevalence: float = 3.0
    competence_location: float = 1.0
    mean_scale: float = 1.5
    annotator_scale: float = 1.0
    spam_concentration: float = 2.0

    def __post_init__(self) -> None:
        check_positive(self.prevalence, "prevalence")
        if not np.isfinite(float(self.competence_location)):
            raise ValueError(
                f"prior 'competence_location' must be finite, got {self.competence_location}"
            )
        check_positive(self.mean_scale, "mean_scale")
        check_positive(self.annotator_scale, "annotator_scale")
        check_positive(self.spam_concentration, "spam_concentration")


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


def build_mace(data: AnnotationData, priors: MacePriors | None = None) -> pm.Model:
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
    confusion-matrix model (:func:`~crowdbayes.models._common.confusion_row_log_probability`),
    gathered per label row.

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
        prevalence = pm.Dirichlet(
            "prevalence",
            a=positive_array(priors.prevalence, (n_categories,), "prevalence"),
            dims="category",
            default_transform=stick_breaking,
        )
        mean = pm.Normal(
            "competence_mean",
            mu=np.float64(priors.competence_location),
            sigma=np.float64(priors.mean_scale),
        )
        scale = pm.HalfNormal("competence_scale", sigma=np.float64(priors.annotator_scale))
        effect = pm.Normal("competence_effect", 0.0, 1.0, dims="annotator")
        logit = mean + scale * effect
        pm.Deterministic("competence", pm.math.invlogit(logit), dims="annotator")
        spam = pm.Dirichlet(
            "spam_distribution",
            a=positive_array(
                priors.spam_concentration,
                (data.n_annotators, n_categories),
                "spam_concentration",
            ),
            default_transform=stick_breaking,
            dims=("annotator", "category"),
        )
        log_confusion = mace_log_confusion(logit, pt.log(spam))
        pm.Deterministic(
            "confusion", pt.exp(log_confusion), dims=("annotator", "true_category", "category")
        )
        add_label_log_likelihood(data, pt.log(prevalence), log_confusion)
    return model
