"""Estimators: scikit-learn-shaped wrappers that validate, build, fit and summarise.

Settings (priors) go to ``__init__`` and are stored unmodified; data go to ``fit``, which returns
``self``; fitted state lives in attributes ending in ``_`` (``result_``, ``datatree_``,
``labels_``...). The model itself is built by a pure function in :mod:`crowdbayes.models`.
"""

import json
import time
import warnings
from collections.abc import Hashable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.diagnostics import (
    Diagnostics,
    SamplingWarning,
    chain_permutations,
    compute_diagnostics,
    variable_statistics,
)
from crowdbayes.em import EMResult, em_confusion, vote_shares
from crowdbayes.inference import (
    Sampler,
    VariationalInfo,
    check_random_seed,
    default_vi_iterations,
    find_map,
    fit_variational,
    sample_posterior,
    seed_to_int,
)
from crowdbayes.models import (
    ClassConditionalPriors,
    DawidSkenePriors,
    HierarchicalDawidSkenePriors,
    OneCoinPriors,
    build_class_conditional,
    build_dawid_skene,
    build_hierarchical_dawid_skene,
    build_one_coin,
)
from crowdbayes.models._common import ITEM_ERROR_RATE, LABEL_JOINT
from crowdbayes.models._draws import ConfusionJointEvaluator, DrawEvaluator
from crowdbayes.models._kernels import normalise_joint
from crowdbayes.models.glad import GladPriors, build_glad, build_glad_integrated
from crowdbayes.models.hierarchical_dawid_skene import off_diagonal_coords
from crowdbayes.models.mace import MacePriors, build_mace
from crowdbayes.results import FitResult, interval_summary, make_provenance, point_summary

__all__ = [
    "NotFittedError",
    "CrowdModel",
    "MajorityVote",
    "DawidSkene",
    "ClassConditional",
    "OneCoin",
    "HierarchicalDawidSkene",
    "MODELS",
    "get_model",
    "rebuild_model",
]

Method = Literal["nuts", "map", "vi"]
#: Store the per-item log-likelihood when draws x items is at most this.
MAX_LOG_LIKELIHOOD_ELEMENTS = 20_000_000

AnnotationsLike = "pd.DataFrame | str | os.PathLike[str] | AnnotationData"


class NotFittedError(ValueError, AttributeError):
    """Raised when a fitted attribute is read before ``fit``."""


class CrowdModel:
    """Base class of every estimator: fitted-state accessors and crowd-kit shortcuts."""

    name: ClassVar[str] = ""
    result_: FitResult

    # ------------------------------------------------------------------ fitted state
    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: before ``fit`` has set ``result_`` (also when a
        # fitted property such as ``labels_`` raised NotFittedError, an AttributeError).
        if name.endswith("_") and not name.startswith("__"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call .fit(annotations) first"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _check_fitted(self) -> FitResult:
        result = self.__dict__.get("result_")
        if result is None:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call .fit(annotations) first"
            )
        return result

    @property
    def datatree_(self) -> xr.DataTree:
        """The fitted :class:`xarray.DataTree` (see :mod:`crowdbayes.results`)."""
        return self._check_fitted().datatree

    @property
    def labels_(self) -> pd.DataFrame:
        """Per item: posterior mode, its probability, entropy and P(each category)."""
        return self._check_fitted().labels()

    @property
    def label_probs_(self) -> pd.DataFrame:
        """Posterior probability of each item's true category (items x categories)."""
        return self._check_fitted().label_probabilities()

    @property
    def annotators_(self) -> pd.DataFrame:
        """Per annotator: number of labels, accuracy and its 94 % interval."""
        return self._check_fitted().annotators()

    @property
    def prevalence_(self) -> pd.DataFrame:
        """Category prevalence with 94 % intervals."""
        return self._check_fitted().prevalence()

    @property
    def confusion_(self) -> pd.DataFrame:
        """Annotators' confusion matrices (long format) with 94 % intervals."""
        return self._check_fitted().confusion()

    @property
    def diagnostics_(self) -> Diagnostics:
        """Convergence diagnostics of the fit."""
        return self._check_fitted().diagnostics

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


def _as_data(
    annotations: Any,
    *,
    gold: Any,
    categories: Sequence[Hashable] | None,
    item_col: str,
    annotator_col: str,
    label_col: str,
) -> AnnotationData:
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


def _summary_dataset(
    data: AnnotationData,
    probabilities: np.ndarray,
    mode: np.ndarray,
) -> xr.Dataset:
    """Item-level summaries from label probabilities (shared by every estimator)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(probabilities > 0, probabilities * np.log(probabilities), 0.0)
    items = data.items.to_numpy()
    categories = data.categories.to_numpy()
    return xr.Dataset(
        {
            "label_probability": (("item", "category"), probabilities),
            "label_mode": ("item", categories[mode]),
            "label_mode_probability": ("item", probabilities[np.arange(len(mode)), mode]),
            "label_entropy": ("item", -plogp.sum(axis=1)),
            "n_labels": (
                "annotator",
                np.bincount(data.annotator_index, minlength=data.n_annotators),
            ),
        },
        coords={
            "item": items,
            "category": categories,
            "annotator": data.annotators.to_numpy(),
        },
    )


def _data_groups(data: AnnotationData) -> dict[str, xr.DataTree]:
    coords = {"annotation": np.arange(data.n_annotations)}
    observed = xr.Dataset(
        {"label": ("annotation", data.categories.to_numpy()[data.label_index])}, coords=coords
    )
    constant = xr.Dataset(
        {
            "item_index": ("annotation", data.item_index),
            "annotator_index": ("annotation", data.annotator_index),
            "gold_index": ("item", data.gold_index),
        },
        coords={**coords, "item": data.items.to_numpy()},
    )
    return {"observed_data": xr.DataTree(observed), "constant_data": xr.DataTree(constant)}


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
        data = _as_data(
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
        summary = _summary_dataset(data, shares, mode)
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
        for name, group in _data_groups(data).items():
            tree[name] = group
        tree["summary"] = xr.DataTree(summary)
        self.result_ = FitResult(datatree=tree, data=data)
        return self


class BayesianCrowdModel(CrowdModel):
    """Base of the Bayesian confusion-matrix models: fit by NUTS or MAP, then summarise.

    Subclasses set ``name``, ``priors_class``, ``builder`` and how EM starting values map onto
    their free variables.
    """

    priors_class: ClassVar[type[Any]]
    #: Global parameters checked by R-hat / ESS.
    diagnostic_vars: ClassVar[tuple[str, ...]] = ("prevalence", "confusion")
    #: Whether relabelling a chain's true categories is an exact symmetry of the likelihood.
    relabel_exact: ClassVar[bool] = False
    #: Whether ``label_joint`` is log prevalence + summed log confusion of the stored draws
    #: (the confusion-matrix models); summaries then skip compiling the model's expression.
    joint_from_confusion: ClassVar[bool] = False
    em_structure: ClassVar[str] = "full"
    #: NUTS tuning steps per chain when ``fit(tune=None)``. The models without hierarchical
    #: scales (Dawid-Skene, class-conditional, one-coin) start their chains at the EM mode and
    #: use 500: on every real dataset 500 and 1000 tuning steps gave the same R-hat, ESS,
    #: divergences, accuracy and log loss (``benchmarks/TUNING.md``). The hierarchical and
    #: item-effect models keep 1000. Hierarchical Dawid-Skene mixes poorly on anesthesia either
    #: way and the seeds disagree on which is worse: R-hat 1.034-1.035 with 500 and 1.014-1.017
    #: with 1000 in one run, 1.007-1.025 with 500 and 1.049-1.140 with 1000 in the next.
    default_tune: ClassVar[int] = 1000
    #: NUTS target acceptance rate when ``fit(target_accept=None)``. Dawid-Skene and one-coin
    #: use 0.65: their posteriors are near-Gaussian around the EM mode, and the larger step
    #: halves the leapfrog steps per draw on rte and sp_amt (15 -> 7) with the same R-hat
    #: (<= 1.009), tail ESS, accuracy and log loss and no divergences on every real dataset;
    #: Dawid-Skene's bulk ESS falls from 1.5-1.7 to 0.8-1.0 per draw on those two, which the
    #: halved cost pays for (``benchmarks/TUNING.md``), and its simulation-based calibration
    #: passes at 0.65 (``benchmarks/SBC.md``). Class-conditional keeps 0.8: as good at 0.65 on
    #: real data, but its SBC on a small sparse design (30 items, 5 annotators, 3 labels each)
    #: gave combined p 0.07 and 0.025 on two seeds at 0.65, against 1 at 0.8 on the same
    #: simulations. So do the hierarchical Dawid-Skene and MACE, which lost ESS at 0.65 (MACE
    #: on temp: R-hat 1.014), and the item-effect models (nutpie's and Stan's default).
    default_target_accept: ClassVar[float] = 0.8

    def __init__(self, priors: Any = None) -> None:
        self.priors = priors

    def get_params(self) -> dict[str, Any]:
        """The constructor settings, as stored."""
        return {"priors": self.priors}

    # -- hooks ------------------------------------------------------------
    def _resolved_priors(self) -> Any:
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
        >>> from crowdbayes.simulate import simulate_dawid_skene
        >>> data = simulate_dawid_skene(n_items=10, n_annotators=3, random_seed=0).data
        >>> DawidSkene().build_model(data).coords["annotator"]
        ('a0', 'a1', 'a2')
        """
        return self.build_model_with(data, self._resolved_priors())

    def _em(self, data: AnnotationData, priors: Any) -> EMResult:
        return em_confusion(data, structure="full")

    def _initial_values(self, em: EMResult, data: AnnotationData) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _map_posterior(self, model: pm.Model, em: EMResult, data: AnnotationData) -> xr.Dataset:
        return find_map(model, start=self._initial_values(em, data))

    def _log_likelihood_model(self, data: AnnotationData, priors: Any) -> pm.Model | None:
        """A model whose ``label_joint`` gives the per-item log-likelihood for LOO, or None.

        None: the fitted model's own. Models with item-level parameters return one with them
        integrated out, so each item's log-likelihood depends on global parameters only.
        """
        return None

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
        """Fit the model: posterior by NUTS (default) or its mode (``method="map"``).

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
            NUTS tuning steps per chain (default: the model's ``default_tune``, 500 for
            Dawid-Skene, class-conditional and one-coin, 1000 for the hierarchical and
            item-effect models).
        sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
        random_seed : int, numpy.random.Generator or None
            The integer seed used is recorded in the result.
        target_accept : float, optional
            NUTS target acceptance rate (default: the model's ``default_target_accept``, 0.65
            for Dawid-Skene and one-coin, 0.8 for the others).
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
        priors = self._resolved_priors()
        data = _as_data(
            annotations,
            gold=gold,
            categories=categories,
            item_col=item_col,
            annotator_col=annotator_col,
            label_col=label_col,
        )
        seed = seed_to_int(random_seed)
        tune = self.default_tune if tune is None else tune
        if target_accept is None:
            target_accept = self.default_target_accept
        started = time.perf_counter()
        em = self._em(data, priors)
        model = self.build_model_with(data, priors)
        sampling_seconds = 0.0
        permuted: list[int] = []
        relabelled: bool | None = True
        vi_info: VariationalInfo | None = None
        if method == "map":
            posterior = self._map_posterior(model, em, data)
            sample_stats = None
        elif method == "vi":
            posterior, vi_info = fit_variational(
                model,
                start=self._initial_values(em, data),
                iterations=(
                    default_vi_iterations(len(data.compressed.item_index))
                    if vi_iterations is None
                    else vi_iterations
                ),
                draws=draws,
                random_seed=seed,
                progressbar=progressbar,
            )
            sample_stats = None
            sampling_seconds = vi_info.seconds
        else:
            tree = sample_posterior(
                model,
                draws=draws,
                tune=tune,
                chains=chains,
                sampler=sampler,
                random_seed=seed,
                initvals=self._initial_values(em, data),
                target_accept=target_accept,
                progressbar=progressbar,
                cores=cores,
            )
            posterior = tree["posterior"].to_dataset()
            sample_stats = tree["sample_stats"].to_dataset()
            sampling_seconds = float(posterior.attrs.get("sampling_time", 0.0))
            posterior, sample_stats, permuted, relabelled = self._fix_label_switching(
                posterior, sample_stats, data
            )
        summaries_started = time.perf_counter()
        posterior = _with_annotator_accuracy(posterior)
        diag_vars = [v for v in self.diagnostic_vars if v in posterior]
        with ThreadPoolExecutor(1) as pool:
            # R-hat and ESS (NumPy, mostly outside the GIL) while the labels are summarised
            statistics = (
                pool.submit(variable_statistics, posterior, diag_vars) if method == "nuts" else None
            )
            summary, log_lik, spread = _posterior_summaries(
                posterior,
                data,
                model,
                point=method == "map",
                log_likelihood_model=(
                    None if method == "map" else self._log_likelihood_model(data, priors)
                ),
                joint_from_confusion=self.joint_from_confusion,
            )
        if method == "map":
            diagnostics = Diagnostics(n_draws=1)
        elif vi_info is not None:
            diagnostics = Diagnostics(n_draws=int(draws))
            if not vi_info.converged:
                diagnostics.messages.append(
                    f"ADVI's loss was still falling after {vi_info.iterations} steps: the "
                    "approximation may be off; use method='nuts' (or more steps through "
                    "crowdbayes.inference.fit_variational)"
                )
            for message in diagnostics.messages:
                warnings.warn(f"{self.name}: {message}", SamplingWarning, stacklevel=2)
        else:
            diagnostics = compute_diagnostics(
                posterior,
                sample_stats,
                diag_vars,
                permuted_chains=permuted,
                relabelled=relabelled,
                label_chain_difference=spread,
                statistics=None if statistics is None else statistics.result(),
            )
            for message in diagnostics.messages:
                warnings.warn(f"{self.name}: {message}", SamplingWarning, stacklevel=2)
        attrs = make_provenance(
            model=self.name,
            priors=priors.to_dict(),
            method=method,
            sampler=sampler if method == "nuts" else None,
            draws=int(draws) if method != "map" else None,
            tune=int(tune) if method == "nuts" else None,
            target_accept=float(target_accept) if method == "nuts" else None,
            chains=int(chains) if method == "nuts" else None,
            random_seed=seed,
            n_annotations=data.n_annotations,
            diagnostics=diagnostics.to_dict(),
            em_iterations=em.n_iter,
        )
        if vi_info is not None:
            attrs["vi_method"] = vi_info.method
            attrs["vi_iterations"] = vi_info.iterations
            attrs["vi_converged"] = int(vi_info.converged)
            attrs["vi_final_loss"] = vi_info.final_loss
            # PSIS-LOO needs posterior draws; an approximation's draws would need their own
            # importance weights, so no log-likelihood is stored.
            log_lik = None
        finished = time.perf_counter()
        # Wall-clock split: EM, model building and compilation / sampling / summaries.
        attrs["setup_seconds"] = round(summaries_started - started - sampling_seconds, 3)
        attrs["sampling_seconds"] = round(sampling_seconds, 3)
        attrs["summary_seconds"] = round(finished - summaries_started, 3)
        result_tree = xr.DataTree(dataset=xr.Dataset(attrs=attrs))
        result_tree["posterior"] = xr.DataTree(posterior)
        if sample_stats is not None:
            result_tree["sample_stats"] = xr.DataTree(sample_stats)
        if log_lik is not None:
            result_tree["log_likelihood"] = xr.DataTree(xr.Dataset({"labels": log_lik}))
        for name, group in _data_groups(data).items():
            result_tree[name] = group
        result_tree["summary"] = xr.DataTree(summary)
        self.result_ = FitResult(datatree=result_tree, data=data)
        self.model_ = model
        return self

    def build_model_with(self, data: AnnotationData, priors: Any) -> pm.Model:
        """Build the model with explicit priors."""
        raise NotImplementedError

    def _fix_label_switching(
        self, posterior: xr.Dataset, sample_stats: xr.Dataset, data: AnnotationData
    ) -> tuple[xr.Dataset, xr.Dataset, list[int], bool | None]:
        """Find chains in a label-permuted mode; relabel them (exact symmetry) or drop them."""
        confusion = (
            posterior["confusion"]
            .transpose("chain", "draw", "annotator", "true_category", "category")
            .to_numpy()
        )
        n_labels = np.bincount(data.annotator_index, minlength=data.n_annotators)
        perms = chain_permutations(confusion, weights=n_labels)
        identity = np.arange(data.n_categories)
        bad = [c for c in range(perms.shape[0]) if not np.array_equal(perms[c], identity)]
        if not bad:
            return posterior, sample_stats, [], True
        chain_values = posterior["chain"].to_numpy()
        if self.relabel_exact:
            prevalence = posterior["prevalence"].transpose("chain", "draw", "category")
            prev = prevalence.to_numpy().copy()
            conf = confusion.copy()
            for c in bad:
                prev[c] = prev[c][:, perms[c]]
                conf[c] = conf[c][:, :, perms[c], :]
            posterior = posterior.copy()
            posterior["prevalence"] = (prevalence.dims, prev)
            posterior["confusion"] = (
                ("chain", "draw", "annotator", "true_category", "category"),
                conf,
            )
            return posterior, sample_stats, [int(chain_values[c]) for c in bad], True
        keep = [c for c in range(perms.shape[0]) if c not in bad]
        if not keep:
            return posterior, sample_stats, [int(chain_values[c]) for c in bad], None
        posterior = posterior.isel(chain=keep)
        sample_stats = sample_stats.isel(chain=keep)
        return posterior, sample_stats, [int(chain_values[c]) for c in bad], False


def _point_dataset(model: pm.Model, point: Mapping[str, np.ndarray]) -> xr.Dataset:
    names = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
    variables = {}
    for name in names:
        dims = tuple(model.named_vars_to_dims.get(name, ()))
        value = np.asarray(point[name], dtype=float)[None, None]
        variables[name] = (("chain", "draw", *dims), value)
    coords = {k: list(v) for k, v in model.coords.items() if v is not None}
    return xr.Dataset(variables, coords={"chain": [0], "draw": [0], **coords})


def _with_annotator_accuracy(posterior: xr.Dataset) -> xr.Dataset:
    conf = posterior["confusion"]
    diag = xr.DataArray(
        np.diagonal(
            conf.transpose("chain", "draw", "annotator", "true_category", "category").to_numpy(),
            axis1=3,
            axis2=4,
        ),
        dims=("chain", "draw", "annotator", "category"),
    )
    prev = posterior["prevalence"].transpose("chain", "draw", "category")
    acc = (diag * prev.to_numpy()[:, :, None, :]).sum("category")
    posterior = posterior.copy()
    posterior["annotator_accuracy"] = acc.assign_coords(annotator=posterior["annotator"])
    return posterior


def _label_posterior_chunks(
    evaluator: DrawEvaluator | ConfusionJointEvaluator, posterior: xr.Dataset, gold: np.ndarray
) -> Iterator[tuple[slice, np.ndarray, np.ndarray, list[np.ndarray]]]:
    # (samples, p(z_i = k | y_i), item log-likelihoods, every evaluated output) per chunk
    if isinstance(evaluator, ConfusionJointEvaluator):
        for sl, probs, ll in evaluator.iterate_label_posterior(posterior, gold):
            yield sl, probs, ll, [probs]
        return
    for sl, outs in evaluator.iterate(posterior):
        probs = np.ascontiguousarray(outs[0], dtype=np.float64)
        ll = normalise_joint(probs, gold)  # probs now holds p(z_i = k | y_i) per draw
        yield sl, probs, ll, outs


def _posterior_summaries(
    posterior: xr.Dataset,
    data: AnnotationData,
    model: pm.Model,
    *,
    point: bool,
    log_likelihood_model: pm.Model | None = None,
    joint_from_confusion: bool = False,
) -> tuple[xr.Dataset, xr.DataArray | None, tuple[float, Any]]:
    """Label probabilities (averaged over draws, in chunks), tables, log-likelihood, difficulty.

    The per-item joint :math:`\\log p(z_i = k, y_i)` is evaluated on every draw from the model's
    ``label_joint`` expression. Also returns how far apart the chains' label probabilities are:
    the largest difference between two chains' mean P(category) for any item, and that item.
    With ``log_likelihood_model``, the per-item log-likelihood comes from that model's
    ``label_joint`` instead (evaluated on the same draws of its free variables). With
    ``joint_from_confusion`` the joint is computed from the stored ``prevalence`` and
    ``confusion`` draws (:class:`~crowdbayes.models._draws.ConfusionJointEvaluator`), equal to
    the model's expression for the confusion-matrix models.
    """
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    n_samples = n_chains * n_draws
    names = [LABEL_JOINT]
    has_difficulty = ITEM_ERROR_RATE in model.named_vars
    if has_difficulty:
        names.append(ITEM_ERROR_RATE)
    evaluator: DrawEvaluator | ConfusionJointEvaluator
    if joint_from_confusion and not has_difficulty and ConfusionJointEvaluator.applies(posterior):
        evaluator = ConfusionJointEvaluator(data.compressed)
    else:
        evaluator = DrawEvaluator(model, names)
    keep_ll = not point and n_samples * data.n_items <= MAX_LOG_LIKELIHOOD_ELEMENTS
    chain_sum = np.zeros((n_chains, data.n_items, data.n_categories))
    item_ll = np.empty((n_samples, data.n_items)) if keep_ll else None
    difficulty = np.empty((n_samples, data.n_items)) if has_difficulty else None
    gold = data.gold_index
    for sl, probs, ll, outs in _label_posterior_chunks(evaluator, posterior, gold):
        chain_of = np.arange(sl.start, sl.stop) // n_draws
        for chain in np.unique(chain_of):
            chain_sum[chain] += probs[chain_of == chain].sum(axis=0)
        if item_ll is not None and log_likelihood_model is None:
            item_ll[sl] = ll
        if difficulty is not None:
            difficulty[sl] = (probs * outs[1]).sum(axis=2)
    if item_ll is not None and log_likelihood_model is not None:
        for sl, outs in DrawEvaluator(log_likelihood_model, [LABEL_JOINT]).iterate(posterior):
            item_ll[sl] = normalise_joint(np.ascontiguousarray(outs[0], dtype=np.float64), gold)
    probabilities = chain_sum.sum(axis=0) / n_samples
    spread: tuple[float, Any] = (float("nan"), None)
    if n_chains > 1:
        chain_probs = chain_sum / n_draws
        by_item = (chain_probs.max(axis=0) - chain_probs.min(axis=0)).max(axis=1)
        worst = int(by_item.argmax())
        spread = (float(by_item[worst]), data.items[worst])
    summary = _summary_dataset(data, probabilities, probabilities.argmax(axis=1))
    reduce = point_summary if point else interval_summary
    summary["prevalence"] = reduce(posterior["prevalence"])
    summary["confusion"] = reduce(posterior["confusion"])
    summary["annotator_accuracy"] = reduce(posterior["annotator_accuracy"])
    coords = {
        "chain": posterior["chain"].to_numpy(),
        "draw": posterior["draw"].to_numpy(),
        "item": data.items.to_numpy(),
    }
    if difficulty is not None:
        draws = xr.DataArray(
            difficulty.reshape(n_chains, n_draws, data.n_items),
            dims=("chain", "draw", "item"),
            coords=coords,
        )
        summary["difficulty"] = reduce(draws)
    log_lik = None
    if item_ll is not None:
        log_lik = xr.DataArray(
            item_ll.reshape(n_chains, n_draws, data.n_items),
            dims=("chain", "draw", "item"),
            coords=coords,
        )
    return summary, log_lik, spread


class DawidSkene(BayesianCrowdModel):
    """Bayesian Dawid-Skene: a full confusion matrix per annotator (Dirichlet priors).

    Parameters
    ----------
    priors : DawidSkenePriors or dict, optional
        Default: rater's (prevalence Dirichlet(3); confusion rows Dirichlet with pseudo-count 8
        and prior accuracy 0.6).

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> sim = simulate_dawid_skene(n_items=200, n_annotators=10, random_seed=0)
    >>> ds = DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> bool((ds.labels_["label"] == sim.true_labels).mean() > 0.9)
    True
    """

    name = "dawid-skene"
    joint_from_confusion = True
    priors_class = DawidSkenePriors
    relabel_exact = True
    default_tune = 500
    default_target_accept = 0.65

    def build_model_with(self, data: AnnotationData, priors: Any) -> pm.Model:
        """Build the PyMC model (see :func:`~crowdbayes.models.build_dawid_skene`)."""
        return build_dawid_skene(data, priors)

    def _em(self, data: AnnotationData, priors: Any) -> EMResult:
        return em_confusion(
            data,
            structure="full",
            prevalence_concentration=priors.prevalence_concentration(data.n_categories),
            confusion_concentration=priors.confusion_concentration(
                data.n_annotators, data.n_categories
            ),
        )

    def _initial_values(self, em: EMResult, data: AnnotationData) -> dict[str, np.ndarray]:
        return {"prevalence": em.start_prevalence, "confusion": em.start_confusion}

    def _map_posterior(self, model: pm.Model, em: EMResult, data: AnnotationData) -> xr.Dataset:
        # The EM fixed point is the exact posterior mode of this model.
        return _point_dataset(model, {"prevalence": em.prevalence, "confusion": em.confusion})


class _AccuracyModel(BayesianCrowdModel):
    diagnostic_vars = ("prevalence", "accuracy")
    joint_from_confusion = True
    default_tune = 500

    def _em(self, data: AnnotationData, priors: Any) -> EMResult:
        return em_confusion(
            data,
            structure=self.em_structure,  # type: ignore[arg-type]
            prevalence_concentration=priors.prevalence,
            accuracy_prior=(priors.accuracy_alpha, priors.accuracy_beta),
        )

    def _initial_values(self, em: EMResult, data: AnnotationData) -> dict[str, np.ndarray]:
        return {"prevalence": em.start_prevalence, "accuracy": em.start_accuracy}

    def _map_posterior(self, model: pm.Model, em: EMResult, data: AnnotationData) -> xr.Dataset:
        # The EM fixed point is the exact posterior mode of this model.
        point = {"prevalence": em.prevalence, "accuracy": em.accuracy, "confusion": em.confusion}
        return _point_dataset(model, point)


class ClassConditional(_AccuracyModel):
    """Class-conditional Dawid-Skene: one accuracy per annotator and true category.

    Parameters
    ----------
    priors : ClassConditionalPriors or dict, optional

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> sim = simulate_dawid_skene(n_items=200, n_annotators=10, random_seed=0)
    >>> cc = ClassConditional().fit(sim.annotations, method="map", random_seed=0)
    >>> cc.datatree_.posterior["accuracy"].dims
    ('chain', 'draw', 'annotator', 'true_category')
    """

    name = "class-conditional"
    priors_class = ClassConditionalPriors
    em_structure = "class_conditional"

    def build_model_with(self, data: AnnotationData, priors: Any) -> pm.Model:
        """Build the PyMC model (see :func:`~crowdbayes.models.build_class_conditional`)."""
        return build_class_conditional(data, priors)


class OneCoin(_AccuracyModel):
    """One-coin model: one accuracy per annotator, errors uniform.

    Parameters
    ----------
    priors : OneCoinPriors or dict, optional

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> sim = simulate_dawid_skene(n_items=200, n_annotators=10, random_seed=0)
    >>> OneCoin().fit(sim.annotations, method="map", random_seed=0).annotators_.shape
    (10, 4)
    """

    name = "one-coin"
    priors_class = OneCoinPriors
    em_structure = "one_coin"
    default_target_accept = 0.65

    def build_model_with(self, data: AnnotationData, priors: Any) -> pm.Model:
        """Build the PyMC model (see :func:`~crowdbayes.models.build_one_coin`)."""
        return build_one_coin(data, priors)


class HierarchicalDawidSkene(BayesianCrowdModel):
    """Hierarchical Dawid-Skene (Paun et al. 2018): confusion logits pooled over annotators.

    Parameters
    ----------
    priors : HierarchicalDawidSkenePriors or dict, optional

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_hierarchical_dawid_skene
    >>> sim = simulate_hierarchical_dawid_skene(n_items=200, n_annotators=10, random_seed=0)
    >>> hds = HierarchicalDawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> bool((hds.labels_["label"] == sim.true_labels).mean() > 0.9)
    True
    """

    name = "hierarchical-dawid-skene"
    joint_from_confusion = True
    priors_class = HierarchicalDawidSkenePriors
    diagnostic_vars = ("prevalence", "error_mean", "error_scale", "annotator_effect")

    def build_model_with(self, data: AnnotationData, priors: Any) -> pm.Model:
        """Build the PyMC model (see :func:`~crowdbayes.models.build_hierarchical_dawid_skene`)."""
        return build_hierarchical_dawid_skene(data, priors)

    def _em(self, data: AnnotationData, priors: Any) -> EMResult:
        return em_confusion(data, structure="full")

    def _initial_values(self, em: EMResult, data: AnnotationData) -> dict[str, np.ndarray]:
        rows, cols = off_diagonal_coords(data.n_categories)
        # Smoothed (posterior-mean) confusion: the EM mode sits on the simplex boundary when a
        # Dirichlet concentration is below 1 (many categories), i.e. at logits of -inf.
        log_conf = np.log(em.start_confusion)
        eta = log_conf[:, rows, cols] - log_conf[:, rows, rows]
        mean = eta.mean(axis=0)
        scale = np.clip(eta.std(axis=0), 0.2, 3.0)
        return {
            "prevalence": em.start_prevalence,
            "error_mean": mean,
            "error_scale": scale,
            "annotator_effect": np.clip((eta - mean) / scale, -3.0, 3.0),
        }


# --- item-difficulty models: ItemDifficulty, LogisticRandomEffects (models/item_difficulty.py,
# models/logistic_random_effects.py) ---
from crowdbayes.models.item_difficulty import (  # noqa: E402
    ItemDifficultyPriors,
    build_item_difficulty,
    build_item_difficulty_integrated,
)
from crowdbayes.models.logistic_random_effects import (  # noqa: E402
    LogisticRandomEffectsPriors,
    build_logistic_random_effects,
    build_logistic_random_effects_integrated,
)

__all__ += ["ItemDifficulty", "LogisticRandomEffects"]

#: Between-item standard deviation of the logits at which NUTS starts the item-difficulty models
#: (the item effects start at 0, an item of average difficulty).
_START_ITEM_SCALE = 0.5


class _ItemEffectModel(BayesianCrowdModel):
    """Shared MAP of the item-difficulty models: the mode with the item effects integrated out.

    The joint mode over global parameters and item effects is degenerate (see
    :mod:`crowdbayes.models.item_difficulty`). ``method="map"`` maximises the model with the
    item effects summed out by Gauss-Hermite quadrature, then sets each item effect to its
    posterior mean given that mode, so labels and difficulties are plug-in estimates at it.
    The mode is taken over the log of ``item_scale`` (its log-Jacobian is added): the mode over
    the scale itself often sits at 0 on small data (Chung et al. 2013, boundary-avoiding
    estimates of variance parameters; measured: 3 of 6 ``item_scale`` at 0 for data simulated
    with 1.5, and accuracy 0.80 instead of 0.82). Annotator effects are not integrated out:
    as for :class:`HierarchicalDawidSkene`, the joint mode overstates ``error_scale`` (measured
    2.0 for 15 annotators simulated with 0.8-1.0); labels are unaffected (MAP accuracy as
    Dawid-Skene's or better on LogRndEff data).
    """

    #: Scale parameters whose mode is taken on the log scale.
    _map_log_scales: ClassVar[tuple[str, ...]] = ("item_scale",)

    def _integrated_model(self, data: AnnotationData, priors: Any) -> pm.Model:
        raise NotImplementedError

    def _em(self, data: AnnotationData, priors: Any) -> EMResult:
        # Starting values of both models: the full-confusion EM mode.
        return em_confusion(data, structure="full", prevalence_concentration=priors.prevalence)

    def _log_likelihood_model(self, data: AnnotationData, priors: Any) -> pm.Model | None:
        # Each item's log-likelihood with its item effect integrated out (quadrature), given
        # the global parameters. The conditional one, given the item's own effect, is what that
        # effect was fitted to, and PSIS-LOO over it fails: measured on 300 simulated binary
        # items with 6 labels each, Pareto k > 0.7 on 21 % of the items and p_loo 144, against
        # max k 0.03 and p_loo 3.3 with the integrated one.
        return self._integrated_model(data, priors)

    def _map_posterior(self, model: pm.Model, em: EMResult, data: AnnotationData) -> xr.Dataset:
        integrated = self._integrated_model(data, self._resolved_priors())
        with integrated:
            pm.Potential(
                "scale_log_jacobian",
                sum(pm.math.log(integrated[name]).sum() for name in self._map_log_scales),
            )
        free = {rv.name for rv in integrated.free_RVs}
        start = {k: v for k, v in self._initial_values(em, data).items() if k in free}
        return find_map(integrated, start=start)


def _error_logits(confusion: np.ndarray) -> np.ndarray:
    """Off-diagonal log-odds against the diagonal of (..., K, K) confusion rows, row-major."""
    rows, cols = off_diagonal_coords(confusion.shape[-1])
    log_conf = np.log(confusion)
    return log_conf[..., rows, cols] - log_conf[..., rows, rows]


class ItemDifficulty(_ItemEffectModel):
    """Item difficulty (ItemDiff, Paun et al. 2018): exchangeable annotators, items vary.

    Each item's confusion rows are pooled on the logit scale around population logits; how far
    an item's logits lie from them is its difficulty. Annotators share one distribution, as in
    Paun et al.: with annotator effects added the model is :class:`LogisticRandomEffects`, so
    ``confusion`` (an item of average difficulty) is the same for every annotator. The fit
    reports each item's difficulty: the probability that a typical annotator mislabels it
    (``summary["difficulty"]``, columns ``difficulty``, ``difficulty_low``,
    ``difficulty_high`` of :meth:`~crowdbayes.results.FitResult.labels`). See
    :func:`~crowdbayes.models.item_difficulty.build_item_difficulty`.

    Parameters
    ----------
    priors : ItemDifficultyPriors or dict, optional

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_item_difficulty
    >>> sim = simulate_item_difficulty(n_items=150, n_annotators=10, error_mean=-3.0,
    ...                                random_seed=0)
    >>> fit = ItemDifficulty().fit(sim.annotations, method="map", random_seed=0)
    >>> bool((fit.labels_["label"] == sim.true_labels).mean() > 0.9)
    True
    >>> fit.labels_.columns[-3:].tolist()
    ['difficulty', 'difficulty_low', 'difficulty_high']
    """

    name = "item-difficulty"
    priors_class = ItemDifficultyPriors
    diagnostic_vars = ("prevalence", "error_mean", "item_scale")

    def build_model_with(self, data: AnnotationData, priors: Any) -> pm.Model:
        """Build the PyMC model (see :mod:`crowdbayes.models.item_difficulty`)."""
        return build_item_difficulty(data, priors)

    def _integrated_model(self, data: AnnotationData, priors: Any) -> pm.Model:
        return build_item_difficulty_integrated(data, priors)

    def _initial_values(self, em: EMResult, data: AnnotationData) -> dict[str, np.ndarray]:
        # The population logits of the label-count weighted mean of the smoothed EM confusions
        # (all annotators are one); every item starts at average difficulty.
        n_labels = np.bincount(data.annotator_index, minlength=data.n_annotators).astype(float)
        pooled = np.einsum("j,jkl->kl", n_labels, em.start_confusion) / n_labels.sum()
        n_errors = data.n_categories * (data.n_categories - 1)
        return {
            "prevalence": em.start_prevalence,
            "error_mean": _error_logits(pooled),
            "item_scale": np.full(n_errors, _START_ITEM_SCALE),
            "item_effect": np.zeros((data.n_items, data.n_categories - 1)),
        }


class LogisticRandomEffects(_ItemEffectModel):
    """Logistic random effects (LogRndEff, Paun et al. 2018; Carpenter 2008).

    Hierarchical Dawid-Skene with an item difficulty term: each wrong-label logit is an
    annotator's (pooled around population means) plus the item's (pooled around 0).
    ``confusion`` is each annotator's on an item of average difficulty; each item's difficulty
    (the probability that a typical annotator mislabels it) is reported as for
    :class:`ItemDifficulty`. See
    :func:`~crowdbayes.models.logistic_random_effects.build_logistic_random_effects`.

    Parameters
    ----------
    priors : LogisticRandomEffectsPriors or dict, optional

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_logistic_random_effects
    >>> sim = simulate_logistic_random_effects(n_items=150, n_annotators=10, random_seed=0)
    >>> fit = LogisticRandomEffects().fit(sim.annotations, method="map", random_seed=0)
    >>> bool((fit.labels_["label"] == sim.true_labels).mean() > 0.9)
    True
    >>> fit.datatree_.posterior["item_effect"].dims
    ('chain', 'draw', 'item', 'wrong_label')
    """

    name = "logistic-random-effects"
    priors_class = LogisticRandomEffectsPriors
    diagnostic_vars = ("prevalence", "error_mean", "error_scale", "item_scale", "confusion")

    def build_model_with(self, data: AnnotationData, priors: Any) -> pm.Model:
        """Build the PyMC model (see :func:`~crowdbayes.models.logistic_random_effects`)."""
        return build_logistic_random_effects(data, priors)

    def _integrated_model(self, data: AnnotationData, priors: Any) -> pm.Model:
        return build_logistic_random_effects_integrated(data, priors)

    def _initial_values(self, em: EMResult, data: AnnotationData) -> dict[str, np.ndarray]:
        # As HierarchicalDawidSkene: annotator logits from the smoothed EM confusions.
        eta = _error_logits(em.start_confusion)
        mean = eta.mean(axis=0)
        scale = np.clip(eta.std(axis=0), 0.2, 3.0)
        return {
            "prevalence": em.start_prevalence,
            "error_mean": mean,
            "error_scale": scale,
            "item_scale": np.full(len(mean), _START_ITEM_SCALE),
            "annotator_effect": np.clip((eta - mean) / scale, -3.0, 3.0),
            "item_effect": np.zeros((data.n_items, data.n_categories - 1)),
        }


# --- spammer and ability models: Mace, Glad (models/mace.py, models/glad.py) ---

__all__ += ["Mace", "Glad"]


class Mace(BayesianCrowdModel):
    """MACE (Hovy et al. 2013): each annotator is competent or spams, pooled competences.

    Annotator ``j`` gives the true category with probability ``competence_j`` and otherwise a
    label from its own ``spam_distribution_j``; the competence logits are pooled over
    annotators (see :func:`~crowdbayes.models.mace.build_mace`).

    Parameters
    ----------
    priors : MacePriors or dict, optional

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_mace
    >>> sim = simulate_mace(n_items=200, n_annotators=10, random_seed=0)
    >>> mace = Mace().fit(sim.annotations, method="map", random_seed=0)
    >>> bool((mace.labels_["label"] == sim.true_labels).mean() > 0.9)
    True
    >>> mace.datatree_.posterior["competence"].dims
    ('chain', 'draw', 'annotator')
    """

    name = "mace"
    joint_from_confusion = True
    priors_class = MacePriors
    diagnostic_vars = ("prevalence", "competence_mean", "competence_scale", "competence")

    def build_model_with(self, data: AnnotationData, priors: Any) -> pm.Model:
        """Build the PyMC model (see :func:`~crowdbayes.models.mace.build_mace`)."""
        return build_mace(data, priors)

    def _em(self, data: AnnotationData, priors: Any) -> EMResult:
        return em_confusion(data, structure="full", prevalence_concentration=priors.prevalence)

    def _initial_values(self, em: EMResult, data: AnnotationData) -> dict[str, np.ndarray]:
        # A MACE confusion has (1 - c_j) xi_jh in every off-diagonal cell of column h: read the
        # spam mass of each label off the Dawid-Skene confusion, the competence from its total.
        n_k = data.n_categories
        off = 1.0 - np.eye(n_k)
        spam_mass = (em.start_confusion * off[None]).sum(axis=1) / (n_k - 1)
        spam_share = np.clip(spam_mass.sum(axis=1), 0.05, 0.95)
        logit = np.log((1.0 - spam_share) / spam_share)
        spam = np.maximum(spam_mass / spam_mass.sum(axis=1, keepdims=True), 0.01)
        mean = float(logit.mean())
        scale = float(np.clip(logit.std(), 0.2, 3.0))
        return {
            "prevalence": em.start_prevalence,
            "competence_mean": np.asarray(mean),
            "competence_scale": np.asarray(scale),
            "competence_effect": np.clip((logit - mean) / scale, -3.0, 3.0),
            "spam_distribution": spam / spam.sum(axis=1, keepdims=True),
        }


class Glad(BayesianCrowdModel):
    """GLAD (Whitehill et al. 2009): annotator ability times item inverse difficulty.

    Annotator ``j`` labels item ``i`` correctly with probability
    ``logit^-1(ability_j * inverse_difficulty_i)``, wrong labels uniform over the other
    categories; abilities and log inverse difficulties are pooled (see
    :func:`~crowdbayes.models.glad.build_glad`). The fit reports each item's ``difficulty``:
    the probability that a typical annotator mislabels it.

    Parameters
    ----------
    priors : GladPriors or dict, optional

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_glad
    >>> sim = simulate_glad(n_items=200, n_annotators=10, random_seed=0)
    >>> glad = Glad().fit(sim.annotations, method="map", random_seed=0)
    >>> bool((glad.labels_["label"] == sim.true_labels).mean() > 0.85)
    True
    >>> glad.labels_.columns[-3:].tolist()
    ['difficulty', 'difficulty_low', 'difficulty_high']
    """

    name = "glad"
    priors_class = GladPriors
    diagnostic_vars = ("prevalence", "ability_mean", "ability_scale", "item_scale", "ability")

    def build_model_with(self, data: AnnotationData, priors: Any) -> pm.Model:
        """Build the PyMC model (see :func:`~crowdbayes.models.glad.build_glad`)."""
        return build_glad(data, priors)

    def _log_likelihood_model(self, data: AnnotationData, priors: Any) -> pm.Model | None:
        # Inverse difficulties integrated out (see ItemDifficulty's): PSIS-LOO over global
        # parameters and annotator abilities.
        return build_glad_integrated(data, priors)

    def _em(self, data: AnnotationData, priors: Any) -> EMResult:
        return em_confusion(data, structure="one_coin", prevalence_concentration=priors.prevalence)

    def _initial_values(self, em: EMResult, data: AnnotationData) -> dict[str, np.ndarray]:
        # One-coin accuracy = P(correct) on an average item (inverse difficulty 1).
        accuracy = np.clip(em.start_accuracy, 0.02, 0.98)
        ability = np.log(accuracy / (1.0 - accuracy))
        mean = float(ability.mean())
        scale = float(np.clip(ability.std(), 0.2, 3.0))
        return {
            "prevalence": em.start_prevalence,
            "ability_mean": np.asarray(mean),
            "ability_scale": np.asarray(scale),
            "ability_effect": np.clip((ability - mean) / scale, -3.0, 3.0),
            "item_scale": np.asarray(0.3),
            "item_effect": np.zeros(data.n_items),
        }


MODELS: dict[str, type[CrowdModel]] = {
    cls.name: cls
    for cls in (MajorityVote, DawidSkene, ClassConditional, OneCoin, HierarchicalDawidSkene)
}
MODELS[ItemDifficulty.name] = ItemDifficulty
MODELS[LogisticRandomEffects.name] = LogisticRandomEffects
MODELS[Mace.name] = Mace
MODELS[Glad.name] = Glad


def rebuild_model(result: FitResult) -> tuple["BayesianCrowdModel", pm.Model]:
    """The estimator (with the fit's priors) and PyMC model behind a fitted result.

    Works on a result loaded from disk: the model name and priors are in its provenance.

    Parameters
    ----------
    result : FitResult
        Of a Bayesian model (not majority vote).

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
    priors = result.datatree.attrs.get("priors")
    if isinstance(priors, str):
        priors = json.loads(priors)
    estimator = cls(priors=priors if priors else None)
    return estimator, estimator.build_model(result.data)


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
