"""ARCHITECTURE.md's worked example: a new model is one file and one registry line."""

import re
import sys
import types
from pathlib import Path

import numpy as np
import pymc as pm
import pytest

import crowdbayes as cb
from crowdbayes.models import MODELS

ARCHITECTURE = Path(__file__).resolve().parents[1] / "ARCHITECTURE.md"


def _example_source() -> str:
    text = ARCHITECTURE.read_text()
    section = text[text.index("## Adding a model") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def pooled(monkeypatch):
    module = types.ModuleType("crowdbayes_pooled_example")
    exec(compile(_example_source(), "ARCHITECTURE.md", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(MODELS, "pooled", module.Pooled)  # the one registry line
    return module


def test_example_is_under_60_lines():
    assert len(_example_source().strip().splitlines()) < 60


def test_example_likelihood_by_hand(pooled):
    # two items; annotators a, b share one confusion matrix
    df = {"item": [1, 1, 2], "annotator": ["a", "b", "b"], "label": [0, 1, 1]}
    data = cb.encode_annotations(__import__("pandas").DataFrame(df))
    model = pooled.build_pooled(data)
    prevalence = np.array([0.3, 0.7])
    shared = np.array([[0.9, 0.1], [0.2, 0.8]])
    point = {"prevalence": prevalence, "shared_confusion": shared}
    values = {
        model.rvs_to_values[rv].name: model.rvs_to_transforms[rv].forward(point[rv.name]).eval()
        for rv in model.free_RVs
    }
    per_item = model.compile_fn(
        model.logp(vars=[model["labels"]], sum=False), inputs=model.value_vars
    )(values)
    item1 = 0.3 * 0.9 * 0.1 + 0.7 * 0.2 * 0.8
    item2 = 0.3 * 0.1 + 0.7 * 0.8
    np.testing.assert_allclose(np.exp(per_item[0]), [item1, item2], rtol=1e-12)


def test_example_fits_like_any_model(pooled):
    sim = cb.simulate_dawid_skene(n_items=120, n_annotators=6, random_seed=3)
    fit = cb.get_model("pooled").fit(
        sim.annotations, draws=1000, tune=1000, chains=2, random_seed=3, progressbar=False
    )
    accuracy = (fit.labels_["label"] == sim.true_labels).mean()
    majority = cb.MajorityVote().fit(sim.annotations, random_seed=3).labels_["label"]
    assert accuracy >= (majority == sim.true_labels).mean() - 0.02
    assert fit.datatree_.posterior["shared_confusion"].dims[2:] == ("true_category", "category")
    log_lik = pm.compute_log_likelihood(
        fit.datatree_, model=fit.model_, extend_inferencedata=False, progressbar=False
    )
    np.testing.assert_allclose(
        log_lik["labels"].to_numpy(), fit.datatree_.log_likelihood["labels"].to_numpy(), atol=1e-8
    )
