"""GLAD: the likelihood against a hand computation, MAP / NUTS / command-line fits, recovery.

The hand computation loops over the user's rows with plain Python: a row of annotator ``j`` on
item ``i`` has ``P(right) = 1 / (1 + exp(-a_j b_i))`` with ``a_j = mean + scale * effect_j`` and
``b_i = exp(item_scale * item_effect_i)``; a wrong label has ``(1 - P(right)) / (K - 1)``.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytensor.tensor as pt
import pytest
from _helpers import (
    MIN_COVERAGE,
    MODE,
    SHORT_NUTS,
    RowProbability,
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
    rows_by_item,
    to_value_point,
    value_of,
)
from scipy import integrate, stats

from crowdbayes.data import AnnotationData
from crowdbayes.models import MODELS, Glad, get_model, rebuild_model
from crowdbayes.models.glad import (
    GladPriors,
    build_glad,
    build_glad_integrated,
    glad_rows,
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


def glad_probability(point: dict[str, np.ndarray], n_k: int) -> RowProbability:
    """``probability(i, j, k, h)`` of the hand joint, at ``point``."""
    return lambda i, j, k, h: hand_label_probability(point, j, i, k, h, n_k)


def hand_log_prior(priors: GladPriors, point: dict[str, np.ndarray]) -> float:
    n_k = len(point["prevalence"])
    lp = stats.dirichlet.logpdf(point["prevalence"], np.full(n_k, priors.prevalence))
    lp += stats.norm.logpdf(
        point["ability_mean"], priors.ability_mean_location, priors.ability_mean_sd
    )
    lp += stats.halfnorm.logpdf(point["ability_scale"], scale=priors.ability_scale)
    lp += stats.norm.logpdf(point["ability_effect"]).sum()
    lp += stats.halfnorm.logpdf(point["item_scale"], scale=priors.item_scale)
    lp += stats.norm.logpdf(point["item_effect"]).sum()
    return float(lp)


PRIORS = {
    "default": GladPriors(),
    "other": GladPriors(
        prevalence=1.7,
        ability_mean_location=0.3,
        ability_mean_sd=2.1,
        ability_scale=0.6,
        item_scale=1.3,
    ),
}


@pytest.mark.parametrize("prior_set", list(PRIORS))
def test_log_density_matches_hand_computation(toy: tuple, prior_set: str) -> None:
    """Whole logp (no Jacobian) = scipy priors + hand likelihood; gold item and repeat included."""
    _, _, data = toy
    point = glad_point(data)
    probability = glad_probability(point, data.n_categories)
    priors = PRIORS[prior_set]
    check_log_density(build_glad, priors, toy, point, probability, hand_log_prior(priors, point))


def test_named_variables_match_hand_computation(toy: tuple) -> None:
    frame, gold, data = toy
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
    joint = hand_joint(frame, data, point["prevalence"], glad_probability(point, n_k))
    check_label_joint(model, value_point, joint, data)

    def row(i: int, j: int, k: int) -> list[float]:
        return [math.log(hand_label_probability(point, j, i, k, h, n_k)) for h in range(n_k)]

    check_label_distribution(build_glad, frame, data, point, row)


def test_row_function_is_stable_for_large_logits() -> None:
    ability, inverse_difficulty = pt.as_tensor([40.0, -40.0]), pt.as_tensor([2.0])
    rows = glad_rows([0, 0], [0, 1], [0, 0], ability, inverse_difficulty, n_categories=2)
    out = rows.eval(mode=MODE)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [[-math.exp(-80), -80.0], [-80.0, -math.exp(-80)]], rtol=1e-9)


def test_priors_validate_and_round_trip() -> None:
    priors = GladPriors(item_scale=0.8)
    assert GladPriors.from_dict(priors.to_dict()) == priors
    with pytest.raises(ValueError, match="ability_mean_location"):
        GladPriors(ability_mean_location=float("inf"))
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


def test_integrated_joint_matches_numerical_integration(toy: tuple) -> None:
    """The LOO model's per-item joint: each item's inverse difficulty integrated by quadrature.

    Hand: log pi_k + log of the integral over e ~ Normal(0, 1) of the product of the item's
    row probabilities with item_effect_i = e (scipy's adaptive quadrature).
    """
    frame, gold, data = toy
    model = build_glad_integrated(data)
    point = glad_point(data, seed=11)
    values = {k: v for k, v in point.items() if k != "item_effect"}
    value_point = to_value_point(model, values)
    n_k = data.n_categories
    by_item = rows_by_item(frame, data)
    expected = []
    for i, item in enumerate(data.items):
        rows = by_item[item]

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
    check_beats_majority_vote(map_fit, map_sim)
    ability = map_fit.datatree_.posterior["ability"].to_numpy().ravel()
    assert np.corrcoef(ability, map_sim.parameters["ability"])[0, 1] > 0.8
    labels = map_fit.labels_
    assert labels.columns[-3:].tolist() == ["difficulty", "difficulty_low", "difficulty_high"]
    assert labels["difficulty"].between(0, 1).all()
    estimator, model = rebuild_model(map_fit.result_)
    assert isinstance(estimator, Glad) and "item_error_rate" in model.named_vars


@pytest.fixture(scope="module")
def nuts_fit() -> tuple[Glad, Simulation, list[str]]:
    """A short NUTS fit on GLAD's own simulation (150 items, 10 annotators, 2 categories)."""
    sim = simulate_glad(
        n_items=150, n_annotators=10, n_categories=2, labels_per_item=5, random_seed=8
    )
    fit = Glad()
    return fit, sim, fit_quietly(fit, sim.annotations, **SHORT_NUTS)


def test_nuts_fit_labels_and_no_label_switching(nuts_fit: tuple) -> None:
    check_short_nuts_fit(*nuts_fit, skill="ability")
    inverse_difficulty = nuts_fit[0].datatree_.posterior["inverse_difficulty"]
    assert inverse_difficulty.dims == ("chain", "draw", "item")


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
    out, captured = fit_on_the_command_line("glad", map_sim.annotations, tmp_path, capsys)
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
    assert "fitted glad" in captured.out


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
    post = recovery_fit(fit, sim)
    # Posterior means of annotators with few labels (25-36 here) are pooled towards the
    # population; the calibrated check is the interval coverage below.
    mean = post["ability"].mean(("chain", "draw")).to_numpy()
    assert np.corrcoef(mean, sim.parameters["ability"])[0, 1] > 0.8
    difficulty = fit.labels_["difficulty"].to_numpy()
    assert stats.spearmanr(difficulty, sim.parameters["difficulty"]).statistic > 0.5
    inside = parameter_coverage(sim, post, ["ability", "inverse_difficulty", "prevalence"])
    assert inside[0].mean() >= 0.8, (inside[0].mean(), np.flatnonzero(~inside[0]))
    assert pooled_coverage(*inside) >= MIN_COVERAGE, [part.mean() for part in inside]
