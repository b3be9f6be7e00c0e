"""Model criticism on simulated item-difficulty data: posterior predictive checks and LOO.

Binary labels are simulated from the item-difficulty model (``simulate_item_difficulty``): a
typical annotator's error rate varies strongly from item to item. Dawid-Skene, which has one
confusion matrix per annotator and no item effect, and the two item-effect models
(item-difficulty, logistic random effects) are fitted by NUTS; each fit gets a posterior
predictive check with crowd statistics (``crowdbayes.predictive.predictive_check``) and the
fits are ranked by PSIS-LOO (``crowdbayes.compare``).

Writes ``tables/case_study_ppc.md``, ``tables/case_study_loo.md`` and
``figures/case_study_ppc_<model>.png`` (agreement within items, observed against replicated).

Usage::

    python paper/scripts/case_study.py
    python paper/scripts/case_study.py --n-items 60 --draws 100 --tune 100 --chains 2 \\
        --ppc-draws 50 --out /tmp/paper
"""

import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

MODELS = ("dawid-skene", "item-difficulty", "logistic-random-effects")
#: Statistics shown in the table (scalar checks of ``predictive_check``).
STATISTICS = (
    "mean_agreement",
    "agreement_sd",
    "unanimous_share",
    "pairwise_agreement",
    "vote_count_discrepancy",
)


def parse_args(argv: list[str] | None) -> Any:
    """The command line."""
    parser = common.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--n-items", type=int, default=200, help="simulated items (200)")
    parser.add_argument("--n-annotators", type=int, default=20, help="annotators (20)")
    parser.add_argument("--labels-per-item", type=int, default=10, help="labels per item (10)")
    parser.add_argument(
        "--error-mean",
        type=float,
        default=-3.0,
        help="log-odds of the wrong label on an item of average difficulty (-3.0)",
    )
    parser.add_argument(
        "--item-scale", type=float, default=1.5, help="between-item SD of those log-odds (1.5)"
    )
    parser.add_argument(
        "--ppc-draws", type=int, default=200, help="posterior predictive replicates (200)"
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="models to fit")
    return parser.parse_args(argv)


def fit_and_check(args: Any, sim: Any, figures: Path) -> tuple[dict, dict, dict]:
    """Fit each model by NUTS, check it and plot its agreement check.

    Returns the fits, their predictive check tables and their cells of the LOO table
    (accuracy, diagnostics, time), by model name.
    """
    from crowdbayes.metrics import accuracy
    from crowdbayes.plots import plot_ppc_agreement
    from crowdbayes.predictive import predictive_check

    fits: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    info: dict[str, list[str]] = {}
    for name in args.models:
        common.log(f"[case study] {name} NUTS")
        model, seconds, messages = common.fit_model(name, sim.annotations, args)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            checks[name] = predictive_check(
                model, n_draws=args.ppc_draws, random_seed=args.seed
            ).set_index("check")
        fits[name] = model
        diag = model.diagnostics_
        info[name] = [
            common.fmt(accuracy(model.labels_["label"], sim.true_labels), 3),
            common.fmt(diag.max_rhat, 3),
            common.fmt(diag.min_ess_bulk, 0),
            str(diag.n_divergent),
            common.fmt(seconds, 0),
        ]
        common.save_figure(plot_ppc_agreement(model), figures, f"case_study_ppc_{name}")
    return fits, checks, info


def ppc_rows(checks: dict[str, Any]) -> list[list[str]]:
    """Per statistic: its observed value and, per model, the replicated mean [94 %] and p."""
    first = checks[next(iter(checks))]
    rows = []
    for stat in STATISTICS:
        row = [stat.replace("_", " "), common.fmt(first.loc[stat, "observed"], 3)]
        for check in checks.values():
            r = check.loc[stat]
            row.append(
                f"{r['replicated_mean']:.3f} [{r['replicated_low']:.3f}, "
                f"{r['replicated_high']:.3f}], p = {r['ppp_value']:.2f}"
            )
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Simulate, fit, check, compare; write the tables and figures."""
    import crowdbayes as cb

    args = parse_args(argv)
    figures, tables = common.output_dirs(args.out)
    sim = cb.simulate_item_difficulty(
        n_items=args.n_items,
        n_annotators=args.n_annotators,
        n_categories=2,
        labels_per_item=args.labels_per_item,
        error_mean=args.error_mean,
        item_scale=args.item_scale,
        random_seed=args.seed,
    )
    fits, checks, info = fit_and_check(args, sim, figures)
    design = (
        f"{args.n_items} simulated items with two categories, {args.n_annotators} "
        f"exchangeable annotators, {args.labels_per_item} labels per item; wrong-label "
        f"log-odds {args.error_mean:g} on an average item, between-item standard deviation "
        f"{args.item_scale:g}"
    )
    header = ["statistic", "observed"] + [f"{name}: replicated [94 %], p" for name in fits]
    caption = (
        f"Posterior predictive checks on item-difficulty data ({design}): observed statistic, "
        f"replicated mean and 94 % interval over {args.ppc_draws} replicates, and posterior "
        "predictive p-value (two-sided; one-sided for the vote-count discrepancy). Agreement "
        "is the share of an item's labels equal to its modal label. "
        f"NUTS: {common.nuts_settings(args)}."
    )
    common.write_table(tables, "case_study_ppc", header, ppc_rows(checks), caption)

    header = [*common.LOO_COLUMNS, "accuracy", "max R-hat", "min ESS", "divergences", "time (s)"]
    loo = common.loo_rows(fits) if len(fits) >= 2 else []
    caption = (
        f"PSIS-LOO ranking of the fits to the item-difficulty data ({design}), best first, "
        "with each fit's accuracy against the simulated true labels and its convergence "
        f"diagnostics. NUTS: {common.nuts_settings(args)}."
    )
    rows = [[*cells, *info[cells[0]]] for cells in loo]
    common.write_table(tables, "case_study_loo", header, rows, caption)
    return 0


if __name__ == "__main__":
    sys.exit(main())
