"""Helpers of the item-effect model tests (``test_item_difficulty.py``,
``test_logistic_random_effects.py``): label probabilities from wrong-label logits by plain
Python, the hand checks of a model's likelihood and named variables, the Bayes-rule accuracy at
the true parameters and the difficulty columns of the label table.

A wrong label ``h`` of true category ``k`` has the logit ``logit(i, j, k, h)`` (item ``i``,
annotator ``j``), the right label the logit 0; the label probabilities are their softmax.
"""

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from _helpers import (
    RowProbability,
    check_label_distribution,
    check_label_joint,
    fit_on_the_command_line,
    fit_quietly,
    hand_item_log_likelihood,
    hand_joint,
    label_log_likelihood,
    rows_by_item,
    to_value_point,
    toy_two,
    value_of,
)
from scipy import integrate, stats
from scipy.special import logsumexp

import crowdbayes as cb
from crowdbayes.data import AnnotationData, encode_annotations

#: Small NUTS settings of the default run (PyMC's sampler compiles fastest for one fit).
NUTS_SMALL = {"draws": 250, "tune": 250, "chains": 2, "sampler": "pymc"}
DIFFICULTY_COLUMNS = ["difficulty", "difficulty_low", "difficulty_high"]

#: ``logit(item_position, annotator_position, k, h)`` of a wrong label h given true category k.
Logit = Callable[[int, int, int, int], float]
#: ``logit_at(point, n_categories)``: the model's :data:`Logit` at a parameter point.
LogitAt = Callable[[dict[str, np.ndarray], int], Logit]


# --------------------------------------------------------------------------- hand computation
def random_point(
    data: AnnotationData, seed: int = 11, *, annotator_effects: bool = False
) -> dict[str, np.ndarray]:
    """A fixed, non-trivial parameter point (constrained space) of item difficulty, or with
    ``annotator_effects`` of logistic random effects."""
    rng = np.random.default_rng(seed)
    n_k = data.n_categories
    n_err = n_k * (n_k - 1)
    point = {
        "prevalence": rng.dirichlet(np.full(n_k, 2.0)),
        "error_mean": rng.normal(-1.0, 1.0, size=n_err),
    }
    if annotator_effects:
        point["error_scale"] = rng.uniform(0.3, 1.5, size=n_err)
    point["item_scale"] = rng.uniform(0.3, 1.5, size=n_err)
    if annotator_effects:
        point["annotator_effect"] = rng.normal(size=(data.n_annotators, n_err))
    point["item_effect"] = rng.normal(size=(data.n_items, n_k - 1))
    return point


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


def hand_label_probabilities(logit: Logit, i: int, j: int, k: int, n_k: int) -> list[float]:
    """P(each label | item i, annotator j, true category k), diagonal logit 0."""
    return softmax_row([0.0 if h == k else logit(i, j, k, h) for h in range(n_k)])


def logit_probability(logit: Logit, n_k: int) -> RowProbability:
    """The row probability of :func:`_helpers.hand_joint` under ``logit``."""
    return lambda i, j, k, h: hand_label_probabilities(logit, i, j, k, n_k)[h]


def hand_log_likelihoods(
    frame: pd.DataFrame, gold: dict[Any, Any], data: AnnotationData, prevalence: Any, logit: Logit
) -> dict[Any, float]:
    """Per user item id, log p(labels of the item) by loops over the user's rows."""
    joint = hand_joint(frame, data, prevalence, logit_probability(logit, data.n_categories))
    return hand_item_log_likelihood(joint, gold, list(data.categories))


# --------------------------------------------------------------------------- model checks
def check_hand_likelihood(
    build: Callable[[AnnotationData], pm.Model],
    frame: pd.DataFrame,
    gold: dict[Any, Any],
    values: dict[str, np.ndarray],
    logit: Logit,
    typical: Logit,
) -> None:
    """The label likelihood, label_joint, the label distribution and item_error_rate of the
    model built on ``frame`` (one gold item) against the hand values at ``values``;
    ``typical`` is the logit of the population's typical annotator."""
    data = encode_annotations(frame, gold=gold)
    assert data.n_annotations == len(frame) and (data.gold_index >= 0).sum() == 1
    n_k = data.n_categories
    model = build(data)
    value_point = to_value_point(model, values)
    expected = hand_log_likelihoods(frame, gold, data, values["prevalence"], logit)
    assert len(expected) == data.n_items
    assert label_log_likelihood(model, value_point) == pytest.approx(
        sum(expected.values()), rel=1e-12, abs=1e-12
    )

    def row(i: int, j: int, k: int) -> list[float]:
        return [math.log(p) for p in hand_label_probabilities(logit, i, j, k, n_k)]

    check_label_distribution(build, frame, data, values, row)
    joint = hand_joint(frame, data, values["prevalence"], logit_probability(logit, n_k))
    check_label_joint(model, value_point, joint, data)
    error_rate = value_of(model, model["item_error_rate"], value_point)
    assert error_rate.shape == (data.n_items, n_k)
    for i in range(data.n_items):
        for k in range(n_k):
            want = 1.0 - hand_label_probabilities(typical, i, -1, k, n_k)[k]
            assert error_rate[i, k] == pytest.approx(want, rel=1e-12)


def check_integrated_model(
    build_integrated: Callable[[AnnotationData], pm.Model],
    point: Callable[[AnnotationData], dict[str, np.ndarray]],
    logit_at: LogitAt,
    *,
    mean_rtol: float,
) -> None:
    """The model with the item effect summed out by quadrature (two categories, so one effect
    per item) against scipy's adaptive integration: its label likelihood, and its
    ``item_effect``, the posterior mean effect of each item, to ``mean_rtol``."""
    frame, gold = toy_two()
    data = encode_annotations(frame, gold=gold)
    model = build_integrated(data)
    values = point(data)
    values.pop("item_effect")
    value_point = to_value_point(model, values)
    cats = list(data.categories)
    by_item = rows_by_item(frame, data)
    total, means = 0.0, []
    for item in data.items:
        rows = by_item[item]
        ks = [cats.index(gold[item])] if item in gold else [0, 1]

        def likelihood(e: float, k: int, rows: list = rows) -> float:
            logit = logit_at({**values, "item_effect": np.full((data.n_items, 1), e)}, 2)
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
    assert label_log_likelihood(model, value_point) == pytest.approx(total, rel=1e-7)
    effect = value_of(model, model["item_effect"], value_point)
    np.testing.assert_allclose(effect[:, 0], means, rtol=mean_rtol, atol=1e-8)


# --------------------------------------------------------------------------- fits
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


def difficulty_correlation(model: cb.CrowdModel, sim: cb.Simulation) -> float:
    estimate = model.labels_["difficulty"].reindex(sim.true_labels.index).to_numpy()
    return float(np.corrcoef(estimate, sim.parameters["difficulty"])[0, 1])


def fit_like_rte(
    model: cb.CrowdModel, simulate: Callable[..., cb.Simulation], item_scale: float
) -> tuple[cb.Simulation, list[str]]:
    """Default NUTS settings on data shaped like rte / temp: binary, ten labels per item.

    400 items, 15 annotators, wrong-label log-odds -2 on an average item. The item effects,
    sampled, mix slowly even here: the fit need not converge, but it must not switch labels
    and must report an R-hat above 1.01 (and only then). Returns the simulation and the fit's
    sampling warnings.
    """
    sim = simulate(
        n_items=400,
        n_annotators=15,
        n_categories=2,
        labels_per_item=10,
        error_mean=-2.0,
        item_scale=item_scale,
        random_seed=404,
    )
    messages = fit_quietly(model, sim.annotations, random_seed=4)
    assert model.diagnostics_.permuted_chains == [], messages
    rhat = model.diagnostics_.max_rhat
    assert (rhat > 1.01) == any("R-hat" in m for m in messages), (rhat, messages)
    return sim, messages


def check_difficulty_table(labels: pd.DataFrame, *, intervals: bool) -> None:
    assert labels.columns[-3:].tolist() == DIFFICULTY_COLUMNS
    assert labels["difficulty"].between(0, 1).all()
    if intervals:
        assert (labels["difficulty_low"] <= labels["difficulty"]).all()
        assert (labels["difficulty"] <= labels["difficulty_high"]).all()
    else:
        assert labels[["difficulty_low", "difficulty_high"]].isna().all().all()


def check_cli_fit(model_name: str, sim: cb.Simulation, tmp_path: Path, capsys: Any) -> None:
    out, _ = fit_on_the_command_line(model_name, sim.annotations, tmp_path, capsys)
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
