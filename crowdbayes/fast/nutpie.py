"""Compile a PyMC model for nutpie with less setup time: same sampler, same log-density.

``nutpie.compile_pymc_model`` turns PyTensor's numba function for the log-density and its
gradient into C callbacks, compiled afresh for every fit: the data are constants of the graph,
so neither PyTensor's disk cache nor numba's can reuse the result for other data. On real
data that compile was most of a fit's setup, far longer than the EM point estimate. Here:

- **The constants are inputs** (:func:`_lift_constants`): the rewritten graph is cloned with
  each constant (label rows, prior concentrations, shapes) replaced by an input, in order of
  first use. PyTensor's cache key of the graph then depends on its structure only (the model,
  its number of categories), not on the data.
- **The callbacks are disk-cached** (:func:`_cached_callbacks`): they are generated from source
  under a key derived from the graph's, and read the constants' addresses and shapes from
  nutpie's ``user_data`` pointer (an int64 array kept alive by the compiled model). A second
  fit of the same model, on any data, loads them from disk instead of compiling.
- **Lean callback bodies**: the gradient is copied and checked with plain loops (nutpie's
  ``out[...] = grad`` and ``np.all(np.isfinite(out))`` pull numba's string-formatting error
  paths into every compile).
- **Cheap module passes on the final libraries** (:func:`_cheap_final_libraries`): LLVM's O3
  module passes would otherwise run over the whole linked log-density, although every kernel it
  links was already optimised in its own (cached) library. PyTensor's graph function and the
  callbacks run numba's O1 pipeline instead: it still removes the dispatcher addresses a call
  leaves in the IR (at O0 they stay, as "dynamic globals", and numba refuses to cache).

The first compile of a model structure (the model and its number of categories) is still
slow; later fits of the same structure, on any data, load the cached callbacks, so their setup
is short. The measured setup times are in ``benchmarks/DESIGN_MEASUREMENTS.md``.

If the graph cannot be lifted (an in-place Op on a constant) or the cached compile fails, the
callbacks are compiled for this data as before. When nutpie's internals differ from what this
module expects, or the model has shared data (``pm.Data``), :func:`compile_model` returns None
and the caller uses nutpie's own compile.
"""

import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numba.extending import intrinsic
from pytensor.graph.basic import Constant
from pytensor.scalar import ScalarType
from pytensor.tensor.type import TensorType

from crowdbayes.fast.codegen import generated_function, source_version

__all__ = ["compile_model", "reused_callbacks"]

#: Libraries whose module passes run at O1: PyTensor's graph function and our two callbacks.
_FINAL_LIBRARIES = (
    "numba_funcified_fgraph",
    "_crowdbayes_logp_callback",
    "_crowdbayes_expand_callback",
)
_PATCH_LOCK = threading.Lock()
_SOURCE_VERSION = source_version(__file__)  # salt of the callbacks' cache keys
#: Callbacks already compiled (or loaded) in this process, by the structure of their lifted
#: graphs: frozen graphs are equal when they apply the same operations to inputs of the same
#: types, whatever the constants' values. A repeated fit of one model structure (simulation-based
#: calibration) takes them without calling numba. The oldest is dropped beyond eight.
_CALLBACKS: dict[tuple[Any, Any], tuple[Any, Any]] = {}
_MAX_CALLBACKS = 8
_MEMO_HITS = Counter[str]()


@contextmanager
def _cheap_final_libraries() -> Iterator[None]:
    """Run the module passes of the final libraries (only) at numba's O1 pipeline."""
    from numba.core import codegen, config

    library_class = codegen.CPUCodeLibrary
    original_final = library_class._optimize_final_module
    original_functions = library_class._optimize_functions
    low = type(config.OPT)(1)  # type: ignore[attr-defined]

    def is_final(library: Any) -> bool:
        return any(name in str(library.name) for name in _FINAL_LIBRARIES)

    def with_low_opt(method: Any) -> Any:
        def run(self: Any, *args: Any) -> Any:
            if not is_final(self):
                return method(self, *args)
            previous = config.OPT  # type: ignore[attr-defined]
            config.OPT = low  # type: ignore[attr-defined]
            try:
                return method(self, *args)
            finally:
                config.OPT = previous  # type: ignore[attr-defined]

        return run

    with _PATCH_LOCK:
        library_class._optimize_final_module = with_low_opt(original_final)  # type: ignore[method-assign]
        library_class._optimize_functions = with_low_opt(original_functions)  # type: ignore[method-assign]
        try:
            yield
        finally:
            library_class._optimize_final_module = original_final  # type: ignore[method-assign]
            library_class._optimize_functions = original_functions  # type: ignore[method-assign]


def _logp_signature() -> Any:
    return numba.types.int64(
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )


def _expand_signature() -> Any:
    return numba.types.int64(
        numba.types.uint64,
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )


def _graph_kernel(jit_fn: Any) -> Any:
    """The numba function of the graph itself, under PyTensor's caching wrapper when it has one.

    PyTensor wraps a cacheable graph function ``f`` as ``wrapper(*args): return f(*args)``.
    Calling the wrapper from a callback compiles it for a star-args signature its disk cache
    never holds, so the graph was machine-code-generated three times (graph, wrapper,
    callback); calling ``f`` directly saves the wrapper's.
    """
    inner = getattr(jit_fn, "py_func", None)
    inner = getattr(inner, "__globals__", {}).get("jitable_func")
    return inner if hasattr(inner, "py_func") else jit_fn


@intrinsic
def _as_pointer(typingctx: Any, address: Any) -> Any:  # pragma: no cover - compiled
    """A memory address (int64) as a void pointer, for ``numba.carray``."""
    from numba.core import cgutils

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return numba.types.voidptr(address), codegen


@dataclass(frozen=True)
class _Lifted:
    """A graph function whose constants are inputs, read through ``user_data`` by its callback."""

    fgraph: Any
    values: list[np.ndarray]  # the constants, in input order after the point

    def words(self) -> list[int]:
        # per constant: its address, then its shape (arrays only)
        out: list[int] = []
        for value, var in zip(self.values, self.fgraph.inputs[1:], strict=True):
            out.append(int(value.ctypes.data))
            if isinstance(var.type, TensorType) and var.type.ndim > 0:
                out.extend(int(n) for n in value.shape)
        return out

    def unpack_source(self, first_word: int) -> tuple[list[str], list[str]]:
        """Source lines that read the constants from ``words``, and their names."""
        lines, names, w = [], [], first_word
        for i, var in enumerate(self.fgraph.inputs[1:]):
            dtype = f"np.{np.dtype(var.type.dtype).type.__name__}"
            name = f"c{i}"
            pointer = f"_as_pointer(words[{w}])"
            if isinstance(var.type, TensorType) and var.type.ndim > 0:
                shape = ", ".join(f"words[{w + 1 + d}]" for d in range(var.type.ndim))
                lines.append(f"    {name} = numba.carray({pointer}, ({shape},), {dtype})")
                w += 1 + var.type.ndim
            elif isinstance(var.type, TensorType):
                lines.append(f"    {name} = numba.carray({pointer}, (1,), {dtype}).reshape(())")
                w += 1
            else:
                lines.append(f"    {name} = numba.carray({pointer}, (1,), {dtype})[0]")
                w += 1
            names.append(name)
        return lines, names


def _lift_constants(function: Any) -> _Lifted | None:
    """The rewritten graph of a compiled PyTensor function with its constants made inputs.

    PyTensor's numba cache key of a graph hashes its constants, here the data (label rows,
    prior concentrations, shapes), so every new dataset compiled afresh. With the constants as
    inputs the key depends on the graph's structure only, and the compiled graph and callbacks
    are reused from the disk cache for any data of the same model and number of categories.
    """
    fgraph = function.maker.fgraph.clone()
    for i in reversed(range(1, len(fgraph.inputs))):
        # a shared variable (a PyMC dim length): at its value, a constant of this compile
        shared = fgraph.inputs[i]
        if fgraph.clients[shared]:
            fixed = pt.constant(shared.get_value(), dtype=shared.type.dtype)
            fgraph.replace(shared, fixed, import_missing=True)
        fgraph.remove_input(i)
    destroyed = {
        node.inputs[i]
        for node in fgraph.apply_nodes
        for inputs in (getattr(node.op, "destroy_map", None) or {}).values()
        for i in inputs
    }
    if len(fgraph.inputs) != 1 or any(isinstance(v, Constant) for v in destroyed):
        return None  # an in-place Op would overwrite a constant turned input
    # in order of first use, so the same graph structure gets the same inputs (and cache key)
    constants: dict[Any, None] = {}  # insertion-ordered set
    outputs = set(fgraph.outputs)
    for node in fgraph.toposort():
        for v in node.inputs:
            if (
                isinstance(v, Constant)
                and isinstance(v.type, TensorType | ScalarType)
                and v not in outputs
            ):
                constants.setdefault(v)
    values = []
    for constant in constants:
        # a copy: the constant may share memory with the caller's data (an AnnotationData's
        # arrays), which must stay as they were, writeable (numba types read-only arrays apart)
        value = np.array(constant.data, dtype=constant.type.dtype, order="C", copy=True)
        value.flags.writeable = False
        new = constant.type()
        fgraph.add_input(new)
        fgraph.replace(constant, new, import_missing=True)
        values.append(value if value.ndim else value.reshape(1))
    return _Lifted(fgraph=fgraph, values=values)


_LOGP_TEMPLATE = """
def {name}(dim, x_, out_, logp_, user_data_):
    words = numba.carray(user_data_, ({n_words},), np.int64)
    if dim != words[0]:
        return -1
{unpack}
    try:
        x = numba.carray(x_, (dim,))
        logp_value, grad = graph_fn({args})
        logp_[0] = logp_value
        finite = True
        for i in range(dim):
            g = grad[i]
            out_[i] = g
            if not np.isfinite(g):
                finite = False
    except Exception:  # noqa: BLE001
        return 1
    if not finite:
        return 3
    if not np.isfinite(logp_value):
        return 4
    return 0
"""

_EXPAND_TEMPLATE = """
def {name}(dim, expanded, x_, out_, user_data_):
    words = numba.carray(user_data_, ({n_words},), np.int64)
    if dim != words[0] or expanded != words[1]:
        return -1
{unpack}
    try:
        x = numba.carray(x_, (dim,))
        (values,) = graph_fn({args})
        for i in range(expanded):
            out_[i] = values[i]
    except Exception:  # noqa: BLE001
        return -2
    return 0
"""


def _callback(
    template: str, graph_fn: Any, n_words: int, unpack: list[str], args: list[str], key: str | None
) -> Any:
    """A C callback generated from ``template`` calling ``graph_fn``; disk-cached under ``key``.

    Both callbacks follow nutpie's contract (logp: 0 ok, 1 error, 3 non-finite gradient,
    4 non-finite log-density, -1 wrong dimension; expand: 0 ok, -2 error, -1 wrong dimension)
    and copy and check the gradient with plain loops.
    """
    logp = template is _LOGP_TEMPLATE
    name = "_crowdbayes_logp_callback" if logp else "_crowdbayes_expand_callback"
    call = ["x", *args]
    if len(call) > 30:
        # Python compiles a call of more than 30 arguments to an op-code numba refuses
        # (list_to_tuple): pass one tuple, concatenated from short ones, instead
        chunks = ["(" + ", ".join(call[i : i + 16]) + ",)" for i in range(0, len(call), 16)]
        call = ["*(" + " + ".join(chunks) + ")"]
    src = template.format(
        name=name, n_words=n_words, unpack="\n".join(unpack), args=", ".join(call)
    )
    py_func = generated_function(
        src,
        name,
        {
            "__name__": __name__,
            "numba": numba,
            "np": np,
            "_as_pointer": _as_pointer,
            "graph_fn": graph_fn,
        },
        salt=None if key is None else f"callback|{key}|{_SOURCE_VERSION}",
    )
    signature = _logp_signature() if logp else _expand_signature()
    with _cheap_final_libraries(), warnings.catch_warnings():
        # an uncached callback (the per-data one; a cached one, should it ever happen) still
        # works, compiled each fit; tests/test_nutpie.py checks the second compile is a cache hit
        warnings.filterwarnings(
            "ignore", message="Cannot cache compiled function", category=numba.NumbaWarning
        )
        return numba.cfunc(signature, cache=key is not None)(py_func)


def _cached_callbacks(
    n_dim: int, n_expanded: int, logp: _Lifted, expand: _Lifted
) -> tuple[Any, Any, np.ndarray]:
    """C callbacks reading the constants through ``user_data``, and that array.

    Taken from :data:`_CALLBACKS` when this process has compiled the same structure, else
    compiled (or loaded from numba's disk cache) and kept there.
    """
    from pytensor.link.numba.dispatch.basic import numba_funcify_ensure_cache

    header = [n_dim, n_expanded]
    logp_words = logp.words()
    words = np.array([*header, *logp_words, *expand.words()], dtype=np.int64)
    key = (logp.fgraph.freeze(), expand.fgraph.freeze())
    if key in _CALLBACKS:
        _MEMO_HITS["callbacks"] += 1
        return (*_CALLBACKS[key], words)
    callbacks = []
    for lifted, template, first in (
        (logp, _LOGP_TEMPLATE, len(header)),
        (expand, _EXPAND_TEMPLATE, len(header) + len(logp_words)),
    ):
        graph_fn, graph_key = numba_funcify_ensure_cache(lifted.fgraph)
        if graph_key is None:
            raise TypeError("the graph has an Op without a numba cache key")
        lines, names = lifted.unpack_source(first)
        callbacks.append(_callback(template, graph_fn, len(words), lines, names, graph_key))
    if len(_CALLBACKS) >= _MAX_CALLBACKS:
        del _CALLBACKS[next(iter(_CALLBACKS))]  # the oldest
    _CALLBACKS[key] = (callbacks[0], callbacks[1])
    return callbacks[0], callbacks[1], words


def reused_callbacks() -> int:
    """How many compiles in this process took the callbacks of an earlier one of the same structure.

    Examples
    --------
    >>> import pymc as pm
    >>> def model(y):
    ...     with pm.Model() as m:
    ...         _ = pm.Normal("y", mu=pm.Normal("mu"), observed=y)
    ...     return m
    >>> _ = compile_model(model(np.array([0.5, -0.2])))
    >>> before = reused_callbacks()
    >>> _ = compile_model(model(np.array([1.5, 0.3])))  # other data, same structure
    >>> reused_callbacks() - before
    1
    """
    return _MEMO_HITS["callbacks"]


def _callbacks_for_this_data(
    n_dim: int, n_expanded: int, logp_fn: Any, expand_fn: Any
) -> tuple[Any, Any, np.ndarray]:
    """Callbacks of the graphs with their constants inside, compiled for this data only."""
    words = np.array([n_dim, n_expanded], dtype=np.int64)
    logp = _callback(_LOGP_TEMPLATE, _graph_kernel(logp_fn), len(words), [], [], None)
    expand = _callback(_EXPAND_TEMPLATE, _graph_kernel(expand_fn), len(words), [], [], None)
    return logp, expand, words


def compile_model(model: pm.Model, initvals: dict[str, np.ndarray] | None = None) -> Any | None:
    """Compile ``model`` for ``nutpie.sample`` (numba backend), or None to use nutpie's own.

    Parameters
    ----------
    model : pymc.Model
    initvals : dict, optional
        Starting values (constrained space); each chain is jittered around them, as with
        ``nutpie.compile_pymc_model(initial_points=...)``.

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel or None

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model() as m:
    ...     _ = pm.Normal("x")
    >>> compiled = compile_model(m)
    >>> compiled.n_dim
    1
    """
    try:
        from nutpie.compile_pymc import (
            CompiledPyMCModel,
            _make_functions,
            _prepare_dims_and_coords,
            _wrap_with_lock,
        )
        from pymc.initial_point import make_initial_point_fn
    except ImportError:
        return None
    try:
        initial_point_fn = _wrap_with_lock(
            make_initial_point_fn(
                model=model,
                overrides=initvals,
                default_strategy="support_point",
                jitter_rvs=set(model.free_RVs),
                return_transformed=True,
            )
        )
        (
            n_dim,
            n_expanded,
            logp_fn_pt,
            expand_fn_pt,
            initial_point_func,
            shape_info,
            reparameterized_names,
        ) = _make_functions(
            model,
            mode="NUMBA",
            compute_grad=True,
            join_expanded=True,
            pymc_initial_point_fn=initial_point_fn,
        )
        functions_shared = {*logp_fn_pt.get_shared(), *expand_fn_pt.get_shared()}
        if functions_shared - set(model.dim_lengths.values()):
            return None  # shared data (pm.Data)
        shared_data: dict[str, np.ndarray] = {}
        lifted_logp, lifted_expand = _lift_constants(logp_fn_pt), _lift_constants(expand_fn_pt)
        logp = expand = None
        if lifted_logp is not None and lifted_expand is not None:
            try:
                logp, expand, user_data = _cached_callbacks(
                    n_dim, n_expanded, lifted_logp, lifted_expand
                )
            except Exception as err:  # noqa: BLE001 - any failure: the uncached callbacks
                warnings.warn(
                    f"crowdbayes' cached nutpie callbacks failed ({type(err).__name__}: {err}); "
                    "compiling them for this data instead (slower setup, same sampler)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                # the callbacks read these arrays through user_data: keep them alive with it
                shared_data = {
                    f"_constant_{i}": v
                    for i, v in enumerate([*lifted_logp.values, *lifted_expand.values])
                }
        if logp is None:
            if functions_shared:
                return None  # these callbacks pass the graph the point only
            logp, expand, user_data = _callbacks_for_this_data(
                n_dim, n_expanded, logp_fn_pt.vm.jit_fn, expand_fn_pt.vm.jit_fn
            )
        dims, coords = _prepare_dims_and_coords(model, shape_info, reparameterized_names)
        return CompiledPyMCModel(
            _n_dim=n_dim,
            dims=dims,
            _coords=coords,
            _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
            compiled_logp_func=logp,
            compiled_expand_func=expand,
            initial_point_func=initial_point_func,
            shared_data=shared_data,
            shared_var_keys={},
            user_data=user_data,
            n_expanded=n_expanded,
            shape_info=shape_info,
            logp_func=logp_fn_pt,
            expand_func=expand_fn_pt,
            reparameterized_names=reparameterized_names,
        )
    except (TypeError, AttributeError) as err:
        # nutpie's private helpers changed signature or fields: use its public compile (an
        # error about the model itself, such as bad initvals, propagates unchanged)
        warnings.warn(
            f"crowdbayes' lean nutpie compile failed ({type(err).__name__}: {err}); "
            "using nutpie.compile_pymc_model (slower to compile, same sampler)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
