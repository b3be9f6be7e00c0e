"""The data contract: validation messages, encoding, gold, round trips."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import load_real

from crowdbayes.data import AnnotationData, encode_annotations, read_annotations, read_gold


@pytest.fixture
def frame() -> pd.DataFrame:
    """Three items, three annotators, labels 0/1, in no particular order."""
    return pd.DataFrame(
        {
            "item": [3, 1, 2, 1, 3, 2, 1],
            "annotator": ["b", "a", "a", "b", "c", "c", "c"],
            "label": [1, 0, 1, 0, 1, 0, 1],
        }
    )


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (
            ["item"],
            r"missing column 'item' \(or 'task'\) \(columns present: 'annotator', 'label'\)",
        ),
        (["annotator"], r"missing column 'annotator' \(or 'worker'\)"),
        (["label"], r"missing column 'label' \(columns present: 'item', 'annotator'\)"),
        (["item", "annotator", "label"], r"missing column 'item'.*columns present: none"),
    ],
)
def test_missing_columns_are_named(frame: pd.DataFrame, drop: list[str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        encode_annotations(frame.drop(columns=drop))


def test_missing_custom_column_is_named(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"missing column 'question'.*'item', 'annotator'"):
        encode_annotations(frame, item_col="question")


def test_empty_frame(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="annotations are empty"):
        encode_annotations(frame.iloc[:0])


@pytest.mark.parametrize("column", ["item", "annotator", "label"])
def test_nulls_in_each_column(frame: pd.DataFrame, column: str) -> None:
    bad = frame.astype({column: object})
    bad.loc[4, column] = None
    bad.loc[5, column] = np.nan
    with pytest.raises(
        ValueError,
        match=rf"column '{column}' \({column}\) has 2 missing value\(s\), first at row 4",
    ):
        encode_annotations(bad)


@pytest.mark.parametrize(
    ("column", "row", "value", "named"),
    [
        ("label", 2, np.nan, r"column 'label' \(label\) has 1 missing value"),
        # An infinite id is not an integer; the message must show the offending value.
        ("item", 0, np.inf, r"'item' \(item ids\) holds non-integer .*inf"),
    ],
    ids=["nan-label", "infinite-item-id"],
)
def test_non_finite_value_in_a_float_column(
    frame: pd.DataFrame, column: str, row: int, value: float, named: str
) -> None:
    bad = frame.astype({column: float})
    bad.loc[row, column] = value
    with pytest.raises(ValueError, match=named):
        encode_annotations(bad)


def test_one_category_only_and_declaring_two_fixes_it(frame: pd.DataFrame) -> None:
    same = frame.assign(label="yes")
    with pytest.raises(ValueError, match=r"fewer than two categories \(\['yes'\]\).*categories="):
        encode_annotations(same)
    data = encode_annotations(same, categories=["no", "yes"])
    assert list(data.categories) == ["no", "yes"]
    assert data.n_categories == 2
    assert set(data.label_index.tolist()) == {1}


def test_one_declared_category_is_rejected(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="fewer than two categories"):
        encode_annotations(frame.assign(label=1), categories=[1])


def test_labels_outside_declared_categories_are_named(frame: pd.DataFrame) -> None:
    with pytest.raises(
        ValueError, match=r"labels outside the declared categories \[1, 2\]: \[0\]$"
    ):
        encode_annotations(frame, categories=[1, 2])
    with pytest.raises(ValueError, match=r"outside the declared categories \['x', 'y'\]: \['z'\]"):
        encode_annotations(frame.assign(label=["x", "y", "z", "x", "y", "x", "y"]), categories="xy")


def test_repeated_declared_category(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"declared categories repeat a value: \[1\]"):
        encode_annotations(frame, categories=[0, 1, 1])


def test_one_annotator(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"only one annotator \('solo'\)"):
        encode_annotations(frame.assign(annotator="solo"))


@pytest.mark.parametrize(
    ("column", "values", "named"),
    [
        (
            "item",
            [1.5, 1.0, 2.0, 1.0, 1.5, 2.0, 1.0],
            r"'item' \(item ids\) holds non-integer .*1\.5",
        ),
        ("annotator", [0.25] * 7, r"'annotator' \(annotator ids\) holds non-integer .*0\.25"),
        (
            "label",
            [0.0, 0.5, 1.0, 0.0, 1.0, 0.0, 1.0],
            r"'label' \(labels\) holds non-integer.*0\.5",
        ),
        (
            "item",
            [[1], [1], [2], [1], [1], [2], [1]],
            r"'item' \(item ids\) holds .* list \(\[1\]\)",
        ),
        ("annotator", [{"a": 1}] * 7, r"'annotator' \(annotator ids\) holds .* type dict"),
        ("item", [1, "1", 2, 1, 1, 2, "1"], r"'item' \(item ids\) mixes integers and strings"),
        (
            "annotator",
            ["a", 1, "a", 1, "b", "b", "a"],
            r"'annotator' .* mixes integers and strings",
        ),
        ("item", [True, 1, 2, 1, 1, 2, 1], r"'item' \(item ids\) holds a value of type bool"),
        ("item", [b"x", b"y", b"x", b"y", b"x", b"y", b"x"], r"'item' .* type bytes"),
    ],
)
def test_unusable_id_types(frame: pd.DataFrame, column: str, values: list[Any], named: str) -> None:
    bad = frame.copy()
    bad[column] = pd.Series(values, dtype=object if not isinstance(values[0], float) else float)
    with pytest.raises(ValueError, match=named):
        encode_annotations(bad)


def test_float_ids_that_are_integers_are_accepted(frame: pd.DataFrame) -> None:
    data = encode_annotations(frame.astype({"item": float}))
    assert data.items.dtype == np.int64
    assert list(data.items) == [1, 2, 3]


@pytest.mark.parametrize("value", [[1, 2, 3], {"item": [1]}, np.zeros((3, 3)), None, 42])
def test_non_dataframe_input(value: Any) -> None:
    with pytest.raises(ValueError, match="annotations must be a pandas DataFrame or a CSV path"):
        encode_annotations(value)


def test_missing_csv_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(ValueError, match=r"annotation file not found: .*nope\.csv"):
        encode_annotations(path)
    with pytest.raises(ValueError, match="annotation file not found"):
        encode_annotations(str(path))


def test_empty_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(ValueError, match=r"annotation file .*empty\.csv' is empty"):
        encode_annotations(path)
    header_only = tmp_path / "header.csv"
    header_only.write_text("item,annotator,label\n")
    with pytest.raises(ValueError, match="annotations are empty"):
        encode_annotations(header_only)


def test_conflicting_gold_labels(frame: pd.DataFrame) -> None:
    gold = pd.DataFrame({"item": [1, 1, 2], "label": [0, 1, 1]})
    with pytest.raises(ValueError, match=r"gold labels disagree for item\(s\) \[1\]"):
        encode_annotations(frame, gold=gold)


def test_repeated_but_agreeing_gold_is_accepted(frame: pd.DataFrame) -> None:
    gold = pd.DataFrame({"item": [1, 1, 2], "label": [0, 0, 1]})
    assert encode_annotations(frame, gold=gold).gold_index.tolist() == [0, 1, -1]


def test_gold_label_outside_categories(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"gold labels outside the categories \[0, 1\]: \[5\]$"):
        encode_annotations(frame, gold={1: 5})


def test_gold_with_no_matching_item(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="no gold item matches an annotated item id"):
        encode_annotations(frame, gold={99: 0, 98: 1})
    # Ids of another type never match silently.
    with pytest.raises(ValueError, match="no gold item matches"):
        encode_annotations(frame, gold={"1": 0})


def test_gold_partly_unmatched_warns_and_keeps_the_rest(frame: pd.DataFrame) -> None:
    with pytest.warns(UserWarning, match=r"1 gold item\(s\) have no annotations and are ignored"):
        data = encode_annotations(frame, gold={99: 0, 2: 1})
    assert data.gold_index.tolist() == [-1, 1, -1]


@pytest.mark.parametrize(
    ("gold", "named"),
    [
        ({1: None}, r"gold labels contain 1 missing value"),
        (pd.Series([0, 1], index=[1.0, np.nan]), "gold labels contain missing item ids"),
        (3.5, "gold labels must be a DataFrame, Series, mapping or CSV path, not float"),
        (pd.DataFrame({"id": [1], "label": [0]}), r"missing column 'item' \(or 'task'\)"),
    ],
)
def test_bad_gold(frame: pd.DataFrame, gold: Any, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        encode_annotations(frame, gold=gold)


def test_missing_gold_file(frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gold file not found"):
        encode_annotations(frame, gold=tmp_path / "gold.csv")


# --------------------------------------------------------------------------- good input
def test_crowdkit_column_names(frame: pd.DataFrame) -> None:
    renamed = frame.rename(columns={"item": "task", "annotator": "worker"})
    data = encode_annotations(renamed)
    plain = encode_annotations(frame)
    assert data.column_names == {"item": "task", "annotator": "worker", "label": "label"}
    np.testing.assert_array_equal(data.item_index, plain.item_index)
    np.testing.assert_array_equal(data.annotator_index, plain.annotator_index)
    np.testing.assert_array_equal(data.label_index, plain.label_index)


def test_custom_column_names(frame: pd.DataFrame) -> None:
    renamed = frame.rename(columns={"item": "q", "annotator": "who", "label": "answer"})
    data = encode_annotations(renamed, item_col="q", annotator_col="who", label_col="answer")
    assert data.column_names == {"item": "q", "annotator": "who", "label": "answer"}
    assert data.n_annotations == len(frame)
    # The default names win over crowd-kit's when both are present.
    both = frame.assign(task=[9] * 7)
    assert encode_annotations(both).column_names["item"] == "item"


def test_repeated_labels_are_kept() -> None:
    """The anesthesia case: an annotator labels one item several times; every label counts."""
    frame = pd.DataFrame(
        {
            "item": [1, 1, 1, 1, 2, 2, 2],
            "annotator": ["a", "a", "a", "b", "a", "b", "b"],
            "label": [1, 1, 2, 1, 2, 2, 2],
        }
    )
    data = encode_annotations(frame)
    assert data.n_annotations == 7
    c = data.compressed
    rows = {
        (data.items[i], data.annotators[j], data.categories[lab]): n
        for i, j, lab, n in zip(
            c.item_index, c.annotator_index, c.label_index, c.count, strict=True
        )
    }
    assert rows == {(1, "a", 1): 2, (1, "a", 2): 1, (1, "b", 1): 1, (2, "a", 2): 1, (2, "b", 2): 2}
    assert c.count.sum() == len(frame)
    assert c.item_starts.tolist() == [0, 3]
    assert data.to_frame().value_counts().sort_index().equals(frame.value_counts().sort_index())


@pytest.mark.parametrize("big", [10**20, 2**64 - 1])
def test_ids_beyond_64_bits_stay_distinct_and_exact(big: int, frame: pd.DataFrame) -> None:
    """Python ints beyond int64 are kept exact (as their decimal strings), never rounded."""
    ids = pd.Series([big, big + 1, big, big + 1, 7, 7, big], dtype=object)
    data = encode_annotations(frame.assign(item=ids))
    assert data.n_items == 3
    assert sorted(data.items) == sorted([str(big), str(big + 1), "7"])
    back = data.to_frame().sort_values(["item", "annotator"]).reset_index(drop=True)
    orig = (
        frame.assign(item=ids.astype(str)).sort_values(["item", "annotator"]).reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(back, orig, check_dtype=False)


def test_int64_extreme_ids_round_trip_as_integers(frame: pd.DataFrame) -> None:
    top, bottom = 2**63 - 1, -(2**63)
    ids = [top, bottom, top - 1, bottom, top, top - 1, bottom]
    data = encode_annotations(frame.assign(item=np.asarray(ids, dtype=np.int64)))
    assert data.items.dtype == np.int64
    assert list(data.items) == [bottom, top - 1, top]
    assert data.to_frame()["item"].tolist() == sorted(ids)
    # The same ids as Python ints in an object column.
    data_obj = encode_annotations(frame.assign(item=pd.Series(ids, dtype=object)))
    assert list(data_obj.items) == [bottom, top - 1, top]
    # uint64 ids that fit int64 stay integers.
    data_u = encode_annotations(frame.assign(item=np.asarray([top] * 4 + [5] * 3, dtype=np.uint64)))
    assert list(data_u.items) == [5, top]


def test_huge_ids_are_coordinates_of_a_fit(frame: pd.DataFrame) -> None:
    from crowdbayes import DawidSkene

    ids = pd.Series([10**20, 2**63 - 1, 10**20, 2**63 - 1, 3, 3, 10**20], dtype=object)
    fit = DawidSkene().fit(frame.assign(item=ids), method="map", random_seed=0)
    expected = sorted([str(10**20), str(2**63 - 1), "3"])
    assert sorted(fit.labels_.index) == expected
    assert sorted(fit.datatree_.summary["item"].to_numpy().tolist()) == expected


@pytest.mark.parametrize(
    ("labels", "categories"),
    [
        (["yes", "no", "yes", "no", "yes", "no", "maybe"], ["maybe", "no", "yes"]),
        ([3, 1, 2, 1, 3, 2, 1], [1, 2, 3]),
        ([True, False, True, False, True, False, True], [False, True]),
        (np.array([1, 0, 1, 0, 1, 0, 1], dtype=np.uint8), [0, 1]),
        (pd.Categorical(["b", "a", "b", "a", "b", "a", "b"]), ["a", "b"]),
    ],
)
def test_label_value_types(frame: pd.DataFrame, labels: Any, categories: list[Any]) -> None:
    data = encode_annotations(frame.assign(label=labels))
    assert list(data.categories) == categories
    back = data.to_frame().sort_values(["item", "annotator"]).reset_index(drop=True)
    orig = frame.assign(label=labels).sort_values(["item", "annotator"]).reset_index(drop=True)
    assert back["label"].tolist() == orig["label"].tolist()


def test_declared_category_order_is_respected(frame: pd.DataFrame) -> None:
    data = encode_annotations(frame, categories=[1, 0, 2])
    assert list(data.categories) == [1, 0, 2]
    assert data.n_categories == 3
    np.testing.assert_array_equal(data.categories[data.label_index], data.to_frame()["label"])
    assert data.label_index[data.to_frame()["label"].to_numpy() == 1].tolist() == [0] * 4


def test_rows_are_sorted_by_item(frame: pd.DataFrame) -> None:
    data = encode_annotations(frame)
    assert np.all(np.diff(data.item_index) >= 0)
    assert list(data.items) == [1, 2, 3]
    assert list(data.annotators) == ["a", "b", "c"]
    # Stable: within an item, the input order is kept.
    out = data.to_frame()
    assert out["item"].tolist() == [1, 1, 1, 2, 2, 3, 3]
    assert out["annotator"].tolist() == ["a", "b", "c", "a", "c", "b", "c"]
    assert out["label"].tolist() == [0, 0, 1, 1, 0, 1, 1]
    for arr in (data.item_index, data.annotator_index, data.label_index, data.gold_index):
        assert arr.dtype == np.int64


def test_gold_encoding(frame: pd.DataFrame) -> None:
    data = encode_annotations(frame, gold={3: 0, 1: 1})
    assert data.gold_index.tolist() == [1, -1, 0]
    assert data.n_gold == 2
    # Every accepted gold format gives the same codes.
    for gold in (
        pd.Series({3: 0, 1: 1}),
        pd.DataFrame({"item": [3, 1], "label": [0, 1]}),
        pd.DataFrame({"task": [3, 1], "true_label": [0, 1]}),
    ):
        assert encode_annotations(frame, gold=gold).gold_index.tolist() == [1, -1, 0]
    assert encode_annotations(frame).gold_index.tolist() == [-1, -1, -1]


def test_gold_from_csv(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "gold.csv"
    path.write_text("item,label\n2,1\n")
    assert encode_annotations(frame, gold=path).gold_index.tolist() == [-1, 1, -1]
    assert read_gold(path).to_dict() == {2: 1}


def test_string_gold_with_string_categories(frame: pd.DataFrame) -> None:
    words = frame.assign(label=frame["label"].map({0: "no", 1: "yes"}))
    data = encode_annotations(words, gold={2: "no"}, categories=["yes", "no"])
    assert data.gold_index.tolist() == [-1, 1, -1]


def test_csv_input(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    from_path = encode_annotations(path)
    from_str = encode_annotations(str(path))
    plain = encode_annotations(frame)
    for data in (from_path, from_str):
        np.testing.assert_array_equal(data.item_index, plain.item_index)
        np.testing.assert_array_equal(data.label_index, plain.label_index)
        assert list(data.annotators) == list(plain.annotators)
    assert read_annotations(path).shape == frame.shape


def test_to_frame_round_trip(frame: pd.DataFrame) -> None:
    data = encode_annotations(frame)
    out = data.to_frame()
    assert out.columns.tolist() == ["item", "annotator", "label"]
    again = encode_annotations(out)
    for name in ("item_index", "annotator_index", "label_index", "gold_index"):
        np.testing.assert_array_equal(getattr(again, name), getattr(data, name))
    for name in ("items", "annotators", "categories"):
        pd.testing.assert_index_equal(getattr(again, name), getattr(data, name))
    a = out.sort_values(["item", "annotator"]).reset_index(drop=True)
    b = frame.sort_values(["item", "annotator"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_index_names_and_counts(frame: pd.DataFrame) -> None:
    data = encode_annotations(frame)
    assert isinstance(data, AnnotationData)
    assert (data.items.name, data.annotators.name, data.categories.name) == (
        "item",
        "annotator",
        "category",
    )
    assert (data.n_items, data.n_annotators, data.n_categories, data.n_annotations) == (3, 3, 2, 7)


def test_input_frame_is_not_modified(frame: pd.DataFrame) -> None:
    before = frame.copy()
    encode_annotations(frame, gold={1: 0})
    pd.testing.assert_frame_equal(frame, before)


def test_anesthesia_loads() -> None:
    annotations, gold = load_real("anesthesia")
    assert gold is None
    data = encode_annotations(annotations)
    assert data.n_annotations == 315
    assert data.n_items == 45
    assert data.n_annotators == 5
    assert data.n_categories == 4
    assert list(data.categories) == [1, 2, 3, 4]
    assert data.compressed.count.sum() == 315
    assert data.compressed.count.max() > 1
