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
