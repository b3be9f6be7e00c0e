"""Majority vote: the baseline every model is compared with.

Each item's most frequent label, with vote shares as label probabilities; no probability model,
so no intervals, diagnostics, log-likelihood or predictive checks.
"""

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from crowdbayes.diagnostics import Diagnostics
from crowdbayes.em import vote_shares
from crowdbayes.estimators import CrowdModel, as_data
from crowdbayes.inference import check_random_seed, seed_to_int
from crowdbayes.results import FitResult, make_provenance
from crowdbayes.summaries import data_groups, summary_dataset

__all__ = ["MajorityVote"]


class MajorityVote(CrowdModel):
    """Majority vote: each item's most frequent label, vote shares as probabilities.

    Ties are broken at random (seeded by ``random_seed`` in :meth:`fit`). Annotator accuracy is
    the share of an annotator's labels that agree with the majority label; prevalence is the
    mean of the vote shares. No intervals (the table columns hold NaN).

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> sim = simulate_dawid_skene(n_items=100, n_annotators=10, random_seed=0)
    >>> mv = MajorityVote().fit(sim.annotations, random_seed=0)
    >>> bool((mv.labels_["label"] == sim.true_labels).mean() > 0.8)
    True
    """

    name = "majority-vote"

    def fit(
        self,
        annotations: Any,
        *,
        gold: Any = None,
        categories: Sequence[Hashable] | None = None,
        item_col: str = "item",
        annotator_col: str = "annotator",
        label_col: str = "label",
        random_seed: int | np.random.Generator | None = None,
        **ignored: Any,
    ) -> "MajorityVote":
        """Count the votes.

        Parameters
        ----------
        annotations : DataFrame, CSV path or AnnotationData
        gold : optional
            Known labels: those items get probability 1 on their gold label.
        categories : sequence, optional
        item_col, annotator_col, label_col : str
        random_seed : int, numpy.random.Generator or None
            Seeds the tie-break.
        **ignored
            Sampler settings, accepted so that every model can be called alike.

        Returns
        -------
        MajorityVote
        """
        data = as_data(
            annotations,
            gold=gold,
            categories=categories,
            item_col=item_col,
            annotator_col=annotator_col,
            label_col=label_col,
        )
        seed = seed_to_int(random_seed)
        rng = check_random_seed(seed)
        shares = vote_shares(data)
        top = shares == shares.max(axis=1, keepdims=True)
        noise = rng.random(shares.shape)
        mode = np.argmax(np.where(top, noise, -1.0), axis=1)
        summary = summary_dataset(data, shares, mode)
        agree = (mode[data.item_index] == data.label_index).astype(float)
        accuracy = np.bincount(data.annotator_index, weights=agree, minlength=data.n_annotators)
        accuracy /= np.maximum(summary["n_labels"].to_numpy(), 1)
        nan_j = np.full(data.n_annotators, np.nan)
        summary["annotator_accuracy"] = (
            ("annotator", "statistic"),
            np.stack([accuracy, nan_j, nan_j], axis=1),
        )
        prev = shares.mean(axis=0)
        nan_k = np.full(data.n_categories, np.nan)
        summary["prevalence"] = (("category", "statistic"), np.stack([prev, nan_k, nan_k], 1))
        summary = summary.assign_coords(statistic=["mean", "lower", "upper"])
        attrs = make_provenance(
            model=self.name,
            priors={},
            method="vote",
            sampler=None,
            draws=None,
            tune=None,
            chains=None,
            random_seed=seed,
            n_annotations=data.n_annotations,
            diagnostics=Diagnostics().to_dict(),
        )
        tree = xr.DataTree(dataset=xr.Dataset(attrs=attrs))
        for name, group in data_groups(data).items():
            tree[name] = group
        tree["summary"] = xr.DataTree(summary)
        self._result = FitResult(datatree=tree, data=data)
        return self
