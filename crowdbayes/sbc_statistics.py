"""Rank statistics of simulation-based calibration: binned ranks, uniformity tests, results.

Under a correct model, sampler and post-processing, the rank of a true parameter among ``L``
posterior draws is uniform on :math:`\\{0, \\dots, L\\}` (Talts et al. 2018).
:class:`SBCResult` holds the ranks of a run of :func:`crowdbayes.sbc.simulation_based_calibration`
and tests them for uniformity; :func:`rank_histogram` bins them against their exact expected
counts (simulations may differ in the number of draws).
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["SBCResult", "default_bins", "rank_bin_probabilities", "rank_histogram"]


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
        :func:`~crowdbayes.sbc.simulate_from_prior`), ``fit_seed``, ``seconds``, ``reused``
        (the sampler's compiled log-density was taken from an earlier compile of the same
        model structure: nutpie), ``n_chains`` kept, ``n_divergent``, ``max_rhat``,
        ``min_ess_bulk``, ``permuted_chains`` (chains found label-permuted and relabelled or
        dropped), ``warnings`` (the SamplingWarning messages) and ``flagged`` (any of them).
    settings : dict
        The design and sampler settings; ``compiled_once``: every fit was ``reused``.
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
