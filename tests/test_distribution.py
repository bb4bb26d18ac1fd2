"""Data-parallel training (flowerkit.distribute): the same losses on one
device and on several, on virtual CPU devices and in two JAX processes; the
recipe field and its errors. (PyTorch under torchrun: test_torch_distributed.py.)

Multi-device runs start a fresh Python (tests/distributed_run.py): device
flags must be set before the backend starts. Agreement asked for: every
training step's loss within 1e-5 (relative) of the single-device run's;
measured here about 3e-7 (JAX, 4 devices and 2 processes) and 1e-7
(TensorFlow MirroredStrategy, 2 devices): the order of floating-point sums.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import flowerkit
from flowerkit import FlowerkitError
from flowerkit.data.pipelines import ImageBatches, ShardedBatches
from flowerkit.data.sources import index_source
from flowerkit.config.recipe import parse_distribution
from tests.helpers import REPO

RUN = REPO / "tests" / "distributed_run.py"
TOLERANCE = 1e-5  # relative, per step loss
# 48 photos: 24 to train on, 24 to validate, in full batches of 8. (A partial
# last batch trains alike, but Keras's running loss then weighs it by its
# rows, padding included, so the logged step losses are not comparable.)
HALF = {"validation_split": 0.5}


def _run(tmp_path, name, source, changes, devices=1, output=None, env=None, wait=True):
    """tests/distributed_run.py in a fresh process; its result (or the process)."""
    result = tmp_path / f"{name}.json"
    environment = {
        **os.environ,
        "FLOWERKIT_TEST_CPU_DEVICES": str(devices),
        "KERAS_HOME": str(tmp_path / f"keras-home-{name}"),  # features computed by each run
        **(env or {}),
    }
    command = [sys.executable, str(RUN), str(source), str(output or "-"), str(result), json.dumps(changes)]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return process, result
    return _finish(process, result)


def _finish(process, result, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return json.loads(result.read_text())


def _assert_same_losses(distributed, single):
    a, b = np.asarray(distributed["step_losses"]), np.asarray(single["step_losses"])
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a, b, rtol=TOLERANCE, atol=0)
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(distributed["history"][key], single["history"][key], rtol=TOLERANCE)
    print(f"max |loss difference| over {len(a)} steps: {np.abs(a - b).max():.2e}")


def _record(metrics):
    keys = ("distribution", "strategy", "devices", "processes", "global_batch", "per_device_batch")
    return {key: metrics[key] for key in keys}


# The recipe field, on every backend ---------------------------------------


@pytest.mark.parametrize(
    "text, parsed",
    [("auto", ("auto", None)), ("none", ("none", None)), ("data_parallel", ("data_parallel", None)),
     ("data_parallel:4", ("data_parallel", 4))],
)
def test_distribution_values(text, parsed):
    assert parse_distribution(text) == parsed


@pytest.mark.parametrize(
    "changes, message",
    [({"distribution": "mirrored"}, "distribution must be"),
     ({"distribution": "data_parallel:0"}, "positive device count"),
     ({"distribution": "none:2"}, "distribution must be"),
     ({"distribution": "data_parallel:3", "batch_size": 8}, "must be divisible by the 3 devices")],
)
def test_bad_distribution_is_a_clear_error(changes, message):
    with pytest.raises(FlowerkitError, match=message):
        flowerkit.get_preset("codelab").replace(**changes)


def test_cli_rejects_an_indivisible_batch_before_starting_the_backend(capsys):
    from flowerkit.cli import main

    status = main(["train", "--distribution", "data_parallel:3", "--batch-size", "8"])
    error = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in error
    assert "must be divisible by the 3 devices" in error


def test_one_device_run_records_its_distribution(image_folder, backend):
    recipe = flowerkit.get_preset("dense").replace(image_size=32, head_units=(8,), epochs=1, batch_size=8)
    if backend == "torch":
        recipe = recipe.replace(distribution="none")  # auto is refused on multi-GPU machines
    metrics = flowerkit.train(recipe, source=str(image_folder), verbose=0).metrics
    assert _record(metrics) == {"distribution": "none", "strategy": None, "devices": 1,
                                "processes": 1, "global_batch": 8, "per_device_batch": 8}


@pytest.mark.backend_independent
def test_sharding_and_the_run_record_read_the_plan_they_are_given():
    from flowerkit.distribute import sharding
    from flowerkit.distribute.plan import JAX_DATA_PARALLEL, MIRRORED, Plan, one_device
    from flowerkit.training.record import run_info

    jax_plan = Plan("data_parallel", JAX_DATA_PARALLEL, 2, 1, 0, 8)  # no engine: nothing placed
    with jax_plan.scope():  # an open scope is no hidden state
        assert sharding.loss_reduction() == "sum_over_batch_size"
        assert not sharding.is_data_parallel(None)
    assert sharding.loss_reduction(jax_plan) == "mean_with_sample_weight"
    assert sharding.is_data_parallel(jax_plan) and not sharding.is_data_parallel(one_device(8))
    assert sharding.any_process(True, jax_plan) is True  # one process: no collective
    model = object()
    assert sharding.one_replica(model, jax_plan) is model
    assert sharding.one_replica(model, None) is model
    assert Plan("data_parallel", MIRRORED, 2, 1, 0, 8).is_tf_distribute
    recipe = flowerkit.get_preset("dense").replace(batch_size=8)
    assert _record(run_info(recipe, jax_plan)) == {
        "distribution": "data_parallel", "strategy": JAX_DATA_PARALLEL, "devices": 2,
        "processes": 1, "global_batch": 8, "per_device_batch": 4}
    assert _record(run_info(recipe))["devices"] == 1


def test_sharded_batches_split_each_global_batch_and_pad_the_last(image_folder):
    index = index_source(str(image_folder))  # 30 images
    def batches():
        return ImageBatches(index, 32, batch_size=8, shuffle=True, seed=1)

    # Each process has its own dataset, on the same order.
    parts = [ShardedBatches(batches(), 8, processes=2, process_index=p) for p in (0, 1)]
    assert [len(part) for part in parts] == [4, 4]
    whole = batches().positions(0, 3)  # the last batch of epoch 0: 6 images
    for p, part in enumerate(parts):
        images, labels, weights = part[3]
        assert images.shape == (4, 32, 32, 3) and labels.shape == (4, 3)
        expected = [1, 1, 1, 1] if p == 0 else [1, 1, 0, 0]  # rows 4-5 real, 6-7 padding
        np.testing.assert_array_equal(weights, expected)
        np.testing.assert_array_equal(labels[:2], np.eye(3)[index.labels[whole[4 * p : 4 * p + 2]]])


# JAX ------------------------------------------------------------------------


jax_only = pytest.mark.backends("jax")


@pytest.fixture(scope="module")
def single_jax_run(tmp_path_factory, session_image_folder):
    folder = tmp_path_factory.mktemp("single")
    return _run(folder, "single", session_image_folder, {**HALF, "distribution": "none"}, devices=4)


@jax_only
def test_jax_four_virtual_devices_match_one(tmp_path, session_image_folder, single_jax_run):
    output = tmp_path / "run"
    distributed = _run(tmp_path, "four", session_image_folder, {**HALF, "distribution": "data_parallel:4"},
                       devices=4, output=output)
    _assert_same_losses(distributed, single_jax_run)
    assert _record(distributed["metrics"]) == {
        "distribution": "data_parallel", "strategy": "keras.distribution.DataParallel",
        "devices": 4, "processes": 1, "global_batch": 8, "per_device_batch": 2}
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["devices"] == 4 and metrics["per_device_batch"] == 2
    # The saved model is a plain one: it loads in a one-device process.
    model = flowerkit.load_model(output / "model.keras")
    assert model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape == (1, 3)


@jax_only
def test_jax_feature_cache_and_fine_tuning_on_four_devices(tmp_path, session_image_folder):
    # micro_batch 0: the data-parallel step has none, and the one-device
    # run then compiles the same kind of step.
    changes = {**HALF, "backbone": "mobilenet", "backbone_kwargs": {"alpha": 0.25},
               "fine_tune_warmup_epochs": 0, "micro_batch": 0}
    env = {"FLOWERKIT_TEST_PRESET": "mobilenet_v2_035_finetune"}
    runs = [
        _run(tmp_path, name, session_image_folder, {**changes, "distribution": mode}, devices=4,
             env=env, wait=False)
        for name, mode in (("one", "none"), ("four", "data_parallel:4"))
    ]
    single, distributed = (_finish(*run) for run in runs)
    _assert_same_losses(distributed, single)
    for result in (single, distributed):
        assert [p["name"] for p in result["metrics"]["phases"]] == ["head", "fine_tune"]
        assert result["metrics"]["phases"][0]["feature_cache"] == "computed"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@jax_only
def test_two_jax_processes_train_together_and_one_writes(tmp_path, session_image_folder, single_jax_run):
    output = tmp_path / "run"
    address = f"localhost:{_free_port()}"
    processes = [
        _run(tmp_path, f"process-{index}", session_image_folder, {**HALF, "distribution": "data_parallel"},
             devices=2, output=output, wait=False,
             env={"KERAS_DISTRIBUTION_JOB_ADDRESSES": address,
                  "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                  "KERAS_DISTRIBUTION_PROCESS_ID": str(index)})
        for index in (0, 1)
    ]
    first, second = (_finish(*process) for process in processes)
    for result in (first, second):
        _assert_same_losses(result, single_jax_run)
        assert _record(result["metrics"])["devices"] == 4
        assert _record(result["metrics"])["processes"] == 2
    assert first["output_dir"] == str(output) and second["output_dir"] is None
    assert (output / "model.keras").is_file()
    # (Besides the run folder's hidden lock files, `artifacts.locked`.)
    assert sorted(path.name for path in output.iterdir() if not path.name.startswith(".")) == sorted(
        ["confusion_matrix.png", "curves.png", "history.csv", "history.json", "metrics.json",
         "model.keras", "predictions.png", "recipe.json"]
    )


@jax_only
def test_jax_asking_for_more_devices_than_there_are(image_folder):
    recipe = flowerkit.get_preset("dense").replace(image_size=32, batch_size=64, distribution="data_parallel:64")
    with pytest.raises(FlowerkitError, match="asks for 64 devices; JAX sees"):
        flowerkit.train(recipe, source=str(image_folder), verbose=0)


# TensorFlow -------------------------------------------------------------------


@pytest.mark.backends("tensorflow")
def test_tensorflow_mirrored_strategy_on_two_logical_cpus_matches_one(tmp_path, session_image_folder):
    output = tmp_path / "run"
    runs = [
        _run(tmp_path, name, session_image_folder, {**HALF, "distribution": mode}, devices=2, wait=False,
             output=output if mode != "none" else None)
        for name, mode in (("one", "none"), ("two", "data_parallel:2"))
    ]
    single, distributed = (_finish(*run) for run in runs)
    _assert_same_losses(distributed, single)
    assert _record(distributed["metrics"]) == {
        "distribution": "data_parallel", "strategy": "tf.distribute.MirroredStrategy",
        "devices": 2, "processes": 1, "global_batch": 8, "per_device_batch": 4}
    model = flowerkit.load_model(output / "model.keras")
    assert model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape == (1, 3)


# PyTorch: tests/test_torch_distributed.py
