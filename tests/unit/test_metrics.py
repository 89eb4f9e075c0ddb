import numpy as np
import pytest

from protocols.metrics import balanced_accuracy, confusion_matrix, per_class_f1, split_metrics


def test_metrics_match_hand_computed_values():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    m = split_metrics(y_true, y_pred, ["4CH", "LVOT", "RVOT"])
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # F1 per class = 2TP / (2TP + FP + FN): 2/4, 4/5, 2/3
    assert m["per_class_f1"] == pytest.approx({"4CH": 0.5, "LVOT": 0.8, "RVOT": 2 / 3})
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)  # mean recall
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["n"] == 6


def test_a_class_never_seen_nor_predicted_counts_zero_in_macro_f1_but_not_in_balanced_accuracy():
    cm = confusion_matrix(np.array([0, 1]), np.array([0, 1]), num_classes=3)
    assert per_class_f1(cm).tolist() == [1.0, 1.0, 0.0]
    assert per_class_f1(cm).mean() == pytest.approx(2 / 3)
    assert balanced_accuracy(cm) == pytest.approx(1.0)


def test_a_perfect_prediction_scores_one_and_a_constant_one_scores_low():
    y = np.repeat(np.arange(5), 4)
    assert split_metrics(y, y, list("abcde"))["macro_f1"] == 1.0
    const = split_metrics(y, np.zeros_like(y), list("abcde"))
    assert const["accuracy"] == pytest.approx(0.2)
    assert const["balanced_accuracy"] == pytest.approx(0.2)
    assert const["macro_f1"] == pytest.approx((2 * 4 / (2 * 4 + 16)) / 5)


def test_labels_out_of_range_or_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="labels must lie"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), num_classes=3)
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(np.array([0, 1]), np.array([0]), num_classes=3)
