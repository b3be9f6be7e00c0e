"""crowdbayes: hierarchical Bayesian models of annotator reliability and item difficulty.

Fit a model to a table of crowd labels (one row per label given) and read, per item, a posterior
over the true label; per annotator, a posterior confusion matrix and accuracy; the category
prevalence; and the diagnostics needed to trust them.

Examples
--------
>>> import crowdbayes as cb
>>> sim = cb.simulate_dawid_skene(n_items=100, n_annotators=8, random_seed=0)
>>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
>>> fit.labels_.columns[:3].tolist()
['label', 'probability', 'entropy']
"""

from crowdbayes.compare import compare
from crowdbayes.data import AnnotationData, encode_annotations, read_annotations, read_gold
from crowdbayes.diagnostics import Diagnostics, SamplingWarning
from crowdbayes.estimators import CrowdModel, NotFittedError
from crowdbayes.fast import rewrites as _rewrites  # noqa: F401 - registers the numba rewrite
from crowdbayes.models import (
    MODELS,
    ClassConditional,
    ClassConditionalPriors,
    DawidSkene,
    DawidSkenePriors,
    Glad,
    GladPriors,
    HierarchicalDawidSkene,
    HierarchicalDawidSkenePriors,
    ItemDifficulty,
    ItemDifficultyPriors,
    LogisticRandomEffects,
    LogisticRandomEffectsPriors,
    Mace,
    MacePriors,
    MajorityVote,
    OneCoin,
    OneCoinPriors,
    get_model,
)
from crowdbayes.predictive import posterior_predictive, predictive_check, prior_predictive
from crowdbayes.results import FitResult
from crowdbayes.sbc import SBCResult, simulate_from_prior, simulation_based_calibration
from crowdbayes.simulate import (
    Simulation,
    simulate_dawid_skene,
    simulate_glad,
    simulate_hierarchical_dawid_skene,
    simulate_item_difficulty,
    simulate_logistic_random_effects,
    simulate_mace,
)

__version__ = "0.1.0"

__all__ = [
    "MODELS",
    "AnnotationData",
    "ClassConditional",
    "ClassConditionalPriors",
    "CrowdModel",
    "DawidSkene",
    "DawidSkenePriors",
    "Diagnostics",
    "FitResult",
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
    "NotFittedError",
    "OneCoin",
    "OneCoinPriors",
    "SamplingWarning",
    "Simulation",
    "compare",
    "encode_annotations",
    "get_model",
    "posterior_predictive",
    "predictive_check",
    "prior_predictive",
    "read_annotations",
    "read_gold",
    "simulate_dawid_skene",
    "SBCResult",
    "simulate_from_prior",
    "simulate_glad",
    "simulate_hierarchical_dawid_skene",
    "simulate_item_difficulty",
    "simulate_logistic_random_effects",
    "simulate_mace",
    "simulation_based_calibration",
]
