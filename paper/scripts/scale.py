"""Speed at two small scales: Dawid-Skene by NUTS and by MAP, and crowd-kit's DawidSkene EM.

Dawid-Skene data are simulated at each size (5 labels per item, three categories; 20
annotators at 2,500 labels, 50 at 25,000, as in ``benchmarks/speed.py``, which measures much
more: ESS per second, leapfrog steps, memory, NumPyro). Every method runs on the same data in
this one process: crowdbayes ``DawidSkene().fit`` by NUTS (wall time split into setup, i.e. EM,
model building and compilation, sampling, and the summary of label probabilities, as the fit
records them) and by MAP, and crowd-kit's ``DawidSkene`` EM. Accuracy is against the simulated
true labels.

Writes ``tables/scale.md``.

Usage::

    python paper/scripts/scale.py
    python paper/scripts/scale.py --sizes 500 --draws 100 --tune 100 --chains 2 --out /tmp/paper
"""

import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

LABELS_PER_ITEM = 5
N_CATEGORIES = 3
ANNOTATORS = {2_500: 20, 25_000: 50}


def parse_args(argv: list[str] | None) -> Any:
    """The command line."""
    parser = common.make_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=sorted(ANNOTATORS),
        help="numbers of labels (2500 25000)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Simulate each size, time each method, write the table."""
    import crowdbayes as cb
    from crowdbayes.metrics import accuracy

    args = parse_args(argv)
    _, tables = common.output_dirs(args.out)
    crowdkit = common.import_crowdkit()
    rows = []
    for size in args.sizes:
        n_annotators = ANNOTATORS.get(size, max(20, size // 500))
        sim = cb.simulate_dawid_skene(
            n_items=size // LABELS_PER_ITEM,
            n_annotators=n_annotators,
            n_categories=N_CATEGORIES,
            labels_per_item=LABELS_PER_ITEM,
            random_seed=args.seed,
        )
        design = [
            str(len(sim.annotations)),
            str(sim.annotations["item"].nunique()),
            str(n_annotators),
        ]
        for method in ("nuts", "map"):
            common.log(f"[{size} labels] crowdbayes dawid-skene {method}")
            model, seconds, _ = common.fit_model("dawid-skene", sim.annotations, args, method)
            attrs = model.datatree_.attrs
            if method == "nuts":
                label = f"crowdbayes DawidSkene, {args.sampler} NUTS"
                ess = model.diagnostics_.min_ess_bulk
                parts = [
                    common.fmt(attrs.get("setup_seconds"), 1),
                    common.fmt(attrs.get("sampling_seconds"), 1),
                    common.fmt(attrs.get("summary_seconds"), 1),
                    common.fmt(ess, 0),
                    common.fmt(ess / float(attrs["sampling_seconds"]), 0),
                ]
            else:
                label = "crowdbayes DawidSkene, MAP"
                parts = ["", "", "", "", ""]
            acc = accuracy(model.labels_["label"], sim.true_labels)
            rows.append([*design, label, common.fmt(seconds, 1), *parts, common.fmt(acc, 3)])
        if crowdkit is not None:
            common.log(f"[{size} labels] crowd-kit DawidSkene")
            frame = common.crowdkit_frame(sim.annotations)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                labels = crowdkit.DawidSkene(n_iter=100).fit_predict(frame)
            seconds = time.perf_counter() - start
            acc = accuracy(labels, sim.true_labels)
            rows.append(
                [*design, "crowd-kit DawidSkene (EM)", common.fmt(seconds, 1)]
                + ["", "", "", "", ""]
                + [common.fmt(acc, 3)]
            )
    header = [
        "labels",
        "items",
        "annotators",
        "method",
        "wall (s)",
        "setup (s)",
        "sampling (s)",
        "summary (s)",
        "min ESS",
        "ESS / sampling s",
        "accuracy",
    ]
    caption = (
        f"Wall time of Dawid-Skene at two sizes (simulated, {LABELS_PER_ITEM} labels per item, "
        f"{N_CATEGORIES} categories), all methods on the same data in one process. NUTS wall "
        "time includes setup (EM start, model building, compilation), sampling and the "
        "summary of label probabilities over the draws; min ESS is the smallest bulk effective "
        "sample size over prevalence and confusion; accuracy is against the simulated true "
        f"labels. NUTS: {common.nuts_settings(args)}. {common.environment()}."
    )
    common.write_table(tables, "scale", header, rows, caption)
    return 0


if __name__ == "__main__":
    sys.exit(main())
