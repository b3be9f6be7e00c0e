"""The paper: every script runs with tiny settings and writes what paper.md references, and the
tables in paper/paper.md are the committed paper/tables/*.md (so the prose cannot drift).

The scripts run in one subprocess (not under pytest's warning filters, as ``make paper`` runs
them), with PyMC's NUTS instead of nutpie, a few draws and the real datasets cut to their first
items. PyMC's C backend compiles each new graph once per machine (PyTensor's cache): about two
minutes for the whole file once the cache holds them, several minutes the first time.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from crowdbayes.datasets import data_home, list_datasets

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "paper"
SCRIPTS = PAPER / "scripts"
TINY = ["--draws", "30", "--tune", "30", "--chains", "2", "--sampler", "pymc", "--seed", "3"]
#: Script -> its extra arguments for the tiny run.
RUNS = {
    "overview": [],
    "accuracy": [
        "--max-items", "30", "--models", "dawid-skene",
        "--crowdkit", "MajorityVote", "DawidSkene", "MMSR", "Wawa",
    ],
    "anesthesia": [],
    "case_study": [
        "--n-items", "30", "--n-annotators", "6", "--labels-per-item", "4",
        "--models", "dawid-skene", "item-difficulty", "--ppc-draws", "20",
    ],
    "scale": ["--sizes", "300"],
    "figures_gallery": ["--max-items", "30", "--sbc-simulations", "2", "--ppc-draws", "20"],
}  # fmt: skip


def _needs(output: str) -> tuple[str, ...]:
    """The datasets one output of paper.md needs (it is skipped without them)."""
    name = Path(output).stem
    if name.startswith("accuracy_"):
        return (name.removeprefix("accuracy_"),)
    if name == "calibration":
        return ("rte", "temp", "sp_amt")  # any one of them is enough; see below
    if name.startswith("anesthesia"):
        return ("anesthesia",)
    if name.startswith("gallery_") and name != "gallery_sbc":
        return ("temp",)
    return ()


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_paper", SCRIPTS / "build_paper.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _build_module()
PAPER_TEXT = (PAPER / "paper.md").read_text()
TABLES = build.table_names(PAPER_TEXT)
FIGURES = build.figure_paths(PAPER_TEXT)

DRIVER = textwrap.dedent(
    """
    import importlib.util, json, sys, time, traceback
    scripts, runs, report = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    status = {}
    for name, argv in runs.items():
        start = time.perf_counter()
        try:
            spec = importlib.util.spec_from_file_location(name, f"{scripts}/{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            rc = module.main(argv)
        except BaseException:
            traceback.print_exc()
            rc = "exception"
        status[name] = {"rc": rc, "seconds": time.perf_counter() - start}
        print(f"== {name}: {status[name]}", file=sys.stderr, flush=True)
    json.dump(status, open(report, "w"))
    """
)


def _run_all_tiny(base: Path) -> tuple[Path, dict, str]:
    """Every script with tiny settings into one temporary --out, then build_paper."""
    out = base / "out"
    report = base / "status.json"
    runs = {name: [*TINY, *extra, "--out", str(out)] for name, extra in RUNS.items()}
    runs["build_paper"] = ["--out", str(out), "--no-pdf"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(SCRIPTS), json.dumps(runs), str(report)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert report.exists(), done.stderr[-5000:]
    return out, json.loads(report.read_text()), done.stderr


def test_scripts_build_the_whole_paper_with_tiny_settings(tmp_path: Path) -> None:
    """One test, so that pytest-xdist never runs the scripts twice."""
    out, status, log = _run_all_tiny(tmp_path)
    available = set(list_datasets())
    all_data = {"anesthesia", "rte", "temp", "sp_amt"} <= available

    # every script ran; build_paper reports unfilled tables only when data are missing
    for script in [*RUNS, "build_paper"]:
        rc = status[script]["rc"]
        if script == "build_paper" and rc == 1 and not all_data:
            continue
        assert rc == 0, f"{script} exited with {rc}:\n{log[-6000:]}"

    # every table and figure paper.md references was written (unless its data are absent)
    skipped = []
    for output in [f"tables/{name}.md" for name in TABLES] + FIGURES:
        needs = _needs(output)
        if needs and not any(d in available for d in needs):
            skipped.append(f"{output} (needs {', '.join(needs)})")
            continue
        assert (out / output).is_file(), f"{output} was not produced:\n{log[-4000:]}"
    for figure in FIGURES:
        if (out / figure).exists():
            assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure

    # the built paper holds exactly the tables the scripts wrote, with their captions
    blocks = build.extract_tables((out / "paper.md").read_text())
    assert list(blocks) == TABLES
    for name, body in blocks.items():
        path = out / "tables" / f"{name}.md"
        if path.exists():
            assert body == path.read_text().strip(), name
            assert "\n\nTable: " in body, name

    # the captions state the settings the numbers were made with
    for name in ("anesthesia_loo", "case_study_ppc", "scale", "accuracy_temp", "gallery"):
        path = out / "tables" / f"{name}.md"
        if path.exists():
            assert "pymc NUTS, 2 chains of 30 draws after 30 tuning steps, seed 3" in (
                path.read_text()
            ), name
    if skipped:
        pytest.skip(f"datasets absent under {data_home()}: not checked {skipped}")


# ---------------------------------------------------------------------- committed paper
def test_paper_tables_equal_committed_tables() -> None:
    assert TABLES, "paper.md has no table blocks"
    assert len(set(TABLES)) == len(TABLES), "a table block appears twice"
    current = build.extract_tables(PAPER_TEXT)
    for name in TABLES:
        path = PAPER / "tables" / f"{name}.md"
        assert path.is_file(), f"paper.md references table {name!r} but {path} is missing"
        assert current[name] == path.read_text().strip(), (
            f"the table {name!r} in paper.md differs from {path}; run "
            "python paper/scripts/build_paper.py"
        )


def test_paper_figures_are_committed() -> None:
    assert FIGURES
    for figure in FIGURES:
        assert (PAPER / figure).is_file(), f"paper.md references {figure}, which is missing"


def test_fill_tables_replaces_blocks_and_reports_missing(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("| x |\n|---|\n| 1 |\n\nTable: one.\n")
    text = (
        "Intro.\n\n<!-- table: a -->\nold\n<!-- end table -->\n\nMiddle.\n\n"
        "<!-- table: b -->\nkept\n<!-- end table -->\n"
    )
    filled, missing = build.fill_tables(text, tmp_path)
    assert missing == ["b"]
    assert build.extract_tables(filled) == {"a": "| x |\n|---|\n| 1 |\n\nTable: one.", "b": "kept"}
    assert filled.startswith("Intro.\n\n<!-- table: a -->\n\n| x |")
    assert "Middle." in filled
    # idempotent
    assert build.fill_tables(filled, tmp_path)[0] == filled
    assert build.figure_paths("![a](figures/x.png) and ![b c](figures/y_z.png)") == [
        "figures/x.png",
        "figures/y_z.png",
    ]
