"""Helpers shared by the benchmark scripts and the paper's scripts: the sampling options, timed
fits that keep the sampler's warnings, crowd-kit's adaptation to scikit-learn and markdown.

The scripts run as files (``python benchmarks/<script>.py``, or loaded by path in the tests),
so each puts its own folder on ``sys.path`` before importing this module. crowdbayes is
imported only inside the functions: ``speed.py`` sets JAX's flags in its worker processes
before anything imports JAX.
"""

import argparse
import importlib
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
#: The columns of a table of scores against gold, after the method's name.
SCORE_COLUMNS = [
    "accuracy",
    "log loss",
    "Brier",
    "ECE",
    "time (s)",
    "max R-hat",
    "min ESS",
    "divergences",
    "note",
]


# ---------------------------------------------------------------------------------- options
def add_sampling_options(
    parser: argparse.ArgumentParser,
    *,
    draws: int = 1000,
    tune: int | None = 1000,
    chains: int = 4,
    seed: int = 0,
) -> None:
    """Add ``--draws``, ``--tune``, ``--chains``, ``--seed`` and ``--sampler`` (nutpie).

    ``tune=None`` leaves the tuning steps to each model's default.
    """
    tuning = "each model's own" if tune is None else str(tune)
    parser.add_argument("--draws", type=int, default=draws, help=f"NUTS draws per chain ({draws})")
    parser.add_argument(
        "--tune", type=int, default=tune, help=f"NUTS tuning steps per chain ({tuning})"
    )
    parser.add_argument("--chains", type=int, default=chains, help=f"NUTS chains ({chains})")
    parser.add_argument("--seed", type=int, default=seed, help=f"random seed of every fit ({seed})")
    parser.add_argument(
        "--sampler", default="nutpie", choices=SAMPLERS, help="NUTS sampler (nutpie)"
    )


def sampling_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The fit's keyword arguments from the options of :func:`add_sampling_options`."""
    return {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "sampler": args.sampler,
        "random_seed": args.seed,
        "progressbar": False,
    }


def command(script: str, argv: Sequence[str] | None) -> str:
    """The command line that ran ``benchmarks/<script>``, for the report."""
    args = sys.argv[1:] if argv is None else argv
    return f"python benchmarks/{script} {' '.join(args)}".strip()


# ---------------------------------------------------------------------------------- fits
def timed_fit(model: Any, annotations: Any, **fit_kwargs: Any) -> tuple[float, list[str]]:
    """Fit ``model``; return the wall seconds and its sampling warnings' messages.

    Every warning is caught: a :class:`~crowdbayes.SamplingWarning` is returned (the tables
    report what it says), the libraries' other warnings are dropped.
    """
    from crowdbayes.diagnostics import SamplingWarning

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(annotations, **fit_kwargs)
    seconds = time.perf_counter() - start
    return seconds, [str(w.message) for w in caught if issubclass(w.category, SamplingWarning)]


def short_message(message: str) -> str:
    """The head of a warning or error: no model prefix, cut before details and advice."""
    head = message.split(": ", 1)[1] if ": " in message else message
    for stop in (" (", ";", ":", "\n"):
        head = head.split(stop, 1)[0]
    return head.strip()


# ---------------------------------------------------------------------------------- crowd-kit
#: Why crowd-kit's Wawa and ZeroBasedSkill are adapted, for the reports.
CROWDKIT_ADAPTED = (
    "crowd-kit 1.4.2's Wawa and ZeroBasedSkill call scikit-learn's `check_is_fitted`, which "
    "raises `AttributeError: __sklearn_tags__` on their non-scikit-learn classes with "
    "scikit-learn >= 1.6; this benchmark adapts them (their modules' `check_is_fitted` is "
    "replaced by a check that the fitted attribute exists, what it did before 1.6) instead of "
    "pinning scikit-learn < 1.6, which would not install next to the test extra."
)


def adapt_crowdkit_for_sklearn() -> None:
    """Let crowd-kit 1.4.2's Wawa / ZeroBasedSkill run with scikit-learn >= 1.6 (see above)."""

    def check_is_fitted(estimator: Any, attributes: str | list[str]) -> None:
        names = [attributes] if isinstance(attributes, str) else list(attributes)
        missing = [a for a in names if not hasattr(estimator, a)]
        if missing:
            raise AttributeError(f"{type(estimator).__name__} is not fitted: no {missing}")

    for module in ("wawa", "zero_based_skill", "gold_majority_vote"):
        mod = importlib.import_module(f"crowdkit.aggregation.classification.{module}")
        mod.check_is_fitted = check_is_fitted  # type: ignore[attr-defined]


def crowdkit_frame(annotations: Any) -> Any:
    """Annotations in crowd-kit's column names (task, worker, label)."""
    return annotations.rename(columns={"item": "task", "annotator": "worker"})


# ---------------------------------------------------------------------------------- output
def fmt(value: Any, digits: int) -> str:
    """A number with ``digits`` decimals; an empty cell for None or NaN."""
    if value is None:
        return ""
    value = float(value)
    return "" if not np.isfinite(value) else f"{value:.{digits}f}"


def score_cells(scores: dict[str, Any], seconds: float, digits: int) -> list[str]:
    """The accuracy, log loss, Brier, ECE and time cells of :data:`SCORE_COLUMNS`."""
    keys = ("accuracy", "log_loss", "brier", "ece")
    return [*(fmt(scores.get(key), digits) for key in keys), fmt(seconds, 1)]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A pipe table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
