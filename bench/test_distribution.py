"""Frozen-backbone training steps on 1, 2 and 4 virtual JAX CPU devices
(keras.distribution.DataParallel, the same global batch), in one worker
process. On a CPU the virtual devices share the same cores, so this
measures the overhead of data-parallel training, not a speed-up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.measure import row_info, timed
from tests.helpers import REPO


@pytest.fixture(scope="module")
def worker(bench_config):
    """bench/distribution_worker.py: `step(n)` runs one training step on n
    devices and returns once it has finished."""
    recipe = bench_config.throughput_recipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.distribution_worker", json.dumps(recipe.to_dict())],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    records = {}

    def step(devices: int) -> float:
        process.stdin.write(f"{devices}\n")
        process.stdin.flush()
        if devices not in records:
            records[devices] = json.loads(process.stdout.readline())
        return float(process.stdout.readline())

    step.recipe, step.records = recipe, records
    yield step
    process.stdin.close()
    process.wait(timeout=60)


@pytest.mark.skipif("os.environ.get('KERAS_BACKEND') != 'jax'", reason="virtual devices: JAX backend")
@pytest.mark.parametrize("devices", [1, 2, 4])
def test_train_step_data_parallel(benchmark, bench_config, worker, devices):
    recipe = worker.recipe
    if recipe.batch_size % devices:
        pytest.skip(f"batch {recipe.batch_size} does not split over {devices} devices")
    compile_seconds = timed(lambda: worker(devices))
    worker(devices)  # the second step still traces again on one device
    benchmark.pedantic(worker, args=(devices,), rounds=bench_config.rounds, iterations=1)
    info = row_info("train_step_data_parallel", recipe, recipe.batch_size, compile_seconds, None,
                    benchmark.stats.stats.as_dict())
    benchmark.extra_info.update({**info, **worker.records[devices]})
