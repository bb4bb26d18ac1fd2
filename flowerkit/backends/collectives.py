"""What data-parallel predictions need from each engine: JAX's collectives
over processes and a sharded forward pass, TensorFlow's one-replica call,
and PyTorch's call outside the trainer. `flowerkit.distribute.sharding` uses these names and branches on the
plan, never on a backend. JAX and TensorFlow are imported where used: a
process has one of them."""

from __future__ import annotations

import numpy as np


def gather(array) -> np.ndarray:
    """Every JAX process's rows of `array`, in process order."""
    import jax  # only under a JAX plan

    if jax.process_count() == 1:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def sharded_forward(model, distribution):
    """model(images) on the devices of `distribution` (a
    keras.distribution.DataParallel), for this process's rows of a global
    batch; returns all rows, on every process."""
    import jax  # only under a JAX plan

    trainable = [variable.value for variable in model.trainable_variables]
    non_trainable = [variable.value for variable in model.non_trainable_variables]

    @jax.jit
    def run(trainable, non_trainable, images):
        return model.stateless_call(trainable, non_trainable, images, training=False)[0]

    def forward(local_images):
        layout = distribution.get_data_layout(local_images.shape).backend_layout
        images = jax.make_array_from_process_local_data(layout, local_images)
        return gather(run(trainable, non_trainable, images))

    return forward


class OneReplica:
    """`predict_on_batch` as one call of the model. Under tf.distribute,
    Keras's own runs the whole batch on every replica and returns every
    replica's rows (N times the batch)."""

    def __init__(self, model):
        import tensorflow as tf  # only under a tf.distribute plan

        self._call = tf.function(lambda images: model(images, training=False), reduce_retracing=True)

    def predict_on_batch(self, images):
        return self._call(images).numpy()


class PlainCall:
    """`predict_on_batch` as a plain call of the model. Under torch.distributed,
    Keras 3.16's torch trainer wraps a model it predicts with in
    DistributedDataParallel, which refuses one with nothing to train (the
    frozen feature extractor); predictions need no collective."""

    def __init__(self, model):
        self.model = model

    def predict_on_batch(self, images):
        import torch  # only under a PyTorch plan

        with torch.no_grad():
            return self.model(images, training=False).cpu().numpy()
