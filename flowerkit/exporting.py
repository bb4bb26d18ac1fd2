"""Ship a trained model: TensorFlow SavedModel, ONNX or LiteRT, each checked
in its own runtime.

    from flowerkit.exporting import export, load_exported

    result = export("runs/demo/model.keras", "onnx")          # runs/demo/model.onnx
    result = export("runs/demo/model.keras", "litert", quantize="int8",
                    calibration_data="../shared/data/flower_photos")
    print(result.summary())

    predict = load_exported(result.path)        # onnxruntime, no Keras needed
    probabilities = predict(images)             # float32 RGB 0-255, NHWC

Every artefact keeps flowerkit's contract: raw RGB 0-255 float32 NHWC images
at the recipe's image size in (any batch size), class probabilities out. The
class names travel with it: `labels.txt` beside it (inside the folder for a
SavedModel) and, for ONNX, the model's metadata_props.

Export is Keras's own `model.export(...)`, on an inference copy of the model
without its augmentation layers (training-only, but a SavedModel traced with
them would apply them). What each backend can produce (Keras 3.15):

    format           tensorflow      jax                  torch
    tf_saved_model   yes             with TensorFlow      no (needs torch_xla)
    onnx             tf2onnx         jax2onnx             torch.onnx
    litert           TFLite conv.    no                   litert-torch

`load_exported` runs an artefact with nothing but its runtime:
`tf.saved_model.load` (serving signature), `onnxruntime.InferenceSession`, or
the LiteRT interpreter (`ai_edge_litert`, else `tf.lite`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import time
import types
import warnings
from pathlib import Path

import numpy as np

from flowerkit.errors import FlowerkitError

FORMATS = ("tf_saved_model", "onnx", "litert")
QUANTIZATIONS = (None, "int8")
LABELS_FILE = "labels.txt"
INPUT_NAME = "image"


def _flowerkit():
    """flowerkit's own helpers, imported on first use (they start Keras).

    The one place that names their modules."""
    from flowerkit.data import iterate_batches, load_data
    from flowerkit.data.pipelines import make_dataset
    from flowerkit.data.sources import sample_index
    from flowerkit.inference import load_model
    from flowerkit.recipe import Recipe

    return types.SimpleNamespace(
        load_model=load_model,
        Recipe=Recipe,
        load_data=load_data,
        iterate_batches=iterate_batches,
        make_dataset=make_dataset,
        sample_index=sample_index,
    )


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export` wrote and how the artefact compares with the Keras model.

    Attributes:
        format: "tf_saved_model", "onnx" or "litert".
        path: the artefact (a folder for a SavedModel, a file otherwise).
        labels_path: `labels.txt`, one class name a line, in label order.
        class_names, image_size: the contract (input is
            (batch, image_size, image_size, 3) float32 RGB 0-255).
        backend: the Keras backend that produced it.
        quantize: None or "int8".
        size_bytes: the artefact's size on disk.
        export_seconds: wall time of the conversion.
        runtime: the runtime it was checked in, e.g. "onnxruntime 1.32.0";
            None when `verify=False`.
        max_abs_diff: largest |probability difference| from the Keras model
            on the probe images, in that runtime (None when not verified).
        probe_images: how many images that was measured on (validation
            photos when `calibration_data` is given, else seeded noise).
        accuracy, float_accuracy: validation accuracy of the artefact and
            of the float Keras model on the same `validation_images` images
            of the recipe's validation split (int8 only; None otherwise).
        calibration_images: training images the int8 ranges came from.
    """

    format: str
    path: Path
    labels_path: Path
    class_names: tuple[str, ...]
    image_size: int
    backend: str
    quantize: str | None = None
    size_bytes: int = 0
    export_seconds: float = 0.0
    runtime: str | None = None
    max_abs_diff: float | None = None
    probe_images: int = 0
    accuracy: float | None = None
    float_accuracy: float | None = None
    validation_images: int = 0
    calibration_images: int = 0

    @property
    def accuracy_drop(self) -> float | None:
        """float_accuracy - accuracy, in [0, 1] (None if not measured)."""
        if self.accuracy is None or self.float_accuracy is None:
            return None
        return self.float_accuracy - self.accuracy

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["path"], out["labels_path"] = str(self.path), str(self.labels_path)
        out["class_names"] = list(self.class_names)
        out["accuracy_drop"] = self.accuracy_drop
        return out

    def summary(self) -> str:
        kind = self.format + (f" ({self.quantize})" if self.quantize else "")
        parts = [f"{kind}: {self.path} ({self.size_bytes / 1e6:.2f} MB, {self.export_seconds:.1f} s)"]
        if self.max_abs_diff is not None:
            parts.append(
                f"max |p - p_keras| = {self.max_abs_diff:.2e} on {self.probe_images} images in {self.runtime}"
            )
        if self.accuracy is not None:
            parts.append(
                f"validation accuracy {self.accuracy:.2%} vs float {self.float_accuracy:.2%} "
                f"on {self.validation_images} images"
            )
        return "; ".join(parts)


def export(
    model_path,
    format: str,
    output=None,
    quantize: str | None = None,
    calibration_data=None,
    *,
    calibration_images: int = 200,
    validation_images: int | None = None,
    probe_images: int = 16,
    verify: bool = True,
) -> ExportResult:
    """Exports a saved flowerkit model (`model.keras` with `recipe.json`
    beside it) to `format` and checks the artefact in its own runtime.

    Args:
        model_path: the `.keras` file of a run folder.
        format: "tf_saved_model", "onnx" or "litert".
        output: where to write the artefact: a folder for "tf_saved_model",
            a `.onnx` / `.tflite` file otherwise. Defaults to beside the
            model: `model_saved_model/`, `model.onnx`, `model.tflite` (or
            `model_int8.tflite`).
        quantize: "int8" (LiteRT only): post-training integer quantization,
            float32 input and output kept.
        calibration_data: a data source as `flowerkit train --data` takes
            (e.g. a folder with one subfolder per class). Needed for int8:
            ranges come from `calibration_images` photos of the recipe's
            training split, and the int8 and float accuracies are measured on
            (up to `validation_images` of) its validation split. For float
            formats, optional: validation photos then serve as probes.
        calibration_images: training photos used for int8 calibration.
        validation_images: cap on validation photos measured (None: all).
        probe_images: images on which `max_abs_diff` is measured.
        verify: load the artefact in its runtime and compare it with Keras.

    Raises:
        FlowerkitError: one line, when the format cannot be produced on this
            backend or a package is missing (it names the backend or the pip
            extra to use), or for bad arguments.
    """
    backend = _keras_backend()
    check_can_export(format, backend, quantize)
    if quantize == "int8" and calibration_data is None:
        raise FlowerkitError(
            "quantize='int8' needs calibration_data: a folder of training photos, one subfolder per class."
        )
    if verify or quantize:
        _require_runtime(format)
    fk = _flowerkit()
    model_path = Path(model_path)
    model = fk.load_model(model_path)
    recipe = _load_recipe(fk, model_path, model)
    path = _output_path(model_path, format, output, quantize)

    data = _photos(fk, recipe, calibration_data, calibration_images, validation_images) if calibration_data else None

    inference_model = _inference_model(model)
    started = time.perf_counter()
    _keras_export(inference_model, path, format, recipe.image_size, quantize, data)
    export_seconds = time.perf_counter() - started
    labels_path = _write_labels(path, format, recipe.class_names)
    if format == "onnx":
        _add_onnx_metadata(path, recipe, backend)

    result = dict(
        format=format,
        path=path,
        labels_path=labels_path,
        class_names=tuple(recipe.class_names),
        image_size=recipe.image_size,
        backend=backend,
        quantize=quantize,
        size_bytes=artefact_size(path),
        export_seconds=export_seconds,
    )
    if verify or quantize:
        exported = load_exported(path, format)
        result["runtime"] = exported.runtime
        if data is not None and len(data.validation_images):
            probes = data.validation_images[:probe_images]
        else:
            rng = np.random.default_rng(0)
            probes = rng.uniform(0, 255, (probe_images, recipe.image_size, recipe.image_size, 3))
            probes = probes.astype(np.float32)
        expected = _keras_predict(model, probes)
        result["max_abs_diff"] = float(np.max(np.abs(exported(probes) - expected)))
        result["probe_images"] = len(probes)
        if quantize:
            labels = data.validation_labels
            float_predictions = _keras_predict(model, data.validation_images).argmax(-1)
            predictions = _predict_batches(exported, data.validation_images).argmax(-1)
            result.update(
                accuracy=float(np.mean(predictions == labels)),
                float_accuracy=float(np.mean(float_predictions == labels)),
                validation_images=len(labels),
                calibration_images=len(data.calibration_images),
            )
    return ExportResult(**result)


def check_can_export(format: str, backend: str | None = None, quantize: str | None = None) -> None:
    """Raises a one-line `FlowerkitError` if `format` cannot be produced on
    `backend` (default: the current Keras backend) with what is installed."""
    backend = backend or _keras_backend()
    if format not in FORMATS:
        raise FlowerkitError(f"Unknown export format {format!r}. Known: {', '.join(FORMATS)}.")
    if quantize not in QUANTIZATIONS:
        raise FlowerkitError(f"quantize must be None or 'int8', got {quantize!r}.")
    if quantize and format != "litert":
        raise FlowerkitError(f"quantize={quantize!r} is for format='litert' only, not {format!r}.")
    use_tensorflow = "use KERAS_BACKEND=tensorflow (pip install 'flowerkit[tensorflow]')"
    if format == "tf_saved_model":
        if backend == "jax" and not _installed("tensorflow"):
            raise FlowerkitError(
                "tf_saved_model export on the jax backend needs TensorFlow (jax2tf), "
                f"not installed here: {use_tensorflow}."
            )
        if backend not in ("tensorflow", "jax"):
            raise FlowerkitError(
                f"tf_saved_model export is not available on the {backend} backend: {use_tensorflow}."
            )
    elif format == "onnx":
        converters = {"tensorflow": ("tf2onnx", "onnx"), "jax": ("jax2onnx", "onnx-jax"),
                      "torch": ("onnxscript", "onnx")}
        if backend not in converters:
            raise FlowerkitError(f"ONNX export is not available on the {backend} backend: {use_tensorflow}.")
        converter, extra = converters[backend]
        missing = [name for name in ("onnx", converter) if not _installed(name)]
        if missing:
            raise FlowerkitError(
                f"ONNX export on the {backend} backend needs {' and '.join(missing)}: "
                f"pip install 'flowerkit[{extra}]'."
            )
    elif format == "litert":
        if backend == "torch":
            if quantize:
                raise FlowerkitError(
                    f"int8 LiteRT export (calibrated on photos) needs the tensorflow backend: {use_tensorflow}."
                )
            if not _installed("litert_torch"):
                raise FlowerkitError(
                    "LiteRT export on the torch backend needs litert-torch: "
                    f"pip install 'flowerkit[litert-torch]', or {use_tensorflow}."
                )
        elif backend != "tensorflow":
            raise FlowerkitError(f"LiteRT export is not available on the {backend} backend: {use_tensorflow}.")


def _require_runtime(format: str) -> None:
    if format == "onnx" and not _installed("onnxruntime"):
        raise FlowerkitError(
            "Checking an ONNX export needs onnxruntime: pip install 'flowerkit[onnx]' (or verify=False)."
        )
    if format == "litert" and not (_installed("ai_edge_litert") or _installed("tensorflow")):
        raise FlowerkitError("Running a LiteRT export needs ai-edge-litert: pip install 'flowerkit[litert]'.")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _keras_backend() -> str:
    import keras

    return keras.backend.backend()


def _load_recipe(fk, model_path: Path, model):
    recipe_path = model_path.with_name("recipe.json")
    if recipe_path.is_file():
        recipe = fk.Recipe.load(recipe_path)
    else:
        raise FlowerkitError(f"No recipe.json beside {model_path}: the export needs its class names and image size.")
    classes = model.output_shape[-1]
    if len(recipe.class_names) != classes:
        raise FlowerkitError(
            f"{recipe_path} names {len(recipe.class_names)} classes but the model has {classes} outputs."
        )
    return recipe


def _output_path(model_path: Path, format: str, output, quantize) -> Path:
    stem = model_path.stem + ("_int8" if quantize else "")
    default = {
        "tf_saved_model": model_path.with_name(stem + "_saved_model"),
        "onnx": model_path.with_name(stem + ".onnx"),
        "litert": model_path.with_name(stem + ".tflite"),
    }[format]
    path = Path(output) if output is not None else default
    if format == "litert" and path.suffix != ".tflite":
        raise FlowerkitError(f"A LiteRT export is a .tflite file, got output={str(path)!r}.")
    if format != "tf_saved_model" and path.is_dir():
        raise FlowerkitError(f"output {str(path)!r} is a folder; give a file name for {format}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@dataclasses.dataclass
class _Photos:
    calibration_images: np.ndarray
    validation_images: np.ndarray
    validation_labels: np.ndarray


def _photos(fk, recipe, source, calibration_count: int, validation_count: int | None) -> _Photos:
    """The recipe's own split of `source` (through `load_data`, as training
    read it): calibration photos from the training part, labelled photos
    from the validation part, decoded by this backend's pipeline."""
    data = fk.load_data(recipe, str(source))

    def decode(index, count):
        if count is not None:
            index = fk.sample_index(index, count, recipe.seed)
        dataset = fk.make_dataset(index, recipe.image_size, batch_size=64)
        batches = list(fk.iterate_batches(dataset))
        images = np.concatenate([x for x, _ in batches]).astype(np.float32)
        return images, np.concatenate([y for _, y in batches]).argmax(axis=1)

    calibration, _ = decode(data.train.index, calibration_count)
    validation, labels = decode(data.validation.index, validation_count)
    return _Photos(calibration, validation, labels)


def _is_augmentation(layer) -> bool:
    import keras

    if layer.name == "augmentation":
        return True
    if type(layer).__name__.startswith("Random") and type(layer).__module__.startswith("keras"):
        return True
    return isinstance(layer, keras.Sequential) and bool(layer.layers) and all(
        _is_augmentation(inner) for inner in layer.layers
    )


def _inference_model(model):
    """The model without its augmentation layers (identities at inference);
    the other layers, and so the weights, are shared, not copied."""
    import keras

    class PassThrough(keras.layers.Layer):
        def call(self, inputs, training=None, mask=None):
            return inputs

        def compute_output_shape(self, input_shape):
            return input_shape

    if not any(_is_augmentation(layer) for layer in model.layers):
        return model

    def clone(layer):
        return PassThrough(name=layer.name) if _is_augmentation(layer) else layer

    return keras.models.clone_model(model, clone_function=clone)


def _keras_export(model, path: Path, format: str, image_size: int, quantize, data) -> None:
    import keras

    signature = [keras.InputSpec(shape=(None, image_size, image_size, 3), dtype="float32", name=INPUT_NAME)]
    kwargs = {}
    if quantize == "int8":
        import tensorflow as tf

        calibration = data.calibration_images

        def representative_dataset():
            for image in calibration:
                yield [image[None]]

        kwargs = dict(optimizations=[tf.lite.Optimize.DEFAULT], representative_dataset=representative_dataset)
    if format == "litert" and _keras_backend() == "torch":
        # litert-torch has no dynamic shapes: export batch 1, as LiteRT apps run.
        signature = [keras.InputSpec(shape=(1, image_size, image_size, 3), dtype="float32", name=INPUT_NAME)]
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        try:
            model.export(str(path), format=format, verbose=False, input_signature=signature, **kwargs)
        except ImportError as error:  # a converter Keras imports lazily
            message = f"{format} export on the {_keras_backend()} backend failed: {error}"
            raise FlowerkitError(message.splitlines()[0]) from error


class _quiet:
    """Holds back the converters' chatter on Python's stdout (tf2onnx,
    torch.onnx print progress); stderr from native code stays."""

    def __enter__(self):
        import contextlib
        import io
        import logging

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        for name in ("tf2onnx", "absl"):
            logger = logging.getLogger(name)
            self._stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)


def _write_labels(path: Path, format: str, class_names) -> Path:
    folder = path if format == "tf_saved_model" else path.parent
    labels_path = folder / LABELS_FILE
    labels_path.write_text("".join(f"{name}\n" for name in class_names))
    return labels_path


def _add_onnx_metadata(path: Path, recipe, backend: str) -> None:
    import onnx

    from flowerkit import __version__

    model = onnx.load(str(path))
    props = {
        "class_names": json.dumps(list(recipe.class_names)),
        "image_size": str(recipe.image_size),
        "input": f"float32 RGB 0-255, NHWC (batch, {recipe.image_size}, {recipe.image_size}, 3)",
        "output": "class probabilities (softmax), in class_names order",
        "producer": f"flowerkit {__version__}, Keras {backend} backend",
    }
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def _keras_predict(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)


def _predict_batches(predict, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return np.concatenate([predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def artefact_size(path) -> int:
    """Bytes on disk: the file, or every file under a SavedModel folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


# --------------------------------------------------------------------------
# Running an exported artefact: its own runtime only, no Keras, no flowerkit
# model code.
# --------------------------------------------------------------------------


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
            raise FlowerkitError(f"Unknown export format {self.format!r}. Known: {', '.join(FORMATS)}.")
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
        if not _installed("tensorflow"):
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
        if not _installed("onnxruntime"):
            raise FlowerkitError("Running an ONNX model needs onnxruntime: pip install 'flowerkit[onnx]'.")
        import onnxruntime

        session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        self.runtime = f"onnxruntime {onnxruntime.__version__}"
        self.session = session
        return lambda images: session.run(None, {name: images})[0]

    def _load_litert(self):
        if _installed("ai_edge_litert"):
            from ai_edge_litert.interpreter import Interpreter

            version = _version("ai-edge-litert")
            self.runtime = f"ai-edge-litert {version}"
        elif _installed("tensorflow"):
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
