"""Execute every tutorial notebook in quick mode (real fits with small settings).

Each notebook in ``notebooks/`` runs top to bottom in a fresh kernel with
``CROWDBAYES_NOTEBOOK_QUICK=1`` (small draws, data and simulation counts), ``MPLBACKEND=Agg``
and a temporary working directory. A notebook that reads a real dataset
(``load_dataset("name")`` in its code) is skipped when that dataset is absent under
:func:`crowdbayes.datasets.data_home`. Besides errors, a test fails on any warning printed by a
cell other than ``SamplingWarning`` (expected from short quick-mode runs).
"""

import json
import re
import time
from pathlib import Path

import pytest

from crowdbayes.datasets import DATA_ENV_VAR, data_home, list_datasets

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
Config = pytest.importorskip("traitlets.config").Config

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
#: The tutorials the suite expects (a missing or renamed notebook fails test_notebook_set).
EXPECTED = [
    "01-quickstart",
    "02-real-data",
    "03-model-comparison",
    "04-calibration",
    "05-scale",
    "06-vox-populi",
]
CELL_TIMEOUT = 600
#: Warnings a notebook may print: convergence warnings of short quick-mode fits.
ALLOWED_WARNINGS = {"SamplingWarning"}
_DATASET_CALL = re.compile(r"""load_dataset\(\s*["']([\w.-]+)["']""")
_WARNING_LINE = re.compile(r"\b([A-Z]\w*Warning): ")


def _code(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")


def _datasets(path: Path) -> list[str]:
    return sorted(set(_DATASET_CALL.findall(_code(path))))


def _printed_warnings(nb: "nbformat.NotebookNode") -> list[str]:
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text = output.get("text", "")
            elif output.get("output_type") == "error":
                text = "\n".join(output.get("traceback", []))
            else:
                continue
            for line in text.splitlines():
                categories = set(_WARNING_LINE.findall(line))
                if categories - ALLOWED_WARNINGS:
                    found.append(line.strip()[:200])
    return found


def test_printed_warnings_are_found() -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("pass")
    cell.outputs = [
        nbformat.v4.new_output(
            "stream",
            name="stderr",
            text="/tmp/x.py:1: SamplingWarning: R-hat 1.2\n/tmp/y.py:3: UserWarning: odd\n",
        )
    ]
    nb.cells.append(cell)
    assert _printed_warnings(nb) == ["/tmp/y.py:3: UserWarning: odd"]


def test_notebook_set() -> None:
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stripped(path: Path) -> None:
    """Notebooks are committed without outputs, so diffs show only what changed."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    nbformat.validate(nbformat.read(path, as_version=4))
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name}: a code cell has outputs"
            assert cell["execution_count"] is None, f"{path.name}: a code cell has a count"


def test_quick_mode_switch_in_every_notebook() -> None:
    for path in NOTEBOOKS:
        assert "CROWDBAYES_NOTEBOOK_QUICK" in _code(path), path.name


def test_dataset_detection() -> None:
    by_name = {p.stem: _datasets(p) for p in NOTEBOOKS}
    assert by_name["01-quickstart"] == []
    assert by_name["02-real-data"] == ["rte"]
    assert by_name["06-vox-populi"] == ["temp"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = [name for name in _datasets(path) if name not in list_datasets()]
    if missing:
        pytest.skip(
            f"{path.name} needs dataset(s) {missing}, absent under {data_home()} "
            f"(set {DATA_ENV_VAR} to the folder holding them)"
        )
    # The kernel inherits this process's environment.
    monkeypatch.setenv("CROWDBAYES_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv(DATA_ENV_VAR, str(data_home()))
    nb = nbformat.read(path, as_version=4)
    # IPC sockets in the temporary directory: no TCP ports, and no ipykernel warning about
    # unencrypted TCP on stderr.
    transport = {"transport": "ipc", "ip": str(tmp_path / "k")}
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
        config=Config({"KernelManager": transport}),
    )
    started = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - started
    print(f"{path.stem}: {seconds:.1f} s")
    assert all(cell.execution_count is not None for cell in nb.cells if cell.cell_type == "code"), (
        "some cells did not run"
    )
    assert _printed_warnings(nb) == [], "the notebook printed unexpected warnings"
