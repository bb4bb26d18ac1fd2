"""Running a model: load a trained run (model + recipe), predict a dataset
or image files."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import keras
import numpy as np

from flowerkit.backbones import import_keras_hub
from flowerkit.data.decode import decode_image
from flowerkit.data.pipelines import iterate_batches
from flowerkit.errors import FlowerkitError
from flowerkit.fastpath import apply_fast_paths
from flowerkit.recipe import Recipe


@dataclasses.dataclass
class Predictions:
    """Model outputs over a dataset, aligned with the labels actually seen."""

    probabilities: np.ndarray  # (n, classes)
    labels: np.ndarray  # (n,) int
    sample_images: np.ndarray  # a few images, for plots
    sample_positions: np.ndarray  # their positions in the dataset
    tta_probabilities: np.ndarray | None = None  # with test-time augmentation

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


TTA = (None, "flip")


def _check_tta(tta) -> None:
    if tta not in TTA:
        raise FlowerkitError(f"tta must be 'flip' or None, got {tta!r}.")


def _flip_averaged(model, images, plain) -> np.ndarray:
    """Flip test-time augmentation: the mean of the probabilities for the
    images and for their mirror images."""
    flipped = np.asarray(model.predict_on_batch(np.ascontiguousarray(images[:, :, ::-1])))
    return (plain + flipped) / 2


def load_model(path) -> keras.Model:
    """Loads a saved flowerkit model on any backend (uncompiled: for
    inference), with the fastest depthwise convolutions for this backend."""
    if not Path(path).is_file():
        raise FlowerkitError(f"Model file not found: {path}")
    config = _read_config(path)
    if "keras_hub" in json.dumps(config):
        import_keras_hub()  # registers the keras-hub layers the file names
    if _class_names_in(config) & {"Lambda", "__lambda__"}:
        raise FlowerkitError(_UNSAFE.format(path=path, what="a Lambda layer"))
    try:
        # safe_mode (Keras's default, explicit here): never run code from a file.
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged file
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "lambda" in message.lower() or "unsafe" in message.lower():
            raise FlowerkitError(_UNSAFE.format(path=path, what="Python code")) from None
        raise FlowerkitError(f"Cannot load the model {path} (damaged, or not a flowerkit model): "
                             f"{message}") from None
    _check_image_classifier(model, path)
    apply_fast_paths(model)
    return model


_UNSAFE = (
    "Refusing to load {path}: it contains {what} (arbitrary code, which loading would run); "
    "flowerkit models have none. If you trust its source, load it yourself with "
    "keras.models.load_model(path, safe_mode=False)."
)


def _read_config(path) -> dict:
    """The model's config.json from the .keras file (a zip)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError):
        config = None
    if not isinstance(config, dict):
        raise FlowerkitError(f"Not a Keras model file (.keras), or a truncated one: {path}")
    return config


def _class_names_in(config) -> set[str]:
    """Every "class_name" in a Keras config, nested layers included."""
    if isinstance(config, dict):
        names = {config["class_name"]} if isinstance(config.get("class_name"), str) else set()
        return names.union(*(_class_names_in(value) for value in config.values()))
    if isinstance(config, list):
        return set().union(*(_class_names_in(value) for value in config))
    return set()


def _check_image_classifier(model, path) -> None:
    """What flowerkit's models take and give: (batch, S, S, 3) raw RGB images
    in, (batch, classes) probabilities out."""
    try:
        inputs, outputs = tuple(model.input_shape), tuple(model.output_shape)
    except (AttributeError, ValueError):  # several inputs or outputs
        inputs = outputs = None
    if (
        inputs is None or len(inputs) != 4 or inputs[-1] != 3 or inputs[1] != inputs[2]
        or not inputs[1] or outputs is None or len(outputs) != 2 or not outputs[-1]
    ):
        raise FlowerkitError(
            f"{path} is not a flowerkit model: it takes {inputs} and gives {outputs}, where "
            "flowerkit expects (None, S, S, 3) images in and (None, classes) out."
        )


def load_trained(model_path) -> tuple[keras.Model, Recipe]:
    """A saved model and the recipe saved beside it (recipe.json)."""
    model_path = Path(model_path)
    model = load_model(model_path)
    recipe_path = model_path.with_name("recipe.json")
    if recipe_path.is_file():
        return model, Recipe.load(recipe_path)
    classes = model.output_shape[-1]
    return model, Recipe(
        class_names=tuple(f"class_{i}" for i in range(classes)),
        image_size=model.input_shape[1],
    )


def predict_dataset(model, dataset, sample_positions=range(9), tta=None) -> Predictions:
    """Predicts every batch; keeps the images at `sample_positions` for plots.

    With tta="flip", also the flip-averaged probabilities.
    """
    _check_tta(tta)
    wanted = sorted(int(p) for p in sample_positions)
    probabilities, tta_probabilities, labels, samples = [], [], [], []
    seen = 0
    for images, one_hot in iterate_batches(dataset):
        probabilities.append(np.asarray(model.predict_on_batch(images)))
        if tta:
            tta_probabilities.append(_flip_averaged(model, images, probabilities[-1]))
        labels.append(np.asarray(one_hot).argmax(axis=1))
        samples += [np.asarray(images[p - seen]) for p in wanted if seen <= p < seen + len(images)]
        seen += len(images)
    if not probabilities:
        raise FlowerkitError("No images to predict on.")
    return Predictions(
        probabilities=np.concatenate(probabilities),
        labels=np.concatenate(labels),
        sample_images=np.stack(samples) if samples else np.zeros((0, 1, 1, 3)),
        sample_positions=np.asarray([p for p in wanted if p < seen], dtype=np.int64),
        tta_probabilities=np.concatenate(tta_probabilities) if tta else None,
    )


def predict_images(model, image_paths, class_names, top_k: int = 3, tta=None) -> list[dict]:
    """Top-k classes and probabilities for each image file (flip-averaged
    with tta="flip")."""
    _check_tta(tta)
    if not image_paths:
        raise FlowerkitError("No images given.")
    if top_k < 1:
        raise FlowerkitError(f"top_k must be at least 1, got {top_k}.")
    image_size = model.input_shape[1]
    images = []
    for path in image_paths:
        if not Path(path).is_file():
            raise FlowerkitError(f"Image not found: {path}")
        try:
            images.append(decode_image(str(path), image_size))
        except Exception as error:
            raise FlowerkitError(f"Cannot read image {path}: {error}") from None
    batches = []
    for start in range(0, len(images), 64):
        batch = np.stack(images[start : start + 64])
        probabilities = np.asarray(model.predict_on_batch(batch))
        batches.append(_flip_averaged(model, batch, probabilities) if tta else probabilities)
    probabilities = np.concatenate(batches)
    top_k = min(top_k, len(class_names))
    results = []
    for path, row in zip(image_paths, probabilities):
        best = np.argsort(row)[::-1][:top_k]
        results.append(
            {
                "image": str(path),
                "top": [{"class": class_names[i], "probability": float(row[i])} for i in best],
            }
        )
    return results
