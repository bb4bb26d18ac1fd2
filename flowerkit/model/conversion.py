"""PyTorch EfficientNet-Lite weights (`.pth`) into a Keras model, on any
backend: read once without PyTorch, converted to Keras layouts, and cached
in the Keras cache (`$KERAS_HOME/models/`) with the SHA-256 of the cached
file beside it, checked on every later load (a damaged cache is converted
again)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np

from flowerkit.errors import FlowerkitError, FlowerkitWarning
from flowerkit.keras_home import keras_home
from flowerkit.model.efficientnet_lite import torch_key
from flowerkit.model.torch_checkpoint import read_state_dict

_BATCH_NORM_PARTS = ("weight", "bias", "running_mean", "running_var")


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def keras_cache_dir() -> Path:
    """Where Keras caches downloads (`keras.utils.get_file`'s default)."""
    return keras_home() / "models"


def load_torch_weights(model: keras.Model, path, expected_sha256: str | None = None) -> None:
    """Loads the `.pth` at `path` into `model` (layers named by `torch_key`).
    `expected_sha256`: the published file's hash; a file that differs is
    refused. Any file that does not fit `model` is refused, naming it."""
    path = Path(path)
    if not path.is_file():
        raise FlowerkitError(f"Weights file not found: {path}")
    source_hash = file_sha256(path)
    if expected_sha256 and source_hash != expected_sha256:
        raise FlowerkitError(
            f"{path} has SHA-256 {source_hash[:16]}..., not the published "
            f"{expected_sha256[:16]}...: damaged or a different file; download it again."
        )
    arrays = _cached_conversion(path, source_hash)
    _assign(model, arrays, path)


def _cache_paths(source_hash: str) -> tuple[Path, Path]:
    """The converted copy of the `.pth` with SHA-256 `source_hash`, and its own checksum."""
    cache = keras_cache_dir() / f"flowerkit-torch-{source_hash[:16]}.npz"
    return cache, cache.with_name(cache.name + ".sha256")


def cached_conversion_exists(source_hash: str | None) -> bool:
    return bool(source_hash) and all(path.is_file() for path in _cache_paths(source_hash))


def load_cached_conversion(model: keras.Model, source_hash: str, source_name: str) -> None:
    """Loads the converted copy of a `.pth` that is not here any more; a
    copy that fails its checksum is refused, naming it."""
    arrays = _read_cache(source_hash)
    if arrays is None:
        cache, _ = _cache_paths(source_hash)
        raise FlowerkitError(
            f"{cache} does not match its SHA-256 (damaged): delete it and load {source_name} again."
        )
    _assign(model, arrays, _cache_paths(source_hash)[0])


def _read_cache(source_hash: str) -> dict[str, np.ndarray] | None:
    cache, checksum = _cache_paths(source_hash)
    if not (cache.is_file() and checksum.is_file()):
        return None
    if checksum.read_text().strip() != file_sha256(cache):
        return None
    with np.load(cache) as stored:
        return dict(stored)


def _cached_conversion(path: Path, source_hash: str) -> dict[str, np.ndarray]:
    arrays = _read_cache(source_hash)
    if arrays is not None:
        return arrays
    cache, checksum = _cache_paths(source_hash)
    if cache.is_file():
        warnings.warn(f"{cache} does not match its SHA-256: converting {path} again.",
                      FlowerkitWarning, stacklevel=3)
    arrays = convert_state_dict(read_state_dict(path))
    _write_cache(cache, checksum, arrays)
    return arrays


def _write_cache(cache: Path, checksum: Path, arrays: dict) -> None:
    """Atomic (a temporary file renamed), so a killed run leaves no half file
    (at worst a copy without its checksum, converted again); a read-only
    cache only costs the conversion next time."""
    temporary = None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache.parent, suffix=".npz", delete=False) as file:
            temporary = Path(file.name)
            np.savez(file, **arrays)
        temporary.chmod(0o644)
        os.replace(temporary, cache)
        checksum.write_text(file_sha256(cache) + "\n")
    except OSError:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def convert_state_dict(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """State-dict tensors -> Keras weights, keyed "<torch prefix>/<index>"
    in the order of a Keras layer's `weights`."""
    arrays = {}
    for key, value in state.items():
        prefix, _, part = key.rpartition(".")
        if part == "num_batches_tracked":
            continue
        if part in _BATCH_NORM_PARTS and value.ndim == 1 and f"{prefix}.running_mean" in state:
            arrays[f"{prefix}/{_BATCH_NORM_PARTS.index(part)}"] = value
        elif value.ndim == 4:  # (out, in/groups, h, w) -> (h, w, in, out); depthwise (h, w, C, 1)
            order = (2, 3, 0, 1) if prefix.endswith("depthwise_conv") else (2, 3, 1, 0)
            arrays[f"{prefix}/0"] = value.transpose(order)
        elif value.ndim == 2:  # Dense: (out, in) -> (in, out)
            arrays[f"{prefix}/0"] = value.T
        else:
            arrays[f"{prefix}/1"] = value  # a bias
    return {key: np.ascontiguousarray(value) for key, value in arrays.items()}


def _assign(model: keras.Model, arrays: dict, path: Path) -> None:
    """Every weighted layer of `model` gets its arrays, shapes checked first:
    nothing is assigned from a file that does not fit."""
    assignments = []
    for layer in model.layers:
        for index, variable in enumerate(layer.weights):
            key = f"{torch_key(layer.name)}/{index}"
            value = arrays.get(key)
            if value is None or tuple(value.shape) != tuple(variable.shape):
                found = "missing" if value is None else f"shape {tuple(value.shape)}"
                raise FlowerkitError(
                    f"{path} does not fit {model.name}: {key} is {found}, the model needs "
                    f"{tuple(variable.shape)}; pass the file of that network."
                )
            assignments.append((variable, value))
    for variable, value in assignments:
        variable.assign(value)
