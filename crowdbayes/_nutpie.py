"""Compile a PyMC model for nutpie with less setup time: same sampler, same log-density.

``nutpie.compile_pymc_model`` turns PyTensor's numba function for the log-density and its
gradient into a C callback. In a fresh process most of a crowdbayes fit's setup is that compile,
and two parts of it are avoidable:

- the callback body copies the gradient with ``out[...] = grad`` and checks it with
  ``np.all(np.isfinite(out))``, which pull numba's string-formatting error paths into every
  compile (they are never cached); here the copy and the check are plain loops;
- LLVM's O3 module passes then run over the whole linked log-density: the fused likelihood and
  every PyTensor Op, whose kernels were already optimised (and disk-cached) in their own
  libraries. Here the module passes of the few *final* libraries (PyTensor's function of the
  graph and the two callbacks) run at numba's O0 pipeline; the kernels they link keep their
  own optimisation and the machine code is still generated at the target machine's level.

Measured on Dawid-Skene at 25k labels (2 cores): compile 21-25 s with
``nutpie.compile_pymc_model``, 10-11 s here; sampling time unchanged (``benchmarks/SPEED.md``).

When nutpie's internals differ from what this module expects, or the model has shared data
(``pm.Data``), :func:`compile_model` returns None and the caller uses nutpie's own compile.
"""

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pymc as pm

__all__ = ["compile_model"]

#: Libraries whose module passes run at O0: PyTensor's graph function and our two callbacks.
_FINAL_LIBRARIES = (
    "numba_funcified_fgraph",
    "_crowdbayes_logp_callback",
    "_crowdbayes_expand_callback",
)
_PATCH_LOCK = threading.Lock()


@contextmanager
def _cheap_final_libraries() -> Iterator[None]:
    """Run the module passes of the final libraries (only) at numba's O0 pipeline."""
    from numba.core import codegen, config

    library_class = codegen.CPUCodeLibrary
    original_final = library_class._optimize_final_module
    original_functions = library_class._optimize_functions
    low = type(config.OPT)(0)  # type: ignore[attr-defined]

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


def _callbacks(n_dim: int, n_expanded: int, logp_fn: Any, expand_fn: Any) -> tuple[Any, Any]:
    import numba

    logp_signature = numba.types.int64(
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )
    expand_signature = numba.types.int64(
        numba.types.uint64,
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )

    # Same contract as nutpie's callbacks: 0 ok, 1 error, 3 non-finite gradient, 4 non-finite
    # log-density, -1 wrong dimension.
    def _crowdbayes_logp_callback(dim, x_, out_, logp_, user_data_):  # type: ignore[no-untyped-def]  # pragma: no cover
        if dim != n_dim:
            return -1
        try:
            x = numba.carray(x_, (n_dim,))
            logp_value, grad = logp_fn(x)
            logp_[0] = logp_value
            finite = True
            for i in range(n_dim):
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

    def _crowdbayes_expand_callback(dim, expanded, x_, out_, user_data_):  # type: ignore[no-untyped-def]  # pragma: no cover
        if dim != n_dim or expanded != n_expanded:
            return -1
        try:
            x = numba.carray(x_, (n_dim,))
            (values,) = expand_fn(x)
            for i in range(n_expanded):
                out_[i] = values[i]
        except Exception:  # noqa: BLE001
            return -2
        return 0

    with _cheap_final_libraries(), warnings.catch_warnings():
        # the data are constants of the graph, so its function is not disk-cached (as in nutpie)
        warnings.filterwarnings(
            "ignore", message="Cannot cache compiled function", category=numba.NumbaWarning
        )
        logp = numba.cfunc(logp_signature)(_crowdbayes_logp_callback)
        expand = numba.cfunc(expand_signature)(_crowdbayes_expand_callback)
    return logp, expand


def _graph_kernel(jit_fn: Any) -> Any:
    """The numba function of the graph itself, under PyTensor's caching wrapper when it has one.

    PyTensor wraps a cacheable graph function ``f`` as ``wrapper(*args): return f(*args)``.
    Calling the wrapper from a callback compiles it for a star-args signature its disk cache
    never holds, so the graph was machine-code-generated three times (graph, wrapper, callback:
    1.8 + 1.8 + 2.0 s on rte); calling ``f`` directly saves the wrapper's.
    """
    inner = getattr(jit_fn, "py_func", None)
    inner = getattr(inner, "__globals__", {}).get("jitable_func")
    return inner if hasattr(inner, "py_func") else jit_fn


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
            make_user_data,
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
        if logp_fn_pt.get_shared() or expand_fn_pt.get_shared():
            return None
        logp, expand = _callbacks(
            n_dim,
            n_expanded,
            _graph_kernel(logp_fn_pt.vm.jit_fn),
            _graph_kernel(expand_fn_pt.vm.jit_fn),
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
            shared_data={},
            shared_var_keys={},
            user_data=make_user_data({}, {}),
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
