"""NUTS settings for each model: tuning steps and target acceptance rate, on every real dataset.

Every crowdbayes model starts its chains at the EM mode (jittered), so the sampler does not
have to find the typical set, only adapt its step size and mass matrix. This benchmark fits
each model with each setting (tuning steps / target acceptance rate) and several seeds,
4 chains x 1000 draws, and reports what a fit reports: max R-hat, min bulk and tail ESS,
divergences, label-permuted chains, the chains' largest disagreement on an item's label
probability, and (where gold exists) accuracy and log loss of the posterior label
probabilities, with the leapfrog steps per draw and the sampling time. The defaults
(``default_tune`` and ``default_target_accept`` of each estimator) are chosen from this table.

Usage::

    python benchmarks/tuning.py                       # every model below, 4 datasets (~25 min)
    python benchmarks/tuning.py --models dawid-skene --datasets rte --seeds 0 \\
        --settings 500/0.8 500/0.65

Writes ``benchmarks/TUNING.md``. Datasets are read from ``CROWDBAYES_DATA`` (default
``../shared/datasets``).
"""

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import crowdbayes as cb
from crowdbayes.datasets import data_home, list_datasets

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402

DEFAULT_MODELS = (
    "dawid-skene",
    "class-conditional",
    "one-coin",
    "hierarchical-dawid-skene",
    "mace",
)
DEFAULT_DATASETS = ("rte", "temp", "sp_amt", "anesthesia")
DEFAULT_SETTINGS = ("1000/0.8", "500/0.8", "500/0.65")


def setting(text: str) -> tuple[int, float]:
    """``"500/0.65"`` -> (500, 0.65)."""
    try:
        tune, target = text.split("/")
        value = (int(tune), float(target))
    except ValueError:
        message = f"expected TUNE/TARGET such as 500/0.65, not {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if value[0] < 1 or not 0.0 < value[1] < 1.0:
        raise argparse.ArgumentTypeError(f"tuning steps >= 1 and target in (0, 1): {text!r}")
    return value


def load(name: str) -> tuple[pd.DataFrame, pd.Series | None]:
    folder = data_home() / name
    annotations = pd.read_csv(folder / "annotations.csv")
    gold_path = folder / "gold.csv"
    gold = pd.read_csv(gold_path).set_index("item")["label"] if gold_path.exists() else None
    return annotations, gold


def gold_scores(probabilities: pd.DataFrame, gold: pd.Series | None) -> tuple[float, float]:
    """Accuracy of the posterior mode and mean -log P(gold), over items with gold."""
    if gold is None:
        return float("nan"), float("nan")
    common = probabilities.index.intersection(gold.index)
    p = probabilities.loc[common].to_numpy()
    columns = list(probabilities.columns)
    truth = np.array([columns.index(v) for v in gold.loc[common]])
    accuracy = float(np.mean(p.argmax(axis=1) == truth))
    log_loss = float(-np.mean(np.log(np.clip(p[np.arange(len(truth)), truth], 1e-15, 1.0))))
    return accuracy, log_loss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS))
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument(
        "--settings",
        nargs="+",
        type=setting,
        default=[setting(s) for s in DEFAULT_SETTINGS],
        metavar="TUNE/TARGET",
        help="tuning steps / target acceptance rate (default: %(default)s)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/TUNING.md"))
    args = parser.parse_args(argv)
    missing = sorted(set(args.datasets) - set(list_datasets()))
    if missing:
        print(f"dataset(s) {missing} not found under {data_home()}", file=sys.stderr)
        return 2
    run = {"draws": args.draws, "chains": args.chains, "progressbar": False}
    rows = []
    for dataset in args.datasets:
        annotations, gold = load(dataset)
        for model_name in args.models:
            # compile (or load from the cache) before timing
            warm_up = cb.get_model(model_name)
            _bench.timed_fit(
                warm_up, annotations, draws=20, tune=20, random_seed=99, progressbar=False
            )
            for tune, target in args.settings:
                for seed in args.seeds:
                    print(
                        f"[{dataset}] {model_name} tune {tune} target {target} seed {seed}",
                        file=sys.stderr,
                    )
                    model = cb.get_model(model_name)
                    # the warnings are dropped: the table reports what they say
                    wall, _ = _bench.timed_fit(
                        model, annotations, tune=tune, target_accept=target, random_seed=seed, **run
                    )
                    diag = model.diagnostics_
                    accuracy, log_loss = gold_scores(model.result_.label_probabilities(), gold)
                    attrs = model.result_.datatree.attrs
                    steps = model.result_.datatree["sample_stats"]["n_steps"].to_numpy()
                    rows.append(
                        [
                            dataset,
                            model_name,
                            str(tune),
                            str(target),
                            str(seed),
                            f"{wall:.1f}",
                            f"{attrs['sampling_seconds']:.1f}",
                            f"{steps.mean():.1f}",
                            _bench.fmt(diag.max_rhat, 4),
                            _bench.fmt(diag.min_ess_bulk, 0),
                            _bench.fmt(diag.min_ess_tail, 0),
                            str(diag.n_divergent),
                            str(len(diag.permuted_chains)),
                            _bench.fmt(diag.label_chain_difference, 3),
                            _bench.fmt(accuracy, 4),
                            _bench.fmt(log_loss, 4),
                        ]
                    )
                    print("| " + " | ".join(rows[-1]) + " |", file=sys.stderr, flush=True)
    header = [
        "dataset",
        "model",
        "tune",
        "target accept",
        "seed",
        "wall (s)",
        "sampling (s)",
        "leapfrog steps / draw",
        "max R-hat",
        "min bulk ESS",
        "min tail ESS",
        "divergences",
        "permuted chains",
        "chain label disagreement",
        "accuracy",
        "log loss",
    ]
    lines = [
        "# NUTS settings: tuning steps and target acceptance rate",
        "",
        f"Command: `{_bench.command('tuning.py', argv)}`  ",
        f"{args.chains} chains x {args.draws} draws, sampler nutpie, chains started at the EM "
        "mode; crowdbayes "
        f"{cb.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs.  ",
        "Diagnostics over each model's global parameters, as the fit reports them. Chain label "
        "disagreement: the largest difference between two chains' mean probability of a "
        "category for one item. Accuracy and log loss against gold (none for anesthesia).",
        "",
        _bench.markdown_table(header, rows),
        "",
    ]
    text = "\n".join(lines)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
