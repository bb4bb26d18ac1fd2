"""Frozen-backbone training steps on 1, 2 and 4 virtual JAX CPU devices
(keras.distribution.DataParallel, the same global batch), in one worker
process. On a CPU the virtual devices share the same cores, so this
measures the overhead of data-parallel training, not a speed-up.

On PyTorch: a short real-photo run of `flowerkit.train` on 2 processes
under torchrun (gloo on a CPU) scores within 1 point of 1 process on the
same global batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import flowerkit

from bench import torch_scaling
from bench.measure import row_info, run_info, timed
from tests.helpers import REPO, SHARED


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


# Real photos at a small size (the 224-px ImageNet weights, any size), the
# frozen phase on cached features: minutes on a CPU.
TORCH_ACCURACY_RECIPE = dict(image_size=128, epochs=3, batch_size=32,
                             weights=str(SHARED / "weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5"))


@pytest.mark.skipif("os.environ.get('KERAS_BACKEND') != 'torch'", reason="torchrun: PyTorch backend")
def test_torch_two_processes_score_as_one(benchmark, bench_config, data_source, tmp_path):
    import torch

    if bench_config.size == "tiny":
        pytest.skip("two trainings of minutes: not in a dry run (bench/gpu.sh runs torch_scaling)")
    if torch.cuda.is_available() and torch.cuda.device_count() < 2:
        pytest.skip("one GPU: nccl takes one process per GPU")
    if data_source is None or not (SHARED / "weights").is_dir():
        pytest.skip(f"needs a photo folder (--bench-data) and {SHARED / 'weights'}")
    recipe = flowerkit.get_preset("mobilenet_v2_035").replace(**TORCH_ACCURACY_RECIPE)
    arguments = ["--preset", "mobilenet_v2_035", "--image-size", "128", "--epochs", "3",
                 "--max-images", "800", "--weights", recipe.weights]
    runs = {}

    def one_then_two():
        for processes in (1, 2):  # each computes its own feature cache
            runs[processes] = torch_scaling.run(
                processes, Path(data_source), tmp_path / f"run-{processes}", arguments,
                recipe.batch_size, env={"KERAS_HOME": str(tmp_path / f"keras-home-{processes}")})

    benchmark.pedantic(one_then_two, rounds=1, iterations=1)
    accuracy = {processes: metrics["val_accuracy"] for processes, metrics in runs.items()}
    benchmark.extra_info.update({
        **run_info("accuracy_data_parallel", recipe),
        **{key: runs[2][key] for key in ("strategy", "devices", "processes", "per_device_batch")},
        "validation_images": runs[1]["validation_images"],
        "val_accuracy_1_process": accuracy[1], "val_accuracy_2_processes": accuracy[2],
        "wall_seconds_1_process": runs[1]["wall_seconds"], "wall_seconds_2_processes": runs[2]["wall_seconds"],
    })
    assert abs(accuracy[2] - accuracy[1]) <= 0.01, accuracy
