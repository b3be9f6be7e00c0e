"""Choose a model by LOO on each real dataset, then score the choice against gold.

The model-zoo issue's bar on real data: the model chosen by PSIS-LOO (``crowdbayes.compare``,
computed without gold) should be at least as accurate as crowd-kit's DawidSkene on most
datasets with gold, and its log loss should be below majority vote's on most of them.

For every dataset with gold under ``CROWDBAYES_DATA`` the script fits each Bayesian model by
NUTS without gold, ranks them by elpd_loo, and reports for every model: elpd_loo (SE), accuracy,
log loss, ECE, R-hat, wall time; then the chosen model against crowd-kit DawidSkene's accuracy
and majority vote's log loss. Writes a markdown report (default
``benchmarks/MODEL_SELECTION.md``).

Usage::

    python benchmarks/model_selection.py
    python benchmarks/model_selection.py --datasets rte --draws 500 --out /tmp/ms.md
"""

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import crowdbayes as cb
from crowdbayes.compare import compare
from crowdbayes.datasets import list_datasets, load_dataset
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.metrics import evaluate
from crowdbayes.models import MODELS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _bench  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None, help="comma-separated (default: all with gold)")
    parser.add_argument("--models", default=None, help="comma-separated (default: every Bayesian)")
    _bench.add_sampling_options(parser)
    parser.add_argument("--out", default=str(HERE / "MODEL_SELECTION.md"))
    args = parser.parse_args(argv)
    models = (
        args.models.split(",")
        if args.models
        else [n for n, c in MODELS.items() if issubclass(c, BayesianCrowdModel)]
    )
    names = args.datasets.split(",") if args.datasets else None
    datasets = []
    for name in names or list_datasets():
        annotations, gold = load_dataset(name)
        if gold is not None:
            datasets.append((name, annotations, gold))
    try:
        from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
    except ImportError:
        CrowdKitDawidSkene = None  # noqa: N806

    lines = [
        "## Model choice by LOO on real data\n",
        f"NUTS ({args.sampler}), {args.chains} chains x ({args.tune} + {args.draws}), seed "
        f"{args.seed}; fitted without gold, scored against gold. Command: `python "
        f"benchmarks/model_selection.py --draws {args.draws} --tune {args.tune} --chains "
        f"{args.chains} --seed {args.seed}`.\n",
    ]
    summary = [
        "| dataset | chosen by LOO | accuracy | crowd-kit DS accuracy | at least as accurate "
        "| log loss | majority-vote log loss | below MV |",
        "|---|---|---|---|---|---|---|---|",
    ]
    wins_accuracy = wins_log_loss = 0
    for name, annotations, gold in datasets:
        fits: dict[str, Any] = {}
        rows = []
        for model_name in models:
            print(f"[{name}] {model_name} ...", file=sys.stderr, flush=True)
            fit = cb.get_model(model_name)
            seconds, messages = _bench.timed_fit(fit, annotations, **_bench.sampling_settings(args))
            fits[model_name] = fit
            rows.append((model_name, evaluate(fit, gold), fit.diagnostics_, seconds, len(messages)))
        table = compare(fits)
        loo = table.set_index("model")
        chosen = str(table.iloc[0]["model"])
        lines.append(f"\n### {name}\n")
        lines.append(
            "| model | elpd_loo | se | elpd_diff | Pareto-k warning | accuracy | log loss | ECE "
            "| max R-hat | sampling warnings | wall s |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for model_name, scores, diag, seconds, notes in sorted(
            rows, key=lambda r: -float(loo.loc[r[0], "elpd_loo"])
        ):
            entry = loo.loc[model_name]
            lines.append(
                f"| {model_name} | {entry['elpd_loo']:.1f} | {entry['se']:.1f} "
                f"| {entry['elpd_diff']:.1f} | {entry['warning']} | {scores['accuracy']:.4f} "
                f"| {scores['log_loss']:.4f} | {scores['ece']:.4f} | {diag.max_rhat:.3f} "
                f"| {notes} | {seconds:.0f} |"
            )
        chosen_scores = next(r[1] for r in rows if r[0] == chosen)
        mv = evaluate(cb.MajorityVote().fit(annotations, random_seed=args.seed), gold)
        ck_acc = float("nan")
        if CrowdKitDawidSkene is not None:
            frame = _bench.crowdkit_frame(annotations)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ck = CrowdKitDawidSkene(n_iter=100).fit_predict_proba(frame)
            ck.columns.name = None
            ck_acc = evaluate(ck, gold)["accuracy"]
        acc_ok = chosen_scores["accuracy"] >= ck_acc
        ll_ok = chosen_scores["log_loss"] < mv["log_loss"]
        wins_accuracy += acc_ok
        wins_log_loss += ll_ok
        summary.append(
            f"| {name} | {chosen} | {chosen_scores['accuracy']:.4f} | {ck_acc:.4f} "
            f"| {'yes' if acc_ok else 'no'} | {chosen_scores['log_loss']:.4f} "
            f"| {mv['log_loss']:.4f} | {'yes' if ll_ok else 'no'} |"
        )
    n = len(datasets)
    text = (
        "\n".join(lines[:2])
        + "\n"
        + "\n".join(summary)
        + f"\n\nChosen model at least as accurate as crowd-kit DawidSkene on {wins_accuracy} of "
        f"{n}; log loss below majority vote's on {wins_log_loss} of {n}.\n"
        + "\n".join(lines[2:])
        + "\n"
    )
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
