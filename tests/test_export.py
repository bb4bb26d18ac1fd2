"""Exported artefacts (SavedModel, ONNX, LiteRT) run in their own runtimes
and agree with the Keras model on real photos; formats a backend cannot
produce fail with one line that says what to use instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from tests.helpers import REPO, installed, run_main, shared_path, tiny_run_folder
from tests.test_export_onnx_graph import runtime_operators

from flowerkit.errors import FlowerkitError
from flowerkit.exporting import FORMATS, export, load_exported, read_labels, run_exported

FIXTURES = REPO / "tests/fixtures/crossbackend"
FLOAT_TOLERANCE = 1e-4
INT8_MAX_DROP = 0.015


def _backend():
    return keras.backend.backend()


def unavailable(format: str, backend: str) -> str | None:
    """What the one-line error must say where Keras 3.15 cannot produce
    `format` on `backend` in this (tox) environment, by design; else None."""
    if format == "tf_saved_model" and backend == "torch":
        return "not available on the torch backend: use KERAS_BACKEND=tensorflow"
    if format == "tf_saved_model" and backend == "jax" and not installed("tensorflow"):
        return "on the jax backend needs TensorFlow"
    if format == "litert" and backend == "jax":
        return "not available on the jax backend: use KERAS_BACKEND=tensorflow"
    return None


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A run folder holding the MobileNetV2-0.35 64x64 fixture model saved on
    this backend (three classes) and its recipe."""
    folder = tmp_path_factory.mktemp("run")
    for name in ("model.keras", "recipe.json"):
        shutil.copy(FIXTURES / _backend() / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Four real flower photos of each class, decoded at the fixture's 64x64."""
    from flowerkit.data.decode import decode_image

    root = shared_path("data/flower_photos")
    files = [path for folder in sorted(root.iterdir()) if folder.is_dir()
             for path in sorted(folder.glob("*.jpg"))[:4]]
    return np.stack([decode_image(str(path), 64) for path in files])


@pytest.fixture(scope="module")
def keras_probabilities(run_folder, photos) -> np.ndarray:
    from flowerkit.inference import load_model

    return np.asarray(load_model(run_folder / "model.keras").predict(photos, verbose=0))


@pytest.mark.parametrize("format", FORMATS)
def test_export_matches_keras_in_its_own_runtime(format, run_folder, photos, keras_probabilities, tmp_path):
    backend = _backend()
    if message := unavailable(format, backend):
        with pytest.raises(FlowerkitError, match=message) as error:
            export(run_folder / "model.keras", format)
        assert "\n" not in str(error.value) and "KERAS_BACKEND=tensorflow" in str(error.value)
        return

    result = export(run_folder / "model.keras", format)

    assert result.path.exists() and result.backend == backend and result.quantize is None
    assert result.size_bytes > 100_000
    assert result.max_abs_diff is not None and result.max_abs_diff <= FLOAT_TOLERANCE
    assert result.class_names == ("blue", "green", "red") and result.image_size == 64
    assert read_labels(result.path) == result.class_names
    assert result.labels_path.read_text() == "blue\ngreen\nred\n"

    exported = load_exported(result.path)
    assert exported.format == format and exported.class_names == result.class_names
    probabilities = exported(photos)
    assert probabilities.shape == keras_probabilities.shape
    assert np.max(np.abs(probabilities - keras_probabilities)) <= FLOAT_TOLERANCE
    # One image (HWC) and a batch of one agree with the batched run.
    np.testing.assert_allclose(exported(photos[3]), probabilities[3], atol=FLOAT_TOLERANCE)
    np.testing.assert_allclose(run_exported(result.path, photos[:1]), probabilities[:1], atol=FLOAT_TOLERANCE)

    if format == "onnx":
        import onnx

        saved = onnx.load(str(result.path))
        metadata = {p.key: p.value for p in saved.metadata_props}
        assert metadata["class_names"] == '["blue", "green", "red"]'
        assert metadata["image_size"] == "64"
        # Every backend exports each convolution as one Conv node (JAX's fast
        # paths had given slices and matmuls) and ReLU6 as a Clip ONNX Runtime fuses.
        operators = [node.op_type for node in saved.graph.node]
        assert operators.count("Conv") == _convolutions(run_folder / "model.keras") == 52
        assert operators.count("Clip") == 35 and "Max" not in operators and operators.count("MatMul") == 1
        # ONNX Runtime folds every zero padding into its Conv and pools in
        # NCHW, as for TensorFlow's file (PyTorch's kept Pads, PyTorch's and
        # JAX's a ReduceMean on NHWC).
        at_run_time = runtime_operators(saved, tmp_path)
        assert "Pad" not in at_run_time and "ReduceMean" not in at_run_time
        assert at_run_time.count("Conv") + at_run_time.count("FusedConv") == 52  # FusedConv: with its Clip


def _convolutions(model_path) -> int:
    from flowerkit import compat
    from flowerkit.inference import load_model

    layers = compat.all_layers(load_model(model_path))
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    return sum(isinstance(layer, kinds) for layer in layers)


def test_exported_onnx_runs_without_keras(run_folder, photos, keras_probabilities, tmp_path):
    """The runner needs only the runtime: Keras is made unimportable."""
    path = tmp_path / "model.onnx"
    export(run_folder / "model.keras", "onnx", output=path, verify=False)
    np.save(tmp_path / "photos.npy", photos)
    script = (
        "import sys; sys.modules['keras'] = None\n"
        "import numpy as np\n"
        "from flowerkit.exporting import run_exported\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, run_exported({str(path)!r}, np.load({str(tmp_path / 'photos.npy')!r})))\n"
        "assert 'keras' not in {m.split('.')[0] for m, v in sys.modules.items() if v is not None}\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.max(np.abs(np.load(tmp_path / "out.npy") - keras_probabilities)) <= FLOAT_TOLERANCE


def test_bad_requests_fail_with_one_line(run_folder, tmp_path):
    model = run_folder / "model.keras"
    cases = [
        (dict(format="coreml"), "Unknown export format 'coreml'"),
        (dict(format="onnx", quantize="int8"), "is for format='litert' only"),
        (dict(format="onnx", quantize="int4"), "quantize must be None or 'int8'"),
    ]
    if _backend() == "tensorflow":
        cases += [
            (dict(format="litert", quantize="int8"), "needs calibration_data"),
            (dict(format="litert", output=tmp_path / "model.bin"), "is a .tflite file"),
        ]
    if _backend() == "torch":
        cases.append((dict(format="litert", quantize="int8"), "needs the tensorflow backend"))
    for kwargs, message in cases:
        with pytest.raises(FlowerkitError, match=message) as error:
            export(model, **kwargs)
        assert "\n" not in str(error.value)
    shutil.copy(model, tmp_path / "lonely.keras")
    with pytest.raises(FlowerkitError, match="No recipe.json"):
        export(tmp_path / "lonely.keras", "onnx")


def test_cli_export_without_verify_writes_only_what_the_model_needs(tmp_path, capsys):
    """`flowerkit export MODEL --format onnx --no-verify` on a good model: the
    ONNX file (weights inside, normal permissions) and labels.txt, nothing else."""
    model_path = tiny_run_folder(tmp_path / "run")
    status, out, err = run_main(capsys, "export", model_path, "--format", "onnx", "--no-verify")
    assert status == 0, err
    assert out.startswith("flowerkit: onnx: ") and "max |p - p_keras|" not in out
    assert sorted(p.name for p in model_path.parent.iterdir()) == [
        "labels.txt", "model.keras", "model.onnx", "recipe.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert (model_path.with_name("model.onnx").stat().st_mode & 0o777) == 0o666 & ~umask
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    expected = keras.models.load_model(model_path).predict(images, verbose=0)
    np.testing.assert_allclose(run_exported(model_path.with_name("model.onnx"), images), expected,
                               atol=FLOAT_TOLERANCE)


@pytest.mark.backend_independent
def test_onnx_weights_written_apart_are_saved_inside(tmp_path):
    """Some converters (jax2onnx, tensors over 1 MB) write weights to a
    `.data` file beside the model: the export keeps one file."""
    import onnx
    from onnx import helper

    from flowerkit.config.recipe import Recipe
    from flowerkit.exporting.convert import _finish_onnx

    weights = np.arange(12, dtype=np.float32).reshape(4, 3)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
        [onnx.numpy_helper.from_array(weights, "w")])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path), save_as_external_data=True,
              location="model.onnx.data", size_threshold=0)
    assert (tmp_path / "model.onnx.data").is_file()

    _finish_onnx(path, Recipe(class_names=("a", "b", "c"), image_size=32), "jax")

    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    saved = onnx.load(str(path))
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(saved.graph.initializer[0]), weights)
    assert {p.key: p.value for p in saved.metadata_props}["class_names"] == '["a", "b", "c"]'


@pytest.fixture(scope="module")
def flower_run(tmp_path_factory) -> Path:
    """A MobileNetV2-0.35 (ImageNet, frozen) flower classifier at 96x96,
    trained for a few seconds on about 480 photos of the recipe's training split."""
    import flowerkit

    data = shared_path("data/flower_photos")
    weights = shared_path("weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5")
    recipe = flowerkit.get_preset("mobilenet_v2_035").replace(
        image_size=96, weights=str(weights), augmentation=(), epochs=4, batch_size=32,
        learning_rate=3e-3, head_units=(), dropout=0.2, label_smoothing=0.0,  # the linear head measured
    )
    folder = tmp_path_factory.mktemp("flowers")
    flowerkit.train(recipe, source=str(data), output_dir=folder, max_images=600, verbose=0)
    return folder


@pytest.mark.backends("tensorflow")  # int8 LiteRT is made there only; its error elsewhere is tested above
def test_int8_litert_keeps_validation_accuracy(flower_run):
    data = shared_path("data/flower_photos")
    result = export(flower_run / "model.keras", "litert", quantize="int8", calibration_data=str(data),
                    calibration_images=100, validation_images=300)

    assert result.path.name == "model_int8.tflite" and result.quantize == "int8"
    assert result.calibration_images == 100 and result.validation_images == 300
    assert result.float_accuracy > 0.6, "the float model should have learnt something"
    assert result.accuracy >= result.float_accuracy - INT8_MAX_DROP, result.summary()
    # int8 weights: well under the float32 parameter bytes.
    from flowerkit.inference import load_model

    assert result.size_bytes < 0.5 * 4 * load_model(flower_run / "model.keras").count_params()
    # Its own runtime, without flowerkit's export code in the loop.
    assert read_labels(result.path) == result.class_names
    exported = load_exported(result.path)
    assert exported.runtime.startswith(("ai-edge-litert", "tensorflow"))
    assert "int8" in result.summary() and "vs float" in result.summary()
