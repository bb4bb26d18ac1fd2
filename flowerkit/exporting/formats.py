"""What can be exported where: the formats, and the format x backend table
of converters and runtimes that `check_can_export` reads. Imports no Keras
(the CLI checks before a backend starts)."""

from __future__ import annotations

from flowerkit.backends.devices import backend as current_backend
from flowerkit.errors import FlowerkitError
from flowerkit.exporting.runtimes import installed

FORMATS = ("tf_saved_model", "onnx", "litert")
QUANTIZATIONS = (None, "int8")


def check_can_export(format: str, backend: str | None = None, quantize: str | None = None) -> None:
    """Raises a one-line `FlowerkitError` if `format` cannot be produced on
    `backend` (default: the current Keras backend) with what is installed."""
    backend = backend or current_backend()
    if format not in FORMATS:
        raise FlowerkitError(f"Unknown export format {format!r}. Known: {', '.join(FORMATS)}.")
    if quantize not in QUANTIZATIONS:
        raise FlowerkitError(f"quantize must be None or 'int8', got {quantize!r}.")
    if quantize and format != "litert":
        raise FlowerkitError(f"quantize={quantize!r} is for format='litert' only, not {format!r}.")
    use_tensorflow = "use KERAS_BACKEND=tensorflow (pip install 'flowerkit[tensorflow]')"
    if format == "tf_saved_model":
        if backend == "jax" and not installed("tensorflow"):
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
        missing = [name for name in ("onnx", converter) if not installed(name)]
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
            if not installed("litert_torch"):
                raise FlowerkitError(
                    "LiteRT export on the torch backend needs litert-torch: "
                    f"pip install 'flowerkit[litert-torch]', or {use_tensorflow}."
                )
        elif backend != "tensorflow":
            raise FlowerkitError(f"LiteRT export is not available on the {backend} backend: {use_tensorflow}.")


def require_runtime(format: str) -> None:
    if format == "onnx" and not installed("onnxruntime"):
        raise FlowerkitError(
            "Checking an ONNX export needs onnxruntime: pip install 'flowerkit[onnx]' (or verify=False)."
        )
    if format == "litert" and not (installed("ai_edge_litert") or installed("tensorflow")):
        raise FlowerkitError("Running a LiteRT export needs ai-edge-litert: pip install 'flowerkit[litert]'.")
