"""flowerkit.backends.torch_kernels and torch_graph: convolutions and frozen
BatchNorm on PyTorch without Keras's layout copies, and a backbone run as one
torch computation with BatchNorm, ReLU6 and padding folded into its convolutions.

The native calls must compute what the stock layers compute, forward and
gradient, for every configuration the backbones use; a switched model trains
the same; the policy picks them only on PyTorch with a CPU. (Saving as stock
layers is checked for both fast paths in test_fastpath.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import keras
from flowerkit import compat
from flowerkit.backends.fastpaths import apply_fast_paths
from flowerkit.backends.policy import torch_layers_implementation
from flowerkit.backends.torch_graph import supports_fused_graph
from flowerkit.backends.torch_kernels import is_native, supports_native
from tests.helpers import (
    assert_same_train_step,
    efficientnet_lite0_backbone,
    one_train_step,
    shared_path,
    small_images,
    small_mobilenet_v2,
)

needs_torch = pytest.mark.backends("torch")  # torch.nn.functional, autograd


@pytest.mark.parametrize(
    "backend, device_kind, setting, expected",
    [
        ("torch", "CPU", "auto", "native"),
        ("torch", "GPU", "auto", "stock"),
        ("torch", "GPU", "native", "native"),
        ("torch", "CPU", "stock", "stock"),
        ("jax", "CPU", "auto", "stock"),
        ("jax", "CPU", "native", "stock"),  # only PyTorch has these layers' native calls
        ("tensorflow", "CPU", "auto", "stock"),
    ],
)
def test_policy(backend, device_kind, setting, expected):
    assert torch_layers_implementation(backend, device_kind, setting) == expected


def test_policy_bad_setting_raises():
    with pytest.raises(ValueError, match="auto, native, stock"):
        torch_layers_implementation("torch", "CPU", "fast")


def _compare(layer, x, call_kwargs=None, rtol=1e-5):
    """Stock vs native output and gradients (inputs and every trainable
    weight) of one layer instance on the same inputs."""
    import torch

    call_kwargs = call_kwargs or {}
    cotangent = None
    results = []
    for native in (False, True):
        apply_fast_paths(layer, "stock", "native" if native else "stock")
        assert is_native(layer) == native
        inputs = torch.tensor(x, requires_grad=True)
        outputs = layer(inputs, **call_kwargs)
        if cotangent is None:
            cotangent = torch.from_numpy(np.random.default_rng(1).normal(size=tuple(outputs.shape)).astype("float32"))
        weights = [w.value for w in layer.trainable_weights]
        gradients = torch.autograd.grad((outputs * cotangent).sum(), [inputs, *weights])
        results.append([outputs.detach().numpy(), *(g.numpy() for g in gradients)])
    for stock, native in zip(*results):
        scale = float(np.abs(stock).max())
        assert scale > 1e-3  # a real value, not zeros
        np.testing.assert_allclose(native, stock, rtol=rtol, atol=1e-5 * scale)


@needs_torch
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_equals_stock(kernel_size, strides, padding, groups):
    layer = keras.layers.Conv2D(
        6, kernel_size, strides=strides, padding=padding, groups=groups, activation="relu6",
        bias_initializer="random_normal",
    )
    layer.build((2, 11, 10, 4))
    assert supports_native(layer)
    x = np.random.default_rng(kernel_size).normal(size=(2, 11, 10, 4)).astype("float32")  # odd and even sizes
    _compare(layer, x)


@needs_torch
@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("depth_multiplier", [1, 2])
def test_depthwise_conv2d_equals_stock(kernel_size, strides, padding, depth_multiplier):
    layer = keras.layers.DepthwiseConv2D(
        kernel_size, strides=strides, padding=padding, depth_multiplier=depth_multiplier,
        bias_initializer="random_normal",
    )
    layer.build((2, 11, 10, 3))
    x = np.random.default_rng(kernel_size * 10 + strides).normal(size=(2, 11, 10, 3)).astype("float32")
    _compare(layer, x)


@needs_torch
def test_batch_norm_equals_stock_in_inference_and_stays_stock_when_training():
    layer = keras.layers.BatchNormalization(
        beta_initializer="random_normal", gamma_initializer="random_normal",
        moving_mean_initializer="random_normal", moving_variance_initializer="ones",
    )
    layer.build((3, 5, 4, 6))
    x = np.random.default_rng(0).normal(size=(3, 5, 4, 6)).astype("float32")
    _compare(layer, x, {"training": False})
    # A trainable BatchNorm in training mode normalises with batch statistics
    # and updates its moving ones: that stays Keras's own computation.
    apply_fast_paths(layer, "stock", "native")
    before = layer.moving_mean.numpy().copy()
    layer(x, training=True)
    assert not np.allclose(layer.moving_mean.numpy(), before)


@needs_torch
def test_unsupported_layers_stay_stock():
    model = keras.Sequential(
        [
            keras.Input((12, 12, 4)),
            keras.layers.Conv2D(4, 3, dilation_rate=2, padding="same"),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.Reshape((12 * 12, 4)),
            keras.layers.Conv1D(4, 3),
        ]
    )
    record = apply_fast_paths(model, "stock", "native")
    assert [is_native(layer) for layer in model.layers] == [False, True, False, False]
    assert record["torch_layers"] == "native" and record["native_layers"] == 1
    record = apply_fast_paths(model, "stock", "stock")  # switches back
    assert not any(is_native(layer) for layer in model.layers)
    assert record["torch_layers"] == "stock" and record["native_layers"] == 0


def _pretrained_mobilenet_v2():
    return small_mobilenet_v2(pretrained=True)


@needs_torch
@pytest.mark.parametrize(
    "build", [_pretrained_mobilenet_v2, efficientnet_lite0_backbone],
    ids=["MobileNetV2-0.35-imagenet", "keras-hub-EfficientNet-Lite0"],
)
def test_pretrained_backbones_predict_the_same(build):
    model = build()
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.BatchNormalization)
    native_layers = sum(isinstance(layer, kinds) for layer in compat.all_layers(model))
    assert native_layers > 90  # every convolution and BatchNorm of the backbone switches
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 64, 64, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    record = apply_fast_paths(model, "stock", "native")
    assert record["native_layers"] == native_layers
    actual = keras.ops.convert_to_numpy(model(x, training=False))
    scale = float(np.abs(expected).max())
    assert scale > 0.1
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


@needs_torch
def test_fit_step_is_the_same_when_fine_tuning():
    """One train_on_batch through a trainable backbone (BatchNorm frozen, as
    flowerkit runs it): the same loss and weight updates."""
    x, y = small_images()
    steps = []
    for setting in ("stock", "native"):
        model = small_mobilenet_v2(pretrained=True)
        for layer in compat.all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        apply_fast_paths(model, "stock", setting)
        steps.append(one_train_step(model, x, y))
    assert len(steps[0][1]) > 50  # the backbone's kernels trained, not only the head
    assert_same_train_step(*steps)


# --- the fused backbone (torch_graph) ----------------------------------------------


def _freeze_batch_normalization(model):
    for layer in compat.all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _random_statistics(model, seed=0):
    """Frozen BatchNorm layers with statistics far from 0 and 1, so that a
    wrong fold shows."""
    rng = np.random.default_rng(seed)
    for layer in compat.all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            for variable, low, high in ((layer.moving_mean, -0.1, 0.1), (layer.moving_variance, 0.5, 2.0),
                                        (layer.gamma, 0.8, 1.2), (layer.beta, -0.1, 0.1)):
                variable.assign(rng.uniform(low, high, size=variable.shape).astype("float32"))
    return model


def _stock_and_fused(model, x):
    """Per setting ("stock", "native"): the output without gradients (oneDNN's
    fused convolution on the fused path), the output with them, and the
    gradients of a random projection of it for the inputs and every
    trainable weight."""
    import torch

    results, records = [], []
    for setting in ("stock", "native"):
        records.append(apply_fast_paths(model, "stock", setting))
        with torch.no_grad():
            inference = keras.ops.convert_to_numpy(model(x, training=False))
        inputs = torch.tensor(x, requires_grad=True)
        outputs = model(inputs, training=False)
        cotangent = torch.from_numpy(np.random.default_rng(1).normal(size=tuple(outputs.shape)).astype("float32"))
        gradients = torch.autograd.grad((outputs * cotangent).sum(), [inputs, *(w.value for w in model.trainable_weights)])
        results.append([inference, outputs.detach().numpy(), *(g.numpy() for g in gradients)])
    # A weight behind saturated ReLU6s may get no gradient at all: weight
    # gradients are held to the largest of them.
    weight_scale = max(float(np.abs(g).max()) for g in results[0][3:])
    for index, (stock, fused) in enumerate(zip(*results)):
        scale = float(np.abs(stock).max()) if index < 3 else weight_scale
        assert scale > 1e-3
        np.testing.assert_allclose(fused, stock, rtol=1e-5, atol=1e-5 * scale)
    return records


@needs_torch
def test_fused_mobilenet_v2_equals_stock_forward_and_gradient():
    # ImageNet weights: with random ones the input gradient vanishes (~1e-10).
    backbone = keras.applications.MobileNetV2(alpha=0.35, input_shape=(40, 40, 3), weights=None, include_top=False)
    backbone.load_weights(shared_path("weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5"))
    _freeze_batch_normalization(backbone)
    assert len(backbone.trainable_weights) == 52  # the kernel of every convolution
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 40, 40, 3)).astype("float32")
    stock, fused = _stock_and_fused(backbone, x)
    assert stock["fused_graphs"] == 0 and stock["torch_layers"] == "stock"
    # All 52 convolutions, each with its BatchNorm (and ReLU6 where one follows).
    assert fused["fused_graphs"] == 1 and fused["fused_convolutions"] == 52


def _block_model(size, padding, strides, pad_layer, relu_max, second_reader):
    """A small Functional graph: [ZeroPadding2D] -> convolution -> frozen
    BatchNorm -> ReLU, then a depthwise convolution and an add; with
    `second_reader` the BatchNorm's output is also read by the add, so the
    ReLU cannot be folded into the convolution."""
    inputs = keras.Input((size, size + 1, 3))
    x = keras.layers.ZeroPadding2D(pad_layer)(inputs) if pad_layer else inputs
    x = keras.layers.Conv2D(4, 3, strides=strides, padding=padding, bias_initializer="random_normal")(x)
    normalized = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(relu_max)(normalized)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Add()([x, normalized if second_reader else x])
    return _random_statistics(keras.Model(inputs, outputs))


@needs_torch
@pytest.mark.parametrize(
    "size, padding, strides, pad_layer, relu_max, second_reader",
    [
        (9, "same", 2, None, 6.0, False),  # TensorFlow's "same": one more row and column after
        (8, "same", 2, None, None, False),
        (8, "valid", 2, ((0, 1), (0, 1)), 6.0, False),  # MobileNetV2's padding before a strided conv
        (9, "valid", 1, ((2, 1), (0, 3)), 6.0, False),  # more before than after: padded as a copy
        (8, "valid", 1, 1, 6.0, True),
    ],
)
def test_fused_blocks_equal_stock(size, padding, strides, pad_layer, relu_max, second_reader):
    model = _block_model(size, padding, strides, pad_layer, relu_max, second_reader)
    x = np.random.default_rng(size).normal(size=(2, size, size + 1, 3)).astype("float32")
    _, fused = _stock_and_fused(model, x)
    assert fused["fused_graphs"] == 1 and fused["fused_convolutions"] == 2


@needs_torch
def test_fused_backbone_falls_back_to_the_layers_for_a_batch_norm_that_trains():
    model = _block_model(8, "same", 1, None, 6.0, False)
    apply_fast_paths(model, "stock", "native")
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    norm.trainable = True  # batch statistics in training: nothing folds
    x = np.random.default_rng(0).normal(size=(4, 8, 9, 3)).astype("float32")
    before = norm.moving_mean.numpy().copy()
    outputs = keras.ops.convert_to_numpy(model(x, training=True))
    assert not np.allclose(norm.moving_mean.numpy(), before)  # Keras's own BatchNorm ran
    apply_fast_paths(model, "stock", "stock")
    norm.moving_mean.assign(before)
    np.testing.assert_allclose(outputs, keras.ops.convert_to_numpy(model(x, training=True)), rtol=1e-5, atol=1e-5)


@needs_torch
def test_graphs_with_other_layers_are_not_fused():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    head = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    activated = keras.Model(inputs, keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    assert not supports_fused_graph(head)
    assert not supports_fused_graph(activated)  # the convolution's own activation: not folded
    mixed = keras.Model(inputs, keras.layers.Conv2D(4, 3, dtype="mixed_bfloat16")(inputs))
    assert not supports_fused_graph(mixed)  # computes in bfloat16: left to the layer
    assert supports_fused_graph(keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs)))
    assert not supports_fused_graph(keras.layers.Conv2D(4, 3))
    record = apply_fast_paths(head, "stock", "native")
    assert record["fused_graphs"] == 0 and record["native_layers"] == 2


# --- the C allocator (keep_freed_memory) ------------------------------------------

ALLOCATOR_SCRIPT = """
import ctypes, json, sys
from flowerkit.backends.allocator import freed_memory_kept, keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
libc.mallinfo2.restype = MallInfo2

def mmapped_blocks_for_a_64_mib_block():
    before = libc.mallinfo2().hblks
    block = libc.malloc(64 << 20)
    count = libc.mallinfo2().hblks - before
    libc.free(block)
    return count

before = mmapped_blocks_for_a_64_mib_block()
if sys.argv[1:] == ["build"]:  # building and loading a model must leave the allocator alone
    import tempfile
    from flowerkit import build_model, get_preset, load_model
    model = build_model(get_preset("dense").replace(class_names=("a", "b"), image_size=32))
    with tempfile.TemporaryDirectory() as folder:
        model.save(folder + "/model.keras")
        load_model(folder + "/model.keras")
    kept = freed_memory_kept()
elif sys.argv[1:] == ["cli"]:  # every subcommand starts the backend this way
    from flowerkit.cli.common import start_backend
    start_backend()
    kept = freed_memory_kept()
else:
    kept = keep_freed_memory()
print(json.dumps({"kept": kept, "before": before, "after": mmapped_blocks_for_a_64_mib_block()}))
"""


def _allocator_run(extra_env, *args):
    import ctypes
    import json
    import os
    import subprocess
    import sys

    try:
        ctypes.CDLL(None).mallinfo2
    except AttributeError:
        pytest.skip("needs glibc >= 2.33 (mallinfo2) to look at the allocator")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    env.update(extra_env)
    output = subprocess.run(
        [sys.executable, "-c", ALLOCATOR_SCRIPT, *args], env=env, capture_output=True, text=True,
        check=True, cwd=str(Path(__file__).resolve().parents[1]),
    ).stdout
    return json.loads(output.splitlines()[-1])


@pytest.mark.backend_independent  # glibc's allocator, no Keras in the child
def test_keep_freed_memory_serves_large_blocks_from_the_heap():
    result = _allocator_run({})
    assert result == {"kept": True, "before": 1, "after": 0}


@pytest.mark.backend_independent
def test_keep_freed_memory_leaves_a_chosen_allocator_alone():
    result = _allocator_run({"MALLOC_ARENA_MAX": "2"})
    assert result == {"kept": False, "before": 1, "after": 1}


@needs_torch
def test_building_a_model_leaves_the_allocator_alone():
    result = _allocator_run({}, "build")
    assert result == {"kept": None, "before": 1, "after": 1}


@needs_torch
def test_the_cli_keeps_freed_memory_as_train_does():
    result = _allocator_run({}, "cli")
    assert result == {"kept": True, "before": 1, "after": 0}
