"""Validation and integer encoding of crowd annotations.

Everything a model needs from the user's table goes through :func:`encode_annotations`: one row
per label given (``item``, ``annotator``, ``label``), validated up front, encoded once to integer
codes. The user's ids and label values are kept as coordinates, so results are labelled with them.
"""

import os
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "AnnotationData",
    "encode_annotations",
    "read_annotations",
    "read_gold",
]

#: Column names crowd-kit uses, accepted at the boundary when the default names are absent.
CROWDKIT_COLUMNS = {"item": "task", "annotator": "worker", "label": "label"}

#: What :func:`read_gold` accepts.
type GoldLike = "pd.DataFrame | pd.Series[Any] | Mapping[Any, Any] | str | os.PathLike[str]"

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min


@dataclass(frozen=True, eq=False)
class AnnotationData:
    """Crowd annotations encoded to integer codes, sorted by item.

    Build it with :func:`encode_annotations`; the constructor does no validation.

    Attributes
    ----------
    item_index, annotator_index, label_index : numpy.ndarray of int64
        One entry per annotation (label given), sorted by item. Codes index ``items``,
        ``annotators`` and ``categories``.
    items, annotators, categories : pandas.Index
        The user's item ids, annotator ids and label values, in code order.
    gold_index : numpy.ndarray of int64
        Per item, the code of its known true category, or -1 where it is unknown.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"item": [1, 1, 2, 2], "annotator": ["a", "b", "a", "b"],
    ...                    "label": ["cat", "dog", "dog", "dog"]})
    >>> data = encode_annotations(df)
    >>> data.n_items, data.n_annotators, data.n_categories, data.n_annotations
    (2, 2, 2, 4)
    >>> list(data.categories)
    ['cat', 'dog']
    """

    item_index: np.ndarray
    annotator_index: np.ndarray
    label_index: np.ndarray
    items: pd.Index
    annotators: pd.Index
    categories: pd.Index
    gold_index: np.ndarray
    column_names: dict[str, str] = field(
        default_factory=lambda: {"item": "item", "annotator": "annotator", "label": "label"}
    )

    @property
    def n_items(self) -> int:
        """Number of distinct items."""
        return len(self.items)

    @property
    def n_annotators(self) -> int:
        """Number of distinct annotators."""
        return len(self.annotators)

    @property
    def n_categories(self) -> int:
        """Number of categories (declared or observed)."""
        return len(self.categories)

    @property
    def n_annotations(self) -> int:
        """Number of labels given (rows of the long table)."""
        return len(self.item_index)

    @property
    def n_gold(self) -> int:
        """Number of items whose true category is known."""
        return int((self.gold_index >= 0).sum())

    @cached_property
    def compressed(self) -> "CompressedAnnotations":
        """Collapse identical (item, annotator, label) rows into counts.

        Repeated labels by one annotator on one item are data: they enter the likelihood once
        each, as a count. The likelihood is evaluated over these unique rows.

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"item": [1, 1, 1, 2], "annotator": ["a", "a", "b", "b"],
        ...                    "label": [0, 0, 1, 1]})
        >>> c = encode_annotations(df).compressed
        >>> c.count.tolist()
        [2, 1, 1]
        """
        key = np.stack([self.item_index, self.annotator_index, self.label_index], axis=1)
        unique, count = np.unique(key, axis=0, return_counts=True)
        return CompressedAnnotations(
            item_index=unique[:, 0].copy(),
            annotator_index=unique[:, 1].copy(),
            label_index=unique[:, 2].copy(),
            count=count.astype(np.int64),
            n_items=self.n_items,
        )

    def to_frame(self) -> pd.DataFrame:
        """Return the annotations as a long DataFrame with the user's ids and labels.

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"item": [2, 1], "annotator": ["a", "b"], "label": [0, 1]})
        >>> encode_annotations(df).to_frame().columns.tolist()
        ['item', 'annotator', 'label']
        """
        return pd.DataFrame(
            {
                "item": self.items[self.item_index],
                "annotator": self.annotators[self.annotator_index],
                "label": self.categories[self.label_index],
            }
        )


@dataclass(frozen=True, eq=False)
class CompressedAnnotations:
    """Unique (item, annotator, label) rows with their counts, sorted by item.

    Attributes
    ----------
    item_index, annotator_index, label_index : numpy.ndarray of int64
        Codes of each unique row.
    count : numpy.ndarray of int64
        How many times each row was given.
    n_items : int
        Number of items (every item has at least one row).
    """

    item_index: np.ndarray
    annotator_index: np.ndarray
    label_index: np.ndarray
    count: np.ndarray
    n_items: int

    @property
    def item_starts(self) -> np.ndarray:
        """Offset of each item's first row (rows are sorted by item)."""
        return np.searchsorted(self.item_index, np.arange(self.n_items))


def read_annotations(path: str | os.PathLike[str], **read_csv_kwargs: Any) -> pd.DataFrame:
    """Read a CSV of annotations, raising a clear error when the file is missing or unreadable.

    Parameters
    ----------
    path : str or path-like
        CSV file, one row per label given.
    **read_csv_kwargs
        Passed to :func:`pandas.read_csv`.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
    >>> _ = p.write_text("item,annotator,label\\n1,a,0\\n1,b,1\\n")
    >>> read_annotations(p).shape
    (2, 3)
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"annotation file not found: {path!r}")
    try:
        return pd.read_csv(path, **read_csv_kwargs)
    except pd.errors.EmptyDataError:
        raise ValueError(f"annotation file {path!r} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"annotation file {path!r} could not be parsed as CSV: {err}") from None


def read_gold(
    gold: "pd.DataFrame | pd.Series[Any] | Mapping[Any, Any] | str | os.PathLike[str]",
    *,
    item_col: str = "item",
    label_col: str = "label",
) -> "pd.Series[Any]":
    """Read gold (known true) labels into a Series indexed by item id.

    Parameters
    ----------
    gold : DataFrame, Series, mapping or path
        A table with columns ``item`` and ``label`` (crowd-kit's ``task``/``true_label`` and
        ``task``/``label`` are also accepted), a Series indexed by item, a ``{item: label}``
        mapping, or the path of such a CSV.
    item_col, label_col : str
        Column names in a table.

    Returns
    -------
    pandas.Series
        Gold label per item, named ``label``, indexed by ``item``.

    Examples
    --------
    >>> read_gold({"a": 1, "b": 0}).to_dict()
    {'a': 1, 'b': 0}
    """
    if isinstance(gold, str | os.PathLike):
        path = os.fspath(gold)
        if not os.path.exists(path):
            raise ValueError(f"gold file not found: {path!r}")
        gold = pd.read_csv(path)
    if isinstance(gold, Mapping):
        gold = pd.Series(dict(gold))
    if isinstance(gold, pd.Series):
        series = gold.copy()
    elif isinstance(gold, pd.DataFrame):
        item_name = _pick_column(
            gold, item_col, ("task",) if item_col == "item" else (), "gold item"
        )
        label_name = _pick_column(
            gold, label_col, ("true_label",) if label_col == "label" else (), "gold label"
        )
        series = pd.Series(gold[label_name].to_numpy(), index=gold[item_name].to_numpy())
    else:
        raise ValueError(
            "gold labels must be a DataFrame, Series, mapping or CSV path, "
            f"not {type(gold).__name__}"
        )
    if series.isna().any():
        raise ValueError(f"gold labels contain {int(series.isna().sum())} missing value(s)")
    if pd.isna(series.index).any():
        raise ValueError("gold labels contain missing item ids")
    dup = series.index.duplicated(keep=False)
    if dup.any():
        conflicting = series[dup].groupby(level=0).nunique()
        conflicting = conflicting[conflicting > 1]
        if len(conflicting):
            raise ValueError(
                "gold labels disagree for item(s) "
                f"{list(conflicting.index[:5])}: each item may have one gold label"
            )
        series = series[~series.index.duplicated(keep="first")]
    series.index.name = "item"
    series.name = "label"
    return series


def encode_annotations(
    data: "pd.DataFrame | str | os.PathLike[str]",
    *,
    item_col: str = "item",
    annotator_col: str = "annotator",
    label_col: str = "label",
    categories: Sequence[Hashable] | None = None,
    gold: "GoldLike | None" = None,
) -> AnnotationData:
    """Validate crowd annotations and encode them to integer codes.

    Parameters
    ----------
    data : pandas.DataFrame or path
        One row per label given. A path is read as CSV.
    item_col, annotator_col, label_col : str
        Column names. When the defaults are absent, crowd-kit's ``task`` and ``worker`` are
        accepted in their place.
    categories : sequence, optional
        The full set of categories, in the order to use. Labels outside it are an error.
        Default: the sorted distinct labels in ``data``.
    gold : DataFrame, Series, mapping or path, optional
        Known true labels for some items (see :func:`read_gold`). They enter the models as
        observed true labels. Gold for items without annotations is ignored with a warning.

    Returns
    -------
    AnnotationData

    Raises
    ------
    ValueError
        With a message naming the problem: missing columns, missing values, empty data, fewer
        than two categories or annotators, labels outside ``categories``, unusable id types.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"task": ["t1", "t1", "t2"], "worker": ["w1", "w2", "w1"],
    ...                    "label": ["yes", "no", "yes"]})
    >>> data = encode_annotations(df, gold={"t2": "yes"})
    >>> data.n_items, data.n_gold
    (2, 1)
    >>> encode_annotations(df.drop(columns="label"))
    Traceback (most recent call last):
    ...
    ValueError: missing column 'label' (columns present: 'task', 'worker')
    """
    if isinstance(data, str | os.PathLike):
        data = read_annotations(data)
    if not isinstance(data, pd.DataFrame):
        raise ValueError(
            f"annotations must be a pandas DataFrame or a CSV path, not {type(data).__name__}"
        )
    # crowd-kit's names stand in only for the default names, never for a name the user gave.
    item_name = _pick_column(
        data, item_col, (CROWDKIT_COLUMNS["item"],) if item_col == "item" else (), "item"
    )
    annotator_name = _pick_column(
        data,
        annotator_col,
        (CROWDKIT_COLUMNS["annotator"],) if annotator_col == "annotator" else (),
        "annotator",
    )
    label_name = _pick_column(data, label_col, (), "label")
    if len(data) == 0:
        raise ValueError("annotations are empty: at least one row (item, annotator, label) needed")
    for role, name in (("item", item_name), ("annotator", annotator_name), ("label", label_name)):
        n_missing = int(data[name].isna().sum())
        if n_missing:
            first = data.index[data[name].isna().to_numpy()][0]
            raise ValueError(
                f"column {name!r} ({role}) has {n_missing} missing value(s), first at row {first!r}"
            )

    item_values = _clean_values(data[item_name], name=item_name, role="item id")
    annotator_values = _clean_values(data[annotator_name], name=annotator_name, role="annotator id")
    label_values = _clean_values(data[label_name], name=label_name, role="label")

    if categories is None:
        category_index = _sorted_index(pd.unique(label_values))
    else:
        declared = _clean_values(
            pd.Series(list(categories)), name="categories", role="declared category"
        )
        if declared.duplicated().any():
            raise ValueError(
                f"declared categories repeat a value: {list(declared[declared.duplicated()])}"
            )
        category_index = pd.Index(declared.to_numpy())
    if len(category_index) < 2:
        raise ValueError(
            f"fewer than two categories ({list(category_index)}): crowd label aggregation needs at "
            "least two; declare the full set with categories=[...] if the data show only one"
        )
    label_codes = category_index.get_indexer(pd.Index(label_values))
    if (label_codes < 0).any():
        unknown = pd.unique(label_values[label_codes < 0])
        raise ValueError(
            f"labels outside the declared categories {list(category_index)}: {_plain(unknown[:10])}"
        )

    item_codes, item_index = pd.factorize(item_values, sort=True)
    annotator_codes, annotator_index = pd.factorize(annotator_values, sort=True)
    if len(annotator_index) < 2:
        raise ValueError(
            f"only one annotator ({annotator_index[0]!r}): annotator reliability cannot be told "
            "apart from the true labels with fewer than two annotators"
        )

    order = np.argsort(item_codes, kind="stable")
    gold_index = np.full(len(item_index), -1, dtype=np.int64)
    if gold is not None:
        gold_series = read_gold(gold)
        gold_items = _clean_values(
            pd.Series(gold_series.index.to_numpy()), name="gold item", role="gold item id"
        )
        gold_labels = _clean_values(
            pd.Series(gold_series.to_numpy()), name="gold label", role="gold label"
        )
        gold_codes = category_index.get_indexer(pd.Index(gold_labels))
        if (gold_codes < 0).any():
            unknown = pd.unique(gold_labels[gold_codes < 0])
            raise ValueError(
                f"gold labels outside the categories {list(category_index)}: {_plain(unknown[:10])}"
            )
        positions = item_index.get_indexer(pd.Index(gold_items))
        n_unmatched = int((positions < 0).sum())
        if n_unmatched == len(positions):
            raise ValueError("no gold item matches an annotated item id; check the item ids")
        if n_unmatched:
            warnings.warn(
                f"{n_unmatched} gold item(s) have no annotations and are ignored",
                UserWarning,
                stacklevel=2,
            )
        gold_index[positions[positions >= 0]] = gold_codes[positions >= 0]

    return AnnotationData(
        item_index=item_codes[order].astype(np.int64),
        annotator_index=annotator_codes[order].astype(np.int64),
        label_index=label_codes[order].astype(np.int64),
        items=_coord_index(item_index, "item"),
        annotators=_coord_index(annotator_index, "annotator"),
        categories=_coord_index(category_index, "category"),
        gold_index=gold_index,
        column_names={"item": item_name, "annotator": annotator_name, "label": label_name},
    )


def _pick_column(data: pd.DataFrame, wanted: str, alternatives: Sequence[str], role: str) -> str:
    if wanted in data.columns:
        return wanted
    for alt in alternatives:
        if alt in data.columns:
            return alt
    present = ", ".join(repr(str(c)) for c in data.columns) or "none"
    also = f" (or {', '.join(repr(a) for a in alternatives)})" if alternatives else ""
    raise ValueError(f"missing column {wanted!r}{also} (columns present: {present})")


def _clean_values(values: "pd.Series[Any]", *, name: str, role: str) -> "pd.Series[Any]":
    """Check that ids or labels are integers or strings; return them with a uniform type."""
    values = values.reset_index(drop=True)
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        values = values.astype(object)
        dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return values.astype(np.int64)
    if pd.api.types.is_integer_dtype(dtype):
        return values.astype(np.int64) if dtype.kind == "i" else _checked_unsigned(values, name)
    if pd.api.types.is_float_dtype(dtype):
        arr = values.to_numpy(dtype=float)
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise ValueError(
                f"column {name!r} ({role}s) holds non-integer numbers such as "
                f"{arr[bad][:3].tolist()}: {role}s must be integers or strings"
            )
        if arr.max() > _INT64_MAX or arr.min() < _INT64_MIN:
            raise ValueError(f"column {name!r} ({role}s) holds numbers too large for an id")
        return pd.Series(arr.astype(np.int64))
    if pd.api.types.is_string_dtype(dtype) or dtype.kind == "O":
        kinds = {_value_kind(v) for v in values}
        if "other" in kinds:
            bad = next(v for v in values if _value_kind(v) == "other")
            raise ValueError(
                f"column {name!r} ({role}s) holds a value of type {type(bad).__name__} "
                f"({bad!r}): {role}s must be integers or strings"
            )
        if kinds == {"str"}:
            return values.astype(str).astype(object)
        if kinds == {"int"}:
            ints = [int(v) for v in values]
            if max(ints) > _INT64_MAX or min(ints) < _INT64_MIN:
                # Beyond 64 bits: keep them exact as strings.
                return pd.Series([str(v) for v in ints], dtype=object)
            return pd.Series(np.asarray(ints, dtype=np.int64))
        raise ValueError(
            f"column {name!r} ({role}s) mixes integers and strings; use one type so that "
            "equal ids compare equal"
        )
    raise ValueError(f"column {name!r} ({role}s) has unsupported type {dtype}")


def _checked_unsigned(values: "pd.Series[Any]", name: str) -> "pd.Series[Any]":
    arr = values.to_numpy()
    if arr.max() > _INT64_MAX:
        return pd.Series([str(v) for v in arr.tolist()], dtype=object)
    return pd.Series(arr.astype(np.int64))


def _plain(values: Any) -> list[Any]:
    """Values as plain Python objects, for readable error messages."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _value_kind(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "other"
    if isinstance(value, str):
        return "str"
    if isinstance(value, int | np.integer):
        return "int"
    return "other"


def _sorted_index(values: Any) -> pd.Index:
    try:
        return pd.Index(sorted(values))
    except TypeError:
        return pd.Index(list(values))


def _coord_index(index: pd.Index, name: str) -> pd.Index:
    out = pd.Index(index.to_numpy(), name=name)
    if out.dtype == object:
        out = pd.Index([str(v) for v in out], dtype=object, name=name)
    return out
