"""Sparse many-category crowd: where Bayesian Dawid-Skene is hard to sample.

Simulates 8 categories (prevalence from a Dirichlet(1) draw, some below 1 %), 1500 items, 100
annotators with log-normal workloads and mean accuracy 0.65, 3 labels per item, then scores majority
vote, crowd-kit's EM Dawid-Skene (when installed), crowdbayes' Dawid-Skene (MAP and NUTS) and the
hierarchical model (NUTS) against the simulated truth, with sampling diagnostics.

    python benchmarks/sparse_many_categories.py [--draws 500 --tune 500 --chains 4 --seed 1]
        [--sampler nutpie] [--error-mean-sd 1.5] [--models dawid-skene hierarchical-dawid-skene]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import crowdbayes as cb
from crowdbayes.metrics import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402


def simulate(categories: int, items: int, annotators: int) -> cb.Simulation:
    prevalence = np.random.default_rng(5).dirichlet(np.full(categories, 1.0))
    return cb.simulate_dawid_skene(
        n_items=items,
        n_annotators=annotators,
        n_categories=categories,
        labels_per_item=3,
        prevalence=prevalence,
        mean_accuracy=0.65,
        workload_skew=1.5,
        random_seed=3,
    )


def row(name: str, seconds: float, scores: dict, diag: cb.Diagnostics | None = None) -> str:
    cells = [name, f"{scores['accuracy']:.3f}", f"{scores['log_loss']:.3f}", f"{scores['ece']:.3f}"]
    cells.append(f"{seconds:.0f}")
    if diag is None:
        cells += ["", "", "", ""]
    else:
        cells += [
            f"{diag.max_rhat:.3f}",
            f"{diag.min_ess_bulk:.0f}",
            f"{diag.label_chain_difference:.2f}",
            str(diag.permuted_chains or ""),
        ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", type=int, default=8)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--annotators", type=int, default=100)
    _bench.add_sampling_options(parser, draws=500, tune=500, seed=1)
    parser.add_argument("--error-mean-sd", type=float, default=None, help="hierarchical prior")
    parser.add_argument("--models", nargs="+", default=["dawid-skene", "hierarchical-dawid-skene"])
    args = parser.parse_args()
    sim = simulate(args.categories, args.items, args.annotators)
    truth = sim.true_labels
    print("| model | accuracy | log loss | ECE | s | max R-hat | min ESS | chain gap | permuted |")
    print("|---|---|---|---|---|---|---|---|---|")
    start = time.perf_counter()
    mv = cb.MajorityVote().fit(sim.annotations, random_seed=0)
    print(row("majority vote", time.perf_counter() - start, evaluate(mv, truth)))
    try:
        from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
    except ImportError:
        print("| crowd-kit DawidSkene | not installed (pip install 'crowdbayes[bench]') |")
    else:
        start = time.perf_counter()
        frame = _bench.crowdkit_frame(sim.annotations)
        probs = CrowdKitDawidSkene(n_iter=100).fit(frame).probas_
        print(row("crowd-kit DawidSkene (EM)", time.perf_counter() - start, evaluate(probs, truth)))
    start = time.perf_counter()
    ds_map = cb.DawidSkene().fit(sim.annotations, method="map")
    print(row("dawid-skene MAP", time.perf_counter() - start, evaluate(ds_map, truth)))
    for name in args.models:
        priors = (
            {"error_mean_sd": args.error_mean_sd}
            if name == "hierarchical-dawid-skene" and args.error_mean_sd is not None
            else None
        )
        model = cb.get_model(name, priors=priors)
        seconds, _ = _bench.timed_fit(model, sim.annotations, **_bench.sampling_settings(args))
        print(row(f"{name} NUTS", seconds, evaluate(model, truth), model.diagnostics_))


if __name__ == "__main__":
    main()
