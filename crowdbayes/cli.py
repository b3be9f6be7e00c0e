"""The ``crowdbayes`` command: fit or compare models on a CSV, simulate data, run the demo.

``crowdbayes fit ANNOTATIONS.csv --model NAME --out DIR`` validates the data, fits the model and
only then writes ``DIR/labels.csv``, ``annotators.csv``, ``prevalence.csv``, ``confusion.csv``,
``fit.nc`` and ``summary.txt``. Bad input (missing file or column, unknown model, invalid
option) exits with status 2 and one ``crowdbayes: error: ...`` line on stderr, writing nothing.
Sampling problems are printed on stderr in words and recorded in ``summary.txt``.

``crowdbayes compare ANNOTATIONS.csv --models a,b,c --out DIR`` fits each model by NUTS (same
options as ``fit``), writes each model's outputs to ``DIR/<model>/`` as ``fit`` does and the
PSIS-LOO ranking to ``DIR/compare.csv`` (``model,elpd_loo,se,elpd_diff,dse,p_loo,warning``,
best first; see :func:`crowdbayes.compare.compare`), and prints the table. Fewer than two
models, a repeated or unknown one, or ``--method map`` exit with status 2 before fitting.

``crowdbayes simulate --out DIR`` writes simulated ``annotations.csv`` with the truth;
``crowdbayes demo`` simulates a realistic dataset, fits the hierarchical Dawid-Skene model by
NUTS and reports what it found against the truth.
"""

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from crowdbayes import __version__
from crowdbayes.compare import _comparable_models, compare
from crowdbayes.data import AnnotationData, _pick_column, encode_annotations, read_annotations
from crowdbayes.demo import run_demo
from crowdbayes.diagnostics import SamplingWarning
from crowdbayes.estimators import CrowdModel
from crowdbayes.inference import SAMPLERS, seed_to_int
from crowdbayes.models import MODELS, get_model
from crowdbayes.results import FitResult
from crowdbayes.simulate import simulate_dawid_skene, simulate_hierarchical_dawid_skene
from crowdbayes.summaries import MAX_LOG_LIKELIHOOD_ELEMENTS

__all__ = ["main"]

PROG = "crowdbayes"
_PACKAGE_DIR = str(Path(__file__).resolve().parent)


class CommandLineError(Exception):
    """Bad command-line input: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become :class:`CommandLineError` (one line, no usage)."""

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------- option types
def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``, else "must be <what>"."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "a non-negative integer")
_vi_iterations = _int_at_least(20, "an integer of at least 20")


def _open_probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}")
    return value


def _category_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",")]
    if any(v == "" for v in values):
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated list of categories without empty entries, got {text!r}"
        )
    return values


# ---------------------------------------------------------------------- parser
def _build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Bayesian aggregation of crowd labels: fit, compare, simulate, demo.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="{fit,compare,simulate,demo}", required=True
    )
    # fit and compare read the same data and sample alike; simulate writes to --out too
    out = _out_options()
    data = _data_options()
    sampling = _sampling_options(draws=1000, tune=None, chains=4, seed=None)
    nuts = _nuts_options()

    fit = sub.add_parser(
        "fit",
        parents=[data, out, sampling, nuts],
        help="fit a model to a CSV of annotations and write labels, annotators, prevalence",
        description=(
            "Fit a crowd model to ANNOTATIONS (CSV, one row per label given) and write "
            "labels.csv, annotators.csv, prevalence.csv, confusion.csv, fit.nc and summary.txt "
            "to DIR. Nothing is written unless the data are valid and the fit succeeds."
        ),
    )
    fit.add_argument(
        "--model",
        default="dawid-skene",
        choices=list(MODELS),
        metavar="NAME",
        help=f"model to fit: {', '.join(MODELS)} (default: dawid-skene)",
    )
    fit.add_argument(
        "--method",
        default="nuts",
        choices=["nuts", "map", "vi"],
        help="full posterior by NUTS, its mode (fast, no intervals), or a variational "
        "approximation by ADVI (fast, approximate intervals) (default: nuts)",
    )
    fit.add_argument(
        "--vi-iterations",
        type=_vi_iterations,
        default=None,
        metavar="N",
        help="ADVI steps for --method vi (default: 10,000 up to 100k label rows, fewer above)",
    )

    cmp = sub.add_parser(
        "compare",
        parents=[data, out, sampling, nuts],
        help="fit several models by NUTS and rank them by PSIS-LOO",
        description=(
            "Fit each model to ANNOTATIONS by NUTS, write each one's outputs to DIR/<model>/ "
            "as 'fit' does, rank the models by PSIS-LOO (leave one item out) and write the "
            "table to DIR/compare.csv (model, elpd_loo, se, elpd_diff, dse, p_loo, warning; "
            "best first). Nothing is written unless the data are valid and every fit succeeds."
        ),
    )
    cmp.add_argument(
        "--models",
        required=True,
        type=_model_list,
        metavar="a,b,...",
        help=f"two or more models, comma-separated: {', '.join(_comparable_models())}",
    )
    cmp.add_argument(
        "--method",
        default="nuts",
        choices=["nuts", "map"],
        help="must be nuts (the default): PSIS-LOO needs posterior draws",
    )

    sim = sub.add_parser(
        "simulate",
        parents=[out],
        help="write simulated annotations with their truth",
        description=(
            "Simulate crowd labels and write annotations.csv (item,annotator,label), truth.csv "
            "(item,label) and annotators_truth.csv (annotator,accuracy) to DIR."
        ),
    )
    sim.add_argument(
        "--model",
        default="dawid-skene",
        choices=["dawid-skene", "hierarchical-dawid-skene"],
        help="generative model (default: dawid-skene)",
    )
    sim.add_argument("--items", type=_positive_int, default=500, metavar="N", help="default: 500")
    sim.add_argument(
        "--annotators", type=_positive_int, default=20, metavar="N", help="default: 20"
    )
    sim.add_argument("--categories", type=_positive_int, default=3, metavar="K", help="default: 3")
    sim.add_argument(
        "--labels-per-item",
        type=_positive_int,
        default=None,
        metavar="N",
        help="distinct annotators per item (default: 5, or all when fewer)",
    )
    sim.add_argument(
        "--seed",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="random seed (default: fresh, and printed)",
    )

    demo = sub.add_parser(
        "demo",
        parents=[_sampling_options(draws=1000, tune=1000, chains=4, seed=2026)],
        help="simulate data, fit the hierarchical Dawid-Skene model, report and plot",
        description=(
            "Simulate a realistic crowd (25 annotators of varying skill, some spammers), fit the "
            "hierarchical Dawid-Skene model by NUTS, compare with the truth and majority vote, "
            "and save confusion.png and annotators.png to DIR."
        ),
    )
    demo.add_argument(
        "--out", default="demo-output", metavar="DIR", help="output folder (default: demo-output)"
    )
    demo.add_argument("--items", type=_positive_int, default=400, metavar="N", help="default: 400")
    demo.add_argument(
        "--method",
        default="nuts",
        choices=["nuts", "map"],
        help="NUTS (default), or the posterior mode only: fast, no intervals",
    )
    return parser


def _out_options() -> _Parser:
    """Parent parser: the required output folder."""
    parent = _Parser(add_help=False)
    parent.add_argument("--out", required=True, metavar="DIR", help="output folder")
    return parent


def _data_options() -> _Parser:
    """Parent parser: the annotation file, its columns, the categories and gold labels."""
    parent = _Parser(add_help=False)
    parent.add_argument("annotations", metavar="ANNOTATIONS", help="CSV file of annotations")
    group = parent.add_argument_group("data")
    group.add_argument(
        "--item-col", default="item", metavar="C", help="item column (default: item)"
    )
    group.add_argument(
        "--annotator-col",
        default="annotator",
        metavar="C",
        help="annotator column (default: annotator)",
    )
    group.add_argument(
        "--label-col", default="label", metavar="C", help="label column (default: label)"
    )
    group.add_argument(
        "--categories",
        type=_category_list,
        default=None,
        metavar="a,b,c",
        help="the full set of categories, in order (default: the labels seen, sorted)",
    )
    group.add_argument("--gold", metavar="GOLD.csv", help="known true labels (columns item,label)")
    return parent


def _sampling_options(*, draws: int, tune: int | None, chains: int, seed: int | None) -> _Parser:
    """Parent parser: draws, tuning steps, chains, seed and the progress bar."""
    parent = _Parser(add_help=False)
    group = parent.add_argument_group("sampling")
    group.add_argument(
        "--draws", type=_positive_int, default=draws, metavar="N", help=f"default: {draws}"
    )
    group.add_argument(
        "--tune",
        type=_non_negative_int,
        default=tune,
        metavar="N",
        help=(
            f"default: {tune}"
            if tune is not None
            else "default: the model's (500 for dawid-skene, class-conditional and one-coin, "
            "1000 for the others)"
        ),
    )
    group.add_argument(
        "--chains", type=_positive_int, default=chains, metavar="N", help=f"default: {chains}"
    )
    group.add_argument(
        "--seed",
        type=_non_negative_int,
        default=seed,
        metavar="N",
        help="random seed (default: "
        + ("fresh, recorded in the result)" if seed is None else f"{seed})"),
    )
    group.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the sampler's progress bar (it is shown only when stdout is a terminal)",
    )
    return parent


def _nuts_options() -> _Parser:
    """Parent parser: the NUTS implementation and its target acceptance rate."""
    parent = _Parser(add_help=False)
    group = parent.add_argument_group("sampling")
    group.add_argument(
        "--sampler",
        default="nutpie",
        choices=list(SAMPLERS),
        help="NUTS implementation (default: nutpie)",
    )
    group.add_argument(
        "--target-accept",
        type=_open_probability,
        default=None,
        metavar="F",
        help="NUTS target acceptance rate in (0, 1) (default: the model's, 0.65 or 0.8)",
    )
    return parent


def _model_list(text: str) -> list[str]:
    """``--models a,b,c``: two or more distinct models that have a likelihood."""
    names = [v.strip() for v in text.split(",")]
    allowed = _comparable_models()
    if any(v == "" for v in names):
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated list of models without empty entries, got {text!r}"
        )
    unknown = [v for v in names if v not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown or uncomparable model {unknown[0]!r}; choose from {', '.join(allowed)} "
            "(majority vote has no likelihood)"
        )
    repeated = sorted({v for v in names if names.count(v) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"model {repeated[0]!r} is listed twice")
    if len(names) < 2:
        raise argparse.ArgumentTypeError(f"needs at least two models to compare, got {text!r}")
    return names


# ---------------------------------------------------------------------- helpers
def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _check_out_dir(out: Path) -> None:
    """Fail early (before any fitting) when ``out`` cannot become an output folder."""
    if out.exists():
        if not out.is_dir():
            raise CommandLineError(f"--out {str(out)!r} exists and is not a folder")
        if not os.access(out, os.W_OK):
            raise CommandLineError(f"--out folder {str(out)!r} is not writable")
        return
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CommandLineError(f"cannot create --out {str(out)!r}: {str(parent)!r} is not a folder")
    if not os.access(parent, os.W_OK):
        raise CommandLineError(f"cannot create --out {str(out)!r}: {str(parent)!r} is not writable")


def _run_reporting_warnings[T](func: Callable[[], T]) -> T:
    """Run ``func``, printing crowdbayes's warnings on stderr in words as they happen.

    Sampling problems (:class:`~crowdbayes.diagnostics.SamplingWarning`) and crowdbayes's own
    user warnings (such as gold items without annotations) become ``crowdbayes: warning: ...``
    lines, every time. Warnings of other libraries are left to the active warning filters.
    """
    original = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, SamplingWarning) or _is_ours(category, filename):
            print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)
        else:
            original(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", SamplingWarning)
        warnings.filterwarnings("always", category=UserWarning, module=r"crowdbayes(\.|$)")
        warnings.showwarning = show
        return func()


def _is_ours(category: type[Warning], filename: str) -> bool:
    return issubclass(category, UserWarning) and os.path.abspath(filename).startswith(
        _PACKAGE_DIR + os.sep
    )


def _read_data(args: argparse.Namespace) -> AnnotationData:
    """The annotations of ``fit`` and ``compare``, read, checked and encoded."""
    path = Path(args.annotations)
    if path.exists() and not path.is_file():
        raise ValueError(f"annotation file {args.annotations!r} is not a file")
    try:
        frame = read_annotations(path)
    except OSError as err:
        raise ValueError(
            f"cannot read annotation file {args.annotations!r}: {err.strerror or err}"
        ) from None
    categories = (
        None
        if args.categories is None
        else _typed_categories(args.categories, frame, args.label_col)
    )
    if args.gold is not None:
        gold_path = Path(args.gold)
        if gold_path.exists() and not gold_path.is_file():
            raise ValueError(f"gold file {args.gold!r} is not a file")
    return _run_reporting_warnings(
        lambda: encode_annotations(
            frame,
            item_col=args.item_col,
            annotator_col=args.annotator_col,
            label_col=args.label_col,
            categories=categories,
            gold=args.gold,
        )
    )


def _typed_categories(tokens: list[str], frame: pd.DataFrame, label_col: str) -> list[Any]:
    """Declared categories with the type the label column was read with (CSV ints stay ints)."""
    try:
        name = _pick_column(frame, label_col, (), "label")
    except ValueError:
        return list(tokens)  # the missing column is reported by encode_annotations
    if pd.api.types.is_integer_dtype(frame[name].dtype) or pd.api.types.is_float_dtype(
        frame[name].dtype
    ):
        try:
            return [int(t) for t in tokens]
        except ValueError:
            raise ValueError(
                f"--categories {','.join(tokens)!r}: the label column {name!r} holds integers, "
                "so the categories must be integers"
            ) from None
    return list(tokens)


def _show_progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stdout.isatty()


def _timed_fit(
    model: CrowdModel, data: AnnotationData, args: argparse.Namespace, **how: Any
) -> str:
    """Fit ``model`` with the sampling options of ``args``; return how long it took, in words.

    ``how`` holds the method and seed. The first fit of a model compiles it; later fits reuse
    the compiled code.
    """
    start = time.perf_counter()
    _run_reporting_warnings(
        lambda: model.fit(
            data,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            sampler=args.sampler,
            target_accept=args.target_accept,
            progressbar=_show_progress(args),
            **how,
        )
    )
    seconds = time.perf_counter() - start
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def _write_fit_outputs(result: FitResult, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    labels = result.labels().drop(columns="entropy")
    labels.index.name = "item"
    labels.reset_index().to_csv(out / "labels.csv", index=False)
    annotators = result.annotators()
    annotators.index.name = "annotator"
    annotators.reset_index().to_csv(out / "annotators.csv", index=False)
    prevalence = result.prevalence()
    prevalence.index.name = "category"
    prevalence.reset_index().to_csv(out / "prevalence.csv", index=False)
    written = ["labels.csv", "annotators.csv", "prevalence.csv"]
    if "confusion" in result.summary:  # majority vote has no confusion matrices
        result.confusion().to_csv(out / "confusion.csv", index=False)
        written.append("confusion.csv")
    result.save(out / "fit.nc")
    (out / "summary.txt").write_text(result.summary_text(), encoding="utf-8")
    return [*written, "fit.nc", "summary.txt"]


# ---------------------------------------------------------------------- commands
def _cmd_fit(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_out_dir(out)
    data = _read_data(args)
    model = get_model(args.model)
    took = _timed_fit(
        model,
        data,
        args,
        method=args.method,
        random_seed=args.seed,
        vi_iterations=args.vi_iterations,
    )
    written = _write_fit_outputs(model.result_, out)
    print(model.result_.overview())
    print(f"took {took}; wrote to {out}/: {', '.join(written)}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    if args.method != "nuts":
        raise CommandLineError(
            f"--method {args.method}: a posterior mode has no draws, so PSIS-LOO cannot compare "
            "models; use --method nuts (the default)"
        )
    out = Path(args.out)
    _check_out_dir(out)
    data = _read_data(args)
    size = args.chains * args.draws * data.n_items
    if size > MAX_LOG_LIKELIHOOD_ELEMENTS:
        raise CommandLineError(
            f"chains x draws x items = {size:,} is above {MAX_LOG_LIKELIHOOD_ELEMENTS:,}, the "
            "largest per-item log-likelihood a fit stores; lower --draws or --chains"
        )
    seed = seed_to_int(args.seed)
    models = {name: get_model(name) for name in args.models}
    took = {}
    for name, model in models.items():
        print(f"fitting {name} ...", flush=True)
        took[name] = _timed_fit(model, data, args, method="nuts", random_seed=seed)
    table = compare({name: model.result_ for name, model in models.items()})
    for name, model in models.items():
        _write_fit_outputs(model.result_, out / name)
    table.to_csv(out / "compare.csv", index=False)

    for name, model in models.items():
        print(model.result_.overview())
        print(f"took {took[name]}\n")
    print("PSIS-LOO, leaving out one item with all its labels (best first; higher is better):")
    shown = table.copy()
    shown["warning"] = shown["warning"].replace("", "-")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if (table["warning"] != "").any():
        print(
            "warning: PSIS-LOO is unreliable for the items with high Pareto k; treat those "
            "models' elpd_loo with caution"
        )
    written = ", ".join(f"{name}/" for name in models)
    print(f"wrote to {out}/: compare.csv, {written}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_out_dir(out)
    if args.categories < 2:
        raise ValueError(f"--categories must be at least 2, got {args.categories}")
    seed = seed_to_int(args.seed)
    simulator = (
        simulate_dawid_skene if args.model == "dawid-skene" else simulate_hierarchical_dawid_skene
    )
    sim = simulator(
        n_items=args.items,
        n_annotators=args.annotators,
        n_categories=args.categories,
        labels_per_item=args.labels_per_item,
        random_seed=seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    sim.annotations.to_csv(out / "annotations.csv", index=False)
    sim.true_labels.rename("label").rename_axis("item").reset_index().to_csv(
        out / "truth.csv", index=False
    )
    sim.annotator_accuracy().rename("accuracy").rename_axis("annotator").reset_index().to_csv(
        out / "annotators_truth.csv", index=False
    )
    print(
        f"simulated {args.model}: {len(sim.annotations)} labels, {args.items} items, "
        f"{args.annotators} annotators, {args.categories} categories, seed {seed}"
    )
    print(f"wrote to {out}/: annotations.csv, truth.csv, annotators_truth.csv")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_out_dir(out)
    _run_reporting_warnings(
        lambda: run_demo(
            out,
            items=args.items,
            method=args.method,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            seed=args.seed,
            progressbar=_show_progress(args),
        )
    )
    return 0


# ---------------------------------------------------------------------- entry point
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "fit": _cmd_fit,
    "compare": _cmd_compare,
    "simulate": _cmd_simulate,
    "demo": _cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``crowdbayes`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 on bad input (one ``crowdbayes: error: ...`` line on
        stderr, nothing written).

    Examples
    --------
    >>> main(["--version"])  # doctest: +ELLIPSIS
    crowdbayes ...
    0
    >>> main(["fit", "missing.csv", "--out", "never-created"])
    2
    """
    try:
        args = _build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except CommandLineError as err:
        _err(str(err))
        return 2
    except SystemExit as exit_:  # --help and --version
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    try:
        return _COMMANDS[args.command](args)
    except (CommandLineError, ValueError) as err:
        _err(_one_line(str(err)))
        return 2


def _one_line(message: str) -> str:
    return " ".join(message.split()) if "\n" in message else message


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
