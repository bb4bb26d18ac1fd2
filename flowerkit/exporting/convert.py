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
import json
import time
import warnings
from pathlib import Path

import numpy as np

from flowerkit import __version__
from flowerkit.data.loading import load_data
from flowerkit.data.pipelines import build_dataset, iterate_batches
from flowerkit.data.sources import sample_index
from flowerkit.errors import FlowerkitError
from flowerkit.backends.devices import backend as current_backend
from flowerkit.backends.fastpaths import apply_fast_paths
from flowerkit.exporting.formats import check_can_export, fixed_batch, require_runtime
from flowerkit.exporting.onnx_graph import tune_for_onnxruntime
from flowerkit.exporting.runtimes import INPUT_NAME, LABELS_FILE, artefact_size, load_exported
from flowerkit.inference.loading import load_run



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
    quiet: bool | None = None,
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
        quiet: progress of indexing and hashing the calibration photos, as
            in `flowerkit.progress.stage`.

    Raises:
        FlowerkitError: one line, when the format cannot be produced on this
            backend or a package is missing (it names the backend or the pip
            extra to use), or for bad arguments.
    """
    backend = current_backend()
    _check_arguments(format, backend, quantize, calibration_data, verify)
    model_path = Path(model_path)
    run = load_run(model_path)
    path = _output_path(model_path, format, output, quantize)
    data = (_photos(run.recipe, calibration_data, calibration_images, validation_images, quiet)
            if calibration_data else None)

    started = time.perf_counter()
    _keras_export(_export_model(run.model), path, format, run.image_size, quantize, data)
    export_seconds = time.perf_counter() - started
    labels_path = _write_labels(path, format, run.class_names)
    if format == "onnx":
        _finish_onnx(path, run.recipe, backend)

    result = ExportResult(
        format=format,
        path=path,
        labels_path=labels_path,
        class_names=run.class_names,
        image_size=run.image_size,
        backend=backend,
        quantize=quantize,
        size_bytes=artefact_size(path),
        export_seconds=export_seconds,
    )
    if verify or quantize:
        result = _verified(result, run.model, data, probe_images)
    return result


def _check_arguments(format: str, backend: str, quantize, calibration_data, verify: bool) -> None:
    """Fails before the model loads: a format this backend cannot produce,
    int8 without photos, or a runtime missing for the check."""
    check_can_export(format, backend, quantize)
    if quantize == "int8" and calibration_data is None:
        raise FlowerkitError(
            "quantize='int8' needs calibration_data: a folder of training photos, one subfolder per class."
        )
    if verify or quantize:
        require_runtime(format)


def _verified(result: ExportResult, model, data, probe_images: int) -> ExportResult:
    """`result` with the artefact run in its own runtime: its largest
    difference from Keras on the probes and, for int8, both accuracies."""
    exported = load_exported(result.path, result.format)
    probes = _probes(data, probe_images, result.image_size)
    expected = _keras_predict(model, probes)
    checks = dict(
        runtime=exported.runtime,
        max_abs_diff=float(np.max(np.abs(exported(probes) - expected))),
        probe_images=len(probes),
    )
    if result.quantize:
        labels = data.validation_labels
        float_predictions = _keras_predict(model, data.validation_images).argmax(-1)
        predictions = _predict_batches(exported, data.validation_images).argmax(-1)
        checks.update(
            accuracy=float(np.mean(predictions == labels)),
            float_accuracy=float(np.mean(float_predictions == labels)),
            validation_images=len(labels),
            calibration_images=len(data.calibration_images),
        )
    return dataclasses.replace(result, **checks)


def _probes(data, count: int, image_size: int) -> np.ndarray:
    """Validation photos when there are some, else seeded noise."""
    if data is not None and len(data.validation_images):
        return data.validation_images[:count]
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (count, image_size, image_size, 3)).astype(np.float32)


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


def _photos(recipe, source, calibration_count: int, validation_count: int | None,
            quiet: bool | None = None) -> _Photos:
    """The recipe's own split of `source` (through `load_data`, as training
    read it): calibration photos from the training part, labelled photos
    from the validation part, decoded by this backend's pipeline."""
    data = load_data(recipe, str(source), quiet=quiet)

    def decode(index, count):
        if count is not None:
            index = sample_index(index, count, recipe.seed)
        dataset, state = build_dataset(index, recipe.image_size, batch_size=64)
        batches = list(iterate_batches(dataset, state))
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


def _export_model(model):
    """`model` as the converters should trace it, without augmentation and
    with stock depthwise and 1x1 convolutions: the JAX fast paths would be
    traced as they run, as slices and matmuls that ONNX Runtime cannot fuse
    back into convolutions. PyTorch's native layers stay: they export
    BatchNorm as one node ONNX Runtime folds, stock Keras as arithmetic it
    cannot (docs/fast-paths.md, ONNX by backend)."""
    apply_fast_paths(model, setting="stock", pointwise_conv="stock", affine="stock")
    return _inference_model(model)


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
    if batch := fixed_batch(format, current_backend()):  # a converter without dynamic shapes
        signature = [keras.InputSpec(shape=(batch, image_size, image_size, 3), dtype="float32", name=INPUT_NAME)]
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        try:
            model.export(str(path), format=format, verbose=False, input_signature=signature, **kwargs)
        except ImportError as error:  # a converter Keras imports lazily
            message = f"{format} export on the {current_backend()} backend failed: {error}"
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


def _finish_onnx(path: Path, recipe, backend: str) -> None:
    """Adds the contract to the ONNX model's metadata, rewrites the graph into
    the forms ONNX Runtime optimises (`onnx_graph`) and saves it as one
    file: some converters write the weights to a separate `.data` file
    (mode 600), which the model does not need at this size (under 2 GB)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    external = _external_files(model, path.parent)
    onnx.load_external_data_for_model(model, str(path.parent))
    tune_for_onnxruntime(model)
    _set_metadata(model, recipe, backend)
    onnx.save(model, str(path))
    for data_file in external - {path}:
        data_file.unlink(missing_ok=True)


def _external_files(model, folder: Path) -> set[Path]:
    """The files holding the weights of `model` (its initializers) outside it."""
    return {
        folder / entry.value
        for tensor in model.graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }


def _set_metadata(model, recipe, backend: str) -> None:
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


def _keras_predict(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)


def _predict_batches(predict, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return np.concatenate([predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
