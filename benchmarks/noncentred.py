"""Item effects of the logistic random-effects model: centred, non-centred or integrated out.

Part ``sim``: on data simulated from LogRndEff (about 2000 labels), NUTS on three equivalent
forms of the model, each with the same global parameters and the true category marginalised:

* **non-centred** (the package's :func:`build_logistic_random_effects`): standard-normal
  ``item_effect`` (item, K - 1) shared across true categories, scaled by ``item_scale``;
* **centred**: the item offsets themselves, ``item_offset`` (item, K - 1) in logit units, whose
  prior :math:`\\operatorname{Normal}(0, \\chi_k)` depends on the true category and so sits
  inside the mixture over it (what NumPyro's enumeration does with Paun et al.'s
  :math:`\\theta_i \\sim \\operatorname{Normal}(0, \\chi_{c_i})`); the per-item marginal
  likelihood is that of the non-centred form;
* **integrated** (only with ``--forms ... integrated``): the item effects summed out by
  Gauss-Hermite quadrature (:func:`build_logistic_random_effects_integrated`, ``--nodes``
  nodes, default 64 = 8 per dimension for 3 categories), nothing sampled per item. Each
  gradient costs rows x nodes x K x K: with 3 categories it did not finish 4 chains x 2000
  iterations within an hour on the shared 2-CPU machine; with 2 categories it is cheap.

Reported per form: wall time of ``sample_posterior`` (compilation included), min bulk ESS and
max R-hat over the global parameters (prevalence, error_mean, error_scale, item_scale), ESS per
second, divergences. Every form starts from the estimator's EM-based initial values.

Part ``real``: ``ItemDifficulty`` and ``LogisticRandomEffects`` (NUTS, default settings,
without gold) on rte and temp, scored against gold (accuracy of the posterior mode, log loss)
with wall time and diagnostics.

Run from the repository root::

    python benchmarks/noncentred.py                  # both parts, NUTS default settings
    python benchmarks/noncentred.py --part sim --draws 500 --tune 500
"""

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt

import crowdbayes as cb
from crowdbayes.data import AnnotationData
from crowdbayes.datasets import load_dataset
from crowdbayes.inference import sample_posterior
from crowdbayes.metrics import evaluate
from crowdbayes.models import ItemDifficulty, LogisticRandomEffects
from crowdbayes.models._shared import (
    error_coords,
    error_log_probability,
    observe_integrated_labels,
    select_label,
    spread_effect,
    sum_rows_by_item,
)
from crowdbayes.models.logistic_random_effects import (
    LogisticRandomEffectsPriors,
    _global_variables,
    build_logistic_random_effects,
    build_logistic_random_effects_integrated,
)
from crowdbayes.simulate import simulate_logistic_random_effects

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402

GLOBALS = ["prevalence", "error_mean", "error_scale", "item_scale"]


def build_centred(data: AnnotationData, priors: LogisticRandomEffectsPriors | None = None) -> Any:
    """LogRndEff with centred item offsets; their prior sits inside the mixture over k."""
    priors = LogisticRandomEffectsPriors() if priors is None else priors
    n_k = data.n_categories
    wrong = n_k - 1
    rows = data.compressed
    with pm.Model(coords=error_coords(data)) as model:
        prevalence, _, item_scale, annotator_logits = _global_variables(data, priors)
        offset = pm.Flat("item_offset", dims=("item", "wrong_label"))
        logits = annotator_logits[rows.annotator_index] + spread_effect(
            offset[rows.item_index], n_k
        )
        terms = select_label(error_log_probability(logits, n_k), rows.label_index, n_k)
        terms = terms * rows.count[:, None].astype("float64")  # each unique row, counted
        # log Normal(offset_i | 0, chi_k) for each hypothesis k: (item, k)
        scale = item_scale.reshape((n_k, wrong))  # row k: the scales of k's wrong labels
        prior = (
            -0.5 * (offset[:, None, :] / scale[None]) ** 2
            - pt.log(scale)[None]
            - 0.5 * np.log(2 * np.pi)
        ).sum(axis=-1)
        per_item = sum_rows_by_item(terms, rows.item_index, data.n_items)
        joint = pt.log(prevalence)[None, :] + prior + per_item
        observe_integrated_labels(data, joint)
    return model


def build_integrated(data: AnnotationData, max_nodes: int) -> Any:
    return build_logistic_random_effects_integrated(data, max_nodes=max_nodes)


FORMS: dict[str, Callable[..., Any]] = {
    "non-centred": build_logistic_random_effects,
    "centred": build_centred,
    "integrated": build_integrated,
}


def initial_values(data: AnnotationData, model: Any) -> dict[str, np.ndarray]:
    estimator = LogisticRandomEffects()
    values = estimator.start(data, estimator.resolved_priors()).initial_values
    free = {rv.name for rv in model.free_RVs}
    out = {k: v for k, v in values.items() if k in free}
    if "item_offset" in free:
        out["item_offset"] = np.zeros((data.n_items, data.n_categories - 1))
    return out


def run_sim(args: argparse.Namespace) -> str:
    sim = simulate_logistic_random_effects(
        n_items=args.items,
        n_annotators=args.annotators,
        n_categories=args.categories,
        item_scale=args.item_scale,
        random_seed=args.seed,
    )
    data = sim.data
    lines = [
        f"Simulated LogRndEff: {data.n_annotations} labels, {data.n_items} items, "
        f"{data.n_annotators} annotators, {data.n_categories} categories, item_scale "
        f"{args.item_scale}, error_mean -2.5, error_scale 0.8, seed {args.seed}. NUTS: "
        f"{args.sampler}, {args.chains} chains x {args.draws} draws after {args.tune} tuning "
        "steps. ESS and R-hat over prevalence, error_mean, error_scale, item_scale.",
        "",
        "| item effects | wall time (s) | min bulk ESS | ESS / s | max R-hat | divergences |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.forms:
        build = FORMS[name]
        model = build(data, args.nodes) if name == "integrated" else build(data)
        if name == "integrated":
            name = f"integrated ({args.nodes} quadrature nodes)"
        start = time.perf_counter()
        initvals = initial_values(data, model)
        tree = sample_posterior(model, initvals=initvals, **_bench.sampling_settings(args))
        seconds = time.perf_counter() - start
        ess = az.ess(tree, var_names=GLOBALS, method="bulk")
        rhat = az.rhat(tree, var_names=GLOBALS)
        min_ess = min(float(ess[v].min()) for v in GLOBALS)
        max_rhat = max(float(rhat[v].max()) for v in GLOBALS)
        divergences = int(tree.sample_stats["diverging"].sum())
        lines.append(
            f"| {name} | {seconds:.0f} | {min_ess:.0f} | {min_ess / seconds:.1f} | "
            f"{max_rhat:.3f} | {divergences} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


def run_real(args: argparse.Namespace) -> str:
    lines = [
        f"Real data, fitted by NUTS without gold ({args.sampler}, {args.chains} chains x "
        f"{args.draws} draws after {args.tune} tuning steps, seed {args.seed}), scored against "
        "gold. Time: wall seconds of the fit, compilation included. Diagnostics over the "
        "estimator's diagnostic_vars.",
        "",
        "| dataset | model | accuracy | log loss | time (s) | max R-hat | min bulk ESS | "
        "divergences |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset in args.datasets:
        annotations, gold = load_dataset(dataset)
        for cls in (ItemDifficulty, LogisticRandomEffects):
            model = cls()
            seconds, _ = _bench.timed_fit(model, annotations, **_bench.sampling_settings(args))
            scores = evaluate(model, gold)
            d = model.diagnostics_
            lines.append(
                f"| {dataset} | {cls.name} | {scores['accuracy']:.4f} | {scores['log_loss']:.4f} "
                f"| {seconds:.0f} | {d.max_rhat:.3f} | {d.min_ess_bulk:.0f} | {d.n_divergent} |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["sim", "real", "all"], default="all")
    _bench.add_sampling_options(parser)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--categories", type=int, default=3)
    parser.add_argument("--item-scale", type=float, default=1.0)
    parser.add_argument(
        "--forms",
        nargs="+",
        choices=list(FORMS),
        default=["non-centred", "centred"],
        help="forms to sample (integrated: slow for 3 or more categories, see the notes)",
    )
    parser.add_argument("--nodes", type=int, default=64, help="quadrature nodes (integrated)")
    parser.add_argument("--datasets", nargs="+", default=["rte", "temp"])
    args = parser.parse_args()
    header = (
        f"crowdbayes {cb.__version__}, pymc {pm.__version__}, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs"
    )
    parts = [f"# Item-difficulty models: parametrisation and real data\n\n{header}"]
    if args.part in ("sim", "all"):
        parts.append("## Centred vs non-centred item effects (LogRndEff)\n\n" + run_sim(args))
    if args.part in ("real", "all"):
        parts.append("## rte and temp\n\n" + run_real(args))
    print("\n\n".join(parts))


if __name__ == "__main__":
    main()
