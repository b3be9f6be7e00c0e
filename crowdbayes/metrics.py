"""Scores of aggregated labels against gold labels: accuracy, log loss, Brier score, ECE.

Every function takes pandas objects and aligns them on the item id: ``probabilities`` is a
DataFrame indexed by item with one column per category (what
:meth:`crowdbayes.FitResult.label_probabilities` and crowd-kit's ``fit_predict_proba``
return), ``labels`` a Series indexed by item, and ``gold`` a Series of known true labels indexed
by item. Only items that have a gold label are scored; items with gold but no prediction, and
predictions without gold, are left out. A ``ValueError`` names the problem when no item
overlaps, when a gold label is not one of the categories, or when the probabilities are not
probabilities.

Examples
--------
>>> import pandas as pd
>>> probs = pd.DataFrame({0: [0.9, 0.2, 0.6], 1: [0.1, 0.8, 0.4]}, index=["a", "b", "c"])
>>> gold = pd.Series({"a": 0, "b": 1, "c": 1})
>>> scores = evaluate(probs, gold)
>>> round(scores["accuracy"], 3), scores["n_items"]
(0.667, 3)
"""

from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "LOG_LOSS_EPS",
    "accuracy",
    "log_loss",
    "brier_score",
    "expected_calibration_error",
    "calibration_table",
    "evaluate",
]

#: Probabilities are clipped to ``[LOG_LOSS_EPS, 1]`` before the log in :func:`log_loss`, so a
#: confident miss costs at most ``-log(1e-15)`` (about 34.5 nats) instead of infinity.
LOG_LOSS_EPS = 1e-15


# ---------------------------------------------------------------------------- alignment
def _as_gold(gold: Any) -> "pd.Series[Any]":
    if isinstance(gold, pd.DataFrame):
        raise ValueError(
            "gold must be a pandas Series of labels indexed by item, not a DataFrame; "
            "use crowdbayes.read_gold to convert a table"
        )
    if not isinstance(gold, pd.Series):
        raise ValueError(f"gold must be a pandas Series indexed by item, not {type(gold).__name__}")
    if gold.isna().any():
        raise ValueError(f"gold holds {int(gold.isna().sum())} missing label(s)")
    if gold.index.has_duplicates:
        dup = gold.index[gold.index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"gold has duplicated item ids: {dup}")
    return gold


def _overlap(index: pd.Index, gold: "pd.Series[Any]", what: str) -> pd.Index:
    if index.has_duplicates:
        dup = index[index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"{what} has duplicated item ids: {dup}")
    common = gold.index[gold.index.isin(index)]
    if len(common) == 0:
        raise ValueError(
            f"no item of gold ({len(gold)} items, e.g. {gold.index[:3].tolist()}) is among the "
            f"items of the {what} ({len(index)} items, e.g. {index[:3].tolist()}); "
            "are both indexed by the same item ids?"
        )
    return common


def _aligned_probabilities(
    probabilities: Any, gold: Any
) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Probabilities (n, K) and gold category codes (n,) on the items both have."""
    if not isinstance(probabilities, pd.DataFrame):
        raise ValueError(
            "probabilities must be a pandas DataFrame indexed by item with one column per "
            f"category, not {type(probabilities).__name__}"
        )
    gold = _as_gold(gold)
    if probabilities.shape[1] < 2:
        raise ValueError(
            f"probabilities need one column per category (at least 2), got {probabilities.shape[1]}"
        )
    if probabilities.columns.has_duplicates:
        raise ValueError("probabilities have duplicated category columns")
    common = _overlap(probabilities.index, gold, "probabilities")
    values = probabilities.loc[common].to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError("probabilities contain missing or infinite values")
    if np.any(values < -1e-9) or np.any(values > 1 + 1e-9):
        raise ValueError("probabilities must lie in [0, 1]")
    sums = values.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-6):
        worst = common[int(np.argmax(np.abs(sums - 1.0)))]
        raise ValueError(
            f"each item's probabilities must sum to 1; item {worst!r} sums to "
            f"{sums[np.argmax(np.abs(sums - 1.0))]:.6g}"
        )
    codes = _category_codes(probabilities.columns, gold.loc[common])
    return values, codes, common


def _category_codes(categories: pd.Index, labels: "pd.Series[Any]") -> np.ndarray:
    codes = np.asarray(categories.get_indexer(pd.Index(labels.to_numpy())))
    if np.any(codes < 0):
        outside = pd.unique(labels.to_numpy()[codes < 0])[:5].tolist()
        raise ValueError(
            f"gold holds label(s) {outside} that are not among the categories "
            f"{categories.tolist()}; check that gold and predictions use the same label values "
            "(e.g. 1 vs '1')"
        )
    return codes


# ---------------------------------------------------------------------------- metrics
def accuracy(labels: "pd.Series[Any]", gold: "pd.Series[Any]") -> float:
    """Share of gold items whose predicted label equals the gold label.

    Parameters
    ----------
    labels : pandas.Series
        Predicted label per item (e.g. ``fit.labels_["label"]`` or crowd-kit's
        ``fit_predict``), indexed by item.
    gold : pandas.Series
        Known true label per item, indexed by item.

    Returns
    -------
    float
        Accuracy over the items present in both.

    Raises
    ------
    ValueError
        When no item overlaps or the inputs are not Series.

    Examples
    --------
    >>> import pandas as pd
    >>> labels = pd.Series({"a": "cat", "b": "dog", "c": "dog", "d": "cat"})
    >>> gold = pd.Series({"a": "cat", "b": "cat", "c": "dog"})
    >>> accuracy(labels, gold)
    0.6666666666666666
    """
    if not isinstance(labels, pd.Series):
        raise ValueError(
            f"labels must be a pandas Series indexed by item, not {type(labels).__name__}"
        )
    gold = _as_gold(gold)
    common = _overlap(labels.index, gold, "labels")
    predicted = labels.loc[common].to_numpy()
    return float(np.mean(predicted == gold.loc[common].to_numpy()))


def log_loss(probabilities: pd.DataFrame, gold: "pd.Series[Any]") -> float:
    """Mean negative log of the probability given to each item's gold label (nats).

    .. math:: \\mathrm{LL} = -\\frac{1}{n} \\sum_i \\log \\max(p_{i, y_i}, 10^{-15})

    Probabilities are clipped below at :data:`LOG_LOSS_EPS` (``1e-15``), so one confident
    miss adds at most about 34.5 / n instead of making the score infinite.

    Parameters
    ----------
    probabilities : pandas.DataFrame
        Items x categories, rows summing to 1, indexed by item.
    gold : pandas.Series
        Known true label per item; every value must be one of the columns.

    Returns
    -------
    float

    Examples
    --------
    >>> import pandas as pd
    >>> probs = pd.DataFrame({0: [0.5, 1.0], 1: [0.5, 0.0]}, index=["a", "b"])
    >>> round(log_loss(probs, pd.Series({"a": 1, "b": 0})), 4)  # (log 2 + 0) / 2
    0.3466
    >>> round(log_loss(probs, pd.Series({"b": 1})), 2)  # clipped at 1e-15
    34.54
    """
    values, codes, _ = _aligned_probabilities(probabilities, gold)
    p_gold = values[np.arange(len(codes)), codes]
    return float(-np.mean(np.log(np.clip(p_gold, LOG_LOSS_EPS, 1.0))))


def brier_score(probabilities: pd.DataFrame, gold: "pd.Series[Any]") -> float:
    """Multi-class Brier score: squared error summed over categories, averaged over items.

    .. math:: \\mathrm{BS} = \\frac{1}{n} \\sum_i \\sum_k (p_{ik} - [y_i = k])^2

    It lies in ``[0, 2]``; for two categories it is twice the binary Brier score.

    Parameters
    ----------
    probabilities : pandas.DataFrame
        Items x categories, rows summing to 1, indexed by item.
    gold : pandas.Series
        Known true label per item.

    Returns
    -------
    float

    Examples
    --------
    >>> import pandas as pd
    >>> probs = pd.DataFrame({0: [0.8, 0.5], 1: [0.2, 0.5]}, index=["a", "b"])
    >>> round(brier_score(probs, pd.Series({"a": 0, "b": 1})), 4)  # (0.08 + 0.5) / 2
    0.29
    """
    values, codes, _ = _aligned_probabilities(probabilities, gold)
    onehot = np.zeros_like(values)
    onehot[np.arange(len(codes)), codes] = 1.0
    return float(np.mean(np.sum((values - onehot) ** 2, axis=1)))


def calibration_table(
    probabilities: pd.DataFrame, gold: "pd.Series[Any]", n_bins: int = 10
) -> pd.DataFrame:
    """Reliability table: per confidence bin, items, mean confidence and accuracy.

    Confidence is the probability of each item's posterior mode; bins are ``n_bins``
    equal-width intervals of ``[0, 1]``, closed on the right (``(0.9, 1.0]``), the first also
    closed on the left. Empty bins are left out.

    Parameters
    ----------
    probabilities : pandas.DataFrame
        Items x categories, rows summing to 1, indexed by item.
    gold : pandas.Series
        Known true label per item.
    n_bins : int
        Number of equal-width bins.

    Returns
    -------
    pandas.DataFrame
        Columns ``lower``, ``upper``, ``n_items``, ``confidence`` (mean mode probability),
        ``accuracy`` (share of modes equal to gold), ``gap`` (``accuracy - confidence``).

    Examples
    --------
    >>> import pandas as pd
    >>> probs = pd.DataFrame({0: [0.95, 0.95, 0.6, 0.4], 1: [0.05, 0.05, 0.4, 0.6]})
    >>> calibration_table(probs, pd.Series([0, 0, 1, 1]))
       lower  upper  n_items  confidence  accuracy   gap
    0    0.5    0.6        2        0.60       0.5 -0.10
    1    0.9    1.0        2        0.95       1.0  0.05
    """
    if not isinstance(n_bins, int | np.integer) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    values, codes, _ = _aligned_probabilities(probabilities, gold)
    mode = values.argmax(axis=1)
    confidence = values[np.arange(len(mode)), mode]
    correct = (mode == codes).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Right-closed bins: bin b holds (edges[b], edges[b + 1]]; confidence 0 goes to bin 0.
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    used = count > 0
    table = pd.DataFrame(
        {
            "lower": edges[:-1][used],
            "upper": edges[1:][used],
            "n_items": count[used],
            "confidence": conf_sum[used] / count[used],
            "accuracy": correct_sum[used] / count[used],
        }
    )
    table["gap"] = table["accuracy"] - table["confidence"]
    return table


def expected_calibration_error(
    probabilities: pd.DataFrame, gold: "pd.Series[Any]", n_bins: int = 10
) -> float:
    """Expected calibration error of the posterior mode.

    Items are put in ``n_bins`` equal-width bins of their mode's probability (the
    confidence); ECE is the mean over bins of ``|accuracy - mean confidence|``, weighted by the
    share of items in the bin (see :func:`calibration_table`).

    .. math:: \\mathrm{ECE} = \\sum_b \\frac{n_b}{n} \\left| \\mathrm{acc}_b -
              \\mathrm{conf}_b \\right|

    Parameters
    ----------
    probabilities : pandas.DataFrame
        Items x categories, rows summing to 1, indexed by item.
    gold : pandas.Series
        Known true label per item.
    n_bins : int
        Number of equal-width bins of ``[0, 1]`` (default 10).

    Returns
    -------
    float
        Between 0 (calibrated) and 1.

    Examples
    --------
    Ten items at confidence 0.8, eight right: calibrated.

    >>> import pandas as pd
    >>> probs = pd.DataFrame({0: [0.8] * 10, 1: [0.2] * 10})
    >>> gold = pd.Series([0] * 8 + [1] * 2)
    >>> round(expected_calibration_error(probs, gold), 12)
    0.0

    Certain of every item, right on half of them: off by 0.5.

    >>> probs = pd.DataFrame({0: [1.0] * 4, 1: [0.0] * 4})
    >>> expected_calibration_error(probs, pd.Series([0, 1, 0, 1]))
    0.5
    """
    table = calibration_table(probabilities, gold, n_bins=n_bins)
    weights = table["n_items"].to_numpy() / table["n_items"].sum()
    return float(np.sum(weights * np.abs(table["gap"].to_numpy())))


def evaluate(
    result_or_probabilities: Any,
    gold: "pd.Series[Any]",
    n_bins: int = 10,
    labels: "pd.Series[Any] | None" = None,
) -> dict[str, Any]:
    """All the scores at once, on the items that have a gold label.

    Parameters
    ----------
    result_or_probabilities : FitResult, fitted estimator or pandas.DataFrame
        A :class:`~crowdbayes.FitResult`, a fitted crowdbayes estimator (its ``result_``), or
        an items x categories DataFrame of probabilities (e.g. crowd-kit's
        ``fit_predict_proba``). The predicted label is the fit's own label
        (``labels()["label"]``, whose ties majority vote breaks at random) for a crowdbayes
        fit, and the most probable column (the first one on ties) for a DataFrame.
    gold : pandas.Series
        Known true label per item, indexed by item. It is never used to fit anything here.
    n_bins : int
        Bins of :func:`expected_calibration_error`.
    labels : pandas.Series, optional
        Predicted labels to score accuracy with instead (e.g. crowd-kit's ``labels_``, whose
        ties are broken at random); the other scores always use the probabilities.

    Returns
    -------
    dict
        ``n_items`` (items scored), ``accuracy``, ``log_loss``, ``brier``, ``ece``.

    Raises
    ------
    ValueError
        When no item has both a prediction and gold, when gold holds labels that are not
        categories, or when the probabilities are malformed.

    Examples
    --------
    >>> import crowdbayes as cb
    >>> sim = cb.simulate_dawid_skene(n_items=200, n_annotators=8, random_seed=0)
    >>> fit = cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> scores = evaluate(fit, sim.true_labels)
    >>> sorted(scores)
    ['accuracy', 'brier', 'ece', 'log_loss', 'n_items']
    >>> scores["accuracy"] > 0.9
    True
    """
    probabilities, own_labels = _probabilities_and_labels(result_or_probabilities)
    if labels is None:
        labels = own_labels
    elif not isinstance(labels, pd.Series):
        raise ValueError(
            f"labels must be a pandas Series indexed by item, not {type(labels).__name__}"
        )
    values, codes, common = _aligned_probabilities(probabilities, gold)
    aligned = probabilities.loc[common]
    gold_aligned = _as_gold(gold).loc[common]
    if labels is None:
        correct = values.argmax(axis=1) == codes
    else:
        missing = common[~common.isin(labels.index)]
        if len(missing):
            raise ValueError(
                f"labels lack {len(missing)} scored item(s), e.g. {missing[:3].tolist()}"
            )
        correct = labels.loc[common].to_numpy() == gold_aligned.to_numpy()
    return {
        "n_items": len(common),
        "accuracy": float(np.mean(correct)),
        "log_loss": log_loss(aligned, gold_aligned),
        "brier": brier_score(aligned, gold_aligned),
        "ece": expected_calibration_error(aligned, gold_aligned, n_bins=n_bins),
    }


def _probabilities_and_labels(obj: Any) -> "tuple[pd.DataFrame, pd.Series[Any] | None]":
    """Probabilities and, for a crowdbayes fit, its own labels (which break ties its way)."""
    if isinstance(obj, pd.DataFrame):
        return obj, None
    from crowdbayes.estimators import CrowdModel
    from crowdbayes.results import FitResult

    if isinstance(obj, CrowdModel):
        obj = obj._check_fitted()  # raises NotFittedError when not fitted
    if isinstance(obj, FitResult):
        return obj.label_probabilities(), obj.labels()["label"]
    raise ValueError(
        "evaluate needs a FitResult, a fitted crowdbayes estimator or a DataFrame of "
        f"probabilities (items x categories), not {type(obj).__name__}"
    )
