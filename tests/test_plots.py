"""Figures: structure (axes, order, texts, colour scale), input checks, and PNG output."""

import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.image import imread

import crowdbayes as cb
from crowdbayes.plots import plot_annotator_reliability, plot_confusion_grid, plot_prevalence


@pytest.fixture(scope="module")
def sim() -> cb.Simulation:
    return cb.simulate_dawid_skene(n_items=150, n_annotators=8, n_categories=3, random_seed=11)


@pytest.fixture(scope="module")
def ds_map(sim: cb.Simulation) -> cb.DawidSkene:
    return cb.DawidSkene().fit(sim.annotations, method="map", random_seed=0)


@pytest.fixture(scope="module")
def with_intervals(ds_map: cb.DawidSkene) -> cb.FitResult:
    """The MAP result with known intervals (mean -/+ 0.05, clipped) written into its summary."""
    res = ds_map.result_
    tree = res.datatree.copy(deep=True)
    summary = tree["summary"].to_dataset()
    for name in ("confusion", "annotator_accuracy", "prevalence"):
        da = summary[name]
        mean = da.sel(statistic="mean")
        summary[name] = (
            xr.concat([mean, (mean - 0.05).clip(0, 1), (mean + 0.05).clip(0, 1)], dim="statistic")
            .assign_coords(statistic=["mean", "lower", "upper"])
            .transpose(*da.dims)
        )
    tree["summary"] = xr.DataTree(summary)
    return cb.FitResult(datatree=tree, data=res.data)


def _heatmaps(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def _cell_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


# ---------------------------------------------------------------------- confusion grid
def test_confusion_grid_default_orders_by_workload(ds_map: cb.DawidSkene) -> None:
    fig = plot_confusion_grid(ds_map)
    assert isinstance(fig, Figure)
    heatmaps = _heatmaps(fig)
    assert len(heatmaps) == 8
    assert len(fig.axes) == 9  # eight heatmaps and the colour bar
    table = ds_map.annotators_
    expected = table.sort_values("n_labels", ascending=False, kind="stable").index.tolist()
    assert [ax.get_title().split()[0] for ax in heatmaps] == expected
    for ax in heatmaps:
        assert ax.images[0].get_clim() == (0.0, 1.0)
        texts = _cell_texts(ax)
        assert len(texts) == 9
        # point estimate: the interval line is omitted
        assert all("[" not in t for t in texts)


def test_confusion_grid_cell_values_match_result(ds_map: cb.DawidSkene) -> None:
    fig = plot_confusion_grid(ds_map, annotators=["a5"])
    (ax,) = _heatmaps(fig)
    conf = ds_map.confusion_
    rows = conf[conf["annotator"] == "a5"].sort_values(["true_category", "category"])
    np.testing.assert_allclose(
        ax.images[0].get_array(), rows["mean"].to_numpy().reshape(3, 3), rtol=0, atol=0
    )
    assert _cell_texts(ax) == [f"{v:.2f}" for v in rows["mean"]]


def test_confusion_grid_selection_and_limits(ds_map: cb.DawidSkene) -> None:
    fig = plot_confusion_grid(ds_map, annotators=["a3", "a1"])
    assert [ax.get_title().split()[0] for ax in _heatmaps(fig)] == ["a3", "a1"]
    assert len(fig.axes) == 3
    fig = plot_confusion_grid(ds_map, max_annotators=5)  # 2 x 4 grid: three empty panels removed
    assert len(_heatmaps(fig)) == 5
    assert len(fig.axes) == 6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"annotators": ["a1", "nobody"]}, "not in the result: \\['nobody'\\]"),
        ({"annotators": []}, "annotators is empty"),
        ({"max_annotators": 0}, "max_annotators must be at least 1"),
    ],
    ids=["unknown-annotator", "empty", "zero-max"],
)
def test_confusion_grid_rejects_bad_selection(ds_map, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        plot_confusion_grid(ds_map, **kwargs)


def test_confusion_grid_shows_intervals(with_intervals: cb.FitResult) -> None:
    fig = plot_confusion_grid(with_intervals, annotators=["a2"])
    (ax,) = _heatmaps(fig)
    conf = with_intervals.confusion()
    rows = conf[conf["annotator"] == "a2"].sort_values(["true_category", "category"])
    expected = [
        f"{m:.2f}\n[{lo:.2f}, {hi:.2f}]"
        for m, lo, hi in zip(rows["mean"], rows["low"], rows["high"], strict=True)
    ]
    assert _cell_texts(ax) == expected
    assert "94% interval" in fig.get_suptitle()


# ---------------------------------------------------------------------- reliability
def test_reliability_sorted_with_truth(ds_map: cb.DawidSkene, sim: cb.Simulation) -> None:
    truth = sim.annotator_accuracy()
    fig = plot_annotator_reliability(ds_map, truth=truth)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    table = ds_map.annotators_.sort_values("accuracy", kind="stable")
    ticks = [t.get_text().split()[0] for t in ax.get_yticklabels()]
    assert ticks == table.index.tolist()
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["estimate"].get_xdata(), table["accuracy"].to_numpy())
    np.testing.assert_allclose(
        lines["true accuracy"].get_xdata(), truth.reindex(table.index).to_numpy()
    )
    assert not ax.collections  # no interval segments for a point estimate


def test_reliability_intervals_and_cap(with_intervals: cb.FitResult) -> None:
    fig = plot_annotator_reliability(with_intervals)
    ax = fig.axes[0]
    (segments,) = ax.collections
    assert len(segments.get_segments()) == 8
    fig = plot_annotator_reliability(with_intervals, max_annotators=5)
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == 5
    assert "5 busiest of 8" in fig.get_suptitle()
    busiest = set(with_intervals.annotators().nlargest(5, "n_labels", keep="first").index)
    assert {t.get_text().split()[0] for t in ax.get_yticklabels()} == busiest


def test_reliability_rejects_unrelated_truth(ds_map: cb.DawidSkene) -> None:
    import pandas as pd

    with pytest.raises(ValueError, match="shares no annotator"):
        plot_annotator_reliability(ds_map, truth=pd.Series({"zz": 0.5}))


# ---------------------------------------------------------------------- prevalence
def test_prevalence_points_and_intervals(
    ds_map: cb.DawidSkene, with_intervals: cb.FitResult
) -> None:
    fig = plot_prevalence(ds_map)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    (points,) = ax.get_lines()
    np.testing.assert_allclose(points.get_ydata(), ds_map.prevalence_["mean"].to_numpy())
    assert not ax.collections
    ax = plot_prevalence(with_intervals).axes[0]
    (segments,) = ax.collections
    assert len(segments.get_segments()) == 3


# ---------------------------------------------------------------------- common
def test_majority_vote_and_result_objects(sim: cb.Simulation) -> None:
    mv = cb.MajorityVote().fit(sim.annotations, random_seed=0)
    for obj in (mv, mv.result_):
        assert len(plot_annotator_reliability(obj).axes) == 1
        assert len(plot_prevalence(obj).axes) == 1
        with pytest.raises(ValueError, match="no confusion matrices"):
            plot_confusion_grid(obj)


def test_rejects_unfitted_and_foreign_objects() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        plot_prevalence(cb.DawidSkene())
    with pytest.raises(TypeError, match="FitResult"):
        plot_prevalence("fit.nc")


def test_figures_save_to_png_without_pyplot(ds_map, with_intervals, sim, tmp_path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    figures = {
        "confusion": plot_confusion_grid(with_intervals),
        "annotators": plot_annotator_reliability(ds_map, truth=sim.annotator_accuracy()),
        "prevalence": plot_prevalence(with_intervals),
    }
    for name, fig in figures.items():
        path = tmp_path / f"{name}.png"
        fig.savefig(path, dpi=60)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width = imread(path).shape[:2]
        w_in, h_in = fig.get_size_inches()
        assert abs(width - w_in * 60) <= 1 and abs(height - h_in * 60) <= 1
    # built without pyplot: nothing registered, nothing to close
    assert plt.get_fignums() == before


# ---------------------------------------------------------------------- reliability diagram
def test_reliability_diagram_matches_hand_computed_bins() -> None:
    import pandas as pd

    from crowdbayes.plots import plot_reliability_diagram

    # Confidences 0.95, 0.95 (both right), 0.6, 0.6 (one right), 0.7 (wrong); 5 bins of 0.2.
    probs = pd.DataFrame(
        {"x": [0.95, 0.05, 0.6, 0.4, 0.3], "y": [0.05, 0.95, 0.4, 0.6, 0.7]},
        index=list("abcde"),
    )
    gold = pd.Series({"a": "x", "b": "y", "c": "x", "d": "x", "e": "x", "zz": "y"})
    fig = plot_reliability_diagram(probs, gold, n_bins=5)
    (ax,) = fig.axes
    # bins (0.4, 0.6]: c, d; (0.6, 0.8]: e; (0.8, 1.0]: a, b
    expected_conf = [0.6, 0.7, 0.95]
    expected_acc = [0.5, 0.0, 1.0]
    points = next(line for line in ax.get_lines() if line.get_label().startswith("mean conf"))
    np.testing.assert_allclose(points.get_xdata(), expected_conf)
    np.testing.assert_allclose(points.get_ydata(), expected_acc)
    bars = ax.patches
    np.testing.assert_allclose([b.get_x() for b in bars], [0.4, 0.6, 0.8])
    np.testing.assert_allclose([b.get_width() for b in bars], [0.2, 0.2, 0.2])
    np.testing.assert_allclose([b.get_height() for b in bars], expected_acc)
    assert [t.get_text() for t in ax.texts] == ["2", "1", "2"]
    ece = (2 * 0.1 + 1 * 0.7 + 2 * 0.05) / 5
    assert f"ECE = {ece:.3f}" in ax.get_title()
    assert "5 gold items" in ax.get_title()
    assert "(" not in ax.get_title().split(":")[0]  # no model name for a bare DataFrame
    assert ax.get_xlim() == (0.4, 1.0)  # two categories: confidence >= 0.5, in bin (0.4, 0.6]


def test_reliability_diagram_from_fit_into_given_axes(
    ds_map: cb.DawidSkene, sim: cb.Simulation
) -> None:
    from crowdbayes.metrics import calibration_table, expected_calibration_error
    from crowdbayes.plots import plot_reliability_diagram

    outer = Figure()
    left, right = outer.subplots(1, 2)
    fig = plot_reliability_diagram(ds_map, sim.true_labels, n_bins=4, ax=right)
    assert fig is outer
    assert not left.lines and right.lines
    table = calibration_table(ds_map.label_probs_, sim.true_labels, n_bins=4)
    points = next(line for line in right.get_lines() if line.get_label().startswith("mean conf"))
    np.testing.assert_allclose(points.get_xdata(), table["confidence"].to_numpy())
    np.testing.assert_allclose(points.get_ydata(), table["accuracy"].to_numpy())
    assert [int(t.get_text()) for t in right.texts] == table["n_items"].tolist()
    assert sum(int(t.get_text()) for t in right.texts) == sim.annotations["item"].nunique()
    ece = expected_calibration_error(ds_map.label_probs_, sim.true_labels, n_bins=4)
    assert right.get_title().startswith(f"Reliability diagram (dawid-skene): ECE = {ece:.3f}")


def test_reliability_diagram_rejects_foreign_gold(ds_map: cb.DawidSkene) -> None:
    import pandas as pd

    from crowdbayes.plots import plot_reliability_diagram

    items = ds_map.label_probs_.index[:3]
    with pytest.raises(ValueError, match="not among the categories"):
        plot_reliability_diagram(ds_map, pd.Series(["nope"] * 3, index=items))
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        plot_reliability_diagram(ds_map, pd.Series([0] * 3, index=items), n_bins=0)


# ---------------------------------------------------------------------- item uncertainty
def test_item_uncertainty_against_hand_computed_agreement(
    ds_map: cb.DawidSkene, sim: cb.Simulation
) -> None:
    from crowdbayes.plots import plot_item_uncertainty

    fig = plot_item_uncertainty(ds_map)
    (ax,) = fig.axes
    (points,) = ax.get_lines()
    table = ds_map.labels_
    agreement = []
    for item in table.index:
        labels = sim.annotations.loc[sim.annotations["item"] == item, "label"].tolist()
        agreement.append(max(labels.count(v) for v in set(labels)) / len(labels))
    np.testing.assert_allclose(points.get_xdata(), agreement)
    np.testing.assert_allclose(points.get_ydata(), 1.0 - table["probability"].to_numpy())
    assert not ax.collections  # no difficulty, no intervals
    assert "observed agreement" in ax.get_title()
    ax = plot_item_uncertainty(ds_map.result_, uncertainty="entropy").axes[0]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), table["entropy"].to_numpy())
    assert ax.get_ylabel().startswith("entropy")


def test_item_uncertainty_against_difficulty(ds_map: cb.DawidSkene) -> None:
    from crowdbayes.plots import plot_item_uncertainty

    res = ds_map.result_
    tree = res.datatree.copy(deep=True)
    summary = tree["summary"].to_dataset()
    n = res.data.n_items
    mean = np.linspace(0.05, 0.6, n)
    lower = mean - 0.04
    upper = mean + np.linspace(0.01, 0.2, n)
    lower[0] = np.nan  # an item without an interval draws no segment
    summary["difficulty"] = xr.DataArray(
        np.stack([mean, lower, upper], axis=1),
        dims=("item", "statistic"),
        coords={"item": summary["item"], "statistic": ["mean", "lower", "upper"]},
    )
    tree["summary"] = xr.DataTree(summary)
    fig = plot_item_uncertainty(cb.FitResult(datatree=tree, data=res.data))
    (ax,) = fig.axes
    (points,) = ax.get_lines()
    np.testing.assert_allclose(points.get_xdata(), mean)
    np.testing.assert_allclose(points.get_ydata(), 1.0 - res.labels()["probability"].to_numpy())
    (segments,) = ax.collections
    segs = np.array(segments.get_segments())
    assert segs.shape == (n - 1, 2, 2)
    np.testing.assert_allclose(segs[:, 0, 0], lower[1:])
    np.testing.assert_allclose(segs[:, 1, 0], upper[1:])
    np.testing.assert_allclose(segs[:, 0, 1], points.get_ydata()[1:])
    assert ax.get_xlabel().startswith("difficulty")
    assert "against difficulty" in ax.get_title()


def test_item_uncertainty_rejects_bad_measure(ds_map: cb.DawidSkene) -> None:
    from crowdbayes.plots import plot_item_uncertainty

    with pytest.raises(ValueError, match="uncertainty must be 'mode' or 'entropy'"):
        plot_item_uncertainty(ds_map, uncertainty="variance")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not fitted"):
        plot_item_uncertainty(cb.DawidSkene())
