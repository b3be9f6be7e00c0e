"""The models: one file each, with its priors, builder, starting values and estimator.

Every Bayesian model is a mixture over each item's true category, marginalised; the pieces the
files share (coordinates, priors' checks, parametrisations, the observed ``labels`` variable)
are in :mod:`crowdbayes.models._shared`. A model is added by writing its file and one line in
:data:`MODELS` (see ``ARCHITECTURE.md``).
"""

from typing import Any

import pymc as pm

from crowdbayes.estimators import BayesianCrowdModel, CrowdModel, priors_from_result
from crowdbayes.models.class_conditional import (
    ClassConditional,
    ClassConditionalPriors,
    build_class_conditional,
)
from crowdbayes.models.dawid_skene import DawidSkene, DawidSkenePriors, build_dawid_skene
from crowdbayes.models.glad import Glad, GladPriors, build_glad
from crowdbayes.models.hierarchical_dawid_skene import (
    HierarchicalDawidSkene,
    HierarchicalDawidSkenePriors,
    build_hierarchical_dawid_skene,
)
from crowdbayes.models.item_difficulty import (
    ItemDifficulty,
    ItemDifficultyPriors,
    build_item_difficulty,
)
from crowdbayes.models.logistic_random_effects import (
    LogisticRandomEffects,
    LogisticRandomEffectsPriors,
    build_logistic_random_effects,
)
from crowdbayes.models.mace import Mace, MacePriors, build_mace
from crowdbayes.models.majority_vote import MajorityVote
from crowdbayes.models.one_coin import OneCoin, OneCoinPriors, build_one_coin
from crowdbayes.results import FitResult

__all__ = [
    "MODELS",
    "ClassConditional",
    "ClassConditionalPriors",
    "DawidSkene",
    "DawidSkenePriors",
    "Glad",
    "GladPriors",
    "HierarchicalDawidSkene",
    "HierarchicalDawidSkenePriors",
    "ItemDifficulty",
    "ItemDifficultyPriors",
    "LogisticRandomEffects",
    "LogisticRandomEffectsPriors",
    "Mace",
    "MacePriors",
    "MajorityVote",
    "OneCoin",
    "OneCoinPriors",
    "build_class_conditional",
    "build_dawid_skene",
    "build_glad",
    "build_hierarchical_dawid_skene",
    "build_item_difficulty",
    "build_logistic_random_effects",
    "build_mace",
    "build_one_coin",
    "get_model",
    "rebuild_model",
]

#: Every model by its command-line name: the registry (one line per model).
MODELS: dict[str, type[CrowdModel]] = {
    cls.name: cls
    for cls in (
        MajorityVote,
        DawidSkene,
        ClassConditional,
        OneCoin,
        HierarchicalDawidSkene,
        ItemDifficulty,
        LogisticRandomEffects,
        Mace,
        Glad,
    )
}


def get_model(name: str, **kwargs: Any) -> CrowdModel:
    """Instantiate a model by its command-line name.

    Examples
    --------
    >>> get_model("dawid-skene")
    DawidSkene(priors=None)
    >>> get_model("no-such-model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'no-such-model'; choose one of majority-vote, dawid-skene, ...
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def rebuild_model(result: FitResult, **builder_options: Any) -> tuple[BayesianCrowdModel, pm.Model]:
    """The estimator (with the fit's priors) and PyMC model behind a fitted result.

    Works on a result loaded from disk: the model name and priors are in its provenance.

    Parameters
    ----------
    result : FitResult
        Of a Bayesian model (not majority vote).
    **builder_options
        Passed to the model's builder (``replicate="new-items"``, for example).

    Returns
    -------
    estimator : BayesianCrowdModel
        Unfitted, with the priors the result was fitted with.
    model : pymc.Model
        Built on ``result.data``.

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> sim = simulate_dawid_skene(n_items=20, n_annotators=3, random_seed=0)
    >>> fit = DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> estimator, model = rebuild_model(fit.result_)
    >>> estimator.name, sorted(v.name for v in model.free_RVs)
    ('dawid-skene', ['confusion', 'prevalence'])
    """
    name = result.model_name
    cls = MODELS.get(name)
    if cls is None or not issubclass(cls, BayesianCrowdModel):
        raise ValueError(f"a {name!r} result has no PyMC model to rebuild")
    estimator = cls(priors=priors_from_result(result))
    model = cls.builder(result.data, estimator.resolved_priors(), **builder_options)
    return estimator, model
