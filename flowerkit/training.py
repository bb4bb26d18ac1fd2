"""Train a recipe end to end:

    data -> model -> phase 1 (head) -> [phase 2 (fine-tuning)]
         -> validation predictions -> artefacts
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from flowerkit import artifacts, distribution, phases, runtime
from flowerkit import model as model_lib
from flowerkit.data import load_data
from flowerkit.errors import FlowerkitError
from flowerkit.inspection.summary import summary_line
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
    overwrite: bool = False,
    tpu: str | None = None,
) -> TrainResult:
    """Trains `recipe` on `source` (default: tf_flowers via the Keras cache).

    With `output_dir`, writes model.keras, recipe.json, history, metrics and
    the PNG reports there, and backs up each epoch so that running the same
    command again resumes an interrupted run, in either phase. A folder
    holding a finished run is refused unless `overwrite`, which also
    discards an interrupted run there; a folder another run is writing is
    refused.

    On the devices `recipe.distribution` asks for (`flowerkit.distribution`);
    `tpu` names a TPU to reach (TensorFlow: "local" on a TPU VM).
    """
    plan = distribution.resolve(recipe, tpu)
    if verbose and plan.writes_run_folder and plan.mode != "none":
        print(f"flowerkit: {plan.describe()}", flush=True)
    # Model, both phases and the validation predictions in the engine's scope.
    with plan.scope(), contextlib.ExitStack() as stack:
        # The folder this process writes (process 0: output_dir), held under
        # its lock however training ends.
        folder = distribution.run_folder(Path(output_dir)) if output_dir else None
        if folder:
            stack.enter_context(artifacts.locked(folder))
        return _train(plan, recipe, source, folder, max_images, verbose, callbacks, overwrite)


def _train(plan, recipe, source, folder, max_images, verbose, callbacks, overwrite) -> TrainResult:
    verbose = verbose if plan.writes_run_folder else 0  # progress from process 0 only
    started = time.perf_counter()
    if folder and not overwrite:
        RunFolder.check_not_finished(folder)  # before reading any data
    keras.utils.set_random_seed(recipe.seed)  # initial weights, dropout, augmentation
    data = load_data(recipe, source, max_images=max_images)
    recipe = recipe.replace(class_names=data.class_names)
    if verbose and data.inspection:
        print(f"flowerkit: {summary_line(data.inspection)}", flush=True)
    run = RunFolder(folder, recipe, verbose, overwrite) if folder else None
    model = build_model(recipe)
    timer = EpochTimer(run.timing if run else None, started)
    results = []
    if run and run.phase_finished(phases.HEAD):
        run.load_finished(model, phases.HEAD)  # phase 1 ended in an earlier run
    else:
        callbacks_1 = [timer, *(run.callbacks(phases.HEAD) if run else []), *callbacks]
        results.append(phases.train_head(model, data, recipe, callbacks_1, verbose))
        if run:
            run.save_finished(model, phases.HEAD)
    if recipe.fine_tune_epochs and run and run.phase_finished(phases.FINE_TUNE):
        model_lib.unfreeze_backbone(model, recipe)  # as phase 2 leaves it, for the saved file
        run.load_finished(model, phases.FINE_TUNE)
    elif recipe.fine_tune_epochs:
        callbacks_2 = [timer, *(run.callbacks(phases.FINE_TUNE) if run else []), *callbacks]
        results.append(phases.fine_tune(model, data, recipe, callbacks_2, verbose))
        if run:
            run.save_finished(model, phases.FINE_TUNE)
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
        "wall_seconds": timer.wall_seconds(),  # every process of a resumed run
        "phases": [
            {"name": r.name, "epochs": r.epochs, "seconds": r.seconds, **r.info} for r in results
        ],
        "epoch_train_seconds": timer.train_seconds,  # every epoch, resumed or not
        "train_images_per_second": _images_per_second(len(data.train), timer.train_seconds),
        **runtime.run_info(recipe),
        "source": data.source,
        "validation_report": classification_report(
            predictions.labels, predictions.predicted, recipe.class_names
        ),
        "class_weights": _listed(phases.class_weights(data, recipe)),
        "data_inspection": data.inspection,
    }
    metrics["val_balanced_accuracy"] = metrics["validation_report"]["balanced_accuracy"]
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
    touched.

    backup/ holds, until the run's files are written: each phase's latest
    epoch (`AtomicBackupAndRestore`), each finished phase's weights, and the
    seconds spent so far (`EpochTimer`), so that a rerun after a crash or
    `kill -9` at any point resumes where the last process stopped."""

    def __init__(self, folder: Path, recipe: Recipe, verbose, overwrite: bool = False):
        self.folder = folder
        self.backup = folder / artifacts.BACKUP
        self.timing = self.backup / "timing.json"
        self.log = folder / artifacts.HISTORY_CSV
        if overwrite:
            shutil.rmtree(self.backup, ignore_errors=True)
        if self.backup.exists():
            self._check_resumable(recipe)
            if verbose:
                print(f"flowerkit: resuming the interrupted run in {folder}{self._resume_point(recipe)}")
        else:
            self.log.unlink(missing_ok=True)  # a fresh run, not a resumed one
        self.backup.mkdir(parents=True, exist_ok=True)
        artifacts.write_recipe(folder, recipe)

    @staticmethod
    def check_not_finished(folder: Path) -> None:
        """A finished run (model.keras, no backup) is not trained over by accident."""
        if not (folder / artifacts.MODEL).is_file() or (folder / artifacts.BACKUP).exists():
            return
        try:
            accuracy = f" (val_accuracy {json.loads((folder / artifacts.METRICS).read_text())['val_accuracy']:.4f})"
        except (OSError, ValueError, KeyError, TypeError):
            accuracy = ""
        raise FlowerkitError(
            f"{folder} already holds a finished run{accuracy}; pass --overwrite to train it "
            "again, or choose another --output."
        )

    def finished_weights(self, phase: str) -> Path:
        return self.backup / f"{phase}_finished.weights.h5"

    def phase_finished(self, phase: str) -> bool:
        return self.finished_weights(phase).is_file()

    def load_finished(self, model, phase: str) -> None:
        with warnings.catch_warnings():
            # The optimizer's state is saved too, but no later phase needs it.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(self.finished_weights(phase))

    def save_finished(self, model, phase: str) -> None:
        with artifacts.replacing(self.finished_weights(phase)) as partial:
            model.save_weights(str(partial))

    def callbacks(self, phase: str) -> list:
        # Rerunning after an interruption resumes from the last finished
        # epoch; the CSV log keeps the epochs from before the interruption.
        # The log row comes first: an epoch logged but not backed up runs
        # again, and its later row counts (`artifacts.read_history_csv`).
        return [
            keras.callbacks.CSVLogger(str(self.log), append=True),
            AtomicBackupAndRestore(str(self.backup / phase)),
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
                f"recipe (--preset {saved_path}) to resume it, pass --overwrite to start over "
                "with this one, or choose another --output."
            )

    def _resume_point(self, recipe: Recipe) -> str:
        # Keras's BackupAndRestore records how many epochs have finished.
        finished = [
            json.loads(path.read_text()).get("epoch", 0)
            for path in self.backup.glob("*/epoch-*/training_metadata.json")
        ]
        if self.phase_finished(phases.HEAD):
            finished.append(recipe.epochs)
        if self.phase_finished(phases.FINE_TUNE):
            finished.append(recipe.epochs + recipe.fine_tune_epochs)
        return f" after epoch {int(max(finished))}" if finished else ""


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore, with every backup written whole or not at
    all: Keras writes the weights and then the epoch number in place, so a
    process killed while saving can leave a truncated weights file (which
    fails the resume) or weights one epoch ahead of their epoch number.
    Here each backup goes into a new folder, `epoch-N`, renamed into place
    once complete; resuming reads the newest whole one."""

    def on_train_begin(self, logs=None):
        latest = self._latest()
        if latest is not None:
            self._weights_path = str(latest / "latest.weights.h5")
            self._training_metadata_path = str(latest / "training_metadata.json")
        super().on_train_begin(logs)

    def _save_model(self):
        root = Path(self.backup_dir)
        partial = root / f".partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        self.model.save_weights(str(partial / "latest.weights.h5"))
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        (partial / "training_metadata.json").write_text(json.dumps(metadata))
        target = root / f"epoch-{self._current_epoch:05d}"
        shutil.rmtree(target, ignore_errors=True)
        os.rename(partial, target)
        for older in root.iterdir():  # earlier epochs, and what killed processes left
            if older != target:
                shutil.rmtree(older, ignore_errors=True)

    def _latest(self) -> Path | None:
        root = Path(self.backup_dir)
        whole = sorted(root.glob("epoch-*/training_metadata.json")) if root.is_dir() else []
        return whole[-1].parent if whole else None


def _listed(weights):
    return None if weights is None else [float(w) for w in weights]


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
    """Seconds spent in the training part of each epoch (validation
    excluded), and the run's wall time.

    With a `record` file (in the run's backup folder), both are saved at
    every epoch's end and every few seconds within an epoch, and read back
    when a run resumes, so that they cover every process of the run, not
    only the last one."""

    SAVE_EVERY_SECONDS = 5.0

    def __init__(self, record: Path | None = None, started: float | None = None):
        super().__init__()
        self.record = record
        self.started = time.perf_counter() if started is None else started
        earlier = _read_timing(record)
        self.earlier_seconds = float(earlier.get("wall_seconds", 0.0))
        # By epoch number: an epoch that ran again after a resume counts once.
        self.epoch_seconds = {int(k): float(v) for k, v in earlier.get("epoch_train_seconds", {}).items()}
        self._epoch = None
        self._start = None
        self._saved = time.perf_counter()

    @property
    def train_seconds(self) -> list[float]:
        return [self.epoch_seconds[epoch] for epoch in sorted(self.epoch_seconds)]

    def wall_seconds(self) -> float:
        return self.earlier_seconds + time.perf_counter() - self.started

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._start = epoch, time.perf_counter()

    def on_test_begin(self, logs=None):
        if self._start is not None:
            self.epoch_seconds[self._epoch] = time.perf_counter() - self._start
            self._start = None

    def on_train_batch_end(self, batch, logs=None):
        if self.record and time.perf_counter() - self._saved > self.SAVE_EVERY_SECONDS:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        self.on_test_begin()  # no validation this epoch
        if self.record:
            self._save()

    def _save(self):
        self._saved = time.perf_counter()
        artifacts.write_json(self.record, {
            "wall_seconds": self.wall_seconds(),
            "epoch_train_seconds": {str(k): v for k, v in self.epoch_seconds.items()},
        })


def _read_timing(record: Path | None) -> dict:
    try:
        return json.loads(record.read_text()) if record else {}
    except (OSError, ValueError):
        return {}


def _images_per_second(images: int, epoch_seconds: list[float]) -> float | None:
    """Median over epochs after the first (which includes compilation)."""
    steady = epoch_seconds[1:] or epoch_seconds
    return images / float(np.median(steady)) if steady else None
