"""Training on several devices and hosts, with the engines built for it:

    JAX         keras.distribution.DataParallel over a device mesh; several
                hosts through keras.distribution.initialize
                (KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES, _PROCESS_ID)
    TensorFlow  tf.distribute: TPUStrategy (a TPU, found the codelab's way, or
                --tpu ADDRESS), MultiWorkerMirroredStrategy (TF_CONFIG names
                several workers), MirroredStrategy (several local devices)
    PyTorch     one process per device, launched by torchrun (WORLD_SIZE, RANK,
                MASTER_ADDR...): gradients and metrics all-reduced over
                torch.distributed (`flowerkit.backends.torch_distributed`),
                by Keras's own DataParallel where it has a torch engine;
                outside torchrun, several GPUs are refused with the line
                that launches them, never a silent single-device run

The recipe's `batch_size` is the global batch: with N devices each computes
the gradient of batch_size / N images, and the N gradients are averaged, so
a step is the same step as on one device (the same losses, up to the order
of floating-point sums). flowerkit never changes the learning rate: when you
grow the batch with the device count (as the codelab does on a TPU), scale
the learning rate with it (the linear scaling rule: k times the batch, k
times the learning rate) or keep the batch and the learning rate as they are.

On JAX and PyTorch each process decodes only its part of every global batch
(`flowerkit.data.pipelines.ShardedBatches`), padded to a fixed shape with zero-weight rows, so every
step compiles once and every process runs the same steps; only process 0
writes the run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from flowerkit.backends import torch_distributed
from flowerkit.backends.devices import backend, initialize_multi_host
from flowerkit.config.recipe import parse_distribution
from flowerkit.errors import FlowerkitError

JAX_DATA_PARALLEL = "keras.distribution.DataParallel"
MIRRORED = "tf.distribute.MirroredStrategy"
MULTI_WORKER = "tf.distribute.MultiWorkerMirroredStrategy"
TPU = "tf.distribute.TPUStrategy"
TORCH_DATA_PARALLEL = torch_distributed.ENGINE


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a run uses its devices: what `resolve` chose."""

    mode: str  # "none" or "data_parallel"
    strategy: str | None  # the engine's name, e.g. "keras.distribution.DataParallel"
    devices: int  # model replicas, over all processes
    processes: int
    process_index: int
    global_batch: int
    engine: Any = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def per_device_batch(self) -> int:
        return self.global_batch // self.devices

    @property
    def is_jax(self) -> bool:
        return self.strategy == JAX_DATA_PARALLEL

    @property
    def writes_run_folder(self) -> bool:
        return self.process_index == 0

    def record(self) -> dict:
        """For metrics.json and benchmark rows."""
        record = {
            "distribution": self.mode,
            "strategy": self.strategy,
            "devices": self.devices,
            "processes": self.processes,
            "global_batch": self.global_batch,
            "per_device_batch": self.per_device_batch,
        }
        if self.strategy == TORCH_DATA_PARALLEL and self.engine is not None:
            # Keras's DistributedDataParallel or flowerkit's all-reduce.
            record["synchronised_by"] = self.engine.mechanism
        return record

    def describe(self) -> str:
        if self.mode == "none":
            return "one device"
        hosts = f" in {self.processes} processes" if self.processes > 1 else ""
        return (
            f"data-parallel over {self.devices} devices{hosts} ({self.strategy}), global batch "
            f"{self.global_batch}, {self.per_device_batch} per device"
        )

    @property
    def is_tf_distribute(self) -> bool:
        return self.strategy in (MIRRORED, MULTI_WORKER, TPU)

    @property
    def is_data_parallel(self) -> bool:
        return self.mode != "none"

    def scope(self):
        """The engine's scope: variables created in it are placed on every
        device. Code that shards batches or compiles takes the plan itself."""
        return self.engine.scope() if self.engine is not None else contextlib.nullcontext()


def one_device(batch_size: int) -> Plan:
    """The plan of a run on one device."""
    return Plan("none", None, 1, 1, 0, batch_size)


def resolve(recipe, tpu: str | None = None) -> Plan:
    """The plan for `recipe.distribution` on this backend and machine."""
    mode, count = parse_distribution(recipe.distribution)
    engine_resolvers = {"jax": _resolve_jax, "tensorflow": _resolve_tensorflow, "torch": _resolve_torch}
    plan = engine_resolvers[backend()](mode, count, recipe.batch_size, tpu)
    if tpu and plan.strategy != TPU:
        raise FlowerkitError("--tpu needs the TensorFlow backend (KERAS_BACKEND=tensorflow).")
    if plan.global_batch % plan.devices:
        raise FlowerkitError(
            f"batch_size {plan.global_batch} (the global batch) must be divisible by the "
            f"{plan.devices} devices it is spread over; choose a multiple of {plan.devices}."
        )
    return plan


# JAX --------------------------------------------------------------------


def _resolve_jax(mode: str, count: int | None, batch_size: int, tpu: str | None) -> Plan:
    import jax
    import keras

    initialize_multi_host()
    processes, process_index = jax.process_count(), jax.process_index()
    everything = jax.devices()  # the default platform's, over all processes
    if mode == "auto":
        accelerators = [d for d in everything if d.platform != "cpu"]
        if processes == 1 and len(accelerators) < 2:
            return one_device(batch_size)
        chosen = everything
    elif mode == "none":
        if processes > 1:
            raise FlowerkitError(
                "distribution 'none' in a multi-process job: unset KERAS_DISTRIBUTION_* to "
                "train in one process, or use 'auto' or 'data_parallel'."
            )
        return one_device(batch_size)
    else:
        chosen = everything[:count] if count else everything
        if count and count > len(everything):
            raise FlowerkitError(
                f"distribution 'data_parallel:{count}' asks for {count} devices; JAX sees "
                f"{len(everything)} ({everything[0].platform}). For virtual CPU devices set "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={count} before starting."
            )
        if processes > 1 and len(chosen) != len(everything):
            raise FlowerkitError(
                f"In a multi-process job every device takes part: use 'data_parallel' "
                f"(all {len(everything)}), not 'data_parallel:{count}'."
            )
    if batch_size % len(chosen):
        raise FlowerkitError(
            f"batch_size {batch_size} (the global batch) must be divisible by the "
            f"{len(chosen)} devices it is spread over; choose a multiple of {len(chosen)}."
        )
    # Each process feeds its own part of every batch (ShardedBatches), so
    # Keras must not shard the data again.
    engine = keras.distribution.DataParallel(devices=chosen, auto_shard_dataset=False)
    return Plan("data_parallel", JAX_DATA_PARALLEL, len(chosen), processes, process_index,
                batch_size, engine)


# TensorFlow --------------------------------------------------------------


def _resolve_tensorflow(mode: str, count: int | None, batch_size: int, tpu: str | None) -> Plan:
    import tensorflow as tf

    if mode == "none" and not tpu:
        return one_device(batch_size)
    if tpu or (mode == "auto" and _looks_like_tpu_machine()):
        strategy = _tpu_strategy(tpu)
        return Plan("data_parallel", TPU, strategy.num_replicas_in_sync, 1, 0, batch_size, strategy)
    cluster = _tf_config_cluster()
    if cluster:
        processes, process_index = cluster
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return Plan("data_parallel", MULTI_WORKER, strategy.num_replicas_in_sync, processes,
                    process_index, batch_size, strategy)
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    if mode == "auto":
        if len(gpus) < 2:
            return one_device(batch_size)
        chosen = gpus
    else:
        candidates = gpus or [device.name for device in tf.config.list_logical_devices("CPU")]
        chosen = candidates[:count] if count else candidates
        if count and count > len(candidates):
            raise FlowerkitError(
                f"distribution 'data_parallel:{count}' asks for {count} devices; TensorFlow "
                f"sees {len(candidates)} ({'GPU' if gpus else 'CPU'})."
            )
    strategy = tf.distribute.MirroredStrategy(devices=chosen)
    return Plan("data_parallel", MIRRORED, len(chosen), 1, 0, batch_size, strategy)


def _looks_like_tpu_machine() -> bool:
    """Cheap signs of a TPU (no network probe): Colab's or the TPU VM's."""
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")) or Path(
        "/dev/accel0"
    ).exists()


def _tpu_strategy(address: str | None):
    """The codelab's way: resolve the TPU, connect, initialise, TPUStrategy."""
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        if address != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise FlowerkitError(
            f"Could not reach the TPU {address or '(auto-detected)'}: {error}. On a TPU VM pass "
            "--tpu local; with a TPU node, --tpu its name or grpc:// address; else "
            "--distribution none."
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def _tf_config_cluster() -> tuple[int, int] | None:
    """(processes, this process's index) when TF_CONFIG names several tasks;
    index 0 is the chief (or worker 0 without one): the one that writes."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        order = [("chief", i) for i in range(len(cluster.get("chief", [])))]
        order += [("worker", i) for i in range(len(cluster.get("worker", [])))]
        index = order.index((task["type"], int(task["index"])))
    except (ValueError, KeyError, TypeError) as error:
        raise FlowerkitError(f"TF_CONFIG is not a valid cluster description: {error}") from None
    return (len(order), index) if len(order) > 1 else None


# PyTorch -----------------------------------------------------------------


def _resolve_torch(mode: str, count: int | None, batch_size: int, tpu: str | None) -> Plan:
    import torch

    world = torch_distributed.launched_world_size()
    if world == 1:
        gpus = torch.cuda.device_count()
        if mode == "data_parallel" or (mode == "auto" and gpus > 1):
            processes = count or max(gpus, 2)
            raise FlowerkitError(
                f"data-parallel training on PyTorch runs one process per device: launch it with "
                f"torchrun --nproc_per_node={processes} -m flowerkit.train ... (or pass "
                "--distribution none to train on one device)."
            )
        return one_device(batch_size)
    if mode == "none" or (count and count != world):
        raise FlowerkitError(
            f"distribution {'none' if mode == 'none' else f'data_parallel:{count}'} under torchrun "
            f"(WORLD_SIZE={world}): every process takes part; use 'auto' or 'data_parallel', or "
            "change --nproc_per_node."
        )
    if batch_size % world:  # before any process waits for the others
        raise FlowerkitError(
            f"batch_size {batch_size} (the global batch) must be divisible by the {world} "
            f"processes it is spread over; choose a multiple of {world}."
        )
    engine = torch_distributed.DataParallel()
    return Plan("data_parallel", TORCH_DATA_PARALLEL, world, world, engine.rank, batch_size, engine)
