"""The machine's limits, measured in the same run as the throughput rows:
float32 matrix-multiply peak through the backend's own matmul
(`keras.ops.matmul`: jnp.matmul, torch.matmul, tf.linalg.matmul) and
numpy's, and memory bandwidth (a large copy, bytes read + written)."""

from __future__ import annotations

import time

import keras
import numpy as np


def _best_seconds(function, repeats: int) -> float:
    function()  # warm-up: thread pools, kernels, first-touch pages
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(n: int, repeats: int = 5) -> dict:
    """Peak GFLOP/s (best of `repeats`) of one n x n x n float32 product,
    through the backend and through numpy."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    x, y = keras.ops.convert_to_tensor(a), keras.ops.convert_to_tensor(b)
    flops = 2 * n**3

    def backend_product():
        # One element back on the host: the product has finished on every backend.
        return float(keras.ops.convert_to_numpy(keras.ops.matmul(x, y)[0, 0]))

    return {
        "matmul_size": n,
        "backend_matmul_gflops": flops / _best_seconds(backend_product, repeats) / 1e9,
        "numpy_matmul_gflops": flops / _best_seconds(lambda: a @ b, repeats) / 1e9,
    }


def copy_gb_per_second(megabytes: int, repeats: int = 5) -> dict:
    """Memory bandwidth of a large copy (numpy), counting bytes read and written."""
    source = np.ones(megabytes * 2**20 // 4, dtype=np.float32)
    target = np.empty_like(source)
    seconds = _best_seconds(lambda: np.copyto(target, source), repeats)
    return {"copy_megabytes": megabytes, "copy_gb_per_second": 2 * source.nbytes / seconds / 1e9}


def measure(matmul_size: int, copy_megabytes: int) -> dict:
    """Every limit; `peak_gflops` is the faster of the two products."""
    limits = {**matmul_gflops(matmul_size), **copy_gb_per_second(copy_megabytes)}
    limits["peak_gflops"] = max(limits["backend_matmul_gflops"], limits["numpy_matmul_gflops"])
    return limits
