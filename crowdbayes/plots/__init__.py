"""Figures of a fitted crowd model: confusion matrices, annotator reliability, prevalence.

Every function takes a :class:`~crowdbayes.results.FitResult` (or a fitted estimator, whose
``result_`` is used) and returns a :class:`matplotlib.figure.Figure`. Figures are built with the
object-oriented API, not :mod:`matplotlib.pyplot`: they work with any backend (Agg included),
are never registered with pyplot's figure manager (so nothing needs closing), and nothing is
shown. Save one with ``fig.savefig("confusion.png")``.

Intervals are the result's equal-tailed intervals (94 % by default); point estimates
(``method="map"``, majority vote) are drawn without them.

The functions live in one module per family, all importable from here:

- :mod:`crowdbayes.plots.reliability`: annotators and categories (confusion matrices,
  accuracy, prevalence);
- :mod:`crowdbayes.plots.ppc`: posterior and prior predictive checks;
- :mod:`crowdbayes.plots.sbc`: simulation-based calibration rank histograms;
- :mod:`crowdbayes.plots.calibration`: reliability diagrams and item uncertainty.
"""

from crowdbayes.plots.calibration import plot_item_uncertainty, plot_reliability_diagram
from crowdbayes.plots.ppc import (
    plot_ppc_agreement,
    plot_ppc_annotator_frequencies,
    plot_ppc_vote_counts,
)
from crowdbayes.plots.reliability import (
    plot_annotator_reliability,
    plot_confusion_grid,
    plot_prevalence,
)
from crowdbayes.plots.sbc import plot_sbc_ranks

__all__ = [
    "plot_confusion_grid",
    "plot_annotator_reliability",
    "plot_prevalence",
    "plot_ppc_agreement",
    "plot_ppc_annotator_frequencies",
    "plot_ppc_vote_counts",
    "plot_sbc_ranks",
    "plot_reliability_diagram",
    "plot_item_uncertainty",
]
