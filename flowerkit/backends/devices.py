"""What we are running on: the Keras backend, its devices (one way to ask:
`devices()`, `device_kind()`), the CPU and library versions. The choices
made from these facts are in `flowerkit.backends.policy`."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sys
import tempfile
from functools import lru_cache

from flowerkit.errors import FlowerkitError


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
    """"CPU", "GPU" or "TPU": where the current backend computes by default."""
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


# Multi-host JAX: joining the job comes before JAX lists its devices.

MULTI_HOST_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def initialize_multi_host() -> None:
    """`keras.distribution.initialize()` when the KERAS_DISTRIBUTION_*
    variables describe several processes. It must come before JAX lists its
    devices, so `devices` calls it first."""
    import keras

    if keras.backend.backend() != "jax" or not _multi_host_requested():
        return
    import jax

    if jax.distributed.is_initialized():
        return
    if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        # CPU devices of different processes talk through gloo; GPUs and
        # TPUs use their own collectives and ignore this.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        keras.distribution.initialize()
    except (RuntimeError, ValueError) as error:
        raise FlowerkitError(
            f"Could not join the multi-host job ({', '.join(MULTI_HOST_VARIABLES)}): {error}"
        ) from None


def _multi_host_requested() -> bool:
    processes = os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "")
    if processes and not processes.isdigit():
        raise FlowerkitError(f"KERAS_DISTRIBUTION_NUM_PROCESSES must be a number, got {processes!r}.")
    return (processes.isdigit() and int(processes) > 1) or bool(
        os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")
    )
