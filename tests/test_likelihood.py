"""The marginal likelihood of every model against an independent hand computation.

Each model's observed ``labels`` variable (its log-density per item, and their total), its whole
log density (priors included) and the draws kernel ``label_posterior_draws`` are evaluated at a
fixed parameter point and compared with plain Python loops over the user's rows: for an item
without gold, ``log sum_k pi_k prod_rows theta[j, k, l]``; for a gold item ``g``,
``log pi_g + sum_rows log theta[j, g, l]``. Repeated rows enter once each.
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytest
import xarray as xr
from _helpers import (
    MODE,
    hand_item_log_likelihood,
    hand_joint,
    labels_log_likelihood,
    rows_by_item,
    to_value_point,
    toy_three,
    toy_two,
    value_of,
)
from scipy import stats

import crowdbayes as cb
from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.fast.draws import label_posterior_draws
from crowdbayes.models import (
    build_class_conditional,
    build_dawid_skene,
    build_hierarchical_dawid_skene,
    build_one_coin,
)
from crowdbayes.summaries import (
    CONFUSION_ROWS_TAG,
    LABEL_JOINT,
    ConfusionJointEvaluator,
    DrawEvaluator,
)


# --------------------------------------------------------------------------- parameter points
def random_point(name: str, data: AnnotationData, seed: int = 11) -> dict[str, np.ndarray]:
    """A fixed, non-trivial parameter point in the constrained space of model ``name``."""
    rng = np.random.default_rng(seed)
    n_j, n_k = data.n_annotators, data.n_categories
    point = {"prevalence": rng.dirichlet(np.full(n_k, 2.0))}
    if name == "dawid-skene":
        point["confusion"] = rng.dirichlet(np.full(n_k, 1.5), size=(n_j, n_k))
    elif name == "class-conditional":
        point["accuracy"] = rng.uniform(0.2, 0.95, size=(n_j, n_k))
    elif name == "one-coin":
        point["accuracy"] = rng.uniform(0.2, 0.95, size=n_j)
    else:
        n_err = n_k * (n_k - 1)
        point["error_mean"] = rng.normal(-1.0, 1.0, size=n_err)
        point["error_scale"] = rng.uniform(0.3, 1.5, size=n_err)
        point["annotator_effect"] = rng.normal(size=(n_j, n_err))
    return point


def hand_confusion(name: str, point: dict[str, np.ndarray], n_j: int, n_k: int) -> list:
    """theta[j][k][c] with plain Python, from each model's own parameters."""
    theta = [[[0.0] * n_k for _ in range(n_k)] for _ in range(n_j)]
    for j in range(n_j):
        for k in range(n_k):
            if name == "dawid-skene":
                row = [float(point["confusion"][j, k, c]) for c in range(n_k)]
            elif name in ("class-conditional", "one-coin"):
                acc = float(
                    point["accuracy"][j, k] if name == "class-conditional" else point["accuracy"][j]
                )
                row = [acc if c == k else (1.0 - acc) / (n_k - 1) for c in range(n_k)]
            else:
                # Logit of the right label fixed at 0; wrong labels numbered row-major.
                logits = []
                for c in range(n_k):
                    if c == k:
                        logits.append(0.0)
                    else:
                        e = k * (n_k - 1) + (c if c < k else c - 1)
                        logits.append(
                            float(point["error_mean"][e])
                            + float(point["error_scale"][e])
                            * float(point["annotator_effect"][j, e])
                        )
                total = sum(math.exp(v) for v in logits)
                row = [math.exp(v) / total for v in logits]
            theta[j][k] = row
    return theta


def hand_log_likelihoods(
    frame: pd.DataFrame,
    gold: dict[Any, Any],
    data: AnnotationData,
    prevalence: np.ndarray,
    theta: Any,
) -> dict[Any, float]:
    """Per user item id, log p(labels of the item) by plain loops over the user's rows."""
    joint = hand_joint(frame, data, prevalence, lambda i, j, k, h: theta[j][k][h])
    return hand_item_log_likelihood(joint, gold, list(data.categories))


def hand_log_prior(name: str, priors: Any, point: dict[str, np.ndarray]) -> float:
    """Log prior density (no Jacobian) with scipy, from the priors' fields."""
    n_k = len(point["prevalence"])
    if name == "dawid-skene":
        alpha = np.broadcast_to(np.asarray(priors.prevalence, dtype=float), (n_k,))
    else:
        alpha = np.full(n_k, float(priors.prevalence))
    lp = stats.dirichlet.logpdf(point["prevalence"], alpha)
    if name == "dawid-skene":
        beta = priors.confusion_concentration(point["confusion"].shape[0], n_k)
        for j in range(beta.shape[0]):
            for k in range(n_k):
                lp += stats.dirichlet.logpdf(point["confusion"][j, k], beta[j, k])
    elif name in ("class-conditional", "one-coin"):
        lp += stats.beta.logpdf(
            point["accuracy"], priors.accuracy_alpha, priors.accuracy_beta
        ).sum()
    else:
        a = priors.prior_accuracy
        location = math.log((1.0 - a) / (a * (n_k - 1)))
        lp += stats.norm.logpdf(point["error_mean"], location, priors.error_mean_sd).sum()
        lp += stats.halfnorm.logpdf(point["error_scale"], scale=priors.error_scale).sum()
        lp += stats.norm.logpdf(point["annotator_effect"]).sum()
    return float(lp)


# --------------------------------------------------------------------------- model plumbing
BUILDERS: dict[str, Callable[..., pm.Model]] = {
    "dawid-skene": build_dawid_skene,
    "class-conditional": build_class_conditional,
    "one-coin": build_one_coin,
    "hierarchical-dawid-skene": build_hierarchical_dawid_skene,
}


def labels_total(model: pm.Model, point: dict[str, np.ndarray]) -> float:
    """The ``labels`` term of the model's compiled log density."""
    return float(model.compile_logp(vars=[model["labels"]], mode=MODE)(point))


def label_posterior(
    prevalence: np.ndarray, confusion: np.ndarray, data: AnnotationData
) -> tuple[np.ndarray, np.ndarray]:
    """Label probabilities and item log-likelihoods per draw from the draws kernel."""
    return label_posterior_draws(
        np.log(prevalence), np.log(confusion), data.compressed, data.gold_index
    )


def constrained_back(model: pm.Model, value_point: dict[str, np.ndarray], name: str) -> np.ndarray:
    return value_of(model, model[name], value_point)


# --------------------------------------------------------------------------- tests
def test_value_point_round_trips(toy: tuple) -> None:
    """The helper's transformed point maps back to the intended constrained values."""
    _, _, data = toy
    for name, build in BUILDERS.items():
        model = build(data)
        values = random_point(name, data)
        value_point = to_value_point(model, values)
        assert set(value_point) == {v.name for v in model.value_vars}
        for var, expected in values.items():
            np.testing.assert_allclose(constrained_back(model, value_point, var), expected)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_labels_log_likelihood_matches_hand_computation(toy: tuple, name: str) -> None:
    frame, gold, data = toy
    model = BUILDERS[name](data)
    values = random_point(name, data)
    value_point = to_value_point(model, values)
    theta = hand_confusion(name, values, data.n_annotators, data.n_categories)
    expected = hand_log_likelihoods(frame, gold, data, values["prevalence"], theta)
    assert len(expected) == data.n_items
    np.testing.assert_allclose(
        labels_log_likelihood(model, value_point),
        [expected[i] for i in data.items],
        rtol=1e-12,
        atol=1e-12,
    )
    assert labels_total(model, value_point) == pytest.approx(
        sum(expected.values()), rel=1e-12, abs=1e-12
    )
    # The model's confusion (free or deterministic) is the hand-built one.
    np.testing.assert_allclose(constrained_back(model, value_point, "confusion"), theta, rtol=1e-12)


#: Priors whose numbers are exactly representable in float32 (PyTensor would make such Python
#: floats float32 constants, losing precision in the log density) and others that are not.
PRIORS = {
    "default": {
        "dawid-skene": cb.DawidSkenePriors(),
        "class-conditional": cb.ClassConditionalPriors(),
        "one-coin": cb.OneCoinPriors(),
        "hierarchical-dawid-skene": cb.HierarchicalDawidSkenePriors(),
    },
    "round-numbers": {
        "dawid-skene": cb.DawidSkenePriors(prevalence=2.0, pseudo_count=4.0, prior_accuracy=0.75),
        "class-conditional": cb.ClassConditionalPriors(
            prevalence=1.5, accuracy_alpha=2.0, accuracy_beta=1.5
        ),
        "one-coin": cb.OneCoinPriors(prevalence=2.5, accuracy_alpha=3.0, accuracy_beta=2.0),
        "hierarchical-dawid-skene": cb.HierarchicalDawidSkenePriors(
            prevalence=2.0, prior_accuracy=0.75, error_mean_sd=1.5, error_scale=0.5
        ),
    },
    "other-numbers": {
        "dawid-skene": cb.DawidSkenePriors(prevalence=[1.3, 2.7, 0.9][:2], confusion=2.2),
        "class-conditional": cb.ClassConditionalPriors(
            prevalence=1.3, accuracy_alpha=2.2, accuracy_beta=1.7
        ),
        "one-coin": cb.OneCoinPriors(prevalence=0.7, accuracy_alpha=5.1, accuracy_beta=1.1),
        "hierarchical-dawid-skene": cb.HierarchicalDawidSkenePriors(
            prevalence=1.3, prior_accuracy=0.65, error_mean_sd=1.3, error_scale=0.7
        ),
    },
}


@pytest.mark.parametrize("prior_set", list(PRIORS))
@pytest.mark.parametrize("name", list(BUILDERS))
def test_model_log_density_is_prior_plus_likelihood(name: str, prior_set: str) -> None:
    """Whole model logp without Jacobian = scipy prior densities + hand likelihood (float64)."""
    frame, gold = toy_two()
    data = encode_annotations(frame, gold=gold)
    priors = PRIORS[prior_set][name]
    model = BUILDERS[name](data, priors)
    values = random_point(name, data)
    value_point = to_value_point(model, values)
    theta = hand_confusion(name, values, data.n_annotators, data.n_categories)
    loglik = sum(hand_log_likelihoods(frame, gold, data, values["prevalence"], theta).values())
    logp = float(model.compile_logp(jacobian=False, mode=MODE)(value_point))
    assert logp == pytest.approx(hand_log_prior(name, priors, values) + loglik, rel=1e-12)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_label_posterior_draws_match_hand_computation(toy: tuple, name: str) -> None:
    frame, gold, data = toy
    values = random_point(name, data)
    n_j, n_k = data.n_annotators, data.n_categories
    theta = hand_confusion(name, values, n_j, n_k)
    prevalence = values["prevalence"]
    probs, item_ll = label_posterior(prevalence[None], np.asarray(theta)[None], data)
    assert probs.shape == (1, data.n_items, n_k)
    assert item_ll.shape == (1, data.n_items)
    expected = hand_log_likelihoods(frame, gold, data, prevalence, theta)
    np.testing.assert_allclose(item_ll[0], [expected[i] for i in data.items], rtol=1e-12)

    cats = list(data.categories)
    by_item = rows_by_item(frame, data)
    for pos, item in enumerate(data.items):
        rows = by_item[item]
        joint = []
        for k in range(n_k):
            prod = float(prevalence[k])
            for j, c in rows:
                prod *= theta[j][k][c]
            joint.append(prod)
        if item in gold:
            want = [1.0 if cats[k] == gold[item] else 0.0 for k in range(n_k)]
        else:
            want = [p / sum(joint) for p in joint]
        np.testing.assert_allclose(probs[0, pos], want, rtol=1e-10, atol=1e-300)


def test_label_posterior_draws_over_several_draws(toy: tuple) -> None:
    """Each draw is evaluated on its own parameters (the draw axis is not mixed up)."""
    frame, gold, data = toy
    points = [random_point("dawid-skene", data, seed=s) for s in (1, 2, 3)]
    prevalence = np.stack([p["prevalence"] for p in points])
    confusion = np.stack([p["confusion"] for p in points])
    _, item_ll = label_posterior(prevalence, confusion, data)
    for d, p in enumerate(points):
        expected = hand_log_likelihoods(frame, gold, data, p["prevalence"], p["confusion"])
        np.testing.assert_allclose(item_ll[d], [expected[i] for i in data.items], rtol=1e-12)


def test_repeated_label_counts_twice(toy: tuple) -> None:
    """Dropping a duplicated row changes the likelihood by exactly that row's term."""
    frame, gold, data = toy
    dup = frame.duplicated(keep="first")
    assert dup.sum() == 1
    item, annotator, label = frame[dup].iloc[0]
    values = random_point("dawid-skene", data)
    theta = values["confusion"]
    once = encode_annotations(frame[~dup], gold=gold)
    assert once.n_annotations == data.n_annotations - 1
    _, ll_twice = label_posterior(values["prevalence"][None], theta[None], data)
    _, ll_once = label_posterior(values["prevalence"][None], theta[None], once)
    pos = data.items.get_loc(item)
    diff = ll_twice[0] - ll_once[0]
    assert np.all(diff[np.arange(data.n_items) != pos] == 0)
    assert diff[pos] < 0  # one more factor below 1
    expected = hand_log_likelihoods(frame, gold, data, values["prevalence"], theta)
    assert ll_twice[0, pos] == pytest.approx(expected[item], rel=1e-12)


# --------------------------------------------------------------------------- initial point
@pytest.fixture(scope="module")
def sim_data() -> AnnotationData:
    sim = cb.simulate_dawid_skene(n_items=40, n_annotators=5, n_categories=3, random_seed=5)
    gold = sim.true_labels.iloc[:4]
    return encode_annotations(sim.annotations, categories=sim.categories, gold=gold)


def assert_finite_at_initial_point(model: pm.Model) -> tuple[Any, Any]:
    """bambi's ``assert_ip_dlogp`` idea: the sampler's start has finite logp and gradient.

    Returns the compiled ``logp`` and ``dlogp`` for further checks.
    """
    with pytensor.config.change_flags(mode=MODE):
        ip = model.initial_point()
        logp = model.compile_logp(mode=MODE)
        dlogp = model.compile_dlogp(mode=MODE)
        per_variable = model.point_logps(ip, round_vals=12)
    assert np.isfinite(logp(ip))
    assert np.all(np.isfinite(dlogp(ip)))
    assert np.any(dlogp(ip) != 0)
    # No variable's density is -inf on its own (hidden in a sum by a +inf elsewhere).
    for var, value in per_variable.items():
        assert np.isfinite(value), var
    return logp, dlogp


@pytest.mark.parametrize("name", list(BUILDERS))
def test_logp_and_gradient_finite_at_initial_point_simulated(
    name: str, sim_data: AnnotationData
) -> None:
    assert_finite_at_initial_point(BUILDERS[name](sim_data))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_logp_and_gradient_toy(name: str) -> None:
    """Finite at the initial point; the gradient agrees with central differences elsewhere."""
    frame, gold = toy_three()
    data = encode_annotations(frame, gold=gold)
    model = BUILDERS[name](data)
    logp, dlogp = assert_finite_at_initial_point(model)
    value_point = to_value_point(model, random_point(name, data))
    names = [v.name for v in model.value_vars]
    grad = dlogp(value_point)
    flat = np.concatenate([np.ravel(value_point[n]) for n in names])
    assert grad.shape == flat.shape

    def f(x: np.ndarray) -> float:
        out, offset = {}, 0
        for n in names:
            size = np.size(value_point[n])
            out[n] = x[offset : offset + size].reshape(np.shape(value_point[n]))
            offset += size
        return float(logp(out))

    eps = 1e-6
    step = np.eye(len(flat)) * eps
    numeric = np.array([(f(flat + d) - f(flat - d)) / (2 * eps) for d in step])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name", ["dawid-skene", "class-conditional", "one-coin", "hierarchical-dawid-skene", "mace"]
)
def test_confusion_joint_from_draws_equals_the_model_expression(name: str) -> None:
    """Summaries of these models compute label_joint from the stored draws: it must be the
    model's own expression, draw by draw (including gold items and repeated rows)."""
    sim = cb.simulate_dawid_skene(n_items=30, n_annotators=5, n_categories=3, random_seed=4)
    frame = pd.concat([sim.annotations, sim.annotations.iloc[:7]])  # repeated labels
    data = encode_annotations(frame, gold=sim.true_labels.iloc[:4].to_dict())
    model = cb.get_model(name).build_model(data)
    assert getattr(model[LABEL_JOINT].tag, CONFUSION_ROWS_TAG)  # what the summaries read
    prior = pm.sample_prior_predictive(draws=6, model=model, random_seed=1)["prior"]
    prior = prior.to_dataset() if hasattr(prior, "to_dataset") else prior
    posterior = xr.Dataset({v: prior[v] for v in prior.data_vars})
    assert ConfusionJointEvaluator.applies(posterior)
    (_, (got,)), *_ = ConfusionJointEvaluator(data.compressed).iterate(posterior)
    (_, (want,)), *_ = DrawEvaluator(model, [LABEL_JOINT]).iterate(posterior)
    assert got.shape == want.shape == (6, data.n_items, 3)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_confusion_joint_needs_positive_draws() -> None:
    conf = np.full((1, 2, 3, 2, 2), 0.5)
    posterior = xr.Dataset(
        {
            "prevalence": (("chain", "draw", "category"), np.full((1, 2, 2), 0.5)),
            "confusion": (("chain", "draw", "annotator", "true_category", "category"), conf),
        }
    )
    assert ConfusionJointEvaluator.applies(posterior)
    posterior["confusion"][0, 1, 2, 0, 1] = 0.0  # underflowed: its log would be -inf
    assert not ConfusionJointEvaluator.applies(posterior)
