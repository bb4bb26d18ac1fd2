"""Run-folder writing: nothing half-written, no global plotting state."""

import json

import matplotlib
import pytest

from flowerkit import FlowerkitError
from flowerkit.report import artifacts, plots

pytestmark = pytest.mark.backend_independent  # run once, not per backend (tox.ini)


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "metrics.json"
    artifacts.write_json(target, {"val_accuracy": 0.9})
    with pytest.raises(FlowerkitError, match=f"Could not write {target}: no space left on device"):
        with artifacts.replacing(target) as partial:
            partial.write_text('{"val_accur')  # half a file, then the disk fills up
            raise OSError(28, "No space left on device")
    assert json.loads(target.read_text()) == {"val_accuracy": 0.9}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_1000_class_confusion_matrix_is_one_line_per_row_in_metrics_json(tmp_path):
    matrix = [[(row * 7 + column) % 5 for column in range(1000)] for row in range(1000)]
    metrics = {"confusion_matrix": matrix, "history": {"loss": [0.5, 0.25]}, "classes": ["a", "b"],
               "per_class": [{"name": "a", "recall": 1.0}], "empty": [], "label": "flowerkit-0-1"}
    artifacts.write_json(tmp_path / "metrics.json", metrics)
    text = (tmp_path / "metrics.json").read_text()
    assert json.loads(text) == metrics
    assert 1000 < len(text.splitlines()) < 1020
    assert '"loss": [0.5, 0.25]' in text and '\n    [0, 1, 2, 3, 4, 0, 1,' in text


def test_plots_leave_the_matplotlib_backend_alone(tmp_path):
    before = matplotlib.get_backend()
    plots.plot_training_curves({"accuracy": [0.5, 0.7], "val_accuracy": [0.4, 0.6], "loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, tmp_path / "c.png")
    assert matplotlib.get_backend() == before
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_history_csv_reads_back_per_metric(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,accuracy,loss\n0,0.5,1.2\n1,0.75,0.8\n")
    assert artifacts.read_history_csv(tmp_path / "history.csv") == {
        "accuracy": [0.5, 0.75], "loss": [1.2, 0.8]
    }
    assert artifacts.read_history_csv(tmp_path / "missing.csv") == {}


def _report(classes: int, seed: int = 0) -> dict:
    """A validation report of `classes` classes, 20 images each, 70% right."""
    from flowerkit.report.metrics import classification_report
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), 20)
    predicted = np.where(rng.random(len(labels)) < 0.7, labels, rng.integers(0, classes, len(labels)))
    return classification_report(labels, predicted, tuple(f"class{i:04d}" for i in range(classes)))


def test_a_thousand_classes_draw_the_most_confused_pairs_quickly_and_small(tmp_path):
    """A 500 x 500 matrix drawn to scale once took a run's 24 GB: beyond 30
    classes the PNG is a fixed-size chart of the worst pairs."""
    import time

    from PIL import Image

    report = _report(1000)
    started = time.perf_counter()
    artifacts.write_confusion_matrix(tmp_path, report)
    assert time.perf_counter() - started < 20  # the matrix to scale: minutes, then out of memory
    with Image.open(tmp_path / "confusion_matrix.png") as image:
        assert image.size == (900, 1050)  # 9 x (1.5 + 0.3 x 30) inches at 100 dpi
    assert (tmp_path / "confusion_matrix.png").stat().st_size < 200_000
    assert len(report["confusion_matrix"]) == 1000  # the JSON keeps the whole matrix


def test_five_classes_keep_the_confusion_matrix(tmp_path):
    from PIL import Image

    artifacts.write_confusion_matrix(tmp_path, _report(5))
    with Image.open(tmp_path / "confusion_matrix.png") as image:  # 1.1 in per class + 2, + 1 for the bar
        assert image.size == (850, 750)
