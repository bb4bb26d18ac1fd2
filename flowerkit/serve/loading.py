"""Which predictor serves a model path: a run folder or `model.keras` (on the
current Keras backend), or an exported `.onnx` / `.tflite` file (its runtime
only, no Keras)."""

from __future__ import annotations

from pathlib import Path

from flowerkit.errors import FlowerkitError
from flowerkit.exporting.runtimes import detect_format
from flowerkit.serve.predictors import EXPORTED_SUFFIXES, ExportedPredictor, Predictor


def resolve_model(path) -> tuple[Path, str]:
    """(the model file, "keras" or its export format) for a run folder, a
    `.keras` file or an exported `.onnx` / `.tflite` file."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            raise FlowerkitError(
                f"{path} is a TensorFlow SavedModel; flowerkit serve takes a run folder, "
                "model.keras, or an exported .onnx / .tflite file."
            )
        if not (path / "model.keras").is_file():
            raise FlowerkitError(f"No model.keras in the run folder {path}.")
        path = path / "model.keras"
    if not path.exists():
        raise FlowerkitError(f"Model not found: {path}")
    if path.suffix in EXPORTED_SUFFIXES:
        return path, detect_format(path)
    if path.suffix != ".keras":
        raise FlowerkitError(
            f"Cannot serve {path}: give a run folder, model.keras, or an exported .onnx / .tflite file."
        )
    return path, "keras"


def load_predictor(path, engine: str = "auto") -> Predictor:
    """The predictor for a run folder or `model.keras` (on the engine
    `engine` picks: `flowerkit.exporting.engines.choose_engine`), or an exported file (its
    own runtime; `engine` may only name that)."""
    path, kind = resolve_model(path)
    if kind == "keras":
        # Keras and its backend are imported here, for a .keras model only.
        from flowerkit.serve.keras_predictor import KerasPredictor

        return KerasPredictor(path, engine)
    if engine not in ("auto", kind):
        raise FlowerkitError(f"{path} is an exported {kind} file and runs in its own runtime: "
                             f"--engine {engine} needs a run folder or model.keras.")
    return ExportedPredictor(path)
