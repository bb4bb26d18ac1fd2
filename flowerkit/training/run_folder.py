"""The run folder: where a run's files go, and the backups that let the same
command resume an interrupted run (a crash, `kill -9`) in either phase.

backup/ holds, until the run's files are written: each phase's latest epoch
(`AtomicBackupAndRestore`), each finished phase's weights, and the seconds
spent so far (`EpochTimer`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import keras

from flowerkit import compat
from flowerkit.config.recipe import Recipe
from flowerkit.distribute.plan import Plan
from flowerkit.errors import FlowerkitError
from flowerkit.report import artifacts
from flowerkit.training.features import cache_root
from flowerkit.training.phases import FINE_TUNE, HEAD


def run_folder(output_dir: Path, plan: Plan) -> Path:
    """Where this process keeps its run: `output_dir` on process 0; on the
    others, a private folder in the Keras cache that holds only their
    backups (so that a rerun resumes every process from the same epoch)."""
    if plan.writes_run_folder:
        return output_dir
    key = hashlib.sha256(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]
    return cache_root().parent / "process_runs" / key / f"process-{plan.process_index}"


def save_alongside(model) -> None:
    """What the processes that do not write call while process 0 saves the
    model: saving reads values that span every process's devices, which
    takes all of them. The copy goes to a temporary folder and away."""
    with tempfile.TemporaryDirectory(prefix="flowerkit-save-") as folder:
        model.save(Path(folder) / "model.keras")


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
        # A run that never finished an epoch (it failed on its weights, say)
        # holds nothing to resume: it is started over, whatever its recipe.
        if overwrite or not self._holds_finished_epoch():
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

    def _holds_finished_epoch(self) -> bool:
        return any(self.backup.glob("*/epoch-*/training_metadata.json")) or any(
            self.phase_finished(phase) for phase in (HEAD, FINE_TUNE)
        )

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
        if self.phase_finished(HEAD):
            finished.append(recipe.epochs)
        if self.phase_finished(FINE_TUNE):
            finished.append(recipe.epochs + recipe.fine_tune_epochs)
        return f" after epoch {int(max(finished))}" if finished else ""


class AtomicBackupAndRestore(compat.BackupAndRestore):
    """Keras's BackupAndRestore, with every backup written whole or not at
    all: Keras writes the weights and then the epoch number in place, so a
    process killed while saving can leave a truncated weights file (which
    fails the resume) or weights one epoch ahead of their epoch number.
    Here each backup goes into a new folder, `epoch-N`, renamed into place
    once complete; resuming reads the newest whole one."""

    def on_train_begin(self, logs=None):
        latest = self._latest()
        if latest is not None:
            self.restore_from(str(latest / "latest.weights.h5"), str(latest / "training_metadata.json"))
        super().on_train_begin(logs)

    def save_backup(self, epoch, batch):
        root = Path(self.backup_dir)
        partial = root / f".partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        self.model.save_weights(str(partial / "latest.weights.h5"))
        metadata = {"epoch": epoch, "batch": batch}
        (partial / "training_metadata.json").write_text(json.dumps(metadata))
        target = root / f"epoch-{epoch:05d}"
        shutil.rmtree(target, ignore_errors=True)
        os.rename(partial, target)
        for older in root.iterdir():  # earlier epochs, and what killed processes left
            if older != target:
                shutil.rmtree(older, ignore_errors=True)

    def _latest(self) -> Path | None:
        root = Path(self.backup_dir)
        whole = sorted(root.glob("epoch-*/training_metadata.json")) if root.is_dir() else []
        return whole[-1].parent if whole else None


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
