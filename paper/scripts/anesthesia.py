"""The anesthesia data of Dawid & Skene (1979), re-analysed: prevalence and LOO model choice.

Dawid-Skene and class-conditional Dawid-Skene are fitted by NUTS; their prevalence is set
against the maximum-likelihood EM estimate of Dawid & Skene (1979) (``crowdbayes.em`` with flat
priors, and crowd-kit's ``DawidSkene`` as a cross-check) and the posterior means that the R
package rater publishes; the two models are compared by PSIS-LOO (``crowdbayes.compare``) next
to rater's published comparison.

Writes ``tables/anesthesia_prevalence.md``, ``tables/anesthesia_loo.md`` and
``figures/anesthesia_confusion.png``.

Usage::

    python paper/scripts/anesthesia.py
    python paper/scripts/anesthesia.py --draws 200 --tune 200 --chains 2 --out /tmp/paper
"""

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

#: rater's published posterior mean prevalence of the anesthesia data, categories 1-4
#: (Pullin, Gurrin & Vukcevic 2023), as quoted by ``benchmarks/real_data.py``.
RATER_PREVALENCE = (0.376, 0.407, 0.143, 0.074)
#: rater's published PSIS-LOO comparison on the anesthesia data: class-conditional against
#: Dawid-Skene (Pullin, Gurrin & Vukcevic 2023).
RATER_LOO = {"elpd_diff": -11.7, "dse": 3.2}
MODELS = ("dawid-skene", "class-conditional")


def maximum_likelihood(annotations: Any) -> tuple[np.ndarray, Any]:
    """Dawid & Skene's (1979) estimate: EM with flat priors, and crowd-kit's when installed.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray or None)
        The prevalence by ``crowdbayes.em.em_confusion`` with every Dirichlet concentration 1
        (so the mode is the maximum-likelihood estimate), and crowd-kit's ``priors_``.
    """
    from crowdbayes.data import encode_annotations
    from crowdbayes.em import em_confusion

    data = encode_annotations(annotations)
    flat = np.ones((data.n_annotators, data.n_categories, data.n_categories))
    em = em_confusion(data, prevalence_concentration=1.0, confusion_concentration=flat)
    crowdkit = common.import_crowdkit()
    ck = None
    if crowdkit is not None:
        frame = common.crowdkit_frame(annotations)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = crowdkit.DawidSkene(n_iter=100).fit(frame)
        ck = fitted.priors_.reindex(list(data.categories)).to_numpy(dtype=float)
    return em.prevalence, ck


def main(argv: list[str] | None = None) -> int:
    """Fit, compare, write the tables and the figure."""
    from crowdbayes.plots import plot_confusion_grid

    args = common.make_parser(__doc__.splitlines()[0]).parse_args(argv)
    figures, tables = common.output_dirs(args.out)
    loaded = common.load_real("anesthesia")
    if loaded is None:
        return 0
    annotations, _ = loaded
    fits: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for name in MODELS:
        common.log(f"[anesthesia] {name} NUTS")
        model, seconds, messages = common.fit_model(name, annotations, args)
        fits[name] = model
        diag = model.diagnostics_
        notes[name] = (
            f"max R-hat {diag.max_rhat:.3f}, min bulk ESS {diag.min_ess_bulk:.0f}, "
            f"{diag.n_divergent} divergences, {seconds:.0f} s"
        )
    ml, ck = maximum_likelihood(annotations)

    ds = fits["dawid-skene"].prevalence_
    cc = fits["class-conditional"].prevalence_
    rows = []
    for pos, category in enumerate(ds.index):
        row = [str(category)]
        for table in (ds, cc):
            est = table.loc[category]
            row.append(f"{est['mean']:.3f} [{est['low']:.3f}, {est['high']:.3f}]")
        row.append(f"{ml[pos]:.3f}")
        row.append("" if ck is None else f"{ck[pos]:.3f}")
        row.append(f"{RATER_PREVALENCE[pos]:.3f}")
        rows.append(row)
    header = [
        "category",
        "Dawid-Skene (NUTS)",
        "class-conditional (NUTS)",
        "maximum likelihood (EM)",
        "crowd-kit DawidSkene",
        "rater (published)",
    ]
    caption = (
        f"Prevalence of the four categories in the anesthesia data "
        f"({common.describe_data(annotations)}; no gold): posterior mean [94 % equal-tailed "
        "interval] of crowdbayes' Dawid-Skene and class-conditional models; Dawid & Skene's "
        "maximum-likelihood estimate by EM (crowdbayes' EM with flat priors, and crowd-kit's "
        "DawidSkene); rater's published posterior means (Dawid-Skene model). "
        f"NUTS: {common.nuts_settings(args)}; Dawid-Skene: {notes['dawid-skene']}; "
        f"class-conditional: {notes['class-conditional']}."
    )
    common.write_table(tables, "anesthesia_prevalence", header, rows, caption)

    rows = [[*cells, "crowdbayes (this paper)"] for cells in common.loo_rows(fits)]
    rows.append(
        [
            "class-conditional",
            "",
            "",
            common.fmt(RATER_LOO["elpd_diff"], 1),
            common.fmt(RATER_LOO["dse"], 1),
            "",
            "",
            "rater (published), relative to Dawid-Skene",
        ]
    )
    header = [*common.LOO_COLUMNS, "source"]
    caption = (
        "PSIS-LOO on the anesthesia data, leaving out one item with all its labels: expected "
        "log predictive density (elpd_loo, higher is better), its difference from the best "
        "model and the standard error of that difference, effective number of parameters; the "
        f"last row is rater's published comparison. NUTS: {common.nuts_settings(args)}."
    )
    common.write_table(tables, "anesthesia_loo", header, rows, caption)
    common.save_figure(plot_confusion_grid(fits["dawid-skene"]), figures, "anesthesia_confusion")
    return 0


if __name__ == "__main__":
    sys.exit(main())
