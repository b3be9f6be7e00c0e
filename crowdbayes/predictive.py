"""Posterior and prior predictive checks with statistics that crowd data make informative.

A predictive check replicates the labels: the design (which annotator labelled which item, and
how many times) stays fixed and every label is drawn afresh from the model, given one draw of
its parameters. For a posterior draw :math:`\\theta`, each item's true category is drawn from
its posterior given the data and that draw,

.. math::

    p(z_i = k \\mid y, \\theta) = \\operatorname{softmax}_k \\, \\ell_{ik},

where :math:`\\ell` is the model's per-item joint (gold items keep their gold category), then
each annotation is drawn from the model given :math:`z_i`. This is the generative graph of
every model's observed ``labels`` variable (:func:`crowdbayes.models._shared.observe_labels`),
so the replicates come from PyMC's own ``pm.sample_posterior_predictive``, unchanged for
every model family, including those whose label distribution depends on the item. A prior
predictive draw (``pm.sample_prior_predictive`` of the model built with
``replicate="new-items"``) takes the parameters from the prior and :math:`z_i` from the
prevalence instead.

The statistics that compare the observed labels with the replicates (agreement within items,
self-agreement, category and annotator frequencies, vote-count histograms) and their table of
posterior predictive p-values, :func:`~crowdbayes.crowd_statistics.check_table`, need no model:
they are defined in :mod:`crowdbayes.crowd_statistics`. :func:`predictive_check` tabulates
them and stores the replicated labels and the p-values in the fit's DataTree.
"""

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from crowdbayes.crowd_statistics import check_table
from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.inference import c_backend, check_random_seed, seed_to_int
from crowdbayes.models import get_model, rebuild_model
from crowdbayes.results import FitResult

__all__ = ["posterior_predictive", "predictive_check", "prior_predictive"]


# ---------------------------------------------------------------------------- replication
def _check_n_draws(n_draws: Any) -> int:
    if not isinstance(n_draws, int | np.integer) or isinstance(n_draws, bool) or n_draws < 1:
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    return int(n_draws)


def _result_and_model(fit: Any) -> tuple[FitResult, pm.Model]:
    """The FitResult of ``fit`` (estimator or result) and the PyMC model behind it."""
    if isinstance(fit, FitResult):
        result = fit
        model = None
    elif isinstance(fit, BayesianCrowdModel):
        result = fit.result_  # NotFittedError when not fitted
        model = fit.model_
    elif hasattr(fit, "result_"):
        raise ValueError(
            f"a {type(fit).__name__} has no probability model to replicate labels from; "
            "predictive checks need a Bayesian model (dawid-skene, ...)"
        )
    else:
        raise ValueError(
            f"expected a fitted crowdbayes estimator or a FitResult, not {type(fit).__name__}"
        )
    if "posterior" not in result.datatree.children:
        raise ValueError(
            f"the {result.model_name!r} result has no posterior; predictive checks need a "
            "Bayesian model (dawid-skene, ...)"
        )
    if model is None:
        model = rebuild_model(result)[1]
    return result, model


def _draws_dataset(posterior: xr.Dataset, model: pm.Model, picked: np.ndarray) -> xr.Dataset:
    """The free variables at the picked (flat, chain-major) samples, as one chain of draws."""
    variables = {}
    for rv in model.free_RVs:
        dims = tuple(model.named_vars_to_dims.get(rv.name, ()) or ())
        values = posterior[rv.name].transpose("chain", "draw", *dims).to_numpy()
        values = values.reshape(-1, *values.shape[2:])[picked]
        variables[rv.name] = (("chain", "draw", *dims), values[None])
    coords = {name: list(values) for name, values in model.coords.items() if values is not None}
    return xr.Dataset(variables, coords={**coords, "chain": [0], "draw": np.arange(len(picked))})


def _label_codes(tree: xr.DataTree, group: str) -> np.ndarray:
    """The replicated ``labels`` of a PyMC predictive DataTree as codes (sample, annotation)."""
    labels = tree[group]["labels"].transpose("chain", "draw", "annotation").to_numpy()
    return labels.reshape(-1, labels.shape[-1]).astype(np.int64)


def _as_labels(
    codes: np.ndarray, data: AnnotationData, source: np.ndarray, n_draws_per_chain: int
) -> xr.DataArray:
    values = data.categories.to_numpy()[codes]
    return xr.DataArray(
        values,
        dims=("draw", "annotation"),
        coords={
            "draw": np.arange(codes.shape[0]),
            "annotation": np.arange(data.n_annotations),
            "source_chain": ("draw", source // n_draws_per_chain),
            "source_draw": ("draw", source % n_draws_per_chain),
        },
        name="label",
    )


def posterior_predictive(
    fit: Any, n_draws: int = 200, random_seed: int | np.random.Generator | None = None
) -> xr.DataArray:
    """Replicated labels from the posterior predictive distribution, design kept fixed.

    For each of ``n_draws`` posterior draws (picked at random from all chains, without
    replacement while there are enough), every item's true category is drawn from its
    posterior given the data and the draw (gold items keep theirs), then every annotation is
    drawn from the model given that category. A ``method="map"`` fit has one draw: all
    replicates then share the posterior mode (a plug-in predictive). Models with item effects
    replicate the same items with their posterior effects, so their check asks whether the
    fitted difficulties reproduce the data (lenient where item effects could overfit).

    Parameters
    ----------
    fit : fitted estimator or FitResult
        Of a Bayesian model. A loaded result's model is rebuilt from its provenance
        (:func:`~crowdbayes.models.rebuild_model`).
    n_draws : int
        Number of replicated data sets.
    random_seed : int, numpy.random.Generator or None
        The integer seed used is recorded in the ``random_seed`` attribute.

    Returns
    -------
    xarray.DataArray
        Named ``label``, dims (draw, annotation), category values, annotations in the order
        of ``result.data`` (``observed_data``); coords ``source_chain`` and ``source_draw``
        name the posterior draw behind each replicate; attribute ``kind = "posterior"``.

    Raises
    ------
    ValueError
        For majority vote (no model), an unknown input or a bad ``n_draws``.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> sim = cb.simulate_dawid_skene(n_items=20, n_annotators=4, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> rep = posterior_predictive(fit, n_draws=5, random_seed=1)
    >>> rep.dims, rep.shape
    (('draw', 'annotation'), (5, 80))
    """
    n_draws = _check_n_draws(n_draws)
    result, model = _result_and_model(fit)
    return _posterior_replicates(result, model, n_draws, random_seed)


def _posterior_replicates(
    result: FitResult,
    model: pm.Model,
    n_draws: int,
    random_seed: int | np.random.Generator | None,
) -> xr.DataArray:
    seed = seed_to_int(random_seed)
    rng = check_random_seed(seed)
    posterior = result.datatree["posterior"].to_dataset()
    n_chains, n_per_chain = posterior.sizes["chain"], posterior.sizes["draw"]
    n_samples = n_chains * n_per_chain
    picked = np.sort(rng.choice(n_samples, size=n_draws, replace=n_draws > n_samples))
    draws = xr.DataTree.from_dict({"posterior": _draws_dataset(posterior, model, picked)})
    with c_backend():
        tree = pm.sample_posterior_predictive(
            draws, model=model, var_names=["labels"], random_seed=rng, progressbar=False
        )
    labels = _as_labels(
        _label_codes(tree, "posterior_predictive"), result.data, picked, n_per_chain
    )
    labels.attrs = {"kind": "posterior", "model": result.model_name, "random_seed": seed}
    return labels


def prior_predictive(
    estimator: Any,
    annotations: Any,
    n_draws: int = 200,
    random_seed: int | np.random.Generator | None = None,
    *,
    gold: Any = None,
    categories: Sequence[Hashable] | None = None,
) -> xr.DataArray:
    """Replicated labels from the prior predictive distribution on the design of ``annotations``.

    Parameters are drawn from the model's prior, each item's true category from the drawn
    prevalence (gold items keep theirs), and every annotation from the model given it. The
    observed labels are used only for the design (and the category set).

    Parameters
    ----------
    estimator : BayesianCrowdModel or str
        An estimator (its priors are used) or a model name such as ``"dawid-skene"``.
    annotations : DataFrame, CSV path or AnnotationData
    n_draws : int
    random_seed : int, numpy.random.Generator or None
    gold, categories : optional
        As in :func:`~crowdbayes.data.encode_annotations` (not with AnnotationData).

    Returns
    -------
    xarray.DataArray
        As :func:`posterior_predictive`, with ``kind = "prior"``.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> sim = cb.simulate_dawid_skene(n_items=20, n_annotators=4, random_seed=0)
    >>> rep = prior_predictive(cb.DawidSkene(), sim.annotations, n_draws=5, random_seed=1)
    >>> rep.attrs["kind"], rep.shape
    ('prior', (5, 80))
    """
    n_draws = _check_n_draws(n_draws)
    if isinstance(estimator, str):
        estimator = get_model(estimator)
    if not isinstance(estimator, BayesianCrowdModel):
        raise ValueError(
            "estimator must be a Bayesian crowdbayes estimator or its name, not "
            f"{type(estimator).__name__}"
        )
    if isinstance(annotations, AnnotationData):
        if gold is not None or categories is not None:
            raise ValueError(
                "gold and categories are set when encoding; pass them to encode_annotations"
            )
        data = annotations
    else:
        data = encode_annotations(annotations, categories=categories, gold=gold)
    model = type(estimator).builder(data, estimator.resolved_priors(), replicate="new-items")
    seed = seed_to_int(random_seed)
    with c_backend():
        tree = pm.sample_prior_predictive(
            draws=n_draws, model=model, var_names=["labels"], random_seed=seed
        )
    picked = np.arange(n_draws)
    labels = _as_labels(_label_codes(tree, "prior_predictive"), data, picked, n_draws)
    labels.attrs = {"kind": "prior", "model": estimator.name, "random_seed": seed}
    return labels


# ---------------------------------------------------------------------------- the check
def predictive_check(
    fit: Any,
    n_draws: int = 200,
    random_seed: int | np.random.Generator | None = None,
    *,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Posterior predictive check of a fit with crowd-specific statistics.

    Replicates the labels (:func:`posterior_predictive`), compares every statistic of
    :func:`~crowdbayes.crowd_statistics.predictive_statistics` with its replicated distribution
    (:func:`~crowdbayes.crowd_statistics.check_table`) and
    stores, in the fit's DataTree, the replicated labels as the ``posterior_predictive`` group
    (variable ``label``, dims chain, draw, annotation, as ``observed_data``'s ``label``, so
    ArviZ's predictive-check tools read it) and the p-values as ``ppp_value`` (dim
    ``check``) in the ``summary`` group; both replace those of an earlier check and are kept by
    :meth:`~crowdbayes.results.FitResult.save`.

    A model that ignores item difficulty typically fails on ``agreement_sd``,
    ``vote_count_discrepancy`` and ``vote_counts``: real items are unanimous, and split, more
    often than it predicts. The levels of agreement (``mean_agreement``,
    ``pairwise_agreement``, ``unanimous_share``) also react to the prior: one that shrinks
    accurate annotators towards chance makes the replicates agree less than the data.

    Parameters
    ----------
    fit : fitted estimator or FitResult
        Of a Bayesian model.
    n_draws : int
    random_seed : int, numpy.random.Generator or None
    alpha : float
        Threshold of the ``flag`` column. Many statistics are checked at once: expect a few
        flags by chance, mostly among the per-annotator and per-bin rows.

    Returns
    -------
    pandas.DataFrame
        See :func:`check_table`.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> sim = cb.simulate_dawid_skene(n_items=30, n_annotators=4, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> table = predictive_check(fit, n_draws=20, random_seed=1)
    >>> float(table.set_index("check").loc["unanimous_share", "observed"])
    0.3
    >>> fit.datatree_["summary"]["ppp_value"].dims
    ('check',)
    """
    n_draws = _check_n_draws(n_draws)
    result, model = _result_and_model(fit)
    replicated = _posterior_replicates(result, model, n_draws, random_seed)
    table = check_table(replicated, result.data, alpha=alpha)
    tree = result.datatree
    # ArviZ's layout (chain, draw, annotation): the replicates as one chain of draws
    stored = replicated.expand_dims(chain=[0]).transpose("chain", "draw", "annotation")
    tree["posterior_predictive"] = xr.DataTree(xr.Dataset({"label": stored}))
    summary = tree["summary"].to_dataset()
    summary = summary.drop_vars(["ppp_value", "check"], errors="ignore")
    summary["ppp_value"] = xr.DataArray(
        table["ppp_value"].to_numpy(),
        dims="check",
        coords={"check": table["check"].to_numpy(dtype=object)},
    )
    summary["ppp_value"].attrs = {
        "description": "two-sided posterior predictive p-value, 2 min(P(T_rep >= T_obs), "
        "P(T_rep <= T_obs)), capped at 1",
        "n_draws": int(replicated.sizes["draw"]),
        "random_seed": int(replicated.attrs["random_seed"]),
    }
    tree["summary"] = xr.DataTree(summary)
    return table
