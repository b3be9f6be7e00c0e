"""The command line, end to end: outputs of fit/simulate/demo, bad input, the installed script."""

import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crowdbayes as cb
from crowdbayes.cli import _run_reporting_warnings, main
from crowdbayes.models import MODELS

LABEL_COLUMNS = ["item", "label", "probability", "p_0", "p_1", "p_2"]
ANNOTATOR_COLUMNS = ["annotator", "n_labels", "accuracy", "accuracy_low", "accuracy_high"]
PREVALENCE_COLUMNS = ["category", "mean", "low", "high"]
CONFUSION_COLUMNS = ["annotator", "true_category", "category", "mean", "low", "high"]
FIT_FILES = {
    "labels.csv",
    "annotators.csv",
    "prevalence.csv",
    "confusion.csv",
    "fit.nc",
    "summary.txt",
}


@pytest.fixture(scope="module")
def sim() -> cb.Simulation:
    return cb.simulate_dawid_skene(n_items=100, n_annotators=8, n_categories=3, random_seed=31)


@pytest.fixture(scope="module")
def csv(sim: cb.Simulation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "annotations.csv"
    sim.annotations.to_csv(path, index=False)
    return path


#: Models whose labels.csv ends with the item-difficulty columns.
DIFFICULTY_MODELS = {"item-difficulty", "logistic-random-effects", "glad"}


def _check_label_table(
    labels: pd.DataFrame, categories: list[str], *, difficulty: bool = False
) -> None:
    p_cols = [f"p_{c}" for c in categories]
    extra = ["difficulty", "difficulty_low", "difficulty_high"] if difficulty else []
    assert labels.columns.tolist() == ["item", "label", "probability", *p_cols, *extra]
    if difficulty:
        assert labels["difficulty"].between(0, 1).all()
    probs = labels[p_cols].to_numpy()
    assert np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(labels["probability"], probs.max(axis=1))
    # the label is a most probable category (majority vote breaks ties at random)
    position = {str(c): k for k, c in enumerate(categories)}
    label_pos = labels["label"].astype(str).map(position).to_numpy()
    np.testing.assert_array_equal(probs[np.arange(len(labels)), label_pos], probs.max(axis=1))


def _check_fit_dir(
    out: Path, sim: cb.Simulation, *, intervals: bool, difficulty: bool = False
) -> None:
    labels = pd.read_csv(out / "labels.csv")
    _check_label_table(labels, ["0", "1", "2"], difficulty=difficulty)
    assert sorted(labels["item"]) == sorted(sim.true_labels.index)

    annotators = pd.read_csv(out / "annotators.csv")
    assert annotators.columns.tolist() == ANNOTATOR_COLUMNS
    counts = sim.annotations["annotator"].value_counts()
    assert dict(zip(annotators["annotator"], annotators["n_labels"], strict=True)) == dict(counts)
    assert annotators["accuracy"].between(0, 1).all()

    prevalence = pd.read_csv(out / "prevalence.csv")
    assert prevalence.columns.tolist() == PREVALENCE_COLUMNS
    assert prevalence["category"].tolist() == [0, 1, 2]
    assert prevalence["mean"].sum() == pytest.approx(1.0)

    confusion = pd.read_csv(out / "confusion.csv")
    assert confusion.columns.tolist() == CONFUSION_COLUMNS
    assert len(confusion) == len(annotators) * 9
    row_sums = confusion.groupby(["annotator", "true_category"])["mean"].sum()
    np.testing.assert_allclose(row_sums, 1.0, atol=1e-9)

    for table, (mean, low, high) in (
        (annotators, ("accuracy", "accuracy_low", "accuracy_high")),
        (prevalence, ("mean", "low", "high")),
        (confusion, ("mean", "low", "high")),
    ):
        if intervals:
            assert table[[low, high]].notna().all().all()
            assert (table[low] <= table[mean]).all() and (table[mean] <= table[high]).all()
        else:
            assert table[[low, high]].isna().all().all()


# ---------------------------------------------------------------------- fit (MAP: fast)
@pytest.mark.parametrize("model", [m for m in MODELS if m != "majority-vote"])
def test_fit_map_writes_every_output(model, csv, sim, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(["fit", str(csv), "--model", model, "--method", "map", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert {p.name for p in out.iterdir()} == FIT_FILES
    _check_fit_dir(out, sim, intervals=False, difficulty=model in DIFFICULTY_MODELS)
    loaded = cb.FitResult.load(out / "fit.nc")
    assert loaded.model_name == model
    pd.testing.assert_frame_equal(
        loaded.labels().drop(columns="entropy").reset_index(),
        pd.read_csv(out / "labels.csv"),
        check_dtype=False,
    )
    summary = (out / "summary.txt").read_text()
    assert summary == loaded.summary_text()
    assert f"model {model}, method map" in summary
    assert f"fitted {model}" in captured.out
    assert str(out) in captured.out
    assert "diagnostics: point estimate" in captured.out


def test_fit_majority_vote_has_no_confusion_file(csv, sim, tmp_path, capsys) -> None:
    out = tmp_path / "mv"
    assert main(["fit", str(csv), "--model", "majority-vote", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == FIT_FILES - {"confusion.csv"}
    labels = pd.read_csv(out / "labels.csv")
    _check_label_table(labels, ["0", "1", "2"])
    votes = (
        sim.annotations.groupby("item")["label"].value_counts(normalize=True).unstack(fill_value=0)
    )
    np.testing.assert_allclose(labels.set_index("item")[["p_0", "p_1", "p_2"]], votes)
    assert "by counting votes" in capsys.readouterr().out


def test_fit_custom_columns_declared_categories_and_gold(tmp_path, capsys) -> None:
    sim = cb.simulate_dawid_skene(n_items=60, n_annotators=6, n_categories=2, random_seed=3)
    names = np.array(["dog", "cat"], dtype=object)
    frame = pd.DataFrame(
        {
            "rater": sim.annotations["annotator"],
            "unit": "u" + sim.annotations["item"].astype(str),
            "answer": names[sim.annotations["label"].to_numpy()],
        }
    )
    data_path = tmp_path / "custom.csv"
    frame.to_csv(data_path, index=False)
    gold_item = "u0"
    gold_label = "bird"  # a declared category nobody used: only gold can make it the mode
    pd.DataFrame({"item": [gold_item], "label": [gold_label]}).to_csv(
        tmp_path / "gold.csv", index=False
    )
    out = tmp_path / "out"
    argv = [
        "fit", str(data_path), "--out", str(out), "--method", "map",
        "--item-col", "unit", "--annotator-col", "rater", "--label-col", "answer",
        "--categories", "dog, cat,bird", "--gold", str(tmp_path / "gold.csv"),
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    labels = pd.read_csv(out / "labels.csv")
    _check_label_table(labels, ["dog", "cat", "bird"])
    gold_row = labels.set_index("item").loc[gold_item]
    assert gold_row["label"] == gold_label
    assert gold_row["p_bird"] == pytest.approx(1.0)
    assert (labels.set_index("item").drop(index=gold_item)["label"] != "bird").all()
    assert pd.read_csv(out / "prevalence.csv")["category"].tolist() == ["dog", "cat", "bird"]
    assert "1 gold items" in capsys.readouterr().out


def test_fit_integer_categories_and_gold_warning(csv, sim, tmp_path, capsys) -> None:
    gold = pd.DataFrame({"item": [0, 1, 10_000], "label": [2, 2, 0]})  # the last item is unknown
    gold.to_csv(tmp_path / "gold.csv", index=False)
    out = tmp_path / "out"
    argv = [
        "fit", str(csv), "--out", str(out), "--method", "map",
        "--categories", "0,1,2,3", "--gold", str(tmp_path / "gold.csv"),
    ]  # fmt: skip
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 0
    assert captured.err.strip() == (
        "crowdbayes: warning: 1 gold item(s) have no annotations and are ignored"
    )
    labels = pd.read_csv(out / "labels.csv")
    _check_label_table(labels, ["0", "1", "2", "3"])
    assert labels.set_index("item").loc[[0, 1], "p_2"].tolist() == [1.0, 1.0]


def test_sampling_warnings_reach_stderr_in_words(capsys) -> None:
    def warn_twice() -> int:
        warnings.warn("R-hat up to 1.2: run more draws", cb.SamplingWarning, stacklevel=1)
        warnings.warn("R-hat up to 1.2: run more draws", cb.SamplingWarning, stacklevel=1)
        return 7

    assert _run_reporting_warnings(warn_twice) == 7
    assert capsys.readouterr().err == "crowdbayes: warning: R-hat up to 1.2: run more draws\n" * 2


# ---------------------------------------------------------------------- fit (NUTS: one run)
def test_fit_nuts_end_to_end(csv, sim, tmp_path, capsys) -> None:
    out = tmp_path / "nuts"
    argv = [
        "fit", str(csv), "--out", str(out),
        "--draws", "100", "--tune", "100", "--chains", "2", "--seed", "5", "--no-progress",
    ]  # fmt: skip
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert {p.name for p in out.iterdir()} == FIT_FILES
    _check_fit_dir(out, sim, intervals=True)

    loaded = cb.FitResult.load(out / "fit.nc")
    attrs = loaded.datatree.attrs
    assert (attrs["model"], attrs["method"], attrs["sampler"]) == ("dawid-skene", "nuts", "nutpie")
    assert (int(attrs["draws"]), int(attrs["chains"]), int(attrs["random_seed"])) == (100, 2, 5)
    assert loaded.datatree.posterior.sizes["draw"] == 100
    np.testing.assert_allclose(
        loaded.labels()["probability"].to_numpy(),
        pd.read_csv(out / "labels.csv")["probability"].to_numpy(),
    )
    # majority of items right: the posterior is usable even at these tiny settings
    labels = pd.read_csv(out / "labels.csv").set_index("item")["label"]
    assert (labels == sim.true_labels.reindex(labels.index)).mean() > 0.8

    # every sampling problem is on stderr in words and in summary.txt; nothing else is
    summary = (out / "summary.txt").read_text()
    assert "Sampling diagnostics" in summary and "max R-hat" in summary
    messages = loaded.diagnostics.messages
    err_lines = [line for line in captured.err.splitlines() if line.startswith("crowdbayes:")]
    assert err_lines == [f"crowdbayes: warning: dawid-skene: {m}" for m in messages]
    for m in messages:
        assert m in summary
    expected = "no problems found" if not messages else f"{len(messages)} problem(s)"
    assert f"diagnostics: {expected}" in captured.out
    assert "2 chains x 100 draws after 100 tuning steps at target acceptance 0.65, seed 5" in (
        captured.out
    )

    # the stored posterior draws intervals in the confusion grid
    from crowdbayes.plots import plot_confusion_grid

    fig = plot_confusion_grid(loaded, max_annotators=2)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 9 and all("\n[" in t for t in texts)


# ---------------------------------------------------------------------- bad input
def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


#: Bad annotation files: (their text, the pattern the error matches).
BAD_ANNOTATION_FILES = {
    "empty-file": ("", "is empty"),
    "header-only": ("item,annotator,label\n", "annotations are empty"),
    "missing-label-column": ("item,annotator\n1,a\n2,b\n", "missing column 'label'"),
    "missing-value": ("item,annotator,label\n1,a,0\n1,b,\n", "missing value"),
    "one-annotator": ("item,annotator,label\n1,a,0\n2,a,1\n", "only one annotator"),
}
#: Bad gold files next to valid annotations: (their text, the pattern the error matches).
BAD_GOLD_FILES = {
    "gold-outside-categories": ("item,label\n0,9\n", "gold labels outside the categories"),
    "gold-matches-nothing": ("item,label\n-5,1\n", "no gold item matches"),
}
#: Paths that are not files: (the command line, given the test's folder and a valid CSV
#: file, and the pattern the error matches).
BAD_PATHS = {
    "missing-file": (lambda d, csv: ["fit", str(d / "nope.csv")], "annotation file not found"),
    "folder-as-file": (lambda d, csv: ["fit", str(d)], "is not a file"),
    "missing-gold": (
        lambda d, csv: ["fit", str(csv), "--gold", str(d / "gold.csv")],
        "gold file not found",
    ),
}
#: Bad options after ``fit <a valid CSV file>``: (the options, the pattern the error matches).
BAD_OPTION_CASES = {
    "bad-item-col": (["--item-col", "unit"], "missing column 'unit'"),
    "unknown-model": (["--model", "stan"], "invalid choice"),
    "unknown-method": (["--method", "advi"], "invalid choice"),
    "unknown-sampler": (["--sampler", "hmc"], "invalid choice"),
    "zero-draws": (["--draws", "0"], "--draws: must be a positive"),
    "text-draws": (["--draws", "many"], "--draws: must be"),
    "negative-tune": (["--tune", "-1"], "--tune: must be"),
    "zero-chains": (["--chains", "0"], "--chains: must be"),
    "negative-seed": (["--seed", "-3"], "--seed: must be"),
    "target-accept": (["--target-accept", "1.5"], r"--target-accept: must be a number in \(0, 1\)"),
    "labels-outside-categories": (
        ["--categories", "0,1"],
        "labels outside the declared categories",
    ),
    "text-categories-for-int-labels": (["--categories", "a,b,c"], "must be integers"),
    "empty-category": (["--categories", "0,,1"], "without empty entries"),
    "no-out": ([], "required: --out"),
}


def bad_fit_command(case: str, folder: Path, csv: Path) -> tuple[list[str], str]:
    """The command line of a bad-input case (its files written into ``folder``) and the
    pattern its error matches."""
    if case in BAD_ANNOTATION_FILES:
        text, match = BAD_ANNOTATION_FILES[case]
        return ["fit", str(_write(folder / "bad.csv", text))], match
    if case in BAD_GOLD_FILES:
        text, match = BAD_GOLD_FILES[case]
        return ["fit", str(csv), "--gold", str(_write(folder / "g.csv", text))], match
    if case in BAD_OPTION_CASES:
        options, match = BAD_OPTION_CASES[case]
        return ["fit", str(csv), *options], match
    build, match = BAD_PATHS[case]
    return build(folder, csv), match


@pytest.mark.parametrize(
    "case", [*BAD_ANNOTATION_FILES, *BAD_GOLD_FILES, *BAD_PATHS, *BAD_OPTION_CASES]
)
def test_fit_bad_input_exits_2_writing_nothing(case, csv, tmp_path, capsys) -> None:
    argv, match = bad_fit_command(case, tmp_path, csv)
    out = tmp_path / "results" / "out"
    if "--out" not in argv and case != "no-out":
        argv += ["--out", str(out), "--method", "map"]
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("crowdbayes: error: ")
    assert re.search(match, lines[0]), lines[0]
    assert "Traceback" not in captured.err
    assert not (tmp_path / "results").exists()


def test_fit_out_is_a_file(csv, tmp_path, capsys) -> None:
    target = _write(tmp_path / "taken", "keep me")
    assert main(["fit", str(csv), "--out", str(target), "--method", "map"]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_top_level_usage(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"crowdbayes {cb.__version__}"
    assert main(["fit", "--help"]) == 0
    assert "--target-accept" in capsys.readouterr().out
    assert main([]) == 2
    assert "required" in capsys.readouterr().err
    assert main(["bogus"]) == 2
    assert capsys.readouterr().err.startswith("crowdbayes: error: argument")


def test_vi_iterations_option(csv, tmp_path, capsys) -> None:
    assert main(["fit", str(csv), "--out", str(tmp_path / "o"), "--vi-iterations", "5"]) == 2
    assert "--vi-iterations: must be an integer of at least 20, got '5'" in capsys.readouterr().err
    assert main(["fit", "--help"]) == 0
    assert "--vi-iterations N" in capsys.readouterr().out


def test_installed_script_exit_status(tmp_path) -> None:
    script = shutil.which("crowdbayes", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the crowdbayes console script is not installed in this environment")
    proc = subprocess.run(
        [script, "fit", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"crowdbayes: error: annotation file not found: {str(tmp_path / 'absent.csv')!r}"
    )
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------- simulate
@pytest.mark.parametrize("model", ["dawid-skene", "hierarchical-dawid-skene"])
def test_simulate_outputs(model, tmp_path, capsys) -> None:
    out = tmp_path / "sim"
    argv = [
        "simulate", "--out", str(out), "--model", model, "--items", "40",
        "--annotators", "6", "--categories", "4", "--labels-per-item", "3", "--seed", "9",
    ]  # fmt: skip
    assert main(argv) == 0
    assert {p.name for p in out.iterdir()} == {
        "annotations.csv",
        "truth.csv",
        "annotators_truth.csv",
    }
    annotations = pd.read_csv(out / "annotations.csv")
    assert annotations.columns.tolist() == ["item", "annotator", "label"]
    assert len(annotations) == 40 * 3
    assert annotations.groupby("item")["annotator"].nunique().eq(3).all()
    assert set(annotations["label"]) <= {0, 1, 2, 3}
    truth = pd.read_csv(out / "truth.csv")
    assert truth.columns.tolist() == ["item", "label"]
    assert truth["item"].tolist() == list(range(40))
    accuracy = pd.read_csv(out / "annotators_truth.csv")
    assert accuracy.columns.tolist() == ["annotator", "accuracy"]
    assert len(accuracy) == 6 and accuracy["accuracy"].between(0, 1).all()
    assert "seed 9" in capsys.readouterr().out

    # same seed, same files; the python simulator gives the same data
    again = tmp_path / "again"
    assert main([*argv[:2], str(again), *argv[3:]]) == 0
    for name in ("annotations.csv", "truth.csv", "annotators_truth.csv"):
        assert (out / name).read_bytes() == (again / name).read_bytes()


def test_simulate_prints_fresh_seed_that_reproduces(tmp_path, capsys) -> None:
    assert main(["simulate", "--out", str(tmp_path / "a"), "--items", "20"]) == 0
    seed = capsys.readouterr().out.split("seed ")[1].split()[0]
    argv = ["simulate", "--out", str(tmp_path / "b"), "--items", "20", "--seed", seed]
    assert main(argv) == 0
    a = (tmp_path / "a" / "annotations.csv").read_bytes()
    assert a == (tmp_path / "b" / "annotations.csv").read_bytes()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--labels-per-item", "9", "--annotators", "4"], "labels_per_item must be between"),
        (["--categories", "1"], "--categories must be at least 2"),
        (["--items", "0"], "--items: must be a positive integer"),
        (["--model", "glad"], "invalid choice"),
    ],
    ids=["labels-per-item", "one-category", "no-items", "unknown-model"],
)
def test_simulate_bad_input(extra, match, tmp_path, capsys) -> None:
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crowdbayes: error: ") and match in err and err.count("\n") == 1
    assert not out.exists()


# ---------------------------------------------------------------------- demo
def _check_demo(out: Path, stdout: str, n_items: int) -> None:
    assert {"confusion.png", "annotators.png", "annotations.csv"} <= {p.name for p in out.iterdir()}
    for name in ("confusion.png", "annotators.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"of {n_items} items by 25 annotators, 3 categories" in stdout
    assert "Sampling diagnostics" in stdout
    uncertain = stdout.split("The 10 most uncertain items")[1].split("\n\n")[0]
    assert len(uncertain.strip().splitlines()) == 1 + 2 + 10  # title, 2 header lines, 10 items
    least = stdout.split("The 5 least reliable annotators")[1].split("\n\n")[0]
    assert len(least.strip().splitlines()) == 1 + 2 + 5
    assert "true accuracy" in least
    assert "hierarchical Dawid-Skene:" in stdout and "majority vote:" in stdout
    assert len(pd.read_csv(out / "annotations.csv")) == n_items * 5


def test_demo_map_quick(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--items", "80", "--method", "map", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    _check_demo(out, captured.out, 80)
    assert "accuracy at the posterior mode" in captured.out


@pytest.mark.slow
def test_demo_nuts_tiny(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    argv = [
        "demo", "--out", str(out), "--items", "80",
        "--draws", "100", "--tune", "100", "--chains", "2", "--no-progress",
    ]  # fmt: skip
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    _check_demo(out, captured.out, 80)
    assert "94% interval" in captured.out and "truth inside" in captured.out
    assert "draws kept: 200" in captured.out


def test_demo_bad_input(tmp_path, capsys) -> None:
    target = _write(tmp_path / "file", "x")
    assert main(["demo", "--out", str(target)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "d"), "--items", "0"]) == 2
    assert "--items" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
