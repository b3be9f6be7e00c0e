"""Metrics on tiny inputs whose values are worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest

import crowdbayes as cb
from crowdbayes.metrics import (
    LOG_LOSS_EPS,
    accuracy,
    brier_score,
    calibration_table,
    evaluate,
    expected_calibration_error,
    log_loss,
)


def binary(p0: list[float], index: list | None = None) -> pd.DataFrame:
    """Two-category probabilities from P(category 0)."""
    p0_arr = np.asarray(p0, dtype=float)
    return pd.DataFrame({0: p0_arr, 1: 1.0 - p0_arr}, index=index)


# ---------------------------------------------------------------------------- accuracy
def test_accuracy_counts_only_items_with_gold_and_prediction():
    labels = pd.Series({"a": 0, "b": 1, "c": 1, "d": 0})
    gold = pd.Series({"a": 0, "b": 0, "c": 1, "e": 1})  # d has no gold, e no prediction
    assert accuracy(labels, gold) == pytest.approx(2 / 3)


def test_accuracy_aligns_by_item_id_not_position():
    labels = pd.Series([1, 0, 1], index=["z", "y", "x"])
    gold = pd.Series([1, 0, 1], index=["x", "y", "z"])
    assert accuracy(labels, gold) == 1.0
    assert accuracy(labels, gold.iloc[::-1]) == 1.0
    shuffled_gold = pd.Series([0, 1, 0], index=["x", "y", "z"])
    assert accuracy(labels, shuffled_gold) == 0.0


def test_accuracy_string_labels():
    labels = pd.Series({1: "cat", 2: "dog"})
    assert accuracy(labels, pd.Series({1: "cat", 2: "cat"})) == 0.5


# ---------------------------------------------------------------------------- log loss
def test_log_loss_hand_value():
    probs = pd.DataFrame({0: [0.9, 0.25], 1: [0.1, 0.75]}, index=["a", "b"])
    gold = pd.Series({"a": 0, "b": 1})
    expected = -(math.log(0.9) + math.log(0.75)) / 2  # 0.19652...
    assert log_loss(probs, gold) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.1965213, abs=1e-7)


def test_log_loss_clips_at_1e_15():
    probs = binary([1.0, 0.5])
    gold = pd.Series([1, 0])  # item 0 gets probability 0 on its gold label
    assert LOG_LOSS_EPS == 1e-15
    assert log_loss(probs, gold) == pytest.approx((-math.log(1e-15) - math.log(0.5)) / 2)
    assert np.isfinite(log_loss(probs, gold))


def test_log_loss_multiclass_uses_gold_column_only():
    probs = pd.DataFrame({"x": [0.2, 0.7], "y": [0.5, 0.2], "z": [0.3, 0.1]}, index=["i1", "i2"])
    gold = pd.Series({"i1": "z", "i2": "x"})
    assert log_loss(probs, gold) == pytest.approx(-(math.log(0.3) + math.log(0.7)) / 2)


def test_log_loss_agrees_with_scikit_learn():
    sk_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    p0 = rng.uniform(0.01, 0.99, size=50)
    gold = pd.Series(rng.integers(0, 2, size=50))
    probs = binary(p0.tolist())
    ours = log_loss(probs, gold)
    theirs = sk_metrics.log_loss(gold.to_numpy(), probs.to_numpy(), labels=[0, 1])
    assert ours == pytest.approx(theirs, rel=1e-12)


# ---------------------------------------------------------------------------- Brier
def test_brier_hand_values():
    probs = pd.DataFrame({0: [0.9, 0.25], 1: [0.1, 0.75]}, index=["a", "b"])
    gold = pd.Series({"a": 0, "b": 1})
    # a: 0.1^2 + 0.1^2 = 0.02; b: 0.25^2 + 0.25^2 = 0.125
    assert brier_score(probs, gold) == pytest.approx((0.02 + 0.125) / 2)


def test_brier_multiclass_sums_over_categories():
    probs = pd.DataFrame({0: [0.5], 1: [0.3], 2: [0.2]})
    # gold 2: 0.5^2 + 0.3^2 + 0.8^2 = 0.98
    assert brier_score(probs, pd.Series([2])) == pytest.approx(0.98)


def test_brier_extremes():
    gold = pd.Series([0, 1])
    assert brier_score(binary([1.0, 0.0]), gold) == 0.0
    assert brier_score(binary([0.0, 1.0]), gold) == pytest.approx(2.0)


def test_brier_binary_is_twice_scikit_learn():
    sk_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    p0 = rng.uniform(size=40)
    gold = pd.Series(rng.integers(0, 2, size=40))
    probs = binary(p0.tolist())
    theirs = sk_metrics.brier_score_loss(gold.to_numpy(), probs[1].to_numpy())
    assert brier_score(probs, gold) == pytest.approx(2 * theirs, rel=1e-12)


# ---------------------------------------------------------------------------- ECE
def test_ece_perfectly_calibrated_is_zero():
    # 10 items at confidence 0.7, 7 right; 20 items at 0.95, 19 right.
    p0 = [0.7] * 10 + [0.95] * 20
    gold = pd.Series([0] * 7 + [1] * 3 + [0] * 19 + [1])
    assert expected_calibration_error(binary(p0), gold) == pytest.approx(0.0, abs=1e-12)


def test_ece_overconfident():
    # certain (0.99) of every item and right on half: gap 0.49 in one bin
    probs = binary([0.99] * 8)
    gold = pd.Series([0, 1] * 4)
    assert expected_calibration_error(probs, gold) == pytest.approx(0.49)


def test_ece_weights_bins_by_items():
    # bin (0.9, 1]: 2 items at 0.95, both right: |1 - 0.95| = 0.05
    # bin (0.5, 0.6]: 2 items at 0.6 (modes 0 and 1), one right: |0.5 - 0.6| = 0.1
    # bin (0.7, 0.8]: 4 items at 0.8, all wrong: |0 - 0.8| = 0.8
    probs = binary([0.95, 0.95, 0.6, 0.4, 0.8, 0.8, 0.8, 0.8])
    gold = pd.Series([0, 0, 1, 1, 1, 1, 1, 1])
    expected = (2 * 0.05 + 2 * 0.1 + 4 * 0.8) / 8
    assert expected_calibration_error(probs, gold) == pytest.approx(expected)
    table = calibration_table(probs, gold)
    assert table["n_items"].tolist() == [2, 4, 2]
    assert table["accuracy"].tolist() == [0.5, 0.0, 1.0]
    assert table["confidence"].to_numpy() == pytest.approx([0.6, 0.8, 0.95])


def test_ece_one_bin_is_gap_of_means():
    probs = binary([0.9, 0.6, 0.7])
    gold = pd.Series([0, 1, 0])
    # mean confidence 0.7333, accuracy 2/3
    expected = abs(2 / 3 - (0.9 + 0.6 + 0.7) / 3)
    assert expected_calibration_error(probs, gold, n_bins=1) == pytest.approx(expected)


def test_ece_uses_mode_probability_in_multiclass():
    probs = pd.DataFrame({0: [0.5, 0.2], 1: [0.3, 0.45], 2: [0.2, 0.35]})
    # confidences 0.5 (right) and 0.45 (wrong); both in bin (0.4, 0.5]
    gold = pd.Series([0, 2])
    assert expected_calibration_error(probs, gold) == pytest.approx(abs(0.5 - 0.475))


def test_ece_bins_are_right_closed():
    # confidence exactly 1.0 lands in the last bin, exactly 0.5 in (0.4, 0.5]
    table = calibration_table(binary([1.0, 0.5]), pd.Series([0, 0]))
    assert table["upper"].tolist() == pytest.approx([0.5, 1.0])


def test_ece_rejects_bad_bins():
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        expected_calibration_error(binary([0.5]), pd.Series([0]), n_bins=0)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(binary([0.5]), pd.Series([0]), n_bins=2.5)


# ---------------------------------------------------------------------------- evaluate
def test_evaluate_aligns_on_item_ids():
    probs = pd.DataFrame(
        {"no": [0.9, 0.2, 0.6, 0.5], "yes": [0.1, 0.8, 0.4, 0.5]},
        index=pd.Index(["q", "r", "s", "t"], name="item"),
    )
    # gold in another order, with an item ("u") that has no prediction; "t" has no gold
    gold = pd.Series({"s": "yes", "u": "no", "q": "no", "r": "yes"})
    scores = evaluate(probs, gold)
    assert scores["n_items"] == 3
    assert scores["accuracy"] == pytest.approx(2 / 3)
    expected_ll = -(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3
    assert scores["log_loss"] == pytest.approx(expected_ll)
    expected_brier = (2 * 0.1**2 + 2 * 0.2**2 + 2 * 0.6**2) / 3
    assert scores["brier"] == pytest.approx(expected_brier)
    # bins: 0.9 right, 0.8 right, 0.6 wrong
    expected_ece = (abs(1 - 0.9) + abs(1 - 0.8) + abs(0 - 0.6)) / 3
    assert scores["ece"] == pytest.approx(expected_ece)


def test_evaluate_same_as_individual_metrics():
    rng = np.random.default_rng(11)
    raw = rng.dirichlet(np.ones(3), size=30)
    probs = pd.DataFrame(raw, index=[f"i{k}" for k in range(30)], columns=["a", "b", "c"])
    gold = pd.Series(rng.choice(["a", "b", "c"], size=25), index=[f"i{k}" for k in range(25)])
    scores = evaluate(probs, gold)
    sub = probs.iloc[:25]
    assert scores["n_items"] == 25
    assert scores["accuracy"] == accuracy(sub.idxmax(axis=1), gold)
    assert scores["log_loss"] == log_loss(probs, gold)
    assert scores["brier"] == brier_score(probs, gold)
    assert scores["ece"] == expected_calibration_error(probs, gold)


def test_evaluate_labels_override_accuracy_only():
    probs = binary([0.5, 0.9], index=["a", "b"])
    gold = pd.Series({"a": 1, "b": 0})
    assert evaluate(probs, gold)["accuracy"] == 0.5  # tie at "a" goes to the first column
    scores = evaluate(probs, gold, labels=pd.Series({"a": 1, "b": 0}))
    assert scores["accuracy"] == 1.0
    assert scores["log_loss"] == evaluate(probs, gold)["log_loss"]
    with pytest.raises(ValueError, match="labels lack 1 scored item"):
        evaluate(probs, gold, labels=pd.Series({"b": 0}))


def test_evaluate_fit_result_and_estimator(toy_frame):
    gold = pd.Series({1: 0, 2: 1, 3: 1, 4: 1, 9: 0})  # item 9 is not annotated
    mv = cb.MajorityVote().fit(toy_frame, random_seed=0)
    from_estimator = evaluate(mv, gold)
    from_result = evaluate(mv.result_, gold)
    assert from_estimator == from_result
    assert from_result["n_items"] == 4
    labels = mv.labels_["label"]
    expected_acc = float((labels.loc[[1, 2, 3, 4]] == gold.loc[[1, 2, 3, 4]]).mean())
    assert from_result["accuracy"] == expected_acc
    # toy votes: item 1 -> 2/3 on 0; 2 -> 1 on 1; 3 -> 2/3 on 1; 4 -> 1 on 0 (gold 1: clipped)
    expected_ll = -(math.log(2 / 3) + math.log(1.0) + math.log(2 / 3) + math.log(1e-15)) / 4
    assert from_result["log_loss"] == pytest.approx(expected_ll)


def test_evaluate_unfitted_estimator():
    with pytest.raises(cb.NotFittedError, match="not fitted"):
        evaluate(cb.DawidSkene(), pd.Series({1: 0}))


# ---------------------------------------------------------------------------- errors
def test_no_overlap_names_the_problem():
    probs = binary([0.5, 0.5], index=[1, 2])
    with pytest.raises(ValueError, match="no item of gold .* same item ids"):
        evaluate(probs, pd.Series({"1": 0, "2": 1}))  # str ids vs int ids
    with pytest.raises(ValueError, match="no item of gold"):
        accuracy(pd.Series({1: 0}), pd.Series({3: 0}))


def test_gold_outside_categories():
    probs = binary([0.5, 0.5], index=["a", "b"])
    with pytest.raises(ValueError, match=r"label\(s\) \['1'\] that are not among the categories"):
        log_loss(probs, pd.Series({"a": 0, "b": "1"}))
    with pytest.raises(ValueError, match="not among the categories"):
        evaluate(probs, pd.Series({"a": 2}))


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        (pd.DataFrame({0: [0.5, 0.7], 1: [0.5, 0.7]}), "must sum to 1; item 1 sums to 1.4"),
        (binary([0.5, np.nan]), "missing or infinite"),
        (pd.DataFrame({0: [1.2, 0.5], 1: [-0.2, 0.5]}), r"lie in \[0, 1\]"),
        (pd.DataFrame({0: [1.0, 1.0]}), "at least 2"),
        (pd.DataFrame([[0.5, 0.5], [0.5, 0.5]], index=[0, 0]), "duplicated item ids"),
        (pd.Series([0.5, 0.5]), "a DataFrame of probabilities"),
    ],
    ids=["sum", "nan", "range", "one-column", "duplicate-items", "series"],
)
def test_malformed_probabilities(probs, match):
    with pytest.raises(ValueError, match=match):
        evaluate(probs, pd.Series([0, 1]))


def test_log_loss_rejects_non_dataframe():
    with pytest.raises(ValueError, match="must be a pandas DataFrame indexed by item"):
        log_loss(pd.Series([0.5, 0.5]), pd.Series([0, 1]))


def test_malformed_gold():
    probs = binary([0.5, 0.5])
    with pytest.raises(ValueError, match="not a DataFrame"):
        log_loss(probs, pd.DataFrame({"item": [0], "label": [0]}))
    with pytest.raises(ValueError, match="missing label"):
        log_loss(probs, pd.Series([0, None]))
    with pytest.raises(ValueError, match="duplicated item ids"):
        log_loss(probs, pd.Series([0, 1], index=[0, 0]))
    with pytest.raises(ValueError, match="Series indexed by item"):
        accuracy(pd.Series([0]), {0: 0})
    with pytest.raises(ValueError, match="labels must be a pandas Series"):
        accuracy([0, 1], pd.Series([0, 1]))
    with pytest.raises(ValueError, match="evaluate needs a FitResult"):
        evaluate(np.array([[0.5, 0.5]]), pd.Series([0]))
