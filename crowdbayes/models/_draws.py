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

__all__ = ["DrawEvaluator"]


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
