"""Convergence diagnostics in words, and the per-chain label-switching check.

After every NUTS fit crowdbayes computes R-hat, bulk and tail ESS and counts divergences, and
checks each chain separately for permuted categories, which R-hat misses when every chain is
permuted. Problems are reported as :class:`SamplingWarning` with what to do about them.

R-hat and ESS are ArviZ's (rank-normalised split R-hat, the larger of bulk and folded; bulk ESS;
tail ESS at ArviZ's ``stats.ci_prob`` quantiles; Vehtari et al. 2021), computed here for all
parameters at once: ``arviz_stats`` loops over parameters in Python, which makes the
diagnostics a large share of a fit with hundreds of parameters (figures in
``benchmarks/DESIGN_MEASUREMENTS.md``). The values equal ArviZ's to rounding
(``tests/test_diagnostics.py``); parameters with non-finite draws go through ArviZ itself.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import xarray as xr
from arviz_base import rcParams
from scipy.fft import next_fast_len
from scipy.optimize import linear_sum_assignment
from scipy.special import ndtri

__all__ = [
    "fix_label_switching",
    "SamplingWarning",
    "Diagnostics",
    "compute_diagnostics",
    "convergence_statistics",
    "chain_permutations",
    "variable_statistics",
]

RHAT_THRESHOLD = 1.01
ESS_PER_CHAIN = 100
#: Largest tolerated difference between two chains' mean label probability for an item.
LABEL_CHAIN_TOLERANCE = 0.1
#: Threads for :func:`convergence_statistics` (each takes a share of the parameters, at least
#: ``_PARAMETERS_PER_THREAD``: below that, starting threads costs more than it saves).
_THREADS = min(os.cpu_count() or 1, 4)
_PARAMETERS_PER_THREAD = 64


class SamplingWarning(UserWarning):
    """A sampling problem (divergences, R-hat, low ESS, label switching) the user must see."""


@dataclass
class Diagnostics:
    """Convergence diagnostics of one fit.

    Attributes
    ----------
    max_rhat : float
        Largest rank-normalised split R-hat over the global parameters (NaN for point estimates).
    min_ess_bulk, min_ess_tail : float
        Smallest bulk / tail effective sample size.
    n_divergent : int
        Divergent transitions after tuning.
    n_draws : int
        Total kept draws (chains x draws).
    worst_parameter : str
        The parameter with the largest R-hat.
    permuted_chains : list of int
        Chains found in a label-permuted mode (and relabelled or dropped).
    label_chain_difference : float
        Largest difference between two chains' mean probability of a category for one item:
        whether the chains agree on the labels themselves (NaN with one chain).
    label_chain_item : str
        The item where that difference is largest.
    messages : list of str
        Every problem found, in words, with what to do.

    Examples
    --------
    >>> d = Diagnostics(max_rhat=1.0, min_ess_bulk=900.0, min_ess_tail=800.0, n_divergent=0,
    ...                 n_draws=1000)
    >>> d.ok
    True
    """

    max_rhat: float = float("nan")
    min_ess_bulk: float = float("nan")
    min_ess_tail: float = float("nan")
    n_divergent: int = 0
    n_draws: int = 0
    worst_parameter: str = ""
    permuted_chains: list[int] = field(default_factory=list)
    label_chain_difference: float = float("nan")
    label_chain_item: str = ""
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.messages

    def to_text(self) -> str:
        """Diagnostics as a short report in words.

        Examples
        --------
        >>> print(Diagnostics(n_draws=4).to_text().splitlines()[0])
        Sampling diagnostics
        """
        lines = ["Sampling diagnostics", "--------------------"]
        if self.n_draws and not np.isnan(self.max_rhat):
            lines += [
                f"draws kept: {self.n_draws}",
                f"max R-hat: {self.max_rhat:.3f} (threshold {RHAT_THRESHOLD})"
                + (f", at {self.worst_parameter}" if self.worst_parameter else ""),
                f"min bulk ESS: {self.min_ess_bulk:.0f}, min tail ESS: {self.min_ess_tail:.0f}",
                f"divergent transitions: {self.n_divergent}",
            ]
            if not np.isnan(self.label_chain_difference):
                lines.append(
                    "largest difference between chains in an item's label probability: "
                    f"{self.label_chain_difference:.3f} (item {self.label_chain_item})"
                )
            if self.permuted_chains:
                lines.append(f"label-permuted chains: {self.permuted_chains}")
        else:
            lines.append("point estimate: no sampling diagnostics")
        lines.append("")
        if self.messages:
            lines.append("Problems:")
            lines += [f"- {m}" for m in self.messages]
        else:
            lines.append("No problems found.")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Diagnostics as plain values (for DataTree attributes)."""
        return {
            "max_rhat": float(self.max_rhat),
            "min_ess_bulk": float(self.min_ess_bulk),
            "min_ess_tail": float(self.min_ess_tail),
            "n_divergent": int(self.n_divergent),
            "n_draws": int(self.n_draws),
            "worst_parameter": self.worst_parameter,
            "permuted_chains": [int(c) for c in self.permuted_chains],
            "label_chain_difference": float(self.label_chain_difference),
            "label_chain_item": self.label_chain_item,
            "messages": list(self.messages),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Diagnostics":
        """Inverse of :meth:`to_dict`."""
        return cls(**values)


def _split_chains(x: np.ndarray) -> np.ndarray:
    # (parameter, chain, draw) -> (parameter, 2 chain, draw // 2): first and last halves
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, x.shape[2] - half :]], axis=1)


def _average_ranks(a: np.ndarray) -> np.ndarray:
    # 1-based ranks over the last axis, ties given their average rank (scipy's rankdata)
    n = a.shape[1]
    order = np.argsort(a, axis=1)
    ordered = np.take_along_axis(a, order, axis=1)
    position = np.arange(1, n + 1, dtype=float)
    starts = np.ones(a.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    if starts.all():
        ranked = np.broadcast_to(position, a.shape)
    else:
        ends = np.ones(a.shape, dtype=bool)
        ends[:, :-1] = starts[:, 1:]
        first = np.maximum.accumulate(np.where(starts, position, 0.0), axis=1)
        last = np.minimum.accumulate(np.where(ends, position, np.inf)[:, ::-1], axis=1)[:, ::-1]
        ranked = (first + last) / 2.0
    ranks = np.empty(a.shape)
    np.put_along_axis(ranks, order, ranked, axis=1)
    return ranks


def _z_scale(x: np.ndarray) -> np.ndarray:
    # normal scores of the ranks over chains and draws together (Blom's offset 3/8)
    n_params, n_chains, n_draws = x.shape
    ranks = _average_ranks(x.reshape(n_params, n_chains * n_draws))
    return ndtri((ranks - 0.375) / (n_chains * n_draws + 0.25)).reshape(x.shape)


def _split_rhat(x: np.ndarray) -> np.ndarray:
    n = x.shape[2]
    within = x.var(axis=2, ddof=1).mean(axis=1)
    between = n * x.mean(axis=2).var(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of each parameter of ``x`` (parameter, chain, draw), as ArviZ's ``_ess`` on each.

    Autocorrelations by FFT, then Geyer's initial positive and initial monotone sequences. The
    positive sequence stops at the first pair of lags whose sum is not positive: the pairs kept
    are those before it, the monotone sequence is their running minimum, and the even lag of the
    stopping pair is added when ArviZ adds it.
    """
    n_params, n_chains, n = x.shape
    size = n_chains * n
    m = next_fast_len(2 * n)
    centred = x - x.mean(axis=2, keepdims=True)
    spectrum = np.fft.rfft(centred, n=m, axis=2)
    spectrum *= np.conjugate(spectrum)
    acov = np.fft.irfft(spectrum, n=m, axis=2)[:, :, :n] / n
    mean_acov = acov.mean(axis=1)  # (parameter, lag)
    mean_var = mean_acov[:, 0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if n_chains > 1:
        var_plus = var_plus + x.mean(axis=2).var(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var[:, None] - mean_acov) / var_plus[:, None]
    rho[:, 0] = 1.0
    n_pairs = (n + 1) // 2
    even = rho[:, 0 : 2 * n_pairs : 2]
    odd = np.zeros_like(even)
    odd[:, : n // 2] = rho[:, 1::2][:, : n // 2]
    pair_sums = even + odd
    pair = np.arange(n_pairs)
    # stops[:, j]: pair j + 1 is not computed (out of lags, or pair j's sum is not > 0)
    stops = np.ones((n_params, n_pairs), dtype=bool)
    stops[:, :-1] = (2 * pair[1:] - 1 >= n - 3)[None, :] | ~(pair_sums[:, :-1] > 0)
    last = np.argmax(stops, axis=1)  # the last pair computed
    rows = np.arange(n_params)
    last_even, last_sum = even[rows, last], pair_sums[rows, last]
    monotone = np.minimum.accumulate(pair_sums, axis=1)
    kept = np.where(pair[None, :] < last[:, None], monotone, 0.0).sum(axis=1)
    extra = np.where((last == 0) | (last_sum >= 0) | (last_even > 0), last_even, 0.0)
    tau = np.maximum(-1.0 + 2.0 * kept + extra, 1.0 / np.log10(size))
    ess = np.where(np.isnan(rho).any(axis=1), np.nan, size / tau)
    constant = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))) < np.finfo(float).resolution
    return np.where(constant, float(size), ess)


def _finite_statistics(x: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # R-hat (NaN with one chain), bulk and tail ESS of finite draws (parameter, chain, draw)
    split = _split_chains(x)
    z_bulk = _z_scale(split)
    rhat = np.full(len(x), np.nan)
    if x.shape[1] > 1:
        folded = np.abs(split - np.median(split.reshape(len(x), -1), axis=1)[:, None, None])
        rhat = np.maximum(_split_rhat(z_bulk), _split_rhat(_z_scale(folded)))
    bulk = _ess(z_bulk)
    low, high = np.quantile(x.reshape(len(x), -1), sorted((prob, 1 - prob)), axis=1)
    tail = np.minimum(
        _ess((split <= low[:, None, None]).astype(float)),
        _ess((split <= high[:, None, None]).astype(float)),
    )
    return rhat, bulk, tail


def convergence_statistics(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat, bulk ESS and tail ESS of every parameter at once.

    The same values as ``arviz.rhat`` (method "rank"), ``arviz.ess(method="bulk")`` and
    ``arviz.ess(method="tail")`` with ArviZ's default ``stats.ci_prob``, vectorised over
    parameters.

    Parameters
    ----------
    draws : numpy.ndarray, shape (chain, draw, parameter)

    Returns
    -------
    rhat, ess_bulk, ess_tail : numpy.ndarray, shape (parameter,)
        R-hat is NaN with one chain; all are NaN with fewer than 4 draws.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> rhat, bulk, tail = convergence_statistics(rng.normal(size=(4, 500, 3)))
    >>> bool(np.all(rhat < 1.01)), bool(np.all(bulk > 1500))
    (True, True)
    """
    draws = np.asarray(draws, dtype=float)
    n_chains, n_draws, n_params = draws.shape
    nan = np.full(n_params, np.nan)
    if n_draws < 4 or n_params == 0:
        return nan, nan.copy(), nan.copy()
    finite = np.isfinite(draws).all(axis=(0, 1))
    x = np.ascontiguousarray(np.moveaxis(draws[:, :, finite], 2, 0))
    rhat, bulk, tail = nan.copy(), nan.copy(), nan.copy()
    prob = float(rcParams["stats.ci_prob"])
    n_threads = min(_THREADS, len(x) // _PARAMETERS_PER_THREAD)
    if n_threads > 1:
        # every statistic is per parameter, and NumPy's sorts, FFTs and ufuncs release the GIL
        with ThreadPoolExecutor(n_threads) as pool:
            parts = list(
                pool.map(
                    lambda chunk: _finite_statistics(chunk, prob),
                    np.array_split(x, n_threads),
                )
            )
        rhat[finite], bulk[finite], tail[finite] = (
            np.concatenate(p) for p in zip(*parts, strict=True)
        )
    else:
        rhat[finite], bulk[finite], tail[finite] = _finite_statistics(x, prob)
    if not finite.all():  # NaN or inf draws: ArviZ's own handling, parameter by parameter
        sub = xr.DataArray(draws[:, :, ~finite], dims=("chain", "draw", "parameter"))
        rhat[~finite] = az.rhat(sub).to_numpy()
        bulk[~finite] = az.ess(sub, method="bulk").to_numpy()
        tail[~finite] = az.ess(sub, method="tail").to_numpy()
    return rhat, bulk, tail


def _flat_name(name: str, index: tuple[Any, ...]) -> str:
    return f"{name}[{', '.join(str(i) for i in index)}]" if index else name


def variable_statistics(
    posterior: xr.Dataset, var_names: list[str]
) -> dict[str, tuple[np.ndarray, ...]]:
    """R-hat, bulk and tail ESS of every element of each variable (the costly part of diagnostics).

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws with dims ``chain`` and ``draw``.
    var_names : list of str

    Returns
    -------
    dict
        Per variable, ``(varying, rhat, ess_bulk, ess_tail)``: ``varying`` (the variable's
        shape, without chain and draw) marks the elements that are not constant; the three
        statistics (:func:`convergence_statistics`) are over those elements, flattened.
        Constant elements (fixed by the model) have no R-hat.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> post = xr.Dataset({"x": (("chain", "draw", "k"), rng.normal(size=(4, 500, 2)))})
    >>> varying, rhat, bulk, tail = variable_statistics(post, ["x"])["x"]
    >>> varying.tolist(), rhat.shape
    ([True, True], (2,))
    """
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    out: dict[str, tuple[np.ndarray, ...]] = {}
    for name in var_names:
        values = posterior[name].transpose("chain", "draw", ...).to_numpy()
        flat = values.reshape(n_chains, n_draws, -1)
        varying = flat.std(axis=(0, 1)) > 0
        if not varying.any():
            stats: tuple[np.ndarray, ...] = (np.empty(0), np.empty(0), np.empty(0))
        elif _complementary_pairs(values):
            stats = _pair_statistics(values, varying)
        else:
            stats = convergence_statistics(flat[:, :, varying])
        out[name] = (varying.reshape(values.shape[2:]), *stats)
    return out


def _complementary_pairs(values: np.ndarray) -> bool:
    # (chain, draw, ..., 2) whose two entries sum to one in every draw: a two-category simplex
    return (
        values.ndim >= 3
        and values.shape[-1] == 2
        and bool(np.all(np.abs(values[..., 0] + values[..., 1] - 1.0) <= 1e-12))
    )


def _pair_statistics(values: np.ndarray, varying: np.ndarray) -> tuple[np.ndarray, ...]:
    """Statistics of a two-category simplex from its first entries, shared by the second.

    The second entry is one minus the first, so its ranks are the first's reversed: the same
    rank-normalised R-hat and bulk ESS, and the same tail ESS (its 5.5 % and 94.5 % quantile
    indicators are the first's, swapped and complemented). Half the work on, for example,
    every confusion matrix of a two-category Dawid-Skene model.
    """
    n_chains, n_draws = values.shape[:2]
    first = values[..., 0].reshape(n_chains, n_draws, -1)
    first_varying = first.std(axis=(0, 1)) > 0
    shared = convergence_statistics(first[:, :, first_varying])
    out = []
    for statistic in shared:
        per_first = np.full(first.shape[2], np.nan)
        per_first[first_varying] = statistic
        out.append(np.repeat(per_first, 2)[varying])  # (..., 2) flattened: pairs adjacent
    return tuple(out)


def compute_diagnostics(
    posterior: xr.Dataset,
    sample_stats: xr.Dataset | None,
    var_names: list[str],
    *,
    permuted_chains: list[int] | None = None,
    relabelled: bool | None = True,
    label_chain_difference: tuple[float, Any] = (float("nan"), None),
    statistics: dict[str, tuple[np.ndarray, ...]] | None = None,
) -> Diagnostics:
    """R-hat, ESS and divergences over ``var_names``, with messages for every problem.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws with dims ``chain`` and ``draw``.
    sample_stats : xarray.Dataset, optional
        Must hold ``diverging`` to count divergences.
    var_names : list of str
        Global parameters to check.
    permuted_chains : list of int, optional
        Chains found label-permuted by :func:`chain_permutations`.
    relabelled : bool or None
        Whether those chains were relabelled (True) or dropped (False); None when every chain
        was permuted in a model where relabelling is not exact, so nothing could be done.
    label_chain_difference : (float, item id)
        Largest difference between chains' mean label probabilities, and its item.
    statistics : dict, optional
        :func:`variable_statistics` of ``posterior`` and ``var_names``, when already computed
        (the estimators compute it while they summarise labels); computed here otherwise.

    Returns
    -------
    Diagnostics

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> post = xr.Dataset({"x": (("chain", "draw"), rng.normal(size=(4, 500)))})
    >>> compute_diagnostics(post, None, ["x"]).ok
    True
    """
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    diag = Diagnostics(n_draws=n_chains * n_draws, permuted_chains=list(permuted_chains or []))
    worst, max_rhat, min_bulk, min_tail = "", -np.inf, np.inf, np.inf
    if statistics is None:
        statistics = variable_statistics(posterior, var_names)
    for name in var_names:
        varying, rhat, bulk, tail = statistics[name]
        if not varying.any():
            continue
        if n_chains > 1 and np.nanmax(rhat) > max_rhat:
            pos = int(np.nanargmax(rhat))
            index = np.unravel_index(np.flatnonzero(varying)[pos], varying.shape)
            labels = tuple(
                posterior[name][dim].values[i]
                for dim, i in zip(posterior[name].dims[2:], index, strict=True)
            )
            worst, max_rhat = _flat_name(name, labels), float(np.nanmax(rhat))
        min_bulk = min(min_bulk, float(np.nanmin(bulk)))
        min_tail = min(min_tail, float(np.nanmin(tail)))
    diag.max_rhat = max_rhat if np.isfinite(max_rhat) else float("nan")
    diag.min_ess_bulk = min_bulk if np.isfinite(min_bulk) else float("nan")
    diag.min_ess_tail = min_tail if np.isfinite(min_tail) else float("nan")
    diag.worst_parameter = worst
    diag.label_chain_difference = float(label_chain_difference[0])
    diag.label_chain_item = (
        "" if label_chain_difference[1] is None else str(label_chain_difference[1])
    )
    if sample_stats is not None and "diverging" in sample_stats:
        diag.n_divergent = int(sample_stats["diverging"].sum())

    messages = diag.messages
    if diag.permuted_chains and relabelled is None:
        messages.append(
            f"every chain {diag.permuted_chains} settled in a label-permuted mode (categories "
            "swapped), so none could be relabelled or set aside: labels and confusion matrices "
            "are probably permuted; check that most annotators are better than chance, add gold "
            "labels, or fit DawidSkene"
        )
    elif diag.permuted_chains:
        action = "relabelled to match the others" if relabelled else "dropped from the posterior"
        messages.append(
            f"chain(s) {diag.permuted_chains} settled in a label-permuted mode (categories "
            f"swapped) and were {action}; if this recurs, check that most annotators are better "
            "than chance, or add gold labels"
        )
    if diag.n_divergent:
        messages.append(
            f"{diag.n_divergent} divergent transition(s) after tuning: the posterior geometry is "
            "hard for NUTS and estimates may be biased; raise target_accept (e.g. 0.95) and "
            "tune, or use the hierarchical model's non-centred priors"
        )
    if n_chains > 1 and diag.max_rhat > RHAT_THRESHOLD:
        messages.append(
            f"R-hat up to {diag.max_rhat:.3f} (at {worst}) exceeds {RHAT_THRESHOLD}: chains "
            "disagree, so the posterior is not yet trustworthy; run more draws and tuning "
            "(e.g. draws=2000, tune=2000) or check for several modes"
        )
    if diag.label_chain_difference > LABEL_CHAIN_TOLERANCE:
        messages.append(
            f"chains disagree on item {diag.label_chain_item}'s label probabilities by "
            f"{diag.label_chain_difference:.2f}: some posterior labels are not yet stable; run "
            "more draws, or look for a category the data barely identify"
        )
    if n_chains == 1:
        messages.append("only one chain: R-hat cannot detect non-convergence; use chains >= 2")
    if diag.min_ess_bulk < ESS_PER_CHAIN * n_chains or diag.min_ess_tail < ESS_PER_CHAIN * n_chains:
        messages.append(
            f"effective sample size is low (bulk {diag.min_ess_bulk:.0f}, tail "
            f"{diag.min_ess_tail:.0f}; want >= {ESS_PER_CHAIN * n_chains}): intervals and tail "
            "probabilities are imprecise; run more draws"
        )
    return diag


def chain_permutations(confusion: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """For each chain, the relabelling of true categories that best matches the labels given.

    With annotators better than chance, the mass of the averaged confusion matrix lies on its
    diagonal. For each chain the assignment of true categories to labels that maximises the
    (label-count weighted) diagonal mass is found; a chain whose best assignment is not the
    identity is in a label-permuted mode.

    Parameters
    ----------
    confusion : numpy.ndarray, shape (chain, draw, annotator, true_category, category)
    weights : numpy.ndarray, shape (annotator,), optional
        Weight of each annotator (its number of labels).

    Returns
    -------
    numpy.ndarray of int, shape (chain, category)
        ``perm[c, l]`` is the true category of chain ``c`` that corresponds to label ``l``.

    Examples
    --------
    >>> import numpy as np
    >>> good = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> conf = np.stack([good, good[::-1]])[:, None, None]  # chain 1 has its rows swapped
    >>> chain_permutations(conf).tolist()
    [[0, 1], [1, 0]]
    """
    n_annotators = confusion.shape[2]
    w = np.ones(n_annotators) if weights is None else np.asarray(weights, dtype=float)
    mean = confusion.mean(axis=1)  # (chain, annotator, true, label)
    agreement = np.einsum("j,cjkl->ckl", w, mean)
    perms = []
    for chain_agreement in agreement:
        row, col = linear_sum_assignment(-chain_agreement)
        perm = np.empty_like(row)
        perm[col] = row
        perms.append(perm)
    return np.asarray(perms, dtype=np.int64)


def fix_label_switching(
    posterior: xr.Dataset, sample_stats: xr.Dataset, data: Any, *, exact: bool
) -> tuple[xr.Dataset, xr.Dataset, list[int], bool | None]:
    """Find chains in a label-permuted mode; relabel them (``exact`` symmetry) or drop them.

    Each chain's permutation of the true categories comes from :func:`chain_permutations` of
    its ``confusion`` draws (weighted by each annotator's number of labels). Where relabelling
    the true categories is an exact symmetry of the likelihood (Dawid-Skene), a permuted
    chain's ``prevalence`` and ``confusion`` are relabelled; otherwise it is dropped.

    Parameters
    ----------
    posterior, sample_stats : xarray.Dataset
    data : AnnotationData
    exact : bool

    Returns
    -------
    posterior, sample_stats : xarray.Dataset
    permuted : list of int
        The chains (their ``chain`` coordinate) found permuted.
    relabelled : bool or None
        True when no chain was permuted or all were relabelled; False when permuted chains
        were dropped; None when every chain was permuted (all kept).

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 2], "annotator": ["a", "b"],
    ...                                         "label": [0, 1]}))
    >>> conf = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.8, 0.2], [0.3, 0.7]]])
    >>> flipped = conf[:, ::-1, :]
    >>> post = xr.Dataset({
    ...     "prevalence": (("chain", "draw", "category"), np.full((2, 1, 2), 0.5)),
    ...     "confusion": (("chain", "draw", "annotator", "true_category", "category"),
    ...                   np.stack([conf, flipped])[:, None])},
    ...     coords={"chain": [0, 1]})
    >>> _, _, permuted, relabelled = fix_label_switching(post, xr.Dataset(), data, exact=True)
    >>> permuted, relabelled
    ([1], True)
    """
    dims = ("chain", "draw", "annotator", "true_category", "category")
    confusion = posterior["confusion"].transpose(*dims).to_numpy()
    n_labels = np.bincount(data.annotator_index, minlength=data.n_annotators)
    perms = chain_permutations(confusion, weights=n_labels)
    identity = np.arange(data.n_categories)
    bad = [c for c in range(perms.shape[0]) if not np.array_equal(perms[c], identity)]
    chain_values = posterior["chain"].to_numpy()
    permuted = [int(chain_values[c]) for c in bad]
    if not bad:
        return posterior, sample_stats, [], True
    if exact:
        prevalence = posterior["prevalence"].transpose("chain", "draw", "category")
        prev = prevalence.to_numpy().copy()
        conf = confusion.copy()
        for c in bad:
            prev[c] = prev[c][:, perms[c]]
            conf[c] = conf[c][:, :, perms[c], :]
        posterior = posterior.copy()
        posterior["prevalence"] = (prevalence.dims, prev)
        posterior["confusion"] = (dims, conf)
        return posterior, sample_stats, permuted, True
    keep = [c for c in range(perms.shape[0]) if c not in bad]
    if not keep:
        return posterior, sample_stats, permuted, None
    return posterior.isel(chain=keep), sample_stats.isel(chain=keep), permuted, False
