"""The training command that works offline with what is on this machine: a
preset whose ImageNet weights are in the Keras cache, and local photos.
`flowerkit train` answers a failed download with it (`offline_advice`)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from flowerkit.config.presets import PRESETS
from flowerkit.config.recipe import Recipe
from flowerkit.keras_home import keras_home

# Where a checkout next to the project's shared data, or a test run, keeps the photos.
_PHOTO_FOLDERS = ("{shared}/data/flower_photos", "../shared/data/flower_photos", "flower_photos")


def keras_models_folder() -> Path:
    return keras_home() / "models"


def weights_cached(recipe: Recipe, models: Path) -> bool:
    """Whether `recipe` needs no download: no weights, a file, or Keras's
    cached MobileNetV2 file for its alpha and size."""
    if recipe.weights in (None, "none"):
        return True
    if recipe.weights != "imagenet":
        return Path(recipe.weights).exists()
    if recipe.backbone != "mobilenet_v2":
        return False
    alpha = float(recipe.backbone_kwargs.get("alpha", 1.0))
    # Keras has files for these sizes and loads the 224 one at any other.
    size = recipe.image_size if recipe.image_size in (96, 128, 160, 192, 224) else 224
    return (models / f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{size}_no_top.h5").is_file()


def offline_preset(recipe: Recipe, preset: str, models: Path) -> tuple[str, list[str]]:
    """(why, flags): keep `preset` when its weights are here, else the first
    preset whose weights are, else train without pretrained weights."""
    if weights_cached(recipe, models):
        return "", ["--preset", preset]
    for name in PRESETS:
        candidate = Recipe.from_preset(name)
        if candidate.weights not in (None, "none") and weights_cached(candidate, models):
            return f"its ImageNet weights are in {models}", ["--preset", name]
    return "no ImageNet weights are cached", ["--preset", preset, "--weights", "none"]


def local_photos(data: str | None) -> str:
    """The `--data` given, or a photo folder found here, or DIR."""
    if data not in (None, "", "tf_flowers"):
        return data
    shared = os.environ.get("FLOWERKIT_SHARED", "../shared")
    for pattern in _PHOTO_FOLDERS:
        folder = Path(pattern.format(shared=shared))
        if folder.is_dir():
            return str(folder.resolve())  # a path that works from any folder, without `..`
    return "DIR"


def offline_advice(what: str, recipe: Recipe, preset: str, data: str | None, output: str | None) -> str:
    """One line: what failed to download and the command that works offline."""
    models = keras_models_folder()
    why, preset_flags = offline_preset(recipe, preset, models)
    photos = local_photos(data)
    command = ["flowerkit", "train", *preset_flags, "--data", photos]
    if output:
        command += ["--output", output]
    notes = [why] if why else []
    if photos == "DIR":
        notes.append("DIR: a folder with one subfolder per class")
    notes.append("other weights: --weights PATH")
    return (f"Could not download {what} (offline?). This works with what is on this machine: "
            f"{shlex.join(command)} ({'; '.join(notes)}).")
