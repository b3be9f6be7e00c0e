"""Logistic random effects (LogRndEff): likelihood by hand, simulator, MAP, NUTS, CLI.

The wrong-label logit of annotator ``j`` on item ``i`` of true category ``k`` is
``error_mean[k, h] + error_scale[k, h] * annotator_effect[j, (k, h)]
+ item_scale[k, h] * item_effect[i, m(k, h)]``, the right label's 0; the likelihood is checked
against plain loops over the user's rows (gold item, repeated label), the quadrature model used
by ``method="map"`` against scipy's adaptive integration. Shared helpers come from
``_item_effects.py``.
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _helpers import (
    MODE,
    check_log_density,
    fit_quietly,
    label_accuracy,
    mv_accuracy,
    parameter_coverage,
    pooled_coverage,
    to_value_point,
    toy_three,
    toy_two,
    value_of,
)
from _item_effects import (
    NUTS_SMALL,
    Logit,
    check_cli_fit,
    check_difficulty_table,
    check_hand_likelihood,
    check_integrated_model,
    difficulty_correlation,
    error_cell,
    fit_like_rte,
    hand_label_probabilities,
    logit_probability,
    oracle_accuracy,
    random_point,
)
from scipy import stats

import crowdbayes as cb
from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.models import MODELS, LogisticRandomEffects, get_model, rebuild_model
from crowdbayes.models.logistic_random_effects import (
    LogisticRandomEffectsPriors,
    build_logistic_random_effects,
    build_logistic_random_effects_integrated,
)
from crowdbayes.simulate import simulate_logistic_random_effects

#: The global parameters whose 94 % intervals the NUTS fits must cover.
GLOBALS = ["prevalence", "error_mean", "error_scale", "item_scale"]


def lre_logit(point: dict[str, np.ndarray], n_k: int, *, typical: bool = False) -> Logit:
    """Plain-Python logit of wrong label h; ``typical``: the population-mean annotator."""

    def logit(i: int, j: int, k: int, h: int) -> float:
        cell, rank = error_cell(k, h, n_k)
        value = float(point["error_mean"][cell])
        if not typical:
            value += float(point["error_scale"][cell]) * float(point["annotator_effect"][j][cell])
        return value + float(point["item_scale"][cell]) * float(point["item_effect"][i][rank])

    return logit


def lre_point(data: AnnotationData, seed: int = 11) -> dict[str, np.ndarray]:
    return random_point(data, seed, annotator_effects=True)


def true_annotator_logits(sim: cb.Simulation) -> np.ndarray:
    p = sim.parameters
    return p["error_mean"] + p["error_scale"] * p["annotator_effect"]


# --------------------------------------------------------------------------- likelihood
@pytest.mark.parametrize("toy", [toy_three, toy_two])
def test_likelihood_matches_hand_computation(toy: Callable[[], tuple]) -> None:
    frame, gold = toy()
    data = encode_annotations(frame, gold=gold)
    values = lre_point(data)
    n_k = data.n_categories
    logit, typical = lre_logit(values, n_k), lre_logit(values, n_k, typical=True)
    check_hand_likelihood(build_logistic_random_effects, frame, gold, values, logit, typical)


def test_confusion_is_each_annotator_on_an_average_item() -> None:
    frame, gold = toy_three()
    data = encode_annotations(frame, gold=gold)
    model = build_logistic_random_effects(data)
    values = lre_point(data)
    confusion = value_of(model, model["confusion"], to_value_point(model, values))
    logit = lre_logit({**values, "item_effect": np.zeros_like(values["item_effect"])}, 3)
    want = [
        [hand_label_probabilities(logit, 0, j, k, 3) for k in range(3)]
        for j in range(data.n_annotators)
    ]
    np.testing.assert_allclose(confusion, want, rtol=1e-12)
    assert not np.allclose(confusion[0], confusion[1])


def test_log_density_is_prior_plus_likelihood() -> None:
    frame, gold = toy_three()
    data = encode_annotations(frame, gold=gold)
    priors = LogisticRandomEffectsPriors(
        prevalence=1.3, prior_accuracy=0.65, error_mean_sd=1.3, error_scale=0.7, item_scale=0.9
    )
    values = lre_point(data, seed=3)
    probability = logit_probability(lre_logit(values, 3), 3)
    prior = (
        stats.dirichlet.logpdf(values["prevalence"], np.full(3, 1.3))
        + stats.norm.logpdf(values["error_mean"], math.log((1 - 0.65) / (0.65 * 2)), 1.3).sum()
        + stats.halfnorm.logpdf(values["error_scale"], scale=0.7).sum()
        + stats.halfnorm.logpdf(values["item_scale"], scale=0.9).sum()
        + stats.norm.logpdf(values["annotator_effect"]).sum()
        + stats.norm.logpdf(values["item_effect"]).sum()
    )
    toy = (frame, gold, data)
    check_log_density(build_logistic_random_effects, priors, toy, values, probability, prior)


def test_logp_gradient_matches_finite_differences() -> None:
    frame, gold = toy_three()
    data = encode_annotations(frame, gold=gold)
    model = build_logistic_random_effects(data)
    point = to_value_point(model, lre_point(data, seed=5))
    logp = model.compile_logp(mode=MODE)
    dlogp = model.compile_dlogp(mode=MODE)
    grad = dlogp(point)
    offset = 0
    rng = np.random.default_rng(0)
    for var in model.value_vars:
        size = int(np.size(point[var.name]))
        flat_index = int(rng.integers(size))
        step = np.zeros(size)
        step[flat_index] = 1e-6
        step = step.reshape(np.shape(point[var.name]))
        up = {**point, var.name: point[var.name] + step}
        down = {**point, var.name: point[var.name] - step}
        numeric = (logp(up) - logp(down)) / 2e-6
        assert grad[offset + flat_index] == pytest.approx(numeric, rel=1e-5, abs=1e-6), var.name
        offset += size


def test_integrated_model_matches_numerical_integration() -> None:
    # 20 Gauss-Hermite nodes: the likelihood agrees to ~1e-9, the posterior mean effect (a
    # less smooth integrand) to ~1e-5 (measured 7e-6); an indexing or gold error is >= 1e-2.
    check_integrated_model(
        build_logistic_random_effects_integrated, lre_point, lre_logit, mean_rtol=1e-4
    )


# --------------------------------------------------------------------------- simulator
def test_simulator_records_its_truth() -> None:
    sim = simulate_logistic_random_effects(n_items=40, n_annotators=6, random_seed=4)
    p = sim.parameters
    assert sorted(p) == [
        "annotator_effect",
        "difficulty",
        "error_mean",
        "error_scale",
        "item_effect",
        "item_error_rate",
        "item_scale",
    ]
    truth = sim.true_labels.to_numpy()
    np.testing.assert_allclose(p["difficulty"], p["item_error_rate"][np.arange(40), truth])
    logit = lre_logit({**p, "item_effect": np.zeros((40, 2))}, 3)
    want = [[hand_label_probabilities(logit, 0, j, k, 3) for k in range(3)] for j in range(6)]
    np.testing.assert_allclose(sim.confusion, want, rtol=1e-12)
    typical = lre_logit(p, 3, typical=True)
    for i in (0, 39):
        k = int(truth[i])
        assert p["difficulty"][i] == pytest.approx(
            1 - hand_label_probabilities(typical, i, 0, k, 3)[k], rel=1e-12
        )


def test_simulated_labels_follow_annotator_and_item() -> None:
    """Share of wrong labels = mean of each label's hand-computed error probability."""
    sim = simulate_logistic_random_effects(
        n_items=2000, n_annotators=15, item_scale=2.0, random_seed=6
    )
    p = sim.parameters
    logit = lre_logit(p, 3)
    frame = sim.annotations
    truth = sim.true_labels.to_numpy()
    index = {a: j for j, a in enumerate(sim.annotators)}
    prob_wrong = np.array(
        [
            1 - hand_label_probabilities(logit, i, index[a], int(truth[i]), 3)[int(truth[i])]
            for i, a in zip(frame["item"], frame["annotator"], strict=True)
        ]
    )
    wrong = frame["label"].to_numpy() != truth[frame["item"].to_numpy()]
    se = math.sqrt(float((prob_wrong * (1 - prob_wrong)).sum())) / len(wrong)
    assert abs(wrong.mean() - prob_wrong.mean()) < 4 * se
    # Annotators differ: the better half of annotators (by true accuracy) errs less.
    accuracy_true = sim.annotator_accuracy()
    good = accuracy_true >= accuracy_true.median()
    errs = frame.assign(wrong=wrong).groupby("annotator")["wrong"].mean()
    assert errs[good[good].index].mean() < errs[good[~good].index].mean()


def test_simulator_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="item_scale must be finite and non-negative"):
        simulate_logistic_random_effects(item_scale=np.inf)
    with pytest.raises(ValueError, match="labels_per_item must be between"):
        simulate_logistic_random_effects(n_annotators=3, labels_per_item=4)


# --------------------------------------------------------------------------- estimator: MAP
def test_registry_and_priors() -> None:
    assert MODELS["logistic-random-effects"] is LogisticRandomEffects
    assert isinstance(get_model("logistic-random-effects"), LogisticRandomEffects)
    p = LogisticRandomEffectsPriors(error_scale=0.5)
    assert LogisticRandomEffectsPriors.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="error_scale"):
        LogisticRandomEffectsPriors(error_scale=-1.0)
    with pytest.raises(ValueError, match="priors for logistic-random-effects must be"):
        LogisticRandomEffects(priors=3).fit(
            simulate_logistic_random_effects(n_items=5, random_seed=0).annotations, method="map"
        )


@pytest.fixture(scope="module")
def map_sim() -> cb.Simulation:
    return simulate_logistic_random_effects(
        n_items=300,
        n_annotators=15,
        labels_per_item=7,
        error_mean=-2.5,
        error_scale=1.0,
        item_scale=1.5,
        random_seed=8,
    )


@pytest.fixture(scope="module")
def map_fit(map_sim: cb.Simulation) -> LogisticRandomEffects:
    return LogisticRandomEffects().fit(map_sim.annotations, method="map", random_seed=0)


def test_map_labels_difficulty_and_annotators(
    map_fit: LogisticRandomEffects, map_sim: cb.Simulation
) -> None:
    """Annotators are told apart: labels clearly better than majority vote (measured 0.85 vs
    0.80; the Bayes rule at the true parameters scores 0.90, Dawid-Skene's MAP 0.84)."""
    majority = mv_accuracy(map_sim.annotations, map_sim.true_labels)
    assert label_accuracy(map_fit, map_sim) >= majority + 0.03
    assert difficulty_correlation(map_fit, map_sim) > 0.3
    check_difficulty_table(map_fit.labels_, intervals=False)
    post = map_fit.datatree_.posterior
    np.testing.assert_allclose(post["prevalence"].values[0, 0], map_sim.prevalence, atol=0.06)
    assert 0.3 < float(post["item_scale"].min()) and float(post["item_scale"].max()) < 3.0
    # Estimated and true annotator accuracies agree in rank.
    estimated = map_fit.annotators_["accuracy"]
    true = map_sim.annotator_accuracy().reindex(estimated.index)
    assert stats.spearmanr(estimated, true).statistic > 0.6


def test_rebuild_model_from_map_result(map_fit: LogisticRandomEffects) -> None:
    estimator, model = rebuild_model(map_fit.result_)
    assert isinstance(estimator, LogisticRandomEffects)
    assert {"item_effect", "annotator_effect"} <= {v.name for v in model.free_RVs}


def test_cli_fit_writes_difficulty(tmp_path: Any, capsys: Any) -> None:
    sim = simulate_logistic_random_effects(n_items=60, n_annotators=6, random_seed=9)
    check_cli_fit("logistic-random-effects", sim, tmp_path, capsys)


# --------------------------------------------------------------------------- estimator: NUTS
@pytest.fixture(scope="module")
def nuts_sim() -> cb.Simulation:
    return simulate_logistic_random_effects(
        n_items=120,
        n_annotators=8,
        n_categories=2,
        error_mean=-2.0,
        error_scale=1.0,
        item_scale=1.5,
        random_seed=3,
    )


@pytest.fixture(scope="module")
def nuts_fit(nuts_sim: cb.Simulation) -> tuple[LogisticRandomEffects, list[str]]:
    model = LogisticRandomEffects()
    messages = fit_quietly(model, nuts_sim.annotations, random_seed=1, **NUTS_SMALL)
    return model, messages


def test_nuts_recovers_labels_difficulty_and_globals(
    nuts_fit: tuple[LogisticRandomEffects, list[str]], nuts_sim: cb.Simulation
) -> None:
    model, messages = nuts_fit
    assert model.diagnostics_.permuted_chains == [], messages
    assert model.diagnostics_.n_divergent == 0, messages
    oracle = oracle_accuracy(nuts_sim, true_annotator_logits(nuts_sim))
    assert label_accuracy(model, nuts_sim) >= oracle - 0.03
    assert difficulty_correlation(model, nuts_sim) > 0.3
    post = model.datatree_.posterior
    inside = parameter_coverage(nuts_sim, post, GLOBALS)
    assert pooled_coverage(*inside) >= 6 / 8, inside
    check_difficulty_table(model.labels_, intervals=True)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="known: default NUTS does not converge on this design (R-hat 1.09, bulk ESS 42) and "
    "the labels fall short of the Bayes rule (accuracy 0.895 against 0.92 - 0.02); sampling the "
    "model with item effects integrated out is the open fix",
)
def test_nuts_recovery_binary_ten_labels() -> None:
    """Default NUTS settings on data shaped like rte / temp (``fit_like_rte``).

    With three categories and five labels per item (400 items, item_scale 2.0) the default
    run did not converge (R-hat 1.23, bulk ESS 14): see the model's module notes.
    """
    model = LogisticRandomEffects()
    sim, _ = fit_like_rte(model, simulate_logistic_random_effects, item_scale=1.5)
    # Default NUTS does not converge here either (measured: R-hat 1.09, bulk ESS 42).
    # What must hold: the fit says so, and labels, difficulties and intervals are right.
    assert label_accuracy(model, sim) >= oracle_accuracy(sim, true_annotator_logits(sim)) - 0.02
    assert label_accuracy(model, sim) >= mv_accuracy(sim.annotations, sim.true_labels)
    assert difficulty_correlation(model, sim) > 0.5
    post = model.datatree_.posterior
    inside = parameter_coverage(sim, post, [*GLOBALS, "confusion"])
    assert pooled_coverage(*inside) >= 0.85, inside
