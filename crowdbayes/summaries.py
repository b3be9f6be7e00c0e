"""Posterior summaries of a fit: label probabilities, tables with intervals, log-likelihood.

Given the draws of a model's free variables (NUTS, ADVI, or the mode as a single draw), the
summaries evaluate, per draw, each item's joint with its true category (the model's named
variable ``label_joint``) and average its normalisation into the posterior label probabilities;
the per-item log-likelihood (for LOO) is the joint's log-sum-exp, and the item-difficulty models'
``item_error_rate`` weighted by the label posterior gives each item's difficulty. For the
confusion-matrix models the joint is computed from the stored ``prevalence`` and ``confusion``
draws by a kernel (:mod:`crowdbayes.fast.draws`), which equals the model's expression and needs
nothing compiled per data set; for the others the expression is compiled once per fit
(:class:`DrawEvaluator`). Draws are processed in chunks, so memory stays bounded.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import xarray as xr
from pytensor.graph.replace import graph_replace

from crowdbayes.data import AnnotationData, CompressedAnnotations
from crowdbayes.fast.draws import label_joint_draws, label_posterior_draws, normalise_joint
from crowdbayes.inference import c_backend
from crowdbayes.results import interval_summary, point_summary

__all__ = [
    "ITEM_ERROR_RATE",
    "LABEL_JOINT",
    "MAX_LOG_LIKELIHOOD_ELEMENTS",
    "ConfusionJointEvaluator",
    "DrawEvaluator",
    "data_groups",
    "item_log_likelihood",
    "point_dataset",
    "posterior_summaries",
    "summary_dataset",
    "with_annotator_accuracy",
]

#: Named (not stored) model variable: per item and true category,
#: log prevalence + log p(y_i | z_i = k) (every model has it; see crowdbayes.models._shared).
LABEL_JOINT = "label_joint"
#: Named model variable of the item-difficulty models: P(a typical annotator mislabels i | z_i = k).
ITEM_ERROR_RATE = "item_error_rate"
#: Tag of ``label_joint`` in models whose labels follow a per-annotator confusion matrix
#: (``observe_labels`` with ``confusion_rows``): their joint is computed from the stored
#: ``prevalence`` and ``confusion`` draws.
CONFUSION_ROWS_TAG = "from_confusion_rows"
#: Store the per-item log-likelihood when draws x items is at most this.
MAX_LOG_LIKELIHOOD_ELEMENTS = 20_000_000


class DrawEvaluator:
    """Compile named model variables as functions of the free variables, evaluate them per draw.

    Parameters
    ----------
    model : pymc.Model
    names : sequence of str
        Named variables of ``model`` (deterministic or not) to evaluate.

    Examples
    --------
    >>> import xarray as xr
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> from crowdbayes.models import build_dawid_skene
    >>> data = simulate_dawid_skene(n_items=5, n_annotators=3, random_seed=0).data
    >>> model = build_dawid_skene(data)
    >>> ev = DrawEvaluator(model, ["label_joint"])
    >>> k = data.n_categories
    >>> draws = xr.Dataset({
    ...     "prevalence": (("chain", "draw", "category"), np.full((1, 2, k), 1 / k)),
    ...     "confusion": (("chain", "draw", "annotator", "true_category", "category"),
    ...                   np.full((1, 2, 3, k, k), 1 / k))})
    >>> [out.shape for out in next(ev.iterate(draws))[1]]
    [(2, 5, 3)]
    """

    def __init__(self, model: pm.Model, names: Sequence[str]) -> None:
        self.names = list(names)
        self.free_names = [rv.name for rv in model.free_RVs]
        placeholders = [rv.type() for rv in model.free_RVs]
        outputs = graph_replace(
            [model[name] for name in self.names],
            dict(zip(model.free_RVs, placeholders, strict=True)),
            strict=False,
        )
        self._fn = pytensor.function(placeholders, outputs, on_unused_input="ignore")
        self._dims = {
            rv.name: tuple(model.named_vars_to_dims.get(rv.name, ()) or ()) for rv in model.free_RVs
        }

    def _flat(self, posterior: xr.Dataset) -> list[np.ndarray]:
        values = []
        for name in self.free_names:
            var = posterior[name]
            arr = var.transpose("chain", "draw", *self._dims[name]).to_numpy()
            values.append(arr.reshape(-1, *arr.shape[2:]))
        return values

    def iterate(
        self,
        posterior: xr.Dataset,
        *,
        max_elements: int = 20_000_000,
        draws: np.ndarray | None = None,
    ) -> Iterator[tuple[slice, list[np.ndarray]]]:
        """Yield ``(sample slice, [array per name with a leading sample axis])`` in chunks.

        Samples are the chain x draw pairs flattened chain-major; ``draws`` picks a subset of
        them (flat indices) instead of all.
        """
        flat = self._flat(posterior)
        n_samples = flat[0].shape[0] if flat else 0
        picked = np.arange(n_samples) if draws is None else np.asarray(draws)
        first = self._fn(*[v[picked[0]] for v in flat])
        per_sample = max(sum(int(np.size(o)) for o in first), 1)
        chunk = max(1, min(len(picked), max_elements // per_sample))
        for start in range(0, len(picked), chunk):
            stop = min(start + chunk, len(picked))
            results: list[list[np.ndarray]] = [[] for _ in self.names]
            for s in picked[start:stop]:
                outs = self._fn(*[v[s] for v in flat])
                for store, out in zip(results, outs, strict=True):
                    store.append(np.asarray(out))
            yield slice(start, stop), [np.stack(r) for r in results]


class ConfusionJointEvaluator:
    """``label_joint`` of a confusion-matrix model from its stored draws, nothing to compile.

    In every model whose labels depend on the true category only through a per-annotator
    confusion matrix (Dawid-Skene, its hierarchical form, one-coin, class-conditional, MACE), the
    joint is :math:`\\log \\pi_k + \\sum_r n_r \\log \\theta_{a_r, k, y_r}`, and ``prevalence``
    and ``confusion`` are in the posterior. This evaluates it from them with one compiled kernel
    (:func:`~crowdbayes.fast.draws.label_joint_draws`) instead of compiling the model's
    expression as a PyTensor function for every new data set and calling it per draw.
    Same interface as :class:`DrawEvaluator` with ``names=["label_joint"]``.

    Parameters
    ----------
    rows : CompressedAnnotations

    Examples
    --------
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> data = simulate_dawid_skene(n_items=5, n_annotators=3, random_seed=0).data
    >>> k = data.n_categories
    >>> draws = xr.Dataset({
    ...     "prevalence": (("chain", "draw", "category"), np.full((1, 2, k), 1 / k)),
    ...     "confusion": (("chain", "draw", "annotator", "true_category", "category"),
    ...                   np.full((1, 2, 3, k, k), 1 / k))})
    >>> [out.shape for out in next(ConfusionJointEvaluator(data.compressed).iterate(draws))[1]]
    [(2, 5, 3)]
    """

    def __init__(self, rows: CompressedAnnotations) -> None:
        self.rows = rows

    @staticmethod
    def applies(posterior: xr.Dataset) -> bool:
        """Whether the stored draws determine the joint exactly (no probability underflowed to 0).

        A confusion entry stored as 0 may be a log-probability below -745 in the model; its log
        would then be -inf here. Such fits use :class:`DrawEvaluator`.
        """
        return all(
            name in posterior and bool(np.all(posterior[name].to_numpy() > 0))
            for name in ("prevalence", "confusion")
        )

    def _chunks(
        self, posterior: xr.Dataset, max_elements: int
    ) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        # (sample slice, log prevalence, log confusion) in chunks of samples, chain-major
        prevalence = posterior["prevalence"].transpose("chain", "draw", "category").to_numpy()
        confusion = posterior["confusion"].transpose(
            "chain", "draw", "annotator", "true_category", "category"
        )
        confusion_values = confusion.to_numpy()
        n_samples = prevalence.shape[0] * prevalence.shape[1]
        prevalence = prevalence.reshape(n_samples, -1)
        confusion_values = confusion_values.reshape(n_samples, *confusion_values.shape[2:])
        n_items = len(self.rows.item_starts)
        per_sample = max(n_items * prevalence.shape[1], 1)
        chunk = max(1, min(n_samples, max_elements // per_sample))
        for start in range(0, n_samples, chunk):
            sl = slice(start, min(start + chunk, n_samples))
            yield sl, np.log(prevalence[sl]), np.log(confusion_values[sl])

    def iterate(
        self, posterior: xr.Dataset, *, max_elements: int = 20_000_000
    ) -> Iterator[tuple[slice, list[np.ndarray]]]:
        """Yield ``(sample slice, [label_joint of those samples])`` in chunks, chain-major."""
        for sl, log_prevalence, log_confusion in self._chunks(posterior, max_elements):
            yield sl, [label_joint_draws(log_prevalence, log_confusion, self.rows)]

    def iterate_label_posterior(
        self, posterior: xr.Dataset, gold: np.ndarray, *, max_elements: int = 20_000_000
    ) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """Yield ``(sample slice, label probabilities, item log-likelihoods)`` in chunks.

        What :meth:`iterate` followed by :func:`~crowdbayes.fast.draws.normalise_joint`
        gives, in one pass per sample over several threads
        (:func:`~crowdbayes.fast.draws.label_posterior_draws`).
        """
        for sl, log_prevalence, log_confusion in self._chunks(posterior, max_elements):
            probs, item_ll = label_posterior_draws(log_prevalence, log_confusion, self.rows, gold)
            yield sl, probs, item_ll


def summary_dataset(
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


def data_groups(data: AnnotationData) -> dict[str, xr.DataTree]:
    """The fit's ``observed_data`` (each label) and ``constant_data`` (indices, gold) groups.

    Examples
    --------
    >>> import pandas as pd
    >>> from crowdbayes.data import encode_annotations
    >>> data = encode_annotations(pd.DataFrame({"item": [1, 1, 2], "annotator": list("aba"),
    ...                                         "label": ["x", "y", "y"]}))
    >>> groups = data_groups(data)
    >>> groups["observed_data"]["label"].to_numpy().tolist()
    ['x', 'y', 'y']
    >>> sorted(groups["constant_data"].data_vars)
    ['annotator_index', 'gold_index', 'item_index']
    """
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


def point_dataset(model: pm.Model, point: Mapping[str, np.ndarray]) -> xr.Dataset:
    """A point (the mode) as a posterior of one chain and one draw.

    Holds the model's free variables and deterministics, with its dims and coordinates.

    Examples
    --------
    >>> with pm.Model(coords={"k": ["a", "b"]}) as model:
    ...     p = pm.Dirichlet("p", np.ones(2), dims="k")
    >>> point_dataset(model, {"p": np.array([0.3, 0.7])})["p"].sizes
    Frozen({'chain': 1, 'draw': 1, 'k': 2})
    """
    names = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
    variables = {}
    for name in names:
        dims = tuple(model.named_vars_to_dims.get(name, ()))
        value = np.asarray(point[name], dtype=float)[None, None]
        variables[name] = (("chain", "draw", *dims), value)
    coords = {k: list(v) for k, v in model.coords.items() if v is not None}
    return xr.Dataset(variables, coords={"chain": [0], "draw": [0], **coords})


def with_annotator_accuracy(posterior: xr.Dataset) -> xr.Dataset:
    """Add ``annotator_accuracy``, each annotator's chance of a correct label, per draw.

    It is :math:`\\sum_k \\pi_k \\theta_{a, k, k}` of the prevalence and confusion draws.

    Examples
    --------
    >>> conf = np.array([[[0.9, 0.1], [0.2, 0.8]]])[None, None]  # one annotator, one draw
    >>> post = xr.Dataset(
    ...     {"prevalence": (("chain", "draw", "category"), np.full((1, 1, 2), 0.5)),
    ...      "confusion": (("chain", "draw", "annotator", "true_category", "category"), conf)},
    ...     coords={"annotator": ["a"]})
    >>> with_annotator_accuracy(post)["annotator_accuracy"].round(3).to_numpy().tolist()
    [[[0.85]]]
    """
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


def item_log_likelihood(posterior: xr.Dataset, model: pm.Model) -> np.ndarray:
    """Each item's log-likelihood on every draw: ``pm.compute_log_likelihood`` of ``labels``.

    Compiled with the C backend (:func:`~crowdbayes.inference.c_backend`), which caches compiled
    operations across data sets.

    Returns
    -------
    numpy.ndarray, shape (chain, draw, item)

    Examples
    --------
    >>> from crowdbayes.models import DawidSkene
    >>> from crowdbayes.simulate import simulate_dawid_skene
    >>> sim = simulate_dawid_skene(n_items=10, n_annotators=3, random_seed=0)
    >>> fit = DawidSkene().fit(sim.annotations, method="map", random_seed=0)
    >>> item_log_likelihood(fit.datatree_.posterior.to_dataset(), fit.model_).shape
    (1, 1, 10)
    """
    free = [rv.name for rv in model.free_RVs]
    tree = xr.DataTree.from_dict({"posterior": posterior[free]})
    with c_backend():
        values = pm.compute_log_likelihood(
            tree, model=model, var_names=["labels"], extend_inferencedata=False, progressbar=False
        )
    return np.asarray(values["labels"].transpose("chain", "draw", ...).to_numpy())


def posterior_summaries(
    posterior: xr.Dataset,
    data: AnnotationData,
    model: pm.Model,
    *,
    point: bool,
    log_likelihood_model: pm.Model | None = None,
) -> tuple[xr.Dataset, xr.DataArray | None, tuple[float, Any]]:
    """Label probabilities (averaged over draws, in chunks), tables, log-likelihood, difficulty.

    The per-item joint :math:`\\log p(z_i = k, y_i)` is evaluated on every draw from the model's
    ``label_joint`` expression. Also returns how far apart the chains' label probabilities are:
    the largest difference between two chains' mean P(category) for any item, and that item.
    With ``log_likelihood_model``, the per-item log-likelihood is that model's instead
    (:func:`item_log_likelihood` on the same draws of its free variables). For the
    confusion-matrix models (``label_joint`` tagged ``CONFUSION_ROWS_TAG``) the joint is computed
    from the stored ``prevalence`` and ``confusion`` draws (:class:`ConfusionJointEvaluator`),
    equal to the model's expression.
    """
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    n_samples = n_chains * n_draws
    names = [LABEL_JOINT]
    has_difficulty = ITEM_ERROR_RATE in model.named_vars
    if has_difficulty:
        names.append(ITEM_ERROR_RATE)
    evaluator: DrawEvaluator | ConfusionJointEvaluator
    from_confusion = getattr(model[LABEL_JOINT].tag, CONFUSION_ROWS_TAG, False)
    if from_confusion and not has_difficulty and ConfusionJointEvaluator.applies(posterior):
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
        item_ll[:] = item_log_likelihood(posterior, log_likelihood_model).reshape(n_samples, -1)
    probabilities = chain_sum.sum(axis=0) / n_samples
    spread: tuple[float, Any] = (float("nan"), None)
    if n_chains > 1:
        chain_probs = chain_sum / n_draws
        by_item = (chain_probs.max(axis=0) - chain_probs.min(axis=0)).max(axis=1)
        worst = int(by_item.argmax())
        spread = (float(by_item[worst]), data.items[worst])
    summary = summary_dataset(data, probabilities, probabilities.argmax(axis=1))
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
