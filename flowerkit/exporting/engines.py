"""The engine that runs a saved model's inference: Keras itself, or ONNX
Runtime / LiteRT on an export cached beside the model.

    choice = choose_engine("runs/demo/model.keras")        # "auto": the policy table
    choice.engine, choice.path, choice.predict(images)     # predict None for "keras"
    flowerkit.predict("runs/demo/model.keras", ["rose.jpg"], engine="onnx")

`predict` and `evaluate` here are the API's (`flowerkit.predict`): they pick
the engine, then hand it to `flowerkit.inference`'s flows, which import no
exporter (docs/layers.md).

The cached export (`model.engine.onnx`, `model.engine.tflite`) is verified
against Keras on probe images when it is built (within `TOLERANCE`), and a
record beside it (`.json`) holds the SHA-256 of the model and of the export:
a changed model or a damaged export is rebuilt, never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path
from typing import Callable

from flowerkit import progress
from flowerkit.backends.devices import backend as current_backend
from flowerkit.backends.devices import device_kind
from flowerkit.backends.policy import inference_engine
from flowerkit.errors import FlowerkitError, FlowerkitWarning
from flowerkit.exporting.convert import export
from flowerkit.exporting.formats import check_can_export
from flowerkit.exporting.runtimes import installed, load_exported
from flowerkit.inference import evaluation

TOLERANCE = 1e-4  # largest |p - p_keras| a cached export may differ by
FORMATS = {"onnx": ("onnx", ".onnx", "onnxruntime"), "litert": ("litert", ".tflite", "ai_edge_litert")}


@dataclasses.dataclass
class EngineChoice:
    engine: str  # "keras", "onnx" or "litert"
    path: Path | None = None  # the cached export (None for "keras")
    predict: Callable | None = None  # images (float32 RGB 0-255, NHWC) -> probabilities
    rebuilt: bool = False  # the export was (re)built by this call
    max_abs_diff: float | None = None  # measured against Keras when it was built


def evaluate(model_path, source: str | None = None, split: str = "all", batch_size: int = 64, tta=None,
             engine: str = "auto", quiet: bool | None = None) -> dict:
    """`flowerkit.inference.evaluate` on the engine `engine` picks (see
    `choose_engine`); the report's "engine" names it."""
    return evaluation.evaluate(model_path, source, split=split, batch_size=batch_size, tta=tta,
                               quiet=quiet, engine=choose_engine(model_path, engine))


def predict(model_path, image_paths, top_k: int = 3, tta=None, engine: str = "auto") -> list[dict]:
    """`flowerkit.inference.predict` on the engine `engine` picks (see
    `choose_engine`); each result's "engine" names it."""
    return evaluation.predict(model_path, image_paths, top_k=top_k, tta=tta,
                              engine=choose_engine(model_path, engine))


def available_engines(backend: str | None = None) -> tuple[str, ...]:
    """The engines this environment can build and run on `backend`."""
    backend = backend or current_backend()
    engines = ["keras"]
    for engine, (format, _, runtime) in FORMATS.items():
        try:
            check_can_export(format, backend)
        except FlowerkitError:
            continue
        if installed(runtime):
            engines.append(engine)
    return tuple(engines)


def choose_engine(model_path, setting: str = "auto") -> EngineChoice:
    """The engine for `model_path` on this backend and device, with its
    cached export loaded (built and verified first where needed). A forced
    engine that cannot run here raises a one-line FlowerkitError; an "auto"
    export that fails falls back to Keras with a warning (slower, never
    wrong), and is not tried again for the same model file."""
    if not Path(model_path).is_file():
        raise FlowerkitError(f"Model file not found: {model_path}")
    available = available_engines()
    try:
        engine = inference_engine(current_backend(), device_kind(), available, setting)
    except ValueError as error:
        raise FlowerkitError(str(error)) from None
    if engine == "keras":
        return EngineChoice("keras")
    if engine not in available:
        raise FlowerkitError(
            f"engine {engine!r} cannot run here on the {current_backend()} backend "
            f"(available: {', '.join(available)})."
        )
    if setting != "auto":
        return cached_export(model_path, engine)
    try:
        return cached_export(model_path, engine, once=True)
    except (FlowerkitError, OSError) as error:  # OSError: a read-only run folder, a full disk
        warnings.warn(f"{error} Running on Keras instead.", FlowerkitWarning, stacklevel=2)
        return EngineChoice("keras")


def cache_paths(model_path, engine: str) -> tuple[Path, Path]:
    """(the cached export, its record) beside `model_path`."""
    model_path = Path(model_path)
    export_path = model_path.with_name(f"{model_path.stem}.engine{FORMATS[engine][1]}")
    return export_path, export_path.with_name(export_path.name + ".json")


def cached_export(model_path, engine: str, once: bool = False) -> EngineChoice:
    """The verified export of `model_path` for `engine`, rebuilt when missing,
    made from another model file, damaged or unloadable. With `once` (the
    "auto" choice) a failed build is kept in the record and raised again for
    the same model file rather than tried on every run."""
    model_path = Path(model_path)
    export_path, record_path = cache_paths(model_path, engine)
    model_hash = _sha256(model_path)
    record = _read_record(record_path) or {}
    if record.get("model_sha256") == model_hash:
        if once and "failed" in record:
            raise FlowerkitError(record["failed"])
        if export_path.is_file() and record.get("export_sha256") == _sha256(export_path):
            try:
                return EngineChoice(engine, export_path, load_exported(export_path, FORMATS[engine][0]),
                                    max_abs_diff=record.get("max_abs_diff"))
            except Exception:  # noqa: BLE001 - a runtime's own error for a damaged file: rebuild it
                pass
    try:
        return _rebuild(model_path, engine, export_path, record_path, model_hash)
    except (FlowerkitError, OSError) as error:
        if once:
            _remember_failure(record_path, model_hash, str(error))
        raise


def _rebuild(model_path: Path, engine: str, export_path: Path, record_path: Path, model_hash: str) -> EngineChoice:
    record_path.unlink(missing_ok=True)
    # A LiteRT conversion can take minutes on a small CPU: say what the wait is for.
    with progress.stage(f"Building the {engine} engine for {model_path.name} (once: cached as "
                        f"{export_path.name})", total=1, unit="export") as bar:
        result = export(model_path, FORMATS[engine][0], output=export_path, verify=True)
        bar.update()
    if result.max_abs_diff is None or result.max_abs_diff > TOLERANCE:
        export_path.unlink(missing_ok=True)
        raise FlowerkitError(
            f"The {engine} export of {model_path} differs from Keras by {result.max_abs_diff:.1e} "
            f"(more than {TOLERANCE:g}): use engine 'keras'."
        )
    record = {"model_sha256": model_hash, "export_sha256": _sha256(export_path),
              "max_abs_diff": result.max_abs_diff, "backend": result.backend, "runtime": result.runtime}
    record_path.write_text(json.dumps(record, indent=1))
    return EngineChoice(engine, export_path, load_exported(export_path, FORMATS[engine][0]), rebuilt=True,
                        max_abs_diff=result.max_abs_diff)


def _remember_failure(record_path: Path, model_hash: str, reason: str) -> None:
    """A record that spares the next "auto" run the same failed export (a
    forced engine still tries again; a changed model file starts afresh)."""
    try:
        record_path.write_text(json.dumps({"model_sha256": model_hash, "failed": reason}, indent=1))
    except OSError:  # a read-only run folder: tried again next time, not wrong
        pass


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
