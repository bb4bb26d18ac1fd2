"""What can be exported where: the formats, and the format x backend table
of converters and runtimes that `check_can_export` reads. Imports no Keras
(the CLI checks before a backend starts)."""

from __future__ import annotations

import dataclasses

from flowerkit.backends.devices import backend as current_backend
from flowerkit.errors import FlowerkitError
from flowerkit.exporting.runtimes import installed

FORMATS = ("tf_saved_model", "onnx", "litert")
QUANTIZATIONS = (None, "int8")
_LABELS = {"tf_saved_model": "tf_saved_model", "onnx": "ONNX", "litert": "LiteRT"}
_USE_TENSORFLOW = "use KERAS_BACKEND=tensorflow (pip install 'flowerkit[tensorflow]')"


@dataclasses.dataclass(frozen=True)
class Route:
    """How one format is produced on one backend."""

    needs: tuple[str, ...] = ()  # modules the converter needs, beyond Keras
    install: str = ""  # what to do when one is missing
    int8: bool = False  # can calibrate an int8 model on photos
    batch: int | None = None  # a fixed batch size, for a converter without dynamic shapes


# The format x backend table; a pair that is not here cannot be exported.
ROUTES: dict[tuple[str, str], Route] = {
    ("tf_saved_model", "tensorflow"): Route(),
    ("tf_saved_model", "jax"): Route(("tensorflow",), _USE_TENSORFLOW),  # jax2tf
    ("onnx", "tensorflow"): Route(("onnx", "tf2onnx"), "pip install 'flowerkit[onnx]'"),
    ("onnx", "jax"): Route(("onnx", "jax2onnx"), "pip install 'flowerkit[onnx-jax]'"),
    ("onnx", "torch"): Route(("onnx", "onnxscript"), "pip install 'flowerkit[onnx]'"),
    ("litert", "tensorflow"): Route(int8=True),
    # litert-torch has no dynamic shapes: batch 1, as LiteRT apps run.
    ("litert", "torch"): Route(
        ("litert_torch",), f"pip install 'flowerkit[litert-torch]', or {_USE_TENSORFLOW}", batch=1
    ),
}
_SHOWN_AS = {"tensorflow": "TensorFlow (jax2tf)", "litert_torch": "litert-torch"}


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
    label = _LABELS[format]
    route = ROUTES.get((format, backend))
    if route is None:
        raise FlowerkitError(f"{label} export is not available on the {backend} backend: {_USE_TENSORFLOW}.")
    if quantize and not route.int8:
        raise FlowerkitError(
            f"{quantize} {label} export (calibrated on photos) needs the tensorflow backend: {_USE_TENSORFLOW}."
        )
    missing = [_SHOWN_AS.get(name, name) for name in route.needs if not installed(name)]
    if missing:
        raise FlowerkitError(
            f"{label} export on the {backend} backend needs {' and '.join(missing)}: {route.install}."
        )


def fixed_batch(format: str, backend: str) -> int | None:
    """The batch size `format` must be exported with on `backend`, or None
    (any batch size)."""
    route = ROUTES.get((format, backend))
    return route.batch if route else None


def require_runtime(format: str) -> None:
    if format == "onnx" and not installed("onnxruntime"):
        raise FlowerkitError(
            "Checking an ONNX export needs onnxruntime: pip install 'flowerkit[onnx]' (or verify=False)."
        )
    if format == "litert" and not (installed("ai_edge_litert") or installed("tensorflow")):
        raise FlowerkitError("Running a LiteRT export needs ai-edge-litert: pip install 'flowerkit[litert]'.")
