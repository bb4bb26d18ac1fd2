"""Build the transfer-learning model a recipe describes.

    raw RGB 0-255 -> [augmentation] -> backbone preprocessing -> backbone
    (frozen: inference mode) -> flatten | pooling -> [Dense relu]* -> [dropout]
    -> Dense(softmax)
"""

from __future__ import annotations

import contextlib
import zipfile

from pathlib import Path

import keras

from flowerkit.augment import build_layers
from flowerkit.backbones import PREPROCESSING_SCALES, get_backbone, import_keras_hub
from flowerkit.errors import FlowerkitError
from flowerkit.recipe import Recipe
from flowerkit.runtime import resolve_jit_compile


def build_model(recipe: Recipe, num_classes: int | None = None, compile: bool = True) -> keras.Model:
    """Returns the (compiled) `keras.Model` for `recipe`.

    `num_classes` defaults to `len(recipe.class_names)`.
    """
    num_classes = num_classes or len(recipe.class_names)
    if num_classes < 2:
        raise FlowerkitError(
            "The model needs at least two classes: set recipe.class_names or pass num_classes."
        )
    keras.utils.set_random_seed(recipe.seed)
    with _dtype_policy(recipe.precision):
        model = _build_network(recipe, num_classes)
    if compile:
        compile_model(model, recipe)
    return model


def _build_network(recipe: Recipe, num_classes: int) -> keras.Model:
    spec = get_backbone(recipe.backbone)
    inputs = keras.Input(shape=recipe.image_shape, name="image")
    x = inputs
    if recipe.augmentation:
        x = keras.Sequential(build_layers(recipe.augmentation, recipe.seed), name="augmentation")(x)
    scale = PREPROCESSING_SCALES[spec.preprocessing]
    if scale is not None:
        x = keras.layers.Rescaling(scale[0], offset=scale[1], name="preprocessing")(x)
    if spec.build is not None:
        backbone = spec.build(recipe.image_shape, recipe.weights, dict(recipe.backbone_kwargs))
        backbone.trainable = recipe.trainable_backbone
        # Inference mode even when fine-tuning: BatchNorm statistics learnt on
        # ImageNet stay put, as in the Keras transfer-learning guide.
        x = backbone(x, training=False)
    if recipe.head == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    for index, units in enumerate(recipe.head_units):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{index}")(x)
    if recipe.dropout:
        x = keras.layers.Dropout(recipe.dropout, seed=recipe.seed, name="dropout")(x)
    # float32 softmax even under mixed precision, for a stable loss.
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name=f"flowerkit_{recipe.backbone}")


def compile_model(model: keras.Model, recipe: Recipe) -> None:
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    model.compile(
        optimizer=optimizers[recipe.optimizer](learning_rate=recipe.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=["accuracy"],
        jit_compile=resolve_jit_compile(recipe.jit_compile),
    )


def load_model(path) -> keras.Model:
    """Loads a saved flowerkit model on any backend (uncompiled: for inference)."""
    if not Path(path).is_file():
        raise FlowerkitError(f"Model file not found: {path}")
    if _uses_keras_hub(path):
        import_keras_hub()  # registers the keras-hub layers the file names
    return keras.models.load_model(path, compile=False)


def _uses_keras_hub(path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return b"keras_hub" in archive.read("config.json")
    except (zipfile.BadZipFile, KeyError):
        raise FlowerkitError(f"Not a Keras model file (.keras): {path}") from None


@contextlib.contextmanager
def _dtype_policy(name: str):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
