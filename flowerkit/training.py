"""Train a recipe end to end and write the run's artefacts.

    source -> load_data -> build_model -> fit (resumable) -> report
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from flowerkit import runtime
from flowerkit.data import load_data
from flowerkit.evaluation import classification_report, predict_dataset
from flowerkit.model import build_model
from flowerkit.plots import plot_confusion_matrix, plot_predictions, plot_training_curves
from flowerkit.recipe import Recipe


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    recipe: Recipe
    history: dict
    metrics: dict
    output_dir: Path | None


class EpochTimer(keras.callbacks.Callback):
    """Seconds spent in the training part of each epoch (validation excluded)."""

    def __init__(self):
        super().__init__()
        self.train_seconds: list[float] = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):
        if self._start is not None:
            self.train_seconds.append(time.perf_counter() - self._start)
            self._start = None

    def on_epoch_end(self, epoch, logs=None):
        self.on_test_begin()  # no validation this epoch


def train(
    recipe: Recipe,
    source: str | None = None,
    output_dir: str | Path | None = None,
    max_images: int | None = None,
    verbose="auto",
    callbacks=(),
) -> TrainResult:
    """Trains `recipe` on `source` (default: tf_flowers via the Keras cache).

    With `output_dir`, writes model.keras, recipe.json, history.json,
    metrics.json and the PNG reports there, and backs up each epoch so that
    running the same command again resumes an interrupted run.
    """
    started = time.perf_counter()
    data = load_data(recipe, source, max_images=max_images)
    recipe = recipe.replace(class_names=data.class_names)
    model = build_model(recipe)
    output_dir = Path(output_dir) if output_dir else None
    timer = EpochTimer()
    callbacks = [timer, *callbacks]
    if output_dir:
        output_dir.mkdir(parents=True, exist_ok=True)
        recipe.save(output_dir / "recipe.json")
        backup, log = output_dir / "backup", output_dir / "history.csv"
        if not backup.exists():
            log.unlink(missing_ok=True)  # a fresh run, not a resumed one
        # Rerunning after an interruption resumes from the last finished
        # epoch; the CSV log keeps the epochs from before the interruption.
        callbacks += [
            keras.callbacks.BackupAndRestore(str(backup)),
            keras.callbacks.CSVLogger(str(log), append=True),
        ]
    with warnings.catch_warnings():
        # tf.data with ignore_errors() has unknown length, which Keras reports
        # as "ran out of data" at the end of the first epoch: expected here.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        fit = model.fit(
            data.train,
            validation_data=data.validation,
            epochs=recipe.epochs,
            callbacks=callbacks,
            shuffle=False,  # the datasets shuffle themselves, every epoch
            verbose=verbose,
        )
    history = _read_csv_log(output_dir / "history.csv") if output_dir else {}
    history = history or {k: [float(v) for v in values] for k, values in fit.history.items()}
    train_seconds = time.perf_counter() - started

    # Nine validation images from across the classes (the split is sorted by class).
    shown = np.random.default_rng(recipe.seed).choice(
        len(data.validation_index), size=min(9, len(data.validation_index)), replace=False
    )
    predictions = predict_dataset(model, data.validation, sample_positions=shown)
    report = classification_report(predictions, data.class_names)
    metrics = {
        "val_accuracy": history.get("val_accuracy", [None])[-1],
        "val_loss": history.get("val_loss", [None])[-1],
        "best_val_accuracy": max(history.get("val_accuracy", [0.0]) or [0.0]),
        "epochs": len(history.get("loss", [])),
        "train_images": len(data.train_index),
        "validation_images": len(data.validation_index),
        "wall_seconds": train_seconds,
        "epoch_train_seconds": timer.train_seconds,
        "train_images_per_second": _images_per_second(len(data.train_index), timer.train_seconds),
        "backend": runtime.backend(),
        "device": runtime.device_summary(),
        "jit_compile": runtime.resolve_jit_compile(recipe.jit_compile),
        "versions": runtime.library_versions(),
        "source": data.train_index.source,
        "validation_report": report,
    }
    if output_dir:
        write_run(output_dir, model, recipe, history, metrics, predictions)
    return TrainResult(model, recipe, history, metrics, output_dir)


def _read_csv_log(path: Path) -> dict[str, list[float]]:
    import csv

    if not path.is_file():
        return {}
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    return {key: [float(row[key]) for row in rows] for key in rows[0] if key != "epoch"} if rows else {}


def _images_per_second(images: int, epoch_seconds: list[float]) -> float | None:
    """Median over epochs after the first (which includes compilation)."""
    steady = epoch_seconds[1:] or epoch_seconds
    return images / float(np.median(steady)) if steady else None


def write_run(output_dir: Path, model, recipe, history, metrics, predictions) -> None:
    model.save(output_dir / "model.keras")
    recipe.save(output_dir / "recipe.json")
    (output_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_training_curves(history, output_dir / "curves.png")
    plot_predictions(
        predictions.sample_images,
        predictions.labels[predictions.sample_positions],
        predictions.probabilities[predictions.sample_positions],
        recipe.class_names,
        output_dir / "predictions.png",
    )
    plot_confusion_matrix(
        metrics["validation_report"]["confusion_matrix"],
        recipe.class_names,
        output_dir / "confusion_matrix.png",
    )
