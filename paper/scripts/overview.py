"""The models' default priors and the datasets' sizes, read from the package and the data.

No sampling. Writes ``tables/priors.md`` (each Bayesian model's default prior settings, as its
priors class defines them) and ``tables/datasets.md`` (items, annotators, labels, categories
and gold of every shared dataset found).

Usage::

    python paper/scripts/overview.py [--out DIR]
"""

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

#: The symbols of the paper's equations that each prior setting fills.
SYMBOLS = {
    "prevalence": r"$a_\pi$",
    "pseudo_count": r"$S$",
    "prior_accuracy": r"$a$",
    "accuracy_alpha": r"$a_0$",
    "accuracy_beta": r"$b_0$",
    "error_mean_sd": r"$s_0$",
    "competence_mean_sd": r"$s_0$",
    "ability_mean_sd": r"$s_0$",
    "error_scale": r"$s_1$",
    "competence_scale": r"$s_1$",
    "ability_scale": r"$s_1$",
    "competence_mean_location": r"$m_0$",
    "ability_mean_location": r"$m_0$",
    "spam_distribution": r"$a_\xi$",
}
ITEM_SCALE_SYMBOL = {"item-difficulty": r"$s_1$"}
SOURCES = {
    "anesthesia": "@dawid1979maximum, via rater [@pullin2023rater]",
    "rte": "@snow2008cheap",
    "temp": "@snow2008cheap",
    "sp_amt": "@venanzi2015activecrowdtoolkit",
}


def symbol(model: str, field: str) -> str:
    """The equation symbol of a prior setting."""
    if field == "item_scale":
        return ITEM_SCALE_SYMBOL.get(model, r"$s_2$")
    return SYMBOLS.get(field, "")


def priors_table(tables: Path) -> None:
    """Default prior settings of every Bayesian model."""
    from crowdbayes.estimators import BayesianCrowdModel
    from crowdbayes.models import MODELS

    rows = []
    for name, cls in MODELS.items():
        if not issubclass(cls, BayesianCrowdModel):
            continue
        settings = cls.priors_class().to_dict()
        cells = []
        for field, value in settings.items():
            if value is None:
                continue
            sym = symbol(name, field)
            cells.append(f"`{field}` = {value:g}" + (f" ({sym})" if sym else ""))
        rows.append([name, f"`{cls.__name__}`", "; ".join(cells)])
    caption = (
        "Default priors of the Bayesian models: the fields of each model's priors class (and "
        "the symbol they set in the equations). Dawid-Skene's confusion rows have Dirichlet "
        "concentration `pseudo_count` times `prior_accuracy` on the diagonal and the rest "
        "spread evenly; hierarchical Dawid-Skene, item difficulty and logistic random effects "
        "centre the wrong-label log-odds at "
        r"$m_0 = \log\frac{1 - a}{a (K - 1)}$; "
        "MACE and GLAD set the location $m_0$ of the mean competence or ability directly."
    )
    common.write_table(tables, "priors", ["model", "estimator", "default priors"], rows, caption)


def datasets_table(tables: Path) -> None:
    """Sizes of the shared datasets."""
    from crowdbayes.datasets import data_home, list_datasets, load_dataset

    rows: list[list[Any]] = []
    for name in list_datasets():
        annotations, gold = load_dataset(name)
        n_items = annotations["item"].nunique()
        pairs = annotations.groupby(["item", "annotator"]).size()
        rows.append(
            [
                name,
                str(n_items),
                str(annotations["annotator"].nunique()),
                str(len(annotations)),
                str(annotations["label"].nunique()),
                f"{len(annotations) / n_items:.1f}",
                "0" if gold is None else str(len(gold)),
                str(int((pairs - 1).sum())),
                SOURCES.get(name, ""),
            ]
        )
    if not rows:
        common.log(f"skipped: no dataset under {data_home()}")
    header = [
        "dataset",
        "items",
        "annotators",
        "labels",
        "categories",
        "labels per item",
        "gold items",
        "repeated labels",
        "source",
    ]
    caption = (
        "The real datasets. Repeated labels: labels beyond the first that one annotator gave "
        "one item."
    )
    common.write_table(tables, "datasets", header, rows, caption)


def main(argv: list[str] | None = None) -> int:
    """Write both tables."""
    args = common.make_parser(__doc__.splitlines()[0]).parse_args(argv)
    _, tables = common.output_dirs(args.out)
    priors_table(tables)
    datasets_table(tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
