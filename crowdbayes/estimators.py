"""Estimators: scikit-learn-shaped wrappers that validate, build, fit and summarise.

Settings (priors) go to ``__init__`` and are stored unmodified; data go to ``fit``, which returns
``self``; fitted state lives in attributes ending in ``_`` (``result_``, ``datatree_``,
``labels_``...). Each model's estimator class lives in its model file
(:mod:`crowdbayes.models`) beside its priors, its builder and its starting values; this module
holds what they share: :class:`BayesianCrowdModel.fit` validates the data, takes the model's
starting values, builds the model and dispatches to NUTS, the mode or ADVI, then hands the
draws to :mod:`crowdbayes.summaries`.
"""

import json
import time
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, overload

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.diagnostics import (
    Diagnostics,
    SamplingWarning,
    compute_diagnostics,
    fix_label_switching,
    variable_statistics,
)
from crowdbayes.em import Start
from crowdbayes.inference import (
    Sampler,
    VariationalInfo,
    default_vi_iterations,
    find_map,
    fit_variational,
    sample_posterior,
    seed_to_int,
)
from crowdbayes.results import FitResult, make_provenance
from crowdbayes.summaries import (
    data_groups,
    point_dataset,
    posterior_summaries,
    with_annotator_accuracy,
)

__all__ = [
    "BayesianCrowdModel",
    "CrowdModel",
    "Draws",
    "Method",
    "NotFittedError",
    "as_data",
    "priors_from_result",
]

Method = Literal["nuts", "map", "vi"]


class NotFittedError(ValueError, AttributeError):
    """Raised when a fitted attribute is read before ``fit``."""


class _Fitted[T]:
    """A fitted attribute (``labels_``, ...): ``read`` of the estimator's result.

    Reading it before ``fit`` raises :class:`NotFittedError`.
    """

    def __init__(self, read: Callable[[FitResult], T], doc: str) -> None:
        self.read = read
        self.__doc__ = doc

    @overload
    def __get__(self, estimator: None, owner: type) -> "_Fitted[T]": ...
    @overload
    def __get__(self, estimator: "CrowdModel", owner: type) -> T: ...
    def __get__(self, estimator: "CrowdModel | None", owner: type) -> "T | _Fitted[T]":
        return self if estimator is None else self.read(estimator._check_fitted())


class CrowdModel:
    """Base class of every estimator: fitted-state accessors and crowd-kit shortcuts."""

    name: ClassVar[str] = ""
    _result: FitResult | None = None
    _model: pm.Model | None = None

    # ------------------------------------------------------------------ fitted state
    def _check_fitted(self) -> FitResult:
        if self._result is None:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call .fit(annotations) first"
            )
        return self._result

    result_ = _Fitted(lambda result: result, "The fitted :class:`~crowdbayes.results.FitResult`.")
    datatree_ = _Fitted(lambda result: result.datatree, "The fitted :class:`xarray.DataTree`.")
    labels_ = _Fitted(FitResult.labels, "Per item: posterior mode, its probability, entropy, P(k).")
    label_probs_ = _Fitted(FitResult.label_probabilities, "P(true category) per item.")
    annotators_ = _Fitted(FitResult.annotators, "Per annotator: labels, accuracy, interval.")
    prevalence_ = _Fitted(FitResult.prevalence, "Category prevalence with intervals.")
    confusion_ = _Fitted(FitResult.confusion, "Confusion matrices (long format), intervals.")
    diagnostics_ = _Fitted(lambda result: result.diagnostics, "Convergence diagnostics.")

    # Subclasses define ``fit(annotations, *, gold=None, ..., random_seed=None) -> self``.
    fit: Any

    # ------------------------------------------------------------------ crowd-kit API
    def fit_predict(self, annotations: Any, **fit_kwargs: Any) -> "pd.Series[Any]":
        """Fit, then return each item's most probable label (crowd-kit's ``fit_predict``).

        Returns
        -------
        pandas.Series
            Named ``agg_label``, indexed by the item column's name (``task`` for crowd-kit
            input).

        Examples
        --------
        >>> import pandas as pd
        >>> from crowdbayes.models import MajorityVote
        >>> df = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"),
        ...                    "label": [0, 0, 1, 1, 1, 1]})
        >>> MajorityVote().fit_predict(df, random_seed=0).to_dict()
        {1: 0, 2: 1}
        """
        result = self.fit(annotations, **fit_kwargs).result_
        labels = result.labels()["label"].rename("agg_label")
        labels.index.name = result.data.column_names["item"]
        return labels

    def fit_predict_proba(self, annotations: Any, **fit_kwargs: Any) -> pd.DataFrame:
        """Fit, then return P(each category) per item (crowd-kit's ``fit_predict_proba``).

        Examples
        --------
        >>> import pandas as pd
        >>> from crowdbayes.models import MajorityVote
        >>> df = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"),
        ...                    "label": [0, 0, 1, 1, 1, 1]})
        >>> MajorityVote().fit_predict_proba(df, random_seed=0).round(2).to_numpy().tolist()
        [[0.67, 0.33], [0.0, 1.0]]
        """
        result = self.fit(annotations, **fit_kwargs).result_
        probs = result.label_probabilities()
        probs.index.name = result.data.column_names["item"]
        probs.columns.name = None
        return probs

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def get_params(self) -> dict[str, Any]:
        """The constructor settings, as stored (scikit-learn convention)."""
        return {}


def as_data(
    annotations: Any,
    *,
    gold: Any = None,
    categories: Sequence[Hashable] | None = None,
    item_col: str = "item",
    annotator_col: str = "annotator",
    label_col: str = "label",
) -> AnnotationData:
    """Encode ``annotations`` (DataFrame or CSV path), or pass AnnotationData through.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"item": [1, 1], "annotator": ["a", "b"], "label": ["x", "y"]})
    >>> as_data(frame).n_items
    1
    """
    if isinstance(annotations, AnnotationData):
        if gold is not None or categories is not None:
            raise ValueError(
                "gold and categories are set when encoding; pass them to encode_annotations"
            )
        return annotations
    return encode_annotations(
        annotations,
        item_col=item_col,
        annotator_col=annotator_col,
        label_col=label_col,
        categories=categories,
        gold=gold,
    )


@dataclass
class Draws:
    """What a fitting method returns: draws (one for the mode) and how they were obtained."""

    posterior: xr.Dataset
    sample_stats: xr.Dataset | None = None
    sampling_seconds: float = 0.0
    permuted: list[int] = field(default_factory=list)
    relabelled: bool | None = True
    vi_info: VariationalInfo | None = None


class BayesianCrowdModel(CrowdModel):
    """Base of the Bayesian models: fit by NUTS, the mode or ADVI, then summarise.

    A model file subclasses it with its ``name``, ``priors_class``, ``builder`` (data, priors
    -> ``pm.Model``) and ``start`` (data, priors -> :class:`~crowdbayes.em.Start`).
    """

    priors_class: ClassVar[type[Any]]
    #: ``builder(data, priors)``: the PyMC model (see :mod:`crowdbayes.models`).
    builder: ClassVar[Callable[..., pm.Model]]
    #: ``start(data, priors)``: EM estimate, NUTS's starting values and, where EM gives it,
    #: the exact mode (:class:`~crowdbayes.em.Start`).
    start: ClassVar[Callable[..., Start]]
    #: For models with item effects: the model with them summed out, whose per-item
    #: log-likelihood (of global parameters only) serves LOO.
    integrated_builder: ClassVar[Callable[..., pm.Model] | None] = None
    #: Scale parameters of ``integrated_builder``'s model whose log is maximised: when set,
    #: ``method="map"`` takes the mode of that model (the joint mode over item effects is
    #: degenerate) instead of the model's own.
    map_log_scales: ClassVar[tuple[str, ...]] = ()
    #: Global parameters checked by R-hat / ESS.
    diagnostic_vars: ClassVar[tuple[str, ...]] = ("prevalence", "confusion")
    #: Whether relabelling a chain's true categories is an exact symmetry of the likelihood.
    relabel_exact: ClassVar[bool] = False
    #: NUTS tuning steps per chain when ``fit(tune=None)`` (see ``benchmarks/TUNING.md``).
    default_tune: ClassVar[int] = 1000
    #: NUTS target acceptance rate when ``fit(target_accept=None)`` (``benchmarks/TUNING.md``).
    default_target_accept: ClassVar[float] = 0.8

    def __init__(self, priors: Any = None) -> None:
        self.priors = priors

    def get_params(self) -> dict[str, Any]:
        """The constructor settings, as stored."""
        return {"priors": self.priors}

    @property
    def model_(self) -> pm.Model:
        """The PyMC model of the last fit."""
        self._check_fitted()
        if self._model is None:  # pragma: no cover - set with the result
            raise NotFittedError(f"this {type(self).__name__} has no model")
        return self._model

    def resolved_priors(self) -> Any:
        """The priors as a ``priors_class`` instance (defaults when None).

        Examples
        --------
        >>> from crowdbayes.models import DawidSkene
        >>> DawidSkene({"prior_accuracy": 0.7}).resolved_priors().prior_accuracy
        0.7
        """
        if self.priors is None:
            return self.priors_class()
        if isinstance(self.priors, Mapping):
            return self.priors_class.from_dict(dict(self.priors))
        if not isinstance(self.priors, self.priors_class):
            raise ValueError(
                f"priors for {self.name} must be a {self.priors_class.__name__} or a dict of its "
                f"fields, not {type(self.priors).__name__}"
            )
        return self.priors

    def build_model(self, data: AnnotationData) -> pm.Model:
        """Build the PyMC model for ``data`` with this estimator's priors.

        Examples
        --------
        >>> from crowdbayes.models import DawidSkene
        >>> from crowdbayes.simulate import simulate_dawid_skene
        >>> data = simulate_dawid_skene(n_items=10, n_annotators=3, random_seed=0).data
        >>> DawidSkene().build_model(data).coords["annotator"]
        ('a0', 'a1', 'a2')
        """
        return type(self).builder(data, self.resolved_priors())

    # -- fitting --------------------------------------------------------------
    def fit(
        self,
        annotations: Any,
        *,
        gold: Any = None,
        categories: Sequence[Hashable] | None = None,
        item_col: str = "item",
        annotator_col: str = "annotator",
        label_col: str = "label",
        method: Method = "nuts",
        draws: int = 1000,
        tune: int | None = None,
        chains: int = 4,
        sampler: Sampler = "nutpie",
        random_seed: int | np.random.Generator | None = None,
        target_accept: float | None = None,
        progressbar: bool = True,
        cores: int | None = None,
        vi_iterations: int | None = None,
    ) -> "BayesianCrowdModel":
        """Fit the model: posterior by NUTS (default), its mode, or ADVI.

        Parameters
        ----------
        annotations : DataFrame, CSV path or AnnotationData
            One row per label given.
        gold : DataFrame, Series, mapping or path, optional
            Known true labels for some items: observed true labels in the model.
        categories : sequence, optional
            The full category set (default: the labels seen).
        item_col, annotator_col, label_col : str
            Column names (crowd-kit's ``task`` / ``worker`` are accepted).
        method : {"nuts", "map", "vi"}
            Full posterior by NUTS; the posterior mode (EM / L-BFGS) in a fraction of the
            time, without intervals; or a mean-field ADVI approximation started at the mode
            (approximate intervals, no log-likelihood for LOO; see
            :func:`crowdbayes.inference.fit_variational`).
        draws, chains : int
        tune : int, optional
            NUTS tuning steps per chain (default: the model's ``default_tune``).
        sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
        random_seed : int, numpy.random.Generator or None
            The integer seed used is recorded in the result.
        target_accept : float, optional
            NUTS target acceptance rate (default: the model's ``default_target_accept``).
        progressbar : bool
        cores : int, optional
        vi_iterations : int, optional
            ADVI steps for ``method="vi"`` (default:
            :func:`crowdbayes.inference.default_vi_iterations` of the number of label rows).

        Returns
        -------
        self
        """
        if method not in ("nuts", "map", "vi"):
            raise ValueError(f"method must be 'nuts', 'map' or 'vi', not {method!r}")
        priors = self.resolved_priors()
        data = as_data(
            annotations,
            gold=gold,
            categories=categories,
            item_col=item_col,
            annotator_col=annotator_col,
            label_col=label_col,
        )
        seed = seed_to_int(random_seed)
        tune = self.default_tune if tune is None else tune
        target_accept = self.default_target_accept if target_accept is None else target_accept
        started = time.perf_counter()
        start = self.start(data, priors)
        model = type(self).builder(data, priors)
        if method == "map":
            run = Draws(posterior=self._mode(model, start, data, priors))
        elif method == "vi":
            run = self._approximate(model, start, data, draws, seed, progressbar, vi_iterations)
        else:
            nuts = {
                "draws": draws,
                "tune": tune,
                "chains": chains,
                "sampler": sampler,
                "cores": cores,
            }
            run = self.sample(model, start, data, seed, target_accept, progressbar, **nuts)
        settings = {
            "method": method,
            "sampler": sampler if method == "nuts" else None,
            "draws": int(draws) if method != "map" else None,
            "tune": int(tune) if method == "nuts" else None,
            "target_accept": float(target_accept) if method == "nuts" else None,
            "chains": int(chains) if method == "nuts" else None,
            "random_seed": seed,
        }
        self._result = self._summarise(run, data, model, priors, start, settings, started)
        self._model = model
        return self

    def sample(
        self,
        model: pm.Model,
        start: Start,
        data: AnnotationData,
        seed: int,
        target_accept: float,
        progressbar: bool,
        **nuts: Any,
    ) -> Draws:
        """NUTS from the starting values, then label-permuted chains relabelled or dropped.

        ``nuts``: ``draws``, ``tune``, ``chains``, ``sampler``, ``cores`` of
        :func:`~crowdbayes.inference.sample_posterior`. :meth:`fit` and simulation-based
        calibration both sample through it.
        """
        tree = sample_posterior(
            model,
            random_seed=seed,
            initvals=start.initial_values,
            target_accept=target_accept,
            progressbar=progressbar,
            **nuts,
        )
        posterior, stats, permuted, relabelled = fix_label_switching(
            tree["posterior"].to_dataset(),
            tree["sample_stats"].to_dataset(),
            data,
            exact=self.relabel_exact,
        )
        seconds = float(posterior.attrs.get("sampling_time", 0.0))
        return Draws(posterior, stats, seconds, permuted, relabelled)

    def _mode(self, model: pm.Model, start: Start, data: AnnotationData, priors: Any) -> xr.Dataset:
        """The posterior mode as one draw: EM's where exact, else L-BFGS."""
        if start.mode is not None:
            return point_dataset(model, start.mode)
        if type(self).integrated_builder is None or not self.map_log_scales:
            return find_map(model, start=start.initial_values)
        # The joint mode over global parameters and item effects is degenerate: maximise the
        # model with the item effects summed out, scales on the log scale (with the Jacobian),
        # whose mode does not sit at a zero scale on small data.
        integrated = type(self).integrated_builder(data, priors)  # type: ignore[misc]
        with integrated:
            pm.Potential(
                "scale_log_jacobian",
                sum(pm.math.log(integrated[name]).sum() for name in self.map_log_scales),
            )
        free = {rv.name for rv in integrated.free_RVs}
        initial = {k: v for k, v in start.initial_values.items() if k in free}
        return find_map(integrated, start=initial)

    def _approximate(
        self,
        model: pm.Model,
        start: Start,
        data: AnnotationData,
        draws: int,
        seed: int,
        progressbar: bool,
        vi_iterations: int | None,
    ) -> Draws:
        """Mean-field ADVI started at the starting values."""
        if vi_iterations is None:
            vi_iterations = default_vi_iterations(len(data.compressed.item_index))
        posterior, info = fit_variational(
            model,
            start=start.initial_values,
            iterations=vi_iterations,
            draws=draws,
            random_seed=seed,
            progressbar=progressbar,
        )
        return Draws(posterior, sampling_seconds=info.seconds, vi_info=info)

    def _summarise(
        self,
        run: Draws,
        data: AnnotationData,
        model: pm.Model,
        priors: Any,
        start: Start,
        settings: dict[str, Any],
        started: float,
    ) -> FitResult:
        """Label probabilities, tables, diagnostics and provenance in one DataTree."""
        method = settings["method"]
        summaries_started = time.perf_counter()
        posterior = with_annotator_accuracy(run.posterior)
        diag_vars = [v for v in self.diagnostic_vars if v in posterior]
        builder = type(self).integrated_builder
        with ThreadPoolExecutor(1) as pool:
            # R-hat and ESS (NumPy, mostly outside the GIL) while the labels are summarised
            statistics = (
                pool.submit(variable_statistics, posterior, diag_vars) if method == "nuts" else None
            )
            summary, log_lik, spread = posterior_summaries(
                posterior,
                data,
                model,
                point=method == "map",
                log_likelihood_model=(
                    builder(data, priors) if builder is not None and method == "nuts" else None
                ),
            )
        diagnostics = self._diagnostics(run, posterior, diag_vars, spread, statistics, method)
        attrs = make_provenance(
            model=self.name,
            priors=priors.to_dict(),
            **settings,
            n_annotations=data.n_annotations,
            diagnostics=diagnostics.to_dict(),
            em_iterations=start.em.n_iter,
        )
        if run.vi_info is not None:
            attrs["vi_method"] = run.vi_info.method
            attrs["vi_iterations"] = run.vi_info.iterations
            attrs["vi_converged"] = int(run.vi_info.converged)
            attrs["vi_final_loss"] = run.vi_info.final_loss
            # PSIS-LOO needs posterior draws; an approximation's draws would need their own
            # importance weights, so no log-likelihood is stored.
            log_lik = None
        finished = time.perf_counter()
        # Wall-clock split: EM, model building and compilation / sampling / summaries.
        attrs["setup_seconds"] = round(summaries_started - started - run.sampling_seconds, 3)
        attrs["sampling_seconds"] = round(run.sampling_seconds, 3)
        attrs["summary_seconds"] = round(finished - summaries_started, 3)
        tree = xr.DataTree(dataset=xr.Dataset(attrs=attrs))
        tree["posterior"] = xr.DataTree(posterior)
        if run.sample_stats is not None:
            tree["sample_stats"] = xr.DataTree(run.sample_stats)
        if log_lik is not None:
            tree["log_likelihood"] = xr.DataTree(xr.Dataset({"labels": log_lik}))
        for name, group in data_groups(data).items():
            tree[name] = group
        tree["summary"] = xr.DataTree(summary)
        return FitResult(datatree=tree, data=data)

    def _diagnostics(
        self,
        run: Draws,
        posterior: xr.Dataset,
        diag_vars: list[str],
        spread: tuple[float, Any],
        statistics: Any,
        method: str,
    ) -> Diagnostics:
        """The fit's diagnostics; every message is also warned as a SamplingWarning."""
        if method == "map":
            return Diagnostics(n_draws=1)
        if run.vi_info is not None:
            diagnostics = Diagnostics(n_draws=int(posterior.sizes["draw"]))
            if not run.vi_info.converged:
                diagnostics.messages.append(
                    f"ADVI's loss was still falling after {run.vi_info.iterations} steps: the "
                    "approximation may be off; use method='nuts' (or more steps through "
                    "crowdbayes.inference.fit_variational)"
                )
        else:
            diagnostics = compute_diagnostics(
                posterior,
                run.sample_stats,
                diag_vars,
                permuted_chains=run.permuted,
                relabelled=run.relabelled,
                label_chain_difference=spread,
                statistics=None if statistics is None else statistics.result(),
            )
        for message in diagnostics.messages:
            warnings.warn(f"{self.name}: {message}", SamplingWarning, stacklevel=3)
        return diagnostics


def priors_from_result(result: FitResult) -> dict[str, Any] | None:
    """The priors a result was fitted with, as stored in its provenance (None: defaults).

    Examples
    --------
    >>> from crowdbayes.models import DawidSkene
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> sim = simulate_dawid_skene(n_items=10, n_annotators=3, random_seed=0)
    >>> fit = DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> priors_from_result(fit.result_)["prior_accuracy"]
    0.6
    """
    priors = result.datatree.attrs.get("priors")
    if isinstance(priors, str):
        priors = json.loads(priors)
    return priors if priors else None
