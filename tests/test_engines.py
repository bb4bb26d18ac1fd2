"""flowerkit.exporting.engines: the engine that runs a saved model's
inference. A forced ONNX engine agrees with Keras within 1e-4, its export is
cached beside the model and reused, and a damaged one is rebuilt, not used;
"auto" follows the policy table."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest

from flowerkit.backends.policy import inference_engine
from flowerkit.errors import FlowerkitError
from flowerkit.exporting.engines import available_engines, cache_paths, choose_engine
from flowerkit.model.loading import load_model
from tests.helpers import REPO

FIXTURES = REPO / "tests/fixtures/crossbackend"


@pytest.fixture
def model_path(tmp_path):
    """The MobileNetV2-0.35 64x64 fixture saved on this backend, with its recipe."""
    for name in ("model.keras", "recipe.json"):
        shutil.copy(FIXTURES / keras.backend.backend() / name, tmp_path / name)
    return tmp_path / "model.keras"


# The cache is the same code on every backend, and each backend's ONNX export
# is checked in test_export.py; two exports cost a minute on JAX, seconds on PyTorch.
@pytest.mark.skipif(keras.backend.backend() != "torch", reason="runs on the torch backend (its export is the cheapest)")
def test_forced_onnx_agrees_with_keras_is_cached_and_rebuilt_when_damaged(model_path):
    if "onnx" not in available_engines():
        pytest.skip("no ONNX exporter or onnxruntime in this environment (pip install 'flowerkit[onnx]')")
    images = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(load_model(model_path)(images, training=False))
    built = choose_engine(model_path, "onnx")
    assert (built.engine, built.rebuilt) == ("onnx", True)
    assert built.path == cache_paths(model_path, "onnx")[0] and built.max_abs_diff <= 1e-4
    np.testing.assert_allclose(built.predict(images), expected, atol=1e-4)
    assert not choose_engine(model_path, "onnx").rebuilt  # the verified export is reused

    built.path.write_bytes(built.path.read_bytes()[:2000])  # a truncated file
    repaired = choose_engine(model_path, "onnx")
    assert repaired.rebuilt
    np.testing.assert_allclose(repaired.predict(images), expected, atol=1e-4)


def test_keras_engine_needs_no_export_and_bad_engines_fail_in_one_line(model_path):
    choice = choose_engine(model_path, "keras")
    assert (choice.engine, choice.path, choice.predict) == ("keras", None, None)
    with pytest.raises(FlowerkitError, match="Unknown engine 'tensorrt': use one of auto, keras, onnx, litert"):
        choose_engine(model_path, "tensorrt")


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "backend, device_kind, available, setting, expected",
    [
        ("tensorflow", "CPU", ("keras", "onnx", "litert"), "auto", "onnx"),  # 1.9x Keras on TensorFlow
        ("tensorflow", "CPU", ("keras", "litert"), "auto", "keras"),
        ("tensorflow", "GPU", ("keras", "onnx"), "auto", "keras"),
        ("jax", "CPU", ("keras", "onnx"), "auto", "keras"),  # JAX's ONNX export ran slower than Keras
        ("torch", "CPU", ("keras", "onnx", "litert"), "auto", "keras"),
        ("torch", "CPU", ("keras",), "litert", "litert"),  # forced: the caller checks it can run
    ],
)
def test_engine_policy(backend, device_kind, available, setting, expected):
    assert inference_engine(backend, device_kind, available, setting) == expected
