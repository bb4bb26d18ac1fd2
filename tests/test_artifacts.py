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
