"""GLAD: the likelihood against a hand computation, MAP / NUTS / command-line fits, recovery.

The hand computation loops over the user's rows with plain Python: a row of annotator ``j`` on
item ``i`` has ``P(right) = 1 / (1 + exp(-a_j b_i))`` with ``a_j = mean + scale * effect_j`` and
``b_i = exp(item_scale * item_effect_i)``; a wrong label has ``(1 - P(right)) / (K - 1)``.
"""

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytensor.tensor as pt
import pytest
from scipy import integrate, stats
from test_likelihood import MODE, to_value_point, toy_three, toy_two, value_of
from test_recovery import MIN_COVERAGE, coverage, fit_quietly, mv_accuracy

from crowdbayes.cli import main
from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.estimators import MODELS, Glad, get_model, rebuild_model
from crowdbayes.models.glad import (
    GladPriors,
    build_glad,
    build_glad_integrated,
    glad_row_log_probability,
)
from crowdbayes.simulate import Simulation, simulate_glad


# --------------------------------------------------------------------------- hand computation
def glad_point(data: AnnotationData, seed: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "prevalence": rng.dirichlet(np.full(data.n_categories, 2.0)),
        "ability_mean": np.asarray(0.8),
        "ability_scale": np.asarray(1.3),
        "ability_effect": rng.normal(size=data.n_annotators),
        "item_scale": np.asarray(0.7),
        "item_effect": rng.normal(size=data.n_items),
    }


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def hand_ability(point: dict[str, np.ndarray], j: int) -> float:
    return float(point["ability_mean"]) + float(point["ability_scale"]) * float(
        point["ability_effect"][j]
    )


def hand_inverse_difficulty(point: dict[str, np.ndarray], i: int) -> float:
    return math.exp(float(point["item_scale"]) * float(point["item_effect"][i]))


def hand_label_probability(point: dict, j: int, i: int, k: int, h: int, n_k: int) -> float:
    right = sigmoid(hand_ability(point, j) * hand_inverse_difficulty(point, i))
    return right if h == k else (1.0 - right) / (n_k - 1)


def hand_joint(
    frame: pd.DataFrame, data: AnnotationData, point: dict[str, np.ndarray]
) -> dict[Any, list[float]]:
    """Per user item id: [log pi_k + sum over the item's rows of log p(label | k)]."""
    ann, cats, items = list(data.annotators), list(data.categories), list(data.items)
    n_k = len(cats)
    out: dict[Any, list[float]] = {}
    for item, annotator, label in frame[["item", "annotator", "label"]].itertuples(index=False):
        i, j, h = items.index(item), ann.index(annotator), cats.index(label)
        terms = out.setdefault(item, [math.log(p) for p in point["prevalence"]])
        for k in range(n_k):
            terms[k] += math.log(hand_label_probability(point, j, i, k, h, n_k))
    return out


def hand_log_likelihood(joint: dict[Any, list[float]], gold: dict, cats: list) -> float:
    total = 0.0
    for item, terms in joint.items():
        if item in gold:
            total += terms[cats.index(gold[item])]
        else:
            total += math.log(sum(math.exp(t) for t in terms))
    return total


def hand_log_prior(priors: GladPriors, point: dict[str, np.ndarray]) -> float:
    n_k = len(point["prevalence"])
    lp = stats.dirichlet.logpdf(point["prevalence"], np.full(n_k, priors.prevalence))
    lp += stats.norm.logpdf(point["ability_mean"], priors.ability_location, priors.mean_scale)
    lp += stats.halfnorm.logpdf(point["ability_scale"], scale=priors.annotator_scale)
    lp += stats.norm.logpdf(point["ability_effect"]).sum()
    lp += stats.halfnorm.logpdf(point["item_scale"], scale=priors.item_scale)
    lp += stats.norm.logpdf(point["item_effect"]).sum()
    return float(lp)


TOYS = {"two-categories": toy_two, "three-categories": toy_three}
PRIORS = {
    "default": GladPriors(),
    "other": GladPriors(
        prevalence=1.7, ability_location=0.3, mean_scale=2.1, annotator_scale=0.6, item_scale=1.3
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
    model = build_glad(data, priors)
    point = glad_point(data)
    value_point = to_value_point(model, point)
    joint = hand_joint(frame, data, point)
    loglik = hand_log_likelihood(joint, gold, list(data.categories))
    (potential,) = model.potentials
    assert float(value_of(model, potential, value_point)) == pytest.approx(loglik, rel=1e-12)
    logp = float(model.compile_logp(jacobian=False, mode=MODE)(value_point))
    assert logp == pytest.approx(hand_log_prior(priors, point) + loglik, rel=1e-12)


@pytest.mark.parametrize("toy", list(TOYS))
def test_named_variables_match_hand_computation(toy: str) -> None:
    frame, gold = TOYS[toy]()
    data = encode_annotations(frame, gold=gold)
    model = build_glad(data)
    point = glad_point(data, seed=9)
    value_point = to_value_point(model, point)
    n_j, n_k, n_i = data.n_annotators, data.n_categories, data.n_items
    # confusion: an item of average difficulty (inverse difficulty 1)
    expected = [
        [
            [
                sigmoid(hand_ability(point, j))
                if h == k
                else (1 - sigmoid(hand_ability(point, j))) / (n_k - 1)
                for h in range(n_k)
            ]
            for k in range(n_k)
        ]
        for j in range(n_j)
    ]
    np.testing.assert_allclose(
        value_of(model, model["confusion"], value_point), expected, rtol=1e-12
    )
    np.testing.assert_allclose(
        value_of(model, model["inverse_difficulty"], value_point),
        [hand_inverse_difficulty(point, i) for i in range(n_i)],
        rtol=1e-12,
    )
    # item_error_rate: a typical annotator (ability = mean), the same for every true category
    error = value_of(model, model["item_error_rate"], value_point)
    typical = [
        1 - sigmoid(float(point["ability_mean"]) * hand_inverse_difficulty(point, i))
        for i in range(n_i)
    ]
    np.testing.assert_allclose(error, np.repeat(np.array(typical)[:, None], n_k, 1), rtol=1e-12)
    joint = hand_joint(frame, data, point)
    np.testing.assert_allclose(
        value_of(model, model["label_joint"], value_point),
        [joint[item] for item in data.items],
        rtol=1e-12,
    )
    every = value_of(model, model["annotation_log_probability"], value_point)
    assert every.shape == (data.n_annotations, n_k, n_k)
    for r, (i, j) in enumerate(zip(data.item_index, data.annotator_index, strict=True)):
        want = [
            [hand_label_probability(point, j, i, k, h, n_k) for h in range(n_k)] for k in range(n_k)
        ]
        np.testing.assert_allclose(np.exp(every[r]), want, rtol=1e-12)


def test_row_function_is_stable_for_large_logits() -> None:
    f = glad_row_log_probability(pt.as_tensor([40.0, -40.0]), pt.as_tensor([2.0]), 2)
    out = f(np.array([0, 0]), np.array([0, 1]), np.array([0, 0])).eval(mode=MODE)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [[-math.exp(-80), -80.0], [-80.0, -math.exp(-80)]], rtol=1e-9)


def test_priors_validate_and_round_trip() -> None:
    priors = GladPriors(item_scale=0.8)
    assert GladPriors.from_dict(priors.to_dict()) == priors
    with pytest.raises(ValueError, match="ability_location"):
        GladPriors(ability_location=float("inf"))
    with pytest.raises(ValueError, match="item_scale"):
        GladPriors(item_scale=0.0)


def test_simulator_matches_its_parameters() -> None:
    sim = simulate_glad(
        n_items=4000,
        n_annotators=4,
        n_categories=3,
        labels_per_item=4,
        ability_mean=1.0,
        item_scale=0.8,
        random_seed=3,
    )
    p = sim.parameters
    np.testing.assert_allclose(p["inverse_difficulty"], np.exp(0.8 * p["item_effect"]))
    np.testing.assert_allclose(p["difficulty"], 1 / (1 + np.exp(1.0 * p["inverse_difficulty"])))
    right = 1 / (1 + np.exp(-p["ability"]))
    np.testing.assert_allclose(
        np.diagonal(sim.confusion, axis1=1, axis2=2), np.repeat(right[:, None], 3, 1)
    )
    # Labels: correct with the item-level probability, wrong labels uniform over the others.
    frame = sim.annotations
    item = frame["item"].to_numpy()
    j = pd.Index(sim.annotators).get_indexer(frame["annotator"])
    truth = sim.true_labels.to_numpy()[item]
    correct = frame["label"].to_numpy() == truth
    expected = 1 / (1 + np.exp(-p["ability"][j] * p["inverse_difficulty"][item]))
    assert abs(correct.mean() - expected.mean()) < 3 * np.sqrt(0.25 / len(frame))
    shift = (frame["label"].to_numpy() - truth)[~correct] % 3
    assert abs((shift == 1).mean() - 0.5) < 0.05


@pytest.mark.parametrize("toy", list(TOYS))
def test_integrated_joint_matches_numerical_integration(toy: str) -> None:
    """The LOO model's per-item joint: each item's inverse difficulty integrated by quadrature.

    Hand: log pi_k + log of the integral over e ~ Normal(0, 1) of the product of the item's
    row probabilities with item_effect_i = e (scipy's adaptive quadrature).
    """
    frame, gold = TOYS[toy]()
    data = encode_annotations(frame, gold=gold)
    model = build_glad_integrated(data)
    point = glad_point(data, seed=11)
    values = {k: v for k, v in point.items() if k != "item_effect"}
    value_point = to_value_point(model, values)
    n_k = data.n_categories
    cats, ann = list(data.categories), list(data.annotators)
    expected = []
    for i, item in enumerate(data.items):
        rows = [
            (ann.index(a), cats.index(lab))
            for it, a, lab in frame[["item", "annotator", "label"]].itertuples(index=False)
            if it == item
        ]

        def likelihood(e: float, k: int, i: int = i, rows: list = rows) -> float:
            effect = np.zeros(data.n_items)
            effect[i] = e
            at = {**values, "item_effect": effect}
            return math.prod(hand_label_probability(at, j, i, k, h, n_k) for j, h in rows)

        expected.append(
            [
                math.log(point["prevalence"][k])
                + math.log(
                    integrate.quad(lambda e, k=k: stats.norm.pdf(e) * likelihood(e, k), -12, 12)[0]
                )
                for k in range(n_k)
            ]
        )
    # 20 Gauss-Hermite nodes on a smooth integrand: agreement to ~1e-8; an indexing error or a
    # conditional (not integrated) joint is off by >= 1e-2.
    np.testing.assert_allclose(
        value_of(model, model["label_joint"], value_point), expected, rtol=1e-6
    )


# --------------------------------------------------------------------------- fits
def test_registered_for_the_command_line() -> None:
    assert MODELS["glad"] is Glad
    assert isinstance(get_model("glad"), Glad)


@pytest.fixture(scope="module")
def map_sim() -> Simulation:
    """200 items, 10 annotators; also written to CSV for the command line (same compiled graph)."""
    return simulate_glad(n_items=200, n_annotators=10, n_categories=2, random_seed=21)


@pytest.fixture(scope="module")
def map_fit(map_sim: Simulation) -> Glad:
    return Glad().fit(map_sim.annotations, method="map", random_seed=0)


def test_map_fit(map_sim: Simulation, map_fit: Glad) -> None:
    sim, fit = map_sim, map_fit
    accuracy = float((fit.labels_["label"] == sim.true_labels).mean())
    assert accuracy >= mv_accuracy(sim.annotations, sim.true_labels)
    post = fit.datatree_.posterior
    ability = post["ability"].to_numpy().ravel()
    assert np.corrcoef(ability, sim.parameters["ability"])[0, 1] > 0.8
    labels = fit.labels_
    assert labels.columns[-3:].tolist() == ["difficulty", "difficulty_low", "difficulty_high"]
    assert labels["difficulty"].between(0, 1).all()
    estimator, model = rebuild_model(fit.result_)
    assert isinstance(estimator, Glad) and "item_error_rate" in model.named_vars


@pytest.fixture(scope="module")
def nuts_fit() -> tuple[Glad, Simulation, list[str]]:
    """A small NUTS fit on GLAD's own simulation (150 items, 10 annotators, 2 categories)."""
    sim = simulate_glad(
        n_items=150, n_annotators=10, n_categories=2, labels_per_item=5, random_seed=8
    )
    fit = Glad()
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
    assert post["ability"].dims == ("chain", "draw", "annotator")
    assert post["inverse_difficulty"].dims == ("chain", "draw", "item")
    mean = post["ability"].mean(("chain", "draw")).to_numpy()
    assert stats.spearmanr(mean, sim.parameters["ability"]).statistic > 0.7


def test_nuts_difficulty_is_the_typical_error_rate(nuts_fit: tuple) -> None:
    """Summary difficulty = posterior mean of 1 - sigmoid(ability_mean * inverse_difficulty)."""
    fit, sim, _ = nuts_fit
    post = fit.datatree_.posterior
    eta = post["ability_mean"] * post["inverse_difficulty"]
    draws = 1.0 / (1.0 + np.exp(eta))
    labels = fit.labels_
    np.testing.assert_allclose(labels["difficulty"], draws.mean(("chain", "draw")), rtol=1e-9)
    assert (labels["difficulty_low"] <= labels["difficulty"]).all()
    assert (labels["difficulty"] <= labels["difficulty_high"]).all()


def test_fit_through_the_command_line(
    map_sim: Simulation, map_fit: Glad, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    csv = tmp_path / "annotations.csv"
    map_sim.annotations.to_csv(csv, index=False)
    out = tmp_path / "out"
    rc = main(["fit", str(csv), "--model", "glad", "--method", "map", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    labels = pd.read_csv(out / "labels.csv")
    assert labels.columns.tolist() == [
        "item",
        "label",
        "probability",
        "p_0",
        "p_1",
        "difficulty",
        "difficulty_low",
        "difficulty_high",
    ]
    expected = map_fit.labels_.drop(columns="entropy").reset_index()
    pd.testing.assert_frame_equal(labels, expected, check_dtype=False, rtol=1e-6)
    assert labels["difficulty"].between(0, 1).all()
    assert "fitted glad" in capsys.readouterr().out


# --------------------------------------------------------------------------- slow recovery
@pytest.mark.slow
def test_glad_recovery() -> None:
    sim = simulate_glad(
        n_items=300,
        n_annotators=20,
        n_categories=2,
        labels_per_item=8,
        ability_mean=1.2,
        item_scale=0.7,
        random_seed=404,
    )
    fit = Glad()
    messages = fit_quietly(fit, sim.annotations, draws=1000, tune=1000, chains=4, random_seed=4)
    d = fit.diagnostics_
    assert d.permuted_chains == [] and d.max_rhat < 1.02 and d.n_divergent == 0, messages
    accuracy = float((fit.labels_["label"] == sim.true_labels).mean())
    assert accuracy >= mv_accuracy(sim.annotations, sim.true_labels)
    post = fit.datatree_.posterior
    # Posterior means of annotators with few labels (25-36 here) are pooled towards the
    # population; the calibrated check is the interval coverage below.
    mean = post["ability"].mean(("chain", "draw")).to_numpy()
    assert np.corrcoef(mean, sim.parameters["ability"])[0, 1] > 0.8
    difficulty = fit.labels_["difficulty"].to_numpy()
    assert stats.spearmanr(difficulty, sim.parameters["difficulty"]).statistic > 0.5
    cov_a, inside = coverage(sim.parameters["ability"], post["ability"])
    assert cov_a >= 0.8, (cov_a, np.flatnonzero(~inside))
    cov_b, _ = coverage(sim.parameters["inverse_difficulty"], post["inverse_difficulty"])
    cov_prev, _ = coverage(sim.prevalence, post["prevalence"])
    sizes = np.array([20, 300, 2])
    share = np.dot([cov_a, cov_b, cov_prev], sizes) / sizes.sum()
    assert share >= MIN_COVERAGE, (cov_a, cov_b, cov_prev)
