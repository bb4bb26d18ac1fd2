"""Frozen-backbone training steps on 1, 2 and 4 virtual JAX CPU devices
(keras.distribution.DataParallel, the same global batch). On a CPU the
virtual devices share the same cores, so this measures the overhead of
data-parallel training, not a speed-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.measure import row_info, timed
from tests.helpers import REPO


class Worker:
    """bench/distribution_worker.py on `devices` devices; `step()` runs one
    training step there and returns when it has finished."""

    def __init__(self, devices: int, recipe):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.distribution_worker", str(devices), json.dumps(recipe.to_dict())],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ},
        )
        self.record = json.loads(self.process.stdout.readline())

    def step(self) -> float:
        self.process.stdin.write("step\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.mark.skipif("os.environ.get('KERAS_BACKEND') != 'jax'", reason="virtual devices: JAX backend")
@pytest.mark.parametrize("devices", [1, 2, 4])
def test_train_step_data_parallel(benchmark, bench_config, devices):
    recipe = bench_config.throughput_recipe(batch_size=max(bench_config.batch_size or 8, 4))
    worker = Worker(devices, recipe)
    try:
        compile_seconds = timed(worker.step)
        benchmark.pedantic(worker.step, rounds=bench_config.rounds, iterations=1)
    finally:
        worker.close()
    info = row_info("train_step_data_parallel", recipe, recipe.batch_size, compile_seconds, None,
                    benchmark.stats.stats.as_dict())
    benchmark.extra_info.update({**info, **worker.record})
