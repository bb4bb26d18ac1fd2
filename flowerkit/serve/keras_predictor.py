"""A saved flowerkit model (`model.keras` with its `recipe.json`) served on
the current Keras backend. Imports Keras: `flowerkit.serve.predictors`
imports this module only for a .keras model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowerkit import runtime
from flowerkit.inference import load_trained
from flowerkit.serve.predictors import Predictor, versions


def batch_sizes(max_batch: int) -> list[int]:
    """The batch shapes the model ever sees: powers of two below `max_batch`,
    and `max_batch`. Batches are padded up to the next one, so that backends
    that compile per input shape (JAX, tf.function) compile a handful of
    shapes, all at warm-up, instead of one per batch size on live traffic."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return [*sizes, max_batch]


class KerasPredictor(Predictor):
    kind = "keras"

    def __init__(self, path):
        self.path = Path(path)
        self.model, self.recipe = load_trained(self.path)
        self.class_names = tuple(self.recipe.class_names)
        self.image_size = int(self.model.input_shape[1])
        self._sizes = [1]

    def warm_up(self, max_batch: int) -> None:
        self._sizes = batch_sizes(max_batch)
        blank = np.zeros((max_batch, self.image_size, self.image_size, 3), np.float32)
        for size in self._sizes:
            self.predict(blank[:size])

    def predict(self, images: np.ndarray) -> np.ndarray:
        count = len(images)
        size = next((s for s in self._sizes if s >= count), count)
        if size > count:
            padding = np.zeros((size - count, *images.shape[1:]), images.dtype)
            images = np.concatenate([images, padding])
        return np.asarray(self.model.predict_on_batch(images), dtype=np.float32)[:count]

    def describe(self) -> dict:
        return {
            "format": "keras",
            "backend": runtime.backend(),
            "device": runtime.device_summary(),
            "versions": {**versions("pillow"), **runtime.library_versions()},
        }
