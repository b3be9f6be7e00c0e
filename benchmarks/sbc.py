"""Simulation-based calibration (Talts et al. 2018) of every Bayesian crowdbayes model.

For each model: ``--simulations`` data sets drawn from the model's own prior on a fixed design,
each fitted by NUTS, ranks of the true global parameters among thinned posterior draws, and
uniformity tests. Writes ``<out>/figures/sbc_<model>.png`` (rank histograms) and
``<out>/SBC.md`` (one row per model; rows of models not rerun are kept).

    python benchmarks/sbc.py --models dawid-skene hierarchical-dawid-skene \\
        --simulations 200 --draws 1000 --tune 500 --chains 2 --seed 1

With the default ``--sampler nutpie`` each model is compiled once (minutes with Numba) and every
simulation then takes about a second; ``--sampler pymc`` compiles every fit (seconds each).
"""

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.models import MODELS
from crowdbayes.plots import plot_sbc_ranks
from crowdbayes.sbc import SBCResult, simulation_based_calibration

HERE = Path(__file__).resolve().parent
TABLE_START = "<!-- sbc-table -->"
TABLE_END = "<!-- /sbc-table -->"
HEADER = (
    "| model | parameters | simulations | min p | combined p | flagged fits | "
    "permuted fits | compile s | s / fit | wall time |\n"
    "|---|---|---|---|---|---|---|---|---|---|\n"
)


def bayesian_models() -> list[str]:
    return [name for name, cls in MODELS.items() if issubclass(cls, BayesianCrowdModel)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=bayesian_models(), metavar="MODEL")
    parser.add_argument("--simulations", type=int, default=100)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--thin", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--annotators", type=int, default=5)
    parser.add_argument("--labels-per-item", type=int, default=3)
    parser.add_argument("--categories", type=int, default=3)
    parser.add_argument("--max-elements", type=int, default=20)
    parser.add_argument("--sampler", default="nutpie", choices=["nutpie", "pymc"])
    parser.add_argument("--cores", type=int, default=1, help="chains run in parallel")
    parser.add_argument(
        "--save-ranks", type=Path, default=None, help="also write <model>_ranks.csv, _fits.csv"
    )
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in bayesian_models()]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {bayesian_models()}")
    return args


def table_row(result: SBCResult) -> str:
    table = result.uniformity()
    fits = result.fits
    per_fit = float(fits["seconds"].mean())
    return (
        f"| {result.model} | {len(table)} | {result.n_simulations} | {table['p'].min():.3g} | "
        f"{result.combined_p_value():.3g} | {result.n_flagged} | {result.n_permuted} | "
        f"{result.setup_seconds:.0f} | {per_fit:.2f} | {result.wall_seconds / 60:.1f} min |\n"
    )


def details(result: SBCResult) -> str:
    """Per-model section: settings, worst parameters, fit problems."""
    table = result.uniformity().sort_values("p")
    s = result.settings
    fits = result.fits
    lines = [
        f"<!-- model:{result.model} -->\n",
        f"### {result.model}\n\n",
        f"Design {s['n_items']} items x {s['n_annotators']} annotators, "
        f"{s['labels_per_item']} labels per item, {s['n_categories']} categories; "
        f"{s['sampler']} ({'compiled once' if s['compiled_once'] else 'compiled per fit'}), "
        f"{s['chains']} chains x {s['draws']} draws after {s['tune']} tuning, thinned by "
        f"{s['thin']} ({int(result.ranks['n_ranks'].max())} draws ranked); seed "
        f"{s['random_seed']}.\n\n",
        "Smallest p-values: "
        + ", ".join(
            f"`{name}` {row.p:.3g} (chi2 {row.chi2_p:.3g}, KS {row.ks_p:.3g})"
            for name, row in table.head(3).iterrows()
        )
        + ".\n\n",
    ]
    kinds = {
        "divergent": fits["n_divergent"].gt(0).sum(),
        "R-hat > 1.01": fits["max_rhat"].gt(1.01).sum(),
        "low ESS": fits["warnings"].str.contains("effective sample size").sum(),
        "label-permuted chains": result.n_permuted,
        "not reused (fitted from scratch)": (~fits["reused"]).sum(),
    }
    lines.append("Fits with: " + ", ".join(f"{k} {int(v)}" for k, v in kinds.items()) + ".\n\n")
    lines.append(f"![SBC ranks of {result.model}](figures/sbc_{result.model}.png)\n")
    lines.append(f"<!-- /model:{result.model} -->\n")
    return "".join(lines)


def merge_markdown(path: Path, results: list[SBCResult], command: str) -> str:
    """SBC.md with rows and sections of the models in ``results`` replaced or added."""
    old = path.read_text() if path.exists() else ""
    rows: dict[str, str] = {}
    sections: dict[str, str] = {}
    if TABLE_START in old and TABLE_END in old:
        body = old.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
        for line in body.splitlines(keepends=True):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| ") and cells[0] in MODELS:
                rows[cells[0]] = line
    for match in re.finditer(r"<!-- model:([\w-]+) -->.*?<!-- /model:\1 -->\n", old, re.S):
        sections[match.group(1)] = match.group(0)
    for result in results:
        rows[result.model] = table_row(result)
        sections[result.model] = details(result)
    order = [m for m in MODELS if m in rows]
    text = [
        "# Simulation-based calibration\n\n",
        "Talts et al. (2018): parameters drawn from each model's prior on a fixed design, labels "
        "from the model, a NUTS fit per simulation (EM start, label-switching check) and the "
        "rank of each true global parameter (the estimator's `diagnostic_vars`, at most 20 "
        "elements per array) among thinned posterior draws. Under a correct model, sampler and "
        "post-processing the ranks are uniform. Per parameter: chi-square test of binned ranks "
        "and Kolmogorov-Smirnov test, combined as `p = min(1, 2 min(p_chi2, p_KS))`; "
        "*combined p* is the Holm (= Bonferroni) adjusted minimum over parameters, valid "
        "however the parameters depend on each other. *Flagged fits* emitted a "
        "`SamplingWarning` (R-hat, ESS, divergences, label switching); they stay in the "
        "ranks. Generated by `benchmarks/sbc.py`; last command:\n\n",
        f"    {command}\n\n",
        TABLE_START + "\n",
        HEADER,
        *(rows[m] for m in order),
        TABLE_END + "\n\n",
        *(sections[m] + "\n" for m in MODELS if m in sections),
    ]
    return "".join(text)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = args.out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    results = []
    for model in args.models:
        print(f"== {model}", flush=True)
        started = time.perf_counter()

        def progress(s: int, row: dict[str, Any], started: float = started) -> None:
            if (s + 1) % 10 == 0:
                elapsed = time.perf_counter() - started
                print(f"  {s + 1}/{args.simulations} simulations, {elapsed:.0f} s", flush=True)

        result = simulation_based_calibration(
            model,
            n_simulations=args.simulations,
            n_items=args.items,
            n_annotators=args.annotators,
            labels_per_item=args.labels_per_item,
            n_categories=args.categories,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            sampler=args.sampler,
            thin=args.thin,
            random_seed=args.seed,
            max_elements=args.max_elements,
            cores=args.cores,
            callback=progress,
        )
        if args.save_ranks is not None:
            args.save_ranks.mkdir(parents=True, exist_ok=True)
            result.ranks.to_csv(args.save_ranks / f"{model}_ranks.csv", index=False)
            result.fits.to_csv(args.save_ranks / f"{model}_fits.csv")
        fig = plot_sbc_ranks(result)
        fig.savefig(figures / f"sbc_{model}.png", dpi=110)
        table = result.uniformity()
        print(table.sort_values("p").head(5).round(4).to_string())
        print(
            f"  combined p {result.combined_p_value():.3g}; flagged {result.n_flagged}, "
            f"permuted {result.n_permuted}; compile {result.setup_seconds:.0f} s, "
            f"{float(np.mean(result.fits['seconds'])):.2f} s per fit, "
            f"{result.wall_seconds:.0f} s in all",
            flush=True,
        )
        results.append(result)
        command = "python benchmarks/sbc.py " + " ".join(argv if argv is not None else sys.argv[1:])
        path = args.out / "SBC.md"
        path.write_text(merge_markdown(path, results, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
