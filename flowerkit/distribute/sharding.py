"""Batches and predictions under a plan (`flowerkit.distribute.plan`), passed
as a value (None: one device): each JAX or PyTorch process's part of every
global batch, the loss reduction that keeps a padded batch exact, and predictions
shared out over the devices. The engines' own calls are in
`flowerkit.backends.collectives`."""

from __future__ import annotations

import keras
import numpy as np

from flowerkit.backends.collectives import OneReplica, PlainCall, gather, sharded_forward
from flowerkit.backends.torch_distributed import all_gather_numpy, all_reduce_numpy
from flowerkit.data.decode import mirror_images
from flowerkit.data.pipelines import PipelineState, ShardedBatches, iterate_batches, one_pass
from flowerkit.distribute.plan import TORCH_DATA_PARALLEL, Plan
from flowerkit.errors import FlowerkitError


def jax_plan(plan: Plan | None) -> Plan | None:
    """`plan` when it is a JAX data-parallel one, else None."""
    return plan if plan is not None and plan.is_jax else None


def is_data_parallel(plan: Plan | None) -> bool:
    """Whether `plan` spreads batches over several devices."""
    return plan is not None and plan.is_data_parallel


def torch_plan(plan: Plan | None) -> Plan | None:
    """`plan` when it is a PyTorch (torchrun) data-parallel one, else None."""
    return plan if plan is not None and plan.strategy == TORCH_DATA_PARALLEL else None


def for_fit(dataset, plan: Plan | None = None):
    """`dataset` as `fit` should get it under `plan`."""
    plan = jax_plan(plan) or torch_plan(plan)
    if plan is None:
        return dataset  # Keras distributes tf.data and PyDatasets under tf.distribute
    if not hasattr(dataset, "positions"):
        raise FlowerkitError(
            "data_parallel on JAX and PyTorch reads its images through flowerkit's Pillow "
            "pipeline; load the data with pipeline='auto' or 'python'."
        )
    return ShardedBatches(dataset, plan.global_batch, plan.processes, plan.process_index)


def epoch_callbacks(state: PipelineState | None, plan: Plan | None = None) -> list:
    """Callbacks that keep a shuffled tf.data pipeline (of this state) on the
    same order per epoch as on one device (`flowerkit.data.pipelines.EpochCounter`)."""
    counter = state.epochs if state is not None else None
    if counter is None or not is_data_parallel(plan):
        return []

    class PinEpochOrder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            counter.begin_epoch()

    return [PinEpochOrder()]


def engine_callbacks(plan: Plan | None = None) -> list:
    """The engine's own callbacks for `fit` (PyTorch: what makes the
    processes' `fit` one data-parallel run)."""
    plan = torch_plan(plan)
    return plan.engine.callbacks() if plan is not None else []


def loss_reduction(plan: Plan | None = None) -> str:
    """The loss's reduction: under a JAX plan, the mean over rows of non-zero
    weight, so a padded last batch gives the same loss and gradient as the
    unpadded one; elsewhere Keras's default."""
    return "mean_with_sample_weight" if jax_plan(plan) else "sum_over_batch_size"


def any_process(flag: bool, plan: Plan | None = None) -> bool:
    """True when `flag` is true on any process (for decisions every process
    must take alike, such as computing features that one of them lacks)."""
    if torch_plan(plan) is not None:
        return bool(all_reduce_numpy(np.asarray([flag], np.float64), "max")[0])
    plan = jax_plan(plan)
    if plan is None or plan.processes == 1:
        return flag
    return bool(gather(np.asarray([flag])).any())


def predict_batches(model, dataset, views: int = 1, plan: Plan | None = None,
                    state: PipelineState | None = None):
    """(probabilities or features per view, one-hot labels) for each batch of
    `dataset` (made by `build_dataset`, with its `state`), views being the
    images and, for views=2, their mirror images. Under a JAX or PyTorch
    plan each process decodes its part of each batch, the devices share the
    work, and every process gets every row."""
    sharded = jax_plan(plan) or torch_plan(plan)
    if sharded is None:
        model = one_replica(model, plan)
        for images, one_hot in iterate_batches(dataset, state):
            outputs = [np.asarray(model.predict_on_batch(images))]
            if views == 2:
                outputs.append(np.asarray(model.predict_on_batch(mirror_images(images))))
            yield outputs, np.asarray(one_hot)
        return
    forward, gather_rows = _forward_and_gather(model, sharded)
    # Worker threads decode ahead; the collectives stay in this thread, in order.
    for images, one_hot, weights in one_pass(for_fit(dataset, sharded)):
        outputs = [forward(images)]
        if views == 2:
            outputs.append(forward(mirror_images(images)))
        keep = gather_rows(weights) > 0
        yield [output[keep] for output in outputs], gather_rows(one_hot)[keep]


def _forward_and_gather(model, plan: Plan):
    """(this process's rows of a global batch -> the model's outputs for all
    rows, this process's rows of an array -> all rows) under `plan`."""
    if plan.is_jax:
        return sharded_forward(model, plan.engine), gather
    call = PlainCall(model)
    return (lambda images: all_gather_numpy(call.predict_on_batch(images))), all_gather_numpy


def one_replica(model, plan: Plan | None = None):
    """`model`, or under tf.distribute a one-replica caller of it, or under
    torch.distributed a caller outside Keras's trainer (`PlainCall`)."""
    if plan is not None and plan.is_tf_distribute:
        return OneReplica(model)
    return PlainCall(model) if torch_plan(plan) is not None else model
