"""flowerkit.backends.affine: zoom, rotation and translation resampled as one
batch on JAX and PyTorch give Keras's own pixels, and save as stock layers."""

from __future__ import annotations

import numpy as np
import pytest

import keras
from flowerkit import compat
from flowerkit.backends.fastpaths import apply_fast_paths
from flowerkit.backends.policy import affine_implementation
from flowerkit.backends.affine import is_batched_affine

# Batched resampling exists for JAX and PyTorch (TensorFlow's own kernel is batched).
needs_batched = pytest.mark.backends("jax", "torch")


@pytest.mark.parametrize(
    "backend, setting, expected",
    [
        ("jax", "auto", "batched"),
        ("torch", "auto", "batched"),
        ("jax", "stock", "stock"),
        ("torch", "batched", "batched"),
        ("tensorflow", "auto", "stock"),
        ("tensorflow", "batched", "stock"),  # nothing to switch there
    ],
)
def test_affine_policy(backend, setting, expected):
    assert affine_implementation(backend, setting) == expected


def test_unknown_affine_setting_is_a_clear_error():
    with pytest.raises(ValueError, match="affine_augmentation.*batched"):
        affine_implementation("jax", "fast")


@needs_batched
@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.layers.RandomZoom(0.3, seed=1),
        lambda: keras.layers.RandomRotation(0.1, seed=1),
        lambda: keras.layers.RandomTranslation(0.2, 0.2, seed=1),
        lambda: keras.layers.RandomZoom(0.3, fill_mode="constant", fill_value=7.0, seed=1),
        lambda: keras.layers.RandomRotation(0.1, fill_mode="nearest", interpolation="nearest", seed=1),
        lambda: keras.layers.RandomTranslation(0.3, 0.3, fill_mode="wrap", seed=1),
    ],
    ids=["zoom-reflect", "rotate-reflect", "translate-reflect", "zoom-constant-7",
         "rotate-nearest", "translate-wrap"],
)
def test_batched_affine_equals_stock(make):
    """Same seed, same random transforms: the same pixels, borders and fill
    modes included (a mode a backend's batched version lacks falls back)."""
    x = np.random.default_rng(0).uniform(0, 255, (6, 37, 50, 3)).astype("float32")  # odd, non-square
    outputs = []
    for setting in ("stock", "batched"):
        keras.utils.set_random_seed(0)
        layer = make()
        model = keras.Sequential([keras.Input((37, 50, 3)), layer])
        record = apply_fast_paths(model, "stock", "stock", "stock", affine=setting)
        assert record["affine_layers"] == (setting == "batched")
        assert record["affine_augmentation"] == setting
        assert is_batched_affine(layer) == (setting == "batched")
        outputs.append(keras.ops.convert_to_numpy(model(x, training=True)))
    assert np.abs(outputs[0] - x).mean() > 1.0  # the images really moved
    np.testing.assert_allclose(outputs[1], outputs[0], atol=2e-3)  # of 0..255
    # In inference the layers pass images through untouched, either way.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x, training=False)), x)


@pytest.mark.backends("jax")  # jax.jit
def test_batched_affine_compiles_with_xla():
    """Inside a jitted training step the batched path gives the stock pixels."""
    import jax

    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    outputs = []
    for setting in ("stock", "batched"):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.RandomRotation(0.2, seed=3)])
        apply_fast_paths(model, affine=setting)
        state = ([v.value for v in model.trainable_variables],
                 [v.value for v in model.non_trainable_variables])
        step = jax.jit(lambda state, x: model.stateless_call(*state, x, training=True)[0])
        outputs.append(np.asarray(step(state, x)))
    assert np.abs(outputs[0] - x).mean() > 1.0
    np.testing.assert_allclose(outputs[1], outputs[0], atol=2e-3)


@needs_batched
def test_model_switches_its_augmentation_and_saves_stock_layers(tmp_path):
    from flowerkit import build_model, get_preset

    recipe = get_preset("mobilenet_v2_035_finetune").replace(
        weights=None, image_size=32, class_names=("a", "b"),
        augmentation=("flip", "zoom:0.15", "rotate:0.05", "translate:0.1"),
    )
    model = build_model(recipe)
    affine = [layer for layer in compat.all_layers(model)
              if type(layer).__name__ in ("RandomZoom", "RandomRotation", "RandomTranslation")]
    assert len(affine) == 3
    assert all(is_batched_affine(layer) for layer in affine)
    # Saved as stock layers: a plain load has Keras's own backends back.
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert not any(is_batched_affine(layer) for layer in compat.all_layers(loaded))
