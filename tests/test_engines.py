"""flowerkit.exporting.engines: the engine that runs a saved model's
inference. A forced ONNX engine agrees with Keras within 1e-4, its export is
cached beside the model and reused, and a damaged one is rebuilt, not used;
"auto" follows the policy table."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

from flowerkit.backends.devices import device_kind
from flowerkit.backends.policy import inference_engine
from flowerkit.errors import FlowerkitError, FlowerkitWarning
from flowerkit.exporting import engines
from flowerkit.exporting.engines import available_engines, cache_paths, choose_engine
from flowerkit.model.loading import load_model
from tests.helpers import REPO, make_image_folder, one_error_line, run_main, tiny_run_folder

FIXTURES = REPO / "tests/fixtures/crossbackend"


@pytest.fixture
def model_path(tmp_path):
    """The MobileNetV2-0.35 64x64 fixture saved on this backend, with its recipe."""
    for name in ("model.keras", "recipe.json"):
        shutil.copy(FIXTURES / keras.backend.backend() / name, tmp_path / name)
    return tmp_path / "model.keras"


# The cache is the same code on every backend, and each backend's ONNX export
# is checked in test_export.py; two exports cost a minute on JAX, seconds on PyTorch.
@pytest.mark.backends("torch")  # its export is the cheapest
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


@pytest.fixture
def tiny_run(tmp_path):
    """(a tiny run's model.keras, a folder of 3 classes x 2 tiny photos)."""
    return tiny_run_folder(tmp_path / "run"), make_image_folder(tmp_path / "photos", per_class=2)


def probabilities_of(results) -> np.ndarray:
    return np.array([[top["probability"] for top in sorted(result["top"], key=lambda t: t["class"])]
                     for result in results])


@pytest.mark.backends("torch")
def test_commands_run_a_forced_onnx_engine_within_tolerance_and_say_so(tiny_run, capsys):
    if "onnx" not in available_engines():
        pytest.skip("no ONNX exporter or onnxruntime in this environment (pip install 'flowerkit[onnx]')")
    model, photos = tiny_run
    images = sorted(str(path) for path in photos.rglob("*.jpg"))
    outcomes = {}
    for engine in ("keras", "onnx"):
        status, out, err = run_main(capsys, "predict", model, *images, "--json", "--engine", engine)
        assert status == 0 and f"flowerkit: engine {engine}\n" in err, err
        building = "Building the onnx engine for model.keras (once: cached as model.engine.onnx): 1 export in "
        assert (building in err) == (engine == "onnx")  # the wait is named, and only when there is one
        results = json.loads(out)
        assert {result["engine"] for result in results} == {engine}
        status, out, err = run_main(capsys, "evaluate", model, "--data", photos, "--engine", engine,
                                    "--output", model.parent / engine, "--quiet")
        assert status == 0 and f"flowerkit: engine {engine}\n" in err, err
        report = json.loads((model.parent / engine / "evaluation.json").read_text())
        assert report["engine"] == engine
        outcomes[engine] = probabilities_of(results), report["confusion_matrix"]
    np.testing.assert_allclose(outcomes["onnx"][0], outcomes["keras"][0], atol=1e-4)
    assert outcomes["onnx"][1] == outcomes["keras"][1]
    assert cache_paths(model, "onnx")[0].is_file()


@pytest.mark.backends("torch")
def test_serve_runs_the_chosen_engine_and_reports_it(tiny_run):
    pytest.importorskip("fastapi", reason="flowerkit serve needs the serve extra")
    if "onnx" not in available_engines():
        pytest.skip("no ONNX exporter or onnxruntime in this environment (pip install 'flowerkit[onnx]')")
    from flowerkit.serve.loading import load_predictor

    model, _ = tiny_run
    images = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    on_keras, on_onnx = load_predictor(model.parent, engine="keras"), load_predictor(model.parent, engine="onnx")
    assert (on_keras.describe()["engine"], on_onnx.describe()["engine"]) == ("keras", "onnx")
    np.testing.assert_allclose(on_onnx.predict(images), on_keras.predict(images), atol=1e-4)
    with pytest.raises(FlowerkitError, match="runs in its own runtime: --engine keras needs a run folder"):
        load_predictor(on_onnx.engine.path, engine="keras")


def test_auto_follows_the_policy_and_a_missing_engine_is_one_line(tiny_run, capsys, monkeypatch):
    model, photos = tiny_run
    image = next(photos.rglob("*.jpg"))
    status, out, err = run_main(capsys, "predict", model, image, "--json")
    expected = inference_engine(keras.backend.backend(), device_kind(), available_engines())
    assert status == 0 and json.loads(out)[0]["engine"] == expected, err

    monkeypatch.setattr(engines, "installed", lambda module: False)  # no runtime installed
    status, out, err = run_main(capsys, "predict", model, image, "--engine", "onnx")
    assert status == 2 and out == ""
    assert "engine 'onnx' cannot run here" in one_error_line(err)


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "backend, device_kind, available, setting, expected",
    [
        ("tensorflow", "CPU", ("keras", "onnx", "litert"), "auto", "onnx"),  # 2.1-6.5x Keras
        ("tensorflow", "CPU", ("keras", "litert"), "auto", "keras"),
        ("tensorflow", "GPU", ("keras", "onnx"), "auto", "keras"),
        ("jax", "CPU", ("keras", "onnx"), "auto", "onnx"),  # 2.1-4.2x Keras, 1.2-2x its requests served
        ("jax", "CPU", ("keras",), "auto", "keras"),  # no jax2onnx or onnxruntime installed
        ("torch", "CPU", ("keras", "onnx", "litert"), "auto", "onnx"),  # 2.0-6.5x Keras
        ("torch", "CPU", ("keras", "litert"), "auto", "keras"),  # LiteRT is not in the table
        ("torch", "GPU", ("keras", "onnx"), "auto", "keras"),
        ("torch", "CPU", ("keras",), "litert", "litert"),  # forced: the caller checks it can run
    ],
)
def test_engine_policy(backend, device_kind, available, setting, expected):
    assert inference_engine(backend, device_kind, available, setting) == expected


def test_an_auto_export_that_fails_runs_keras_with_a_warning_a_forced_one_is_an_error(model_path, monkeypatch):
    attempts = []

    def failing_export(model_path, format, **options):
        attempts.append(format)
        raise FlowerkitError(f"The {format} export of {model_path} differs from Keras by 1.0e-02.")

    monkeypatch.setattr(engines, "export", failing_export)
    monkeypatch.setattr(engines, "available_engines", lambda: ("keras", "onnx"))
    monkeypatch.setattr(engines, "inference_engine", lambda *args: "onnx" if args[3] != "keras" else "keras")
    with pytest.warns(FlowerkitWarning, match="differs from Keras by 1.0e-02. Running on Keras instead."):
        assert choose_engine(model_path, "auto").engine == "keras"
    # The failure is remembered for this model file: the next run warns at once, no new export.
    with pytest.warns(FlowerkitWarning, match="differs from Keras by 1.0e-02. Running on Keras instead."):
        assert choose_engine(model_path, "auto").engine == "keras"
    assert attempts == ["onnx"]
    with pytest.raises(FlowerkitError, match="differs from Keras"):
        choose_engine(model_path, "onnx")  # forced: tried again
    assert attempts == ["onnx", "onnx"]
    model_path.write_bytes(model_path.read_bytes() + b"\0")  # another model file: tried afresh
    with pytest.warns(FlowerkitWarning):
        choose_engine(model_path, "auto")
    assert attempts == ["onnx", "onnx", "onnx"]
