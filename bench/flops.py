"""Analytic FLOP counts, the same on every backend.

Counts multiply-adds of convolutions and dense layers (2 FLOPs each), which
dominate convnets; BatchNorm, activations and pooling are left out. Training
costs about 3x the forward pass for trainable layers (forward, gradient with
respect to inputs, gradient with respect to weights).
"""

from __future__ import annotations

import math

import keras


def _layer_flops(layer) -> int:
    try:
        output_shape = layer.output.shape
    except (AttributeError, ValueError):
        return 0
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel_h, kernel_w, channels, multiplier = layer.kernel.shape
        return 2 * math.prod(output_shape[1:3]) * kernel_h * kernel_w * channels * multiplier
    if isinstance(layer, keras.layers.SeparableConv2D):
        kernel_h, kernel_w, channels, multiplier = layer.depthwise_kernel.shape
        spatial = math.prod(output_shape[1:3])
        pointwise = channels * multiplier * output_shape[-1]
        return 2 * spatial * (kernel_h * kernel_w * channels * multiplier + pointwise)
    if isinstance(layer, keras.layers.Conv2D):
        kernel_h, kernel_w, in_per_group, filters = layer.kernel.shape
        return 2 * math.prod(output_shape[1:3]) * kernel_h * kernel_w * in_per_group * filters
    if isinstance(layer, keras.layers.Dense):
        inputs, units = layer.kernel.shape
        return 2 * inputs * units * math.prod(output_shape[1:-1] or [1])
    return 0


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaf_layers(layer)
        else:
            yield layer


def _layer_bytes(layer) -> int:
    """Its output written once and read once, per image, for the layers
    whose FLOPs are counted."""
    if not _layer_flops(layer):
        return 0
    itemsize = 2 if "16" in keras.backend.standardize_dtype(layer.compute_dtype) else 4  # mixed precision
    return 2 * math.prod(layer.output.shape[1:]) * itemsize


def forward_bytes(model) -> int | None:
    """Bytes one image's forward pass must move at least (see the module's
    note); None when a layer's output size is not fixed."""
    try:
        image = math.prod(model.input_shape[1:]) * 4
        return image + sum(_layer_bytes(layer) for layer in _leaf_layers(model))
    except TypeError:  # None in a spatial dimension
        return None


def train_step_bytes(model) -> int | None:
    """As `forward_bytes` for a training step: the backward pass through each
    trainable layer reads its output's gradient and its saved input and
    writes its input's gradient, about twice its forward traffic."""
    forward = forward_bytes(model)
    if forward is None:
        return None
    trainable = sum(_layer_bytes(l) for l in _leaf_layers(model) if l.trainable and l.weights)
    return forward + 2 * trainable


def forward_flops(model) -> int | None:
    """FLOPs of one image's forward pass; None when a layer's output size is
    not fixed (a keras-hub backbone built for any image size)."""
    try:
        return sum(_layer_flops(layer) for layer in _leaf_layers(model))
    except TypeError:  # None in a spatial dimension
        return None


def train_step_flops(model) -> int | None:
    """FLOPs of one image's training step: forward everywhere, plus ~2x
    forward for the backward pass through trainable layers (frozen layers
    upstream of all trainable ones need no backward pass)."""
    forward = forward_flops(model)
    if forward is None:
        return None
    trainable = sum(_layer_flops(l) for l in _leaf_layers(model) if l.trainable and l.weights)
    return forward + 2 * trainable
