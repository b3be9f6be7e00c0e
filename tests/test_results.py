"""FitResult: exact save/load round trips, tamper detection, documented tables, provenance."""

import json
from pathlib import Path
from typing import Any

import arviz
import numpy as np
import pandas as pd
import pymc
import pytest
import xarray as xr
from test_estimators import NUTS_SETTINGS, nuts_fit

import crowdbayes as cb
from crowdbayes.results import CI_PROB, FitResult, provenance_id

TABLES = ["labels", "label_probabilities", "annotators", "prevalence"]


@pytest.fixture(scope="module")
def map_fit(small_sim: cb.Simulation) -> cb.DawidSkene:
    gold = small_sim.true_labels.iloc[:10]
    return cb.DawidSkene(priors={"prior_accuracy": 0.7}).fit(
        small_sim.annotations, gold=gold, method="map", random_seed=12
    )


@pytest.fixture(scope="module")
def vote_fit(small_sim: cb.Simulation) -> cb.MajorityVote:
    return cb.MajorityVote().fit(small_sim.annotations, random_seed=3)


@pytest.fixture(scope="session")
def nuts_model() -> cb.DawidSkene:
    return nuts_fit()[0]


FITS = ["map_fit", "vote_fit", "nuts_model"]


@pytest.fixture(params=FITS)
def fitted(request: pytest.FixtureRequest) -> cb.CrowdModel:
    return request.getfixturevalue(request.param)


def assert_same_result(a: FitResult, b: FitResult) -> None:
    assert dict(a.datatree.attrs) == dict(b.datatree.attrs)
    assert sorted(a.datatree.children) == sorted(b.datatree.children)
    for name in a.datatree.children:
        xr.testing.assert_identical(a.datatree[name].to_dataset(), b.datatree[name].to_dataset())
        assert dict(a.datatree[name].attrs) == dict(b.datatree[name].attrs), name
    xr.testing.assert_identical(a.datatree, b.datatree)
    for table in TABLES:
        pd.testing.assert_frame_equal(getattr(a, table)(), getattr(b, table)())
    if "confusion" in a.summary:
        pd.testing.assert_frame_equal(a.confusion(), b.confusion())
    assert a.diagnostics == b.diagnostics
    assert a.summary_text() == b.summary_text()
    for field in ("item_index", "annotator_index", "label_index", "gold_index"):
        np.testing.assert_array_equal(getattr(a.data, field), getattr(b.data, field))
    for field in ("items", "annotators", "categories"):
        assert getattr(a.data, field).tolist() == getattr(b.data, field).tolist(), field
        assert getattr(a.data, field).name == getattr(b.data, field).name


def test_save_load_round_trip_is_exact(fitted: cb.CrowdModel, tmp_path: Path) -> None:
    path = tmp_path / "fit.nc"
    fitted.result_.save(path)
    loaded = FitResult.load(path)
    assert_same_result(fitted.result_, loaded)
    # Saving the loaded result again gives the same result once more.
    again = tmp_path / "again.nc"
    loaded.save(again)
    assert_same_result(loaded, FitResult.load(again))
    # str paths work as well as Path objects.
    assert_same_result(loaded, FitResult.load(str(again)))


def rewrite(path: Path, out: Path, **attrs: Any) -> None:
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        dt = tree.load()
    for key, value in attrs.items():
        if value is None:
            del dt.attrs[key]
        else:
            dt.attrs[key] = value
    dt.to_netcdf(out, engine="h5netcdf")


@pytest.mark.parametrize(
    "change",
    [
        {"priors": json.dumps({"prevalence": 3.0, "confusion": None, "pseudo_count": 8.0})},
        {"model": "one-coin"},
        {"random_seed": 13},
        {"method": "nuts"},
        {"n_annotations": 1},
    ],
    ids=["priors", "model", "seed", "method", "n_annotations"],
)
def test_tampered_settings_are_detected(
    map_fit: cb.DawidSkene, tmp_path: Path, change: dict[str, Any]
) -> None:
    path, tampered = tmp_path / "fit.nc", tmp_path / "tampered.nc"
    map_fit.result_.save(path)
    rewrite(path, tampered, **change)
    with pytest.raises(ValueError, match="provenance id does not match its recorded settings"):
        FitResult.load(tampered)


def test_untouched_rewrite_loads(map_fit: cb.DawidSkene, tmp_path: Path) -> None:
    """The tamper tests' rewrite itself changes nothing that matters."""
    path, copy = tmp_path / "fit.nc", tmp_path / "copy.nc"
    map_fit.result_.save(path)
    rewrite(path, copy)
    assert_same_result(map_fit.result_, FitResult.load(copy))


def test_missing_provenance_is_not_a_result(map_fit: cb.DawidSkene, tmp_path: Path) -> None:
    path, tampered = tmp_path / "fit.nc", tmp_path / "no_id.nc"
    map_fit.result_.save(path)
    rewrite(path, tampered, id=None)
    with pytest.raises(ValueError, match="is not a crowdbayes result"):
        FitResult.load(tampered)


def test_foreign_netcdf_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.nc"
    xr.Dataset({"x": ("a", np.arange(3))}, attrs={"title": "not ours"}).to_netcdf(
        path, engine="h5netcdf"
    )
    with pytest.raises(ValueError, match=r"other\.nc' is not a crowdbayes result"):
        FitResult.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="result file not found"):
        FitResult.load(tmp_path / "nope.nc")


@pytest.mark.parametrize("content", [b"item,annotator,label\n1,a,0\n", b""])
def test_non_netcdf_file_is_rejected(tmp_path: Path, content: bytes) -> None:
    """Documented: ValueError when the file is not a crowdbayes result (not an h5py error)."""
    path = tmp_path / "fit.nc"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="fit.nc"):
        FitResult.load(path)


# --------------------------------------------------------------------------- tables
def test_table_layout(fitted: cb.CrowdModel) -> None:
    result = fitted.result_
    data = result.data
    categories = list(data.categories)

    labels = result.labels()
    assert labels.index.name == "item"
    assert labels.index.tolist() == list(data.items)
    assert labels.columns.tolist() == ["label", "probability", "entropy"] + [
        f"p_{c}" for c in categories
    ]

    probs = result.label_probabilities()
    assert probs.index.name == "item" and probs.columns.name == "category"
    assert probs.columns.tolist() == categories
    np.testing.assert_array_equal(probs.to_numpy(), labels[[f"p_{c}" for c in categories]])

    annotators = result.annotators()
    assert annotators.index.name == "annotator"
    assert annotators.index.tolist() == list(data.annotators)
    assert annotators.columns.tolist() == ["n_labels", "accuracy", "accuracy_low", "accuracy_high"]
    assert annotators["n_labels"].tolist() == np.bincount(data.annotator_index).tolist()
    assert annotators["n_labels"].sum() == data.n_annotations

    prevalence = result.prevalence()
    assert prevalence.index.name == "category"
    assert prevalence.index.tolist() == categories
    assert prevalence.columns.tolist() == ["mean", "low", "high"]

    if result.model_name == "majority-vote":
        assert "confusion" not in result.summary
        return
    confusion = result.confusion()
    assert confusion.columns.tolist() == [
        "annotator",
        "true_category",
        "category",
        "mean",
        "low",
        "high",
    ]
    assert len(confusion) == data.n_annotators * data.n_categories**2
    rows = confusion.groupby(["annotator", "true_category"])["mean"].sum()
    np.testing.assert_allclose(rows.to_numpy(), 1.0)
    # Long format agrees with the summary array, entry by entry.
    da = result.summary["confusion"].sel(statistic="mean")
    first = confusion.iloc[0]
    assert first["mean"] == float(
        da.sel(
            annotator=first["annotator"],
            true_category=first["true_category"],
            category=first["category"],
        )
    )


def test_point_estimates_have_no_intervals(map_fit: cb.DawidSkene) -> None:
    result = map_fit.result_
    assert result.prevalence()[["low", "high"]].isna().all().all()
    assert result.annotators()[["accuracy_low", "accuracy_high"]].isna().all().all()
    assert result.prevalence()["mean"].notna().all()


def test_gold_is_stored(map_fit: cb.DawidSkene, small_sim: cb.Simulation) -> None:
    gold_index = map_fit.datatree_.constant_data["gold_index"].to_numpy()
    assert (gold_index >= 0).sum() == 10
    probs = map_fit.label_probs_.iloc[:10].to_numpy()
    np.testing.assert_array_equal(probs.argmax(1), small_sim.true_labels.iloc[:10].to_numpy())
    np.testing.assert_array_equal(probs.max(1), 1.0)


# --------------------------------------------------------------------------- provenance
#: The versions of the packages that made a fit, as it records them.
VERSIONS = {
    "crowdbayes_version": cb.__version__,
    "pymc_version": pymc.__version__,
    "arviz_version": arviz.__version__,
}
#: How a fit was made; with the versions, what its id hashes.
SETTINGS = ("model", "priors", "method", "random_seed", "n_annotations")
#: The sampler's settings: "None" for a fit that does not sample.
SAMPLER_SETTINGS = ("sampler", "draws", "tune", "chains")
#: What a fit records besides: its creation time, interval probability, diagnostics and id.
RECORDS = ("created", "ci_prob", "diagnostics", "id")
PROVENANCE_KEYS = {*VERSIONS, *SETTINGS, *SAMPLER_SETTINGS, *RECORDS}


def check_common_provenance(attrs: dict[str, Any], model: str, n_annotations: int) -> None:
    assert PROVENANCE_KEYS <= set(attrs)
    for key, version in VERSIONS.items():
        assert attrs[key] == version, key
    assert attrs["ci_prob"] == CI_PROB
    assert attrs["model"] == model
    assert int(attrs["n_annotations"]) == n_annotations
    assert attrs["id"] == provenance_id(attrs)
    assert isinstance(json.loads(attrs["diagnostics"]), dict)
    pd.Timestamp(attrs["created"])  # ISO timestamp


def test_provenance_of_a_map_fit(map_fit: cb.DawidSkene) -> None:
    attrs = dict(map_fit.datatree_.attrs)
    check_common_provenance(attrs, "dawid-skene", map_fit.result_.data.n_annotations)
    assert attrs["method"] == "map"
    assert json.loads(attrs["priors"]) == cb.DawidSkenePriors(prior_accuracy=0.7).to_dict()
    assert int(attrs["random_seed"]) == 12
    for key in SAMPLER_SETTINGS:
        assert attrs[key] == "None", key


def test_provenance_of_a_nuts_fit(nuts_model: cb.DawidSkene) -> None:
    attrs = dict(nuts_model.datatree_.attrs)
    check_common_provenance(attrs, "dawid-skene", nuts_model.result_.data.n_annotations)
    assert attrs["method"] == "nuts"
    assert json.loads(attrs["priors"]) == cb.DawidSkenePriors().to_dict()
    assert attrs["sampler"] == NUTS_SETTINGS["sampler"]
    for key in ("draws", "tune", "chains", "random_seed"):
        assert int(attrs[key]) == NUTS_SETTINGS[key], key
    assert json.loads(attrs["diagnostics"]) == nuts_model.diagnostics_.to_dict()
    assert "sampling_time" in nuts_model.datatree_.posterior.attrs


def test_provenance_of_majority_vote(vote_fit: cb.MajorityVote) -> None:
    attrs = dict(vote_fit.datatree_.attrs)
    check_common_provenance(attrs, "majority-vote", vote_fit.result_.data.n_annotations)
    assert attrs["method"] == "vote"
    assert int(attrs["random_seed"]) == 3


def test_id_depends_on_every_setting(map_fit: cb.DawidSkene) -> None:
    attrs = dict(map_fit.datatree_.attrs)
    base = provenance_id(attrs)
    for key in ("crowdbayes_version", *SETTINGS, *SAMPLER_SETTINGS):
        changed = {**attrs, key: str(attrs[key]) + "x"}
        assert provenance_id(changed) != base, key
    # The creation time is not a setting.
    assert provenance_id({**attrs, "created": "2000-01-01T00:00:00+00:00"}) == base
