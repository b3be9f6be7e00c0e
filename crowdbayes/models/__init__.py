"""Model builders: each returns a :class:`pymc.Model` for encoded annotations."""

from crowdbayes.models.class_conditional import ClassConditionalPriors, build_class_conditional
from crowdbayes.models.dawid_skene import DawidSkenePriors, build_dawid_skene
from crowdbayes.models.glad import GladPriors, build_glad
from crowdbayes.models.hierarchical_dawid_skene import (
    HierarchicalDawidSkenePriors,
    build_hierarchical_dawid_skene,
)
from crowdbayes.models.item_difficulty import ItemDifficultyPriors, build_item_difficulty
from crowdbayes.models.logistic_random_effects import (
    LogisticRandomEffectsPriors,
    build_logistic_random_effects,
)
from crowdbayes.models.mace import MacePriors, build_mace
from crowdbayes.models.one_coin import OneCoinPriors, build_one_coin

__all__ = [
    "ClassConditionalPriors",
    "DawidSkenePriors",
    "GladPriors",
    "HierarchicalDawidSkenePriors",
    "ItemDifficultyPriors",
    "LogisticRandomEffectsPriors",
    "MacePriors",
    "OneCoinPriors",
    "build_class_conditional",
    "build_dawid_skene",
    "build_glad",
    "build_hierarchical_dawid_skene",
    "build_item_difficulty",
    "build_logistic_random_effects",
    "build_mace",
    "build_one_coin",
]
