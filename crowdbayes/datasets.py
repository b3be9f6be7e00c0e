"""Real crowd-label datasets read from a local folder (never downloaded).

Each dataset is a folder ``<data_home>/<name>/`` holding ``annotations.csv`` (columns
``item,annotator,label``, one row per label given), optionally ``gold.csv`` (``item,label``) and
``SOURCE.md`` (provenance and licence). crowdbayes ships no data and downloads none: point the
environment variable ``CROWDBAYES_DATA`` at the folder that holds the dataset folders.

Examples
--------
>>> names = list_datasets()  # [] when no data folder is found
>>> if "rte" in names:
...     annotations, gold = load_dataset("rte")
...     assert list(annotations.columns) == ["item", "annotator", "label"]
"""

import os
from pathlib import Path
from typing import Any

import pandas as pd

from crowdbayes.data import read_annotations, read_gold

__all__ = ["DATA_ENV_VAR", "data_home", "list_datasets", "load_dataset"]

#: Environment variable naming the folder that holds the dataset folders.
DATA_ENV_VAR = "CROWDBAYES_DATA"

_ANNOTATIONS = "annotations.csv"
_GOLD = "gold.csv"


def _repository_root() -> Path | None:
    """The folder above the package when it sits in a source checkout (has pyproject.toml)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def data_home() -> Path:
    """The folder where datasets are looked for.

    In order: the environment variable ``CROWDBAYES_DATA``; else ``../shared/datasets``
    relative to the source checkout that contains the package (the folder holding
    ``pyproject.toml``); else ``../shared/datasets`` relative to the current directory. The
    folder need not exist.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import os
    >>> home = data_home()
    >>> home.is_absolute() or "CROWDBAYES_DATA" in os.environ
    True
    """
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    root = _repository_root()
    if root is not None:
        candidate = root.parent / "shared" / "datasets"
        if candidate.is_dir():
            return candidate
    return (Path.cwd().parent / "shared" / "datasets").resolve()


def list_datasets() -> list[str]:
    """Names of the datasets found under :func:`data_home` (folders with annotations.csv).

    Returns
    -------
    list of str
        Sorted; empty when the folder is absent.

    Examples
    --------
    >>> names = list_datasets()
    >>> names == sorted(names)
    True
    """
    home = data_home()
    if not home.is_dir():
        return []
    return sorted(p.name for p in home.iterdir() if (p / _ANNOTATIONS).is_file())


def load_dataset(name: str) -> "tuple[pd.DataFrame, pd.Series[Any] | None]":
    """Read a dataset's annotations and gold labels.

    Parameters
    ----------
    name : str
        Folder name under :func:`data_home` (see :func:`list_datasets`), e.g. ``"rte"``.

    Returns
    -------
    annotations : pandas.DataFrame
        Columns ``item``, ``annotator``, ``label``, one row per label given (repeated labels
        by one annotator on one item are kept: they are data).
    gold : pandas.Series or None
        Gold label per item (indexed by ``item``), or None when the dataset has no gold.csv.

    Raises
    ------
    ValueError
        When the dataset folder or its annotations.csv is absent, saying where it looked and
        how to set ``CROWDBAYES_DATA``.

    Examples
    --------
    >>> if "anesthesia" in list_datasets():
    ...     annotations, gold = load_dataset("anesthesia")
    ...     assert gold is None and len(annotations) == 315
    >>> load_dataset("no-such-dataset")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: dataset 'no-such-dataset' not found: ...
    """
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ValueError(f"dataset name must be a plain folder name, not {name!r}")
    home = data_home()
    folder = home / name
    path = folder / _ANNOTATIONS
    if not path.is_file():
        available = list_datasets()
        found = (
            f"datasets there: {', '.join(available)}"
            if available
            else ("that folder does not exist" if not home.is_dir() else "it holds no dataset")
        )
        source = (
            f"from ${DATA_ENV_VAR}" if os.environ.get(DATA_ENV_VAR) else f"${DATA_ENV_VAR} unset"
        )
        raise ValueError(
            f"dataset {name!r} not found: no {path} ({source}; {found}). crowdbayes downloads "
            f"nothing: set {DATA_ENV_VAR} to the folder holding <name>/{_ANNOTATIONS}"
        )
    annotations = read_annotations(path)
    missing = {"item", "annotator", "label"} - set(annotations.columns)
    if missing:
        raise ValueError(f"{path} lacks column(s) {sorted(missing)}")
    gold_path = folder / _GOLD
    gold = read_gold(gold_path) if gold_path.is_file() else None
    return annotations, gold
