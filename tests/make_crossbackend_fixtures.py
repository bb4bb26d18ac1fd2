"""Regenerates tests/fixtures/crossbackend/<backend>/ for the current backend.

    KERAS_BACKEND=jax python tests/make_crossbackend_fixtures.py

Trains a small model (MobileNetV2 alpha 0.35 with the shared ImageNet weights,
64x64, augmentation and dropout included so their serialisation is covered)
for a few steps on synthetic images, saves it, and records its probabilities
on fixed inputs. tests/test_cross_backend.py loads every backend's model on
the current backend and checks it predicts the same.
"""

import sys
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from tests.helpers import SHARED  # noqa: E402

from flowerkit import build_model, get_preset  # noqa: E402

CLASS_NAMES = ("blue", "green", "red")


def fixture_recipe(weights):
    return get_preset("mobilenet_v2_035").replace(
        image_size=64, class_names=CLASS_NAMES, weights=weights, batch_size=8, epochs=1,
        augmentation=("flip", "zoom:0.1"),
    )


def fixture_inputs():
    return np.random.default_rng(123).integers(0, 256, (4, 64, 64, 3)).astype("uint8")


def main():
    recipe = fixture_recipe(str(SHARED / "weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5"))
    model = build_model(recipe)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (32, 64, 64, 3)).astype("float32")
    labels = np.eye(3, dtype="float32")[rng.integers(0, 3, 32)]
    model.fit(images, labels, epochs=2, batch_size=8, verbose=0)
    folder = Path(__file__).parent / "fixtures/crossbackend" / keras.backend.backend()
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    recipe.replace(weights=None).save(folder / "recipe.json")
    inputs = fixture_inputs()
    np.save(folder / "probabilities.npy", model.predict(inputs.astype("float32"), verbose=0))
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
