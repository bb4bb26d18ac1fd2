"""The recipe's augmentation ops (`flowerkit.config.ops`) as Keras layers.

They live inside the model, so they run on every backend, on the device, and
only in training: `model.predict` and saved models are unaffected.
"""

from __future__ import annotations

import keras

from flowerkit import compat
from flowerkit.backends.devices import backend
from flowerkit.backends.policy import allows_jit_for_affine_layers
from flowerkit.config.ops import parse_op


def build_layers(ops, seed: int) -> list:
    """Keras layers for the ops, each seeded differently but reproducibly."""
    layers = []
    for index, op in enumerate(ops):
        spec, argument = parse_op(op)
        layer = spec.build(keras.layers, argument, seed + index)
        if spec.affine and allows_jit_for_affine_layers(backend()):
            # Keras marks these not XLA-compilable, and `compile` then drops
            # jit for the whole model: on JAX every train step ran op by op.
            compat.allow_jit(layer)
        layers.append(layer)
    return layers
