"""Train a recipe end to end:

    data -> model -> phase 1 (head) -> [phase 2 (fine-tuning)]
         -> validation predictions -> artefacts
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import keras
import numpy as np

from flowerkit.backends import allocator, compile_cache
from flowerkit.config.recipe import Recipe
from flowerkit.data.balance import class_weights
from flowerkit.data.loading import load_data
from flowerkit.distribute import plan as distribution
from flowerkit.report.data_summary import summary_line
from flowerkit.inference.predicting import predict_subset
from flowerkit.model.backbones import get_backbone
from flowerkit.model.build import build_model, unfreeze_backbone
from flowerkit.report import artifacts
from flowerkit.report.metrics import classification_report
from flowerkit.training import phases
from flowerkit.training.record import run_info
from flowerkit.training.run_folder import EpochTimer, RunFolder, run_folder, save_alongside


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

    On the devices `recipe.distribution` asks for (`flowerkit.distribute`);
    `tpu` names a TPU to reach (TensorFlow: "local" on a TPU VM).

    The process-wide settings a run needs are made here, not when a model
    is built: Keras's global seed (from the recipe), on PyTorch with a CPU
    the allocator (`flowerkit.backends.allocator`), and on JAX the kept
    compiled programs (`flowerkit.backends.compile_cache`).
    """
    get_backbone(recipe.backbone)  # an unknown name fails before any data is read
    plan = distribution.resolve(recipe, tpu)
    if verbose and plan.writes_run_folder and plan.mode != "none":
        print(f"flowerkit: {plan.describe()}", flush=True)
    # Model, both phases and the validation predictions in the engine's scope.
    with plan.scope(), contextlib.ExitStack() as stack:
        # The folder this process writes (process 0: output_dir), held under
        # its lock however training ends.
        folder = run_folder(Path(output_dir), plan) if output_dir else None
        if folder:
            stack.enter_context(artifacts.locked(folder))
        return _train(plan, recipe, source, folder, max_images, verbose, callbacks, overwrite)


def _train(plan, recipe, source, folder, max_images, verbose, callbacks, overwrite) -> TrainResult:
    verbose = verbose if plan.writes_run_folder else 0  # progress from process 0 only
    started = time.perf_counter()
    if folder and not overwrite:
        RunFolder.check_not_finished(folder)  # before reading any data
    keras.utils.set_random_seed(recipe.seed)  # initial weights, dropout, augmentation
    allocator.configure()
    compile_cache.configure()
    # verbose as `fit` takes it: 2 (--quiet) and 0 one line per pass, else a bar on a terminal.
    quiet = True if verbose in (0, 2) else None
    data = load_data(recipe, source, max_images=max_images, quiet=quiet)
    recipe = recipe.replace(class_names=data.class_names)
    if verbose and data.inspection:
        print(f"flowerkit: {summary_line(data.inspection)}", flush=True)
    run = RunFolder(folder, recipe, verbose, overwrite) if folder else None
    model = build_model(recipe, plan=plan)  # inside the plan's scope: data-parallel when it is
    timer = EpochTimer(run.timing if run else None, started)
    results = []
    if run and run.phase_finished(phases.HEAD):
        run.load_finished(model, phases.HEAD)  # phase 1 ended in an earlier run
    else:
        callbacks_1 = [timer, *(run.callbacks(phases.HEAD) if run else []), *callbacks]
        results.append(phases.train_head(model, data, recipe, callbacks_1, verbose, plan))
        if run:
            run.save_finished(model, phases.HEAD)
    if recipe.fine_tune_epochs and run and run.phase_finished(phases.FINE_TUNE):
        unfreeze_backbone(model, recipe)  # as phase 2 leaves it, for the saved file
        run.load_finished(model, phases.FINE_TUNE)
    elif recipe.fine_tune_epochs:
        callbacks_2 = [timer, *(run.callbacks(phases.FINE_TUNE) if run else []), *callbacks]
        results.append(phases.fine_tune(model, data, recipe, callbacks_2, verbose, plan))
        if run:
            run.save_finished(model, phases.FINE_TUNE)
    history = run.history() if run else _joined(results)
    history["phase"] = [phases.HEAD] * min(recipe.epochs, len(history["loss"]))
    history["phase"] += [phases.FINE_TUNE] * (len(history["loss"]) - len(history["phase"]))

    predictions = predict_subset(
        model, data.validation, sample_positions=_shown_images(len(data.validation), recipe.seed),
        plan=plan,
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
        **run_info(recipe, plan),
        "source": data.source,
        "validation_report": classification_report(
            predictions.labels, predictions.predicted, recipe.class_names
        ),
        "class_weights": _listed(
            class_weights(data.train.index.labels, len(data.class_names), recipe.class_weight)
        ),
        "data_inspection": data.inspection,
    }
    metrics["val_balanced_accuracy"] = metrics["validation_report"]["balanced_accuracy"]
    if run and plan.writes_run_folder:
        artifacts.write_run(run.folder, model, recipe.class_names, history, metrics, predictions)
    elif run:
        save_alongside(model)  # saving takes every process
    if run:
        run.finish()
    written = run.folder if run and plan.writes_run_folder else None
    return TrainResult(model, recipe, history, metrics, written)


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


def _images_per_second(images: int, epoch_seconds: list[float]) -> float | None:
    """Median over epochs after the first (which includes compilation)."""
    steady = epoch_seconds[1:] or epoch_seconds
    return images / float(np.median(steady)) if steady else None
