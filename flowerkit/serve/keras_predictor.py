"""A saved flowerkit model (`model.keras` with its `recipe.json`) served on
the current Keras backend. Imports Keras: `flowerkit.serve.predictors`
imports this module only for a .keras model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowerkit.backends import devices as runtime
from flowerkit.inference.loading import load_trained
from flowerkit.serve.predictors import Predictor, versions


class KerasPredictor(Predictor):
    kind = "keras"

    def __init__(self, path):
        self.path = Path(path)
        self.model, self.recipe = load_trained(self.path)
        self.class_names = tuple(self.recipe.class_names)
        self.image_size = int(self.model.input_shape[1])

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.model.predict_on_batch(images)

    def describe(self) -> dict:
        return {
            "format": "keras",
            "backend": runtime.backend(),
            "device": runtime.device_summary(),
            "versions": {**versions("pillow"), **runtime.library_versions()},
        }
