"""Sampling and point estimation: thin, explicit wrappers around PyMC's samplers.

crowdbayes never implements a sampler or an optimiser: NUTS comes from nutpie, PyMC, NumPyro or
BlackJAX through :func:`pymc.sample`, the MAP from PyMC's :func:`pymc.find_MAP` (or, for the
Dirichlet models, the closed-form EM in :mod:`crowdbayes.em`).
"""

import importlib.util
import os
import sys
import warnings
from typing import Any, Literal, get_args

import numpy as np
import pymc as pm
import xarray as xr

__all__ = [
    "Sampler",
    "SAMPLERS",
    "check_random_seed",
    "seed_to_int",
    "sample_posterior",
    "find_map",
]

Sampler = Literal["nutpie", "pymc", "numpyro", "blackjax"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)


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


def find_map(
    model: pm.Model, *, start: dict[str, np.ndarray] | None = None, progressbar: bool = False
) -> xr.Dataset:
    """Posterior mode of ``model`` (prior densities without Jacobian) by PyMC's L-BFGS.

    The log density is compiled with PyTensor's C backend, which compiles in about a second
    and is cached across processes (the default Numba backend takes tens of seconds here).

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
    from crowdbayes.diagnostics import SamplingWarning

    with model:
        tree = pm.find_MAP(
            initvals=start,
            progressbar=progressbar,
            return_inferencedata=True,
            jitter=False,
            compile_kwargs={"mode": "CVM"},
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
