"""Loading a saved flowerkit model (`model.keras`) on any backend, safely,
with this backend's fast paths."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras

from flowerkit.backends.fastpaths import apply_fast_paths
from flowerkit.errors import FlowerkitError
from flowerkit.model.backbones import import_keras_hub


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
