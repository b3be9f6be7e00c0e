"""Simulation-based calibration (SBC) of the package's Bayesian models.

Talts, S., Betancourt, M., Simpson, D., Vehtari, A. & Gelman, A. (2018). Validating Bayesian
inference algorithms with simulation-based calibration. arXiv:1804.06788.

If parameters :math:`\\tilde\\theta` are drawn from the prior, labels :math:`\\tilde y` from the
model given them, and the posterior :math:`p(\\theta \\mid \\tilde y)` is sampled correctly, then
the rank of :math:`\\tilde\\theta` among :math:`L` posterior draws is uniform on
:math:`\\{0, \\dots, L\\}`. Ranks piled up at both ends mean posteriors that are too narrow, a hump
in the middle too wide, a slope a bias. Any error on the way shows up: in the model code, the
sampler and its initialisation, or the label-switching fix of the estimators.

Everything here is generic over :data:`crowdbayes.models.MODELS`:

* :func:`simulate_from_prior` draws data from a model's **own** PyMC graph on a fixed design
  (which annotator labels which item): the model is built with ``replicate="new-items"``, so
  that the generative graph of its observed ``labels`` draws each item's true category from
  ``prevalence``, then each label given it; one compiled function draws the free and
  deterministic variables and the labels, and the true categories from inside the labels'
  graph.
* :func:`simulation_based_calibration` repeats that, fits each data set as ``fit`` samples it
  (EM start, :func:`crowdbayes.inference.sample_posterior`, label-switching fix, diagnostics),
  and ranks the true global parameters (the estimator's ``diagnostic_vars``) among thinned
  posterior draws. The rank statistics and :class:`SBCResult` are in
  :mod:`crowdbayes.sbc_statistics`.

Speed: with ``sampler="nutpie"`` the model is compiled once. Every fit goes through
:func:`crowdbayes.fast.nutpie.compile_model`, whose callbacks read the data as inputs: the
first fit of a model structure compiles them (or loads them from numba's disk cache), and
every later fit of the same structure, on other labels, takes them from memory. Each fit
still builds its own model and rewrites its own graph, so it samples exactly its data set's
posterior. Every fit compiles PyTensor's other functions with the C backend
(:func:`crowdbayes.inference.c_backend`), which compiles quickly and caches its compiled
operations across graphs, where Numba would compile every new graph afresh; with
``sampler="pymc"`` that includes the sampler's log-density.
"""

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from pymc.pytensorf import compile as compile_pymc
from pymc.pytensorf import reseed_rngs
from pytensor.tensor.random.op import RandomVariable
from pytensor.tensor.random.type import RandomGeneratorType
from pytensor.tensor.variable import TensorVariable

from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.diagnostics import (
    Diagnostics,
    SamplingWarning,
    compute_diagnostics,
)
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.fast.nutpie import compile_model, reused_callbacks
from crowdbayes.inference import Sampler, c_backend, seed_to_int
from crowdbayes.models import get_model
from crowdbayes.sbc_statistics import (
    SBCResult,
    default_bins,
    rank_bin_probabilities,
    rank_histogram,
)
from crowdbayes.simulate import Simulation

__all__ = [
    "SBCResult",
    "default_bins",
    "rank_bin_probabilities",
    "rank_histogram",
    "simulate_from_prior",
    "simulation_based_calibration",
]

#: Largest number of elements of one parameter array that are ranked by default.
MAX_ELEMENTS = 20


# ----------------------------------------------------------------------------- prior draws
def _as_bayesian(estimator_or_name: Any) -> BayesianCrowdModel:
    """A fresh, unfitted estimator with the same priors."""
    if isinstance(estimator_or_name, str):
        estimator = get_model(estimator_or_name)
    elif isinstance(estimator_or_name, type) and issubclass(estimator_or_name, BayesianCrowdModel):
        estimator = estimator_or_name()
    elif isinstance(estimator_or_name, BayesianCrowdModel):
        estimator = type(estimator_or_name)(**estimator_or_name.get_params())
    else:
        raise ValueError(
            "expected a model name or a Bayesian crowdbayes estimator, not "
            f"{type(estimator_or_name).__name__}"
        )
    if not isinstance(estimator, BayesianCrowdModel):
        raise ValueError(
            f"{estimator.name!r} has no prior to simulate from; choose a Bayesian model"
        )
    return estimator


def _check_design(n_items: int, n_annotators: int, labels_per_item: int, n_categories: int) -> None:
    for name, value, least in (
        ("n_items", n_items, 1),
        ("n_annotators", n_annotators, 1),
        ("labels_per_item", labels_per_item, 1),
        ("n_categories", n_categories, 2),
    ):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
    if labels_per_item > n_annotators:
        raise ValueError(
            f"labels_per_item ({labels_per_item}) cannot exceed n_annotators ({n_annotators}): "
            "each item is labelled by distinct annotators"
        )


def _design_frame(
    n_items: int, n_annotators: int, labels_per_item: int, n_categories: int
) -> pd.DataFrame:
    """The fixed design: item ``i`` is labelled by annotators ``i, i+1, ...`` (mod J).

    Every annotator labels about ``n_items * labels_per_item / n_annotators`` items and
    neighbouring annotators share items. Labels are placeholders.
    """
    item = np.repeat(np.arange(n_items), labels_per_item)
    offset = np.tile(np.arange(labels_per_item), n_items)
    annotator = (item + offset) % n_annotators
    width = len(str(n_annotators - 1))
    names = np.asarray([f"a{j:0{width}d}" for j in range(n_annotators)], dtype=object)
    return pd.DataFrame(
        {
            "item": item,
            "annotator": names[annotator],
            "label": (item + offset) % n_categories,
        }
    )


def _dims(model: pm.Model, name: str) -> tuple[str, ...]:
    return tuple(model.named_vars_to_dims.get(name, ()) or ())


def _labels_and_categories(labels: TensorVariable) -> tuple[TensorVariable, TensorVariable]:
    """A model's draw of ``labels`` and, from the same graph, each item's true category.

    The generative graph of ``labels`` (the inner graph of its Op; see
    :func:`crowdbayes.models._shared.observe_labels`) draws each item's true category, then
    each label given it. Rebuilt on the variable's own inputs (parameters and random
    generators), it gives both draws; the labels are those the model itself would draw.
    """
    node = labels.owner
    inner = node.op.fgraph
    position = node.outputs.index(labels)
    draws = [n for n in inner.toposort() if isinstance(n.op, RandomVariable)]
    if len(draws) != 2 or inner.outputs[position].owner is not draws[1]:
        raise ValueError(
            "the generative graph of 'labels' must draw the items' true categories, then the "
            "labels given them"
        )
    outputs, memo = inner.bind(list(node.inputs), return_memo=True)
    return outputs[position], memo[draws[0]].default_output()


class _PriorSimulator:
    """A model on the fixed design, with its prior and label draws compiled once."""

    def __init__(
        self,
        estimator: BayesianCrowdModel,
        n_items: int,
        n_annotators: int,
        labels_per_item: int,
        n_categories: int,
    ) -> None:
        _check_design(n_items, n_annotators, labels_per_item, n_categories)
        self.estimator = estimator
        self.categories = list(range(n_categories))
        frame = _design_frame(n_items, n_annotators, labels_per_item, n_categories)
        self.data = encode_annotations(frame, categories=self.categories)
        self.model = model = type(estimator).builder(
            self.data, estimator.resolved_priors(), replicate="new-items"
        )
        observed = [v.name for v in model.observed_RVs]
        if model.potentials or observed != ["labels"]:
            raise ValueError(
                f"{estimator.name}: cannot draw from a prior with potentials or observed "
                f"variables other than 'labels' ({[*model.potentials, *observed]})"
            )
        if "prevalence" not in model.named_vars:
            raise ValueError(f"{estimator.name}: the model has no variable 'prevalence'")
        outputs = [*model.free_RVs, *model.deterministics]
        self.names = [v.name for v in outputs]
        self.coords = {
            name: {dim: list(model.coords[dim]) for dim in _dims(model, name)}
            for name in self.names
        }
        self._outputs = [*outputs, *_labels_and_categories(model["labels"])]
        self._compiled: tuple[Any, list[Any]] | None = None

    def _draw(self, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Parameters, labels (per annotation) and true categories (per item) for one seed."""
        if self._compiled is None:
            with c_backend():
                # random_seed=False: the generators are reseeded before every draw
                draw = compile_pymc([], self._outputs, random_seed=False)
            rngs = [v for v in draw.get_shared() if isinstance(v.type, RandomGeneratorType)]
            self._compiled = (draw, rngs)
        draw, rngs = self._compiled
        reseed_rngs(rngs, seed)
        *values, labels, truth = draw()
        params = {name: np.asarray(v) for name, v in zip(self.names, values, strict=True)}
        return params, np.asarray(labels), np.asarray(truth)

    def parameters(self, seed: int) -> dict[str, np.ndarray]:
        """Free and deterministic variables drawn from the prior."""
        return self._draw(seed)[0]

    def simulate(self, seed: int) -> Simulation:
        """Parameters, true categories and labels for one seed."""
        params, labels, truth = self._draw(seed)
        data = self.data
        categories = np.asarray(self.categories)
        annotations = pd.DataFrame(
            {
                "item": data.items.to_numpy()[data.item_index],
                "annotator": data.annotators.to_numpy()[data.annotator_index],
                "label": categories[labels],
            }
        )
        true_labels = pd.Series(
            categories[truth], index=pd.Index(data.items.to_numpy(), name="item"), name="label"
        )
        confusion = params.get("confusion")
        return Simulation(
            annotations=annotations,
            true_labels=true_labels,
            prevalence=params["prevalence"],
            confusion=np.full(0, np.nan) if confusion is None else confusion,
            categories=list(self.categories),
            annotators=list(data.annotators),
            parameters=params,
        )

    def truth(self, sim: Simulation, name: str) -> xr.DataArray:
        """A true parameter as a labelled array."""
        coords = self.coords[name]
        return xr.DataArray(sim.parameters[name], dims=tuple(coords), coords=coords, name=name)


def simulate_from_prior(
    estimator_or_name: Any,
    *,
    n_items: int = 30,
    n_annotators: int = 5,
    labels_per_item: int = 3,
    n_categories: int = 2,
    random_seed: int | np.random.Generator | None = None,
) -> Simulation:
    """Draw parameters, true categories and labels from a model's own prior and likelihood.

    The model is built on a fixed design: item ``i`` is labelled by annotators ``i``,
    ``i + 1``, ..., ``i + labels_per_item - 1`` (mod ``n_annotators``); only the labels are
    random. Its free variables are drawn from their priors (deterministic ones follow), then
    the labels from the generative graph of the model's observed ``labels`` (built with
    ``replicate="new-items"``): each item's true category from ``prevalence``, each label
    given it. This is the generative process that the fit inverts, whatever the model.

    Parameters
    ----------
    estimator_or_name : str or BayesianCrowdModel
        A name in :data:`~crowdbayes.models.MODELS` or an estimator (its priors are used).
    n_items, n_annotators, labels_per_item, n_categories : int
        The design: ``labels_per_item`` distinct annotators per item; categories are
        ``0 .. n_categories - 1`` and annotators ``a0, a1, ...``.
    random_seed : int, numpy.random.Generator or None

    Returns
    -------
    Simulation
        ``annotations`` (item, annotator, label), ``true_labels``, ``prevalence``,
        ``confusion`` and, in ``parameters``, every free and deterministic variable.

    Raises
    ------
    ValueError
        For an unknown or non-Bayesian model, a model with potentials or observed variables
        other than ``labels``, or a design that cannot be built.

    Examples
    --------
    >>> sim = simulate_from_prior("one-coin", n_items=4, n_annotators=3, labels_per_item=2,
    ...                           random_seed=1)
    >>> sim.annotations[["item", "annotator"]].values.tolist()
    [[0, 'a0'], [0, 'a1'], [1, 'a1'], [1, 'a2'], [2, 'a2'], [2, 'a0'], [3, 'a0'], [3, 'a1']]
    >>> sorted(sim.parameters)
    ['accuracy', 'confusion', 'prevalence']
    """
    estimator = _as_bayesian(estimator_or_name)
    simulator = _PriorSimulator(estimator, n_items, n_annotators, labels_per_item, n_categories)
    return simulator.simulate(seed_to_int(random_seed))


# ----------------------------------------------------------------------------- fits and ranks
def _select_elements(
    truth: xr.DataArray, max_elements: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, list[str]]:
    """Flat positions of the ranked elements of a parameter and their names."""
    size = int(truth.size)
    if max_elements is not None and size > max_elements:
        positions = np.sort(rng.choice(size, size=max_elements, replace=False))
    else:
        positions = np.arange(size)
    if truth.ndim == 0:
        return positions, [str(truth.name)]
    labels = [truth[d].to_numpy() for d in truth.dims]
    names = []
    for pos in positions:
        index = np.unravel_index(pos, truth.shape)
        inner = ", ".join(str(lab[i]) for lab, i in zip(labels, index, strict=True))
        names.append(f"{truth.name}[{inner}]")
    return positions, names


def _ranks_of(
    posterior: xr.Dataset,
    truth: xr.DataArray,
    positions: np.ndarray,
    thin: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int]:
    """Rank of each selected true element among the thinned posterior draws."""
    draws = posterior[str(truth.name)].isel(draw=slice(None, None, thin))
    draws = draws.transpose("chain", "draw", *truth.dims)
    draws = draws.sel({d: truth[d].to_numpy() for d in truth.dims})
    flat = draws.to_numpy().reshape(draws.sizes["chain"] * draws.sizes["draw"], -1)[:, positions]
    true = truth.to_numpy().reshape(-1)[positions]
    below = (flat < true).sum(axis=0)
    ties = (flat == true).sum(axis=0)
    return below + rng.integers(0, ties + 1), flat.shape[0]


def _reemit(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """Sampling warnings as messages; any other warning is emitted again, not hidden."""
    messages = []
    for w in caught:
        if issubclass(w.category, SamplingWarning):
            messages.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return messages


def _fit(
    estimator: BayesianCrowdModel, data: AnnotationData, seed: int, **sampling: Any
) -> tuple[xr.Dataset, Diagnostics]:
    """Posterior draws and diagnostics of ``data`` as ``fit`` samples them.

    EM starting values, the model's target acceptance,
    :func:`~crowdbayes.inference.sample_posterior` (``sampling``: draws, tune, chains, sampler,
    cores), the label-switching fix and the convergence diagnostics, whose messages are warned
    as SamplingWarning. Not run: the label summaries, so neither the check that chains agree
    on each item's label probabilities.
    """
    priors = estimator.resolved_priors()
    model = type(estimator).builder(data, priors)
    with c_backend():
        run = estimator.sample(
            model,
            estimator.start(data, priors),
            data,
            seed,
            estimator.default_target_accept,
            False,
            **sampling,
        )
    posterior = run.posterior
    diagnostics = compute_diagnostics(
        posterior,
        run.sample_stats,
        [v for v in estimator.diagnostic_vars if v in posterior],
        permuted_chains=run.permuted,
        relabelled=run.relabelled,
    )
    for message in diagnostics.messages:
        warnings.warn(f"{estimator.name}: {message}", SamplingWarning, stacklevel=2)
    return posterior, diagnostics


def simulation_based_calibration(
    estimator_or_name: Any,
    *,
    n_simulations: int = 100,
    n_items: int = 30,
    n_annotators: int = 5,
    labels_per_item: int = 3,
    n_categories: int = 2,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    sampler: Sampler = "nutpie",
    thin: int = 5,
    random_seed: int | np.random.Generator | None = None,
    parameters: Sequence[str] | None = None,
    max_elements: int | None = MAX_ELEMENTS,
    simulate_with: Any = None,
    cores: int | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
) -> SBCResult:
    """Simulation-based calibration: rank true parameters among posterior draws.

    For each simulation, parameters and labels are drawn with :func:`simulate_from_prior`
    (on the same fixed design every time), the model is fitted by NUTS as ``fit`` samples it
    (EM starting values, the model's target acceptance, label-switching check, diagnostics),
    every ``thin``-th draw of each chain is kept, and the rank of each true global parameter
    among the kept draws is recorded. Fits that emit a
    :class:`~crowdbayes.diagnostics.SamplingWarning` or have label-permuted chains are kept
    and reported in :attr:`SBCResult.fits`: dropping them would bias the ranks. (``fit``'s
    label summaries are not computed, so neither is its check that chains agree on each
    item's label probabilities; R-hat, ESS, divergences and label switching are checked.)

    Parameters
    ----------
    estimator_or_name : str or BayesianCrowdModel
        The model fitted (with its priors).
    n_simulations : int
    n_items, n_annotators, labels_per_item, n_categories : int
        The design (see :func:`simulate_from_prior`).
    draws, tune, chains : int
        NUTS settings of each fit.
    sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
        With ``"nutpie"`` the model is compiled once, before the first simulation, and every
        fit reuses it (see the module notes); ``"pymc"`` compiles every fit with the C
        backend.
    thin : int
        Keep every ``thin``-th draw of each chain, so that ranks come from nearly independent
        draws (autocorrelated draws pile ranks at the ends).
    random_seed : int, numpy.random.Generator or None
    parameters : sequence of str, optional
        Variables to rank; default the estimator's ``diagnostic_vars``.
    max_elements : int or None
        At most this many elements of each variable are ranked (a fixed random subset);
        None ranks all.
    simulate_with : str or BayesianCrowdModel, optional
        Draw the data from this model instead (for instance other priors): then ranks should
        **not** be uniform, which checks that the test has power.
    cores : int, optional
        Chains run in parallel (default: as :func:`~crowdbayes.inference.sample_posterior`).
    callback : callable, optional
        Called after each simulation with its index and its row of :attr:`SBCResult.fits`.

    Returns
    -------
    SBCResult

    Raises
    ------
    ValueError
        For bad settings or a model that cannot be simulated from.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     result = simulation_based_calibration(
    ...         "one-coin", n_simulations=2, n_items=10, n_annotators=3, draws=20, tune=50,
    ...         sampler="pymc", thin=2, random_seed=0)
    >>> result.ranks.columns.tolist()
    ['simulation', 'variable', 'parameter', 'rank', 'n_ranks']
    >>> int(result.ranks["n_ranks"].iloc[0])  # 2 chains x 10 kept draws
    20
    """
    started = time.perf_counter()
    estimator = _as_bayesian(estimator_or_name)
    generator = estimator if simulate_with is None else _as_bayesian(simulate_with)
    for name, value in (("n_simulations", n_simulations), ("thin", thin)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if max_elements is not None and max_elements < 1:
        raise ValueError(f"max_elements must be positive or None, got {max_elements}")
    if draws < thin:
        raise ValueError(f"draws ({draws}) must be at least thin ({thin})")
    simulator = _PriorSimulator(generator, n_items, n_annotators, labels_per_item, n_categories)
    names = list(estimator.diagnostic_vars if parameters is None else parameters)
    unknown = [n for n in names if n not in simulator.names]
    if not names or unknown:
        raise ValueError(
            f"parameters must name variables of the simulated model ({', '.join(simulator.names)})"
            f"; got {unknown or names}"
        )

    seed = seed_to_int(random_seed)
    rng = np.random.default_rng(seed)
    sim_seeds = rng.integers(2**31 - 1, size=n_simulations)
    fit_seeds = rng.integers(2**31 - 1, size=n_simulations)
    tie_rng = np.random.default_rng(rng.integers(2**31 - 1))
    first = simulator.simulate(int(sim_seeds[0]))
    chosen = {
        name: _select_elements(simulator.truth(first, name), max_elements, rng) for name in names
    }
    if sampler == "nutpie":
        # the one compile of the model structure; every fit takes its callbacks
        with c_backend():
            compile_model(type(estimator).builder(first.data, estimator.resolved_priors()))
    setup_seconds = time.perf_counter() - started

    sampling = {"draws": draws, "tune": tune, "chains": chains, "sampler": sampler, "cores": cores}
    rank_rows: list[dict[str, Any]] = []
    fit_rows: list[dict[str, Any]] = []
    for s in range(n_simulations):
        t0 = time.perf_counter()
        sim = first if s == 0 else simulator.simulate(int(sim_seeds[s]))
        fit_seed = int(fit_seeds[s])
        reused_before = reused_callbacks()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SamplingWarning)
            posterior, diagnostics = _fit(estimator, sim.data, fit_seed, **sampling)
        messages = [m.removeprefix(f"{estimator.name}: ") for m in _reemit(caught)]
        for name in names:
            truth = simulator.truth(sim, name)
            positions, labels = chosen[name]
            ranks, n_ranks = _ranks_of(posterior, truth, positions, thin, tie_rng)
            rank_rows.extend(
                {
                    "simulation": s,
                    "variable": name,
                    "parameter": label,
                    "rank": int(r),
                    "n_ranks": n_ranks,
                }
                for label, r in zip(labels, ranks, strict=True)
            )
        row = {
            "simulation": s,
            "seed": int(sim_seeds[s]),
            "fit_seed": fit_seed,
            "seconds": time.perf_counter() - t0,
            "reused": reused_callbacks() > reused_before,
            "n_chains": int(posterior.sizes["chain"]),
            "n_divergent": diagnostics.n_divergent,
            "max_rhat": diagnostics.max_rhat,
            "min_ess_bulk": diagnostics.min_ess_bulk,
            "permuted_chains": ",".join(str(c) for c in diagnostics.permuted_chains),
            "warnings": " | ".join(messages),
            "flagged": bool(messages),
        }
        fit_rows.append(row)
        if callback is not None:
            callback(s, row)

    fits = pd.DataFrame(fit_rows).set_index("simulation")
    settings = {
        "model": estimator.name,
        "simulated_with": generator.name,
        "priors": estimator.resolved_priors().to_dict(),
        "simulation_priors": generator.resolved_priors().to_dict(),
        "n_items": n_items,
        "n_annotators": n_annotators,
        "labels_per_item": labels_per_item,
        "n_categories": n_categories,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "thin": thin,
        "sampler": sampler,
        "compiled_once": bool(fits["reused"].all()),
        "random_seed": seed,
    }
    return SBCResult(
        model=estimator.name,
        ranks=pd.DataFrame(rank_rows),
        fits=fits,
        settings=settings,
        wall_seconds=time.perf_counter() - started,
        setup_seconds=setup_seconds,
    )
