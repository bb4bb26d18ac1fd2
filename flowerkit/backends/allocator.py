"""The one process-wide switch of the backends layer: glibc keeping freed
memory (PyTorch on a CPU). `flowerkit.train()` and the CLI call
`keep_freed_memory()`; building or loading a model never does."""

from __future__ import annotations

import ctypes
import os

from flowerkit.backends.devices import backend, device_kind
from flowerkit.backends.policy import keeps_freed_memory

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_freed_memory_kept = None


def keep_freed_memory() -> bool:
    """Makes glibc keep freed memory for reuse instead of returning it to the
    OS; once per process. Returns whether it is in effect.

    PyTorch on CPU allocates every tensor through malloc, and glibc serves
    each block over 32 MiB by a fresh mmap that it unmaps when freed, so every
    step faults its activations' pages in again (what that costs:
    docs/fast-paths.md). TensorFlow and JAX keep their own memory pools. Same as starting Python with MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=2147483647; the cost is that the process keeps its
    peak heap. Left alone where the user chose an allocator (LD_PRELOAD, any
    MALLOC_* variable) or the C library is not glibc.
    """
    global _freed_memory_kept
    if _freed_memory_kept is None:
        _freed_memory_kept = _set_glibc_malloc_options()
    return _freed_memory_kept


def _set_glibc_malloc_options() -> bool:
    if os.environ.get("LD_PRELOAD") or any(name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: mallopt's parameters are glibc's
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def freed_memory_kept() -> bool | None:
    """Whether `keep_freed_memory` is in effect; None if never asked for."""
    return _freed_memory_kept


def configure() -> bool | None:
    """Applies the allocator policy for the current backend and device
    (`policy.keeps_freed_memory`): what `flowerkit.train()` and the CLI call.
    Returns `freed_memory_kept()`."""
    if keeps_freed_memory(backend(), device_kind()):
        keep_freed_memory()
    return freed_memory_kept()
