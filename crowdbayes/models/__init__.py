"""Model builders: each returns a :class:`pymc.Model` for encoded annotations."""

from crowdbayes.models.class_conditional import ClassConditionalPriors, build_class_conditional
from crowdbayes.models.dawid_skene import DawidSkenePriors, build_dawid_skene
from crowdbayes.models.hierarchical_dawid_skene import (
    HierarchicalDawidSkenePriors,
    build_hierarchical_dawid_skene,
)
from crowdbayes.models.one_coin import OneCoinPriors, build_one_coin

__all__ = [
    "ClassConditionalPriors",
    "DawidSkenePriors",
    "HierarchicalDawidSkenePriors",
    "OneCoinPriors",
    "build_class_conditional",
    "build_dawid_skene",
    "build_hierarchical_dawid_skene",
    "build_one_coin",
]
