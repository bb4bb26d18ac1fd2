"""Shipping a trained model: TensorFlow SavedModel, ONNX or LiteRT
(`convert.export`), and running the artefact with nothing but its runtime
(`runtimes.load_exported`, no Keras).

`FORMATS`, `check_can_export` and the runtime helpers import no Keras;
`export` does, and is imported from `flowerkit.exporting.convert` on first
use, so that `import flowerkit.exporting.runtimes` stays Keras-free.
"""

import importlib

from flowerkit.exporting.formats import FORMATS, QUANTIZATIONS, check_can_export
from flowerkit.exporting.runtimes import (
    ExportedModel, artefact_size, detect_format, load_exported, read_labels, run_exported,
)

_FROM_CONVERT = ("ExportResult", "export")

__all__ = [
    "ExportResult", "ExportedModel", "FORMATS", "QUANTIZATIONS", "artefact_size", "check_can_export",
    "detect_format", "export", "load_exported", "read_labels", "run_exported",
]


def __getattr__(name):
    if name in _FROM_CONVERT:
        return getattr(importlib.import_module("flowerkit.exporting.convert"), name)
    raise AttributeError(f"module 'flowerkit.exporting' has no attribute {name!r}")
