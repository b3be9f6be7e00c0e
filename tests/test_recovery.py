"""Parameter recovery: each model, fitted by NUTS to data simulated from its own structure,
puts the truth inside its 94 % intervals for at least 90 % of the parameters, and labels items
at least as well as majority vote.

The default run checks the shared small Dawid-Skene fit (no extra compilation); the full
recoveries of every model are marked slow (``--run-slow``).
"""

import arviz as az
import numpy as np
import pytest
from _helpers import (
    MIN_COVERAGE,
    check_beats_majority_vote,
    coverage,
    fit_quietly,
    mv_accuracy,
    parameter_coverage,
    pooled_coverage,
)
from test_estimators import nuts_fit, nuts_simulation

import crowdbayes as cb
from crowdbayes.simulate import simulate_annotations

# --------------------------------------------------------------------------- default run
#: Coverage threshold for the small shared fit. With 150 items, 8 annotators and 75 correlated
#: entries (a confusion row's entries miss together), the share of entries inside their 94 %
#: intervals varies a lot between datasets even for an exact posterior: over 150 datasets drawn
#: from the priors and fitted by an exact Gibbs sampler (the one below), the share averaged 0.935
#: and fell below 0.90 in 17 % of datasets, below 0.85 in 1.3 %; its 1 % quantile was 0.847.
#: A 0.90 threshold would fail one correct fit in six; 0.84 fails about one in a hundred, while
#: a wrong likelihood or a label-switched posterior covers far less.
MIN_COVERAGE_SMALL = 0.84


def gibbs_dawid_skene(
    data: cb.AnnotationData,
    priors: cb.DawidSkenePriors,
    *,
    n_iter: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """An independent, exact sampler of the Dawid-Skene posterior (conjugate Gibbs).

    Alternates the true categories given the parameters and the Dirichlet parameters given the
    true categories. Returns the second half of the draws of prevalence and confusion.
    """
    n_j, n_k = data.n_annotators, data.n_categories
    alpha = priors.prevalence_concentration(n_k)
    beta = priors.confusion_concentration(n_j, n_k)
    item, ann, lab = data.item_index, data.annotator_index, data.label_index
    prevalence = np.full(n_k, 1.0 / n_k)
    confusion = beta / beta.sum(axis=-1, keepdims=True)
    keep_prev, keep_conf = [], []
    for t in range(n_iter):
        logp = np.tile(np.log(prevalence), (data.n_items, 1))
        np.add.at(logp, item, np.log(confusion[ann, :, lab]))
        p = np.exp(logp - logp.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        z = np.minimum((rng.random(data.n_items)[:, None] > p.cumsum(axis=1)).sum(axis=1), n_k - 1)
        prevalence = rng.dirichlet(alpha + np.bincount(z, minlength=n_k))
        counts = np.zeros((n_j, n_k, n_k))
        np.add.at(counts, (ann, z[item], lab), 1.0)
        g = rng.gamma(beta + counts)
        confusion = g / g.sum(axis=-1, keepdims=True)
        if t >= n_iter // 2:
            keep_prev.append(prevalence)
            keep_conf.append(confusion)
    return np.asarray(keep_prev), np.asarray(keep_conf)


def mcse_of_mean(draws: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of the mean of every entry; draws are (chain, draw, ...)."""
    flat = draws.reshape(draws.shape[0], draws.shape[1], -1)
    ess = np.array([float(az.ess(flat[:, :, i], method="bulk")) for i in range(flat.shape[2])])
    return flat.std(axis=(0, 1)) / np.sqrt(ess)


def test_nuts_matches_an_independent_gibbs_sampler() -> None:
    """The shared NUTS fit and a conjugate Gibbs sampler agree on every posterior mean.

    An end-to-end check of the PyMC model (likelihood, priors, simplex transforms, sampler):
    the difference of the means, in units of its Monte Carlo standard error, stays below 4
    for all 75 entries (under agreement, P(max |z| > 4) is about 0.5 %).
    """
    model = nuts_fit()[0]
    data = model.result_.data
    rng = np.random.default_rng(2024)
    chains = [
        gibbs_dawid_skene(data, cb.DawidSkenePriors(), n_iter=3000, rng=rng) for _ in range(4)
    ]
    gibbs = {
        "prevalence": np.stack([c[0] for c in chains]),
        "confusion": np.stack([c[1] for c in chains]),
    }
    posterior = model.datatree_.posterior
    for name, g in gibbs.items():
        n = posterior[name].transpose("chain", "draw", ...).to_numpy()
        diff = g.mean(axis=(0, 1)).ravel() - n.mean(axis=(0, 1)).ravel()
        z = diff / np.sqrt(mcse_of_mean(g) ** 2 + mcse_of_mean(n) ** 2)
        assert np.abs(z).max() < 4.0, (name, z.round(2))
        assert np.abs(diff).max() < 0.05, name


def test_dawid_skene_recovery_small() -> None:
    """The shared 150-item NUTS fit: truth inside the summary's intervals, labels >= MV.

    Its parameters are drawn from the model's priors, so the intervals are calibrated even with
    this little data (with parameters from elsewhere, shrinkage towards the prior dominates).
    """
    model, frame, truth, _ = nuts_fit()
    sim = nuts_simulation()
    summary = model.datatree_.summary
    # The shared fit's ids are the simulation's, renamed in the same sort order.
    assert summary["annotator"].to_numpy().tolist() == ["w-" + a for a in sim.annotators]
    inside = []
    for name, true in (("prevalence", sim.prevalence), ("confusion", sim.confusion)):
        low = summary[name].sel(statistic="lower").to_numpy()
        high = summary[name].sel(statistic="upper").to_numpy()
        inside.append(((low <= true) & (true <= high)).ravel())
    share = np.concatenate(inside).mean()
    assert share >= MIN_COVERAGE_SMALL, share
    acc = float((model.labels_["label"] == truth.reindex(model.labels_.index)).mean())
    assert acc >= mv_accuracy(frame, truth)


# --------------------------------------------------------------------------- slow
NUTS = {"draws": 600, "tune": 600, "chains": 4, "sampler": "nutpie"}


@pytest.mark.slow
def test_dawid_skene_recovery() -> None:
    sim = cb.simulate_dawid_skene(n_items=400, n_annotators=12, n_categories=3, random_seed=101)
    model = cb.DawidSkene()
    messages = fit_quietly(model, sim.annotations, random_seed=1, **NUTS)
    assert model.diagnostics_.max_rhat < 1.02, messages
    prevalence, confusion = parameter_coverage(
        sim, model.datatree_.posterior, ["prevalence", "confusion"]
    )
    share = pooled_coverage(prevalence, confusion)
    assert share >= MIN_COVERAGE, (share, np.argwhere(~confusion))
    check_beats_majority_vote(model, sim)


def accuracy_simulation(
    accuracy: np.ndarray, n_items: int, seed: int, n_categories: int = 3
) -> cb.Simulation:
    """Simulate from the class-conditional / one-coin structure (errors spread evenly)."""
    rng = np.random.default_rng(seed)
    acc = accuracy if accuracy.ndim == 2 else np.repeat(accuracy[:, None], n_categories, axis=1)
    eye = np.eye(n_categories)
    confusion = acc[:, :, None] * eye + ((1 - acc) / (n_categories - 1))[:, :, None] * (1 - eye)
    prevalence = rng.dirichlet(np.full(n_categories, 5.0))
    return simulate_annotations(
        prevalence, confusion, n_items=n_items, labels_per_item=5, random_seed=rng
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "shape", "beta", "n_items", "seeds"),
    [
        pytest.param(
            cb.ClassConditional, (10, 3), (7.0, 3.0), 400, (202, 203, 2), id="class-conditional"
        ),
        pytest.param(cb.OneCoin, (15,), (6.0, 3.0), 300, (303, 304, 3), id="one-coin"),
    ],
)
def test_accuracy_model_recovery(
    model: type[cb.CrowdModel],
    shape: tuple[int, ...],
    beta: tuple[float, float],
    n_items: int,
    seeds: tuple[int, int, int],
) -> None:
    """Class-conditional (an accuracy per annotator and category) and one-coin (one per
    annotator) fitted to their own structure, accuracies drawn from a Beta distribution;
    ``seeds``: of the accuracies, of the simulation and of the fit."""
    accuracy = np.random.default_rng(seeds[0]).beta(*beta, size=shape)
    sim = accuracy_simulation(accuracy, n_items=n_items, seed=seeds[1])
    fit = model()
    messages = fit_quietly(fit, sim.annotations, random_seed=seeds[2], **NUTS)
    assert fit.diagnostics_.max_rhat < 1.02, messages
    post = fit.datatree_.posterior
    inside = coverage(accuracy, post["accuracy"])
    share = pooled_coverage(inside, coverage(sim.prevalence, post["prevalence"]))
    assert share >= MIN_COVERAGE, (share, np.argwhere(~inside))
    check_beats_majority_vote(fit, sim)


@pytest.mark.slow
def test_hierarchical_dawid_skene_recovery() -> None:
    sim = cb.simulate_hierarchical_dawid_skene(
        n_items=400,
        n_annotators=15,
        n_categories=3,
        error_mean=-2.0,
        error_scale=0.7,
        random_seed=404,
    )
    model = cb.HierarchicalDawidSkene()
    messages = fit_quietly(model, sim.annotations, random_seed=4, target_accept=0.9, **NUTS)
    assert model.diagnostics_.max_rhat < 1.02, messages
    names = ["prevalence", "error_mean", "error_scale", "confusion"]
    inside = parameter_coverage(sim, model.datatree_.posterior, names)
    assert pooled_coverage(*inside) >= MIN_COVERAGE, [part.mean() for part in inside]
    # The population means, the model's headline parameters, on their own.
    assert inside[1].mean() >= 5 / 6, inside[1]
    check_beats_majority_vote(model, sim)
