"""The benchmarks' analytic FLOP counts against hand-counted tiny models."""

import pytest
import keras

from bench.flops import forward_bytes, forward_flops, train_step_bytes, train_step_flops

pytestmark = pytest.mark.backend_independent  # run once, not per backend (tox.ini)


def _tiny_model(frozen_conv=False):
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)  # 8x8x4
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="depthwise")(x)  # 4x4x4
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="dense")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("conv").trainable = not frozen_conv
    return model


CONV = 2 * (8 * 8) * (3 * 3 * 2) * 4  # 2 * output pixels * kernel taps * in * out = 9216
DEPTHWISE = 2 * (4 * 4) * (3 * 3) * 4  # 1152
DENSE = 2 * 4 * 3  # 24


def test_forward_flops_of_a_tiny_model():
    assert forward_flops(_tiny_model()) == CONV + DEPTHWISE + DENSE == 10392


def test_train_step_flops_count_backward_only_for_trainable_layers():
    forward = CONV + DEPTHWISE + DENSE
    assert train_step_flops(_tiny_model()) == forward + 2 * forward
    assert train_step_flops(_tiny_model(frozen_conv=True)) == forward + 2 * (DEPTHWISE + DENSE)


IMAGE_BYTES = 8 * 8 * 2 * 4  # the float32 input, read once
CONV_BYTES, DEPTHWISE_BYTES, DENSE_BYTES = (2 * 4 * n for n in (8 * 8 * 4, 4 * 4 * 4, 3))  # out, written + read


def test_bytes_count_each_counted_output_written_and_read_once():
    """The roofline's traffic: pooling moves nothing of its own (fused away);
    the backward pass adds twice the traffic of trainable layers only."""
    forward = IMAGE_BYTES + CONV_BYTES + DEPTHWISE_BYTES + DENSE_BYTES
    assert forward_bytes(_tiny_model()) == forward == 3096
    assert train_step_bytes(_tiny_model()) == forward + 2 * (CONV_BYTES + DEPTHWISE_BYTES + DENSE_BYTES)
    assert train_step_bytes(_tiny_model(frozen_conv=True)) == forward + 2 * (DEPTHWISE_BYTES + DENSE_BYTES)


def test_a_model_of_any_image_size_has_no_fixed_flop_count():
    """keras-hub backbones are built for any image size: their FLOPs per
    image are unknown until the size is, and the count says so instead of
    failing."""
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3)])
    assert forward_flops(model) is None and train_step_flops(model) is None
    assert forward_bytes(model) is None and train_step_bytes(model) is None
