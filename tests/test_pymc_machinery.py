"""PyMC's own machinery on every Bayesian model's NUTS fit: ``pm.compute_log_likelihood`` and
``pm.sample_posterior_predictive`` run on the fit's model and DataTree, and agree with the
package (its per-item log-likelihood) and with the model (label probabilities worked out by
hand from one posterior draw)."""

import warnings
from functools import partial
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytest
import xarray as xr
from pytensor.graph.replace import graph_replace
from pytensor.tensor.type import TensorType

import crowdbayes as cb
from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.models import glad, item_difficulty, logistic_random_effects
from crowdbayes.summaries import CONFUSION_ROWS_TAG, LABEL_JOINT

BAYESIAN = [name for name, cls in cb.MODELS.items() if issubclass(cls, BayesianCrowdModel)]

#: The simulation each model is fitted to (the one-coin and class-conditional models are
#: special cases of Dawid-Skene's).
SIMULATORS = {
    "dawid-skene": cb.simulate_dawid_skene,
    "class-conditional": cb.simulate_dawid_skene,
    "one-coin": cb.simulate_dawid_skene,
    "hierarchical-dawid-skene": cb.simulate_hierarchical_dawid_skene,
    "item-difficulty": cb.simulate_item_difficulty,
    "logistic-random-effects": cb.simulate_logistic_random_effects,
    "mace": cb.simulate_mace,
    "glad": cb.simulate_glad,
}

#: The row distribution (log p(y_r = h | z_i = k) per row, true category and label) of the
#: models whose labels depend on item effects, as the model files define it.
ROW_DISTRIBUTIONS = {
    "item-difficulty": item_difficulty._item_rows,
    "logistic-random-effects": logistic_random_effects._annotator_item_rows,
    "glad": glad.glad_rows,
}

REPLICATES = 4000


@pytest.fixture(scope="module", params=BAYESIAN)
def fitted(request: pytest.FixtureRequest) -> tuple[str, BayesianCrowdModel, AnnotationData]:
    """A short NUTS fit of each model to 40 simulated items (3 of them gold), 6 annotators."""
    name = request.param
    sim = SIMULATORS[name](n_items=40, n_annotators=6, random_seed=3)
    data = encode_annotations(
        sim.annotations, categories=sim.categories, gold=sim.true_labels.iloc[:3]
    )
    estimator = cb.MODELS[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cb.SamplingWarning)  # 60 draws: R-hat, ESS are poor
        estimator.fit(data, draws=60, tune=60, chains=2, random_seed=11, progressbar=False, cores=1)
    return name, estimator, data


def test_every_bayesian_model_has_a_simulation() -> None:
    """Every Bayesian model is checked; the item-effect ones with their row distribution."""
    assert set(BAYESIAN) == set(SIMULATORS)
    assert {n for n in BAYESIAN if cb.MODELS[n].integrated_builder is not None} == set(
        ROW_DISTRIBUTIONS
    )


def test_compute_log_likelihood_equals_the_package_log_likelihood(fitted: tuple) -> None:
    """PyMC's per-item log-likelihood of the fit's draws is the one the fit stores (the package's
    kernel for the confusion-matrix models; for the item-effect models, that of the model with
    the item effects integrated out)."""
    name, fit, data = fitted
    builder = type(fit).integrated_builder
    model = fit.model_ if builder is None else builder(data, fit.resolved_priors())
    values = pm.compute_log_likelihood(
        fit.datatree_, model=model, extend_inferencedata=False, progressbar=False
    )
    got = values["labels"].transpose("chain", "draw", ...).to_numpy()
    want = fit.datatree_.log_likelihood["labels"].transpose("chain", "draw", "item").to_numpy()
    assert got.shape == want.shape == (2, 60, data.n_items)
    assert np.all(np.isfinite(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)


def _at_draw(model: pm.Model, outputs: list[Any], draw: xr.Dataset) -> list[np.ndarray]:
    """Evaluate model graphs at one draw of its free variables (constrained values)."""
    placeholders = [rv.type() for rv in model.free_RVs]
    replaced = graph_replace(outputs, dict(zip(model.free_RVs, placeholders, strict=True)))
    fn = pytensor.function(placeholders, replaced, mode="FAST_COMPILE", on_unused_input="ignore")
    values = [
        draw[rv.name].transpose(*(model.named_vars_to_dims.get(rv.name) or ())).to_numpy()
        for rv in model.free_RVs
    ]
    return [np.asarray(out) for out in fn(*values)]


def exact_label_probabilities(
    name: str, model: pm.Model, data: AnnotationData, draw: xr.Dataset
) -> np.ndarray:
    """P(y_r = h | y, theta) = sum_k P(z_i = k | y, theta) P(y_r = h | z_i = k, theta) per
    annotation r (item i) at one posterior draw ``theta``.

    P(z | y, theta) normalises the model's ``label_joint`` (gold items: their gold category).
    P(y_r = h | z_i = k, theta) is the draw's ``confusion[annotator_r, k, h]`` for the
    confusion-matrix models, and the model's own row distribution, evaluated at the draw, for
    the item-effect models.
    """
    k = data.n_categories
    outputs = [model[LABEL_JOINT]]
    if name in ROW_DISTRIBUTIONS:
        # the labels' inputs: size, log prevalence, the row distribution's parameters, RNGs
        tensors = [v for v in model["labels"].owner.inputs if isinstance(v.type, TensorType)]
        rows = partial(ROW_DISTRIBUTIONS[name], n_categories=k)
        outputs.append(rows(data.item_index, data.annotator_index, None, *tensors[2:]))
    joint, *row_log_probability = _at_draw(model, outputs, draw)
    z = np.exp(joint - joint.max(axis=1, keepdims=True))
    z /= z.sum(axis=1, keepdims=True)
    gold = data.gold_index
    z[gold >= 0] = np.eye(k)[gold[gold >= 0]]
    if row_log_probability:
        given_z = np.exp(row_log_probability[0])  # (annotation, true_category, category)
    else:
        assert getattr(model[LABEL_JOINT].tag, CONFUSION_ROWS_TAG)  # a confusion-matrix model
        confusion = draw["confusion"].transpose("annotator", "true_category", "category")
        given_z = confusion.to_numpy()[data.annotator_index]
    np.testing.assert_allclose(given_z.sum(axis=2), 1.0, rtol=1e-12)
    return np.einsum("rk,rkh->rh", z[data.item_index], given_z)


def test_posterior_predictive_replicates_labels_from_the_model(fitted: tuple) -> None:
    """Replicated labels have the observed labels' shape and codes; replicates of one draw
    follow the label probabilities worked out from that draw, within 5 binomial standard
    errors in every (annotation, category) cell."""
    name, fit, data = fitted
    model = fit.model_
    tree = pm.sample_posterior_predictive(
        fit.datatree_, model=model, random_seed=5, progressbar=False
    )
    labels = tree.posterior_predictive["labels"]
    assert labels.dims == ("chain", "draw", "annotation")
    assert labels.shape == (2, 60, data.n_annotations)
    assert np.issubdtype(labels.dtype, np.integer)
    assert set(np.unique(labels.to_numpy())) <= set(range(data.n_categories))

    one = fit.datatree_.posterior.to_dataset().isel(chain=[0], draw=[0])
    repeated = one.isel(draw=np.zeros(REPLICATES, dtype=int)).assign_coords(
        draw=np.arange(REPLICATES)
    )
    replicated = pm.sample_posterior_predictive(
        xr.DataTree.from_dict({"posterior": repeated}),
        model=model,
        random_seed=6,
        progressbar=False,
    )
    values = replicated.posterior_predictive["labels"].transpose("chain", "draw", "annotation")
    values = values.to_numpy()[0]
    assert values.shape == (REPLICATES, data.n_annotations)
    empirical = (values[:, :, None] == np.arange(data.n_categories)).mean(axis=0)
    exact = exact_label_probabilities(name, model, data, one.isel(chain=0, draw=0))
    np.testing.assert_allclose(exact.sum(axis=1), 1.0, rtol=1e-12)
    standard_error = np.sqrt(exact * (1.0 - exact) / REPLICATES)
    assert np.all(np.abs(empirical - exact) <= 5 * standard_error)
    # the check can fail: the labels are not all near-certain
    assert standard_error.max() > 0.005
