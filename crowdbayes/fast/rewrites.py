"""The one seam of the fast path: a numba-only graph rewrite of the confusion-matrix likelihood.

The models state their likelihood as a :class:`~crowdbayes.models._shared.ConfusionMixture`
node (a PyTensor graph every backend can run) and PyMC sums it over items and differentiates
the sum (a :class:`~crowdbayes.models._shared.ConfusionMixturePullback` node, fed a cotangent
that is the same for every item). Under the numba backend only (the rewrite is registered
with the ``numba`` tag, so the C and JAX backends keep the reference graph),
:class:`FuseConfusionMixture` replaces that sum and that gradient by the three outputs of one
:class:`FusedConfusionMixture` node, which runs
:func:`crowdbayes.fast.kernels.marginal_log_likelihood`: the value and both gradients in one
pass over the label rows. Where the pattern is not there (per-item values, as
for ``pm.compute_log_likelihood``; data that are not constants; a cotangent that varies by item)
the reference graph runs unchanged.
"""

from typing import Any, cast

import numpy as np
import pytensor.scalar as ps
import pytensor.tensor as pt
from pytensor.compile import optdb
from pytensor.graph.basic import Apply, Constant, Variable
from pytensor.graph.features import ReplaceValidate
from pytensor.graph.fg import FunctionGraph
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.link.numba.dispatch.basic import register_funcify_and_cache_key
from pytensor.tensor.basic import Alloc
from pytensor.tensor.elemwise import CAReduce

from crowdbayes.data import CompressedAnnotations
from crowdbayes.fast.codegen import source_version
from crowdbayes.fast.kernels import (
    _marginal_kernel_for,
    marginal_log_likelihood,
    marginal_row_inputs,
)
from crowdbayes.models._shared import ConfusionMixture, ConfusionMixturePullback

__all__ = ["FuseConfusionMixture", "FusedConfusionMixture"]

_SOURCE_VERSION = source_version(__file__)


class FusedConfusionMixture(Op):
    """Sum over items of :class:`~crowdbayes.models._shared.ConfusionMixture` and its gradient.

    Inputs: ``log_prevalence``, ``log_confusion``, then the row arrays of
    :func:`~crowdbayes.fast.kernels.marginal_row_inputs` (``annotator``, ``label``, ``count``,
    ``item_starts``, ``gold``, ``cell``, ``unit``). Outputs: the total log-likelihood and its
    gradients with respect to the two log arrays. Only :class:`FuseConfusionMixture` creates it,
    after the gradient graph is built, so it has no gradient of its own.
    """

    __props__ = ("n_categories",)

    def __init__(self, n_categories: int):
        self.n_categories = int(n_categories)

    def make_node(self, *inputs: Any) -> Apply:
        log_prevalence, log_confusion, *rows = (pt.as_tensor_variable(x) for x in inputs)
        outputs = [pt.scalar(dtype="float64"), log_prevalence.type(), log_confusion.type()]
        return Apply(self, [log_prevalence, log_confusion, *rows], outputs)

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        for store, value in zip(outputs, marginal_log_likelihood(*inputs), strict=True):
            store[0] = value

    def infer_shape(self, node: Apply, shapes: list[Any]) -> list[Any]:
        return [(), shapes[0], shapes[1]]


@register_funcify_and_cache_key(FusedConfusionMixture)
def _numba_fused(op: Op, node: Apply | None = None, **kwargs: Any) -> tuple[Any, str]:
    k = cast(FusedConfusionMixture, op).n_categories
    return _marginal_kernel_for(k), f"crowdbayes.FusedConfusionMixture.{_SOURCE_VERSION:x}.k={k}"


def _uniform_value(cotangent: Variable) -> Variable | None:
    """The scalar a cotangent repeats for every item, or None when it may vary by item."""
    if isinstance(cotangent, Constant):
        values = np.asarray(cotangent.data)
        if values.size and np.all(values == values.flat[0]):
            return pt.constant(float(values.flat[0]))
        return None
    owner = cotangent.owner
    if owner is not None and isinstance(owner.op, Alloc) and owner.inputs[0].ndim == 0:
        return cast(Variable, owner.inputs[0])
    return None


def _row_constants(inputs: list[Variable], n_categories: int) -> list[np.ndarray] | None:
    """The kernel's row arrays from a ConfusionMixture's constant data inputs, or None."""
    annotator, label, item, gold = inputs[2:]
    if not all(isinstance(v, Constant) for v in (annotator, label, item, gold)):
        return None
    gold_values = np.asarray(cast(Constant, gold).data, dtype=np.int64)
    key = np.stack(
        [np.asarray(cast(Constant, v).data, dtype=np.int64) for v in (item, annotator, label)],
        axis=1,
    )
    unique, count = np.unique(key, axis=0, return_counts=True)  # sorted by item
    rows = CompressedAnnotations(
        item_index=unique[:, 0].copy(),
        annotator_index=unique[:, 1].copy(),
        label_index=unique[:, 2].copy(),
        count=count,
        n_items=len(gold_values),
    )
    if len(np.unique(rows.item_index)) != rows.n_items:
        return None  # an item without rows: the kernel's offsets assume every item has one
    return marginal_row_inputs(rows, n_categories, gold_values)


def _is_total(client: Apply) -> bool:
    op = client.op
    if not (isinstance(op, CAReduce) and isinstance(op.scalar_op, ps.Add)):
        return False  # (a graph output's client is an Apply with no outputs)
    return bool(client.outputs[0].type == pt.dscalar().type)


class FuseConfusionMixture(GraphRewriter):
    """Replace a ConfusionMixture's total and its uniform-cotangent gradient by the fused kernel."""

    def add_requirements(self, fgraph: FunctionGraph) -> None:
        fgraph.attach_feature(ReplaceValidate())

    def apply(self, fgraph: FunctionGraph) -> None:
        # Group the mixtures and pullbacks by their inputs: a gradient-only graph (as
        # ``model.compile_dlogp()``) holds the pullback without its mixture.
        groups: dict[tuple[int, ...], list[Apply]] = {}
        for node in fgraph.toposort():
            if isinstance(node.op, ConfusionMixture | ConfusionMixturePullback):
                groups.setdefault(tuple(id(v) for v in node.inputs[:6]), []).append(node)
        for nodes in groups.values():
            inputs = nodes[0].inputs[:6]
            k = inputs[0].type.shape[0]
            rows = None if k is None else _row_constants(inputs, k)
            if rows is None:
                continue
            fused = FusedConfusionMixture(cast(int, k))(*inputs[:2], *rows)
            total, grad_prevalence, grad_confusion = cast(list, fused)
            replacements: list[tuple[Variable, Variable]] = []
            for node in nodes:
                if isinstance(node.op, ConfusionMixture):
                    for client, _ in fgraph.clients[node.outputs[0]]:
                        if isinstance(client, Apply) and _is_total(client):
                            replacements.append((client.outputs[0], total))
                elif (scale := _uniform_value(node.inputs[6])) is not None:
                    replacements.append((node.outputs[0], scale * grad_prevalence))
                    replacements.append((node.outputs[1], scale * grad_confusion))
            if replacements:
                fgraph.replace_all_validate(replacements, reason="fuse_confusion_mixture")


# Between canonicalisation (constants folded) and fusion, in the numba backend only.
optdb.register("crowdbayes_fuse_confusion_mixture", FuseConfusionMixture(), "numba", position=2.5)
