"""The demo behind ``crowdbayes demo``: simulate a crowd, fit it, report against the truth.

:func:`run_demo` simulates a realistic crowd (25 annotators of varying skill, some labelling at
random), fits the hierarchical Dawid-Skene model, prints what it found next to the simulated
truth and majority vote, and saves two figures and the simulated labels.
"""

import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from crowdbayes.models import HierarchicalDawidSkene, MajorityVote
from crowdbayes.plots import plot_annotator_reliability, plot_confusion_grid
from crowdbayes.results import FitResult
from crowdbayes.simulate import Simulation, simulate_dawid_skene

__all__ = ["run_demo"]

#: The simulated crowd: annotators, categories and distinct annotators per item.
ANNOTATORS = 25
CATEGORIES = 3
LABELS_PER_ITEM = 5


def run_demo(
    out: str | os.PathLike[str],
    *,
    items: int = 400,
    method: Literal["nuts", "map"] = "nuts",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 2026,
    progressbar: bool = False,
) -> FitResult:
    """Simulate crowd labels, fit the hierarchical Dawid-Skene model and report on stdout.

    The report gives the sampling diagnostics, the 10 most uncertain items, the 5 least
    reliable annotators against their simulated accuracy, and the share of items whose
    posterior-mode label is right, next to majority vote's. ``out`` receives
    ``confusion.png`` (confusion matrices of the 12 busiest annotators), ``annotators.png``
    (reliability forest with the true accuracies) and ``annotations.csv`` (the simulated
    labels), written after the fit.

    Parameters
    ----------
    out : str or path-like
        Output folder, created when missing.
    items : int, default 400
        Number of simulated items; each gets 5 labels.
    method : {"nuts", "map"}, default "nuts"
        NUTS (nutpie), or only the posterior mode: fast, no intervals.
    draws, tune, chains : int, default 1000, 1000, 4
        NUTS settings per chain.
    seed : int, default 2026
        Seed of the simulation and of the fits.
    progressbar : bool, default False
        Show the sampler's progress bar.

    Returns
    -------
    FitResult
        The hierarchical Dawid-Skene fit.

    Examples
    --------
    >>> import tempfile
    >>> result = run_demo(tempfile.mkdtemp(), items=60, method="map")  # doctest: +ELLIPSIS
    crowdbayes demo: hierarchical Dawid-Skene on simulated crowd labels
    ...
    >>> result.model_name
    'hierarchical-dawid-skene'
    """
    out = Path(out)
    sim = simulate_dawid_skene(
        n_items=items,
        n_annotators=ANNOTATORS,
        n_categories=CATEGORIES,
        labels_per_item=LABELS_PER_ITEM,
        random_seed=seed,
    )
    data = sim.data
    print("crowdbayes demo: hierarchical Dawid-Skene on simulated crowd labels")
    print("=" * 68)
    print(
        f"Simulated {data.n_annotations} labels of {data.n_items} items by {data.n_annotators} "
        f"annotators, {data.n_categories} categories ({LABELS_PER_ITEM} labels per item, "
        f"{len(sim.parameters['spammers'])} annotators labelling at random, seed {seed})."
    )
    if method == "nuts":
        print(
            f"Sampling {chains} chains x {draws} draws after {tune} tuning steps with NUTS "
            "(nutpie); the first fit compiles the model, later fits reuse the compiled code.",
            flush=True,
        )
    else:
        print("Finding the posterior mode (--method map: no intervals).", flush=True)
    start = time.perf_counter()
    model = HierarchicalDawidSkene().fit(
        data,
        method=method,
        draws=draws,
        tune=tune,
        chains=chains,
        random_seed=seed,
        progressbar=progressbar,
    )
    print(f"Done in {time.perf_counter() - start:.1f} s.\n")
    result = model.result_
    print(result.diagnostics.to_text())
    _print_uncertain_items(result, sim)
    _print_least_reliable(result, sim)
    _print_accuracy(result, sim, seed)

    confusion_fig = plot_confusion_grid(result)
    reliability_fig = plot_annotator_reliability(result, truth=sim.annotator_accuracy())
    out.mkdir(parents=True, exist_ok=True)
    confusion_fig.savefig(out / "confusion.png", dpi=110)
    reliability_fig.savefig(out / "annotators.png", dpi=110)
    sim.annotations.to_csv(out / "annotations.csv", index=False)
    print(
        f"Saved {out / 'confusion.png'} (confusion matrices of the 12 busiest annotators), "
        f"{out / 'annotators.png'} (reliability forest with true accuracies) and "
        f"{out / 'annotations.csv'} (the simulated labels)."
    )
    print(
        f"Try: crowdbayes fit {out / 'annotations.csv'} --model dawid-skene "
        f"--out {out / 'dawid-skene'}"
    )
    return result


def _print_uncertain_items(result: FitResult, sim: Simulation) -> None:
    """The 10 items of highest posterior entropy: labels given, mode and true label."""
    data = result.data
    labels = result.labels()
    given = (
        data.to_frame().groupby("item")["label"].agg(lambda s: " ".join(str(v) for v in sorted(s)))
    )
    uncertain = labels.sort_values("entropy", ascending=False, kind="stable").head(10)
    table = pd.DataFrame(
        {
            "labels given": given.reindex(uncertain.index).to_numpy(),
            "mode": uncertain["label"].to_numpy(),
            "P(mode)": uncertain["probability"].round(2).to_numpy(),
            "entropy": uncertain["entropy"].round(2).to_numpy(),
            "true label": sim.true_labels.reindex(uncertain.index).to_numpy(),
        },
        index=uncertain.index,
    )
    print("The 10 most uncertain items (highest posterior entropy, nats):")
    print(table.to_string())
    print()


def _print_least_reliable(result: FitResult, sim: Simulation) -> None:
    """The 5 annotators of lowest estimated accuracy, with intervals, truth and spammers."""
    ci = f"{100 * float(result.datatree.attrs['ci_prob']):.0f}%"
    ann = result.annotators().sort_values("accuracy", kind="stable").head(5)
    true_values = sim.annotator_accuracy().reindex(ann.index).to_numpy()
    spammers = {sim.annotators[j] for j in sim.parameters["spammers"]}
    reliability = pd.DataFrame(
        {
            "labels": ann["n_labels"].to_numpy(),
            "accuracy": ann["accuracy"].round(2).to_numpy(),
        },
        index=ann.index,
    )
    low, high = ann["accuracy_low"].to_numpy(), ann["accuracy_high"].to_numpy()
    has_intervals = bool(np.isfinite(low).all() and np.isfinite(high).all())
    if has_intervals:
        reliability[f"{ci} interval"] = [
            f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(low, high, strict=True)
        ]
    reliability["true accuracy"] = np.round(true_values, 2)
    if has_intervals:
        covered = (low <= true_values) & (true_values <= high)
        reliability["truth inside"] = np.where(covered, "yes", "no")
    reliability["spammer"] = ["yes" if a in spammers else "" for a in ann.index]
    what = f"accuracy with {ci} interval" if has_intervals else "accuracy at the posterior mode"
    print(f"The 5 least reliable annotators ({what}) against the simulated truth:")
    print(reliability.to_string())
    print()


def _print_accuracy(result: FitResult, sim: Simulation, seed: int) -> None:
    """Share of items whose posterior-mode label is the true one, model and majority vote."""
    data = result.data
    truth = sim.true_labels.reindex(data.items)
    model_correct = float((result.labels()["label"] == truth).mean())
    vote = MajorityVote().fit(data, random_seed=seed).result_.labels()
    vote_correct = float((vote["label"] == truth.reindex(vote.index)).mean())
    n = data.n_items
    print("Posterior-mode labels against the simulated truth:")
    print(
        f"  hierarchical Dawid-Skene: {model_correct:6.1%} correct "
        f"({round(model_correct * n)} of {n} items)"
    )
    print(
        f"  majority vote:            {vote_correct:6.1%} correct "
        f"({round(vote_correct * n)} of {n} items)"
    )
    print()
