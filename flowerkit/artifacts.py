"""Everything written into a run or evaluation folder, in one place.

Every file is written under a temporary name beside its final one and then
renamed over it, so an interrupted write (a crash, a full disk) leaves the
previous file intact instead of a truncated one.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from flowerkit import plots
from flowerkit.recipe import Recipe

# A run folder: what `flowerkit.train` writes, and what resuming reads.
MODEL = "model.keras"
RECIPE = "recipe.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
METRICS = "metrics.json"
BACKUP = "backup"


@contextlib.contextmanager
def replacing(path: Path):
    """Yields a temporary path to write; renames it to `path` on success.

    The temporary name keeps the suffix, for writers that check it (Keras
    wants `.keras`, matplotlib picks the format from it)."""
    path = Path(path)
    partial = path.with_name(f".partial-{path.name}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_json(path: Path, data) -> None:
    with replacing(path) as partial:
        partial.write_text(json.dumps(data, indent=2) + "\n")


def write_recipe(output_dir: Path, recipe: Recipe) -> None:
    with replacing(Path(output_dir) / RECIPE) as partial:
        recipe.save(partial)


def write_run(output_dir: Path, model, class_names, history, metrics, predictions) -> None:
    """The trained model, its history and metrics, and the report pictures.

    recipe.json is written when the run starts (`write_recipe`): resuming
    checks against it.
    """
    output_dir = Path(output_dir)
    with replacing(output_dir / MODEL) as partial:
        model.save(partial)
    write_json(output_dir / HISTORY_JSON, history)
    write_history_csv(output_dir / HISTORY_CSV, history)
    write_json(output_dir / METRICS, metrics)
    with replacing(output_dir / "curves.png") as partial:
        plots.plot_training_curves(history, partial)
    with replacing(output_dir / "predictions.png") as partial:
        plots.plot_predictions(
            predictions.sample_images,
            predictions.labels[predictions.sample_positions],
            predictions.probabilities[predictions.sample_positions],
            class_names,
            partial,
        )
    write_confusion_matrix(output_dir, metrics["validation_report"])


def write_evaluation(output_dir: Path, report: dict) -> list[Path]:
    """evaluation.json and confusion_matrix.png; returns their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "evaluation.json", report)
    write_confusion_matrix(output_dir, report)
    return [output_dir / "evaluation.json", output_dir / "confusion_matrix.png"]


def write_confusion_matrix(output_dir: Path, report: dict) -> None:
    with replacing(Path(output_dir) / "confusion_matrix.png") as partial:
        plots.plot_confusion_matrix(report["confusion_matrix"], report["class_names"], partial)


def write_history_csv(path: Path, history: dict) -> None:
    """One row per epoch: its number, phase and metrics (replaces the live
    log that Keras's CSVLogger kept during training)."""
    import csv

    keys = sorted(key for key in history if key != "phase")
    with replacing(path) as partial, open(partial, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["epoch", "phase", *keys])
        for epoch in range(len(history["loss"])):
            phase = history.get("phase", [""] * (epoch + 1))[epoch]
            writer.writerow([epoch, phase, *(history[key][epoch] for key in keys)])


def read_history_csv(path: Path) -> dict[str, list[float]]:
    """Per-epoch metrics of a history CSV, as lists by metric."""
    import csv

    if not Path(path).is_file():
        return {}
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return {}
    return {
        key: [float(row[key]) for row in rows] for key in rows[0] if key not in ("epoch", "phase")
    }
