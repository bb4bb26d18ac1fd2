"""Train a recipe end to end:

    data -> model -> phase 1 (head) -> [phase 2 (fine-tuning)]
         -> validation predictions -> artefacts
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from flowerkit import artifacts, distribution, phases, runtime
from flowerkit.data import load_data
from flowerkit.errors import FlowerkitError
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
    tpu: str | None = None,
) -> TrainResult:
    """Trains `recipe` on `source` (default: tf_flowers via the Keras cache).

    With `output_dir`, writes model.keras, recipe.json, history, metrics and
    the PNG reports there, and backs up each epoch so that running the same
    command again resumes an interrupted run, in either phase.

    On the devices `recipe.distribution` asks for (`flowerkit.distribution`);
    `tpu` names a TPU to reach (TensorFlow: "local" on a TPU VM).
    """
    plan = distribution.resolve(recipe, tpu)
    if verbose and plan.writes_run_folder and plan.mode != "none":
        print(f"flowerkit: {plan.describe()}", flush=True)
    # Model, both phases and the validation predictions in the engine's scope.
    with plan.scope():
        return _train(plan, recipe, source, output_dir, max_images, verbose, callbacks)


def _train(plan, recipe, source, output_dir, max_images, verbose, callbacks) -> TrainResult:
    verbose = verbose if plan.writes_run_folder else 0  # progress from process 0 only
    started = time.perf_counter()
    keras.utils.set_random_seed(recipe.seed)  # initial weights, dropout, augmentation
    data = load_data(recipe, source, max_images=max_images)
    recipe = recipe.replace(class_names=data.class_names)
    run = RunFolder(distribution.run_folder(Path(output_dir)), recipe, verbose) if output_dir else None
    model = build_model(recipe)
    timer = EpochTimer()
    results = []
    if run and run.head_finished:
        model.load_weights(run.head_weights)  # phase 1 ended in an earlier run
    else:
        callbacks_1 = [timer, *(run.callbacks(phases.HEAD) if run else []), *callbacks]
        results.append(phases.train_head(model, data, recipe, callbacks_1, verbose))
        if run and recipe.fine_tune_epochs:
            model.save_weights(run.head_weights)
    if recipe.fine_tune_epochs:
        callbacks_2 = [timer, *(run.callbacks(phases.FINE_TUNE) if run else []), *callbacks]
        results.append(phases.fine_tune(model, data, recipe, callbacks_2, verbose))
    history = run.history() if run else _joined(results)
    history["phase"] = [phases.HEAD] * min(recipe.epochs, len(history["loss"]))
    history["phase"] += [phases.FINE_TUNE] * (len(history["loss"]) - len(history["phase"]))

    predictions = distribution.predict_subset(
        model, data.validation, sample_positions=_shown_images(len(data.validation), recipe.seed)
    )
    metrics = {
        "val_accuracy": history["val_accuracy"][-1],
        "val_loss": history["val_loss"][-1],
        "best_val_accuracy": max(history["val_accuracy"]),
        "epochs": len(history["loss"]),
        "train_images": len(data.train),
        "validation_images": len(data.validation),
        "max_images": max_images,
        "wall_seconds": time.perf_counter() - started,
        "phases": [
            {"name": r.name, "epochs": r.epochs, "seconds": r.seconds, **r.info} for r in results
        ],
        "epoch_train_seconds": timer.train_seconds,
        "train_images_per_second": _images_per_second(len(data.train), timer.train_seconds),
        **runtime.run_info(recipe),
        "source": data.source,
        "validation_report": classification_report(
            predictions.labels, predictions.predicted, recipe.class_names
        ),
    }
    if run and plan.writes_run_folder:
        artifacts.write_run(run.folder, model, recipe.class_names, history, metrics, predictions)
    elif run:
        distribution.save_alongside(model)  # saving takes every process
    if run:
        run.finish()
    written = run.folder if run and plan.writes_run_folder else None
    return TrainResult(model, recipe, history, metrics, written)


class RunFolder:
    """A run folder's backups: where each phase resumes from, and the check
    that an interrupted run there is this recipe's before anything is
    touched."""

    def __init__(self, folder: Path, recipe: Recipe, verbose):
        self.folder = folder
        self.backup = folder / artifacts.BACKUP
        self.head_weights = self.backup / "head_finished.weights.h5"
        self.log = folder / artifacts.HISTORY_CSV
        if self.backup.exists():
            self._check_resumable(recipe)
            if verbose:
                print(f"flowerkit: resuming the interrupted run in {folder}{self._resume_point()}")
        else:
            self.log.unlink(missing_ok=True)  # a fresh run, not a resumed one
        folder.mkdir(parents=True, exist_ok=True)
        artifacts.write_recipe(folder, recipe)

    @property
    def head_finished(self) -> bool:
        return self.head_weights.is_file()

    def callbacks(self, phase: str) -> list:
        # Rerunning after an interruption resumes from the last finished
        # epoch; the CSV log keeps the epochs from before the interruption.
        return [
            keras.callbacks.BackupAndRestore(str(self.backup / phase)),
            keras.callbacks.CSVLogger(str(self.log), append=True),
        ]

    def history(self) -> dict:
        return artifacts.read_history_csv(self.log)

    def finish(self) -> None:
        shutil.rmtree(self.backup, ignore_errors=True)

    def _check_resumable(self, recipe: Recipe) -> None:
        saved_path = self.folder / artifacts.RECIPE
        saved = Recipe.load(saved_path) if saved_path.is_file() else None
        if saved != recipe:
            raise FlowerkitError(
                f"{self.folder} holds an interrupted run of a different recipe; rerun with that "
                f"recipe (--preset {saved_path}) to resume it, or choose another --output "
                f"(or delete {self.backup} to start over)."
            )

    def _resume_point(self) -> str:
        # Keras's BackupAndRestore records how many epochs have finished.
        finished = [
            json.loads(path.read_text()).get("epoch", 0)
            for path in self.backup.glob("*/training_metadata.json")
        ]
        return f" after epoch {int(max(finished))}" if finished else ""


def _joined(results: list) -> dict:
    """Epoch logs of the phases run in this call, one after the other."""
    joined: dict[str, list[float]] = {}
    for result in results:
        for key, values in result.history.items():
            joined.setdefault(key, []).extend(values)
    return joined


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
