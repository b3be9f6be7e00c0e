"""Predictive checks: statistics against loops, the replication machinery against exact
probabilities, reproducibility, storage, and the check's power on item-difficulty data."""

import functools
import io
import itertools
import warnings
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytensor
import pytest
import xarray as xr
from matplotlib.figure import Figure

import crowdbayes as cb
from crowdbayes import crowd_statistics as cs
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.models import MODELS
from crowdbayes.plots import (
    plot_ppc_agreement,
    plot_ppc_annotator_frequencies,
    plot_ppc_vote_counts,
)
from crowdbayes.predictive import posterior_predictive, predictive_check, prior_predictive
from crowdbayes.simulate import simulate_annotations

matplotlib.use("Agg")

KEY_CHECKS = ["agreement_sd", "unanimous_share", "vote_count_discrepancy"]


# ---------------------------------------------------------------------------- hand computations
def hand_statistics(
    codes: list[int], items: list[int], annotators: list[int], n_categories: int
) -> dict[str, Any]:
    """Every statistic by plain loops over one label vector."""
    n_items, n_annotators = max(items) + 1, max(annotators) + 1
    votes = [[0] * n_categories for _ in range(n_items)]
    for y, i in zip(codes, items, strict=True):
        votes[i][y] += 1
    agreement, unanimous, pairs, multi = [], [], [], []
    for i in range(n_items):
        n = sum(votes[i])
        agreement.append(max(votes[i]) / n)
        if n >= 2:
            multi.append(i)
            unanimous.append(max(votes[i]) == n)
            agree = sum(c * (c - 1) for c in votes[i])
            pairs.append(agree / (n * (n - 1)))
    multi_agreement = [agreement[i] for i in multi]
    mean = sum(multi_agreement) / len(multi_agreement)
    sd = (sum((a - mean) ** 2 for a in multi_agreement) / len(multi_agreement)) ** 0.5
    cells: dict[tuple[int, int], list[int]] = {}
    for y, i, j in zip(codes, items, annotators, strict=True):
        cells.setdefault((i, j), []).append(y)
    self_pairs = []
    for ys in cells.values():
        if len(ys) >= 2:
            agree = sum(a == b for a, b in itertools.combinations(ys, 2))
            self_pairs.append(agree / (len(ys) * (len(ys) - 1) / 2))
    per_annotator = [[0] * n_categories for _ in range(n_annotators)]
    for y, j in zip(codes, annotators, strict=True):
        per_annotator[j][y] += 1
    sizes = sorted({sum(v) for v in votes})
    histogram = np.zeros((len(sizes), n_categories, max(sizes) + 1), dtype=int)
    for i in range(n_items):
        for k in range(n_categories):
            histogram[sizes.index(sum(votes[i])), k, votes[i][k]] += 1
    bins = np.zeros(7, dtype=int)  # [0, .5), [.5, .6), ..., [.9, 1), exactly 1
    for i in multi:
        a = Fraction(max(votes[i]), sum(votes[i]))
        bins[6 if a == 1 else sum(a >= Fraction(e, 10) for e in range(5, 10))] += 1
    return {
        "votes": np.array(votes),
        "agreement": np.array(agreement),
        "mean_agreement": mean,
        "agreement_sd": sd,
        "unanimous_share": sum(unanimous) / len(unanimous),
        "pairwise_agreement": sum(pairs) / len(pairs),
        "self_agreement": sum(self_pairs) / len(self_pairs) if self_pairs else np.nan,
        "category_frequency": np.array(
            [sum(y == k for y in codes) / len(codes) for k in range(n_categories)]
        ),
        "annotator_frequency": np.array([[c / sum(row) for c in row] for row in per_annotator]),
        "vote_counts": histogram,
        "n_labels": sizes,
        "agreement_histogram": bins,
    }


@pytest.fixture(scope="module")
def design() -> cb.AnnotationData:
    """12 items with 1 to 6 labels, 4 annotators (some repeat themselves), 3 categories."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(12):
        for _ in range(int(rng.integers(1, 7))):
            rows.append((f"i{i:02d}", f"a{rng.integers(0, 4)}", str(rng.choice(["x", "y", "z"]))))
    frame = pd.DataFrame(rows, columns=["item", "annotator", "label"])
    return cb.encode_annotations(frame, categories=["x", "y", "z"])


def package_statistics(labels: Any, data: cb.AnnotationData) -> dict[str, np.ndarray]:
    return {
        "votes": cs.item_vote_counts(labels, data).to_numpy(),
        "agreement": cs.item_agreement(labels, data).to_numpy(),
        "mean_agreement": cs.mean_agreement(labels, data).to_numpy(),
        "agreement_sd": cs.agreement_sd(labels, data).to_numpy(),
        "unanimous_share": cs.unanimous_share(labels, data).to_numpy(),
        "pairwise_agreement": cs.pairwise_agreement(labels, data).to_numpy(),
        "self_agreement": cs.self_agreement(labels, data).to_numpy(),
        "category_frequency": cs.category_frequencies(labels, data).to_numpy(),
        "annotator_frequency": cs.annotator_frequencies(labels, data).to_numpy(),
        "vote_counts": cs.vote_count_histogram(labels, data).to_numpy(),
        "agreement_histogram": cs.agreement_histogram(labels, data).to_numpy(),
    }


def test_statistics_match_loops_and_are_vectorised(design: cb.AnnotationData) -> None:
    n_labels = np.bincount(design.item_index)
    assert n_labels.min() == 1 and n_labels.max() >= 4  # singletons and several sizes
    cells = Counter(zip(design.item_index.tolist(), design.annotator_index.tolist(), strict=True))
    assert max(cells.values()) >= 2  # repeated labels
    rng = np.random.default_rng(0)
    draws = np.vstack([design.label_index, rng.integers(0, 3, (4, design.n_annotations))])
    stacked = package_statistics(draws, design)
    for s, codes in enumerate(draws):
        hand = hand_statistics(
            codes.tolist(),
            design.item_index.tolist(),
            design.annotator_index.tolist(),
            design.n_categories,
        )
        single = package_statistics(codes, design)
        for name, value in single.items():
            np.testing.assert_allclose(value, hand[name], rtol=1e-12, err_msg=name)
            np.testing.assert_allclose(stacked[name][s], value, rtol=1e-12, err_msg=name)
    hist = cs.vote_count_histogram(design.label_index, design)
    assert hist["n_labels"].to_numpy().tolist() == sorted(set(n_labels.tolist()))


def test_statistics_on_the_toy_data(toy_frame: pd.DataFrame) -> None:
    # Items: 1 = (a 0, b 0, c 1), 2 = (a 1, b 1), 3 = (a 0, b 1, c 1), 4 = (b 0, c 0),
    # 5 = (a 1, a 1, c 0).
    data = cb.encode_annotations(toy_frame)
    y = data.label_index
    votes = cs.item_vote_counts(y, data).to_numpy()
    assert votes.tolist() == [[2, 1], [0, 2], [1, 2], [2, 0], [1, 2]]
    np.testing.assert_allclose(cs.item_agreement(y, data), [2 / 3, 1, 2 / 3, 1, 2 / 3])
    assert float(cs.mean_agreement(y, data)) == pytest.approx(0.8)
    # The standard deviation of 2/3 (three items) and 1 (two items).
    assert float(cs.agreement_sd(y, data)) == pytest.approx(np.sqrt(6) / 15)
    assert float(cs.unanimous_share(y, data)) == pytest.approx(0.4)
    pairs = (1 / 3 + 1 + 1 / 3 + 1 + 1 / 3) / 5  # per item: 1/3 when split 2-1, 1 if unanimous
    assert float(cs.pairwise_agreement(y, data)) == pytest.approx(pairs)
    assert float(cs.self_agreement(y, data)) == 1.0  # a on item 5: 1, 1
    np.testing.assert_allclose(cs.category_frequencies(y, data), [6 / 13, 7 / 13])
    np.testing.assert_allclose(
        cs.annotator_frequencies(y, data), [[0.4, 0.6], [0.5, 0.5], [0.5, 0.5]]
    )  # a: 0 1 0 1 1, b: 0 1 1 0, c: 1 1 0 0
    hist = cs.vote_count_histogram(y, data)
    assert hist.sel(n_labels=3, category=1).to_numpy().tolist() == [0, 1, 2, 0]
    assert hist.sel(n_labels=2, category=1).to_numpy().tolist() == [1, 0, 1, 0]  # 3 votes: n/a
    assert cs.agreement_histogram(y, data).to_numpy().tolist() == [0, 0, 3, 0, 0, 0, 2]
    assert float(cs.vote_count_discrepancy(y, data, hist)) == 0.0
    expected = hist.to_numpy() + 1.0
    # Cells with votes <= n_labels: n = 2 has 2 x 3 cells, n = 3 has 2 x 4 cells.
    by_hand = sum(
        (np.sqrt(hist.to_numpy()[g, k, v]) - np.sqrt(expected[g, k, v])) ** 2
        for g, n in enumerate([2, 3])
        for k in range(2)
        for v in range(n + 1)
    )
    assert float(cs.vote_count_discrepancy(y, data, expected)) == pytest.approx(by_hand)


def test_statistics_accept_category_values(design: cb.AnnotationData) -> None:
    values = design.categories.to_numpy()[design.label_index]
    as_values = xr.DataArray(np.stack([values, values[::-1]]), dims=("draw", "annotation"))
    as_codes = np.stack([design.label_index, design.label_index[::-1]])
    for name, stat in cs.predictive_statistics(as_values, design).items():
        xr.testing.assert_identical(stat, cs.predictive_statistics(as_codes, design)[name])
    assert "self_agreement" in cs.predictive_statistics(as_codes, design)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros(3, dtype=int), "shape"),
        (np.zeros(40, dtype=float), "integers"),
        (np.full(40, 5), "codes must lie"),
        (xr.DataArray(["w"] * 40, dims="annotation"), "outside the categories"),
        (xr.DataArray(["x"] * 40, dims="label"), "'annotation' dim"),
    ],
)
def test_statistics_reject_bad_labels(design: cb.AnnotationData, labels: Any, match: str) -> None:
    assert design.n_annotations == 40
    with pytest.raises(ValueError, match=match):
        cs.item_vote_counts(labels, design)


# ---------------------------------------------------------------------------- replication
@pytest.fixture(scope="module")
def gold_map() -> tuple[cb.DawidSkene, np.ndarray]:
    """A Dawid-Skene MAP fit (one posterior draw) with gold labels for five of 30 items."""
    sim = cb.simulate_dawid_skene(n_items=30, n_annotators=4, n_categories=3, random_seed=5)
    gold = sim.true_labels.iloc[:5]
    fit = cb.DawidSkene().fit(sim.annotations, gold=gold, method="map", random_seed=0)
    return fit, gold.to_numpy()


@pytest.fixture(scope="module")
def map_fit(gold_map: tuple[cb.DawidSkene, np.ndarray]) -> cb.DawidSkene:
    """The fit of ``gold_map``."""
    return gold_map[0]


def copied_result(fit: cb.DawidSkene) -> cb.FitResult:
    """A deep copy of a fit's result, for checks that store their replicates in it."""
    return cb.FitResult(datatree=fit.result_.datatree.copy(deep=True), data=fit.result_.data)


def exact_label_probabilities(
    fit: cb.DawidSkene,
) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """From the MAP parameters by loops: p(z_i | y, theta) and, per item, its rows' label laws."""
    data = fit.result_.data
    post = fit.datatree_.posterior
    prevalence = post["prevalence"].to_numpy()[0, 0]
    confusion = post["confusion"].to_numpy()[0, 0]
    k = data.n_categories
    z_prob = np.zeros((data.n_items, k))
    for i in range(data.n_items):
        if data.gold_index[i] >= 0:
            z_prob[i, data.gold_index[i]] = 1.0
            continue
        for z in range(k):
            p = prevalence[z]
            for r in np.flatnonzero(data.item_index == i):
                p *= confusion[data.annotator_index[r], z, data.label_index[r]]
            z_prob[i, z] = p
        z_prob[i] /= z_prob[i].sum()
    rows = [
        [confusion[data.annotator_index[r]] for r in np.flatnonzero(data.item_index == i)]
        for i in range(data.n_items)
    ]
    return z_prob, rows


def test_replicated_labels_follow_the_exact_distribution(
    gold_map: tuple[cb.DawidSkene, np.ndarray],
) -> None:
    fit, gold = gold_map
    data = fit.result_.data
    n_draws = 4000
    rep = posterior_predictive(fit, n_draws=n_draws, random_seed=0)
    codes = data.categories.get_indexer(rep.to_numpy().ravel()).reshape(rep.shape)
    z_prob, rows = exact_label_probabilities(fit)
    assert np.array_equal(z_prob[:5].argmax(axis=1), data.categories.get_indexer(gold))
    z_scores = []
    for i in range(data.n_items):
        idx = np.flatnonzero(data.item_index == i)
        for r, theta in zip(idx, rows[i], strict=True):  # one label: sum_z p(z) theta[z, h]
            exact = z_prob[i] @ theta
            freq = np.bincount(codes[:, r], minlength=data.n_categories) / n_draws
            z_scores.append((freq - exact) / np.sqrt(exact * (1 - exact) / n_draws + 1e-12))
        # Two labels of one item share its true category: P(a, b) = sum_z p(z) t1[z,a] t2[z,b].
        exact_pair = np.einsum("z,za,zb->ab", z_prob[i], rows[i][0], rows[i][1])
        pair = np.zeros_like(exact_pair)
        np.add.at(pair, (codes[:, idx[0]], codes[:, idx[1]]), 1.0 / n_draws)
        sd = np.sqrt(exact_pair * (1 - exact_pair) / n_draws + 1e-12)
        z_scores.append(((pair - exact_pair) / sd).ravel())
    # About 1000 comparisons: |z| beyond 4.5 has probability ~7e-6 each.
    assert np.abs(np.concatenate([np.ravel(z) for z in z_scores])).max() < 4.5


def test_replicates_keep_the_design_and_are_seeded(
    map_fit: cb.DawidSkene,
) -> None:
    data = map_fit.result_.data
    rep = posterior_predictive(map_fit, n_draws=7, random_seed=3)
    assert rep.dims == ("draw", "annotation") and rep.shape == (7, data.n_annotations)
    assert rep.name == "label" and rep.attrs["kind"] == "posterior"
    assert rep.attrs["random_seed"] == 3
    np.testing.assert_array_equal(
        rep["annotation"], map_fit.datatree_["observed_data"]["annotation"].to_numpy()
    )
    assert set(np.unique(rep.to_numpy())) <= set(data.categories)
    # One posterior draw (MAP): every replicate comes from it.
    assert set(rep["source_chain"].to_numpy()) == {0} and set(rep["source_draw"].to_numpy()) == {0}
    xr.testing.assert_identical(rep, posterior_predictive(map_fit, n_draws=7, random_seed=3))
    assert not rep.equals(posterior_predictive(map_fit, n_draws=7, random_seed=4))
    # The replicated design is the observed one: each item keeps its number of labels.
    counts = cs.item_vote_counts(rep, data).sum("category")
    assert (counts == np.bincount(data.item_index)).all()


def test_bad_inputs_are_rejected(map_fit: cb.DawidSkene) -> None:
    with pytest.raises(ValueError, match="n_draws must be a positive integer"):
        posterior_predictive(map_fit, n_draws=0)
    mv = cb.MajorityVote().fit(map_fit.result_.data.to_frame(), random_seed=0)
    with pytest.raises(ValueError, match="no probability model"):
        posterior_predictive(mv)
    with pytest.raises(ValueError, match="no posterior"):
        posterior_predictive(mv.result_)
    with pytest.raises(ValueError, match="expected a fitted crowdbayes estimator"):
        predictive_check("fit")
    with pytest.raises(cb.NotFittedError):
        posterior_predictive(cb.DawidSkene())
    with pytest.raises(ValueError, match="Bayesian crowdbayes estimator"):
        prior_predictive(cb.MajorityVote(), map_fit.result_.data)


def test_prior_predictive_matches_the_prior_mean() -> None:
    sim = cb.simulate_dawid_skene(n_items=25, n_annotators=4, n_categories=2, random_seed=2)
    priors = cb.DawidSkenePriors(prevalence=[6.0, 2.0])
    n_draws = 3000
    rep = prior_predictive(cb.DawidSkene(priors), sim.annotations, n_draws=n_draws, random_seed=1)
    assert rep.attrs["kind"] == "prior" and rep.shape == (n_draws, len(sim.annotations))
    # P(label = 0) = sum_z E[pi_z] E[theta_z0]: pi ~ Dirichlet(6, 2), rows Dirichlet(4.8, 3.2).
    alpha = priors.prevalence_concentration(2)
    beta = priors.confusion_concentration(1, 2)[0]
    exact = sum(alpha[z] / alpha.sum() * beta[z, 0] / beta[z].sum() for z in range(2))
    assert exact == pytest.approx(0.75 * 0.6 + 0.25 * 0.4)
    per_draw = (rep.to_numpy() == 0).mean(axis=1)
    se = per_draw.std() / np.sqrt(n_draws)
    assert abs(per_draw.mean() - exact) < 4.5 * se
    again = prior_predictive("dawid-skene", sim.data, n_draws=5, random_seed=1)
    assert again.shape == (5, len(sim.annotations))
    table = cs.check_table(rep, sim.data)
    assert set(KEY_CHECKS) <= set(table["statistic"])


BAYESIAN_MODELS = sorted(
    name for name, cls in MODELS.items() if issubclass(cls, BayesianCrowdModel)
)


@pytest.mark.parametrize("name", BAYESIAN_MODELS)
def test_prior_predictive_works_for_every_model(name: str) -> None:
    sim = cb.simulate_dawid_skene(n_items=15, n_annotators=4, n_categories=3, random_seed=1)
    gold = sim.true_labels.iloc[:3]
    data = cb.encode_annotations(sim.annotations, categories=sim.categories, gold=gold)
    rep = prior_predictive(name, data, n_draws=4, random_seed=0)
    assert rep.shape == (4, data.n_annotations)
    assert set(np.unique(rep.to_numpy())) <= set(data.categories)
    xr.testing.assert_identical(rep, prior_predictive(name, data, n_draws=4, random_seed=0))


# ---------------------------------------------------------------------------- the check
def test_check_table_against_a_hand_computed_row(
    map_fit: cb.DawidSkene,
) -> None:
    data = map_fit.result_.data
    rep = posterior_predictive(map_fit, n_draws=50, random_seed=2)
    table = cs.check_table(rep, data, alpha=0.1).set_index("check")
    assert table.columns.tolist() == [
        "statistic",
        "observed",
        "replicated_mean",
        "replicated_low",
        "replicated_high",
        "ppp_value",
        "alternative",
        "flag",
    ]
    assert table.index.is_unique
    obs = float(cs.pairwise_agreement(data.label_index, data))
    draws = [float(cs.pairwise_agreement(rep.isel(draw=[s]), data)[0]) for s in range(50)]
    # Ties (replicates equal to the observed value, up to rounding) count on both sides.
    assert any(abs(d - obs) < 1e-12 for d in draws)
    upper = sum(d >= obs - 1e-12 for d in draws) / 50
    lower = sum(d <= obs + 1e-12 for d in draws) / 50
    row = table.loc["pairwise_agreement"]
    assert row["observed"] == pytest.approx(obs)
    assert row["replicated_mean"] == pytest.approx(np.mean(draws))
    assert row["replicated_low"] == pytest.approx(np.quantile(draws, 0.03))
    assert row["replicated_high"] == pytest.approx(np.quantile(draws, 0.97))
    assert row["ppp_value"] == pytest.approx(min(1.0, 2 * min(upper, lower)))
    assert row["flag"] == (row["ppp_value"] < 0.1)
    assert row["alternative"] == "two-sided"
    # The discrepancy is one-sided against the replicates' mean histogram.
    expected = cs.vote_count_histogram(rep, data).mean("draw")
    obs_d = float(cs.vote_count_discrepancy(data.label_index, data, expected))
    rep_d = cs.vote_count_discrepancy(rep, data, expected).to_numpy()
    row = table.loc["vote_count_discrepancy"]
    assert row["alternative"] == "greater"
    assert row["ppp_value"] == pytest.approx(np.mean(rep_d >= obs_d))
    # Vote counts only where votes <= n_labels; every annotator x category; categories.
    counts = table[table["statistic"] == "vote_counts"]
    n_max = int(np.bincount(data.item_index).max())
    assert len(counts) == sum(
        (n + 1) * data.n_categories for n in np.unique(np.bincount(data.item_index))
    )
    assert f"vote_counts[n_labels={n_max}, category=2, votes={n_max}]" in table.index
    assert (table["statistic"] == "annotator_frequency").sum() == 4 * 3
    with pytest.raises(ValueError, match="dims \\('draw', 'annotation'\\)"):
        cs.check_table(rep.isel(draw=0), data)


def test_predictive_check_stores_results_that_round_trip(
    map_fit: cb.DawidSkene, tmp_path: Path
) -> None:
    result = copied_result(map_fit)
    table = predictive_check(result, n_draws=30, random_seed=5)  # a FitResult: model rebuilt
    tree = result.datatree
    stored = tree["posterior_predictive"]["label"]
    assert stored.dims == ("chain", "draw", "annotation") and stored.sizes["draw"] == 30
    assert stored.sizes["chain"] == 1
    ppp = tree["summary"]["ppp_value"]
    assert ppp.dims == ("check",)
    np.testing.assert_array_equal(ppp["check"].to_numpy(), table["check"].to_numpy())
    np.testing.assert_array_equal(ppp.to_numpy(), table["ppp_value"].to_numpy())
    # The replicates are those of posterior_predictive with the same seed.
    replicates = posterior_predictive(map_fit, n_draws=30, random_seed=5)
    xr.testing.assert_equal(stored.squeeze("chain", drop=True), replicates)

    path = tmp_path / "fit.nc"
    result.save(path)
    loaded = cb.FitResult.load(path)
    xr.testing.assert_equal(loaded.datatree["posterior_predictive"]["label"], stored)
    xr.testing.assert_equal(loaded.datatree["summary"]["ppp_value"], ppp)
    pd.testing.assert_frame_equal(loaded.labels(), result.labels())
    # A loaded result replicates exactly like the fitted estimator.
    xr.testing.assert_equal(
        posterior_predictive(loaded, n_draws=30, random_seed=5).drop_attrs(),
        stored.squeeze("chain", drop=True).drop_attrs(),
    )
    # A second check replaces the first.
    predictive_check(loaded, n_draws=10, random_seed=1)
    assert loaded.datatree["posterior_predictive"]["label"].sizes["draw"] == 10
    assert loaded.datatree["summary"]["ppp_value"].sizes["check"] == len(table)


# ---------------------------------------------------------------------------- power of the check
def simulate_item_difficulty(
    seed: int, n_items: int = 200, n_annotators: int = 20, labels_per_item: int = 10
) -> pd.DataFrame:
    """Binary labels; on about 30 % of the items every annotator is at chance (hard items),
    elsewhere annotator j is right with probability acc_j ~ Beta(17, 3) (mean 0.85)."""
    rng = np.random.default_rng(seed)
    accuracy = rng.beta(17, 3, n_annotators)
    truth = rng.integers(0, 2, n_items)
    hard = rng.random(n_items) < 0.3
    rows = []
    for i in range(n_items):
        for j in rng.choice(n_annotators, labels_per_item, replace=False):
            right = rng.random() < (0.5 if hard[i] else accuracy[j])
            rows.append((i, f"a{j:02d}", int(truth[i] if right else 1 - truth[i])))
    return pd.DataFrame(rows, columns=["item", "annotator", "label"])


def simulate_from_prior(
    seed: int, n_items: int = 200, n_annotators: int = 20, labels_per_item: int = 10
) -> pd.DataFrame:
    """Dawid-Skene data, parameters drawn from the (default) prior the model is fitted with.

    Drawn from the prior so that the check is calibrated: with annotators far better than the
    prior's accuracy (0.6, pseudo-count 8), the posterior shrinks their accuracy and the check
    rightly reports fewer agreeing labels in the replicates than observed.
    """
    rng = np.random.default_rng(seed)
    priors = cb.DawidSkenePriors()
    prevalence = rng.dirichlet(priors.prevalence_concentration(2))
    rows = priors.confusion_concentration(n_annotators, 2)
    confusion = np.array([[rng.dirichlet(row) for row in ann] for ann in rows])
    sim = simulate_annotations(
        prevalence,
        confusion,
        n_items=n_items,
        labels_per_item=labels_per_item,
        workload_skew=0.0,
        random_seed=rng,
    )
    return sim.annotations


@functools.cache
def checked_nuts_fit(kind: str) -> tuple[cb.DawidSkene, pd.DataFrame]:
    """A Dawid-Skene NUTS fit and its check, on item-difficulty or Dawid-Skene data.

    PyMC's NUTS with the C backend: it compiles in seconds where Numba takes tens of seconds
    for each new data set. One chain: the sampler's warnings are recorded, not raised.
    """
    frame = simulate_item_difficulty(0) if kind == "difficulty" else simulate_from_prior(0)
    with warnings.catch_warnings(record=True), pytensor.config.change_flags(mode="CVM"):
        warnings.simplefilter("always")
        fit = cb.DawidSkene().fit(
            frame, draws=300, tune=300, chains=1, sampler="pymc", random_seed=0, progressbar=False
        )
    table = predictive_check(fit, n_draws=200, random_seed=0)
    return fit, table.set_index("check")


def test_check_flags_dawid_skene_on_item_difficulty_data() -> None:
    _, table = checked_nuts_fit("difficulty")
    # Measured on four simulated data sets: p <= 0.01 for agreement_sd and unanimous_share in
    # all, vote_count_discrepancy p = 0.000, 0.000, 0.025, 0.000.
    for check in KEY_CHECKS:
        assert table.loc[check, "flag"], check
    assert table.loc["agreement_sd", "ppp_value"] <= 0.01
    assert table.loc["unanimous_share", "ppp_value"] <= 0.01
    # More unanimous and more split items than Dawid-Skene predicts.
    assert (
        table.loc["unanimous_share", "observed"] > table.loc["unanimous_share", "replicated_high"]
    )
    split = "vote_counts[n_labels=10, category=1, votes=5]"
    assert table.loc[split, "observed"] > table.loc[split, "replicated_mean"]


def test_check_passes_dawid_skene_on_its_own_data() -> None:
    _, table = checked_nuts_fit("dawid-skene")
    for check in [*KEY_CHECKS, "mean_agreement", "pairwise_agreement"]:
        assert table.loc[check, "ppp_value"] > 0.05, check
        assert not table.loc[check, "flag"]


@pytest.mark.slow
@pytest.mark.parametrize("name", BAYESIAN_MODELS)
def test_posterior_predictive_works_for_every_model(name: str) -> None:
    sim = cb.simulate_dawid_skene(n_items=15, n_annotators=4, n_categories=3, random_seed=1)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        fit = cb.get_model(name).fit(sim.annotations, method="map", random_seed=0)
    table = predictive_check(fit, n_draws=10, random_seed=0)
    rep = fit.datatree_["posterior_predictive"]["label"]
    assert rep.shape == (1, 10, len(sim.annotations))
    assert set(np.unique(rep.to_numpy())) <= set(sim.categories)
    assert table["ppp_value"].between(0, 1).all()


@pytest.mark.slow
def test_item_difficulty_model_passes_where_dawid_skene_fails() -> None:
    """Carpenter's caries result on simulated data: the item-difficulty model reproduces the
    spread of agreement that Dawid-Skene misses."""
    with warnings.catch_warnings(record=True), pytensor.config.change_flags(mode="CVM"):
        warnings.simplefilter("always")
        fit = cb.get_model("item-difficulty").fit(
            simulate_item_difficulty(0),
            draws=300,
            tune=300,
            chains=1,
            sampler="pymc",
            random_seed=0,
            progressbar=False,
        )
    table = predictive_check(fit, n_draws=200, random_seed=0).set_index("check")
    for check in KEY_CHECKS:
        assert table.loc[check, "ppp_value"] > 0.05, check


# ---------------------------------------------------------------------------- plots
@pytest.fixture(scope="module")
def checked_map(map_fit: cb.DawidSkene) -> cb.FitResult:
    result = copied_result(map_fit)
    predictive_check(result, n_draws=40, random_seed=0)
    return result


def test_plot_ppc_agreement(checked_map: cb.FitResult) -> None:
    fig = plot_ppc_agreement(checked_map)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    hist_ax, stats_ax = fig.axes
    data = checked_map.data
    observed = cs.agreement_histogram(data.label_index, data).to_numpy()
    crosses = [line for line in hist_ax.lines if line.get_label() == "observed"]
    np.testing.assert_array_equal(crosses[0].get_ydata(), observed)
    ticks = dict(zip(stats_ax.get_yticks(), stats_ax.get_yticklabels(), strict=True))
    assert ticks[max(ticks)].get_text() == "mean agreement"  # the first statistic, at the top
    assert "self-agreement" not in [t.get_text() for t in ticks.values()]  # no repeated labels
    assert "posterior predictive" in fig.get_suptitle()
    fig.savefig(io.BytesIO(), format="png")


def test_plot_ppc_annotator_frequencies(checked_map: cb.FitResult) -> None:
    fig = plot_ppc_annotator_frequencies(checked_map)
    assert len(fig.axes) == checked_map.data.n_categories
    fig = plot_ppc_annotator_frequencies(checked_map, categories=[0], max_annotators=2)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 1
    assert len(fig.axes[0].get_yticklabels()) == 2
    with pytest.raises(ValueError, match="not in the data"):
        plot_ppc_annotator_frequencies(checked_map, categories=["nope"])


def test_plot_ppc_vote_counts(checked_map: cb.FitResult) -> None:
    data = checked_map.data
    fig = plot_ppc_vote_counts(checked_map)
    sizes = np.unique(np.bincount(data.item_index))
    assert len(fig.axes) == min(3, len(sizes)) * data.n_categories
    n = int(sizes[0])
    fig = plot_ppc_vote_counts(checked_map, n_labels=[n], categories=[2])
    (ax,) = fig.axes
    assert ax.get_title() == f"n = {n} labels: votes for 2"
    observed = cs.vote_count_histogram(data.label_index, data).sel(n_labels=n, category=2)
    cross = next(line for line in ax.lines if line.get_label() == "observed")
    np.testing.assert_array_equal(cross.get_ydata(), observed.to_numpy()[: n + 1])
    with pytest.raises(ValueError, match="no item has"):
        plot_ppc_vote_counts(checked_map, n_labels=[99])


def test_plots_need_replicates(map_fit: cb.DawidSkene) -> None:
    unchecked = copied_result(map_fit)
    if "posterior_predictive" in unchecked.datatree.children:
        del unchecked.datatree["posterior_predictive"]
    with pytest.raises(ValueError, match="run crowdbayes.predictive.predictive_check"):
        plot_ppc_agreement(unchecked)
    with pytest.raises(ValueError, match="pass the replicated labels"):
        plot_ppc_vote_counts(unchecked.data)
    prior = prior_predictive(cb.DawidSkene(), unchecked.data, n_draws=20, random_seed=0)
    fig = plot_ppc_vote_counts(unchecked.data, prior)
    assert "prior predictive" in fig.get_suptitle()


def test_arviz_ppc_tools_read_the_stored_replicates(
    map_fit: cb.DawidSkene,
) -> None:
    import arviz as az
    import matplotlib.pyplot as plt

    result = copied_result(map_fit)
    predictive_check(result, n_draws=20, random_seed=2)
    tree = result.datatree
    observed = tree["observed_data"]["label"]
    replicated = tree["posterior_predictive"]["label"]
    assert replicated.dims == ("chain", "draw", *observed.dims)
    with warnings.catch_warnings():
        # arviz-stats' own helper (point_interval_unique) builds an array it then warns about
        warnings.filterwarnings("ignore", message="Found chain dimension to be longer")
        collection = az.plot_ppc_rootogram(tree, var_names=["label"])
    assert collection is not None
    plt.close("all")
