"""The two training phases of a recipe.

    phase 1, "head":      the backbone frozen; the head trains on cached
                          features when it can (`Recipe.caches_features`),
                          else end to end on images
    phase 2, "fine_tune": the backbone (or its top layers) trains too, with
                          AdamW, warm-up + cosine decay, stronger augmentation
                          and label smoothing (`Recipe.fine_tune_*`)

Each returns a `PhaseResult`; both train the layers of the one `model` that
is saved, so the saved file is always the whole raw-RGB-to-softmax model.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings

import keras

from flowerkit import compat
from flowerkit.config.recipe import Recipe
from flowerkit.data.balance import class_weights
from flowerkit.data.loading import FlowerData
from flowerkit.data.pipelines import BadImagesReport, EpochStart, resolve_pipeline
from flowerkit.distribute import sharding
from flowerkit.distribute.plan import Plan
from flowerkit.model import build as model_lib
from flowerkit.model.build import FINE_TUNE, HEAD
from flowerkit.training import features


@dataclasses.dataclass
class PhaseResult:
    name: str
    epochs: int  # run in this call (fewer when it resumed)
    seconds: float
    info: dict
    history: dict  # this call's epoch logs


def train_head(model, data: FlowerData, recipe: Recipe, callbacks: list, verbose,
               plan: Plan | None = None) -> PhaseResult:
    """Phase 1 on cached features, or end to end on images, under `plan`
    (`flowerkit.distribute.plan`; None: one device)."""
    started = time.perf_counter()
    # Compiled again now that the steps per epoch (cached or not) are known,
    # for a learning-rate schedule over them.
    steps_per_epoch = math.ceil(len(data.train) / recipe.batch_size)
    weights = _class_weights(data, recipe)
    if not recipe.caches_features:
        model_lib.compile_model(model, recipe, steps_per_epoch, weights, plan)
        history = _fit(model, data.train.dataset, data.validation.dataset, recipe.epochs, 0,
                       callbacks, verbose, plan, _states(data))
        return _result(HEAD, started, history, {"feature_cache": "off"})
    extractor, head = model_lib.split_at_features(model)
    pipeline = resolve_pipeline()
    views = 2 if "flip" in recipe.augmentation else 1
    progress = 1 if verbose == "auto" else int(verbose)  # as `fit` shows its progress
    train = features.cached_features(extractor, recipe, data.train, views, pipeline, progress, plan)
    validation = features.cached_features(extractor, recipe, data.validation, 1, pipeline, progress, plan)
    feature_seconds = time.perf_counter() - started
    model_lib.compile_model(head, recipe, steps_per_epoch, weights, plan)
    epoch_ends = EpochEnds(started)
    history = _fit(
        head,
        features.FeatureBatches(train, recipe.batch_size, shuffle=True, seed=recipe.seed),
        features.FeatureBatches(validation, recipe.batch_size, shuffle=False, seed=recipe.seed),
        recipe.epochs, 0, [*callbacks, epoch_ends], verbose, plan,
    )
    info = {
        "feature_cache": "computed" if train.computed or validation.computed else "hit",
        "feature_views": views,
        "feature_seconds": feature_seconds,
        "epoch_end_seconds": epoch_ends.seconds,
        "feature_folders": [str(train.folder), str(validation.folder)],
    }
    return _result(HEAD, started, history, info)


class EpochEnds(keras.callbacks.Callback):
    """Seconds from the phase's start (feature pass included) to the end of
    each of its epochs (validation included): the frozen phase's cost after
    any number of epochs, not only after all of them."""

    def __init__(self, started: float):
        super().__init__()
        self.started = started
        self.seconds: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def fine_tune(model, data: FlowerData, recipe: Recipe, callbacks: list, verbose,
              plan: Plan | None = None) -> PhaseResult:
    """Phase 2: epochs `recipe.epochs + 1 ...` of the same history, under `plan`."""
    started = time.perf_counter()
    model_lib.unfreeze_backbone(model, recipe)
    wrapper = model_lib.fine_tuning_wrapper(model, recipe)
    steps_per_epoch = math.ceil(len(data.train) / recipe.batch_size)
    model_lib.compile_model(wrapper, recipe, steps_per_epoch, _class_weights(data, recipe), plan,
                            phase=FINE_TUNE)
    history = _fit(
        wrapper, data.train.dataset, data.validation.dataset,
        recipe.epochs + recipe.fine_tune_epochs, recipe.epochs, callbacks, verbose, plan, _states(data),
    )
    info = {"trainable_weights": len(wrapper.trainable_weights), "layers": recipe.fine_tune_layers or "all"}
    return _result(FINE_TUNE, started, history, info)


def _class_weights(data: FlowerData, recipe: Recipe):
    return class_weights(data.train.index.labels, len(data.class_names), recipe.class_weight)


def _states(data: FlowerData) -> tuple:
    """The training and validation pipelines' states (None: a PyDataset)."""
    return data.train.state, data.validation.state


def _result(name, started, history: dict, info: dict) -> PhaseResult:
    epochs = len(next(iter(history.values()), []))
    return PhaseResult(name, epochs, time.perf_counter() - started, info, history)


def _fit(model, train, validation, epochs, initial_epoch, callbacks, verbose, plan,
         states=(None, None)) -> dict:
    train_state, validation_state = states
    with warnings.catch_warnings():
        # tf.data with ignore_errors() has unknown length, which Keras reports
        # as "ran out of data" at the end of the first epoch: expected here.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        train = sharding.for_fit(train, plan)  # this process's part of each batch, under JAX
        history = model.fit(
            train,
            validation_data=sharding.for_fit(validation, plan),
            epochs=epochs,
            initial_epoch=initial_epoch,
            # A shuffled PyDataset is endless, one epoch after another (BatchSequence).
            steps_per_epoch=len(train) if getattr(train, "endless", False) else None,
            callbacks=[
                # First: the step count is right before any callback saves it.
                *compat.optimizer_step_callbacks(train),
                EpochStart(train), *sharding.epoch_callbacks(train_state, plan),
                *sharding.engine_callbacks(plan), *callbacks,
                BadImagesReport(train_state, validation_state),
            ],
            shuffle=False,  # the datasets shuffle themselves, every epoch
            verbose=verbose,
        )
    return {key: [float(v) for v in values] for key, values in history.history.items()}
