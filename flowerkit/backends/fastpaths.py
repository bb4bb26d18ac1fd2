"""Faster depthwise convolutions where the stock op is slow (JAX on CPU).

XLA:CPU runs a grouped convolution (`feature_group_count=C`) as one tiny
convolution per channel (https://github.com/jax-ml/jax/issues/23713): for
MobileNet-style networks that is ~8x slower forward and ~13x slower in the
gradient than the same depthwise convolution written as kh*kw shifted
multiply-adds, which XLA fuses into one elementwise loop.

`apply_fast_paths(model)` switches eligible `keras.layers.DepthwiseConv2D`
layers of a built model to that computation by giving each layer *instance*
its own `call`. Class, registered name, config and weights stay stock, so a
saved `model.keras` holds only stock Keras layers and loads in plain Keras
(a loaded or cloned model is stock again; apply the fast paths to it anew).

The same holds for 1x1 convolutions, which XLA:CPU runs as convolutions
rather than matrix products: as `matmul` they run ~1.3x faster in inference
and ~1.6x in a frozen-backbone train step (MobileNetV2, 192x192, batch 32).

On JAX both computations carry hand-written gradients
(`flowerkit.backends.jax_kernels`): autodiff of the shifted sum made XLA:CPU store
every window and transpose whole backward chains, and fine-tuning ran 3.8x
slower than with them.

On PyTorch, `apply_fast_paths` switches convolutions and frozen BatchNorm
layers the same way to calls without Keras's layout copies
(`flowerkit.backends.torch_kernels`), and a backbone made only of
convolutions, frozen BatchNorm, ReLU, padding and adds (MobileNetV2's) to one
torch computation with BatchNorm and ReLU6 folded into each convolution
(`flowerkit.backends.torch_graph`).

On JAX and PyTorch, RandomZoom, RandomRotation and RandomTranslation resample
the whole batch at once instead of Keras's image-by-image or channel-by-channel
resampling (`flowerkit.backends.affine`), with the same pixels.

On JAX with CPU devices, a compiled model whose backbone trains gets a
micro-batched train step (`use_micro_batches`): the gradient of a batch as
the mean over micro-batches of 4 rows, which XLA:CPU runs faster
(`jax_kernels.micro_batched_train_step`).

Which path each backend and device gets is `flowerkit.backends.policy`'s
table. Importing this module changes nothing, and neither does anything in
it beyond the model it is given: no process-wide state. Outside the Keras
versions flowerkit is tested on (`flowerkit.compat`) every layer stays stock.
"""

from __future__ import annotations

import types

from flowerkit import compat
from flowerkit.backends import affine as affine_layers
from flowerkit.backends import torch_graph, torch_kernels
from flowerkit.backends.devices import backend as current_backend
from flowerkit.backends.devices import device_kind
from flowerkit.backends.geometry import shifted_depthwise_conv
from flowerkit.backends.policy import (
    affine_implementation,
    depthwise_implementation,
    micro_batch_size,
    pointwise_implementation,
    torch_layers_implementation,
)


def current_micro_batch(setting="auto", trains_backbone: bool = True, data_parallel: bool = False) -> int:
    """`micro_batch_size` for the current backend and device: what
    `use_micro_batches` gives a model, as metrics.json records it."""
    if not compat.fast_paths_supported():
        return 0
    return micro_batch_size(
        current_backend(), device_kind(), setting, trains_backbone, data_parallel=data_parallel
    )


def use_micro_batches(model, setting="auto", trains_backbone: bool = True,
                      data_parallel: bool = False) -> int:
    """Gives compiled `model` a micro-batched train step (JAX) when the policy
    picks one, or back Keras's own; returns the rows per micro-batch (0: off).
    Call it after `model.compile`. A saved model is unaffected.

    Only a model without BatchNormalization on batch statistics qualifies
    (flowerkit keeps BatchNorm in inference mode): micro-batches would
    normalise over fewer rows.
    """
    import keras

    size = current_micro_batch(setting, trains_backbone, data_parallel)
    if size and not compat.has_jax_trainer(model):
        if setting != "auto":
            raise ValueError(
                f"micro_batch={setting} needs Keras's JAX trainer ({', '.join(compat.JAX_TRAINER_METHODS)})."
            )
        size = 0
    batch_statistics = [
        layer.name for layer in compat.all_layers(model, include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ] if size else []
    if batch_statistics:
        if setting != "auto":
            raise ValueError(
                f"micro_batch={setting}: BatchNormalization layers that train ({batch_statistics[0]}, "
                f"{len(batch_statistics)} in all) would normalise over micro-batches instead of "
                "the batch; freeze them (flowerkit's models do) or use 'auto' or 0."
            )
        size = 0
    model.__dict__.pop("train_step", None)
    if size:
        from flowerkit.backends import jax_kernels  # needs jax: only reached on JAX

        model.train_step = jax_kernels.micro_batched_train_step(model, size)
    model.train_function = None  # the next fit builds its step anew
    return size


def fast_path_record(
    setting: str = "auto", torch_layers: str = "auto", pointwise_conv: str = "auto",
    affine: str = "auto",
) -> dict:
    """The choice for the current backend and device, as put in metrics.json
    and benchmark rows (without layer counts; `apply_fast_paths` adds them).
    Outside the tested Keras versions every choice is "stock" (`flowerkit.compat`)."""
    backend, kind = current_backend(), device_kind()
    record = {
        "depthwise_conv": depthwise_implementation(backend, kind, setting),
        "torch_layers": torch_layers_implementation(backend, kind, torch_layers),
        "pointwise_conv": pointwise_implementation(backend, kind, pointwise_conv),
        "affine_augmentation": affine_implementation(backend, affine),
        "setting": setting,
        "backend": backend,
        "device_kind": kind,
    }
    if not compat.fast_paths_supported():
        for field in ("depthwise_conv", "torch_layers", "pointwise_conv", "affine_augmentation"):
            record[field] = "stock"
    return record


def apply_fast_paths(
    model, setting: str = "auto", torch_layers: str = "auto", pointwise_conv: str = "auto",
    affine: str = "auto",
) -> dict:
    """Switches the depthwise convolutions of `model` (nested backbones and
    keras-hub blocks included) to the implementation the policy picks, and,
    on PyTorch, its convolutions and BatchNorm layers (`torch_layers`), and
    elsewhere its 1x1 convolutions (`pointwise_conv`), and on JAX and PyTorch
    its affine augmentation layers (`affine`, see `affine_implementation`).

    With "shifted", every supported `DepthwiseConv2D` computes as shifted
    multiply-adds; with "stock", layers switched earlier are switched back.
    Unsupported layers (channels_first, dilation > 1, quantized, subclasses
    with their own `call`) always stay stock. Returns the record of the
    choice, e.g. {"depthwise_conv": "shifted", "setting": "auto",
    "backend": "jax", "device_kind": "CPU", "shifted_layers": 17,
    "stock_layers": 0, "torch_layers": "stock", "native_layers": 0,
    "fused_graphs": 0, "fused_convolutions": 0, "pointwise_conv": "matmul", "matmul_layers": 35,
    "affine_augmentation": "batched", "affine_layers": 0}.
    """
    import keras

    if not isinstance(model, keras.layers.Layer):
        raise ValueError(f"apply_fast_paths needs a Keras model or layer, got {type(model).__name__}.")
    record = fast_path_record(setting, torch_layers, pointwise_conv, affine)
    counts = {"shifted": 0, "native": 0, "fused": 0, "matmul": 0, "batched": 0, "stock_depthwise": 0,
              "fused_convolutions": 0}
    changed = False
    # Also the layers held inside custom layers, such as keras-hub's
    # MBConvBlock, which `model.layers` does not reach.
    for layer in compat.all_layers(model):
        if affine_layers.supports_batched_affine(layer):
            batched = record["affine_augmentation"] == "batched"
            changed = affine_layers.switch_affine(layer, batched) or changed
            counts["batched"] += batched
            continue
        kind, function = _fast_call(layer, record)
        changed = _set_own_call(layer, function) or changed
        if kind is not None:
            counts[kind] += 1
        if kind == "fused":
            counts["fused_convolutions"] += torch_graph.fused_convolutions(layer)
        if isinstance(layer, keras.layers.DepthwiseConv2D) and kind != "shifted":
            counts["stock_depthwise"] += 1
    if changed:
        _forget_compiled_functions(model)
    # A path that switched no layer did not run: say "stock".
    counts["native_or_fused"] = counts["native"] + counts["fused"]
    for field, kind in (("depthwise_conv", "shifted"), ("torch_layers", "native_or_fused"),
                        ("pointwise_conv", "matmul"), ("affine_augmentation", "batched")):
        if counts[kind] == 0:
            record[field] = "stock"
    record["shifted_layers"] = counts["shifted"]
    record["stock_layers"] = counts["stock_depthwise"]
    record["native_layers"] = counts["native"]
    record["fused_graphs"] = counts["fused"]
    record["fused_convolutions"] = counts["fused_convolutions"]
    record["matmul_layers"] = counts["matmul"]
    record["affine_layers"] = counts["batched"]
    return record


def _fast_call(layer, record: dict):
    """(kind, call function) that `record` picks for `layer`, or (None, None)
    for its stock call. A forced "shifted" depthwise wins over PyTorch's native
    convolution, which wins over a 1x1 convolution as matmul."""
    if record["depthwise_conv"] == "shifted" and supports_shifted(layer):
        return "shifted", _shifted_call
    if record["torch_layers"] == "native" and torch_graph.supports_fused_graph(layer):
        return "fused", torch_graph.fused_call
    if record["torch_layers"] == "native" and torch_kernels.supports_native(layer):
        return "native", torch_kernels.native_call(layer)
    if record["pointwise_conv"] == "matmul" and supports_matmul(layer):
        return "matmul", _matmul_call
    return None, None


def _set_own_call(layer, function) -> bool:
    """Gives `layer` its own `call` (`function`), or with None takes back one
    that flowerkit gave it; returns whether anything changed.

    An instance attribute shadows the class's `call`; Layer.__call__ (and so
    predict, fit's stateless_call and symbolic calls) uses it. Nothing of it is
    serialized: saving uses the class and get_config. A `call` that someone
    else put on the instance is left alone.
    """
    current = getattr(vars(layer).get("call"), "__func__", None)
    ours = (_shifted_call, _matmul_call, torch_graph.fused_call, *torch_kernels.NATIVE_CALLS)
    if current is function or (current is not None and current not in ours):
        return False
    if function is None:
        del layer.call
    else:
        layer.call = types.MethodType(function, layer)
    return True


def supports_matmul(layer) -> bool:
    """Whether this is a 1x1 Conv2D that a matrix product reproduces exactly."""
    import keras

    return (
        isinstance(layer, keras.layers.Conv2D)
        and type(layer).call is keras.layers.Conv2D.call
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
        and layer.data_format == "channels_last"
        and layer.dtype_policy.quantization_mode is None
        and not getattr(layer, "lora_enabled", False)
    )


def is_matmul(layer) -> bool:
    call = vars(layer).get("call")
    return getattr(call, "__func__", None) is _matmul_call


def _matmul_call(self, inputs):
    """Conv2D.call for a 1x1 kernel: a matrix product over the channel axis."""
    import keras
    from keras import ops

    kernel = ops.reshape(self.kernel, self.kernel.shape[2:])
    if keras.backend.backend() == "jax":
        # A weight gradient XLA:CPU lays out well; needs jax, so only on JAX.
        from flowerkit.backends import jax_kernels

        outputs = jax_kernels.pointwise_matmul(ops.convert_to_tensor(inputs), kernel)
    else:
        outputs = ops.matmul(inputs, kernel)
    if self.use_bias:
        outputs = ops.add(outputs, self.bias)
    if self.activation is not None:
        outputs = self.activation(outputs)
    return outputs


def _forget_compiled_functions(model) -> None:
    """Makes fit/predict/evaluate retrace: a jitted function traced before the
    switch keeps the computation it was traced with."""
    import keras

    for layer in compat.all_layers(model):
        if isinstance(layer, keras.Model):
            for name in ("train_function", "test_function", "predict_function"):
                if getattr(layer, name, None) is not None:
                    setattr(layer, name, None)


def is_shifted(layer) -> bool:
    """Whether `apply_fast_paths` switched this layer to shifted multiply-adds."""
    call = vars(layer).get("call")
    return getattr(call, "__func__", None) is _shifted_call


def supports_shifted(layer) -> bool:
    """Whether the shifted computation reproduces this DepthwiseConv2D exactly."""
    import keras

    return (
        isinstance(layer, keras.layers.DepthwiseConv2D)
        # A subclass with its own call computes something else: leave it alone.
        and type(layer).call is keras.layers.DepthwiseConv2D.call
        and layer.data_format == "channels_last"
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.padding in ("same", "valid")
        and layer.dtype_policy.quantization_mode is None
    )


def _shifted_call(self, inputs):
    """DepthwiseConv2D.call with the convolution as shifted multiply-adds."""
    from keras import ops

    outputs = shifted_depthwise_conv(inputs, self.kernel, self.strides, self.padding)
    if self.use_bias:
        outputs = ops.add(outputs, self.bias)  # channels_last: broadcasts over the last axis
    if self.activation is not None:
        outputs = self.activation(outputs)
    return outputs
