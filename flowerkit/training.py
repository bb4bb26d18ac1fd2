"""Train a recipe end to end:

    data -> model -> fit (resumable) -> validation predictions -> artefacts
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from flowerkit import artifacts, runtime
from flowerkit.data import load_data
from flowerkit.errors import FlowerkitError
from flowerkit.inference import predict_dataset
from flowerkit.metrics import classification_report
from flowerkit.model import build_model
from flowerkit.recipe import Recipe


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    recipe: Recipe
    history: dict
    metrics: dict
    output_dir: Path | None


def train(
    recipe: Recipe,
    source: str | None = None,
    output_dir: str | Path | None = None,
    max_images: int | None = None,
    verbose="auto",
    callbacks=(),
) -> TrainResult:
    """Trains `recipe` on `source` (default: tf_flowers via the Keras cache).

    With `output_dir`, writes model.keras, recipe.json, history, metrics and
    the PNG reports there, and backs up each epoch so that running the same
    command again resumes an interrupted run.
    """
    started = time.perf_counter()
    keras.utils.set_random_seed(recipe.seed)  # initial weights, dropout, augmentation
    data = load_data(recipe, source, max_images=max_images)
    recipe = recipe.replace(class_names=data.class_names)
    output_dir = Path(output_dir) if output_dir else None
    run_callbacks = _run_folder_callbacks(output_dir, recipe, verbose) if output_dir else []
    model = build_model(recipe)
    timer = EpochTimer()
    history = _fit(model, data, recipe, [timer, *run_callbacks, *callbacks], verbose)
    if output_dir:  # the whole run's epochs, those before an interruption too
        history = artifacts.read_history_csv(output_dir / artifacts.HISTORY_CSV) or history
    predictions = predict_dataset(
        model, data.validation.dataset, sample_positions=_shown_images(len(data.validation), recipe.seed)
    )
    metrics = {
        "val_accuracy": history.get("val_accuracy", [None])[-1],
        "val_loss": history.get("val_loss", [None])[-1],
        "best_val_accuracy": max(history.get("val_accuracy", [0.0]) or [0.0]),
        "epochs": len(history.get("loss", [])),
        "train_images": len(data.train),
        "validation_images": len(data.validation),
        "max_images": max_images,
        "wall_seconds": time.perf_counter() - started,
        "epoch_train_seconds": timer.train_seconds,
        "train_images_per_second": _images_per_second(len(data.train), timer.train_seconds),
        **runtime.run_info(recipe),
        "source": data.source,
        "validation_report": classification_report(
            predictions.labels, predictions.predicted, recipe.class_names
        ),
    }
    if output_dir:
        artifacts.write_run(output_dir, model, recipe.class_names, history, metrics, predictions)
    return TrainResult(model, recipe, history, metrics, output_dir)


def _run_folder_callbacks(output_dir: Path, recipe: Recipe, verbose) -> list:
    """Backup/resume and the CSV log of a run folder; checks that an
    interrupted run there is this recipe's before touching anything."""
    backup = output_dir / artifacts.BACKUP
    log = output_dir / artifacts.HISTORY_CSV
    if backup.exists():
        _check_resumable(output_dir, recipe)
        if verbose:
            print(f"flowerkit: resuming the interrupted run in {output_dir}{_resume_point(backup)}")
    else:
        log.unlink(missing_ok=True)  # a fresh run, not a resumed one
    output_dir.mkdir(parents=True, exist_ok=True)
    artifacts.write_recipe(output_dir, recipe)
    # Rerunning after an interruption resumes from the last finished epoch;
    # the CSV log keeps the epochs from before the interruption.
    return [
        keras.callbacks.BackupAndRestore(str(backup)),
        keras.callbacks.CSVLogger(str(log), append=True),
    ]


def _check_resumable(output_dir: Path, recipe: Recipe) -> None:
    saved_path = output_dir / artifacts.RECIPE
    saved = Recipe.load(saved_path) if saved_path.is_file() else None
    if saved != recipe:
        raise FlowerkitError(
            f"{output_dir} holds an interrupted run of a different recipe; rerun with that "
            f"recipe (--preset {saved_path}) to resume it, or choose another --output "
            f"(or delete {output_dir / artifacts.BACKUP} to start over)."
        )


def _resume_point(backup: Path) -> str:
    try:
        # Keras's BackupAndRestore records how many epochs have finished.
        finished = json.loads((backup / "training_metadata.json").read_text())["epoch"]
        return f" after epoch {int(finished)}"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _fit(model, data, recipe: Recipe, callbacks: list, verbose) -> dict:
    with warnings.catch_warnings():
        # tf.data with ignore_errors() has unknown length, which Keras reports
        # as "ran out of data" at the end of the first epoch: expected here.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        fit = model.fit(
            data.train.dataset,
            validation_data=data.validation.dataset,
            epochs=recipe.epochs,
            callbacks=callbacks,
            shuffle=False,  # the datasets shuffle themselves, every epoch
            verbose=verbose,
        )
    return {key: [float(v) for v in values] for key, values in fit.history.items()}


def _shown_images(count: int, seed: int) -> np.ndarray:
    """Nine validation images from across the classes (the split is sorted by class)."""
    return np.random.default_rng(seed).choice(count, size=min(9, count), replace=False)


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


def _images_per_second(images: int, epoch_seconds: list[float]) -> float | None:
    """Median over epochs after the first (which includes compilation)."""
    steady = epoch_seconds[1:] or epoch_seconds
    return images / float(np.median(steady)) if steady else None
