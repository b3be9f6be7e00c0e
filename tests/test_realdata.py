"""The core issue's bar on real crowd data, and the dataset loader.

The bar: on rte, temp and sp_amt, ``DawidSkene()`` with default priors, fitted by NUTS WITHOUT
gold (gold only scores), has posterior-mode accuracy >= crowd-kit DawidSkene's - 0.01, and
expected calibration error and log loss both below crowd-kit DawidSkene's; on anesthesia (no
gold) its posterior mean prevalence is within 0.01 of rater's published estimate. Thresholds
are the issue's crowd-kit 1.4.2 numbers; when crowd-kit is installed the bar is also checked
against what it computes here.

The default run samples with fewer draws (``REDUCED``); ``--run-slow`` runs the same checks at
the full default settings (draws=1000, tune=1000, chains=4). Tests needing the datasets skip
with the reason when they are absent (set ``CROWDBAYES_DATA``).
"""

import time
import warnings
from typing import Any

import pandas as pd
import pytest

import crowdbayes as cb
from crowdbayes import datasets
from crowdbayes.datasets import data_home, list_datasets, load_dataset
from crowdbayes.metrics import evaluate

#: crowd-kit 1.4.2 DawidSkene(n_iter=100), as quoted in the issue: accuracy, ECE, log loss.
ISSUE_CROWDKIT_DS = {
    "rte": {"accuracy": 0.927, "ece": 0.068, "log_loss": 0.88},
    "temp": {"accuracy": 0.942, "ece": 0.057, "log_loss": 0.92},
    "sp_amt": {"accuracy": 0.944, "ece": 0.056, "log_loss": 1.17},
}
ACCURACY_MARGIN = 0.01
#: rater's published posterior mean prevalence on anesthesia, categories 1-4.
RATER_PREVALENCE = {1: 0.376, 2: 0.407, 3: 0.143, 4: 0.074}
PREVALENCE_TOLERANCE = 0.01

FULL = {"draws": 1000, "tune": 1000, "chains": 4}
REDUCED = {"draws": 500, "tune": 500, "chains": 2}
SETTINGS = {"full": FULL, "reduced": REDUCED}
SEED = 2024

GOLD_DATASETS = list(ISSUE_CROWDKIT_DS)
SETTING_PARAMS = [
    pytest.param("reduced", id="reduced"),
    pytest.param("full", id="full", marks=pytest.mark.slow),
]


def require(name: str) -> tuple[pd.DataFrame, "pd.Series[Any] | None"]:
    if name not in list_datasets():
        pytest.skip(
            f"dataset {name!r} not found under {data_home()}: set CROWDBAYES_DATA to the folder "
            f"holding {name}/annotations.csv"
        )
    return load_dataset(name)


_FITS: dict[tuple[str, str], tuple[cb.DawidSkene, list[str], float]] = {}


def nuts_fit(name: str, setting: str) -> tuple[cb.DawidSkene, list[str], float]:
    """DawidSkene() fitted by NUTS without gold, shared across the session."""
    key = (name, setting)
    if key not in _FITS:
        annotations, _ = require(name)
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            # SamplingWarnings are recorded for the diagnostics test; any other warning keeps
            # the configured filter (an error under pytest).
            warnings.simplefilter("always", cb.SamplingWarning)
            model = cb.DawidSkene().fit(
                annotations,
                **SETTINGS[setting],
                sampler="nutpie",
                random_seed=SEED,
                progressbar=False,
            )
        messages = [str(w.message) for w in caught if issubclass(w.category, cb.SamplingWarning)]
        _FITS[key] = (model, messages, time.perf_counter() - start)
    return _FITS[key]


# ---------------------------------------------------------------------------- the bar
@pytest.mark.realdata
@pytest.mark.parametrize("setting", SETTING_PARAMS)
@pytest.mark.parametrize("name", GOLD_DATASETS)
def test_dawid_skene_beats_crowdkit_reference(name, setting):
    _, gold = require(name)
    model, _, _ = nuts_fit(name, setting)
    scores = evaluate(model, gold)
    reference = ISSUE_CROWDKIT_DS[name]
    assert scores["n_items"] == len(gold)
    assert scores["accuracy"] >= reference["accuracy"] - ACCURACY_MARGIN, scores
    assert scores["ece"] < reference["ece"], scores
    assert scores["log_loss"] < reference["log_loss"], scores


@pytest.mark.realdata
@pytest.mark.parametrize("setting", SETTING_PARAMS)
@pytest.mark.parametrize("name", GOLD_DATASETS)
def test_dawid_skene_beats_installed_crowdkit(name, setting):
    aggregation = pytest.importorskip(
        "crowdkit.aggregation", reason="crowd-kit not installed (pip install 'crowdbayes[bench]')"
    )
    annotations, gold = require(name)
    frame = annotations.rename(columns={"item": "task", "annotator": "worker"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # crowd-kit's own deprecation warnings
        probabilities = aggregation.DawidSkene(n_iter=100).fit_predict_proba(frame)
    theirs = evaluate(probabilities, gold)
    ours = evaluate(nuts_fit(name, setting)[0], gold)
    assert ours["accuracy"] >= theirs["accuracy"] - ACCURACY_MARGIN, (ours, theirs)
    assert ours["ece"] < theirs["ece"], (ours, theirs)
    assert ours["log_loss"] < theirs["log_loss"], (ours, theirs)


@pytest.mark.realdata
@pytest.mark.parametrize("setting", SETTING_PARAMS)
@pytest.mark.parametrize("name", [*GOLD_DATASETS, "anesthesia"])
def test_dawid_skene_samples_cleanly(name, setting):
    """No divergences, no label-permuted chain, enough effective draws."""
    model, messages, _ = nuts_fit(name, setting)
    diag = model.diagnostics_
    assert diag.n_divergent == 0, messages
    assert diag.permuted_chains == [], messages
    assert diag.min_ess_bulk >= 100 * SETTINGS[setting]["chains"], messages


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("name", [*GOLD_DATASETS, "anesthesia"])
def test_dawid_skene_full_settings_raise_no_sampling_warning(name):
    """At the default settings R-hat stays under 1.01 and no SamplingWarning is raised.

    Not checked at the reduced settings: the max of split R-hat over several hundred
    confusion entries from 2 x 500 draws exceeds 1.01 by chance (1.01-1.03 observed with bulk
    ESS > 800).
    """
    model, messages, _ = nuts_fit(name, "full")
    assert model.diagnostics_.max_rhat <= 1.01, messages
    assert messages == []


@pytest.mark.realdata
@pytest.mark.parametrize("setting", SETTING_PARAMS)
def test_anesthesia_prevalence_matches_rater(setting):
    model, _, _ = nuts_fit("anesthesia", setting)
    prevalence = model.prevalence_["mean"]
    assert prevalence.index.tolist() == list(RATER_PREVALENCE)
    published = pd.Series(RATER_PREVALENCE)
    diff = (prevalence - published).abs()
    assert (diff <= PREVALENCE_TOLERANCE).all(), pd.DataFrame(
        {"ours": prevalence, "rater": published}
    )


@pytest.mark.realdata
def test_dawid_skene_map_beats_majority_vote_on_rte():
    """Sanity of the scoring on real data: MAP Dawid-Skene beats majority vote on accuracy."""
    annotations, gold = require("rte")
    mv = evaluate(cb.MajorityVote().fit(annotations, random_seed=0), gold)
    ds = evaluate(cb.DawidSkene().fit(annotations, method="map", random_seed=0), gold)
    assert ds["accuracy"] > mv["accuracy"]
    assert ds["brier"] < mv["brier"]


# ---------------------------------------------------------------------------- the loader
@pytest.mark.realdata
def test_real_datasets_load():
    annotations, gold = require("anesthesia")
    assert list(annotations.columns) == ["item", "annotator", "label"]
    assert gold is None
    # one annotator rated each of the 45 items three times: repeated labels are kept as data
    assert len(annotations) == 315
    assert annotations.duplicated(["item", "annotator"]).sum() == 90
    for name in GOLD_DATASETS:
        annotations, gold = require(name)
        assert gold is not None
        assert gold.index.isin(annotations["item"]).all()
        assert set(gold.unique()) <= set(annotations["label"].unique())


def make_dataset(root, name, *, gold=True):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "annotations.csv").write_text("item,annotator,label\n1,a,x\n1,b,y\n2,a,y\n")
    if gold:
        (folder / "gold.csv").write_text("item,label\n1,x\n2,y\n")
    return folder


def test_data_home_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWDBAYES_DATA", str(tmp_path))
    assert data_home() == tmp_path
    assert list_datasets() == []
    make_dataset(tmp_path, "toy")
    make_dataset(tmp_path, "nogold", gold=False)
    (tmp_path / "not-a-dataset").mkdir()
    assert list_datasets() == ["nogold", "toy"]
    annotations, gold = load_dataset("toy")
    assert annotations.shape == (3, 3)
    assert gold.to_dict() == {1: "x", 2: "y"}
    assert gold.index.name == "item"
    assert load_dataset("nogold")[1] is None


def test_data_home_default_next_to_repository(monkeypatch):
    monkeypatch.delenv("CROWDBAYES_DATA", raising=False)
    repo = datasets._repository_root()
    if repo is None or not (repo.parent / "shared" / "datasets").is_dir():
        pytest.skip("not a source checkout with ../shared/datasets")
    assert data_home() == repo.parent / "shared" / "datasets"


def test_data_home_falls_back_to_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("CROWDBAYES_DATA", raising=False)
    monkeypatch.setattr(datasets, "_repository_root", lambda: None)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert data_home() == tmp_path / "shared" / "datasets"


def test_missing_dataset_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWDBAYES_DATA", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="that folder does not exist") as err:
        load_dataset("rte")
    message = str(err.value)
    assert str(tmp_path / "absent" / "rte" / "annotations.csv") in message
    assert "set CROWDBAYES_DATA" in message
    monkeypatch.setenv("CROWDBAYES_DATA", str(tmp_path))
    make_dataset(tmp_path, "toy")
    with pytest.raises(ValueError, match="datasets there: toy"):
        load_dataset("rte")


@pytest.mark.parametrize("bad", ["", "../rte", "a/b", 3])
def test_dataset_name_must_be_plain(bad):
    with pytest.raises(ValueError, match="plain folder name"):
        load_dataset(bad)


def test_dataset_without_required_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWDBAYES_DATA", str(tmp_path))
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "annotations.csv").write_text("task,worker,label\n1,a,0\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['annotator', 'item'\]"):
        load_dataset("broken")


# ---------------------------------------------------------------------------- the benchmark
def load_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "real_data.py"
    if not path.is_file():
        pytest.skip(f"{path} not present (installed package, not a checkout)")
    spec = importlib.util.spec_from_file_location("real_data_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.realdata
def test_benchmark_script_runs(tmp_path, capsys):
    require("rte")
    bench = load_benchmark()
    out = tmp_path / "report.md"
    args = ["--datasets", "rte", "--models", "majority-vote", "--no-crowdkit", "--out", str(out)]
    assert bench.main(args) == 0
    text = out.read_text()
    assert "| rte | crowdbayes majority-vote |" in text
    assert "dawid-skene NUTS not run" in text
    assert text in capsys.readouterr().out


@pytest.mark.realdata
@pytest.mark.slow
def test_benchmark_script_anesthesia(tmp_path):
    require("anesthesia")
    bench = load_benchmark()
    out = tmp_path / "report.md"
    args = ["--datasets", "anesthesia", "--draws", "300", "--tune", "300", "--chains", "2"]
    bench.main([*args, "--out", str(out)])
    text = out.read_text()
    assert "## anesthesia prevalence (no gold)" in text
    assert text.count("| 0.") >= 4


def test_benchmark_rejects_unknown_dataset():
    bench = load_benchmark()
    with pytest.raises(SystemExit):
        bench.parse_args(["--datasets", "nope"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--models", "stan"])
