"""A saved flowerkit model (`model.keras` with its `recipe.json`) served on
the current Keras backend, or on the engine `flowerkit.exporting.engines`
picks for it (ONNX Runtime / LiteRT on a verified export cached beside it).
Imports Keras: `flowerkit.serve.loading` imports this module only for a
.keras model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowerkit.backends import devices as runtime
from flowerkit.exporting.engines import choose_engine
from flowerkit.inference.loading import load_run
from flowerkit.serve.predictors import Predictor, versions


class KerasPredictor(Predictor):
    kind = "keras"

    def __init__(self, path, engine: str = "auto"):
        self.path = Path(path)
        run = load_run(self.path)
        self.model, self.recipe = run.model, run.recipe
        self.class_names, self.image_size = run.class_names, run.image_size
        self.engine = choose_engine(self.path, engine)
        self.run_batch = self.engine.predict or self.model.predict_on_batch

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.run_batch(images)

    def describe(self) -> dict:
        return {
            "format": "keras",
            "engine": self.engine.engine,
            "backend": runtime.backend(),
            "device": runtime.device_summary(),
            "versions": {**versions("pillow"), **runtime.library_versions()},
        }
