"""Regenerates tests/fixtures/crossbackend/<backend>/ for the current backend.

    KERAS_BACKEND=jax python tests/make_crossbackend_fixtures.py

and tests/fixtures/crossbackend/jax_data_parallel/, a model trained by
`flowerkit.train` on 4 virtual JAX devices (keras.distribution.DataParallel):

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=4 \
        python tests/make_crossbackend_fixtures.py --data-parallel

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
        head_units=(256,), learning_rate=1e-3,  # the head the committed fixtures have
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


def main_data_parallel():
    import shutil
    import tempfile

    import flowerkit
    from tests.helpers import make_image_folder

    folder = Path(__file__).parent / "fixtures/crossbackend/jax_data_parallel"
    with tempfile.TemporaryDirectory() as work:
        photos = make_image_folder(Path(work) / "photos", per_class=16, classes=CLASS_NAMES)
        recipe = flowerkit.get_preset("dense").replace(
            image_size=64, head_units=(), batch_size=8, epochs=2, distribution="data_parallel:4"
        )
        result = flowerkit.train(recipe, source=str(photos), output_dir=Path(work) / "run", verbose=0)
        assert result.metrics["devices"] == 4, result.metrics
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("model.keras", "recipe.json"):
            shutil.copy(Path(work) / "run" / name, folder / name)
    model = flowerkit.load_model(folder / "model.keras")
    np.save(folder / "probabilities.npy", model.predict(fixture_inputs().astype("float32"), verbose=0))
    print(f"wrote {folder}")


if __name__ == "__main__":
    main_data_parallel() if "--data-parallel" in sys.argv else main()
