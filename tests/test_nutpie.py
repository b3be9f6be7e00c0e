"""The lean nutpie compile (:mod:`crowdbayes.fast.nutpie`): same log-density and gradient as
PyTensor's, same sampler, a fallback to nutpie's own compile, and numba left as it was."""

import ctypes

import numpy as np
import pymc as pm
import pytest
from numba.core import codegen

import crowdbayes as cb
from crowdbayes.fast import nutpie as _nutpie
from crowdbayes.inference import sample_posterior


@pytest.fixture(scope="module")
def ds_model() -> pm.Model:
    sim = cb.simulate_dawid_skene(n_items=60, n_annotators=5, n_categories=3, random_seed=4)
    return cb.DawidSkene().build_model(cb.encode_annotations(sim.annotations))


@pytest.fixture(scope="module")
def compiled(ds_model: pm.Model):
    out = _nutpie.compile_model(ds_model)
    assert out is not None
    return out


def _call_logp(compiled, x: np.ndarray) -> tuple[int, float, np.ndarray]:
    cfunc = compiled.compiled_logp_func
    x = np.ascontiguousarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    logp = np.zeros(1)
    as_ptr = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))  # noqa: E731
    user_data = ctypes.c_void_p(compiled.user_data.ctypes.data)
    code = cfunc.ctypes(len(x), as_ptr(x), as_ptr(grad), as_ptr(logp), user_data)
    return code, float(logp[0]), grad


def test_callback_matches_pytensor_logp_and_gradient(ds_model: pm.Model, compiled) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(scale=0.5, size=compiled.n_dim)
    code, logp, grad = _call_logp(compiled, x)
    want_logp, want_grad = compiled.logp_func(x)  # PyTensor's own function of the same graph
    assert code == 0
    assert logp == pytest.approx(float(want_logp), rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)
    # and the model's density at the same point, through PyMC's independent compile
    point, start = {}, 0
    for name, value in ds_model.initial_point().items():  # the joined vector's order
        point[name] = x[start : start + value.size].reshape(value.shape)
        start += value.size
    assert start == compiled.n_dim
    assert logp == pytest.approx(float(ds_model.compile_logp()(point)), rel=1e-10)
    # the wrong dimension is refused, as nutpie's callbacks do
    assert _call_logp(compiled, x[:-1])[0] == -1


def test_expand_callback_gives_constrained_values(compiled) -> None:
    x = np.zeros(compiled.n_dim)
    out = np.zeros(compiled.n_expanded)
    as_ptr = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))  # noqa: E731
    user_data = ctypes.c_void_p(compiled.user_data.ctypes.data)
    code = compiled.compiled_expand_func.ctypes(
        compiled.n_dim, compiled.n_expanded, as_ptr(x), as_ptr(out), user_data
    )
    assert code == 0
    np.testing.assert_allclose(out, np.concatenate(compiled.expand_func(x)), rtol=1e-12)


def _dawid_skene_model(seed: int, n_items: int, n_annotators: int) -> pm.Model:
    sim = cb.simulate_dawid_skene(
        n_items=n_items, n_annotators=n_annotators, n_categories=3, random_seed=seed
    )
    return cb.DawidSkene().build_model(cb.encode_annotations(sim.annotations))


def _assert_equals_pytensor(compiled, x: np.ndarray) -> None:
    # the callback's log-density and gradient against PyTensor's own function of the graph
    code, logp, grad = _call_logp(compiled, x)
    want_logp, want_grad = compiled.logp_func(x)
    assert code == 0
    assert logp == pytest.approx(float(want_logp), rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)


def test_callbacks_are_reused_from_the_cache_for_other_data(compiled) -> None:
    # same model structure, other data and sizes: the callbacks come from numba's disk cache
    # (the module fixture compiled or loaded them first) and read *these* data
    model = _dawid_skene_model(seed=11, n_items=45, n_annotators=7)
    other = _nutpie.compile_model(model)
    assert other is not None and other.n_dim != compiled.n_dim
    assert other.compiled_logp_func._cache_hits == 1
    assert other.compiled_expand_func._cache_hits == 1
    x = np.random.default_rng(1).normal(scale=0.5, size=other.n_dim)
    _assert_equals_pytensor(other, x)
    # and the first model's callbacks still read the first data
    x0 = np.zeros(compiled.n_dim)
    assert _call_logp(compiled, x0)[1] == pytest.approx(float(compiled.logp_func(x0)[0]))


def test_compiling_leaves_the_data_arrays_writeable() -> None:
    """The compiled model keeps read-only copies of the data; the data itself is untouched
    (read-only arrays made every later EM on the same data compile a second numba kernel)."""
    sim = cb.simulate_dawid_skene(n_items=20, n_annotators=4, n_categories=3, random_seed=8)
    data = cb.encode_annotations(sim.annotations)
    rows = data.compressed
    arrays = [rows.annotator_index, rows.label_index, rows.count, data.gold_index]
    assert _nutpie.compile_model(cb.DawidSkene().build_model(data)) is not None
    assert all(a.flags.writeable for a in arrays)


def test_graphs_that_cannot_be_lifted_compile_for_their_data(monkeypatch) -> None:
    monkeypatch.setattr(_nutpie, "_lift_constants", lambda function: None)
    model = _dawid_skene_model(seed=12, n_items=30, n_annotators=4)
    fallback = _nutpie.compile_model(model)
    assert fallback is not None
    x = np.random.default_rng(2).normal(scale=0.5, size=fallback.n_dim)
    _assert_equals_pytensor(fallback, x)
    assert _call_logp(fallback, x[:-1])[0] == -1


def test_sample_posterior_goes_through_it(ds_model: pm.Model, monkeypatch) -> None:
    calls = []
    original = _nutpie.compile_model
    monkeypatch.setattr(_nutpie, "compile_model", lambda *a: calls.append(1) or original(*a))
    dt = sample_posterior(ds_model, draws=30, tune=30, chains=2, random_seed=3, progressbar=False)
    assert calls == [1]
    assert dt.posterior["confusion"].shape == (2, 30, 5, 3, 3)
    assert dt.posterior.attrs["sampling_time"] > 0
    assert int(dt.sample_stats["diverging"].sum()) == 0


def test_models_with_shared_data_fall_back_to_nutpie() -> None:
    with pm.Model() as model:
        y = pm.Data("y", np.array([0.1, -0.3, 0.2]))
        mu = pm.Normal("mu")
        pm.Normal("obs", mu, 1.0, observed=y)
    assert _nutpie.compile_model(model) is None
    dt = sample_posterior(model, draws=20, tune=20, chains=1, random_seed=1, progressbar=False)
    assert dt.posterior["mu"].shape == (1, 20)


def test_numba_optimisation_is_restored_after_the_compile() -> None:
    before = (
        codegen.CPUCodeLibrary._optimize_final_module,
        codegen.CPUCodeLibrary._optimize_functions,
    )
    with pytest.raises(RuntimeError, match="boom"):
        with _nutpie._cheap_final_libraries():
            raise RuntimeError("boom")
    after = (
        codegen.CPUCodeLibrary._optimize_final_module,
        codegen.CPUCodeLibrary._optimize_functions,
    )
    assert after == before
