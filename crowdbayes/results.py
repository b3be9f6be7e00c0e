"""The fitted result: one ArviZ ``DataTree`` with named dims, plus tidy pandas tables.

Groups of :attr:`FitResult.datatree`:

``posterior``
    Draws of the model's parameters (``prevalence``, ``confusion``, ...) and the derived
    ``annotator_accuracy`` (prevalence-weighted diagonal of the confusion matrix).
``sample_stats``
    NUTS statistics (``diverging``, ...).
``observed_data``
    ``label``: the label given, per annotation.
``constant_data``
    ``item_index`` and ``annotator_index`` per annotation, ``gold_index`` per item (-1: none).
``log_likelihood``
    ``labels``: per-item log-likelihood, true category marginalised (the item is the
    exchangeable unit), when small enough to store.
``posterior_predictive``
    After :func:`crowdbayes.predictive_check`: ``label`` (chain, draw, annotation), replicated
    labels, as ``observed_data``'s ``label`` (ArviZ's predictive-check plots read the pair).
``summary``
    The package's own group (ArviZ 1.x has none for reductions over draws that a user reads
    directly): ``label_probability`` (item, category), ``label_mode``,
    ``label_mode_probability``, ``label_entropy`` (item), and ``prevalence``, ``confusion``,
    ``annotator_accuracy`` with a ``statistic`` dim (``mean``, ``lower``, ``upper``: an
    equal-tailed interval), ``n_labels`` (annotator), and after a predictive check
    ``ppp_value`` (check). ArviZ's own summaries (``az.summary``) work on ``posterior``.

The root's attributes hold provenance: package versions, model name, priors, method, sampler
settings, seed and an ``id`` hash of them.
"""

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from crowdbayes.data import AnnotationData
from crowdbayes.diagnostics import Diagnostics

__all__ = [
    "CI_PROB",
    "FitResult",
    "data_from_datatree",
    "interval_summary",
    "make_provenance",
    "point_summary",
    "provenance_id",
]

#: Probability mass of every reported interval (equal-tailed).
CI_PROB = 0.94
STATISTICS = ["mean", "lower", "upper"]


#: Columns appended to :meth:`FitResult.labels` by models with item difficulty.
DIFFICULTY_COLUMNS = ("difficulty", "difficulty_low", "difficulty_high")


def _at_target_accept(attrs: Any) -> str:
    # " at target acceptance 0.65" for the fit descriptions (results saved before it was
    # recorded have none)
    value = attrs.get("target_accept", "None")
    return "" if value == "None" else f" at target acceptance {value}"


def provenance_id(attrs: dict[str, Any]) -> str:
    """SHA-256 of the settings that define a fit (version, model, priors, method, sampler...).

    Examples
    --------
    >>> len(provenance_id({"model": "dawid-skene"}))
    64
    """
    keys = [
        "crowdbayes_version",
        "model",
        "priors",
        "method",
        "sampler",
        "draws",
        "tune",
        "chains",
        "random_seed",
        "n_annotations",
    ]
    values = {k: attrs.get(k) for k in keys}
    values = {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}
    payload = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(eq=False)
class FitResult:
    """A fitted crowd model: the DataTree, the encoded data and tidy tables.

    Attributes
    ----------
    datatree : xarray.DataTree
        See the module docstring for its groups.
    data : AnnotationData
        The encoded annotations the model was fitted to.
    """

    datatree: xr.DataTree
    data: AnnotationData

    # ------------------------------------------------------------------ access
    @property
    def summary(self) -> xr.Dataset:
        """The ``summary`` group as a Dataset."""
        return self.datatree["summary"].to_dataset()

    @property
    def model_name(self) -> str:
        """Name of the fitted model (as on the command line)."""
        return str(self.datatree.attrs["model"])

    @property
    def diagnostics(self) -> Diagnostics:
        """Convergence diagnostics recorded at fit time."""
        return Diagnostics.from_dict(json.loads(self.datatree.attrs["diagnostics"]))

    # ------------------------------------------------------------------ tables
    def label_probabilities(self) -> pd.DataFrame:
        """Posterior probability of each item's true category (items x categories).

        Examples
        --------
        >>> from crowdbayes.simulate import simulate_dawid_skene
        >>> from crowdbayes import MajorityVote
        >>> sim = simulate_dawid_skene(n_items=5, n_annotators=4, random_seed=0)
        >>> MajorityVote().fit(sim.annotations, random_seed=0).result_.label_probabilities().shape
        (5, 3)
        """
        da = self.summary["label_probability"]
        frame = pd.DataFrame(
            da.to_numpy(),
            index=pd.Index(da["item"].to_numpy(), name="item"),
            columns=pd.Index(da["category"].to_numpy(), name="category"),
        )
        return frame

    def labels(self) -> pd.DataFrame:
        """Per item: posterior mode, its probability, entropy (nats) and P(each category).

        Returns
        -------
        pandas.DataFrame
            Indexed by ``item``; columns ``label``, ``probability``, ``entropy``, then
            ``p_<category>`` for every category; for models with item difficulty, then
            ``difficulty``, ``difficulty_low`` and ``difficulty_high`` (posterior mean and 94 %
            interval of the probability that a typical annotator mislabels the item).

        Examples
        --------
        >>> from crowdbayes.simulate import simulate_dawid_skene
        >>> from crowdbayes import MajorityVote
        >>> sim = simulate_dawid_skene(n_items=5, n_annotators=4, random_seed=0)
        >>> MajorityVote().fit(sim.annotations, random_seed=0).result_.labels().columns.tolist()
        ['label', 'probability', 'entropy', 'p_0', 'p_1', 'p_2']
        """
        s = self.summary
        table = pd.DataFrame(
            {
                "label": s["label_mode"].to_numpy(),
                "probability": s["label_mode_probability"].to_numpy(),
                "entropy": s["label_entropy"].to_numpy(),
            },
            index=pd.Index(s["item"].to_numpy(), name="item"),
        )
        probs = self.label_probabilities()
        probs.columns = [f"p_{c}" for c in probs.columns]
        table = pd.concat([table, probs], axis=1)
        if "difficulty" in s:
            difficulty = s["difficulty"].transpose("item", "statistic")
            for stat, column in zip(STATISTICS, DIFFICULTY_COLUMNS, strict=True):
                table[column] = difficulty.sel(statistic=stat).to_numpy()
        return table

    def annotators(self) -> pd.DataFrame:
        """Per annotator: number of labels and accuracy with its 94 % interval.

        Accuracy is the probability that the annotator's label is correct for a random item,
        :math:`\\sum_k \\pi_k \\theta_{jkk}`.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``annotator``; columns ``n_labels``, ``accuracy``, ``accuracy_low``,
            ``accuracy_high``.
        """
        s = self.summary
        acc = s["annotator_accuracy"]
        return pd.DataFrame(
            {
                "n_labels": s["n_labels"].to_numpy(),
                "accuracy": acc.sel(statistic="mean").to_numpy(),
                "accuracy_low": acc.sel(statistic="lower").to_numpy(),
                "accuracy_high": acc.sel(statistic="upper").to_numpy(),
            },
            index=pd.Index(s["annotator"].to_numpy(), name="annotator"),
        )

    def prevalence(self) -> pd.DataFrame:
        """Category prevalence: posterior mean and 94 % interval.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``category``; columns ``mean``, ``low``, ``high``.
        """
        da = self.summary["prevalence"]
        return pd.DataFrame(
            {
                "mean": da.sel(statistic="mean").to_numpy(),
                "low": da.sel(statistic="lower").to_numpy(),
                "high": da.sel(statistic="upper").to_numpy(),
            },
            index=pd.Index(da["category"].to_numpy(), name="category"),
        )

    def confusion(self) -> pd.DataFrame:
        """Every annotator's confusion matrix, long format, with 94 % intervals.

        Returns
        -------
        pandas.DataFrame
            Columns ``annotator``, ``true_category``, ``category``, ``mean``, ``low``, ``high``:
            the probability that the annotator says ``category`` when the truth is
            ``true_category``.
        """
        if "confusion" not in self.summary:
            raise ValueError(
                f"model {self.model_name!r} has no confusion matrices (majority vote estimates "
                "only each annotator's agreement with the majority)"
            )
        da = self.summary["confusion"]
        frame = da.to_dataframe(name="value")["value"].unstack("statistic")
        frame = frame.rename(columns={"lower": "low", "upper": "high"})[["mean", "low", "high"]]
        return frame.reset_index()

    # ------------------------------------------------------------------ text
    def overview(self) -> str:
        """The fit in four lines: how it was fitted, the data, the diagnostics and the labels.

        The command line prints it after each fit; :meth:`summary_text` begins with it.

        Examples
        --------
        >>> from crowdbayes.simulate import simulate_dawid_skene
        >>> from crowdbayes import MajorityVote
        >>> sim = simulate_dawid_skene(n_items=5, n_annotators=4, random_seed=0)
        >>> print(MajorityVote().fit(sim.annotations, random_seed=0).result_.overview())
        fitted majority-vote by counting votes
        data: 20 labels, 5 items, 4 annotators, 3 categories, 0 gold items
        diagnostics: point estimate, no sampling diagnostics
        labels: 3 of 5 items have posterior-mode probability < 0.9
        """
        attrs = self.datatree.attrs
        method = str(attrs["method"])
        diag = self.diagnostics
        problems = f"{len(diag.messages)} problem(s)" if diag.messages else "no problems found"
        if method == "nuts":
            how = (
                f"by NUTS ({attrs['sampler']}, {attrs['chains']} chains x {attrs['draws']} draws "
                f"after {attrs['tune']} tuning steps{_at_target_accept(attrs)}, "
                f"seed {attrs['random_seed']})"
            )
            checked = (
                f"{problems} (max R-hat {diag.max_rhat:.3f}, min bulk ESS "
                f"{diag.min_ess_bulk:.0f}, {diag.n_divergent} divergent transition(s))"
            )
        elif method == "vi":
            how = (
                f"by ADVI ({attrs.get('vi_iterations')} steps, {attrs['draws']} draws from the "
                f"approximation, seed {attrs['random_seed']})"
            )
            checked = f"{problems} (an approximation: no sampling diagnostics)"
        else:
            how = "by its posterior mode (no intervals)" if method == "map" else "by counting votes"
            checked = "point estimate, no sampling diagnostics"
        labels = self.labels()
        unsure = int((labels["probability"] < 0.9).sum())
        return (
            f"fitted {self.model_name} {how}\n"
            f"data: {self.data.n_annotations} labels, {self.data.n_items} items, "
            f"{self.data.n_annotators} annotators, {self.data.n_categories} categories, "
            f"{self.data.n_gold} gold items\n"
            f"diagnostics: {checked}\n"
            f"labels: {unsure} of {len(labels)} items have posterior-mode probability < 0.9"
        )

    def summary_text(self) -> str:
        """What ``summary.txt`` holds: :meth:`overview`, the diagnostics and the prevalence."""
        attrs = self.datatree.attrs
        lines = [
            f"crowdbayes {attrs['crowdbayes_version']}: model {attrs['model']}, "
            f"method {attrs['method']}",
            self.overview(),
            "",
            self.diagnostics.to_text(),
            "Prevalence (mean and 94% interval):",
            self.prevalence().round(3).to_string(),
        ]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ io
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the DataTree to a netCDF file (h5netcdf), provenance in its attributes.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from crowdbayes.simulate import simulate_dawid_skene
        >>> from crowdbayes import MajorityVote
        >>> sim = simulate_dawid_skene(n_items=5, n_annotators=4, random_seed=0)
        >>> res = MajorityVote().fit(sim.annotations, random_seed=0).result_
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "fit.nc"
        >>> res.save(path)
        >>> FitResult.load(path).labels().equals(res.labels())
        True
        """
        self.datatree.to_netcdf(os.fspath(path), engine="h5netcdf")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "FitResult":
        """Read a result written by :meth:`save`, checking its provenance hash.

        Raises
        ------
        ValueError
            When the file is not a crowdbayes result or its settings do not match its ``id``.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ValueError(f"result file not found: {path!r}")
        try:
            with xr.open_datatree(path, engine="h5netcdf") as tree:
                dt = tree.load()
        except (OSError, ValueError) as err:
            raise ValueError(
                f"{path!r} is not a crowdbayes result (not a readable netCDF file: {err})"
            ) from None
        attrs = {str(k): v for k, v in dt.attrs.items()}
        if "crowdbayes_version" not in attrs or "id" not in attrs:
            raise ValueError(f"{path!r} is not a crowdbayes result (no provenance attributes)")
        if provenance_id(attrs) != attrs["id"]:
            raise ValueError(
                f"{path!r}: provenance id does not match its recorded settings; the file was "
                "altered"
            )
        return cls(datatree=dt, data=data_from_datatree(dt))


def data_from_datatree(dt: xr.DataTree) -> AnnotationData:
    """Rebuild the encoded annotations stored in a result's DataTree."""
    const = dt["constant_data"].to_dataset()
    obs = dt["observed_data"].to_dataset()
    summary = dt["summary"].to_dataset()
    categories = pd.Index(summary["category"].to_numpy(), name="category")
    label_values = obs["label"].to_numpy()
    return AnnotationData(
        item_index=const["item_index"].to_numpy().astype(np.int64),
        annotator_index=const["annotator_index"].to_numpy().astype(np.int64),
        label_index=categories.get_indexer(label_values).astype(np.int64),
        items=pd.Index(summary["item"].to_numpy(), name="item"),
        annotators=pd.Index(summary["annotator"].to_numpy(), name="annotator"),
        categories=categories,
        gold_index=const["gold_index"].to_numpy().astype(np.int64),
    )


def interval_summary(draws: xr.DataArray, prob: float = CI_PROB) -> xr.DataArray:
    """Mean and equal-tailed interval over ``chain`` and ``draw`` with a ``statistic`` dim.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.linspace(0, 1, 101).reshape(1, 101), dims=("chain", "draw"))
    >>> interval_summary(da).round(2).to_numpy().tolist()
    [0.5, 0.03, 0.97]
    """
    # NumPy over the flattened samples: xarray's quantile skips NaN by default, which runs
    # numpy.nanquantile one parameter at a time, slow for hundreds of parameters
    sample_dims = ("chain", "draw")
    tail = (1.0 - prob) / 2.0
    other = [d for d in draws.dims if d not in sample_dims]
    values = draws.transpose(*sample_dims, *other).to_numpy().astype(float)
    values = values.reshape(-1, *values.shape[2:])
    if np.isnan(values).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN parameters stay NaN
            mean = np.nanmean(values, axis=0)
            low, high = np.nanquantile(values, [tail, 1.0 - tail], axis=0)
    else:
        mean = values.mean(axis=0)
        low, high = np.quantile(values, [tail, 1.0 - tail], axis=0)
    coords = {
        name: coord for name, coord in draws.coords.items() if not set(coord.dims) & {*sample_dims}
    }
    return xr.DataArray(
        np.stack([mean, low, high], axis=-1),
        dims=(*other, "statistic"),
        coords={**coords, "statistic": STATISTICS},
        name=draws.name,
    )


def point_summary(point: xr.DataArray) -> xr.DataArray:
    """Like :func:`interval_summary` for a single draw: mean = the point, bounds NaN."""
    value = point.isel(chain=0, draw=0, drop=True)
    nan = xr.full_like(value, np.nan, dtype=float)
    out = xr.concat([value.astype(float), nan, nan], dim="statistic")
    return out.assign_coords(statistic=STATISTICS).transpose(..., "statistic")


def make_provenance(**settings: Any) -> dict[str, Any]:
    """Root attributes of a result: versions, settings and their ``id`` hash."""
    import arviz
    import pymc

    from crowdbayes import __version__

    attrs: dict[str, Any] = {
        "crowdbayes_version": __version__,
        "pymc_version": pymc.__version__,
        "arviz_version": arviz.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "ci_prob": CI_PROB,
    }
    for key, value in settings.items():
        attrs[key] = json.dumps(value) if isinstance(value, dict | list) else value
    attrs = {k: ("None" if v is None else v) for k, v in attrs.items()}
    attrs["id"] = provenance_id(attrs)
    return attrs
