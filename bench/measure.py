"""Timing helpers and the `extra_info` every benchmark row carries."""

from __future__ import annotations

import time

import numpy as np

from flowerkit.training import record


def timed(function):
    """Seconds one call takes. Callers make `function` return host data
    (numpy arrays, Python floats), so device work has finished: that host
    copy is the synchronisation point on TensorFlow, JAX and PyTorch."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


# Images per step on a GPU or TPU: the recipe's 64 photos of 192x192 leave a
# current accelerator waiting on launch overheads, not computing.
ACCELERATOR_BATCH = 256


def throughput_batch_size(recipe_batch: int, device_kind: str) -> int:
    """The batch the full-size throughput rows time (on one device): the
    recipe's own on a CPU, as training uses there; ACCELERATOR_BATCH on a GPU
    or TPU, never below the recipe's batch."""
    if device_kind.upper() == "CPU":
        return recipe_batch
    return max(recipe_batch, ACCELERATOR_BATCH)


def run_info(benchmark_kind, recipe) -> dict:
    """What was measured, where: the fields every JSON row starts with
    (`flowerkit.training.record.run_info`, as in metrics.json, with the device flattened)."""
    info = record.run_info(recipe)
    device = info.pop("device")
    return {
        "benchmark": benchmark_kind,
        **info,
        "device_kind": device["kind"],
        "device_name": device["name"],
        "device_count": device["count"],
        "recipe": recipe.name,
        "backbone": recipe.backbone,
        "backbone_kwargs": dict(recipe.backbone_kwargs),
        "batch_size": recipe.batch_size,
        "image_size": recipe.image_size,
        "precision": info["precision"],  # "auto" resolved
    }


def row_info(benchmark_kind, recipe, images_per_round, compile_seconds, flops_per_image, stats,
             limits=None, implementation="flowerkit"):
    """A throughput row: `run_info` plus speed, from the benchmark's
    statistics; with the run's `limits` (bench.limits.measure), its fraction
    of the machine's measured matmul peak. `implementation`: "flowerkit",
    or the peer it measures ("plain_keras", "native_torch"; bench.peers)."""
    median = stats["median"]
    images_per_second = images_per_round / median if median else None
    gflops = flops_per_image * images_per_second / 1e9 if flops_per_image and images_per_second else None
    peak = (limits or {}).get("peak_gflops")
    return {
        **run_info(benchmark_kind, recipe),
        "implementation": implementation,
        "images_per_second": images_per_second,
        "compile_seconds": compile_seconds,
        "flops_per_image": flops_per_image,
        "gflops_per_second": gflops,
        "peak_gflops": peak,
        "fraction_of_peak": gflops / peak if gflops and peak else None,
    }


def random_batch(recipe, num_classes=5, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (recipe.batch_size, *recipe.image_shape)).astype("float32")
    labels = np.eye(num_classes, dtype="float32")[rng.integers(0, num_classes, recipe.batch_size)]
    return images, labels
