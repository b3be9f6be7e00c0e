"""Item difficulty (ItemDiff, Paun et al. 2018): likelihood by hand, simulator, MAP, NUTS, CLI.

The likelihood is checked against plain Python loops over the user's rows at a fixed parameter
point: for an item without gold, ``log sum_k pi_k prod_rows p(label | k, item)`` with
``p = softmax`` of the logits ``0`` (right label) and
``error_mean[k, h] + item_scale[k, h] * item_effect[i, m(k, h)]`` (wrong label ``h``, ``m`` its
rank among the wrong labels of ``k``); a gold item keeps its gold category's term; a repeated
row enters once per repetition. The integrated model (item effects summed out by quadrature,
used by ``method="map"``) is checked against scipy's adaptive integration.

Helpers here are shared with ``test_logistic_random_effects.py``.
"""

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import xarray as xr
from scipy import integrate, stats
from scipy.special import logsumexp

import crowdbayes as cb
from crowdbayes.cli import main
from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.diagnostics import SamplingWarning
from crowdbayes.estimators import MODELS, ItemDifficulty, get_model, rebuild_model
from crowdbayes.models.item_difficulty import (
    ItemDifficultyPriors,
    build_item_difficulty,
    build_item_difficulty_integrated,
    item_quadrature,
)
from crowdbayes.results import CI_PROB, interval_summary
from crowdbayes.simulate import simulate_item_difficulty

# The Python linker compiles in milliseconds; the values are the same on every backend.
MODE = "FAST_COMPILE"
#: Small NUTS settings of the default run (PyMC's sampler compiles fastest for one fit).
NUTS_SMALL = {"draws": 250, "tune": 250, "chains": 2, "sampler": "pymc"}
DIFFICULTY_COLUMNS = ["difficulty", "difficulty_low", "difficulty_high"]


# --------------------------------------------------------------------------- toy data
def toy_three() -> tuple[pd.DataFrame, dict[Any, Any]]:
    """Five items, three annotators, three string categories; (q2, w1, y) given twice; q4 gold."""
    frame = pd.DataFrame(
        {
            "item": ["q1", "q1", "q1", "q2", "q2", "q2", "q3", "q3", "q4", "q4", "q4", "q5", "q5"],
            "annotator": ["w1", "w2", "w3", "w1", "w1", "w2", "w2", "w3", "w1", "w2", "w3", "w1"]
            + ["w3"],
            "label": ["x", "y", "x", "y", "y", "z", "z", "z", "x", "x", "y", "z", "x"],
        }
    )
    return frame, {"q4": "x"}


def toy_two() -> tuple[pd.DataFrame, dict[Any, Any]]:
    """Five items, three annotators, two categories; (5, a, 1) given twice; item 3 gold."""
    frame = pd.DataFrame(
        {
            "item": [1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 5],
            "annotator": ["a", "b", "c", "a", "b", "a", "b", "c", "b", "c", "a", "a", "c"],
            "label": [0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0],
        }
    )
    return frame, {3: 1}


# --------------------------------------------------------------------------- hand computation
def error_cell(k: int, h: int, n_k: int) -> tuple[int, int]:
    """(off-diagonal cell number, rank of h among the wrong labels of k), by counting."""
    cell = 0
    for row in range(n_k):
        rank = 0
        for col in range(n_k):
            if col == row:
                continue
            if (row, col) == (k, h):
                return cell, rank
            cell += 1
            rank += 1
    raise AssertionError("diagonal cell")


def softmax_row(logits: list[float]) -> list[float]:
    total = sum(math.exp(v) for v in logits)
    return [math.exp(v) / total for v in logits]


#: ``logit(item_position, annotator_position, k, h)`` of a wrong label h given true category k.
Logit = Callable[[int, int, int, int], float]


def hand_label_probabilities(logit: Logit, i: int, j: int, k: int, n_k: int) -> list[float]:
    """P(each label | item i, annotator j, true category k), diagonal logit 0."""
    return softmax_row([0.0 if h == k else logit(i, j, k, h) for h in range(n_k)])


def hand_item_log_likelihood(
    frame: pd.DataFrame, gold: dict[Any, Any], data: AnnotationData, prevalence: Any, logit: Logit
) -> dict[Any, float]:
    """Per user item id, log p(labels of the item) by loops over the user's rows."""
    items, ann, cats = list(data.items), list(data.annotators), list(data.categories)
    n_k = len(cats)
    rows_by_item: dict[Any, list[tuple[int, int]]] = {}
    for item, annotator, label in frame[["item", "annotator", "label"]].itertuples(index=False):
        rows_by_item.setdefault(item, []).append((ann.index(annotator), cats.index(label)))
    out = {}
    for item, rows in rows_by_item.items():
        i = items.index(item)
        terms = []
        for k in range(n_k):
            prod = float(prevalence[k])
            for j, c in rows:
                prod *= hand_label_probabilities(logit, i, j, k, n_k)[c]
            terms.append(prod)
        if item in gold:
            out[item] = math.log(terms[cats.index(gold[item])])
        else:
            out[item] = math.log(sum(terms))
    return out


def item_difficulty_logit(point: dict[str, np.ndarray], n_k: int) -> Logit:
    def logit(i: int, j: int, k: int, h: int) -> float:
        cell, rank = error_cell(k, h, n_k)
        return float(point["error_mean"][cell]) + float(point["item_scale"][cell]) * float(
            point["item_effect"][i][rank]
        )

    return logit


def random_point(data: AnnotationData, seed: int = 11) -> dict[str, np.ndarray]:
    """A fixed, non-trivial ItemDiff parameter point (constrained space)."""
    rng = np.random.default_rng(seed)
    n_k = data.n_categories
    n_err = n_k * (n_k - 1)
    return {
        "prevalence": rng.dirichlet(np.full(n_k, 2.0)),
        "error_mean": rng.normal(-1.0, 1.0, size=n_err),
        "item_scale": rng.uniform(0.3, 1.5, size=n_err),
        "item_effect": rng.normal(size=(data.n_items, n_k - 1)),
    }


# --------------------------------------------------------------------------- model plumbing
def to_value_point(model: pm.Model, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Constrained values of the free variables -> the model's (transformed) value point."""
    point = {}
    for rv in model.free_RVs:
        value = np.asarray(values[rv.name], dtype=float)
        transform = model.rvs_to_transforms.get(rv)
        if transform is not None:
            forward = transform.forward(pt.as_tensor(value), *rv.owner.inputs)
            value = pytensor.function([], forward, mode=MODE)()
        point[model.rvs_to_values[rv].name] = np.asarray(value, dtype=float)
    return point


def value_of(model: pm.Model, var: Any, value_point: dict[str, np.ndarray]) -> np.ndarray:
    """Evaluate a model graph at a value point."""
    (graph,) = model.replace_rvs_by_values([var])
    fn = model.compile_fn(graph, inputs=model.value_vars, mode=MODE, on_unused_input="ignore")
    return np.asarray(fn(value_point))


def potential_value(model: pm.Model, value_point: dict[str, np.ndarray]) -> float:
    (potential,) = [p for p in model.potentials if p.name == "label_likelihood"]
    return float(value_of(model, potential, value_point))


def check_named_variables(
    model: pm.Model,
    value_point: dict[str, np.ndarray],
    frame: pd.DataFrame,
    gold: dict[Any, Any],
    data: AnnotationData,
    prevalence: np.ndarray,
    logit: Logit,
    typical: Logit,
) -> None:
    """label_joint, annotation_log_probability and item_error_rate against the hand values."""
    items, ann, cats = list(data.items), list(data.annotators), list(data.categories)
    n_k = len(cats)
    # Every original row, in the package's (item-sorted) order.
    frame_sorted = frame.assign(_pos=frame["item"].map(items.index)).sort_values(
        "_pos", kind="stable"
    )
    every = value_of(model, model["annotation_log_probability"], value_point)
    assert every.shape == (data.n_annotations, n_k, n_k)
    for r, (item, annotator) in enumerate(
        frame_sorted[["item", "annotator"]].itertuples(index=False)
    ):
        i, j = items.index(item), ann.index(annotator)
        for k in range(n_k):
            want = [math.log(p) for p in hand_label_probabilities(logit, i, j, k, n_k)]
            np.testing.assert_allclose(every[r, k], want, rtol=1e-12)
    joint = value_of(model, model["label_joint"], value_point)
    rows_by_item: dict[Any, list[tuple[int, int]]] = {}
    for item, annotator, label in frame[["item", "annotator", "label"]].itertuples(index=False):
        rows_by_item.setdefault(item, []).append((ann.index(annotator), cats.index(label)))
    for item, rows in rows_by_item.items():
        i = items.index(item)
        for k in range(n_k):
            want = math.log(prevalence[k]) + sum(
                math.log(hand_label_probabilities(logit, i, j, k, n_k)[c]) for j, c in rows
            )
            assert joint[i, k] == pytest.approx(want, rel=1e-12)
    error_rate = value_of(model, model["item_error_rate"], value_point)
    assert error_rate.shape == (data.n_items, n_k)
    for i in range(data.n_items):
        for k in range(n_k):
            want = 1.0 - hand_label_probabilities(typical, i, -1, k, n_k)[k]
            assert error_rate[i, k] == pytest.approx(want, rel=1e-12)


# --------------------------------------------------------------------------- estimation helpers
def coverage(truth: np.ndarray, draws: xr.DataArray) -> np.ndarray:
    """Whether each entry's truth lies in the equal-tailed 94 % interval of the draws."""
    summary = interval_summary(draws, prob=CI_PROB)
    low = summary.sel(statistic="lower").to_numpy()
    high = summary.sel(statistic="upper").to_numpy()
    return (low <= truth) & (truth <= high)


def fit_quietly(model: cb.CrowdModel, annotations: Any, **kwargs: Any) -> list[str]:
    """Fit, returning the SamplingWarnings (any other warning still fails the test)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        model.fit(annotations, progressbar=False, **kwargs)
    for w in caught:
        if not issubclass(w.category, SamplingWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return [str(w.message) for w in caught if issubclass(w.category, SamplingWarning)]


def oracle_accuracy(sim: cb.Simulation, annotator_logits: np.ndarray | None = None) -> float:
    """Accuracy of the Bayes rule at the true parameters, item effects integrated by Monte Carlo.

    Plain NumPy, independent of the package's quadrature: the best a fit can hope for on
    average. ``annotator_logits`` (annotator in ``sim.annotators`` order, error cell): each
    annotator's wrong-label logits; default ``error_mean`` for every annotator (ItemDiff).
    """
    p, data = sim.parameters, sim.data
    n_k = len(sim.categories)
    rng = np.random.default_rng(0)
    effect = rng.standard_normal((2000, n_k - 1))
    shift = p["item_scale"] * effect[:, np.tile(np.arange(n_k - 1), n_k)]  # (draw, cell)
    rows, cols = np.nonzero(~np.eye(n_k, dtype=bool))
    if annotator_logits is None:
        annotator_logits = np.tile(p["error_mean"], (len(sim.annotators), 1))
    order = [sim.annotators.index(a) for a in data.annotators]
    base = annotator_logits[order]
    truth = sim.true_labels.reindex(data.items).to_numpy()
    correct = 0
    for i in range(data.n_items):
        mine = data.item_index == i
        js, labels = data.annotator_index[mine], data.label_index[mine]
        logits = np.zeros((len(effect), len(js), n_k, n_k))
        logits[..., rows, cols] = base[js][None] + shift[:, None]
        logp = logits - logsumexp(logits, axis=-1, keepdims=True)
        picked = np.take_along_axis(logp, labels[None, :, None, None], axis=3)[..., 0]
        joint = np.log(sim.prevalence) + logsumexp(picked.sum(axis=1), axis=0)
        correct += int(joint.argmax() == truth[i])
    return correct / data.n_items


def majority_accuracy(sim: cb.Simulation) -> float:
    labels = cb.MajorityVote().fit(sim.annotations, random_seed=0).labels_["label"]
    return float((labels == sim.true_labels).mean())


def accuracy(model: cb.CrowdModel, sim: cb.Simulation) -> float:
    return float((model.labels_["label"] == sim.true_labels).mean())


def difficulty_correlation(model: cb.CrowdModel, sim: cb.Simulation) -> float:
    estimate = model.labels_["difficulty"].reindex(sim.true_labels.index).to_numpy()
    return float(np.corrcoef(estimate, sim.parameters["difficulty"])[0, 1])


def check_difficulty_table(labels: pd.DataFrame, *, intervals: bool) -> None:
    assert labels.columns[-3:].tolist() == DIFFICULTY_COLUMNS
    assert labels["difficulty"].between(0, 1).all()
    if intervals:
        assert (labels["difficulty_low"] <= labels["difficulty"]).all()
        assert (labels["difficulty"] <= labels["difficulty_high"]).all()
    else:
        assert labels[["difficulty_low", "difficulty_high"]].isna().all().all()


def check_cli_fit(model_name: str, sim: cb.Simulation, tmp_path: Any, capsys: Any) -> None:
    csv = tmp_path / "annotations.csv"
    sim.annotations.to_csv(csv, index=False)
    out = tmp_path / "out"
    rc = main(["fit", str(csv), "--model", model_name, "--method", "map", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    labels = pd.read_csv(out / "labels.csv")
    categories = [str(c) for c in sim.categories]
    assert labels.columns.tolist() == [
        "item",
        "label",
        "probability",
        *[f"p_{c}" for c in categories],
        *DIFFICULTY_COLUMNS,
    ]
    check_difficulty_table(labels, intervals=False)
    loaded = cb.FitResult.load(out / "fit.nc")
    assert loaded.model_name == model_name
    np.testing.assert_allclose(loaded.labels()["difficulty"], labels["difficulty"])


# =========================================================================== tests
# --------------------------------------------------------------------------- likelihood
@pytest.mark.parametrize("toy", [toy_three, toy_two])
def test_likelihood_matches_hand_computation(toy: Callable[[], tuple]) -> None:
    frame, gold = toy()
    data = encode_annotations(frame, gold=gold)
    assert data.n_annotations == len(frame) and (data.gold_index >= 0).sum() == 1
    model = build_item_difficulty(data)
    values = random_point(data)
    value_point = to_value_point(model, values)
    logit = item_difficulty_logit(values, data.n_categories)
    expected = hand_item_log_likelihood(frame, gold, data, values["prevalence"], logit)
    assert len(expected) == data.n_items
    assert potential_value(model, value_point) == pytest.approx(
        sum(expected.values()), rel=1e-12, abs=1e-12
    )
    # The typical annotator is every annotator here.
    check_named_variables(
        model, value_point, frame, gold, data, values["prevalence"], logit, typical=logit
    )


def test_confusion_is_the_average_item_for_every_annotator() -> None:
    frame, gold = toy_three()
    data = encode_annotations(frame, gold=gold)
    model = build_item_difficulty(data)
    values = random_point(data)
    confusion = value_of(model, model["confusion"], to_value_point(model, values))
    average = {**values, "item_effect": np.zeros_like(values["item_effect"])}
    logit = item_difficulty_logit(average, 3)
    want = [[hand_label_probabilities(logit, 0, 0, k, 3) for k in range(3)]] * data.n_annotators
    np.testing.assert_allclose(confusion, want, rtol=1e-12)


def test_log_density_is_prior_plus_likelihood() -> None:
    """Whole model logp without Jacobian = scipy prior densities + hand likelihood."""
    frame, gold = toy_three()
    data = encode_annotations(frame, gold=gold)
    priors = ItemDifficultyPriors(
        prevalence=1.3, prior_accuracy=0.65, mean_scale=1.3, item_scale=0.7
    )
    model = build_item_difficulty(data, priors)
    values = random_point(data, seed=3)
    logit = item_difficulty_logit(values, 3)
    loglik = sum(hand_item_log_likelihood(frame, gold, data, values["prevalence"], logit).values())
    location = math.log((1 - 0.65) / (0.65 * 2))
    prior = (
        stats.dirichlet.logpdf(values["prevalence"], np.full(3, 1.3))
        + stats.norm.logpdf(values["error_mean"], location, 1.3).sum()
        + stats.halfnorm.logpdf(values["item_scale"], scale=0.7).sum()
        + stats.norm.logpdf(values["item_effect"]).sum()
    )
    logp = float(model.compile_logp(jacobian=False, mode=MODE)(to_value_point(model, values)))
    assert logp == pytest.approx(prior + loglik, rel=1e-12)


def test_repeated_label_enters_once_per_repetition() -> None:
    """Dropping the duplicated row changes only its item's term, by the hand value."""
    frame, gold = toy_three()
    dup = frame.duplicated(keep="first")
    assert dup.sum() == 1
    once = frame[~dup]
    data_twice = encode_annotations(frame, gold=gold)
    data_once = encode_annotations(once, gold=gold)
    values = random_point(data_twice)
    logit = item_difficulty_logit(values, 3)
    twice_model, once_model = build_item_difficulty(data_twice), build_item_difficulty(data_once)
    diff = potential_value(twice_model, to_value_point(twice_model, values)) - potential_value(
        once_model, to_value_point(once_model, values)
    )
    want_twice = hand_item_log_likelihood(frame, gold, data_twice, values["prevalence"], logit)
    want_once = hand_item_log_likelihood(once, gold, data_twice, values["prevalence"], logit)
    item = frame[dup]["item"].iloc[0]
    assert diff == pytest.approx(want_twice[item] - want_once[item], rel=1e-12)
    assert diff < 0


def test_integrated_model_matches_numerical_integration() -> None:
    """Quadrature over the item effect = scipy's adaptive integral (1-D, two categories)."""
    frame, gold = toy_two()
    data = encode_annotations(frame, gold=gold)
    model = build_item_difficulty_integrated(data)
    values = random_point(data)
    values.pop("item_effect")
    value_point = to_value_point(model, values)
    cats, ann = list(data.categories), list(data.annotators)
    total = 0.0
    means = []
    for item in data.items:
        rows = [
            (ann.index(a), cats.index(lab))
            for it, a, lab in frame[["item", "annotator", "label"]].itertuples(index=False)
            if it == item
        ]
        ks = [cats.index(gold[item])] if item in gold else [0, 1]

        def likelihood(e: float, k: int, rows: list = rows) -> float:
            point = {**values, "item_effect": np.full((data.n_items, 1), e)}
            logit = item_difficulty_logit(point, 2)
            prod = 1.0
            for j, c in rows:
                prod *= hand_label_probabilities(logit, 0, j, k, 2)[c]
            return prod

        mass = sum(
            values["prevalence"][k]
            * integrate.quad(lambda e, k=k: stats.norm.pdf(e) * likelihood(e, k), -12, 12)[0]
            for k in ks
        )
        first = sum(
            values["prevalence"][k]
            * integrate.quad(lambda e, k=k: e * stats.norm.pdf(e) * likelihood(e, k), -12, 12)[0]
            for k in ks
        )
        total += math.log(mass)
        means.append(first / mass)
    # 16 Gauss-Hermite nodes on a smooth integrand: agreement to ~1e-8 relative.
    assert potential_value(model, value_point) == pytest.approx(total, rel=1e-7)
    effect = value_of(model, model["item_effect"], value_point)
    np.testing.assert_allclose(effect[:, 0], means, rtol=1e-6, atol=1e-8)


def test_quadrature_integrates_low_moments() -> None:
    nodes, logw = item_quadrature(2, max_nodes=100)
    w = np.exp(logw)
    assert nodes.shape == (100, 2) and w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w @ nodes, 0.0, atol=1e-12)
    np.testing.assert_allclose(w @ (nodes[:, 0] ** 2 * nodes[:, 1] ** 2), 1.0, rtol=1e-12)
    assert w @ nodes[:, 0] ** 4 == pytest.approx(3.0, rel=1e-12)


# --------------------------------------------------------------------------- simulator
def test_simulator_records_its_truth() -> None:
    sim = simulate_item_difficulty(n_items=60, n_annotators=7, item_scale=1.2, random_seed=4)
    p = sim.parameters
    assert sim.annotations.shape == (300, 3)
    assert p["item_effect"].shape == (60, 2) and p["item_error_rate"].shape == (60, 3)
    truth = sim.true_labels.to_numpy()
    np.testing.assert_allclose(p["difficulty"], p["item_error_rate"][np.arange(60), truth])
    # The average item's confusion, the same for every annotator, from error_mean alone.
    logit = item_difficulty_logit({**p, "item_effect": np.zeros((60, 2))}, 3)
    want = [[hand_label_probabilities(logit, 0, 0, k, 3) for k in range(3)]] * 7
    np.testing.assert_allclose(sim.confusion, want, rtol=1e-12)
    # An item's error rate, by hand, from its own effect.
    logit = item_difficulty_logit(p, 3)
    for i in (0, 17, 59):
        k = int(truth[i])
        assert p["difficulty"][i] == pytest.approx(
            1 - hand_label_probabilities(logit, i, 0, k, 3)[k], rel=1e-12
        )


def test_simulated_error_rate_is_the_difficulty() -> None:
    """The share of wrong labels matches the mean difficulty; the scale sets the spread."""
    sim = simulate_item_difficulty(n_items=3000, n_annotators=10, item_scale=2.5, random_seed=5)
    wrong = (
        sim.annotations["label"].to_numpy()
        != sim.true_labels.to_numpy()[sim.annotations["item"].to_numpy()]
    )
    per_label = sim.parameters["difficulty"][sim.annotations["item"].to_numpy()]
    se = math.sqrt(float((per_label * (1 - per_label)).mean()) / len(wrong))
    assert abs(wrong.mean() - per_label.mean()) < 4 * se
    mild = simulate_item_difficulty(n_items=3000, n_annotators=10, item_scale=0.3, random_seed=5)
    assert sim.parameters["difficulty"].std() > 2 * mild.parameters["difficulty"].std()
    flat = simulate_item_difficulty(n_items=50, item_scale=0.0, random_seed=5)
    assert np.ptp(flat.parameters["item_error_rate"], axis=0).max() == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"item_scale": -1.0}, "item_scale must be finite and non-negative"),
        ({"n_categories": 1}, "n_categories must be at least 2"),
        ({"labels_per_item": 9, "n_annotators": 4}, "labels_per_item must be between"),
        ({"n_items": 0}, "n_items must be positive"),
    ],
)
def test_simulator_rejects_bad_input(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        simulate_item_difficulty(**kwargs)


# --------------------------------------------------------------------------- estimator: MAP
def test_registry_and_priors() -> None:
    assert MODELS["item-difficulty"] is ItemDifficulty
    assert isinstance(get_model("item-difficulty"), ItemDifficulty)
    p = ItemDifficultyPriors(item_scale=0.5)
    assert ItemDifficultyPriors.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="item_scale"):
        ItemDifficultyPriors(item_scale=0.0)
    with pytest.raises(ValueError, match="prior_accuracy"):
        ItemDifficultyPriors(prior_accuracy=1.0)


@pytest.fixture(scope="module")
def map_sim() -> cb.Simulation:
    return simulate_item_difficulty(
        n_items=300,
        n_annotators=12,
        labels_per_item=7,
        error_mean=-2.5,
        item_scale=1.5,
        random_seed=8,
    )


@pytest.fixture(scope="module")
def map_fit(map_sim: cb.Simulation) -> ItemDifficulty:
    return ItemDifficulty().fit(map_sim.annotations, method="map", random_seed=0)


def test_map_labels_and_difficulty(map_fit: ItemDifficulty, map_sim: cb.Simulation) -> None:
    """The mode with item effects integrated: labels near the Bayes rule's, sane globals.

    (The joint mode over item effects scored 0.45 on such data, majority vote 0.88.)
    """
    assert accuracy(map_fit, map_sim) >= oracle_accuracy(map_sim) - 0.03
    assert difficulty_correlation(map_fit, map_sim) > 0.4
    check_difficulty_table(map_fit.labels_, intervals=False)
    post = map_fit.datatree_.posterior
    # Not the degenerate joint mode (0.97 on one category, item_scale 5.6). With ~13 % of the
    # items mislabelled even by the Bayes rule, a share can be off by several points (measured
    # 0.30 for 0.36).
    prevalence = post["prevalence"].values[0, 0]
    np.testing.assert_allclose(prevalence, map_sim.prevalence, atol=0.1)
    # At the mode, the prevalence is the (prior-smoothed) mean of the item label probabilities:
    # measured 0.295 / 0.203 / 0.502 against 0.309 / 0.201 / 0.490.
    np.testing.assert_allclose(prevalence, map_fit.label_probs_.mean().to_numpy(), atol=0.02)
    assert 0.3 < float(post["item_scale"].min()) and float(post["item_scale"].max()) < 3.0
    confusion = post["confusion"].values[0, 0]
    assert np.all(confusion == confusion[0])  # exchangeable annotators
    assert post["item_effect"].dims == ("chain", "draw", "item", "wrong_label")


def test_rebuild_model_from_map_result(map_fit: ItemDifficulty) -> None:
    estimator, model = rebuild_model(map_fit.result_)
    assert isinstance(estimator, ItemDifficulty)
    assert "item_effect" in [v.name for v in model.free_RVs]


def test_cli_fit_writes_difficulty(tmp_path: Any, capsys: Any) -> None:
    sim = simulate_item_difficulty(n_items=60, n_annotators=6, random_seed=9)
    check_cli_fit("item-difficulty", sim, tmp_path, capsys)


# --------------------------------------------------------------------------- estimator: NUTS
@pytest.fixture(scope="module")
def nuts_sim() -> cb.Simulation:
    return simulate_item_difficulty(
        n_items=150,
        n_annotators=10,
        n_categories=2,
        labels_per_item=7,
        error_mean=-2.5,
        item_scale=1.0,
        random_seed=3,
    )


@pytest.fixture(scope="module")
def nuts_fit(nuts_sim: cb.Simulation) -> tuple[ItemDifficulty, list[str]]:
    model = ItemDifficulty()
    # 500 tuning steps: with 250 a chain can end tuning unadapted (R-hat 1.2-1.4, ESS 4-10)
    # depending on rounding-level changes of the log-density, and mislabel a few items; with
    # 500, seeds 1-5 all reach the oracle accuracy
    settings = {**NUTS_SMALL, "tune": 500}
    messages = fit_quietly(model, nuts_sim.annotations, random_seed=1, **settings)
    return model, messages


def test_nuts_recovers_labels_difficulty_and_globals(
    nuts_fit: tuple[ItemDifficulty, list[str]], nuts_sim: cb.Simulation
) -> None:
    """Short chains of a slowly mixing posterior (see the module notes of the model): the
    labels, difficulties and 94 % intervals must be right, not the effective sample size."""
    model, messages = nuts_fit
    assert model.diagnostics_.permuted_chains == [], messages
    assert accuracy(model, nuts_sim) >= oracle_accuracy(nuts_sim) - 0.03
    assert difficulty_correlation(model, nuts_sim) > 0.3
    post = model.datatree_.posterior
    inside = np.concatenate(
        [
            coverage(nuts_sim.prevalence, post["prevalence"]),
            coverage(nuts_sim.parameters["error_mean"], post["error_mean"]),
            coverage(nuts_sim.parameters["item_scale"], post["item_scale"]),
        ]
    )
    assert inside.mean() >= 5 / 6, inside
    check_difficulty_table(model.labels_, intervals=True)


def test_nuts_log_likelihood_integrates_the_item_effects(
    nuts_fit: tuple[ItemDifficulty, list[str]],
) -> None:
    """The stored per-item log-likelihood (for LOO) has each item effect integrated out.

    The integrated model's joint is checked against numerical integration above; here the fit
    must store its log-sum-exp at every draw, and PSIS must then work on every item (the
    conditional log-likelihood, given the item's own effect, gives Pareto k > 0.7 on a fifth
    of the items: see ``ItemDifficulty._log_likelihood_model``).
    """
    import arviz_stats as azs

    from crowdbayes.models._draws import DrawEvaluator

    model, _ = nuts_fit
    tree = model.datatree_
    post = tree.posterior
    stored = tree.log_likelihood["labels"].transpose("chain", "draw", "item").to_numpy()
    integrated = build_item_difficulty_integrated(model.result_.data)
    picked = np.array([0, 7, post.sizes["draw"] + 3])  # flat (chain-major) draw indices
    (_, outs), *_ = DrawEvaluator(integrated, ["label_joint"]).iterate(post, draws=picked)
    expected = logsumexp(outs[0], axis=2)
    np.testing.assert_allclose(stored.reshape(-1, stored.shape[-1])[picked], expected, rtol=1e-10)
    loo = azs.loo(tree)
    assert float(np.max(loo.pareto_k)) < 0.7
    assert float(loo.p) < 10  # global parameters only: prevalence, error_mean, item_scale
    summary = model.datatree_["summary"]["difficulty"]
    assert summary.dims == ("item", "statistic")


@pytest.mark.slow
def test_nuts_recovery_binary_ten_labels() -> None:
    """Default NUTS settings on data shaped like rte / temp: binary, ten labels per item.

    The item effects, sampled, mix slowly even here (see below).
    With three categories and five labels per item (400 items, item_scale 2.0) the default
    run did not converge (R-hat 1.35, bulk ESS 9): see the model's module notes.
    """
    sim = simulate_item_difficulty(
        n_items=400,
        n_annotators=15,
        n_categories=2,
        labels_per_item=10,
        error_mean=-2.0,
        item_scale=1.0,
        random_seed=404,
    )
    model = ItemDifficulty()
    messages = fit_quietly(model, sim.annotations, random_seed=4)
    assert model.diagnostics_.permuted_chains == [], messages
    # Default NUTS does not converge here either (measured: R-hat 1.22, bulk ESS 15, 7 divergences).
    # What must hold: the fit says so, and labels, difficulties and intervals are right.
    rhat = model.diagnostics_.max_rhat
    assert (rhat > 1.01) == any("R-hat" in m for m in messages), (rhat, messages)
    assert accuracy(model, sim) >= oracle_accuracy(sim) - 0.02
    assert difficulty_correlation(model, sim) > 0.5
    post = model.datatree_.posterior
    inside = np.concatenate(
        [
            coverage(sim.prevalence, post["prevalence"]),
            coverage(sim.parameters["error_mean"], post["error_mean"]),
            coverage(sim.parameters["item_scale"], post["item_scale"]),
        ]
    )
    assert inside.mean() >= 5 / 6, inside
