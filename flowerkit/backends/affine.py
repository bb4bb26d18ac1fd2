"""Affine augmentation (RandomZoom, RandomRotation, RandomTranslation)
resampled as one batch on JAX and PyTorch.

Keras's `affine_transform` is slow on both: on PyTorch it maps every image
separately through `map_coordinates` with a coordinate for each channel too
(~20 s for 64 images of 224x224 on CPU; fine-tuning with zoom and rotation
took ~30 min per epoch); on JAX it interpolates between 8 corners per value,
channel axis included (~0.5 s for the same batch, more than the rest of a
MobileNetV2 alpha 0.35 fine-tuning step). The batched versions
(`torch_kernels.grid_sample_affine_transform`,
`jax_kernels.gather_affine_transform`) give the same pixels.

`switch_affine(layer, True)` wraps the layer instance's `backend` (Keras's
`DynamicBackend`) so that `backend.image.affine_transform` is the batched
one while the layer computes with torch or jax; inside a tf.data pipeline the
layer switches its backend to TensorFlow and gets TensorFlow's own, already
batched. Class, config and saved file stay stock.
"""

from __future__ import annotations

from flowerkit import compat
from flowerkit.backends import torch_kernels

AFFINE_LAYERS = ("RandomZoom", "RandomRotation", "RandomTranslation")
# Fill modes each batched version reproduces; others keep Keras's own.
FILL_MODES = {"torch": ("reflect", "constant", "nearest"), "jax": ("reflect", "constant", "nearest", "wrap")}


def supports_batched_affine(layer) -> bool:
    """A stock Keras affine augmentation layer that can be switched."""
    import keras

    name = type(layer).__name__
    return (
        name in AFFINE_LAYERS
        and type(layer) is getattr(keras.layers, name)
        and getattr(layer, "interpolation", None) in ("bilinear", "nearest")
        and getattr(layer, "data_format", "channels_last") == "channels_last"
        and compat.layer_backend(layer) is not None
    )


def switch_affine(layer, batched: bool) -> bool:
    """Gives `layer` (or takes back) the batched resampling; returns whether
    anything changed."""
    backend = compat.layer_backend(layer)
    current = isinstance(backend, _BatchedAffineBackend)
    if batched and not current:
        compat.set_layer_backend(layer, _BatchedAffineBackend(backend))
    elif not batched and current:
        compat.set_layer_backend(layer, backend.wrapped)
    return batched != current


def is_batched_affine(layer) -> bool:
    return isinstance(compat.layer_backend(layer), _BatchedAffineBackend)


def batched_affine_transform(backend: str):
    """The batched `affine_transform` for a backend name, or None."""
    if backend == "torch":
        return torch_kernels.grid_sample_affine_transform
    if backend == "jax":
        from flowerkit.backends import jax_kernels  # needs jax: only reached on JAX

        return jax_kernels.gather_affine_transform
    return None


class _BatchedAffineBackend:
    """A layer's `DynamicBackend` whose `image` module has the batched
    `affine_transform` of the backend it computes with at the time."""

    def __init__(self, wrapped):
        self.wrapped = wrapped

    def __getattr__(self, name):
        value = getattr(self.wrapped, name)
        if name == "image" and self.wrapped.name in FILL_MODES:
            return _BatchedImage(value, self.wrapped.name)
        return value


class _BatchedImage:
    def __init__(self, wrapped, backend: str):
        self._wrapped = wrapped
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._wrapped, name)

    def affine_transform(self, images, transform, interpolation="bilinear", fill_mode="constant",
                         fill_value=0, data_format=None):
        if (
            (data_format or "channels_last") != "channels_last"
            or len(images.shape) != 4
            or fill_mode not in FILL_MODES[self._backend]
            or interpolation not in ("bilinear", "nearest")
        ):
            return self._wrapped.affine_transform(
                images, transform, interpolation, fill_mode, fill_value, data_format
            )
        function = batched_affine_transform(self._backend)
        return function(images, transform, interpolation, fill_mode, fill_value)
