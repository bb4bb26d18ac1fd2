"""Running an exported artefact with its own runtime only: no Keras, no
backend, no flowerkit model code (a small deployment needs only onnxruntime
or the LiteRT interpreter, plus Pillow and NumPy).

    from flowerkit.exporting.runtimes import load_exported, read_labels

    predict = load_exported("runs/demo/model.onnx")
    probabilities = predict(images)        # float32 RGB 0-255, NHWC
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np

from flowerkit.errors import FlowerkitError

LABELS_FILE = "labels.txt"
INPUT_NAME = "image"


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def artefact_size(path) -> int:
    """Bytes on disk: the file, or every file under a SavedModel folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def detect_format(path) -> str:
    path = Path(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "tf_saved_model"
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix == ".tflite":
        return "litert"
    raise FlowerkitError(f"Not an exported flowerkit model (SavedModel folder, .onnx or .tflite): {path}")


def read_labels(path) -> tuple[str, ...]:
    """The class names of an exported artefact, from its `labels.txt`."""
    path = Path(path)
    labels = (path if path.is_dir() else path.parent) / LABELS_FILE
    if not labels.is_file():
        raise FlowerkitError(f"No {LABELS_FILE} beside {path}.")
    return tuple(line for line in labels.read_text().splitlines() if line)


class ExportedModel:
    """An exported artefact loaded in its own runtime; call it with float32
    RGB 0-255 NHWC images to get class probabilities (a NumPy array).

    Attributes: format, path, runtime (name and version), class_names.
    """

    def __init__(self, path, format: str | None = None):
        self.path = Path(path)
        self.format = format or detect_format(self.path)
        if not self.path.exists():
            raise FlowerkitError(f"Exported model not found: {self.path}")
        loader = {"tf_saved_model": self._load_saved_model, "onnx": self._load_onnx, "litert": self._load_litert}
        if self.format not in loader:
            raise FlowerkitError(f"Unknown export format {self.format!r}. Known: {', '.join(loader)}.")
        self._predict = loader[self.format]()
        try:
            self.class_names = read_labels(self.path)
        except FlowerkitError:
            self.class_names = ()

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            return self._predict(images[None])[0]
        return self._predict(images)

    def __repr__(self):
        return f"ExportedModel({str(self.path)!r}, format={self.format!r}, runtime={self.runtime!r})"

    def _load_saved_model(self):
        if not installed("tensorflow"):
            raise FlowerkitError("Running a SavedModel needs TensorFlow: pip install 'flowerkit[tensorflow]'.")
        import tensorflow as tf

        loaded = tf.saved_model.load(str(self.path))
        serve = loaded.signatures["serving_default"]
        (name,) = serve.structured_input_signature[1]
        self.runtime = f"tensorflow {tf.__version__} (tf.saved_model.load, serving_default)"
        self._keep = loaded  # the signature needs its object alive

        def predict(images):
            outputs = serve(**{name: tf.constant(images)})
            return next(iter(outputs.values())).numpy()

        return predict

    def _load_onnx(self):
        if not installed("onnxruntime"):
            raise FlowerkitError("Running an ONNX model needs onnxruntime: pip install 'flowerkit[onnx]'.")
        import onnxruntime

        session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        self.runtime = f"onnxruntime {onnxruntime.__version__}"
        self.session = session
        return lambda images: session.run(None, {name: images})[0]

    def _load_litert(self):
        if installed("ai_edge_litert"):
            from ai_edge_litert.interpreter import Interpreter

            version = _version("ai-edge-litert")
            self.runtime = f"ai-edge-litert {version}"
        elif installed("tensorflow"):
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
            self.runtime = f"tensorflow {tf.__version__} (tf.lite.Interpreter)"
        else:
            raise FlowerkitError("Running a LiteRT model needs ai-edge-litert: pip install 'flowerkit[litert]'.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interpreter = Interpreter(model_path=str(self.path))
        interpreter.allocate_tensors()
        source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        fixed_batch = int(source["shape_signature"][0]) if len(source["shape_signature"]) else -1
        state = {"batch": int(source["shape"][0])}

        def set_batch(size):
            if state["batch"] != size:
                interpreter.resize_tensor_input(source["index"], [size, *source["shape"][1:]])
                interpreter.allocate_tensors()
                state["batch"] = size

        def run(images):
            data = _quantize(images, source)
            interpreter.set_tensor(source["index"], data)
            interpreter.invoke()
            return _dequantize(interpreter.get_tensor(target["index"]), target)

        def predict(images):
            if fixed_batch > 0:  # a static batch (e.g. litert-torch): run in slices
                slices = [images[i : i + fixed_batch] for i in range(0, len(images), fixed_batch)]
                return np.concatenate([run(_pad(part, fixed_batch))[: len(part)] for part in slices])
            set_batch(len(images))
            return run(images)

        self.interpreter = interpreter
        return predict


def _pad(images, size):
    if len(images) == size:
        return images
    return np.concatenate([images, np.zeros((size - len(images), *images.shape[1:]), images.dtype)])


def _quantize(images, detail):
    if detail["dtype"] == np.float32:
        return images
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(images / scale + zero), info.min, info.max).astype(detail["dtype"])


def _dequantize(values, detail):
    if values.dtype == np.float32:
        return values.copy()
    scale, zero = detail["quantization"]
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def load_exported(path, format: str | None = None) -> ExportedModel:
    """Loads an exported artefact in its own runtime (no Keras): a callable
    from images to probabilities. `format` is guessed from the path."""
    return ExportedModel(path, format)


def run_exported(path, images, format: str | None = None) -> np.ndarray:
    """Class probabilities of `images` (float32 RGB 0-255, NHWC) from the
    exported artefact at `path`, run in its own runtime."""
    return load_exported(path, format)(images)
