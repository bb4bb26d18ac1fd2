"""Batches and predictions under the active plan (`flowerkit.distribute.plan`):
each JAX process's part of every global batch, the loss reduction that
keeps a padded batch exact, and predictions shared out over the devices."""

from __future__ import annotations

import keras
import numpy as np

from flowerkit.data.pipelines import ShardedBatches, iterate_batches, one_pass
from flowerkit.distribute.plan import MIRRORED, MULTI_WORKER, TORCH_DATA_PARALLEL, TPU, Plan, active
from flowerkit.errors import FlowerkitError


def jax_plan() -> Plan | None:
    plan = active()
    return plan if plan is not None and plan.is_jax else None


def is_data_parallel() -> bool:
    """Whether the active plan spreads batches over several devices."""
    plan = active()
    return plan is not None and plan.mode != "none"


def torch_plan() -> Plan | None:
    plan = active()
    return plan if plan is not None and plan.strategy == TORCH_DATA_PARALLEL else None


def for_fit(dataset):
    """`dataset` as `fit` should get it under the active plan."""
    plan = jax_plan() or torch_plan()
    if plan is None:
        return dataset  # Keras distributes tf.data and PyDatasets under tf.distribute
    if not hasattr(dataset, "positions"):
        raise FlowerkitError(
            "data_parallel on JAX and PyTorch reads its images through flowerkit's Pillow "
            "pipeline; load the data with pipeline='auto' or 'python'."
        )
    return ShardedBatches(dataset, plan.global_batch, plan.processes, plan.process_index)


def epoch_callbacks(dataset) -> list:
    """Callbacks that keep a shuffled tf.data pipeline on the same order per
    epoch as on one device (`flowerkit.data.pipelines.EpochCounter`)."""
    counter = getattr(dataset, "flowerkit_epochs", None)
    if counter is None or not is_data_parallel():
        return []

    class PinEpochOrder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            counter.begin_epoch()

    return [PinEpochOrder()]


def engine_callbacks() -> list:
    """The engine's own callbacks for `fit` (PyTorch: what makes the
    processes' `fit` one data-parallel run)."""
    plan = torch_plan()
    return plan.engine.callbacks() if plan is not None else []


def loss_reduction() -> str:
    """The loss's reduction: under a JAX plan, the mean over rows of non-zero
    weight, so a padded last batch gives the same loss and gradient as the
    unpadded one; elsewhere Keras's default."""
    return "mean_with_sample_weight" if jax_plan() else "sum_over_batch_size"


def gather(array) -> np.ndarray:
    """Every process's rows of `array`, in process order."""
    import jax

    if jax.process_count() == 1:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def any_process(flag: bool) -> bool:
    """True when `flag` is true on any process (for decisions every process
    must take alike, such as computing features that one of them lacks)."""
    plan = jax_plan()
    if plan is None or plan.processes == 1:
        return flag
    return bool(gather(np.asarray([flag])).any())


def predict_batches(model, dataset, views: int = 1):
    """(probabilities or features per view, one-hot labels) for each batch of
    `dataset` (made by `make_dataset`), views being the images and, for
    views=2, their mirror images. Under a JAX plan each process decodes its
    part of each batch, the devices share the work, and every process gets
    every row."""
    plan = jax_plan()
    if plan is None:
        model = one_replica(model)
        for images, one_hot in iterate_batches(dataset):
            outputs = [np.asarray(model.predict_on_batch(images))]
            if views == 2:
                flipped = np.ascontiguousarray(images[:, :, ::-1])
                outputs.append(np.asarray(model.predict_on_batch(flipped)))
            yield outputs, np.asarray(one_hot)
        return
    forward = sharded_forward(model, plan)
    # Worker threads decode ahead; the collectives stay in this thread, in order.
    for images, one_hot, weights in one_pass(for_fit(dataset)):
        outputs = [forward(images)]
        if views == 2:
            outputs.append(forward(np.ascontiguousarray(images[:, :, ::-1])))
        keep = gather(weights) > 0
        yield [output[keep] for output in outputs], gather(one_hot)[keep]


class _OneReplica:
    """`predict_on_batch` as one call of the model. Under tf.distribute,
    Keras's own runs the whole batch on every replica and returns every
    replica's rows (N times the batch)."""

    def __init__(self, model):
        import tensorflow as tf

        self._call = tf.function(lambda images: model(images, training=False), reduce_retracing=True)

    def predict_on_batch(self, images):
        return self._call(images).numpy()


def one_replica(model):
    plan = active()
    return _OneReplica(model) if plan is not None and plan.strategy in (MIRRORED, MULTI_WORKER, TPU) else model


def sharded_forward(model, plan: Plan):
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
        return gather(run(trainable, non_trainable, images))

    return forward
