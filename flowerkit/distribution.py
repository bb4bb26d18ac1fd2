"""Training on several devices and hosts, with the engines built for it:

    JAX         keras.distribution.DataParallel over a device mesh; several
                hosts through keras.distribution.initialize
                (KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES, _PROCESS_ID)
    TensorFlow  tf.distribute: TPUStrategy (a TPU, found the codelab's way, or
                --tpu ADDRESS), MultiWorkerMirroredStrategy (TF_CONFIG names
                several workers), MirroredStrategy (several local devices)
    PyTorch     not supported: a FlowerkitError saying what to use instead,
                never a silent single-device run

The recipe's `batch_size` is the global batch: with N devices each computes
the gradient of batch_size / N images, and the N gradients are averaged, so
a step is the same step as on one device (the same losses, up to the order
of floating-point sums). flowerkit never changes the learning rate: when you
grow the batch with the device count (as the codelab does on a TPU), scale
the learning rate with it (the linear scaling rule: k times the batch, k
times the learning rate) or keep the batch and the learning rate as they are.

On JAX each process decodes only its part of every global batch
(`flowerkit.data.pipelines.ShardedBatches`), padded to a fixed shape with zero-weight rows, so every
step compiles once and every process runs the same steps; only process 0
writes the run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from flowerkit.errors import FlowerkitError

MODES = ("auto", "none", "data_parallel")
JAX_DATA_PARALLEL = "keras.distribution.DataParallel"
MIRRORED = "tf.distribute.MirroredStrategy"
MULTI_WORKER = "tf.distribute.MultiWorkerMirroredStrategy"
TPU = "tf.distribute.TPUStrategy"
_MULTI_HOST_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def parse_distribution(text: str) -> tuple[str, int | None]:
    """("auto"|"none"|"data_parallel", device count or None) of a recipe's
    `distribution`: "auto", "none", "data_parallel" or "data_parallel:N"."""
    mode, _, count = str(text).partition(":")
    if mode not in MODES or (count and mode != "data_parallel"):
        raise FlowerkitError(
            f"distribution must be 'auto', 'none', 'data_parallel' or 'data_parallel:N', "
            f"got {text!r}."
        )
    if not count:
        return mode, None
    if not count.isdigit() or int(count) < 1:
        raise FlowerkitError(f"distribution {text!r}: N must be a positive device count.")
    return mode, int(count)


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
        return {
            "distribution": self.mode,
            "strategy": self.strategy,
            "devices": self.devices,
            "processes": self.processes,
            "global_batch": self.global_batch,
            "per_device_batch": self.per_device_batch,
        }

    def describe(self) -> str:
        if self.mode == "none":
            return "one device"
        hosts = f" in {self.processes} processes" if self.processes > 1 else ""
        return (
            f"data-parallel over {self.devices} devices{hosts} ({self.strategy}), global batch "
            f"{self.global_batch}, {self.per_device_batch} per device"
        )

    @contextlib.contextmanager
    def scope(self):
        """The engine's scope (variables created in it are placed on every
        device), and this plan as the `active()` one."""
        global _ACTIVE
        previous, _ACTIVE = _ACTIVE, self
        try:
            with self.engine.scope() if self.engine is not None else contextlib.nullcontext():
                yield self
        finally:
            _ACTIVE = previous


_ACTIVE: Plan | None = None


def active() -> Plan | None:
    """The plan whose scope is open, if any."""
    return _ACTIVE


def record(recipe) -> dict:
    """The active plan's record, or one device's."""
    plan = _ACTIVE or _single(recipe.batch_size)
    return plan.record()


def _single(batch_size: int) -> Plan:
    return Plan("none", None, 1, 1, 0, batch_size)


def resolve(recipe, tpu: str | None = None) -> Plan:
    """The plan for `recipe.distribution` on this backend and machine."""
    import keras

    mode, count = parse_distribution(recipe.distribution)
    backend = keras.backend.backend()
    if backend == "jax":
        plan = _resolve_jax(mode, count, recipe.batch_size)
    elif backend == "tensorflow":
        plan = _resolve_tensorflow(mode, count, recipe.batch_size, tpu)
    else:
        plan = _resolve_torch(mode, count, recipe.batch_size)
    if tpu and plan.strategy != TPU:
        raise FlowerkitError("--tpu needs the TensorFlow backend (KERAS_BACKEND=tensorflow).")
    if plan.global_batch % plan.devices:
        raise FlowerkitError(
            f"batch_size {plan.global_batch} (the global batch) must be divisible by the "
            f"{plan.devices} devices it is spread over; choose a multiple of {plan.devices}."
        )
    return plan


# JAX --------------------------------------------------------------------


def initialize_multi_host() -> None:
    """`keras.distribution.initialize()` when the KERAS_DISTRIBUTION_*
    variables describe several processes. It must come before JAX lists its
    devices, so `flowerkit.runtime.devices` calls it first."""
    import keras

    if keras.backend.backend() != "jax" or not _multi_host_requested():
        return
    import jax

    if jax.distributed.is_initialized():
        return
    if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        # CPU devices of different processes talk through gloo; GPUs and
        # TPUs use their own collectives and ignore this.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        keras.distribution.initialize()
    except (RuntimeError, ValueError) as error:
        raise FlowerkitError(
            f"Could not join the multi-host job ({', '.join(_MULTI_HOST_VARIABLES)}): {error}"
        ) from None


def _multi_host_requested() -> bool:
    processes = os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "")
    if processes and not processes.isdigit():
        raise FlowerkitError(f"KERAS_DISTRIBUTION_NUM_PROCESSES must be a number, got {processes!r}.")
    return (processes.isdigit() and int(processes) > 1) or bool(
        os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")
    )


def _resolve_jax(mode: str, count: int | None, batch_size: int) -> Plan:
    import jax
    import keras

    initialize_multi_host()
    processes, process_index = jax.process_count(), jax.process_index()
    everything = jax.devices()  # the default platform's, over all processes
    if mode == "auto":
        accelerators = [d for d in everything if d.platform != "cpu"]
        if processes == 1 and len(accelerators) < 2:
            return _single(batch_size)
        chosen = everything
    elif mode == "none":
        if processes > 1:
            raise FlowerkitError(
                "distribution 'none' in a multi-process job: unset KERAS_DISTRIBUTION_* to "
                "train in one process, or use 'auto' or 'data_parallel'."
            )
        return _single(batch_size)
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
        return _single(batch_size)
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
            return _single(batch_size)
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


def _resolve_torch(mode: str, count: int | None, batch_size: int) -> Plan:
    import torch

    instead = ("use KERAS_BACKEND=jax (keras.distribution) or KERAS_BACKEND=tensorflow "
               "(tf.distribute), which train one recipe on all devices and hosts")
    if mode == "data_parallel":
        raise FlowerkitError(f"distribution 'data_parallel' is not supported on PyTorch; {instead}.")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise FlowerkitError(
            f"flowerkit does not train under torchrun (WORLD_SIZE={os.environ['WORLD_SIZE']}): "
            f"each process would train alone. {instead[0].upper()}{instead[1:]}."
        )
    gpus = torch.cuda.device_count()
    if mode == "auto" and gpus > 1:
        raise FlowerkitError(
            f"This machine has {gpus} GPUs, and flowerkit cannot spread training over them on "
            f"PyTorch: pass --distribution none to train on one GPU, or {instead}."
        )
    return _single(batch_size)


# Data and predictions under a JAX plan -----------------------------------


def _jax_plan() -> Plan | None:
    plan = _ACTIVE
    return plan if plan is not None and plan.is_jax else None


def for_fit(dataset):
    """`dataset` as `fit` should get it under the active plan."""
    plan = _jax_plan()
    if plan is None:
        return dataset  # Keras distributes tf.data and PyDatasets under tf.distribute
    if not hasattr(dataset, "positions"):
        raise FlowerkitError(
            "data_parallel on JAX reads its images through flowerkit's Pillow pipeline; "
            "load the data with pipeline='auto' or 'python'."
        )
    from flowerkit.data.pipelines import ShardedBatches

    return ShardedBatches(dataset, plan.global_batch, plan.processes, plan.process_index)


def epoch_callbacks(dataset) -> list:
    """Callbacks that keep a shuffled tf.data pipeline on the same order per
    epoch as on one device (`flowerkit.data.pipelines.EpochCounter`)."""
    counter = getattr(dataset, "flowerkit_epochs", None)
    if counter is None or _ACTIVE is None or _ACTIVE.mode == "none":
        return []
    import keras

    class PinEpochOrder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            counter.begin_epoch()

    return [PinEpochOrder()]


def loss_reduction() -> str:
    """The loss's reduction: under a JAX plan, the mean over rows of non-zero
    weight, so a padded last batch gives the same loss and gradient as the
    unpadded one; elsewhere Keras's default."""
    return "mean_with_sample_weight" if _jax_plan() else "sum_over_batch_size"


def _gather(array) -> np.ndarray:
    """Every process's rows of `array`, in process order."""
    import jax

    if jax.process_count() == 1:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def any_process(flag: bool) -> bool:
    """True when `flag` is true on any process (for decisions every process
    must take alike, such as computing features that one of them lacks)."""
    plan = _jax_plan()
    if plan is None or plan.processes == 1:
        return flag
    return bool(_gather(np.asarray([flag])).any())


def predict_batches(model, dataset, views: int = 1):
    """(probabilities or features per view, one-hot labels) for each batch of
    `dataset` (made by `make_dataset`), views being the images and, for
    views=2, their mirror images. Under a JAX plan each process decodes its
    part of each batch, the devices share the work, and every process gets
    every row."""
    from flowerkit.data.pipelines import iterate_batches, one_pass

    plan = _jax_plan()
    if plan is None:
        model = _one_replica(model)
        for images, one_hot in iterate_batches(dataset):
            outputs = [np.asarray(model.predict_on_batch(images))]
            if views == 2:
                flipped = np.ascontiguousarray(images[:, :, ::-1])
                outputs.append(np.asarray(model.predict_on_batch(flipped)))
            yield outputs, np.asarray(one_hot)
        return
    forward = _sharded_forward(model, plan)
    # Worker threads decode ahead; the collectives stay in this thread, in order.
    for images, one_hot, weights in one_pass(for_fit(dataset)):
        outputs = [forward(images)]
        if views == 2:
            outputs.append(forward(np.ascontiguousarray(images[:, :, ::-1])))
        keep = _gather(weights) > 0
        yield [output[keep] for output in outputs], _gather(one_hot)[keep]


class _OneReplica:
    """`predict_on_batch` as one call of the model. Under tf.distribute,
    Keras's own runs the whole batch on every replica and returns every
    replica's rows (N times the batch)."""

    def __init__(self, model):
        import tensorflow as tf

        self._call = tf.function(lambda images: model(images, training=False), reduce_retracing=True)

    def predict_on_batch(self, images):
        return self._call(images).numpy()


def _one_replica(model):
    plan = _ACTIVE
    return _OneReplica(model) if plan is not None and plan.strategy in (MIRRORED, MULTI_WORKER, TPU) else model


def _sharded_forward(model, plan: Plan):
    """model(images) on the plan's devices, for this process's rows of a
    global batch; returns all rows, on every process."""
    import jax

    trainable = [variable.value for variable in model.trainable_variables]
    non_trainable = [variable.value for variable in model.non_trainable_variables]

    @jax.jit
    def run(trainable, non_trainable, images):
        return model.stateless_call(trainable, non_trainable, images, training=False)[0]

    def forward(local_images):
        layout = plan.engine.get_data_layout(local_images.shape).backend_layout
        images = jax.make_array_from_process_local_data(layout, local_images)
        return _gather(run(trainable, non_trainable, images))

    return forward


def predict_subset(model, subset, sample_positions):
    """`flowerkit.inference.predict_dataset` for a `Subset`, shared out over
    the active JAX plan's devices and processes."""
    from flowerkit.data.decode import decode_image
    from flowerkit.inference import Predictions, predict_dataset

    if _jax_plan() is None:
        return predict_dataset(_one_replica(model), subset.dataset, sample_positions=sample_positions)
    probabilities, labels = [], []
    for (outputs,), one_hot in predict_batches(model, subset.dataset):
        probabilities.append(outputs)
        labels.append(one_hot.argmax(axis=1))
    if not probabilities:
        raise FlowerkitError("No images to predict on.")
    probabilities = np.concatenate(probabilities)
    wanted = [int(p) for p in sorted(sample_positions) if p < len(probabilities)]
    size = subset.dataset.image_size
    return Predictions(
        probabilities=probabilities,
        labels=np.concatenate(labels),
        sample_images=np.stack([decode_image(subset.index.images[p], size) for p in wanted])
        if wanted else np.zeros((0, 1, 1, 3)),
        sample_positions=np.asarray(wanted, dtype=np.int64),
    )


# The run folder ------------------------------------------------------------


def run_folder(output_dir: Path) -> Path:
    """Where this process keeps its run: `output_dir` on process 0; on the
    others, a private folder in the Keras cache that holds only their
    backups (so that a rerun resumes every process from the same epoch)."""
    plan = _ACTIVE
    if plan is None or plan.writes_run_folder:
        return output_dir
    from flowerkit.features import cache_root

    key = hashlib.sha256(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]
    return cache_root().parent / "process_runs" / key / f"process-{plan.process_index}"


def save_alongside(model) -> None:
    """What the processes that do not write call while process 0 saves the
    model: saving reads values that span every process's devices, which
    takes all of them. The copy goes to a temporary folder and away."""
    with tempfile.TemporaryDirectory(prefix="flowerkit-save-") as folder:
        model.save(Path(folder) / "model.keras")
