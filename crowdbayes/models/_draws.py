"""Evaluate a model's named expressions on posterior draws of its free variables.

The estimators need, per posterior draw, quantities the sampler does not store (the per-item
joint of each true category, the distribution of every label, item error rates). They are
compiled once as functions of the free random variables' constrained values and looped over
draws in chunks, so memory stays bounded whatever the number of draws.
"""

from collections.abc import Iterator, Sequence

import numpy as np
import pymc as pm
import pytensor
import xarray as xr
from pytensor.graph.replace import graph_replace

from crowdbayes.data import CompressedAnnotations
from crowdbayes.models._kernels import label_joint_draws, label_posterior_draws

__all__ = ["ConfusionJointEvaluator", "DrawEvaluator"]


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
    (:func:`~crowdbayes.models._kernels.label_joint_draws`) instead of compiling the model's
    expression as a PyTensor function per fit (about 2 s on new data) and calling it per draw.
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

        What :meth:`iterate` followed by :func:`~crowdbayes.models._kernels.normalise_joint`
        gives, in one pass per sample over several threads
        (:func:`~crowdbayes.models._kernels.label_posterior_draws`).
        """
        for sl, log_prevalence, log_confusion in self._chunks(posterior, max_elements):
            probs, item_ll = label_posterior_draws(log_prevalence, log_confusion, self.rows, gold)
            yield sl, probs, item_ll
