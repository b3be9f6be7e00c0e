"""The plot gallery: every figure function of ``crowdbayes.plots`` on real or simulated fits.

On the temp data (binary, ten labels per item, gold for every item), Dawid-Skene and the
item-difficulty model are fitted by NUTS without gold. From the Dawid-Skene fit: annotator
confusion matrices, the annotator reliability forest, the prevalence, posterior predictive
panels (votes per item, annotators' label frequencies) and the reliability diagram against
gold; from the item-difficulty fit: each item's posterior uncertainty against its difficulty.
Simulation-based calibration of Dawid-Skene on a small design gives the rank histograms.

Writes ``figures/gallery_<name>.png`` and ``tables/gallery.md`` (what each figure shows, and
the settings).

Usage::

    python paper/scripts/figures_gallery.py
    python paper/scripts/figures_gallery.py --max-items 60 --draws 100 --tune 100 --chains 2 \\
        --sbc-simulations 5 --out /tmp/paper
"""

import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

DATASET = "temp"
SBC_MODEL = "dawid-skene"


def parse_args(argv: list[str] | None) -> Any:
    """The command line."""
    parser = common.make_parser(__doc__.splitlines()[0], datasets=True)
    parser.add_argument(
        "--sbc-simulations", type=int, default=100, help="SBC simulations (100; 0 skips SBC)"
    )
    parser.add_argument(
        "--ppc-draws", type=int, default=200, help="posterior predictive replicates (200)"
    )
    return parser.parse_args(argv)


def real_data_figures(args: Any, figures: Path) -> list[list[str]]:
    """Fit temp; draw every fit-based figure; return the gallery table's rows."""
    from crowdbayes import plots
    from crowdbayes.predictive import predictive_check

    loaded = common.load_real(DATASET, args.max_items)
    if loaded is None:
        return []
    annotations, gold = loaded
    common.log(f"[gallery] {DATASET}: dawid-skene NUTS")
    ds, _, _ = common.fit_model("dawid-skene", annotations, args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictive_check(ds, n_draws=args.ppc_draws, random_seed=args.seed)
    common.log(f"[gallery] {DATASET}: item-difficulty NUTS")
    item_diff, _, _ = common.fit_model("item-difficulty", annotations, args)
    drawn = {
        "gallery_confusion": (
            plots.plot_confusion_grid(ds, max_annotators=8),
            "`plot_confusion_grid`",
            "Dawid-Skene: confusion matrices of the 8 busiest annotators",
        ),
        "gallery_reliability_forest": (
            plots.plot_annotator_reliability(ds, max_annotators=40),
            "`plot_annotator_reliability`",
            "Dawid-Skene: accuracy of the 40 busiest annotators, sorted",
        ),
        "gallery_prevalence": (
            plots.plot_prevalence(ds),
            "`plot_prevalence`",
            "Dawid-Skene: category prevalence",
        ),
        "gallery_ppc_vote_counts": (
            plots.plot_ppc_vote_counts(ds),
            "`plot_ppc_vote_counts`",
            "Dawid-Skene: items by votes for each category, observed against replicated",
        ),
        "gallery_ppc_annotator_frequencies": (
            plots.plot_ppc_annotator_frequencies(ds, max_annotators=20),
            "`plot_ppc_annotator_frequencies`",
            "Dawid-Skene: the 20 busiest annotators' label shares, observed against replicated",
        ),
        "gallery_reliability_diagram": (
            plots.plot_reliability_diagram(ds, gold),
            "`plot_reliability_diagram`",
            "Dawid-Skene: confidence against accuracy on the gold items",
        ),
        "gallery_item_uncertainty": (
            plots.plot_item_uncertainty(item_diff),
            "`plot_item_uncertainty`",
            "item-difficulty: each item's 1 - P(mode) against its difficulty (annotators are "
            "exchangeable in this model, so items with the same votes coincide)",
        ),
    }
    rows = []
    for name, (fig, function, what) in drawn.items():
        common.save_figure(fig, figures, name)
        rows.append([f"`{name}.png`", function, f"{what} ({DATASET})"])
    return rows


def sbc_figure(args: Any, figures: Path) -> list[list[str]]:
    """Simulation-based calibration of Dawid-Skene; the rank histograms."""
    from crowdbayes.plots import plot_sbc_ranks
    from crowdbayes.sbc import simulation_based_calibration

    if args.sbc_simulations < 1:
        common.log("skipped: SBC (--sbc-simulations 0)")
        return []
    thin = max(1, args.draws // 100)
    common.log(f"[gallery] SBC of {SBC_MODEL}: {args.sbc_simulations} simulations")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = simulation_based_calibration(
            SBC_MODEL,
            n_simulations=args.sbc_simulations,
            n_items=30,
            n_annotators=5,
            labels_per_item=3,
            n_categories=3,
            draws=args.draws,
            tune=args.tune,
            chains=2,
            sampler=args.sampler,
            thin=thin,
            random_seed=args.seed,
        )
    common.save_figure(plot_sbc_ranks(result, max_panels=12), figures, "gallery_sbc")
    what = (
        f"{SBC_MODEL}: SBC rank histograms, {args.sbc_simulations} simulations of 30 items, "
        f"5 annotators, 3 labels per item, 3 categories; 2 chains of {args.draws} draws "
        f"after {args.tune} tuning steps, thinned by {thin}"
    )
    return [["`gallery_sbc.png`", "`plot_sbc_ranks`", what]]


def main(argv: list[str] | None = None) -> int:
    """Draw the gallery and its table."""
    args = parse_args(argv)
    figures, tables = common.output_dirs(args.out)
    rows = real_data_figures(args, figures) + sbc_figure(args, figures)
    caption = (
        f"The gallery's figures and the function that draws each. NUTS: "
        f"{common.nuts_settings(args)}; posterior predictive panels from {args.ppc_draws} "
        "replicates."
    )
    common.write_table(tables, "gallery", ["figure", "function", "shows"], rows, caption)
    return 0


if __name__ == "__main__":
    sys.exit(main())
