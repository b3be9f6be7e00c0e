"""Sampling and point estimation: thin, explicit wrappers around PyMC's samplers.

crowdbayes never implements a sampler or an optimiser: NUTS comes from nutpie, PyMC, NumPyro or
BlackJAX through :func:`pymc.sample`, the MAP from PyMC's :func:`pymc.find_MAP` (or, for the
Dirichlet models, the closed-form EM in :mod:`crowdbayes.em`), variational approximations from
PyMC's ADVI (:func:`pymc.fit`).
"""

import importlib.util
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import numpy as np
import pymc as pm
import pytensor
import xarray as xr

from crowdbayes.diagnostics import SamplingWarning
from crowdbayes.fast import nutpie as fast_nutpie

__all__ = [
    "Sampler",
    "SAMPLERS",
    "check_random_seed",
    "seed_to_int",
    "sample_posterior",
    "find_map",
    "fit_variational",
    "default_vi_iterations",
    "VariationalInfo",
    "c_backend",
]

#: PyMC's logger: the sampler line ("NUTS[nutpie]: ...") reads as when pm.sample prints it.
_log = logging.getLogger("pymc")

Sampler = Literal["nutpie", "pymc", "numpyro", "blackjax"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)


@contextmanager
def c_backend() -> Iterator[None]:
    """Compile with PyTensor's C backend (its BLAS warning is irrelevant to these graphs).

    For functions compiled once per fit and called on stored draws (summaries, predictive
    checks, log-likelihoods): the C backend caches its compiled operations across graphs, so a
    new data set compiles quickly, where the default numba backend compiles every new graph.

    Examples
    --------
    >>> with c_backend():
    ...     pytensor.config.mode
    'CVM'
    """
    with warnings.catch_warnings(), pytensor.config.change_flags(mode="CVM"):
        warnings.filterwarnings(
            "ignore", message="PyTensor could not link to a BLAS", category=UserWarning
        )
        yield


def check_random_seed(random_seed: int | np.random.Generator | None) -> np.random.Generator:
    """Turn ``random_seed`` into a :class:`numpy.random.Generator`, rejecting anything else.

    Parameters
    ----------
    random_seed : int, numpy.random.Generator or None
        ``None`` draws fresh entropy (a different result each call).

    Returns
    -------
    numpy.random.Generator

    Examples
    --------
    >>> check_random_seed(1).integers(10) == check_random_seed(1).integers(10)
    np.True_
    >>> check_random_seed("a")
    Traceback (most recent call last):
    ...
    ValueError: random_seed must be an int, a numpy.random.Generator or None, not str
    """
    if isinstance(random_seed, np.random.Generator):
        return random_seed
    if random_seed is None or (
        isinstance(random_seed, int | np.integer) and not isinstance(random_seed, bool)
    ):
        if random_seed is not None and random_seed < 0:
            raise ValueError(f"random_seed must be non-negative, got {random_seed}")
        return np.random.default_rng(random_seed)
    raise ValueError(
        "random_seed must be an int, a numpy.random.Generator or None, "
        f"not {type(random_seed).__name__}"
    )


def seed_to_int(random_seed: int | np.random.Generator | None) -> int:
    """An integer seed for PyMC from any accepted ``random_seed``.

    Examples
    --------
    >>> seed_to_int(7)
    7
    """
    if isinstance(random_seed, int | np.integer) and not isinstance(random_seed, bool):
        check_random_seed(random_seed)
        return int(random_seed)
    return int(check_random_seed(random_seed).integers(2**31 - 1))


def available_cpus() -> int:
    """Number of CPUs this process may run on.

    Examples
    --------
    >>> available_cpus() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    needs = {"nutpie": "nutpie", "numpyro": "numpyro", "blackjax": "blackjax"}.get(sampler)
    if needs and importlib.util.find_spec(needs) is None:
        extra = "" if sampler == "nutpie" else " (pip install 'crowdbayes[jax]')"
        raise ValueError(f"sampler {sampler!r} needs the package {needs!r}{extra}")
    if sampler == "numpyro":
        # arviz-base's lazy loader can leave numpyro.infer without `initialization` when arviz
        # was imported first (see shared notes); import it explicitly.
        import numpyro.infer  # noqa: F401
        import numpyro.infer.initialization  # noqa: F401

        infer_module: Any = sys.modules["numpyro.infer"]
        infer_module.initialization = sys.modules["numpyro.infer.initialization"]
    if sampler in ("numpyro", "blackjax"):
        from crowdbayes.fast.transforms import register_jax

        register_jax()  # JAX implementations of the stick-breaking transform's Ops


def sample_posterior(
    model: pm.Model,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    sampler: Sampler = "nutpie",
    random_seed: int | np.random.Generator | None = None,
    initvals: dict[str, np.ndarray] | None = None,
    target_accept: float | None = None,
    progressbar: bool = True,
    cores: int | None = None,
) -> xr.DataTree:
    """Run NUTS on ``model`` with an explicit sampler backend.

    Parameters
    ----------
    model : pymc.Model
    draws, tune, chains : int
        Kept draws per chain, tuning steps per chain, number of chains.
    sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
        The NUTS implementation. The JAX ones need the ``jax`` extra.
    random_seed : int, numpy.random.Generator or None
    initvals : dict, optional
        Starting values (constrained space) shared by every chain; each chain is jittered
        around them.
    target_accept : float, optional
        NUTS target acceptance rate (default: the sampler's, 0.8).
    progressbar : bool
    cores : int, optional
        Chains run in parallel (default: every CPU this process may use, at most ``chains``;
        PyMC's own default halves the CPU count, which runs chains one by one on 2 cores).

    Returns
    -------
    xarray.DataTree
        With ``posterior`` and ``sample_stats`` groups; arrays are NumPy (JAX results are
        materialised).

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model() as m:
    ...     _ = pm.Normal("x")
    >>> dt = sample_posterior(m, draws=20, tune=20, chains=1, sampler="pymc",
    ...                       random_seed=1, progressbar=False)
    >>> dt.posterior["x"].shape
    (1, 20)
    """
    for name, value in (("draws", draws), ("tune", tune), ("chains", chains)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            if not (name == "tune" and value == 0):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
    _check_sampler(sampler)
    if cores is None:
        cores = max(1, min(int(chains), available_cpus()))
    kwargs: dict[str, Any] = {}
    if target_accept is not None:
        if not 0.0 < target_accept < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1), got {target_accept}")
        kwargs["target_accept"] = target_accept
    if sampler in ("numpyro", "blackjax"):
        kwargs["nuts"] = {"chain_method": _jax_chain_method(int(chains))}
    if sampler == "nutpie":
        dt = _sample_nutpie(
            model,
            draws=int(draws),
            tune=int(tune),
            chains=int(chains),
            cores=cores,
            random_seed=random_seed,
            initvals=initvals,
            progressbar=progressbar,
            **kwargs,
        )
        if dt is not None:
            return dt
    with model:
        dt = pm.sample(
            draws=int(draws),
            tune=int(tune),
            chains=int(chains),
            cores=cores,
            nuts_sampler=sampler,
            random_seed=seed_to_int(random_seed),
            initvals=initvals,
            progressbar=progressbar,
            compute_convergence_checks=False,
            **kwargs,
        )
    if sampler in ("numpyro", "blackjax"):
        for group in ("posterior", "sample_stats"):
            ds = dt[group].to_dataset()
            dt[group] = xr.DataTree(
                ds.map(
                    lambda v: xr.DataArray(
                        np.asarray(v.values), dims=v.dims, coords=v.coords, attrs=v.attrs
                    ),
                    keep_attrs=True,
                )
            )
    return dt


def _jax_chain_method(chains: int) -> str:
    """NumPyro's ``chain_method``: one JAX device per chain if there are enough, else one device.

    ``"parallel"`` needs a device per chain; ``"vectorized"`` steps all chains together on one
    device (a single GPU). Importing ``pymc.sampling.jax`` first lets it ask XLA for many host
    CPU devices, which only works before anything has initialised JAX; otherwise there may be
    one device, and ``"parallel"`` would run the chains one after another, with a warning.
    """
    import jax
    import pymc.sampling.jax  # noqa: F401

    return "parallel" if jax.local_device_count() >= chains else "vectorized"


def _sample_nutpie(
    model: pm.Model,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    random_seed: int | np.random.Generator | None,
    initvals: dict[str, np.ndarray] | None,
    progressbar: bool,
    **kwargs: Any,
) -> xr.DataTree | None:
    """Run nutpie on :func:`crowdbayes.fast.nutpie.compile_model` (None: use ``pm.sample``)."""
    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata

    compiled = fast_nutpie.compile_model(model, initvals)
    if compiled is None:
        return None
    _log.info("NUTS[nutpie]: %s", [rv.name for rv in model.free_RVs])
    start = time.time()
    dt = nutpie.sample(
        compiled,
        draws=draws,
        tune=max(tune, 1),  # nuts-rs needs at least one tuning step
        chains=chains,
        cores=cores,
        seed=seed_to_int(random_seed),
        save_warmup=False,
        progress_bar=progressbar,
        **kwargs,
    )
    patch_nutpie_idata(dt, model, sampling_time=time.time() - start)
    return cast(xr.DataTree, dt)


def find_map(
    model: pm.Model, *, start: dict[str, np.ndarray] | None = None, progressbar: bool = False
) -> xr.Dataset:
    """Posterior mode of ``model`` (prior densities without Jacobian) by PyMC's L-BFGS.

    The log density is compiled with PyTensor's C backend, which compiles quickly and caches
    its compiled operations across processes; the default Numba backend would compile the
    graph, whose constants are the data, afresh for every data set.

    Parameters
    ----------
    model : pymc.Model
    start : dict, optional
        Starting point (constrained space).
    progressbar : bool

    Returns
    -------
    xarray.Dataset
        Every free and deterministic variable at the mode, with ``chain`` and ``draw`` dims of
        length 1.

    Warns
    -----
    SamplingWarning
        When the optimiser reports that it did not converge.

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model() as m:
    ...     _ = pm.Normal("x", mu=2.0)
    >>> round(float(find_map(m)["x"].squeeze()), 3)
    2.0
    """
    with c_backend(), model:
        tree = pm.find_MAP(
            initvals=start, progressbar=progressbar, return_inferencedata=True, jitter=False
        )
    result = tree["optimizer_result"].to_dataset()
    if not bool(result["success"]):
        warnings.warn(
            f"MAP optimisation did not converge ({str(result['message'].values)}); "
            "the point estimate may be off",
            SamplingWarning,
            stacklevel=2,
        )
    posterior = tree["posterior"].to_dataset()
    posterior.attrs = {}
    return posterior


@dataclass(frozen=True)
class VariationalInfo:
    """How a variational fit went.

    Attributes
    ----------
    method : str
        ``"advi"`` (mean-field) or ``"fullrank_advi"``.
    iterations : int
        Optimisation steps run.
    converged : bool
        Whether the loss had levelled off (see :func:`fit_variational`).
    final_loss : float
        Mean negative ELBO over the last 10 % of the steps (lower is better; comparable between
        fits of one model to one data set only).
    seconds : float
        Wall time of the optimisation, compilation included.
    """

    method: str
    iterations: int
    converged: bool
    final_loss: float
    seconds: float


def default_vi_iterations(n_rows: int) -> int:
    """ADVI steps used by ``fit(method="vi")`` for ``n_rows`` unique label rows.

    10,000 up to 100,000 rows; above, ``1e9 / n_rows`` rounded to hundreds (each step costs one
    gradient, linear in the rows), at least 1,000: 4,000 at 250k rows, 1,000 at 1M. Large
    data sets give a concentrated posterior that ADVI, started at the EM mode, reaches in few
    steps; whether the loss has stopped falling is still checked and reported.

    Examples
    --------
    >>> default_vi_iterations(25_000), default_vi_iterations(250_000), default_vi_iterations(10**6)
    (10000, 4000, 1000)
    """
    if n_rows <= 100_000:
        return 10_000
    return int(max(1_000, round(1e9 / n_rows, -2)))


def fit_variational(
    model: pm.Model,
    *,
    start: dict[str, np.ndarray] | None = None,
    method: Literal["advi", "fullrank_advi"] = "advi",
    iterations: int = 10_000,
    learning_rate: float = 0.01,
    draws: int = 1000,
    random_seed: int | np.random.Generator | None = None,
    progressbar: bool = False,
) -> tuple[xr.Dataset, VariationalInfo]:
    """Variational approximation of the posterior by PyMC's ADVI, and draws from it.

    The optimisation (Adam) starts at ``start`` (the estimators pass the EM mode, which also
    fixes the category labelling) and runs ``iterations`` steps, the last fifth of them at a
    tenth of ``learning_rate``. It is called converged when
    the mean loss (negative ELBO) over the last 10 % of the steps differs from that over the
    10 % before by less than 1e-4 of its size plus 1. Mean-field ADVI ignores posterior
    correlations, so its intervals are approximate; its means, and the label probabilities
    built on them, are usually close to NUTS's (comparisons in
    ``benchmarks/DESIGN_MEASUREMENTS.md`` and ``benchmarks/SPEED.md``).

    Parameters
    ----------
    model : pymc.Model
    start : dict, optional
        Starting means (constrained space).
    method : {"advi", "fullrank_advi"}
    iterations : int
        Optimisation steps.
    learning_rate : float
        Adam's step size.
    draws : int
        Draws taken from the fitted approximation.
    random_seed : int, numpy.random.Generator or None
    progressbar : bool

    Returns
    -------
    posterior : xarray.Dataset
        Draws of every free and deterministic variable, dims ``chain`` (length 1) and ``draw``.
    info : VariationalInfo

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model() as m:
    ...     _ = pm.Normal("x", mu=2.0, sigma=0.5)
    >>> post, info = fit_variational(m, draws=4000, random_seed=1)
    >>> mean, sd = float(post["x"].mean()), float(post["x"].std())
    >>> bool(abs(mean - 2.0) < 0.1 and abs(sd - 0.5) < 0.05), info.converged
    (True, True)
    """
    if method not in ("advi", "fullrank_advi"):
        raise ValueError(f"method must be 'advi' or 'fullrank_advi', not {method!r}")
    for name, value in (("iterations", iterations), ("draws", draws)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 20:
            raise ValueError(f"{name} must be an integer of at least 20, got {value!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    seed = seed_to_int(random_seed)
    started = time.perf_counter()
    # Adam's last iterate jitters around the optimum by about the step size; the last 20 % of
    # the steps run at a tenth of it, which brings the final means closer to the optimum.
    # The step size is a shared variable lowered by a callback, so the step function is
    # compiled once (two `fit` calls with two optimisers would compile it twice).
    fast = int(iterations) - int(iterations) // 5
    rate = pytensor.shared(np.float64(learning_rate), name="advi_learning_rate")

    def lower_rate(approx: Any, losses: Any, i: int) -> None:
        if i == fast:
            rate.set_value(np.float64(learning_rate / 10))

    quiet = logging.getLogger("pymc.variational.inference")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # "Finished [100%]: Average Loss = ..." on every fit
    try:
        with model:
            inference = (
                pm.ADVI(start=start, random_seed=seed)
                if method == "advi"
                else pm.FullRankADVI(start=start, random_seed=seed)
            )
            approx = inference.fit(
                n=int(iterations),
                progressbar=progressbar,
                obj_optimizer=pm.adam(learning_rate=rate),
                callbacks=[lower_rate],
            )
    finally:
        quiet.setLevel(level)
    seconds = time.perf_counter() - started
    history = np.asarray(approx.hist, dtype=float)
    tree = approx.sample(int(draws), random_seed=seed + 1)
    posterior = tree["posterior"].to_dataset()
    posterior.attrs = {}
    window = max(len(history) // 10, 1)
    last, before = history[-window:].mean(), history[-2 * window : -window].mean()
    info = VariationalInfo(
        method=method,
        iterations=len(history),
        converged=bool(np.isfinite(last) and abs(last - before) < 1e-4 * abs(last) + 1.0),
        final_loss=float(last),
        seconds=seconds,
    )
    return posterior, info
