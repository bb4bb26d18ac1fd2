"""What we are running on: backend, device, library versions, and the
execution settings that are fastest there."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sys
import tempfile
from functools import lru_cache


@contextlib.contextmanager
def native_stderr_captured():
    """Holds back what native code writes to stderr (TensorFlow's start-up
    chatter: oneDNN notes, "could not find cuda drivers", a failed cuInit on
    machines without a GPU) and replays it only if the block fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def warm_up_quietly() -> None:
    """Imports Keras and its backend, and lists devices, with native start-up
    noise held back (see `native_stderr_captured`). For CLIs."""
    with native_stderr_captured():
        devices()


def backend() -> str:
    import keras

    return keras.backend.backend()


@lru_cache(maxsize=None)
def devices() -> list[dict]:
    """Accelerators visible to the current backend, or the CPU."""
    name = backend()
    found = []
    if name == "jax":
        import jax

        from flowerkit.distribution import initialize_multi_host

        initialize_multi_host()  # before JAX lists devices: multi-host jobs need it first
        found = [
            {"kind": d.platform.upper(), "name": getattr(d, "device_kind", d.platform)}
            for d in jax.devices()
            if d.platform != "cpu"
        ]
    elif name == "torch":
        import torch

        found = [
            {"kind": "GPU", "name": torch.cuda.get_device_name(i)}
            for i in range(torch.cuda.device_count())
        ]
    elif name == "tensorflow":
        import tensorflow as tf

        for kind in ("TPU", "GPU"):
            for device in tf.config.list_physical_devices(kind):
                details = tf.config.experimental.get_device_details(device)
                found.append({"kind": kind, "name": details.get("device_name", device.name)})
    return found or [{"kind": "CPU", "name": cpu_name()}]


def device_kind() -> str:
    return devices()[0]["kind"]


def device_summary() -> dict:
    found = devices()
    return {"kind": found[0]["kind"], "name": found[0]["name"], "count": len(found)}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("keras", "tensorflow", "jax", "jaxlib", "torch", "keras-hub", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def run_info(recipe) -> dict:
    """Where and how a recipe runs: for metrics.json and benchmark rows."""
    from flowerkit import distribution
    from flowerkit.fastpath import current_micro_batch, fast_path_record

    fast_paths = fast_path_record(
        recipe.depthwise_conv, recipe.torch_layers, recipe.pointwise_conv, recipe.affine_augmentation
    )
    trains_backbone = recipe.trainable_backbone or recipe.fine_tune_epochs > 0
    return {
        "backend": backend(),
        "device": device_summary(),
        **distribution.record(recipe),  # devices, processes, global and per-device batch
        "jit_compile": resolve_jit_compile(recipe.jit_compile),
        "precision": resolve_precision(recipe.precision),
        "depthwise_conv": fast_paths["depthwise_conv"],
        "torch_layers": fast_paths["torch_layers"],
        "pointwise_conv": fast_paths["pointwise_conv"],
        "affine_augmentation": fast_paths["affine_augmentation"],
        "micro_batch": current_micro_batch(recipe.micro_batch, trains_backbone),  # rows; 0: off
        **{k: fast_paths[k] for k in ("torch_keep_freed_memory",) if k in fast_paths},
        "versions": library_versions(),
    }


def resolve_precision(setting: str) -> str:
    """The recipe's precision, with "auto" resolved for the current device."""
    if setting != "auto":
        return setting
    return precision_for(device_kind(), compute_capability())


def precision_for(kind: str, capability: tuple[int, int] | None = None) -> str:
    """Mixed bfloat16 on TPUs and on GPUs with bfloat16 tensor cores (compute
    capability 8.0+, Ampere on); mixed float16 on older GPUs (Keras adds loss
    scaling for it); float32 on CPUs, where lower precision is no faster."""
    if kind == "TPU":
        return "mixed_bfloat16"
    if kind == "GPU":
        return "mixed_bfloat16" if capability is None or capability >= (8, 0) else "mixed_float16"
    return "float32"


def compute_capability() -> tuple[int, int] | None:
    """The first NVIDIA GPU's compute capability, or None (no GPU, or not NVIDIA)."""
    name = backend()
    try:
        if name == "torch":
            import torch

            return tuple(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None
        if name == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                found = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
                return tuple(found) if found else None
        if name == "jax":
            import jax

            found = getattr(jax.devices()[0], "compute_capability", None)  # "8.0" on CUDA
            return tuple(int(part) for part in found.split(".")[:2]) if found else None
    except (RuntimeError, ValueError, AttributeError):
        return None
    return None


def resolve_jit_compile(setting) -> bool:
    """The recipe's jit_compile, with "auto" resolved per backend and device.

    JAX always traces with XLA; PyTorch's torch.compile is slow to warm up and
    not yet a win for these models; XLA on TensorFlow pays off on GPU/TPU but
    runs depthwise convolutions ~16x slower on CPU.
    """
    if setting != "auto":
        return bool(setting)
    name = backend()
    if name == "jax":
        return True
    if name == "tensorflow":
        return device_kind() != "CPU"
    return False
