"""Helpers shared by the test modules: toy data, model plumbing, hand-computed likelihoods and
the checks that fits of every model go through (quiet fitting, interval coverage, majority vote
as the floor, the command line)."""

import math
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import xarray as xr
from scipy import stats

import crowdbayes as cb
from crowdbayes.cli import main
from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.diagnostics import SamplingWarning
from crowdbayes.results import CI_PROB, interval_summary

# The Python linker compiles in milliseconds; the values are the same on every backend.
MODE = "FAST_COMPILE"
#: Share of parameters whose truth a full-length recovery fit must put in its 94 % intervals.
MIN_COVERAGE = 0.90


# --------------------------------------------------------------------------- toy data
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


TOYS = {"two-categories": toy_two, "three-categories": toy_three}


def rows_by_item(frame: pd.DataFrame, data: AnnotationData) -> dict[Any, list[tuple[int, int]]]:
    """Per user item id, its rows as (annotator position, label position), in the user's order."""
    ann, cats = list(data.annotators), list(data.categories)
    out: dict[Any, list[tuple[int, int]]] = {}
    for item, annotator, label in frame[["item", "annotator", "label"]].itertuples(index=False):
        out.setdefault(item, []).append((ann.index(annotator), cats.index(label)))
    return out


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
    """Evaluate a model graph at a value point (random variables replaced by their values)."""
    (graph,) = model.replace_rvs_by_values([var])
    fn = model.compile_fn(graph, inputs=model.value_vars, mode=MODE, on_unused_input="ignore")
    return np.asarray(fn(value_point))


def labels_log_likelihood(model: pm.Model, value_point: dict[str, np.ndarray]) -> np.ndarray:
    """The observed ``labels`` variable's log-density: one value per item."""
    (per_item,) = model.logp(vars=[model["labels"]], sum=False)
    return value_of(model, per_item, value_point)


def label_log_likelihood(model: pm.Model, value_point: dict[str, np.ndarray]) -> float:
    """The log-density of the observed ``labels`` variable (the label likelihood), summed."""
    return float(labels_log_likelihood(model, value_point).sum())


def labels_log_density(model: pm.Model) -> Callable[[dict[str, np.ndarray], np.ndarray], Any]:
    """``f(value_point, label_codes)``: the per-item log-density of ``labels`` at any labels."""
    codes = pt.vector("label_codes", dtype="int64")
    (graph,) = model.replace_rvs_by_values([pm.logp(model["labels"], codes)])
    fn = pytensor.function([*model.value_vars, codes], graph, mode=MODE, on_unused_input="ignore")
    return lambda point, labels: np.asarray(fn(*[point[v.name] for v in model.value_vars], labels))


#: ``row(item_position, annotator_position, k)``: log P(every label | the row, true category k).
RowLogProbabilities = Callable[[int, int, int], list[float]]


def check_label_distribution(
    build: Callable[[AnnotationData], pm.Model],
    frame: pd.DataFrame,
    data: AnnotationData,
    values: dict[str, np.ndarray],
    row: RowLogProbabilities,
) -> None:
    """The distribution of every label row under every true category, against the hand values.

    With every item gold at category ``k``, the ``labels`` log-density of item ``i`` is
    ``log pi_k + sum over its rows of log p(label | row, k)``: it must equal the hand value
    for every label value of every row (the item's other rows as observed), which pins down
    ``p(. | row, k)`` for every row, label and ``k``.
    """
    n_k = data.n_categories
    log_prevalence = np.log(values["prevalence"])
    for k, category in enumerate(data.categories):
        at_k = encode_annotations(frame, gold=dict.fromkeys(data.items, category))
        for name in ("item_index", "annotator_index", "label_index"):
            np.testing.assert_array_equal(getattr(at_k, name), getattr(data, name))
        model = build(at_k)
        density, point = labels_log_density(model), to_value_point(model, values)
        tables = [row(i, j, k) for i, j in zip(data.item_index, data.annotator_index, strict=True)]
        for r in range(data.n_annotations):
            for c in range(n_k):
                labels = data.label_index.copy()
                labels[r] = c
                want = np.full(data.n_items, log_prevalence[k])
                np.add.at(
                    want, data.item_index, [t[h] for t, h in zip(tables, labels, strict=True)]
                )
                np.testing.assert_allclose(density(point, labels), want, rtol=1e-12)


# --------------------------------------------------------------------------- hand likelihoods
#: ``probability(item_position, annotator_position, k, h)``: P(label h | the row, true k).
RowProbability = Callable[[int, int, int, int], float]


def hand_joint(
    frame: pd.DataFrame, data: AnnotationData, prevalence: Any, probability: RowProbability
) -> dict[Any, list[float]]:
    """Per user item id: [log pi_k + sum over the item's rows of log p(label | row, k)]."""
    items, n_k = list(data.items), data.n_categories
    out = {}
    for item, rows in rows_by_item(frame, data).items():
        i = items.index(item)
        out[item] = [
            math.log(prevalence[k]) + sum(math.log(probability(i, j, k, h)) for j, h in rows)
            for k in range(n_k)
        ]
    return out


def hand_item_log_likelihood(
    joint: dict[Any, list[float]], gold: dict, categories: list
) -> dict[Any, float]:
    """Per user item id, from the joint: a gold item's gold term, else the log-sum-exp."""
    return {
        item: (
            terms[categories.index(gold[item])]
            if item in gold
            else math.log(sum(math.exp(t) for t in terms))
        )
        for item, terms in joint.items()
    }


def hand_log_likelihood(joint: dict[Any, list[float]], gold: dict, categories: list) -> float:
    """The label likelihood: the sum of :func:`hand_item_log_likelihood` over the items."""
    return sum(hand_item_log_likelihood(joint, gold, categories).values())


def check_log_density(
    build: Callable[..., pm.Model],
    priors: Any,
    toy: tuple[pd.DataFrame, dict[Any, Any], AnnotationData],
    values: dict[str, np.ndarray],
    probability: RowProbability,
    log_prior: float,
) -> None:
    """The model's label likelihood and whole logp (no Jacobian) at ``values`` against the
    hand values: the likelihood from ``probability`` over the toy's rows, plus ``log_prior``.

    ``toy`` is (annotations, gold, their encoding); ``build(data, priors)`` builds the model.
    """
    frame, gold, data = toy
    model = build(data, priors)
    value_point = to_value_point(model, values)
    joint = hand_joint(frame, data, values["prevalence"], probability)
    loglik = hand_log_likelihood(joint, gold, list(data.categories))
    assert label_log_likelihood(model, value_point) == pytest.approx(loglik, rel=1e-12)
    logp = float(model.compile_logp(jacobian=False, mode=MODE)(value_point))
    assert logp == pytest.approx(log_prior + loglik, rel=1e-12)


def check_label_joint(
    model: pm.Model,
    value_point: dict[str, np.ndarray],
    joint: dict[Any, list[float]],
    data: AnnotationData,
) -> None:
    """The model's ``label_joint`` (item, true category) equals the hand joint."""
    np.testing.assert_allclose(
        value_of(model, model["label_joint"], value_point),
        [joint[item] for item in data.items],
        rtol=1e-12,
    )


# --------------------------------------------------------------------------- fits
def fit_quietly(model: cb.CrowdModel, annotations: Any, **kwargs: Any) -> list[str]:
    """Fit, returning the SamplingWarnings (any other warning still fails the test)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        model.fit(annotations, progressbar=False, **kwargs)
    for w in caught:
        if not issubclass(w.category, SamplingWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return [str(w.message) for w in caught if issubclass(w.category, SamplingWarning)]


def coverage(truth: np.ndarray, draws: xr.DataArray) -> np.ndarray:
    """Whether each entry's truth lies in the equal-tailed 94 % interval of the draws."""
    summary = interval_summary(draws, prob=CI_PROB)
    low = summary.sel(statistic="lower").to_numpy()
    high = summary.sel(statistic="upper").to_numpy()
    return (low <= truth) & (truth <= high)


def parameter_coverage(
    sim: cb.Simulation, posterior: xr.Dataset, names: Iterable[str]
) -> list[np.ndarray]:
    """Per named parameter, whether each entry's simulated truth is inside its interval.

    ``prevalence`` and ``confusion`` are the simulation's own; other names are looked up in
    ``sim.parameters``. Returns a list of boolean arrays, in the order of ``names``.
    """
    own = {"prevalence": sim.prevalence, "confusion": sim.confusion}
    return [
        coverage(own[name] if name in own else sim.parameters[name], posterior[name])
        for name in names
    ]


def pooled_coverage(*inside: np.ndarray) -> float:
    """Share of all entries inside their intervals, over several parameters."""
    return float(np.concatenate([np.ravel(part) for part in inside]).mean())


def mv_accuracy(annotations: pd.DataFrame, truth: "pd.Series[Any]") -> float:
    """Accuracy of majority vote against the true labels."""
    labels = cb.MajorityVote().fit(annotations, random_seed=0).labels_["label"]
    return float((labels == truth.reindex(labels.index)).mean())


def label_accuracy(model: cb.CrowdModel, sim: cb.Simulation) -> float:
    """Accuracy of a fit's labels against the simulation's true labels."""
    return float((model.labels_["label"] == sim.true_labels).mean())


def check_beats_majority_vote(model: cb.CrowdModel, sim: cb.Simulation) -> None:
    """A fit labels the simulated items at least as well as majority vote."""
    accuracy = label_accuracy(model, sim)
    assert accuracy >= mv_accuracy(sim.annotations, sim.true_labels), accuracy


def check_sampled_cleanly(model: cb.CrowdModel, messages: list[str]) -> None:
    """No label-permuted chain and no divergence (the messages say why otherwise)."""
    assert model.diagnostics_.permuted_chains == [], messages
    assert model.diagnostics_.n_divergent == 0, messages


#: A short NUTS run on a model's own simulation: enough to check labels, label switching and
#: the draws' shapes, not convergence.
SHORT_NUTS = {"draws": 200, "tune": 300, "chains": 2, "sampler": "nutpie", "random_seed": 2}


def check_short_nuts_fit(
    model: cb.CrowdModel, sim: cb.Simulation, messages: list[str], skill: str
) -> None:
    """A :data:`SHORT_NUTS` fit: sampled cleanly, labels at least as good as majority vote,
    and the per-annotator parameter ``skill`` ranks the annotators like its truth does."""
    check_sampled_cleanly(model, messages)
    check_beats_majority_vote(model, sim)
    draws = model.datatree_.posterior[skill]
    assert draws.dims == ("chain", "draw", "annotator")
    mean = draws.mean(("chain", "draw")).to_numpy()
    assert stats.spearmanr(mean, sim.parameters[skill]).statistic > 0.7


def recovery_fit(model: cb.CrowdModel, sim: cb.Simulation) -> xr.Dataset:
    """Fit ``model`` to its own simulation for a recovery check (4 chains of 1000 draws).

    The fit must sample cleanly, converge (R-hat below 1.02) and label the items at least as
    well as majority vote; returns its posterior.
    """
    messages = fit_quietly(model, sim.annotations, draws=1000, tune=1000, chains=4, random_seed=4)
    check_sampled_cleanly(model, messages)
    assert model.diagnostics_.max_rhat < 1.02, messages
    check_beats_majority_vote(model, sim)
    return model.datatree_.posterior


def fit_on_the_command_line(
    model_name: str, annotations: pd.DataFrame, tmp_path: Path, capsys: Any
) -> tuple[Path, Any]:
    """``crowdbayes fit --method map`` on the annotations written to a CSV file.

    Returns the output folder and the captured output; the command must succeed.
    """
    csv = tmp_path / "annotations.csv"
    annotations.to_csv(csv, index=False)
    out = tmp_path / "out"
    rc = main(["fit", str(csv), "--model", model_name, "--method", "map", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return out, captured
