"""Exported artefacts in their own runtimes: file size, single-image latency
and batch throughput, one row per format this backend can produce.

Opt-in, as export takes a while and the rows are not part of the main
report: FLOWERKIT_BENCH_EXPORT=1 (every format) or a list such as
FLOWERKIT_BENCH_EXPORT=onnx,litert,litert_int8.

    FLOWERKIT_BENCH_EXPORT=1 KERAS_BACKEND=tensorflow pytest bench/test_export.py --benchmark-only
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest
from bench.measure import random_batch, row_info, timed

from flowerkit import build_model
from flowerkit.errors import FlowerkitError
from flowerkit.exporting import check_can_export, export, load_exported

WANTED = os.environ.get("FLOWERKIT_BENCH_EXPORT", "")
CASES = {
    "tf_saved_model": ("tf_saved_model", None),
    "onnx": ("onnx", None),
    "litert": ("litert", None),
    "litert_int8": ("litert", "int8"),
}
LATENCY_CALLS = 20


@pytest.fixture(scope="module")
def saved_run(bench_config, tmp_path_factory):
    """The throughput recipe (random weights) saved as a run folder; class
    names from the bench data when present, so int8 can calibrate on it."""
    from flowerkit.data.sources import index_source

    recipe = bench_config.throughput_recipe()
    try:
        recipe = recipe.replace(class_names=index_source(bench_config.data).class_names)
    except FlowerkitError:
        pass
    folder = tmp_path_factory.mktemp("export-bench")
    model = build_model(recipe, compile=False)
    model.save(folder / "model.keras")
    recipe.save(folder / "recipe.json")
    return folder, recipe


def _opt_in(case: str):
    """The case, skipped at collection unless asked for: before `saved_run`
    builds and saves a model that no row would use."""
    wanted = WANTED == "1" or case in WANTED.split(",")
    reason = "export rows are opt-in: FLOWERKIT_BENCH_EXPORT=1 or a list of formats"
    return pytest.param(case, marks=pytest.mark.skipif(not wanted, reason=reason))


@pytest.mark.parametrize("case", [_opt_in(case) for case in CASES])
def test_exported_inference(benchmark, bench_config, saved_run, case):
    format, quantize = CASES[case]
    try:
        check_can_export(format, quantize=quantize)
    except FlowerkitError as error:
        pytest.skip(str(error))
    folder, recipe = saved_run
    calibration = bench_config.data if quantize else None
    result = export(folder / "model.keras", format, quantize=quantize, calibration_data=calibration,
                    calibration_images=50, validation_images=100)
    predict = load_exported(result.path)
    images, _ = random_batch(recipe)
    compile_seconds = timed(lambda: predict(images))  # first call: allocation, warm-up
    predict(images[:1])
    latencies = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        predict(images[:1])
        latencies.append(time.perf_counter() - start)
    benchmark.pedantic(predict, args=(images,), rounds=bench_config.rounds, iterations=1)
    info = row_info(f"export_{case}", recipe, len(images), compile_seconds, None, benchmark.stats.stats.as_dict())
    benchmark.extra_info.update(
        info,
        format=format,
        quantize=quantize,
        runtime=result.runtime,
        file_bytes=result.size_bytes,
        export_seconds=result.export_seconds,
        latency_ms=1000 * statistics.median(latencies),
        max_abs_diff=result.max_abs_diff,
        accuracy=result.accuracy,
        float_accuracy=result.float_accuracy,
    )
    assert np.isfinite(predict(images)).all()
