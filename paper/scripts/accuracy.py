"""Accuracy and calibration against gold: crowdbayes models and crowd-kit on rte, temp, sp_amt.

Every method is fitted **without** gold; gold is used only to score the result: accuracy of the
most probable label, log loss, multi-class Brier score and expected calibration error (10 bins),
as in ``crowdbayes.metrics.evaluate``. crowdbayes: majority vote, every Bayesian model by NUTS,
and Dawid-Skene by MAP (its posterior mode) to show what averaging over the posterior adds.
crowd-kit (the ``bench`` extra): MajorityVote, DawidSkene, OneCoinDawidSkene, GLAD, MACE,
MMSR (labels only: it gives scores, not probabilities), Wawa and ZeroBasedSkill (crowd-kit
1.4.2's versions need the scikit-learn adaptation of the benchmarks, ``benchmarks/_bench.py``).

Writes ``tables/accuracy_<dataset>.md`` per dataset and ``figures/calibration.png``
(reliability diagrams of crowdbayes Dawid-Skene by NUTS and crowd-kit DawidSkene).

Usage::

    python paper/scripts/accuracy.py                        # defaults: 4 chains x 1000 draws
    python paper/scripts/accuracy.py --datasets temp --models dawid-skene --max-items 60 \\
        --draws 50 --tune 50 --chains 2 --sampler pymc --out /tmp/paper
"""

import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

#: crowdbayes Bayesian models, in the paper's order.
MODELS = (
    "dawid-skene",
    "class-conditional",
    "one-coin",
    "hierarchical-dawid-skene",
    "mace",
    "glad",
    "item-difficulty",
    "logistic-random-effects",
)
#: crowd-kit classes and constructor arguments; None marks a method without probabilities.
CROWDKIT = {
    "MajorityVote": {},
    "DawidSkene": {"n_iter": 100},
    "OneCoinDawidSkene": {"n_iter": 100},
    "GLAD": {},
    "MACE": {},
    "MMSR": {},
    "Wawa": {},
    "ZeroBasedSkill": {},
}
LABELS_ONLY = {"MMSR"}
#: crowd-kit 1.4.2 methods that need the scikit-learn adaptation (``_common.import_crowdkit``).
ADAPTED = {"Wawa", "ZeroBasedSkill"}
HEADER = ["method", *common.SCORE_COLUMNS]


def parse_args(argv: list[str] | None) -> Any:
    """The command line."""
    parser = common.make_parser(__doc__.splitlines()[0], datasets=True)
    parser.add_argument(
        "--datasets", nargs="+", default=list(common.GOLD_DATASETS), help="datasets with gold"
    )
    parser.add_argument(
        "--models", nargs="+", default=list(MODELS), help="crowdbayes models fitted by NUTS"
    )
    parser.add_argument(
        "--crowdkit", nargs="*", default=list(CROWDKIT), help="crowd-kit methods (none: skip)"
    )
    args = parser.parse_args(argv)
    bad = sorted(set(args.models) - set(MODELS)) + sorted(set(args.crowdkit) - set(CROWDKIT))
    if bad:
        parser.error(f"unknown model(s) {bad}")
    return args


def score_row(label: str, scores: dict[str, Any], seconds: float, cells: list[str]) -> list[str]:
    """One table row: method, scores, time, diagnostics cells."""
    return [label, *common.score_cells(scores, seconds, 3), *cells]


def crowdkit_failure(err: Exception) -> str:
    """Why a crowd-kit method failed, in a few words."""
    text = f"{type(err).__name__}: {err}"
    if "__sklearn_tags__" in text:
        import sklearn

        kind = type(err).__name__
        return f"failed: incompatible with scikit-learn {sklearn.__version__} ({kind})"
    return "failed: " + common.short_message(text)[:80]


def run_dataset(name: str, args: Any, crowdkit: Any, tables: Path) -> dict[str, Any]:
    """Fit and score everything on one dataset; write its table; return probabilities to plot."""
    from crowdbayes.metrics import accuracy, evaluate

    loaded = common.load_real(name, args.max_items)
    if loaded is None:
        return {}
    annotations, gold = loaded
    if gold is None:
        common.log(f"skipped: dataset {name!r} has no gold labels")
        return {}
    rows: list[list[str]] = []
    probabilities: dict[str, Any] = {}

    common.log(f"[{name}] crowdbayes majority vote")
    model, seconds, messages = common.fit_model("majority-vote", annotations, args, "vote")
    rows.append(
        score_row(
            "crowdbayes majority vote",
            evaluate(model, gold),
            seconds,
            common.diagnostics_cells(model, "vote", messages),
        )
    )
    runs = [(m, "nuts") for m in args.models]
    if "dawid-skene" in args.models:
        runs.insert(1, ("dawid-skene", "map"))
    for model_name, method in runs:
        label = f"crowdbayes {model_name} {'NUTS' if method == 'nuts' else 'MAP'}"
        common.log(f"[{name}] {label}")
        model, seconds, messages = common.fit_model(model_name, annotations, args, method)
        rows.append(
            score_row(
                label,
                evaluate(model, gold),
                seconds,
                common.diagnostics_cells(model, method, messages),
            )
        )
        if method == "nuts" and not probabilities:
            probabilities[f"crowdbayes {model_name} (NUTS)"] = model.label_probs_

    if crowdkit is not None:
        frame = common.crowdkit_frame(annotations)
        for class_name in args.crowdkit:
            label = f"crowd-kit {class_name}"
            common.log(f"[{name}] {label}")
            start = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # crowd-kit's own deprecation noise
                    method = getattr(crowdkit, class_name)(**CROWDKIT[class_name])
                    if class_name in LABELS_ONLY:
                        labels = method.fit_predict(frame)
                    else:
                        probs = method.fit_predict_proba(frame)
            except Exception as err:  # a baseline that fails is reported, not fatal
                rows.append([label, "", "", "", "", "", "", "", "", crowdkit_failure(err)])
                continue
            seconds = time.perf_counter() - start
            if class_name in LABELS_ONLY:
                scores = {"accuracy": accuracy(labels, gold)}
                note = "labels only (no probabilities)"
            else:
                probs.columns.name = None
                scores = evaluate(probs, gold)
                note = ""
                if class_name == "DawidSkene":
                    probabilities["crowd-kit DawidSkene"] = probs
            if class_name in ADAPTED:
                note = "adapted to scikit-learn >= 1.6 as in benchmarks/real_data.py"
            rows.append(score_row(label, scores, seconds, ["", "", "", note]))

    caption = (
        f"{name} ({common.describe_data(annotations)}; gold for {len(gold)} items, used only "
        f"for scoring). Accuracy of the most probable label, log loss (nats), multi-class "
        f"Brier score, expected calibration error (10 bins); time in wall seconds, NUTS "
        f"compilation included; R-hat, bulk ESS and divergences over the global parameters. "
        f"NUTS: {common.nuts_settings(args)}. {common.environment()}."
    )
    common.write_table(tables, f"accuracy_{name}", HEADER, rows, caption)
    return {"gold": gold, "probabilities": probabilities}


def calibration_figure(results: dict[str, dict[str, Any]], figures: Path) -> None:
    """Reliability diagrams: one row per dataset, one column per method."""
    from matplotlib.figure import Figure

    from crowdbayes.plots import plot_reliability_diagram

    shown = {name: r for name, r in results.items() if r.get("probabilities")}
    if not shown:
        return
    ncols = max(len(r["probabilities"]) for r in shown.values())
    fig = Figure(figsize=(3.6 * ncols, 3.7 * len(shown)), layout="constrained")
    axes = fig.subplots(len(shown), ncols, squeeze=False)
    for row, (name, result) in enumerate(shown.items()):
        for col in range(ncols):
            ax = axes[row, col]
            if col >= len(result["probabilities"]):
                ax.set_visible(False)
                continue
            label, probs = list(result["probabilities"].items())[col]
            plot_reliability_diagram(probs, result["gold"], ax=ax)
            ece = ax.get_title().split(": ", 1)[1].split("\n")[0]
            ax.set_title(f"{name}: {label}\n{ece}", fontsize=9)
            if row < len(shown) - 1:
                ax.set_xlabel("")
            if col > 0:
                ax.set_ylabel("")
            ax.get_legend().remove()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    fig.suptitle("Calibration against gold (count of items per bin in red)", fontsize=11)
    common.save_figure(fig, figures, "calibration")


def main(argv: list[str] | None = None) -> int:
    """Run every dataset, write the tables and the figure."""
    args = parse_args(argv)
    figures, tables = common.output_dirs(args.out)
    crowdkit = common.import_crowdkit() if args.crowdkit else None
    results = {name: run_dataset(name, args, crowdkit, tables) for name in args.datasets}
    calibration_figure(results, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
