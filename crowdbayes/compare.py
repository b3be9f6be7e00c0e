"""Model comparison by PSIS-LOO: which model predicts a new item's labels best.

:func:`compare` ranks fitted models by their expected log predictive density (ELPD) estimated
by Pareto-smoothed importance-sampling leave-one-out cross-validation (Vehtari, Gelman and
Gabry 2017), computed by ArviZ (:func:`arviz_stats.loo` and :func:`arviz_stats.compare`) from
the per-item log-likelihood that every NUTS fit stores (the ``log_likelihood`` group, variable
``labels``: the probability of all of an item's labels with its true category summed out). The
item is the exchangeable unit, so "leave one out" leaves out one item with all its labels, as
the R package rater does.
"""

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from crowdbayes.estimators import BayesianCrowdModel, CrowdModel
from crowdbayes.models import MODELS
from crowdbayes.results import FitResult
from crowdbayes.summaries import MAX_LOG_LIKELIHOOD_ELEMENTS

__all__ = ["compare", "COMPARE_COLUMNS"]

#: Columns of the table :func:`compare` returns, in order.
COMPARE_COLUMNS = ["model", "elpd_loo", "se", "elpd_diff", "dse", "p_loo", "warning"]

#: The per-item log-likelihood variable in a fit's ``log_likelihood`` group.
LOG_LIKELIHOOD_VAR = "labels"

# ArviZ warns once per model whose Pareto k exceed the threshold; the table reports it instead.
_PARETO_WARNING = "Estimated shape parameter of Pareto distribution"


def compare(
    fits: Mapping[str, Any] | Sequence[Any],
) -> pd.DataFrame:
    """Rank fitted models by PSIS-LOO estimated predictive accuracy on new items.

    Each fit's pointwise log-likelihood (one value per item and draw, the true category
    summed out) goes to :func:`arviz_stats.loo`; :func:`arviz_stats.compare` then orders the
    models and computes each one's difference from the best with its paired standard error.
    Higher ``elpd_loo`` is better. A difference several times its ``dse`` is a clear
    preference; one within about two ``dse`` is not.

    Parameters
    ----------
    fits : mapping of str to fit, or sequence of fits
        Fitted estimators (:class:`~crowdbayes.DawidSkene`, ...), :class:`~crowdbayes.FitResult`
        objects or their :class:`xarray.DataTree`, fitted by NUTS to the same annotations. A
        mapping names them; in a sequence each is named by its model (``fit.result_.model_name``;
        use a mapping to compare two fits of one model).

    Returns
    -------
    pandas.DataFrame
        One row per model, best first, indexed by ``rank`` (0 = best), with columns:

        ``model``
            The name.
        ``elpd_loo``
            The PSIS-LOO estimate of the expected log predictive density, summed over items.
        ``se``
            Its standard error.
        ``elpd_diff``
            ``elpd_loo`` minus the best model's (0 for the best, negative for the others).
        ``dse``
            Standard error of that difference, from the paired per-item differences.
        ``p_loo``
            Effective number of parameters.
        ``warning``
            In words, the items whose Pareto shape :math:`\\hat k` exceeds ArviZ's threshold
            :math:`\\min(1 - 1 / \\log_{10} S, 0.7)` for :math:`S` draws, where the PSIS
            estimate of that item's left-out density is unreliable, e.g.
            ``"3 of 45 items with Pareto k > 0.70 (max 0.85)"``; an empty string when none does.

    Raises
    ------
    ValueError
        Fewer than two fits; a fit by ``method="map"`` (a posterior mode has no draws to
        cross-validate) or by majority vote (no likelihood); a NUTS fit without a
        ``log_likelihood`` group (it is not stored when draws x items exceeds
        ``MAX_LOG_LIKELIHOOD_ELEMENTS``); an unfitted estimator; fits to different data
        (items, annotators, labels or gold labels); two fits with one name.

    Notes
    -----
    A model fitted with gold labels is scored on the probability of each item's labels and
    its known category; compare only fits with the same gold (checked).

    Typical use, after fitting by NUTS::

        table = crowdbayes.compare({"dawid-skene": ds, "class-conditional": cc})

    References
    ----------
    .. [1] Vehtari, A., Gelman, A. and Gabry, J. (2017). Practical Bayesian model evaluation
       using leave-one-out cross-validation and WAIC. *Statistics and Computing* 27, 1413-1432.

    Examples
    --------
    Two "fits" built by hand: 2 chains x 200 draws of a per-item log-likelihood for 30 items,
    the second model predicting every item worse by 0.5 nats.

    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> def tree(shift):
    ...     ll = rng.normal(-2.0 - shift, 0.1, size=(2, 200, 30))
    ...     return xr.DataTree.from_dict({
    ...         "posterior": xr.Dataset({"mu": (("chain", "draw"), rng.normal(size=(2, 200)))}),
    ...         "log_likelihood": xr.Dataset({"labels": (("chain", "draw", "item"), ll)}),
    ...     })
    >>> table = compare({"good": tree(0.0), "worse": tree(0.5)})
    >>> table.columns.tolist()
    ['model', 'elpd_loo', 'se', 'elpd_diff', 'dse', 'p_loo', 'warning']
    >>> table["model"].tolist()
    ['good', 'worse']
    >>> round(float(table["elpd_diff"].iloc[1]))  # 30 items x -0.5 nats
    -15
    """
    named = _named_fits(fits)
    trees = {name: _checked_tree(name, fit) for name, fit in named.items()}
    _check_same_data(trees)
    elpds = {name: _loo(tree) for name, tree in trees.items()}
    # Model weights are not reported, so take the cheapest method: stacking's optimiser takes
    # exp(elpd_i), which underflows (a RuntimeWarning) for items with many labels. With more
    # than 11 models ArviZ also checks for selection-induced bias and may warn.
    table = azs.compare(elpds, method="pseudo-bma", round_to="none")
    rows = []
    for name in table.index:
        row = table.loc[name]
        rows.append(
            {
                "model": str(name),
                "elpd_loo": float(row["elpd"]),
                "se": float(row["se"]),
                "elpd_diff": float(row["elpd_diff"]),
                "dse": float(row["dse"]),
                "p_loo": float(row["p"]),
                "warning": _pareto_warning(elpds[name]),
            }
        )
    out = pd.DataFrame(rows, columns=COMPARE_COLUMNS)
    out.index = pd.RangeIndex(len(out), name="rank")
    return out


# ---------------------------------------------------------------------- inputs
def _named_fits(fits: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    if isinstance(fits, Mapping):
        named: dict[str, Any] = {}
        for key, fit in fits.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"model names must be non-empty strings, got {key!r}")
            named[key] = fit
    elif isinstance(fits, Sequence) and not isinstance(fits, str | bytes):
        named = {}
        for fit in fits:
            name = _model_name(fit)
            if name in named:
                raise ValueError(
                    f"two fits of the model {name!r}: pass a mapping to name them, e.g. "
                    "{'ds-a': fit_a, 'ds-b': fit_b}"
                )
            named[name] = fit
    else:
        raise ValueError(
            "fits must be a mapping of names to fits or a sequence of fits, not "
            f"{type(fits).__name__}"
        )
    if len(named) < 2:
        raise ValueError(f"compare needs at least two fits, got {len(named)}")
    return named


def _as_tree(fit: Any) -> xr.DataTree:
    if isinstance(fit, CrowdModel):
        return fit._check_fitted().datatree  # NotFittedError (a ValueError) before fit
    if isinstance(fit, FitResult):
        return fit.datatree
    if isinstance(fit, xr.DataTree):
        return fit
    raise ValueError(
        "each fit must be a fitted crowdbayes estimator, a FitResult or an xarray.DataTree, "
        f"not {type(fit).__name__}"
    )


def _model_name(fit: Any) -> str:
    tree = _as_tree(fit)
    name = tree.attrs.get("model")
    if not name:
        raise ValueError(
            "a fit without a model name in its attributes cannot be named: pass a mapping of "
            "names to fits"
        )
    return str(name)


def _checked_tree(name: str, fit: Any) -> xr.DataTree:
    tree = _as_tree(fit)
    method = tree.attrs.get("method")
    if method == "map":
        raise ValueError(
            f"{name!r} was fitted by method='map': a posterior mode has no draws, so PSIS-LOO "
            "cannot be computed; refit with method='nuts'"
        )
    if method == "vote":
        raise ValueError(
            f"{name!r} is a majority vote: it has no likelihood to cross-validate; compare "
            "Bayesian models fitted by NUTS"
        )
    if "log_likelihood" not in tree.children or (
        LOG_LIKELIHOOD_VAR not in tree["log_likelihood"].data_vars
    ):
        raise ValueError(f"{name!r} has no per-item log-likelihood: {_why_no_likelihood(tree)}")
    dims = tree["log_likelihood"][LOG_LIKELIHOOD_VAR].dims
    if set(dims) != {"chain", "draw", "item"}:
        raise ValueError(
            f"{name!r}: log_likelihood/{LOG_LIKELIHOOD_VAR} must have dims (chain, draw, item), "
            f"got {dims}"
        )
    if "posterior" not in tree.children:
        raise ValueError(f"{name!r} has no posterior group (needed for PSIS's relative ESS)")
    return tree


def _why_no_likelihood(tree: xr.DataTree) -> str:
    """Explain a missing log_likelihood group in words."""
    if str(tree.attrs.get("method")) in ("map", "vi"):
        return (
            f"it was fitted with method={tree.attrs['method']!r}: PSIS-LOO needs posterior draws "
            "from NUTS (method='nuts', the default)"
        )
    if "posterior" in tree.children and "summary" in tree.children:
        posterior = tree["posterior"]
        n_samples = int(posterior.sizes.get("chain", 1)) * int(posterior.sizes.get("draw", 1))
        n_items = int(tree["summary"].sizes.get("item", 0))
        size = n_samples * n_items
        if size > MAX_LOG_LIKELIHOOD_ELEMENTS:
            return (
                f"large data: draws x items = {n_samples} x {n_items} = {size:,} is above the "
                f"storage threshold of {MAX_LOG_LIKELIHOOD_ELEMENTS:,} "
                "(crowdbayes.summaries.MAX_LOG_LIKELIHOOD_ELEMENTS), so it was not stored; "
                "refit with fewer draws or chains"
            )
    return (
        f"the DataTree lacks a log_likelihood group with variable {LOG_LIKELIHOOD_VAR!r} "
        "(dims chain, draw, item); fits by NUTS store it unless draws x items exceeds "
        f"{MAX_LOG_LIKELIHOOD_ELEMENTS:,}"
    )


# ---------------------------------------------------------------------- same data
def _data_key(tree: xr.DataTree) -> tuple[int, int | None, str]:
    """(items, annotations or None, digest of everything the likelihood depends on)."""
    digest = hashlib.sha256()
    items = tree["log_likelihood"][LOG_LIKELIHOOD_VAR]["item"].to_numpy()
    _update(digest, "item", items)
    n_annotations: int | None = None
    if "constant_data" in tree.children:
        const = tree["constant_data"]
        for var in ("item_index", "annotator_index", "gold_index"):
            if var in const.data_vars:
                _update(digest, var, const[var].to_numpy())
        if "item_index" in const.data_vars:
            n_annotations = int(const["item_index"].size)
    if "observed_data" in tree.children and "label" in tree["observed_data"].data_vars:
        _update(digest, "label", tree["observed_data"]["label"].to_numpy())
    if "summary" in tree.children and "annotator" in tree["summary"].coords:
        _update(digest, "annotator", tree["summary"]["annotator"].to_numpy())
    return len(items), n_annotations, digest.hexdigest()


def _update(digest: Any, name: str, values: np.ndarray) -> None:
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.int64)
    else:
        arr = arr.astype(str)
    digest.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
    digest.update(np.ascontiguousarray(arr).tobytes())


def _check_same_data(trees: Mapping[str, xr.DataTree]) -> None:
    keys = {name: _data_key(tree) for name, tree in trees.items()}
    (first, (n_items, n_ann, digest)), *rest = keys.items()
    for name, (items_i, ann_i, digest_i) in rest:
        if digest_i == digest:
            continue

        def describe(items: int, annotations: int | None) -> str:
            return f"{items} items" + ("" if annotations is None else f", {annotations} labels")

        if (items_i, ann_i) != (n_items, n_ann):
            detail = (
                f"{first!r} has {describe(n_items, n_ann)}, {name!r} {describe(items_i, ann_i)}"
            )
        else:
            detail = (
                f"{first!r} and {name!r} have as many items and labels but different items, "
                "annotators, labels or gold labels"
            )
        raise ValueError(
            f"fits on different data cannot be compared by LOO: {detail}; fit every model to "
            "the same annotations"
        )


# ---------------------------------------------------------------------- LOO
def _loo(tree: xr.DataTree) -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PARETO_WARNING, category=UserWarning)
        return azs.loo(tree, pointwise=True, var_name=LOG_LIKELIHOOD_VAR)


def _pareto_warning(elpd: Any) -> str:
    k = np.asarray(elpd.pareto_k).ravel()
    threshold = float(elpd.good_k)
    bad = int(np.sum(k > threshold))
    if bad == 0:
        return ""
    return (
        f"{bad} of {k.size} item{'s' if k.size != 1 else ''} with Pareto k > {threshold:.2f} "
        f"(max {float(np.max(k)):.2f})"
    )


def _comparable_models() -> list[str]:
    """Command-line names of the models that have a likelihood (every Bayesian model)."""
    return [name for name, cls in MODELS.items() if issubclass(cls, BayesianCrowdModel)]
