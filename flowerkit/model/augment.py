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

_AFFINE_OPS = ("rotate", "zoom", "translate")


def build_layers(ops, seed: int) -> list:
    """Keras layers for the ops, each seeded differently but reproducibly."""
    layers = []
    for index, op in enumerate(ops):
        name, value = parse_op(op)
        op_seed = seed + index
        if name == "flip":
            layer = keras.layers.RandomFlip("horizontal", seed=op_seed)
        elif name == "rotate":
            layer = keras.layers.RandomRotation(value, seed=op_seed)
        elif name == "zoom":
            layer = keras.layers.RandomZoom(value, seed=op_seed)
        elif name == "translate":
            layer = keras.layers.RandomTranslation(value, value, seed=op_seed)
        elif name == "contrast":
            layer = keras.layers.RandomContrast(value, seed=op_seed)
        else:
            layer = keras.layers.RandomBrightness(value, value_range=(0, 255), seed=op_seed)
        if name in _AFFINE_OPS and allows_jit_for_affine_layers(backend()):
            # Keras marks these not XLA-compilable, and `compile` then drops
            # jit for the whole model: on JAX every train step ran op by op.
            compat.allow_jit(layer)
        layers.append(layer)
    return layers
