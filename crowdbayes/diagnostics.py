"""Convergence diagnostics in words, and the per-chain label-switching check.

After every NUTS fit crowdbayes computes R-hat, bulk and tail ESS (ArviZ) and counts divergences,
and checks each chain separately for permuted categories, which R-hat misses when every chain is
permuted. Problems are reported as :class:`SamplingWarning` with what to do about them.
"""

from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment

__all__ = [
    "SamplingWarning",
    "Diagnostics",
    "compute_diagnostics",
    "chain_permutations",
]

RHAT_THRESHOLD = 1.01
ESS_PER_CHAIN = 100
#: Largest tolerated difference between two chains' mean label probability for an item.
LABEL_CHAIN_TOLERANCE = 0.1


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


def _flat_name(name: str, index: tuple[Any, ...]) -> str:
    return f"{name}[{', '.join(str(i) for i in index)}]" if index else name


def compute_diagnostics(
    posterior: xr.Dataset,
    sample_stats: xr.Dataset | None,
    var_names: list[str],
    *,
    permuted_chains: list[int] | None = None,
    relabelled: bool | None = True,
    label_chain_difference: tuple[float, Any] = (float("nan"), None),
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
    for name in var_names:
        values = posterior[name].transpose("chain", "draw", ...).to_numpy()
        flat = values.reshape(n_chains, n_draws, -1)
        # Constant parameters (fixed by the model) have undefined R-hat: skip them.
        varying = flat.std(axis=(0, 1)) > 0
        if not varying.any():
            continue
        sub = xr.DataArray(flat[:, :, varying], dims=("chain", "draw", "parameter"))
        rhat = np.atleast_1d(az.rhat(sub).to_numpy().astype(float))
        bulk = np.atleast_1d(az.ess(sub, method="bulk").to_numpy().astype(float))
        tail = np.atleast_1d(az.ess(sub, method="tail").to_numpy().astype(float))
        if n_chains > 1 and np.nanmax(rhat) > max_rhat:
            pos = int(np.nanargmax(rhat))
            index = np.unravel_index(np.flatnonzero(varying)[pos], values.shape[2:])
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
