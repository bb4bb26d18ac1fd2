"""Data-parallel PyTorch (`flowerkit.backends.torch_distributed`): two gloo
processes on a CPU, launched by torchrun as a user would, train the same
steps as one process on the whole global batch; a killed process ends the
other with one clear error, and the same command resumes.

Each run is tests/distributed_run.py in fresh processes (torchrun starts
them; gloo is not fork-safe), bounded by a timeout. Agreement asked for:
every step's loss within 1e-5 (relative) of the one-process run's, the
processes' weights identical, the feature cache they computed in halves that
of one process. The same tests run on Keras's own torch engine where Keras
has one (`tox -e torch-keras-nightly`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import flowerkit
from flowerkit import FlowerkitError, compat
from flowerkit.backends.torch_distributed import HAND_WRITTEN, KERAS_ENGINE
from tests.helpers import REPO, make_image_folder

pytestmark = pytest.mark.skipif(
    "os.environ.get('KERAS_BACKEND') != 'torch'", reason="torch.distributed: PyTorch backend"
)

RUN = REPO / "tests" / "distributed_run.py"
TOLERANCE = 1e-5
TIMEOUT = 240  # seconds a run may take: a hang fails the test instead of CI
HALF = {"validation_split": 0.5}
RECORD = ("distribution", "strategy", "devices", "processes", "global_batch", "per_device_batch",
          "synchronised_by")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _command(source, output, result, changes, processes):
    script = [str(RUN), str(source), str(output or "-"), str(result), json.dumps(changes)]
    if processes == 1:
        return [sys.executable, *script]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
            f"--master_port={_free_port()}", *script]


def _start(tmp_path, name, source, changes, processes=1, output=None, env=None):
    """One run (torchrun with several processes) in the background."""
    environment = {**os.environ, "KERAS_HOME": str(tmp_path / f"keras-home-{name}"), **(env or {})}
    result = tmp_path / f"{name}-{{rank}}.json"
    process = subprocess.Popen(_command(source, output, result, changes, processes), env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, result, processes


def _finish(process, result, processes):
    """Each process's result and weights, once the run ended well."""
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output[-3000:]
    results = []
    for rank in range(processes):
        path = tmp = result.with_name(result.name.replace("{rank}", str(rank)))
        results.append(json.loads(path.read_text()))
        results[-1]["weights"] = list(np.load(tmp.with_suffix(".npz")).values())
    return results


def _assert_one_run(single, ranks, last_batch_scale=None):
    """The processes agree exactly, and with one process within TOLERANCE.
    last_batch_scale: (steps, factor): the padded steps, logged as their loss
    sum over the whole global batch, times factor give the one-process loss."""
    for rank in ranks[1:]:
        assert rank["history"] == ranks[0]["history"]  # losses, accuracies, validation
        for mine, theirs in zip(rank["weights"], ranks[0]["weights"]):
            np.testing.assert_array_equal(mine, theirs)
    distributed = np.asarray(ranks[0]["step_losses"])
    expected = np.asarray(single["step_losses"])
    if last_batch_scale is not None:
        distributed[last_batch_scale[0]] *= last_batch_scale[1]
    assert len(distributed) == len(expected) > 0
    np.testing.assert_allclose(distributed, expected, rtol=TOLERANCE, atol=0)
    # With a padded batch the epoch's mean loss counts it as a full one.
    for key in ("accuracy", "val_accuracy") + (("loss",) if last_batch_scale is None else ()):
        np.testing.assert_allclose(ranks[0]["history"][key], single["history"][key], rtol=TOLERANCE)
    for mine, one_process in zip(ranks[0]["weights"], single["weights"]):
        np.testing.assert_allclose(mine, one_process, rtol=1e-4, atol=1e-6)
    print(f"max |loss difference| over {len(expected)} steps: {np.abs(distributed - expected).max():.2e}"
          f" ({ranks[0]['metrics']['synchronised_by']})")


def test_two_processes_train_as_one_and_only_rank_zero_writes(tmp_path, session_image_folder):
    output = tmp_path / "run"
    runs = [
        _start(tmp_path, "one", session_image_folder, {**HALF, "distribution": "none"}),
        _start(tmp_path, "two", session_image_folder, {**HALF, "distribution": "auto"}, 2, output),
    ]
    (single,), ranks = (_finish(*run) for run in runs)
    _assert_one_run(single, ranks)
    # Keras's own DistributedDataParallel wherever Keras has a torch engine.
    mechanism = KERAS_ENGINE if compat.keras_distribution_available() else HAND_WRITTEN
    for rank, result in enumerate(ranks):
        assert {key: result["metrics"][key] for key in RECORD} == {
            "distribution": "data_parallel", "strategy": "torch.distributed", "devices": 2,
            "processes": 2, "global_batch": 8, "per_device_batch": 4, "synchronised_by": mechanism}
        assert result["output_dir"] == (str(output) if rank == 0 else None)
    # (Besides the run folder's hidden lock files, `artifacts.locked`.)
    assert sorted(path.name for path in output.iterdir() if not path.name.startswith(".")) == sorted(
        ["confusion_matrix.png", "curves.png", "history.csv", "history.json", "metrics.json",
         "model.keras", "predictions.png", "recipe.json"])
    assert json.loads((output / "metrics.json").read_text())["processes"] == 2


def test_feature_cache_fine_tuning_and_class_weights_with_a_padded_batch(tmp_path):
    # 16 + 16 + 6 images, half to train: 19 in batches of 8, 8 and 3 (the
    # last padded: process 0 gets 3 images and a blank, process 1 blanks).
    source = make_image_folder(tmp_path / "photos", per_class=16)
    for path in sorted((source / "blue").iterdir())[6:]:
        path.unlink()
    changes = {**HALF, "backbone": "mobilenet", "backbone_kwargs": {"alpha": 0.25},
               "fine_tune_warmup_epochs": 0, "micro_batch": 0, "class_weight": "balanced",
               "learning_rate": 0.05, "fine_tune_learning_rate": 0.01}
    env = {"FLOWERKIT_TEST_PRESET": "mobilenet_v2_035_finetune"}
    runs = [
        _start(tmp_path, "one", source, {**changes, "distribution": "none"}, env=env),
        _start(tmp_path, "two", source, {**changes, "distribution": "data_parallel"}, 2, env=env),
    ]
    (single,), ranks = (_finish(*run) for run in runs)
    assert single["metrics"]["train_images"] == 19 and single["metrics"]["class_weights"][0] > 1
    # Logged, the padded step's loss is its sum over 8 rows, not 3.
    _assert_one_run(single, ranks, last_batch_scale=([2, 5], 8 / 3))
    for result in (single, *ranks):
        assert [p["name"] for p in result["metrics"]["phases"]] == ["head", "fine_tune"]
    # The processes computed the feature caches (train, validation) in halves and gathered them.
    one, two = (sorted((tmp_path / f"keras-home-{name}" / "flowerkit" / "features").glob("*/*/features.npy"))
                for name in ("one", "two"))
    assert len(one) == 2 and [p.parts[-3:] for p in one] == [p.parts[-3:] for p in two]
    for single_cache, gathered in zip(one, two):
        np.testing.assert_allclose(np.load(gathered), np.load(single_cache), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.load(gathered.with_name("labels.npy")),
                                      np.load(single_cache.with_name("labels.npy")))


def _one_line_error(arguments, capsys) -> str:
    from flowerkit.cli import main

    status = main(arguments)
    error = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in error
    return error


def test_several_devices_outside_torchrun_are_refused_with_the_launch_line(image_folder, capsys):
    error = _one_line_error(["train", "--preset", "dense", "--data", str(image_folder), "--output",
                             str(image_folder.parent / "run"), "--distribution", "data_parallel:4"], capsys)
    assert "torchrun --nproc_per_node=4 -m flowerkit.train" in error
    assert not (image_folder.parent / "run").exists()


def test_auto_with_several_gpus_outside_torchrun_says_how_to_launch(monkeypatch):
    import torch

    from flowerkit.distribute.plan import resolve

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    with pytest.raises(FlowerkitError, match="torchrun --nproc_per_node=8 .*--distribution none"):
        resolve(flowerkit.get_preset("codelab"))
    assert resolve(flowerkit.get_preset("codelab").replace(distribution="none")).devices == 1


@pytest.mark.parametrize(
    "arguments, message",
    [(["--batch-size", "7"], "batch_size 7 .* must be divisible by the 2 processes"),
     (["--distribution", "none"], "distribution none under torchrun .*every process takes part"),
     (["--distribution", "data_parallel:4"], "data_parallel:4 under torchrun")],
)
def test_a_torchrun_job_that_cannot_split_is_refused_before_training(
    image_folder, capsys, monkeypatch, arguments, message
):
    # As torchrun sets it; no MASTER_ADDR, so any wait for the other process would fail instead.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    output = image_folder.parent / "run"
    error = _one_line_error(["train", "--preset", "dense", "--data", str(image_folder), "--output",
                             str(output), *arguments], capsys)
    assert re.search(message, error), error
    assert not output.exists()


# Runs the CLI; process 1 kills itself (SIGKILL) in the 3rd epoch, after two backups.
CHILD = textwrap.dedent("""
    import os, signal, sys
    import keras
    import flowerkit.training.phases as phases

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 2 and batch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    if os.environ["RANK"] == "1":
        fit = phases._fit
        phases._fit = lambda model, train, validation, epochs, initial, callbacks, *rest, **kw: fit(
            model, train, validation, epochs, initial, [*callbacks, Kill()], *rest, **kw)
    from flowerkit.cli import main
    sys.exit(main(["train", *sys.argv[1:]]))
""")


def test_a_killed_process_ends_the_other_with_one_error_and_the_command_resumes(
    tmp_path, session_image_folder
):
    output = tmp_path / "run"
    arguments = ["--preset", "dense", "--data", str(session_image_folder), "--output", str(output),
                 "--image-size", "32", "--batch-size", "8", "--epochs", "4", "--validation-split", "0.5"]
    environment = {**os.environ, "KERAS_HOME": str(tmp_path / "keras-home"), "WORLD_SIZE": "2",
                   "MASTER_ADDR": "localhost", "MASTER_PORT": str(_free_port())}
    # Started as torchrun starts them, without its agent (which would stop the
    # survivor itself): the survivor must notice on its own.
    processes = [
        subprocess.Popen([sys.executable, "-c", CHILD, *arguments], text=True,
                         env={**environment, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for rank in (0, 1)
    ]
    (out_0, error_0), (_, error_1) = (process.communicate(timeout=TIMEOUT) for process in processes)
    assert processes[1].returncode == -signal.SIGKILL, error_1[-3000:]
    assert processes[0].returncode == 2, error_0[-3000:]
    assert "lost its peers" in error_0 and "rerun the same torchrun command" in error_0
    assert not (output / "model.keras").exists()

    rerun = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         f"--master_port={_free_port()}", "-m", "flowerkit.train", *arguments],
        env={**os.environ, "KERAS_HOME": environment["KERAS_HOME"]},
        capture_output=True, text=True, timeout=TIMEOUT)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming the interrupted run in {output} after epoch 2" in rerun.stdout
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["epochs"] == 4 and metrics["processes"] == 2
