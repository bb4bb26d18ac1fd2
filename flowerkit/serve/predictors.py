"""What the server runs: a `Predictor` turns a batch of decoded images into
class probabilities, and says what it is for `GET /v1/model`.

Two kinds, chosen from the model path by `flowerkit.serve.loading.load_predictor`:

- an exported `.onnx` / `.tflite` file beside its `labels.txt`, run in its
  own runtime (`ExportedPredictor`); neither Keras nor a backend is imported,
  so a small deployment needs only onnxruntime or ai-edge-litert; a
  recipe.json beside it is optional, but read by the one rule of
  `flowerkit.report.run_recipe` when there;
- a run folder or `model.keras`, on the current Keras backend
  (`flowerkit.serve.keras_predictor.KerasPredictor`, imported only then).

Images are decoded by `flowerkit.data.decode.decode_image` (Pillow only) at
the model's input size, exactly as `flowerkit predict` decodes them.
"""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

import numpy as np

from flowerkit import __version__
from flowerkit.errors import FlowerkitError
from flowerkit.config.recipe import Recipe
from flowerkit.exporting.runtimes import load_exported, read_labels
from flowerkit.report.run_recipe import recipe_beside

EXPORTED_SUFFIXES = (".onnx", ".tflite")
RECIPE_SUMMARY = ("name", "backbone", "backbone_kwargs", "weights", "head", "image_size",
                  "epochs", "fine_tune_epochs", "augmentation", "precision")


class Predictor:
    """The interface the server uses. Subclasses set `class_names`,
    `image_size` and `kind`, and implement `run` and `describe`."""

    class_names: tuple[str, ...] = ()
    image_size: int = 0
    kind: str = ""  # "keras", "onnx" or "litert"
    recipe: Recipe | None = None  # the recipe.json beside the model, if any
    path: Path

    sizes: tuple[int, ...] = (1,)  # the batch shapes the model sees (set by warm_up)

    def run(self, images: np.ndarray) -> np.ndarray:
        """The model on one batch: (n, S, S, 3) float32 RGB 0-255 -> (n, classes)."""
        raise NotImplementedError

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities of `images`, run padded up to the next of `sizes`."""
        count = len(images)
        size = next((s for s in self.sizes if s >= count), count)
        if size > count:
            images = np.concatenate([images, np.zeros((size - count, *images.shape[1:]), images.dtype)])
        return np.asarray(self.run(images), dtype=np.float32)[:count]

    def warm_up(self, max_batch: int) -> None:
        """Runs every batch shape the server will use once, so that live
        requests pay no tracing, compilation or allocation."""
        self.sizes = batch_sizes(max_batch)
        blank = np.zeros((max_batch, self.image_size, self.image_size, 3), np.float32)
        for size in self.sizes:
            self.run(blank[:size])

    def describe(self) -> dict:
        """For GET /v1/model: what runs (format), on what (backend or runtime),
        with which versions."""
        raise NotImplementedError


def batch_sizes(max_batch: int) -> tuple[int, ...]:
    """Powers of two below `max_batch`, and `max_batch`. Batches are padded
    up to the next one, so that the model sees a handful of shapes, all at
    warm-up: backends that compile per input shape (JAX, tf.function) then
    never compile on live traffic, and onnxruntime's memory arena stops
    growing once each shape has run."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return (*sizes, max_batch)


class ExportedPredictor(Predictor):
    """An exported `.onnx` or `.tflite` file in its own runtime."""

    def __init__(self, path):
        self.path = Path(path)
        self.class_names = read_labels(self.path)
        self.model = load_exported(self.path)
        self.kind = self.model.format
        self.image_size = self._input_size()
        self.recipe = recipe_beside(self.path, required=False)

    def _input_size(self) -> int:
        if self.kind == "onnx":
            shape = self.model.session.get_inputs()[0].shape
        else:
            shape = [int(d) for d in self.model.interpreter.get_input_details()[0]["shape"]]
        if len(shape) != 4 or shape[1] != shape[2] or not isinstance(shape[1], int) or shape[-1] != 3:
            raise FlowerkitError(
                f"{self.path} is not a flowerkit export: its input is {shape}, where flowerkit "
                "exports take (batch, S, S, 3) images."
            )
        return shape[1]

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.model(images)

    def describe(self) -> dict:
        runtime_package = {"onnx": "onnxruntime", "litert": "ai-edge-litert"}[self.kind]
        info = {
            "format": self.kind,
            "engine": self.kind,
            "runtime": self.model.runtime,
            "versions": versions("numpy", "pillow", runtime_package),
        }
        if self.kind == "onnx":
            info["producer"] = self.model.session.get_modelmeta().custom_metadata_map.get("producer")
        return info


def recipe_summary(recipe: Recipe | None) -> dict | None:
    if recipe is None:
        return None
    values = recipe.to_dict()
    return {key: values[key] for key in RECIPE_SUMMARY if key in values}


def versions(*packages: str) -> dict[str, str]:
    """flowerkit's, Python's and these installed packages' versions."""
    found = {"flowerkit": __version__, "python": platform.python_version()}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


