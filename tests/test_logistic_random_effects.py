"""Logistic random effects (LogRndEff): likelihood by hand, simulator, MAP, NUTS, CLI.

The wrong-label logit of annotator ``j`` on item ``i`` of true category ``k`` is
``error_mean[k, h] + error_scale[k, h] * annotator_effect[j, (k, h)]
+ item_scale[k, h] * item_effect[i, m(k, h)]``, the right label's 0; the likelihood is checked
against plain loops over the user's rows (gold item, repeated label), the quadrature model used
by ``method="map"`` against scipy's adaptive integration. Shared helpers come from
``test_item_difficulty.py``.
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import integrate, stats
from test_item_difficulty import (
    MODE,
    NUTS_SMALL,
    Logit,
    accuracy,
    check_cli_fit,
    check_difficulty_table,
    check_named_variables,
    coverage,
    difficulty_correlation,
    error_cell,
    fit_quietly,
    hand_item_log_likelihood,
    hand_label_probabilities,
    majority_accuracy,
    oracle_accuracy,
    potential_value,
    to_value_point,
    toy_three,
    toy_two,
    value_of,
)

import crowdbayes as cb
from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.estimators import MODELS, LogisticRandomEffects, get_model, rebuild_model
from crowdbayes.models.logistic_random_effects import (
    LogisticRandomEffectsPriors,
    build_logistic_random_effects,
    build_logistic_random_effects_integrated,
)
from crowdbayes.simulate import simulate_logistic_random_effects


def lre_logit(point: dict[str, np.ndarray], n_k: int, *, typical: bool = False) -> Logit:
    """Plain-Python logit of wrong label h; ``typical``: the population-mean annotator."""

    def logit(i: int, j: int, k: int, h: int) -> float:
        cell, rank = error_cell(k, h, n_k)
        value = float(point["error_mean"][cell])
        if not typical:
            value += float(point["error_scale"][cell]) * float(point["annotator_effect"][j][cell])
        return value + float(point["item_scale"][cell]) * float(point["item_effect"][i][rank])

    return logit


def random_point(data: AnnotationData, seed: int = 11) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_k = data.n_categories
    n_err = n_k * (n_k - 1)
    return {
        "prevalence": rng.dirichlet(np.full(n_k, 2.0)),
        "error_mean": rng.normal(-1.0, 1.0, size=n_err),
        "error_scale": rng.uniform(0.3, 1.5, size=n_err),
        "item_scale": rng.uniform(0.3, 1.5, size=n_err),
        "annotator_effect": rng.normal(size=(data.n_annotators, n_err)),
        "item_effect": rng.normal(size=(data.n_items, n_k - 1)),
    }


def true_annotator_logits(sim: cb.Simulation) -> np.ndarray:
    p = sim.parameters
    return p["error_mean"] + p["error_scale"] * p["annotator_effect"]


# --------------------------------------------------------------------------- likelihood
@pytest.mark.parametrize("toy", [toy_three, toy_two])
def test_likelihood_matches_hand_computation(toy: Callable[[], tuple]) -> None:
    frame, gold = toy()
    data = encode_annotations(frame, gold=gold)
    assert data.n_annotations == len(frame) and (data.gold_index >= 0).sum() == 1
    model = build_logistic_random_effects(data)
    values = random_point(data)
    value_point = to_value_point(model, values)
    n_k = data.n_categories
    logit = lre_logit(values, n_k)
    expected = hand_item_log_likelihood(frame, gold, data, values["prevalence"], logit)
    assert len(expected) == data.n_items
    assert potential_value(model, value_point) == pytest.approx(
        sum(expected.values()), rel=1e-12, abs=1e-12
    )
    check_named_variables(
        model,
        value_point,
        frame,
        gold,
        data,
        values["prevalence"],
        logit,
        typical=lre_logit(values, n_k, typical=True),
    )


def test_confusion_is_each_annotator_on_an_average_item() -> None:
    frame, gold = toy_three()
    data = encode_annotations(frame, gold=gold)
    model = build_logistic_random_effects(data)
    values = random_point(data)
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
        prevalence=1.3, prior_accuracy=0.65, mean_scale=1.3, annotator_scale=0.7, item_scale=0.9
    )
    model = build_logistic_random_effects(data, priors)
    values = random_point(data, seed=3)
    loglik = sum(
        hand_item_log_likelihood(
            frame, gold, data, values["prevalence"], lre_logit(values, 3)
        ).values()
    )
    prior = (
        stats.dirichlet.logpdf(values["prevalence"], np.full(3, 1.3))
        + stats.norm.logpdf(values["error_mean"], math.log((1 - 0.65) / (0.65 * 2)), 1.3).sum()
        + stats.halfnorm.logpdf(values["error_scale"], scale=0.7).sum()
        + stats.halfnorm.logpdf(values["item_scale"], scale=0.9).sum()
        + stats.norm.logpdf(values["annotator_effect"]).sum()
        + stats.norm.logpdf(values["item_effect"]).sum()
    )
    logp = float(model.compile_logp(jacobian=False, mode=MODE)(to_value_point(model, values)))
    assert logp == pytest.approx(prior + loglik, rel=1e-12)


def test_logp_gradient_matches_finite_differences() -> None:
    frame, gold = toy_three()
    data = encode_annotations(frame, gold=gold)
    model = build_logistic_random_effects(data)
    point = to_value_point(model, random_point(data, seed=5))
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
    frame, gold = toy_two()
    data = encode_annotations(frame, gold=gold)
    model = build_logistic_random_effects_integrated(data)
    values = random_point(data)
    values.pop("item_effect")
    value_point = to_value_point(model, values)
    cats, ann = list(data.categories), list(data.annotators)
    total, means = 0.0, []
    for item in data.items:
        rows = [
            (ann.index(a), cats.index(lab))
            for it, a, lab in frame[["item", "annotator", "label"]].itertuples(index=False)
            if it == item
        ]
        ks = [cats.index(gold[item])] if item in gold else [0, 1]

        def likelihood(e: float, k: int, rows: list = rows) -> float:
            logit = lre_logit({**values, "item_effect": np.full((data.n_items, 1), e)}, 2)
            prod = 1.0
            for j, c in rows:
                prod *= hand_label_probabilities(logit, 0, j, k, 2)[c]
            return prod

        def moment(power: int, ks: list[int] = ks) -> float:
            return sum(
                values["prevalence"][k]
                * integrate.quad(
                    lambda e, k=k: e**power * stats.norm.pdf(e) * likelihood(e, k), -12, 12
                )[0]
                for k in ks
            )

        mass = moment(0)
        total += math.log(mass)
        means.append(moment(1) / mass)
    # 20 Gauss-Hermite nodes: the likelihood agrees to ~1e-9, the posterior mean effect (a
    # less smooth integrand) to ~1e-5 (measured 7e-6); an indexing or gold error is >= 1e-2.
    assert potential_value(model, value_point) == pytest.approx(total, rel=1e-7)
    effect = value_of(model, model["item_effect"], value_point)
    np.testing.assert_allclose(effect[:, 0], means, rtol=1e-4, atol=1e-8)


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
    p = LogisticRandomEffectsPriors(annotator_scale=0.5)
    assert LogisticRandomEffectsPriors.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="annotator_scale"):
        LogisticRandomEffectsPriors(annotator_scale=-1.0)
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
    assert accuracy(map_fit, map_sim) >= majority_accuracy(map_sim) + 0.03
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
    assert accuracy(model, nuts_sim) >= oracle - 0.03
    assert difficulty_correlation(model, nuts_sim) > 0.3
    post = model.datatree_.posterior
    p = nuts_sim.parameters
    inside = np.concatenate(
        [
            coverage(nuts_sim.prevalence, post["prevalence"]),
            coverage(p["error_mean"], post["error_mean"]),
            coverage(p["error_scale"], post["error_scale"]),
            coverage(p["item_scale"], post["item_scale"]),
        ]
    )
    assert inside.mean() >= 6 / 8, inside
    check_difficulty_table(model.labels_, intervals=True)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="known: default NUTS does not converge on this design (R-hat 1.09, bulk ESS 42) and "
    "the labels fall short of the Bayes rule (accuracy 0.895 against 0.92 - 0.02); sampling the "
    "model with item effects integrated out is the open fix",
)
def test_nuts_recovery_binary_ten_labels() -> None:
    """Default NUTS settings on data shaped like rte / temp: binary, ten labels per item.

    The item effects, sampled, mix slowly even here (see below).
    With three categories and five labels per item (400 items, item_scale 2.0) the default
    run did not converge (R-hat 1.23, bulk ESS 14): see the model's module notes.
    """
    sim = simulate_logistic_random_effects(
        n_items=400,
        n_annotators=15,
        n_categories=2,
        labels_per_item=10,
        error_mean=-2.0,
        item_scale=1.5,
        random_seed=404,
    )
    model = LogisticRandomEffects()
    messages = fit_quietly(model, sim.annotations, random_seed=4)
    assert model.diagnostics_.permuted_chains == [], messages
    # Default NUTS does not converge here either (measured: R-hat 1.09, bulk ESS 42).
    # What must hold: the fit says so, and labels, difficulties and intervals are right.
    rhat = model.diagnostics_.max_rhat
    assert (rhat > 1.01) == any("R-hat" in m for m in messages), (rhat, messages)
    assert accuracy(model, sim) >= oracle_accuracy(sim, true_annotator_logits(sim)) - 0.02
    assert accuracy(model, sim) >= majority_accuracy(sim)
    assert difficulty_correlation(model, sim) > 0.5
    post = model.datatree_.posterior
    p = sim.parameters
    inside = np.concatenate(
        [
            coverage(sim.prevalence, post["prevalence"]),
            coverage(p["error_mean"], post["error_mean"]),
            coverage(p["error_scale"], post["error_scale"]),
            coverage(p["item_scale"], post["item_scale"]),
            coverage(sim.confusion, post["confusion"]).ravel(),
        ]
    )
    assert inside.mean() >= 0.85, inside
