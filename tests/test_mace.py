"""MACE: the likelihood against a hand computation, MAP / NUTS / command-line fits, recovery.

The hand computation builds each annotator's label distribution from the model's own
parameters with plain Python (``c_j [h = k] + (1 - c_j) xi_jh``, ``c_j`` the inverse logit of
``mean + scale * effect_j``) and sums the true category out item by item over the user's rows.
"""

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_likelihood import MODE, to_value_point, toy_three, toy_two, value_of
from test_recovery import MIN_COVERAGE, coverage, fit_quietly, mv_accuracy

from crowdbayes.cli import main
from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.estimators import MODELS, Mace, get_model, rebuild_model
from crowdbayes.models.mace import MacePriors, build_mace
from crowdbayes.simulate import Simulation, simulate_mace


# --------------------------------------------------------------------------- hand computation
def mace_point(data: AnnotationData, seed: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_j, n_k = data.n_annotators, data.n_categories
    return {
        "prevalence": rng.dirichlet(np.full(n_k, 2.0)),
        "competence_mean": np.asarray(0.4),
        "competence_scale": np.asarray(0.9),
        "competence_effect": rng.normal(size=n_j),
        "spam_distribution": rng.dirichlet(np.full(n_k, 1.5), size=n_j),
    }


def hand_theta(point: dict[str, np.ndarray], n_j: int, n_k: int) -> list[list[list[float]]]:
    """theta[j][k][h] with plain Python."""
    theta = []
    for j in range(n_j):
        logit = float(point["competence_mean"]) + float(point["competence_scale"]) * float(
            point["competence_effect"][j]
        )
        c = 1.0 / (1.0 + math.exp(-logit))
        xi = [float(point["spam_distribution"][j, h]) for h in range(n_k)]
        theta.append(
            [
                [c * (1.0 if h == k else 0.0) + (1.0 - c) * xi[h] for h in range(n_k)]
                for k in range(n_k)
            ]
        )
    return theta


def hand_joint(
    frame: pd.DataFrame, data: AnnotationData, prevalence: np.ndarray, theta: list
) -> dict[Any, list[float]]:
    """Per user item id: [log pi_k + sum over the item's rows of log theta[j][k][label]]."""
    ann, cats = list(data.annotators), list(data.categories)
    out: dict[Any, list[float]] = {}
    for item, annotator, label in frame[["item", "annotator", "label"]].itertuples(index=False):
        j, h = ann.index(annotator), cats.index(label)
        terms = out.setdefault(item, [math.log(p) for p in prevalence])
        for k in range(len(cats)):
            terms[k] += math.log(theta[j][k][h])
    return out


def hand_log_likelihood(joint: dict[Any, list[float]], gold: dict, cats: list) -> float:
    total = 0.0
    for item, terms in joint.items():
        if item in gold:
            total += terms[cats.index(gold[item])]
        else:
            total += math.log(sum(math.exp(t) for t in terms))
    return total


def hand_log_prior(priors: MacePriors, point: dict[str, np.ndarray]) -> float:
    n_k = len(point["prevalence"])
    lp = stats.dirichlet.logpdf(point["prevalence"], np.full(n_k, priors.prevalence))
    lp += stats.norm.logpdf(point["competence_mean"], priors.competence_location, priors.mean_scale)
    lp += stats.halfnorm.logpdf(point["competence_scale"], scale=priors.annotator_scale)
    lp += stats.norm.logpdf(point["competence_effect"]).sum()
    for xi in point["spam_distribution"]:
        lp += stats.dirichlet.logpdf(xi, np.full(n_k, priors.spam_concentration))
    return float(lp)


TOYS = {"two-categories": toy_two, "three-categories": toy_three}
PRIORS = {
    "default": MacePriors(),
    "other": MacePriors(
        prevalence=1.7,
        competence_location=0.3,
        mean_scale=2.1,
        annotator_scale=0.6,
        spam_concentration=1.3,
    ),
}


@pytest.mark.parametrize("prior_set", list(PRIORS))
@pytest.mark.parametrize("toy", list(TOYS))
def test_log_density_matches_hand_computation(toy: str, prior_set: str) -> None:
    """Whole logp (no Jacobian) = scipy priors + hand likelihood; gold item and repeat included."""
    frame, gold = TOYS[toy]()
    assert frame.duplicated().sum() == 1  # one annotator gives the same label twice
    data = encode_annotations(frame, gold=gold)
    priors = PRIORS[prior_set]
    model = build_mace(data, priors)
    point = mace_point(data)
    value_point = to_value_point(model, point)
    theta = hand_theta(point, data.n_annotators, data.n_categories)
    joint = hand_joint(frame, data, point["prevalence"], theta)
    loglik = hand_log_likelihood(joint, gold, list(data.categories))
    (potential,) = model.potentials
    assert float(value_of(model, potential, value_point)) == pytest.approx(loglik, rel=1e-12)
    logp = float(model.compile_logp(jacobian=False, mode=MODE)(value_point))
    assert logp == pytest.approx(hand_log_prior(priors, point) + loglik, rel=1e-12)


@pytest.mark.parametrize("toy", list(TOYS))
def test_named_variables_match_hand_computation(toy: str) -> None:
    frame, gold = TOYS[toy]()
    data = encode_annotations(frame, gold=gold)
    model = build_mace(data)
    point = mace_point(data, seed=9)
    value_point = to_value_point(model, point)
    n_k = data.n_categories
    theta = hand_theta(point, data.n_annotators, n_k)
    np.testing.assert_allclose(value_of(model, model["confusion"], value_point), theta, rtol=1e-12)
    competence = value_of(model, model["competence"], value_point)
    np.testing.assert_allclose(
        competence, [theta[j][0][0] - theta[j][1][0] for j in range(data.n_annotators)]
    )
    joint = hand_joint(frame, data, point["prevalence"], theta)
    np.testing.assert_allclose(
        value_of(model, model["label_joint"], value_point),
        [joint[item] for item in data.items],
        rtol=1e-12,
    )
    every = value_of(model, model["annotation_log_probability"], value_point)
    assert every.shape == (data.n_annotations, n_k, n_k)
    for r, j in enumerate(data.annotator_index):
        np.testing.assert_allclose(np.exp(every[r]), theta[j], rtol=1e-12)
    assert "item_error_rate" not in model.named_vars


def test_extreme_competence_stays_finite() -> None:
    frame, gold = toy_two()
    data = encode_annotations(frame, gold=gold)
    model = build_mace(data)
    point = mace_point(data)
    point["competence_mean"] = np.asarray(60.0)  # c = 1 - 1e-26: log(1 - c) must not be -inf
    value_point = to_value_point(model, point)
    logp = model.compile_logp(mode=MODE)(value_point)
    dlogp = model.compile_dlogp(mode=MODE)(value_point)
    assert np.isfinite(logp) and np.all(np.isfinite(dlogp))


def test_priors_validate_and_round_trip() -> None:
    priors = MacePriors(spam_concentration=0.5)
    assert MacePriors.from_dict(priors.to_dict()) == priors
    with pytest.raises(ValueError, match="competence_location"):
        MacePriors(competence_location=float("nan"))
    with pytest.raises(ValueError, match="annotator_scale"):
        MacePriors(annotator_scale=0.0)


def test_simulator_matches_its_parameters() -> None:
    sim = simulate_mace(
        n_items=3000, n_annotators=4, n_categories=3, labels_per_item=4, random_seed=3
    )
    c, xi = sim.parameters["competence"], sim.parameters["spam_distribution"]
    expected = c[:, None, None] * np.eye(3) + (1 - c)[:, None, None] * xi[:, None, :]
    np.testing.assert_allclose(sim.confusion, expected)
    # Empirical confusion of each annotator against the truth is close to the true one.
    truth = sim.true_labels.to_numpy()[sim.annotations["item"].to_numpy()]
    for j, name in enumerate(sim.annotators):
        rows = sim.annotations["annotator"].to_numpy() == name
        counts = np.zeros((3, 3))
        np.add.at(counts, (truth[rows], sim.annotations["label"].to_numpy()[rows]), 1)
        np.testing.assert_allclose(
            counts / counts.sum(1, keepdims=True), sim.confusion[j], atol=0.05
        )


# --------------------------------------------------------------------------- fits
def test_registered_for_the_command_line() -> None:
    assert MODELS["mace"] is Mace
    assert isinstance(get_model("mace"), Mace)


@pytest.fixture(scope="module")
def map_sim() -> Simulation:
    """200 items, 10 annotators; also written to CSV for the command line (same compiled graph)."""
    return simulate_mace(
        n_items=200,
        n_annotators=10,
        n_categories=3,
        competence_mean=0.0,
        spam_concentration=1.0,
        random_seed=21,
    )


@pytest.fixture(scope="module")
def map_fit(map_sim: Simulation) -> Mace:
    return Mace().fit(map_sim.annotations, method="map", random_seed=0)


def test_map_fit(map_sim: Simulation, map_fit: Mace) -> None:
    sim, fit = map_sim, map_fit
    accuracy = float((fit.labels_["label"] == sim.true_labels).mean())
    assert accuracy >= mv_accuracy(sim.annotations, sim.true_labels)
    post = fit.datatree_.posterior
    competence = post["competence"].to_numpy().ravel()
    assert np.corrcoef(competence, sim.parameters["competence"])[0, 1] > 0.8
    np.testing.assert_allclose(post["confusion"].sum("category"), 1.0)
    assert fit.diagnostics_.n_draws == 1
    estimator, model = rebuild_model(fit.result_)
    assert isinstance(estimator, Mace) and "spam_distribution" in model.named_vars


@pytest.fixture(scope="module")
def nuts_fit() -> tuple[Mace, Simulation, list[str]]:
    """A small NUTS fit on MACE's own simulation (150 items, 10 annotators, 3 categories)."""
    sim = simulate_mace(n_items=150, n_annotators=10, n_categories=3, random_seed=8)
    fit = Mace()
    messages = fit_quietly(
        fit, sim.annotations, draws=200, tune=300, chains=2, sampler="nutpie", random_seed=2
    )
    return fit, sim, messages


def test_nuts_fit_labels_and_no_label_switching(nuts_fit: tuple) -> None:
    fit, sim, messages = nuts_fit
    assert fit.diagnostics_.permuted_chains == [], messages
    assert fit.diagnostics_.n_divergent == 0, messages
    accuracy = float((fit.labels_["label"] == sim.true_labels).mean())
    assert accuracy >= mv_accuracy(sim.annotations, sim.true_labels)
    post = fit.datatree_.posterior
    assert post["competence"].dims == ("chain", "draw", "annotator")
    mean = post["competence"].mean(("chain", "draw")).to_numpy()
    assert stats.spearmanr(mean, sim.parameters["competence"]).statistic > 0.7
    # Annotator accuracy = sum_k prevalence_k confusion_jkk = c + (1 - c) sum_k prevalence_k xi_k.
    c = post["competence"]
    chance = (post["prevalence"] * post["spam_distribution"]).sum("category")
    np.testing.assert_allclose(post["annotator_accuracy"], c + (1 - c) * chance, rtol=1e-9)


def test_fit_through_the_command_line(
    map_sim: Simulation, map_fit: Mace, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    csv = tmp_path / "annotations.csv"
    map_sim.annotations.to_csv(csv, index=False)
    out = tmp_path / "out"
    rc = main(["fit", str(csv), "--model", "mace", "--method", "map", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    labels = pd.read_csv(out / "labels.csv")
    assert labels.columns.tolist() == ["item", "label", "probability", "p_0", "p_1", "p_2"]
    expected = map_fit.labels_.drop(columns="entropy").reset_index()
    pd.testing.assert_frame_equal(labels, expected, check_dtype=False, rtol=1e-6)
    assert "fitted mace" in capsys.readouterr().out


# --------------------------------------------------------------------------- slow recovery
@pytest.mark.slow
def test_mace_recovery() -> None:
    sim = simulate_mace(n_items=300, n_annotators=20, n_categories=3, random_seed=404)
    fit = Mace()
    messages = fit_quietly(fit, sim.annotations, draws=1000, tune=1000, chains=4, random_seed=4)
    d = fit.diagnostics_
    assert d.permuted_chains == [] and d.max_rhat < 1.02 and d.n_divergent == 0, messages
    accuracy = float((fit.labels_["label"] == sim.true_labels).mean())
    assert accuracy >= mv_accuracy(sim.annotations, sim.true_labels)
    post = fit.datatree_.posterior
    # Posterior means of annotators with few labels (28-36 here) are pooled towards the
    # population, so their ranking, not their raw values, is what the means must get right;
    # the calibrated check is the interval coverage below.
    mean = post["competence"].mean(("chain", "draw")).to_numpy()
    assert stats.spearmanr(mean, sim.parameters["competence"]).statistic > 0.8
    assert np.corrcoef(mean, sim.parameters["competence"])[0, 1] > 0.75
    cov_c, inside = coverage(sim.parameters["competence"], post["competence"])
    cov_xi, _ = coverage(sim.parameters["spam_distribution"], post["spam_distribution"])
    cov_prev, _ = coverage(sim.prevalence, post["prevalence"])
    assert cov_c >= 0.8, (cov_c, np.flatnonzero(~inside))
    sizes = np.array([20, 60, 3])
    share = np.dot([cov_c, cov_xi, cov_prev], sizes) / sizes.sum()
    assert share >= MIN_COVERAGE, (cov_c, cov_xi, cov_prev)
