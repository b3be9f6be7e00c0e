"""Simulation-based calibration (SBC) of the package's Bayesian models.

Talts, S., Betancourt, M., Simpson, D., Vehtari, A. & Gelman, A. (2018). Validating Bayesian
inference algorithms with simulation-based calibration. arXiv:1804.06788.

If parameters :math:`\\tilde\\theta` are drawn from the prior, labels :math:`\\tilde y` from the
model given them, and the posterior :math:`p(\\theta \\mid \\tilde y)` is sampled correctly, then
the rank of :math:`\\tilde\\theta` among :math:`L` posterior draws is uniform on
:math:`\\{0, \\dots, L\\}`. Ranks piled up at both ends mean posteriors that are too narrow, a hump
in the middle too wide, a slope a bias. Any error on the way shows up: in the model code, the
sampler and its initialisation, or the label-switching fix of the estimators.

Everything here is generic over :data:`crowdbayes.estimators.MODELS`:

* :func:`simulate_from_prior` draws data from a model's **own** PyMC graph on a fixed design
  (which annotator labels which item): the free variables from their priors, each item's true
  category from ``prevalence``, each label from the model's named variable
  ``annotation_log_probability``.
* :func:`simulation_based_calibration` repeats that, fits each data set as a user would, and
  ranks the true global parameters (the estimator's ``diagnostic_vars``) among thinned posterior
  draws. :meth:`SBCResult.uniformity` tests the ranks for uniformity.

Speed: with ``sampler="nutpie"`` the model is compiled **once**. The labels enter a model's graph
only as constant index arrays; these are found by building the model on two label vectors and
comparing the graphs, replaced by shared variables, and swapped per simulation with nutpie's
``with_data``. Each simulated data set's own graph is checked against the compiled one (same
operations, same constants apart from the swapped ones), so the compiled model computes exactly
that data set's posterior; a data set that does not match is fitted from scratch. Otherwise each
simulation calls the estimator's ``fit``, compiling with PyTensor's C backend, which compiles in
seconds rather than Numba's tens of seconds.
"""

import dataclasses
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import xarray as xr
from pymc.pytensorf import compile as compile_pymc
from pymc.pytensorf import reseed_rngs
from pytensor.graph.basic import Constant
from pytensor.tensor.random.type import RandomGeneratorType
from scipy import stats

from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.diagnostics import SamplingWarning, compute_diagnostics
from crowdbayes.estimators import BayesianCrowdModel, get_model
from crowdbayes.inference import Sampler, seed_to_int
from crowdbayes.models._common import ANNOTATION_LOG_PROBABILITY
from crowdbayes.models._draws import DrawEvaluator
from crowdbayes.simulate import Simulation

__all__ = ["SBCResult", "simulate_from_prior", "simulation_based_calibration"]

#: Name of the likelihood potential every builder adds; any other potential would be part of
#: the prior, which forward sampling cannot draw from.
LIKELIHOOD_POTENTIAL = "label_likelihood"
#: Largest number of elements of one parameter array that are ranked by default.
MAX_ELEMENTS = 20


# ----------------------------------------------------------------------------- helpers
@contextmanager
def _fast_compile() -> Iterator[None]:
    """Compile with PyTensor's C backend (seconds) instead of the default Numba (tens of seconds).

    Without a C compiler the default mode is kept. PyTensor's one-off notice that it found no
    BLAS library (irrelevant for these small models) is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="PyTensor could not link to a BLAS", category=UserWarning
        )
        if not pytensor.config.cxx:
            yield
            return
        with pytensor.config.change_flags(mode="CVM", traceback__limit=0):
            yield


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


class _PriorSimulator:
    """A model on the fixed design, with its prior draws and label distribution compiled once."""

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
        self.model = model = estimator.build_model(self.data)
        extra = [p.name for p in model.potentials if p.name != LIKELIHOOD_POTENTIAL]
        if extra or model.observed_RVs:
            raise ValueError(
                f"{estimator.name}: cannot draw from a prior with potentials or observed "
                f"variables other than {LIKELIHOOD_POTENTIAL!r} ({extra or model.observed_RVs})"
            )
        for name in ("prevalence", ANNOTATION_LOG_PROBABILITY):
            if name not in model.named_vars:
                raise ValueError(f"{estimator.name}: the model has no variable {name!r}")
        outputs = [*model.free_RVs, *model.deterministics]
        self.names = [v.name for v in outputs]
        self.free_names = [v.name for v in model.free_RVs]
        self.coords = {
            name: {dim: list(model.coords[dim]) for dim in _dims(model, name)}
            for name in self.names
        }
        self._outputs = outputs
        self._compiled: tuple[Any, DrawEvaluator, list[Any]] | None = None

    def _functions(self) -> tuple[Any, DrawEvaluator, list[Any]]:
        """Prior draws and label distribution, compiled on first use."""
        if self._compiled is None:
            with _fast_compile():
                # random_seed=False: the generators are reseeded before every draw.
                draw = compile_pymc([], self._outputs, random_seed=False)
                evaluator = DrawEvaluator(self.model, [ANNOTATION_LOG_PROBABILITY])
            rngs = [v for v in draw.get_shared() if isinstance(v.type, RandomGeneratorType)]
            self._compiled = (draw, evaluator, rngs)
        return self._compiled

    def parameters(self, seed: int) -> dict[str, np.ndarray]:
        """Free and deterministic variables drawn from the prior."""
        draw, _, rngs = self._functions()
        reseed_rngs(rngs, seed)
        values = draw()
        return {name: np.asarray(v) for name, v in zip(self.names, values, strict=True)}

    def simulate(self, seed: int) -> Simulation:
        """Parameters, true categories and labels for one seed."""
        seeds = np.random.SeedSequence(seed).spawn(2)
        params = self.parameters(int(seeds[0].generate_state(1)[0]))
        rng = np.random.default_rng(seeds[1])
        data = self.data
        prevalence = params["prevalence"]
        truth = rng.choice(data.n_categories, size=data.n_items, p=prevalence / prevalence.sum())
        draw = xr.Dataset(
            {
                name: (("chain", "draw", *self.coords[name]), params[name][None, None])
                for name in self.free_names
            }
        )
        _, (log_prob,) = next(self._functions()[1].iterate(draw))
        # (annotation, category): each label's distribution given its item's true category.
        rows = log_prob[0][np.arange(data.n_annotations), truth[data.item_index]]
        labels = np.argmax(rows + rng.gumbel(size=rows.shape), axis=1)  # Gumbel-max draw
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
            prevalence=prevalence,
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
    random. Its free variables are drawn from their priors (deterministic ones follow), each
    item's true category from ``prevalence``, and each label from the model's
    ``annotation_log_probability`` at those values: the generative process that the fit
    inverts, whatever the model.

    Parameters
    ----------
    estimator_or_name : str or BayesianCrowdModel
        A name in :data:`~crowdbayes.estimators.MODELS` or an estimator (its priors are used).
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
        For an unknown or non-Bayesian model, a model whose prior has extra potentials, or a
        design that cannot be built.

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


# ----------------------------------------------------------------------------- compiled reuse
class _NotReusable(Exception):
    """The model's graph does not depend on the labels only through constant arrays."""


def _graph_constants(model: pm.Model) -> tuple[Any, list[tuple[Any, int, Constant]]]:
    """The model as a FunctionGraph and every (op, input position, constant) in graph order."""
    from pymc.model.fgraph import fgraph_from_model

    fgraph, _ = fgraph_from_model(model)
    found = []
    for node in fgraph.toposort():
        for position, inp in enumerate(node.inputs):
            if isinstance(inp, Constant):
                found.append((node, position, inp))
    return fgraph, found


def _same_site(a: tuple[Any, int, Constant], b: tuple[Any, int, Constant]) -> bool:
    return a[0].op == b[0].op and a[1] == b[1] and a[2].type == b[2].type


class _SharedLabelModel:
    """The model on the fixed design with its label-dependent constants made shared variables.

    Parameters
    ----------
    estimator : BayesianCrowdModel
    first, second : AnnotationData
        The same design with labels that differ everywhere.
    """

    def __init__(
        self, estimator: BayesianCrowdModel, first: AnnotationData, second: AnnotationData
    ) -> None:
        from pymc.model.fgraph import model_from_fgraph

        self.estimator = estimator
        fgraph, sites = _graph_constants(estimator.build_model(first))
        _, other = _graph_constants(estimator.build_model(second))
        if len(sites) != len(other) or not all(map(_same_site, sites, other)):
            raise _NotReusable("the model's graph changes with the labels")
        varying: dict[Constant, pytensor.compile.SharedVariable] = {}
        for (_, _, const), (_, _, alt) in zip(sites, other, strict=True):
            if const not in varying and not np.array_equal(const.data, alt.data):
                varying[const] = pytensor.shared(
                    np.array(const.data),
                    name=f"sbc_labels_{len(varying)}",
                    shape=const.type.shape,
                )
        if not varying:
            raise _NotReusable("no constant of the model's graph depends on the labels")
        for node, position, const in sites:
            if const in varying:
                fgraph.change_node_input(node, position, varying[const], import_missing=True)
        self.sites = sites
        self.shared = varying
        self.model = model_from_fgraph(fgraph, mutate_fgraph=True)

    def values_for(self, data: AnnotationData) -> dict[str, np.ndarray] | None:
        """Values of the shared variables for ``data``; None when its graph does not match."""
        _, sites = _graph_constants(self.estimator.build_model(data))
        if len(sites) != len(self.sites):
            return None
        values: dict[str, np.ndarray] = {}
        for ref, new in zip(self.sites, sites, strict=True):
            if not _same_site(ref, new):
                return None
            const = ref[2]
            if const in self.shared:
                name = str(self.shared[const].name)
                if name in values and not np.array_equal(values[name], new[2].data):
                    return None
                values[name] = np.asarray(new[2].data)
            elif not np.array_equal(const.data, new[2].data):
                return None
        return values


class _ReusedNutpie:
    """nutpie's compiled model of a :class:`_SharedLabelModel`, sampled per data set."""

    def __init__(self, shared: _SharedLabelModel) -> None:
        import nutpie

        self.shared = shared
        model = shared.model
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
            self.compiled = nutpie.compile_pymc_model(model)
        fields = {f.name for f in dataclasses.fields(self.compiled)}
        if "initial_point_func" not in fields or not hasattr(self.compiled, "with_data"):
            raise _NotReusable("this nutpie version cannot take per-data initial points")
        self.value_names = [model.rvs_to_values[rv].name for rv in model.free_RVs]

    def sample(
        self,
        values: dict[str, np.ndarray],
        initvals: dict[str, np.ndarray],
        *,
        draws: int,
        tune: int,
        chains: int,
        seed: int,
        cores: int | None,
        target_accept: float,
    ) -> xr.DataTree:
        """Sample as ``pm.sample(nuts_sampler="nutpie", initvals=initvals)`` would."""
        import nutpie
        from pymc.initial_point import make_initial_point_fn

        model = self.shared.model
        with _fast_compile():
            # As PyMC passes initvals to nutpie: each chain starts at them, jittered.
            point_fn = make_initial_point_fn(
                model=model,
                overrides=initvals,
                jitter_rvs=set(model.free_RVs),
                return_transformed=True,
            )
        lock = threading.Lock()
        names = self.value_names

        def initial_point(chain_seed: Any) -> np.ndarray:
            with lock:
                point = point_fn(chain_seed)
            return np.concatenate([np.asarray(point[n], dtype="float64").ravel() for n in names])

        compiled = dataclasses.replace(
            self.compiled.with_data(**values), initial_point_func=initial_point
        )
        return nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores if cores is not None else chains,
            seed=seed,
            save_warmup=False,
            progress_bar=False,
            target_accept=target_accept,
        )


# ----------------------------------------------------------------------------- results
def _holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (valid under any dependence)."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def rank_bin_probabilities(n_ranks: int, bins: int) -> np.ndarray:
    """P(rank falls in each bin) under uniformity: ranks ``0..n_ranks`` binned evenly.

    Rank ``r`` goes to bin ``floor(r * bins / (n_ranks + 1))``.

    Examples
    --------
    >>> rank_bin_probabilities(4, 2).tolist()  # ranks 0, 1, 2 | 3, 4
    [0.6, 0.4]
    """
    values = np.arange(n_ranks + 1)
    return np.bincount(values * bins // (n_ranks + 1), minlength=bins) / (n_ranks + 1)


def rank_histogram(
    ranks: np.ndarray, n_ranks: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Observed and expected (under uniformity) counts of ranks per bin.

    Simulations may differ in ``n_ranks`` (chains dropped for label switching); the expected
    counts add each simulation's exact bin probabilities (:func:`rank_bin_probabilities`).

    Parameters
    ----------
    ranks, n_ranks : numpy.ndarray of int
        One entry per simulation.
    bins : int

    Returns
    -------
    observed, expected : numpy.ndarray, shape (bins,)

    Examples
    --------
    >>> obs, exp = rank_histogram(np.array([0, 1, 4]), np.array([4, 4, 4]), 2)
    >>> obs.tolist(), exp.round(2).tolist()
    ([2.0, 1.0], [1.8, 1.2])
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    n_ranks = np.asarray(n_ranks, dtype=np.int64)
    observed = np.bincount(ranks * bins // (n_ranks + 1), minlength=bins).astype(float)
    expected = np.zeros(bins)
    for size, count in zip(*np.unique(n_ranks, return_counts=True), strict=True):
        expected += count * rank_bin_probabilities(int(size), bins)
    return observed, expected


def default_bins(n_simulations: int, min_ranks: int) -> int:
    """Bins of the rank histogram: about 5 simulations per bin, 2 to 20 bins.

    Examples
    --------
    >>> default_bins(100, 99), default_bins(12, 99), default_bins(1000, 9)
    (20, 2, 10)
    """
    return int(max(2, min(20, n_simulations // 5, min_ranks + 1)))


@dataclass
class SBCResult:
    """Ranks of true parameters among posterior draws, per simulation.

    Attributes
    ----------
    model : str
        The model's name.
    ranks : pandas.DataFrame
        One row per simulation and scalar parameter: ``simulation``, ``variable``,
        ``parameter`` (e.g. ``prevalence[1]``), ``rank`` (posterior draws below the true value,
        ties split at random) and ``n_ranks`` (thinned draws; ranks lie in ``0..n_ranks``).
    fits : pandas.DataFrame
        One row per simulation: ``seed`` (reproduces the data with
        :func:`simulate_from_prior`), ``fit_seed``, ``seconds``, ``reused`` (sampled with the
        compiled model), ``n_chains`` kept, ``n_divergent``, ``max_rhat``, ``min_ess_bulk``,
        ``permuted_chains`` (chains found label-permuted and relabelled or dropped),
        ``warnings`` (the SamplingWarning messages) and ``flagged`` (any of them).
    settings : dict
        The design and sampler settings.
    wall_seconds : float
        Time of the whole run.
    setup_seconds : float
        Time spent before the first simulation (model building and compilation).
    """

    model: str
    ranks: pd.DataFrame
    fits: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = float("nan")
    setup_seconds: float = float("nan")

    @property
    def n_simulations(self) -> int:
        """Number of simulations."""
        return len(self.fits)

    @property
    def parameters(self) -> list[str]:
        """The ranked scalar parameters, in order."""
        return list(dict.fromkeys(self.ranks["parameter"]))

    @property
    def n_flagged(self) -> int:
        """Fits that emitted a SamplingWarning."""
        return int(self.fits["flagged"].sum())

    @property
    def n_permuted(self) -> int:
        """Fits with at least one label-permuted chain."""
        return int((self.fits["permuted_chains"] != "").sum())

    def uniformity(self, bins: int | None = None) -> pd.DataFrame:
        """Test each parameter's ranks for uniformity.

        Two tests per parameter: a chi-square test of the binned ranks against their exact
        expected counts (sensitive to ranks piled at both ends or in the middle) and a
        Kolmogorov-Smirnov test of the normalised ranks ``(rank + 0.5) / (n_ranks + 1)``
        (sensitive to a shift). ``p`` combines them (twice the smaller, at most 1);
        ``p_adjusted`` is Holm-adjusted over parameters, valid however the parameters depend
        on each other. :meth:`combined_p_value` is the smallest ``p_adjusted``.

        Parameters
        ----------
        bins : int, optional
            Default :func:`default_bins`.

        Returns
        -------
        pandas.DataFrame
            Indexed by parameter: ``n``, ``chi2``, ``df``, ``chi2_p``, ``ks``, ``ks_p``,
            ``p``, ``p_adjusted``.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> ranks = pd.DataFrame({"simulation": np.arange(200), "variable": "x",
        ...                       "parameter": "x", "rank": rng.integers(0, 100, 200),
        ...                       "n_ranks": 99})
        >>> fits = pd.DataFrame({"flagged": [False] * 200, "permuted_chains": [""] * 200})
        >>> table = SBCResult("toy", ranks, fits).uniformity()
        >>> bool(table.loc["x", "p"] > 0.01), int(table.loc["x", "df"])
        (True, 19)
        """
        rows = []
        for name, group in self.ranks.groupby("parameter", sort=False):
            rank = group["rank"].to_numpy(dtype=np.int64)
            n_ranks = group["n_ranks"].to_numpy(dtype=np.int64)
            n_bins = bins if bins is not None else default_bins(len(rank), int(n_ranks.min()))
            if n_bins < 2 or n_bins > n_ranks.min() + 1:
                raise ValueError(f"bins must lie between 2 and {n_ranks.min() + 1}, got {n_bins}")
            observed, expected = rank_histogram(rank, n_ranks, n_bins)
            chi2 = float(((observed - expected) ** 2 / expected).sum())
            chi2_p = float(stats.chi2.sf(chi2, n_bins - 1))
            ks = stats.kstest((rank + 0.5) / (n_ranks + 1), "uniform")
            rows.append(
                {
                    "parameter": name,
                    "n": len(rank),
                    "chi2": chi2,
                    "df": n_bins - 1,
                    "chi2_p": chi2_p,
                    "ks": float(ks.statistic),
                    "ks_p": float(ks.pvalue),
                    "p": min(1.0, 2.0 * min(chi2_p, float(ks.pvalue))),
                }
            )
        table = pd.DataFrame(rows).set_index("parameter")
        table["p_adjusted"] = _holm(table["p"].to_numpy())
        return table

    def combined_p_value(self, bins: int | None = None) -> float:
        """One p-value for "every parameter's ranks are uniform" (Holm / Bonferroni).

        Examples
        --------
        >>> ranks = pd.DataFrame({"simulation": np.arange(30), "variable": "x",
        ...                       "parameter": "x", "rank": np.zeros(30, dtype=int),
        ...                       "n_ranks": 99})
        >>> fits = pd.DataFrame({"flagged": [False] * 30, "permuted_chains": [""] * 30})
        >>> SBCResult("toy", ranks, fits).combined_p_value() < 1e-6  # every rank is 0
        True
        """
        return float(self.uniformity(bins)["p_adjusted"].min())


# ----------------------------------------------------------------------------- SBC
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
    reuse_compiled: bool = True,
    cores: int | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
) -> SBCResult:
    """Simulation-based calibration: rank true parameters among posterior draws.

    For each simulation, parameters and labels are drawn with :func:`simulate_from_prior`
    (on the same fixed design every time), the model is fitted by NUTS as a user would fit it
    (EM starting values, label-switching check, diagnostics), every ``thin``-th draw of each
    chain is kept, and the rank of each true global parameter among the kept draws is
    recorded. Fits that emit a :class:`~crowdbayes.diagnostics.SamplingWarning` or have
    label-permuted chains are kept and reported in :attr:`SBCResult.fits`: dropping them
    would bias the ranks. (Sampled with the compiled-once model, a fit runs the same steps as
    ``fit`` except the check that chains agree on each item's label probabilities, which needs
    the per-draw label probabilities; R-hat, ESS, divergences and label switching are checked.)

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
        With ``"nutpie"`` the model is compiled once and reused (see the module notes);
        otherwise each simulation calls ``fit`` (``"pymc"`` compiles with the C backend).
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
    reuse_compiled : bool
        Compile the nutpie model once (default). False calls ``fit`` every time.
    cores : int, optional
        Chains run in parallel (the samplers' default when None).
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

    reused: _ReusedNutpie | None = None
    if sampler == "nutpie" and reuse_compiled:
        design = simulator.data
        frame = design.to_frame()
        shifted = frame.assign(label=(frame["label"] + 1) % n_categories)
        try:
            shared = _SharedLabelModel(
                estimator, design, encode_annotations(shifted, categories=simulator.categories)
            )
            reused = _ReusedNutpie(shared)
        except _NotReusable:
            reused = None
    setup_seconds = time.perf_counter() - started

    priors = estimator._resolved_priors()
    rank_rows: list[dict[str, Any]] = []
    fit_rows: list[dict[str, Any]] = []
    for s in range(n_simulations):
        t0 = time.perf_counter()
        sim = first if s == 0 else simulator.simulate(int(sim_seeds[s]))
        fit_seed = int(fit_seeds[s])
        values = None
        data = None
        if reused is not None:
            data = encode_annotations(sim.annotations, categories=sim.categories)
            values = reused.shared.values_for(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SamplingWarning)
            if reused is not None and values is not None and data is not None:
                em = estimator._em(data, priors)
                tree = reused.sample(
                    values,
                    estimator._initial_values(em, data),
                    draws=draws,
                    tune=tune,
                    chains=chains,
                    seed=fit_seed,
                    cores=cores,
                    target_accept=estimator.default_target_accept,  # as fit() samples
                )
                posterior, sample_stats, permuted, relabelled = estimator._fix_label_switching(
                    tree["posterior"].to_dataset(), tree["sample_stats"].to_dataset(), data
                )
                diagnostics = compute_diagnostics(
                    posterior,
                    sample_stats,
                    [v for v in estimator.diagnostic_vars if v in posterior],
                    permuted_chains=permuted,
                    relabelled=relabelled,
                )
                for message in diagnostics.messages:
                    warnings.warn(f"{estimator.name}: {message}", SamplingWarning, stacklevel=2)
            else:
                fitted = _as_bayesian(estimator)
                with _fast_compile():
                    fitted.fit(
                        sim.annotations,
                        categories=sim.categories,
                        draws=draws,
                        tune=tune,
                        chains=chains,
                        sampler=sampler,
                        random_seed=fit_seed,
                        progressbar=False,
                        cores=cores,
                    )
                posterior = fitted.datatree_["posterior"].to_dataset()
                diagnostics = fitted.diagnostics_
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
            "reused": values is not None,
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

    settings = {
        "model": estimator.name,
        "simulated_with": generator.name,
        "priors": estimator._resolved_priors().to_dict(),
        "simulation_priors": generator._resolved_priors().to_dict(),
        "n_items": n_items,
        "n_annotators": n_annotators,
        "labels_per_item": labels_per_item,
        "n_categories": n_categories,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "thin": thin,
        "sampler": sampler,
        "compiled_once": reused is not None,
        "random_seed": seed,
    }
    return SBCResult(
        model=estimator.name,
        ranks=pd.DataFrame(rank_rows),
        fits=pd.DataFrame(fit_rows).set_index("simulation"),
        settings=settings,
        wall_seconds=time.perf_counter() - started,
        setup_seconds=setup_seconds,
    )


__all__ += ["rank_bin_probabilities", "rank_histogram", "default_bins"]
