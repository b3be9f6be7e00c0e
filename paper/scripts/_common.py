"""Shared helpers of the paper scripts: arguments, output folders, fits and markdown tables.

Every script writes only into ``<out>/figures`` and ``<out>/tables`` (``--out``, default the
``paper/`` folder). A table file holds a markdown table followed by a ``Table:`` caption line
(pandoc's caption syntax) that states the settings it was made with;
``build_paper.py`` copies it verbatim between the ``<!-- table: NAME -->`` and
``<!-- end table -->`` markers of ``paper.md``.

Fits, scores and markdown cells are made as in the benchmarks, by ``benchmarks/_bench.py``.
"""

import argparse
import os
import platform
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

PAPER_DIR = Path(__file__).resolve().parents[1]
sys.path.append(str(PAPER_DIR.parent / "benchmarks"))

# The scripts use SCORE_COLUMNS, crowdkit_frame, fmt and score_cells through this module.
from _bench import (  # noqa: E402
    SAMPLERS,
    adapt_crowdkit_for_sklearn,
    fmt,
    markdown_table,
    short_message,
    timed_fit,
)
from _bench import SCORE_COLUMNS as SCORE_COLUMNS  # noqa: E402
from _bench import crowdkit_frame as crowdkit_frame  # noqa: E402
from _bench import score_cells as score_cells  # noqa: E402

#: The seed of every script unless ``--seed`` says otherwise.
SEED = 1979
GOLD_DATASETS = ("rte", "temp", "sp_amt")
#: The columns of a PSIS-LOO comparison (``crowdbayes.compare``), one row per model.
LOO_COLUMNS = ["model", "elpd_loo", "SE", "elpd_diff", "SE of diff", "p_loo", "Pareto k"]


def make_parser(description: str, *, datasets: bool = False) -> argparse.ArgumentParser:
    """The arguments every script takes: sampling settings, seed, output folder.

    Parameters
    ----------
    description : str
        The script's one-line description.
    datasets : bool
        Also add ``--max-items`` (keep the first N items of each real dataset).

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--draws", type=int, default=1000, help="NUTS draws per chain (1000)")
    parser.add_argument("--tune", type=int, default=1000, help="NUTS tuning steps per chain (1000)")
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains (4)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed ({SEED})")
    parser.add_argument(
        "--sampler", default="nutpie", choices=SAMPLERS, help="NUTS sampler (nutpie)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=PAPER_DIR,
        help="folder that receives figures/ and tables/ (default: the paper folder)",
    )
    if datasets:
        parser.add_argument(
            "--max-items",
            type=int,
            default=None,
            help="keep only the first N items of each real dataset (quick checks; default all)",
        )
    return parser


def output_dirs(out: Path) -> tuple[Path, Path]:
    """``out/figures`` and ``out/tables``, created."""
    figures, tables = Path(out) / "figures", Path(out) / "tables"
    figures.mkdir(parents=True, exist_ok=True)
    tables.mkdir(parents=True, exist_ok=True)
    return figures, tables


def log(message: str) -> None:
    """Progress on stderr, flushed."""
    print(message, file=sys.stderr, flush=True)


def nuts_settings(args: argparse.Namespace) -> str:
    """The sampling settings in words, for captions."""
    return (
        f"{args.sampler} NUTS, {args.chains} chains of {args.draws} draws after {args.tune} "
        f"tuning steps, seed {args.seed}"
    )


# ---------------------------------------------------------------------------------- data
def load_real(name: str, max_items: int | None = None) -> "tuple[pd.DataFrame, Any] | None":
    """A shared dataset (annotations, gold or None), or None with a message when it is absent.

    Parameters
    ----------
    name : str
    max_items : int, optional
        Keep only the first ``max_items`` items (in order of first appearance).
    """
    from crowdbayes.datasets import data_home, list_datasets, load_dataset

    if name not in list_datasets():
        log(
            f"skipped: dataset {name!r} not found under {data_home()} (set CROWDBAYES_DATA to "
            "the folder holding <name>/annotations.csv)"
        )
        return None
    annotations, gold = load_dataset(name)
    if max_items is not None:
        keep = pd.unique(annotations["item"])[:max_items]
        annotations = annotations[annotations["item"].isin(keep)].reset_index(drop=True)
        if gold is not None:
            gold = gold[gold.index.isin(keep)]
    return annotations, gold


def describe_data(annotations: pd.DataFrame) -> str:
    """``"N items, J annotators, L labels, K categories"``."""
    return (
        f"{annotations['item'].nunique()} items, {annotations['annotator'].nunique()} "
        f"annotators, {len(annotations)} labels, {annotations['label'].nunique()} categories"
    )


# ---------------------------------------------------------------------------------- fits
def fit_model(
    name: str, annotations: pd.DataFrame, args: argparse.Namespace, method: str = "nuts"
) -> tuple[Any, float, list[str]]:
    """Fit one crowdbayes model; return it, its wall seconds and its sampling warnings.

    ``method`` is ``"nuts"``, ``"map"`` or ``"vote"`` (majority vote). Every warning is caught
    (the fit's own :class:`~crowdbayes.SamplingWarning` messages are returned, the rest of the
    libraries' noise is dropped), so that a script's output is its tables.
    """
    import crowdbayes as cb

    model = cb.get_model(name)
    kwargs: dict[str, Any] = {"random_seed": args.seed}
    if method != "vote":
        kwargs["method"] = method
    if method == "nuts":
        kwargs.update(
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            sampler=args.sampler,
            progressbar=False,
        )
    seconds, messages = timed_fit(model, annotations, **kwargs)
    return model, seconds, messages


def diagnostics_cells(model: Any, method: str, messages: Sequence[str]) -> list[str]:
    """Max R-hat, min bulk ESS, divergences and a note, as table cells."""
    note = "; ".join(dict.fromkeys(short_message(m) for m in messages))
    if method != "nuts":
        return ["", "", "", note]
    diag = model.diagnostics_
    if diag.permuted_chains:
        note = f"label-permuted chains {diag.permuted_chains}" + (f"; {note}" if note else "")
    return [fmt(diag.max_rhat, 3), fmt(diag.min_ess_bulk, 0), str(diag.n_divergent), note]


def loo_rows(fits: dict[str, Any]) -> list[list[str]]:
    """The fits compared by PSIS-LOO (``crowdbayes.compare``), best first: LOO_COLUMNS cells.

    The comparison's own warnings are dropped: its table has a column for them.
    """
    from crowdbayes.compare import compare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = compare(fits)
    columns = ["elpd_loo", "se", "elpd_diff", "dse", "p_loo"]
    return [
        [str(r["model"]), *(fmt(r[c], 1) for c in columns), r["warning"]]
        for _, r in table.iterrows()
    ]


# ---------------------------------------------------------------------------------- output
def write_table(
    tables_dir: Path,
    name: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    caption: str,
) -> Path:
    """Write ``tables_dir/name.md``: the table, a blank line and ``Table: caption``."""
    path = Path(tables_dir) / f"{name}.md"
    path.write_text(f"{markdown_table(header, rows)}\n\nTable: {caption}\n")
    log(f"wrote {path}")
    return path


def save_figure(fig: Any, figures_dir: Path, name: str) -> Path:
    """Save a matplotlib figure as ``figures_dir/name.png`` (150 dpi)."""
    path = Path(figures_dir) / f"{name}.png"
    fig.savefig(path, dpi=150)
    log(f"wrote {path}")
    return path


def environment() -> str:
    """Versions of the packages that made the numbers, and the machine."""
    import arviz
    import nutpie
    import pymc

    import crowdbayes as cb

    parts = [
        f"crowdbayes {cb.__version__}",
        f"PyMC {pymc.__version__}",
        f"nutpie {nutpie.__version__}",
        f"ArviZ {arviz.__version__}",
    ]
    try:
        import crowdkit

        parts.append(f"crowd-kit {crowdkit.__version__}")
    except ImportError:
        pass
    parts.append(f"Python {platform.python_version()}, {os.cpu_count()} CPU cores")
    return ", ".join(parts)


def import_crowdkit() -> Any:
    """crowd-kit's aggregation module, or None with a message when it is not installed.

    crowd-kit 1.4.2's Wawa and ZeroBasedSkill fail with scikit-learn >= 1.6; they are adapted
    as in the benchmarks (``_bench.adapt_crowdkit_for_sklearn``), so that the paper scores
    them as the benchmark does.
    """
    try:
        import crowdkit.aggregation as aggregation
    except ImportError as err:
        log(f"crowd-kit is not installed ({err}): its rows are left out (pip install crowd-kit)")
        return None
    adapt_crowdkit_for_sklearn()
    return aggregation
