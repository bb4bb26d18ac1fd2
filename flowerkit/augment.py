"""Small string-named augmentation ops (big_vision style), as Keras layers.

They live inside the model, so they run on every backend, on the device, and
only in training: `model.predict` and saved models are unaffected.

    "flip"             random horizontal flip
    "rotate:0.05"      random rotation, fraction of a full turn
    "zoom:0.1"         random zoom in/out by up to 10%
    "translate:0.1"    random shift by up to 10% of the side
    "contrast:0.2"     random contrast change
    "brightness:0.2"   random brightness change (of the 0-255 range)
"""

from __future__ import annotations

from flowerkit.errors import FlowerkitError

_DEFAULTS = {
    "flip": None,
    "rotate": 0.05,
    "zoom": 0.1,
    "translate": 0.1,
    "contrast": 0.2,
    "brightness": 0.2,
}


def _parse(op: str) -> tuple[str, float | None]:
    name, _, arg = op.partition(":")
    if name not in _DEFAULTS:
        raise FlowerkitError(
            f"Unknown augmentation op {op!r}. Known: {', '.join(_DEFAULTS)}."
        )
    if not arg:
        return name, _DEFAULTS[name]
    try:
        value = float(arg)
    except ValueError:
        raise FlowerkitError(f"Augmentation op {op!r}: {arg!r} is not a number.") from None
    if name == "flip" or not 0.0 < value <= 1.0:
        raise FlowerkitError(f"Augmentation op {op!r}: argument must be in (0, 1].")
    return name, value


def validate_ops(ops) -> None:
    for op in ops:
        _parse(op)


def build_layers(ops, seed: int) -> list:
    """Keras layers for the ops, each seeded differently but reproducibly."""
    import keras

    layers = []
    for index, op in enumerate(ops):
        name, value = _parse(op)
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
        if keras.backend.backend() == "jax" and name in ("rotate", "zoom", "translate"):
            # Keras marks these not XLA-compilable (TensorFlow's projective
            # transform kernel is not), and `compile` then drops jit for the
            # whole model: on JAX every train step ran op by op. Their JAX
            # `affine_transform` is plain jax.numpy and compiles; the seed
            # state still advances every step.
            layer.supports_jit = True
        layers.append(layer)
    return layers
