"""MACE: the likelihood against a hand computation, MAP / NUTS / command-line fits, recovery.

The hand computation builds each annotator's label distribution from the model's own
parameters with plain Python (``c_j [h = k] + (1 - c_j) xi_jh``, ``c_j`` the inverse logit of
``mean + scale * effect_j``) and sums the true category out item by item over the user's rows.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _helpers import (
    MIN_COVERAGE,
    MODE,
    SHORT_NUTS,
    check_beats_majority_vote,
    check_label_distribution,
    check_label_joint,
    check_log_density,
    check_short_nuts_fit,
    fit_on_the_command_line,
    fit_quietly,
    hand_joint,
    parameter_coverage,
    pooled_coverage,
    recovery_fit,
    to_value_point,
    toy_two,
    value_of,
)
from scipy import stats

from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.models import MODELS, Mace, get_model, rebuild_model
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


def hand_log_prior(priors: MacePriors, point: dict[str, np.ndarray]) -> float:
    n_k = len(point["prevalence"])
    lp = stats.dirichlet.logpdf(point["prevalence"], np.full(n_k, priors.prevalence))
    lp += stats.norm.logpdf(
        point["competence_mean"], priors.competence_mean_location, priors.competence_mean_sd
    )
    lp += stats.halfnorm.logpdf(point["competence_scale"], scale=priors.competence_scale)
    lp += stats.norm.logpdf(point["competence_effect"]).sum()
    for xi in point["spam_distribution"]:
        lp += stats.dirichlet.logpdf(xi, np.full(n_k, priors.spam_distribution))
    return float(lp)


PRIORS = {
    "default": MacePriors(),
    "other": MacePriors(
        prevalence=1.7,
        competence_mean_location=0.3,
        competence_mean_sd=2.1,
        competence_scale=0.6,
        spam_distribution=1.3,
    ),
}


@pytest.mark.parametrize("prior_set", list(PRIORS))
def test_log_density_matches_hand_computation(toy: tuple, prior_set: str) -> None:
    """Whole logp (no Jacobian) = scipy priors + hand likelihood; gold item and repeat included."""
    _, _, data = toy
    point = mace_point(data)
    theta = hand_theta(point, data.n_annotators, data.n_categories)
    priors, log_prior = PRIORS[prior_set], hand_log_prior(PRIORS[prior_set], point)
    check_log_density(build_mace, priors, toy, point, lambda i, j, k, h: theta[j][k][h], log_prior)


def test_named_variables_match_hand_computation(toy: tuple) -> None:
    frame, gold, data = toy
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
    joint = hand_joint(frame, data, point["prevalence"], lambda i, j, k, h: theta[j][k][h])
    check_label_joint(model, value_point, joint, data)

    def row(i: int, j: int, k: int) -> list[float]:
        return [math.log(p) for p in theta[j][k]]

    check_label_distribution(build_mace, frame, data, point, row)
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
    priors = MacePriors(spam_distribution=0.5)
    assert MacePriors.from_dict(priors.to_dict()) == priors
    with pytest.raises(ValueError, match="competence_mean_location"):
        MacePriors(competence_mean_location=float("nan"))
    with pytest.raises(ValueError, match="competence_scale"):
        MacePriors(competence_scale=0.0)


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
    check_beats_majority_vote(map_fit, map_sim)
    post = map_fit.datatree_.posterior
    competence = post["competence"].to_numpy().ravel()
    assert np.corrcoef(competence, map_sim.parameters["competence"])[0, 1] > 0.8
    np.testing.assert_allclose(post["confusion"].sum("category"), 1.0)
    assert map_fit.diagnostics_.n_draws == 1
    estimator, model = rebuild_model(map_fit.result_)
    assert isinstance(estimator, Mace) and "spam_distribution" in model.named_vars


@pytest.fixture(scope="module")
def nuts_fit() -> tuple[Mace, Simulation, list[str]]:
    """A short NUTS fit on MACE's own simulation (150 items, 10 annotators, 3 categories)."""
    sim = simulate_mace(n_items=150, n_annotators=10, n_categories=3, random_seed=8)
    fit = Mace()
    return fit, sim, fit_quietly(fit, sim.annotations, **SHORT_NUTS)


def test_nuts_fit_labels_and_no_label_switching(nuts_fit: tuple) -> None:
    check_short_nuts_fit(*nuts_fit, skill="competence")
    post = nuts_fit[0].datatree_.posterior
    # Annotator accuracy = sum_k prevalence_k confusion_jkk = c + (1 - c) sum_k prevalence_k xi_k.
    c = post["competence"]
    chance = (post["prevalence"] * post["spam_distribution"]).sum("category")
    np.testing.assert_allclose(post["annotator_accuracy"], c + (1 - c) * chance, rtol=1e-9)


def test_fit_through_the_command_line(
    map_sim: Simulation, map_fit: Mace, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out, captured = fit_on_the_command_line("mace", map_sim.annotations, tmp_path, capsys)
    labels = pd.read_csv(out / "labels.csv")
    assert labels.columns.tolist() == ["item", "label", "probability", "p_0", "p_1", "p_2"]
    expected = map_fit.labels_.drop(columns="entropy").reset_index()
    pd.testing.assert_frame_equal(labels, expected, check_dtype=False, rtol=1e-6)
    assert "fitted mace" in captured.out


# --------------------------------------------------------------------------- slow recovery
@pytest.mark.slow
def test_mace_recovery() -> None:
    sim = simulate_mace(n_items=300, n_annotators=20, n_categories=3, random_seed=404)
    fit = Mace()
    post = recovery_fit(fit, sim)
    # Posterior means of annotators with few labels (28-36 here) are pooled towards the
    # population, so their ranking, not their raw values, is what the means must get right;
    # the calibrated check is the interval coverage below.
    mean = post["competence"].mean(("chain", "draw")).to_numpy()
    assert stats.spearmanr(mean, sim.parameters["competence"]).statistic > 0.8
    assert np.corrcoef(mean, sim.parameters["competence"])[0, 1] > 0.75
    inside = parameter_coverage(sim, post, ["competence", "spam_distribution", "prevalence"])
    assert inside[0].mean() >= 0.8, (inside[0].mean(), np.flatnonzero(~inside[0]))
    assert pooled_coverage(*inside) >= MIN_COVERAGE, [part.mean() for part in inside]
