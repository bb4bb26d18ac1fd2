"""The confusion matrix and per-class report against hand-worked answers."""

import numpy as np
import pytest

from flowerkit.report.metrics import classification_report, confusion_matrix, format_report

pytestmark = pytest.mark.backend_independent  # run once, not per backend (tox.ini)

#            true: a a a a b b b c c c      (c never predicted right, b never predicted)
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PREDICTED = np.array([0, 0, 0, 2, 0, 2, 0, 0, 0, 2])


def test_confusion_matrix_rows_are_true_columns_predicted():
    expected = [[3, 0, 1], [2, 0, 1], [2, 0, 1]]
    np.testing.assert_array_equal(confusion_matrix(LABELS, PREDICTED, 3), expected)


def test_report_precision_recall_support():
    report = classification_report(LABELS, PREDICTED, ("a", "b", "c"))
    assert report["accuracy"] == pytest.approx(4 / 10)
    assert report["images"] == 10
    a, b, c = (report["per_class"][name] for name in "abc")
    assert (a["precision"], a["recall"], a["support"]) == (pytest.approx(3 / 7), pytest.approx(3 / 4), 4)
    # b is never predicted: precision 0 by convention, not NaN.
    assert (b["precision"], b["recall"], b["support"]) == (0.0, 0.0, 3)
    assert (c["precision"], c["recall"], c["support"]) == (pytest.approx(1 / 3), pytest.approx(1 / 3), 3)
    assert report["confusion_matrix"] == [[3, 0, 1], [2, 0, 1], [2, 0, 1]]


def test_balanced_accuracy_is_the_mean_recall_of_classes_with_images():
    # A 9:1 imbalance: always predicting the large class scores 0.9 accuracy, 0.5 balanced.
    report = classification_report([0] * 9 + [1], [0] * 10, ("big", "small"))
    assert report["accuracy"] == pytest.approx(0.9)
    assert report["balanced_accuracy"] == pytest.approx(0.5)
    assert classification_report([0, 1], [0, 1], ("a", "b", "empty"))["balanced_accuracy"] == 1.0


def test_class_without_images_has_zero_recall():
    report = classification_report([0, 0, 1], [0, 1, 1], ("a", "b", "empty"))
    assert report["per_class"]["empty"] == {"precision": 0.0, "recall": 0.0, "support": 0}
    assert report["per_class"]["b"]["precision"] == pytest.approx(0.5)


def test_format_report_is_a_readable_table():
    text = format_report(classification_report(LABELS, PREDICTED, ("a", "b", "c")))
    # Balanced accuracy: the mean of the recalls 3/4, 0 and 1/3.
    assert text.splitlines()[0] == "accuracy: 0.4000 on 10 images (balanced accuracy 0.3611)"
    assert "a          0.429   0.750        4" in text
    assert text.splitlines()[-3] == "a           3      0      1"


def test_most_confused_pairs_largest_first_with_their_share():
    from flowerkit.report.metrics import confused_pairs

    pairs = confused_pairs(confusion_matrix(LABELS, PREDICTED, 3), ("a", "b", "c"), top=3)
    assert pairs == [
        {"true": "b", "predicted": "a", "count": 2, "fraction_of_true": pytest.approx(2 / 3)},
        {"true": "c", "predicted": "a", "count": 2, "fraction_of_true": pytest.approx(2 / 3)},
        {"true": "a", "predicted": "c", "count": 1, "fraction_of_true": pytest.approx(1 / 4)},
    ]
    assert confused_pairs(np.eye(3, dtype=int), ("a", "b", "c")) == []


def test_format_report_lists_classes_from_the_lowest_recall():
    text = format_report(classification_report(LABELS, PREDICTED, ("a", "b", "c")))
    rows = [line.split()[0] for line in text.splitlines()[3:6]]
    assert rows == ["b", "c", "a"]  # recall 0, 1/3, 3/4


def test_format_report_at_a_thousand_classes_shows_the_worst_and_the_pairs():
    labels = np.repeat(np.arange(1000), 3)
    predicted = labels.copy()
    predicted[:6] = [1, 1, 1, 5, 0, 1]  # class 0 always taken for 1; class 1 right once
    names = tuple(f"k{i}" for i in range(1000))
    lines = format_report(classification_report(labels, predicted, names)).splitlines()
    assert len(lines) < 80
    assert [line.split()[0] for line in lines[3:5]] == ["k0", "k1"]
    assert "... 970 more classes, each with a higher recall (all in the JSON)" in lines
    assert lines[lines.index("k0 -> k1: 3 (100%)") - 1].startswith("the 3 most-confused class pairs")
