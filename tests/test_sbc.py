"""Simulation-based calibration: prior simulation, rank statistics, and SBC runs that can fail."""

import ctypes
import functools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import crowdbayes as cb
from crowdbayes.data import encode_annotations
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.fast.nutpie import compile_model, reused_callbacks
from crowdbayes.inference import c_backend
from crowdbayes.models import MODELS, OneCoinPriors
from crowdbayes.plots import plot_sbc_ranks
from crowdbayes.sbc import (
    _as_bayesian,
    _PriorSimulator,
    simulate_from_prior,
    simulation_based_calibration,
)
from crowdbayes.sbc_statistics import SBCResult, default_bins, rank_bin_probabilities

BAYESIAN = [name for name, cls in MODELS.items() if issubclass(cls, BayesianCrowdModel)]
EXISTING = ["dawid-skene", "class-conditional", "one-coin", "hierarchical-dawid-skene"]
DESIGN = {"n_items": 12, "n_annotators": 4, "labels_per_item": 3, "n_categories": 3}
#: A reduced SBC run: 3 simulations of a tiny design (every annotator labels every item), PyMC's
#: NUTS (compiles in seconds; nutpie's Numba compilation takes minutes).
REDUCED = {
    "n_simulations": 3,
    "n_items": 15,
    "n_annotators": 3,
    "labels_per_item": 3,
    "n_categories": 2,
    "draws": 40,
    "tune": 80,
    "chains": 2,
    "sampler": "pymc",
    "thin": 2,
    "cores": 1,
}
#: Scalar parameters ranked in REDUCED (K = 2 categories, J = 3 annotators), by hand:
#: prevalence K; confusion J K K; accuracy J K or J; HDS error_mean, error_scale K (K - 1) each
#: and annotator_effect J K (K - 1).
N_RANKED = {
    "dawid-skene": 2 + 12,
    "class-conditional": 2 + 6,
    "one-coin": 2 + 3,
    "hierarchical-dawid-skene": 2 + 2 + 2 + 6,
}


@functools.cache
def prior_simulator(name: str, **design: int) -> _PriorSimulator:
    return _PriorSimulator(_as_bayesian(name), **design)


def expected_design(n_items: int, n_annotators: int, labels_per_item: int) -> list[tuple]:
    """Item i is labelled by annotators i, i+1, ... (mod J), written out with loops."""
    width = len(str(n_annotators - 1))
    pairs = []
    for i in range(n_items):
        for r in range(labels_per_item):
            pairs.append((i, f"a{(i + r) % n_annotators:0{width}d}"))
    return pairs


# --------------------------------------------------------------------------- prior simulation
@pytest.mark.parametrize("name", BAYESIAN)
def test_simulate_from_prior_every_model(name: str) -> None:
    sim = simulate_from_prior(name, **DESIGN, random_seed=3)
    simulator = prior_simulator(name, **DESIGN)
    again, other = simulator.simulate(3), simulator.simulate(4)
    # Reproducible: the same seed gives the same labels, truth and parameters.
    pd.testing.assert_frame_equal(sim.annotations, again.annotations)
    pd.testing.assert_series_equal(sim.true_labels, again.true_labels)
    assert sim.parameters.keys() == again.parameters.keys()
    for key, value in sim.parameters.items():
        np.testing.assert_array_equal(value, again.parameters[key])
    # Another seed: other parameters, same fixed design.
    assert not np.array_equal(sim.prevalence, other.prevalence)
    design = expected_design(DESIGN["n_items"], DESIGN["n_annotators"], DESIGN["labels_per_item"])
    for s in (sim, other):
        assert list(s.annotations[["item", "annotator"]].itertuples(index=False, name=None)) == (
            design
        )
    # Values in range.
    n_cat = DESIGN["n_categories"]
    assert set(sim.annotations["label"]) <= set(range(n_cat))
    assert sim.true_labels.index.tolist() == list(range(DESIGN["n_items"]))
    assert set(sim.true_labels) <= set(range(n_cat))
    assert sim.prevalence.shape == (n_cat,)
    assert np.all(sim.prevalence > 0) and sim.prevalence.sum() == pytest.approx(1.0)
    assert sim.confusion.shape == (DESIGN["n_annotators"], n_cat, n_cat)
    assert np.all((sim.confusion >= 0) & (sim.confusion <= 1))
    np.testing.assert_allclose(sim.confusion.sum(axis=2), 1.0)
    estimator = MODELS[name]
    for var in estimator.diagnostic_vars:  # type: ignore[attr-defined]
        assert np.all(np.isfinite(sim.parameters[var])), var
    # Every free variable of the model is recorded with its model shape.
    model = simulator.model
    for rv in model.free_RVs:
        assert sim.parameters[rv.name].shape == tuple(
            len(model.coords[d]) for d in model.named_vars_to_dims.get(rv.name, ())
        )


def test_labels_follow_the_model() -> None:
    """Dawid-Skene labels: frequencies per (annotator, true category) match the confusion."""
    simulator = prior_simulator(
        "dawid-skene", n_items=3000, n_annotators=2, labels_per_item=2, n_categories=2
    )
    sim = simulator.simulate(11)
    truth = sim.true_labels.to_numpy()
    counts = np.zeros((2, 2, 2))
    for item, annotator, label in sim.annotations.itertuples(index=False, name=None):
        counts[int(annotator[1:]), truth[item], label] += 1
    for j in range(2):
        for k in range(2):
            n = counts[j, k].sum()
            p = sim.confusion[j, k, 1]
            # Binomial test of the count of label 1 against the true confusion entry.
            assert stats.binomtest(int(counts[j, k, 1]), int(n), p).pvalue > 1e-3, (j, k)
    n_first = int((truth == 0).sum())
    assert stats.binomtest(n_first, len(truth), sim.prevalence[0]).pvalue > 1e-3


def test_prior_draws_match_the_prior() -> None:
    """Parameters come from the model's priors: Dawid-Skene's Dirichlet rows, HDS's Normals."""
    ds = prior_simulator("dawid-skene", **DESIGN)
    draws = [ds.parameters(seed) for seed in range(300)]
    priors = cb.DawidSkenePriors()
    beta = priors.confusion_concentration(DESIGN["n_annotators"], 3)[1, 2]  # [1.6, 1.6, 4.8]
    diag = np.array([d["confusion"][1, 2, 2] for d in draws])
    marginal = stats.beta(beta[2], beta.sum() - beta[2])  # a Dirichlet entry's marginal
    assert stats.kstest(diag, marginal.cdf).pvalue > 1e-3
    prevalence = np.array([d["prevalence"][0] for d in draws])
    assert stats.kstest(prevalence, stats.beta(3.0, 6.0).cdf).pvalue > 1e-3
    assert len({float(d["prevalence"][0]) for d in draws}) == 300
    hds = prior_simulator("hierarchical-dawid-skene", **DESIGN)
    mean = np.array([hds.parameters(seed)["error_mean"][0] for seed in range(300)])
    hds_priors = cb.HierarchicalDawidSkenePriors()
    normal = stats.norm(hds_priors.mean_location(3), hds_priors.error_mean_sd)
    assert stats.kstest(mean, normal.cdf).pvalue > 1e-3


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="no prior"):
        simulate_from_prior("majority-vote", random_seed=0)
    with pytest.raises(ValueError, match="unknown model"):
        simulate_from_prior("no-such-model", random_seed=0)
    with pytest.raises(ValueError, match="labels_per_item"):
        simulate_from_prior("one-coin", n_annotators=2, labels_per_item=3, random_seed=0)
    with pytest.raises(ValueError, match="n_categories"):
        simulate_from_prior("one-coin", n_categories=1, random_seed=0)
    with pytest.raises(ValueError, match="parameters must name"):
        simulation_based_calibration("one-coin", parameters=["nope"], n_items=5, n_annotators=3)
    with pytest.raises(ValueError, match="thin"):
        simulation_based_calibration("one-coin", draws=5, thin=10, n_items=5, n_annotators=3)


# --------------------------------------------------------------------------- rank statistics
def test_rank_bins_by_hand() -> None:
    for n_ranks, bins in ((9, 5), (10, 4), (99, 20), (3, 4)):
        expected = np.zeros(bins)
        for r in range(n_ranks + 1):
            expected[r * bins // (n_ranks + 1)] += 1 / (n_ranks + 1)
        np.testing.assert_allclose(rank_bin_probabilities(n_ranks, bins), expected)
    assert default_bins(7, 99) == 2 and default_bins(60, 99) == 12 and default_bins(60, 5) == 6


def test_uniformity_by_hand() -> None:
    rng = np.random.default_rng(5)
    n_sims = 60
    rows = []
    for s in range(n_sims):
        n_ranks = 19 if s % 3 else 17  # simulations may differ in the number of draws
        rows.append({"parameter": "a", "rank": int(rng.integers(0, n_ranks + 1)), "n": n_ranks})
        rows.append({"parameter": "b", "rank": int(rng.integers(0, 4)), "n": n_ranks})
    ranks = pd.DataFrame(
        {
            "simulation": [s for s in range(n_sims) for _ in range(2)],
            "variable": [r["parameter"] for r in rows],
            "parameter": [r["parameter"] for r in rows],
            "rank": [r["rank"] for r in rows],
            "n_ranks": [r["n"] for r in rows],
        }
    )
    fits = pd.DataFrame({"flagged": [False] * n_sims, "permuted_chains": [""] * n_sims})
    result = SBCResult("toy", ranks, fits)
    table = result.uniformity(bins=4)
    for name in ("a", "b"):
        observed = np.zeros(4)
        expected = np.zeros(4)
        for r in rows:
            if r["parameter"] != name:
                continue
            observed[r["rank"] * 4 // (r["n"] + 1)] += 1
            for v in range(r["n"] + 1):
                expected[v * 4 // (r["n"] + 1)] += 1 / (r["n"] + 1)
        chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
        assert table.loc[name, "chi2"] == pytest.approx(chi2)
        assert table.loc[name, "chi2_p"] == pytest.approx(stats.chi2.sf(chi2, 3))
        u = [(r["rank"] + 0.5) / (r["n"] + 1) for r in rows if r["parameter"] == name]
        assert table.loc[name, "ks_p"] == pytest.approx(stats.kstest(u, "uniform").pvalue)
    assert table.loc["a", "p"] > 0.01  # uniform ranks
    assert table.loc["b", "p"] < 1e-6  # ranks stuck at the bottom
    # Holm over two parameters: the smaller p doubled, the larger kept (at least the first).
    low, high = sorted(table["p"])
    assert sorted(table["p_adjusted"]) == pytest.approx(
        [min(1, 2 * low), max(min(1, 2 * low), high)]
    )
    assert result.combined_p_value(bins=4) == pytest.approx(min(1.0, 2 * low))


@pytest.mark.parametrize(
    ("shape", "detected"),
    [("uniform", False), ("too narrow", True), ("too wide", True), ("biased", True)],
)
def test_uniformity_detects_miscalibration(shape: str, detected: bool) -> None:
    """Ranks of a posterior that is too narrow (U), too wide (hump) or biased are rejected."""
    rng = np.random.default_rng(8)
    n_sims, n_ranks = 150, 99
    u = {
        "uniform": rng.random(n_sims),
        "too narrow": rng.beta(0.5, 0.5, n_sims),
        "too wide": rng.beta(3.0, 3.0, n_sims),
        "biased": rng.beta(1.6, 1.0, n_sims),
    }[shape]
    ranks = pd.DataFrame(
        {
            "simulation": np.arange(n_sims),
            "variable": "x",
            "parameter": "x",
            "rank": np.minimum((u * (n_ranks + 1)).astype(int), n_ranks),
            "n_ranks": n_ranks,
        }
    )
    fits = pd.DataFrame({"flagged": [False] * n_sims, "permuted_chains": [""] * n_sims})
    p = SBCResult("toy", ranks, fits).combined_p_value()
    assert (p < 0.01) == detected, p


def test_plot_sbc_ranks() -> None:
    rng = np.random.default_rng(2)
    n_sims = 80
    names = [f"x[{i}]" for i in range(6)]
    ranks = pd.DataFrame(
        {
            "simulation": np.tile(np.arange(n_sims), len(names)),
            "variable": "x",
            "parameter": np.repeat(names, n_sims),
            "rank": np.concatenate(
                [rng.integers(0, 40, n_sims) for _ in range(5)] + [np.zeros(n_sims, dtype=int)]
            ),
            "n_ranks": 39,
        }
    )
    fits = pd.DataFrame({"flagged": [False] * n_sims, "permuted_chains": [""] * n_sims})
    result = SBCResult("toy", ranks, fits)
    fig = plot_sbc_ranks(result)
    assert len(fig.axes) == 6
    assert "x[5]" in fig.axes[5].get_title()
    # With fewer panels than parameters, the worst one (x[5], all ranks 0) is kept.
    fig = plot_sbc_ranks(result, max_panels=2)
    assert len(fig.axes) == 2 and any("x[5]" in ax.get_title() for ax in fig.axes)
    assert len(plot_sbc_ranks(result, parameters=["x[1]"], bins=4).axes) == 1
    with pytest.raises(ValueError, match="not in the result"):
        plot_sbc_ranks(result, parameters=["y"])
    with pytest.raises(ValueError, match="prob"):
        plot_sbc_ranks(result, prob=1.5)


# --------------------------------------------------------------------------- compiled reuse
def compiled_logp(compiled, x: np.ndarray) -> float:
    """The log-density of nutpie's compiled callback at the unconstrained point ``x``."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    grad, logp = np.zeros_like(x), np.zeros(1)
    as_ptr = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))  # noqa: E731
    user_data = ctypes.c_void_p(compiled.user_data.ctypes.data)
    code = compiled.compiled_logp_func.ctypes(
        len(x), as_ptr(x), as_ptr(grad), as_ptr(logp), user_data
    )
    assert code == 0
    return float(logp[0])


def compiled_once_check(name: str) -> None:
    """The model compiled once, given a data set's labels, has that data's logp."""
    simulator = prior_simulator(name, **DESIGN)
    estimator = _as_bayesian(name)
    priors = estimator.resolved_priors()
    with c_backend():
        assert compile_model(type(estimator).builder(simulator.data, priors)) is not None
    sim = simulator.simulate(21)
    direct = type(estimator).builder(
        encode_annotations(sim.annotations, categories=sim.categories), priors
    )
    reused = reused_callbacks()
    with c_backend():
        compiled = compile_model(direct)
        logp_direct = direct.compile_logp()
    assert compiled is not None and reused_callbacks() == reused + 1
    rng = np.random.default_rng(0)
    start = direct.initial_point()  # in the order of the compiled model's point
    for _ in range(3):
        point = {k: v + rng.normal(0.0, 0.5, np.shape(v)) for k, v in start.items()}
        x = np.concatenate([np.ravel(v) for v in point.values()])
        assert compiled_logp(compiled, x) == pytest.approx(logp_direct(point), rel=1e-12)
    # A data set whose graph differs (one label more) is not given those callbacks.
    extra = pd.concat([sim.annotations, sim.annotations.iloc[[0]].assign(annotator="a3")])
    reused = reused_callbacks()
    with c_backend():
        compile_model(
            type(estimator).builder(encode_annotations(extra, categories=sim.categories), priors)
        )
    assert reused_callbacks() == reused


def test_compiled_once() -> None:
    compiled_once_check("dawid-skene")


@pytest.mark.slow
@pytest.mark.parametrize("name", BAYESIAN)
def test_compiled_once_every_model(name: str) -> None:
    compiled_once_check(name)


# --------------------------------------------------------------------------- SBC runs
@pytest.mark.parametrize("name", EXISTING)
def test_reduced_sbc(name: str) -> None:
    """Three fits of a tiny design. A gross error (wrong truth, wrong parameter mapping) puts
    every rank of a parameter at an end, which this detects (p < 1e-4 with 3 simulations)."""
    result = simulation_based_calibration(name, **REDUCED, random_seed=17)
    estimator = MODELS[name]
    assert len(result.ranks) == REDUCED["n_simulations"] * N_RANKED[name]
    assert len(result.fits) == REDUCED["n_simulations"]
    assert set(result.ranks["variable"]) == set(estimator.diagnostic_vars)  # type: ignore[attr-defined]
    # 2 chains x 20 kept draws (fewer only if a chain was dropped for label switching).
    assert set(result.ranks["n_ranks"]) <= {20, 40}
    assert (result.ranks["rank"].between(0, result.ranks["n_ranks"])).all()
    assert (result.fits["flagged"] == (result.fits["warnings"] != "")).all()
    assert not result.fits["reused"].any()
    assert result.combined_p_value() > 1e-3, result.uniformity().sort_values("p").head()


def test_sbc_detects_prior_mismatch() -> None:
    """Fit with a strong prior on accurate annotators (mean 0.91), data from the default
    prior (mean 0.6): the true accuracies lie below most posterior draws.

    One chain per fit: every fit reports the "only one chain" SamplingWarning, recorded in
    ``fits`` rather than raised (pytest turns escaped warnings into errors).
    """
    confident = cb.OneCoin(priors=OneCoinPriors(accuracy_alpha=200.0, accuracy_beta=20.0))
    settings = {**REDUCED, "n_simulations": 4, "chains": 1}
    result = simulation_based_calibration(
        confident, **settings, simulate_with="one-coin", random_seed=4
    )
    assert result.settings["priors"]["accuracy_alpha"] == 200.0
    assert result.settings["simulation_priors"]["accuracy_alpha"] == 4.8
    assert result.combined_p_value() < 1e-3
    table = result.uniformity()
    assert table["p"].idxmin().startswith("accuracy")
    accuracy = result.ranks[result.ranks["variable"] == "accuracy"]
    assert (accuracy["rank"] / accuracy["n_ranks"]).mean() < 0.2
    assert result.n_flagged == settings["n_simulations"]
    assert result.fits["warnings"].str.contains("only one chain").all()


@pytest.mark.slow
@pytest.mark.parametrize("name", EXISTING)
def test_full_sbc(name: str) -> None:
    """100 simulations with nutpie, compiled once: ranks uniform for the existing models."""
    result = simulation_based_calibration(
        name,
        n_simulations=100,
        n_items=30,
        n_annotators=5,
        labels_per_item=3,
        n_categories=3,
        draws=500,
        tune=500,
        chains=2,
        sampler="nutpie",
        thin=5,
        random_seed=2,
    )
    assert result.settings["compiled_once"]
    assert result.fits["reused"].all()
    assert result.combined_p_value() > 1e-3, result.uniformity().sort_values("p").head()


@pytest.mark.slow
def test_full_sbc_detects_prior_mismatch() -> None:
    """A milder mismatch (prior accuracy 0.6 against data from 0.75) over 100 simulations."""
    data_priors = cb.DawidSkenePriors(prior_accuracy=0.75, pseudo_count=20.0)
    result = simulation_based_calibration(
        "dawid-skene",
        n_simulations=100,
        n_items=30,
        n_annotators=5,
        labels_per_item=3,
        n_categories=3,
        draws=500,
        tune=500,
        chains=2,
        sampler="nutpie",
        thin=5,
        random_seed=3,
        simulate_with=cb.DawidSkene(priors=data_priors),
    )
    assert result.combined_p_value() < 1e-3


@pytest.mark.parametrize("name", ["dawid-skene", "hierarchical-dawid-skene"])
def test_reused_nutpie_samples_at_the_models_target_accept(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SBC calibrates the sampler as fit() runs it: the compiled-once nutpie path passes the
    estimator's default target acceptance (0.65 for Dawid-Skene, 0.8 for the hierarchical)."""
    import nutpie

    seen: list[float] = []
    original = nutpie.sample

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("target_accept"))
        return original(*args, **kwargs)

    monkeypatch.setattr(nutpie, "sample", recording)
    result = simulation_based_calibration(
        name,
        n_simulations=2,
        n_items=12,
        n_annotators=3,
        labels_per_item=3,
        n_categories=2,
        draws=20,
        tune=20,
        chains=2,
        sampler="nutpie",
        random_seed=5,
    )
    assert result.fits["reused"].all()
    assert seen == [MODELS[name].default_target_accept] * 2
