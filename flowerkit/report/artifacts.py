"""Everything written into a run or evaluation folder, in one place.

Every file is written under a temporary name beside its final one and then
renamed over it, so an interrupted write (a crash, a full disk) leaves the
previous file intact instead of a truncated one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import uuid
from pathlib import Path

from flowerkit.config.recipe import Recipe
from flowerkit.errors import FlowerkitError
from flowerkit.report import plots

# A run folder: what `flowerkit.train` writes, and what resuming reads.
MODEL = "model.keras"
RECIPE = "recipe.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
METRICS = "metrics.json"
BACKUP = "backup"
LOCK = ".lock"  # held by the run writing the folder (`locked`)
LOCK_HOLDER = ".lock.pid"


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
    except OSError as error:
        raise FlowerkitError(_write_failure(path, error)) from None
    finally:
        partial.unlink(missing_ok=True)


def _write_failure(path: Path, error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"Could not write {path}: no space left on device; free some space and run "
                f"again (any earlier {path.name} is unchanged).")
    return f"Could not write {path}: {error.strerror or error} (any earlier {path.name} is unchanged)."


@contextlib.contextmanager
def locked(folder: Path):
    """Holds `folder`'s lock while a run writes it: a second run on the same
    folder is refused instead of mixing its files with the first one's.

    An OS file lock (flock on Unix), so the kernel releases it when its
    process ends, however it ends: a `kill -9` leaves no stale lock. The
    folders this call created (the run folder, a missing `runs/` above it)
    are removed again when the run left them empty (it failed before writing
    anything, e.g. on a wrong --data)."""
    import filelock

    folder = Path(folder)
    created = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(folder / LOCK), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise FlowerkitError(
            f"{folder} is being written by another flowerkit run{_lock_holder(folder)}; "
            "wait for it to finish, or choose another --output."
        ) from None
    if not (folder / LOCK).exists():  # removed by the run that held it as this one waited
        lock.release()
        raise FlowerkitError(f"{folder} was being written by another flowerkit run; try again.")
    try:
        (folder / LOCK_HOLDER).write_text(f"{os.getpid()}\n")
        yield
    finally:
        # The lock files go while the lock is still held, so the folder ends
        # as the run left it, finished or failed.
        for name in (LOCK_HOLDER, LOCK):
            (folder / name).unlink(missing_ok=True)
        lock.release()
        if created:
            _remove_if_only_locks(folder, created)


def _remove_if_only_locks(folder: Path, created: list[Path]) -> None:
    try:
        if set(os.listdir(folder)) <= {LOCK, LOCK_HOLDER}:
            for name in (LOCK_HOLDER, LOCK):
                (folder / name).unlink(missing_ok=True)
            for path in created:
                path.rmdir()  # fails on a folder that is not empty: leave it and those above
    except OSError:  # another run started writing there meanwhile: leave it
        pass


def _lock_holder(folder: Path) -> str:
    try:
        return f" (pid {int((folder / LOCK_HOLDER).read_text())})"
    except (OSError, ValueError):
        return ""


def write_json(path: Path, data) -> None:
    with replacing(path) as partial:
        partial.write_text(json_text(data) + "\n")


def json_text(data, ensure_ascii: bool = True) -> str:
    """`data` as JSON indented by 2, except that a list of numbers stays on
    one line: a 1,000-class confusion matrix is 1,000 lines, not a million."""
    marker = f"flowerkit-{uuid.uuid4().hex}-"  # a string no real value holds
    numbers = []

    def mark(value):
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            if value and all(isinstance(item, (int, float)) for item in value):
                numbers.append(json.dumps(value, ensure_ascii=ensure_ascii))
                return f"{marker}{len(numbers) - 1}"
            return [mark(item) for item in value]
        return value

    text = json.dumps(mark(data), indent=2, ensure_ascii=ensure_ascii)
    return re.sub(re.escape(f'"{marker}') + r'(\d+)"', lambda found: numbers[int(found.group(1))], text)


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
    # An epoch logged just before a kill, but not backed up, runs again on
    # resuming: its last row counts. Rows cut short by a kill are dropped.
    by_epoch = {}
    for row in rows:
        if None not in row.values() and None not in row:
            by_epoch[row.get("epoch", len(by_epoch))] = row
    rows = [by_epoch[epoch] for epoch in sorted(by_epoch, key=_epoch_number)]
    if not rows:
        return {}
    return {
        key: [float(row[key]) for row in rows] for key in rows[0] if key not in ("epoch", "phase")
    }


def _epoch_number(epoch) -> float:
    try:
        return float(epoch)
    except (TypeError, ValueError):
        return float("inf")
