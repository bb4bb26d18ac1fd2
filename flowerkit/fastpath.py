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
(`flowerkit.fastpath_jax`): autodiff of the shifted sum made XLA:CPU store
every window and transpose whole backward chains, and fine-tuning ran 3.8x
slower than with them.

On PyTorch, `apply_fast_paths` switches convolutions and frozen BatchNorm
layers the same way to calls without Keras's layout copies
(`flowerkit.fastpath_torch`), and on a CPU makes the C allocator keep freed
memory (`fastpath_torch.keep_freed_memory`, process-wide).

On JAX and PyTorch, RandomZoom, RandomRotation and RandomTranslation resample
the whole batch at once instead of Keras's image-by-image or channel-by-channel
resampling (`flowerkit.fastpath_affine`), with the same pixels.

On JAX with CPU devices, a compiled model whose backbone trains gets a
micro-batched train step (`use_micro_batches`): the gradient of a batch as
the mean over micro-batches of 4 rows, which XLA:CPU runs faster
(`fastpath_jax.micro_batched_train_step`).

Importing this module changes nothing; only `apply_fast_paths` acts, on the
model it is given (and, on PyTorch with a CPU, `fast_path_record`, which it
calls, on the allocator).
"""

from __future__ import annotations

import types

SETTINGS = ("auto", "shifted", "stock")
TORCH_SETTINGS = ("auto", "native", "stock")
POINTWISE_SETTINGS = ("auto", "matmul", "stock")
AFFINE_SETTINGS = ("auto", "batched", "stock")


def depthwise_implementation(backend: str, device_kind: str, setting: str = "auto") -> str:
    """Which depthwise convolution to use: "shifted" or "stock".

    "auto" picks "shifted" only on JAX with CPU devices, where it was
    measured to win; XLA:GPU/TPU, TensorFlow and PyTorch have fast native
    depthwise kernels. An explicit "shifted" or "stock" wins over the policy.
    """
    if setting not in SETTINGS:
        raise ValueError(
            f"Unknown depthwise setting {setting!r}: use one of {', '.join(SETTINGS)} "
            "('auto' picks 'shifted' on JAX with CPU devices, 'stock' elsewhere)."
        )
    if setting != "auto":
        return setting
    if backend.lower() == "jax" and device_kind.upper() == "CPU":
        return "shifted"
    return "stock"


# Rows per micro-batch of a JAX fine-tuning step on CPUs (see
# `fastpath_jax.micro_batched_train_step`): 4 ran fastest, then 2, 8, 16.
AUTO_MICRO_BATCH = 4


def micro_batch_size(
    backend: str, device_kind: str, setting="auto", trains_backbone: bool = True,
    data_parallel: bool = False,
) -> int:
    """Rows per micro-batch of the train step, 0 for the whole batch at once.

    "auto" picks `AUTO_MICRO_BATCH` on JAX with CPU devices when the backbone
    trains, where it was measured to win, and 0 elsewhere (a step on cached
    features is tiny; GPUs and TPUs want big batches). An integer forces it
    (0: off); micro-batches are a JAX train step on one device.
    """
    if setting == "auto":
        wins = backend.lower() == "jax" and device_kind.upper() == "CPU" and trains_backbone
        return AUTO_MICRO_BATCH if wins and not data_parallel else 0
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise ValueError(
            f"Unknown micro_batch setting {setting!r}: use 'auto' or a number of rows (0: off)."
        )
    if setting and backend.lower() != "jax":
        raise ValueError(
            f"micro_batch={setting} is a JAX train step; on {backend} use 'auto' or 0."
        )
    if setting and data_parallel:
        raise ValueError(
            f"micro_batch={setting} runs on one device; with data-parallel training use 'auto' or 0."
        )
    return setting


# What `fastpath_jax.micro_batched_train_step` calls of Keras's JAX trainer
# (Keras 3.15.1; the second is private): without them, Keras's own step.
_JAX_TRAINER_METHODS = ("compute_loss_and_updates", "_update_metrics_variables")


def current_micro_batch(setting="auto", trains_backbone: bool = True) -> int:
    """`micro_batch_size` for the current backend, device and distribution
    plan: what `use_micro_batches` gives a model, as metrics.json records it."""
    import keras

    return micro_batch_size(
        keras.backend.backend(), current_device_kind(), setting, trains_backbone,
        data_parallel=_data_parallel(),
    )


def use_micro_batches(model, setting="auto", trains_backbone: bool = True) -> int:
    """Gives compiled `model` a micro-batched train step (JAX) when the policy
    picks one, or back Keras's own; returns the rows per micro-batch (0: off).
    Call it after `model.compile`. A saved model is unaffected.

    Only a model without BatchNormalization on batch statistics qualifies
    (flowerkit keeps BatchNorm in inference mode): micro-batches would
    normalise over fewer rows.
    """
    import keras

    size = current_micro_batch(setting, trains_backbone)
    if size and not all(hasattr(model, name) for name in _JAX_TRAINER_METHODS):
        if setting != "auto":
            raise ValueError(f"micro_batch={setting} needs Keras's JAX trainer ({', '.join(_JAX_TRAINER_METHODS)}).")
        size = 0
    batch_statistics = [
        layer.name for layer in model._flatten_layers(include_self=False, recursive=True)
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
        from flowerkit.fastpath_jax import micro_batched_train_step

        model.train_step = micro_batched_train_step(model, size)
    model.train_function = None  # the next fit builds its step anew
    return size


def _data_parallel() -> bool:
    from flowerkit import distribution

    plan = distribution.active()
    return plan is not None and plan.mode != "none"


def pointwise_implementation(backend: str, device_kind: str, setting: str = "auto") -> str:
    """How 1x1 convolutions compute: "matmul" or "stock". "auto" picks
    "matmul" on JAX with CPU devices, where it was measured to win."""
    if setting not in POINTWISE_SETTINGS:
        raise ValueError(
            f"Unknown pointwise_conv setting {setting!r}: use one of {', '.join(POINTWISE_SETTINGS)} "
            "('auto' picks 'matmul' on JAX with CPU devices, 'stock' elsewhere)."
        )
    if setting != "auto":
        return setting
    return "matmul" if backend.lower() == "jax" and device_kind.upper() == "CPU" else "stock"


def torch_layers_implementation(backend: str, device_kind: str, setting: str = "auto") -> str:
    """How PyTorch runs convolutions and frozen BatchNorm: "native" or "stock".

    "auto" picks "native" on PyTorch with a CPU, where it was measured to win
    (flowerkit.fastpath_torch); GPUs keep the stock layers until measured.
    """
    if setting not in TORCH_SETTINGS:
        raise ValueError(
            f"Unknown torch_layers setting {setting!r}: use one of {', '.join(TORCH_SETTINGS)} "
            "('auto' picks 'native' on PyTorch with a CPU, 'stock' elsewhere)."
        )
    if backend.lower() != "torch":
        return "stock"
    if setting != "auto":
        return setting
    return "native" if device_kind.upper() == "CPU" else "stock"


def affine_implementation(backend: str, setting: str = "auto") -> str:
    """How RandomZoom, RandomRotation and RandomTranslation resample:
    "batched" (`flowerkit.fastpath_affine`) or "stock". "auto" and "batched"
    pick it on JAX and PyTorch, whose stock resampling goes image by image
    or channel by channel; TensorFlow's own kernel is batched already."""
    if setting not in AFFINE_SETTINGS:
        raise ValueError(
            f"Unknown affine_augmentation setting {setting!r}: use one of "
            f"{', '.join(AFFINE_SETTINGS)} ('auto' picks 'batched' on JAX and PyTorch)."
        )
    if backend.lower() not in ("jax", "torch"):
        return "stock"
    return "stock" if setting == "stock" else "batched"


def current_device_kind() -> str:
    """"CPU", "GPU" or "TPU": where the current Keras backend computes by default."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        platform = jax.default_backend().lower()
        return {"cpu": "CPU", "tpu": "TPU"}.get(platform, "GPU")  # gpu, cuda, rocm, ...
    if backend == "torch":
        import torch

        return "GPU" if torch.cuda.is_available() else "CPU"
    if backend == "tensorflow":
        import tensorflow as tf

        for kind in ("TPU", "GPU"):
            if tf.config.list_logical_devices(kind):
                return kind
    return "CPU"


def fast_path_record(
    setting: str = "auto", torch_layers: str = "auto", pointwise_conv: str = "auto",
    affine: str = "auto",
) -> dict:
    """The choice for the current backend and device, as put in metrics.json
    and benchmark rows (without layer counts; `apply_fast_paths` adds them).

    On PyTorch with a CPU it also puts `fastpath_torch.keep_freed_memory` in
    effect (process-wide, once) and records it as "torch_keep_freed_memory".
    """
    import keras

    backend = keras.backend.backend()
    device_kind = current_device_kind()
    record = {
        "depthwise_conv": depthwise_implementation(backend, device_kind, setting),
        "torch_layers": torch_layers_implementation(backend, device_kind, torch_layers),
        "pointwise_conv": pointwise_implementation(backend, device_kind, pointwise_conv),
        "affine_augmentation": affine_implementation(backend, affine),
        "setting": setting,
        "backend": backend,
        "device_kind": device_kind,
    }
    if backend == "torch" and device_kind == "CPU":
        from flowerkit.fastpath_torch import keep_freed_memory

        record["torch_keep_freed_memory"] = keep_freed_memory()
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
    "pointwise_conv": "matmul", "matmul_layers": 35,
    "affine_augmentation": "batched", "affine_layers": 0}.
    """
    import keras

    from flowerkit import fastpath_affine

    if not isinstance(model, keras.layers.Layer):
        raise ValueError(f"apply_fast_paths needs a Keras model or layer, got {type(model).__name__}.")
    record = fast_path_record(setting, torch_layers, pointwise_conv, affine)
    counts = {"shifted": 0, "native": 0, "matmul": 0, "batched": 0, "stock_depthwise": 0}
    changed = False
    # `_flatten_layers` (Keras 3) also reaches layers held inside custom
    # layers, such as keras-hub's MBConvBlock, which `model.layers` does not.
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if fastpath_affine.supports_batched_affine(layer):
            batched = record["affine_augmentation"] == "batched"
            changed = fastpath_affine.switch_affine(layer, batched) or changed
            counts["batched"] += batched
            continue
        kind, function = _fast_call(layer, record)
        changed = _set_own_call(layer, function) or changed
        if kind is not None:
            counts[kind] += 1
        if isinstance(layer, keras.layers.DepthwiseConv2D) and kind != "shifted":
            counts["stock_depthwise"] += 1
    if changed:
        _forget_compiled_functions(model)
    # A path that switched no layer did not run: say "stock".
    for field, kind in (("depthwise_conv", "shifted"), ("torch_layers", "native"),
                        ("pointwise_conv", "matmul"), ("affine_augmentation", "batched")):
        if counts[kind] == 0:
            record[field] = "stock"
    record["shifted_layers"] = counts["shifted"]
    record["stock_layers"] = counts["stock_depthwise"]
    record["native_layers"] = counts["native"]
    record["matmul_layers"] = counts["matmul"]
    record["affine_layers"] = counts["batched"]
    return record


def _fast_call(layer, record: dict):
    """(kind, call function) that `record` picks for `layer`, or (None, None)
    for its stock call. A forced "shifted" depthwise wins over PyTorch's native
    convolution, which wins over a 1x1 convolution as matmul."""
    from flowerkit import fastpath_torch

    if record["depthwise_conv"] == "shifted" and supports_shifted(layer):
        return "shifted", _shifted_call
    if record["torch_layers"] == "native" and fastpath_torch.supports_native(layer):
        return "native", fastpath_torch.native_call(layer)
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
    from flowerkit import fastpath_torch

    current = getattr(vars(layer).get("call"), "__func__", None)
    ours = (_shifted_call, _matmul_call, *fastpath_torch.NATIVE_CALLS)
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
        from flowerkit import fastpath_jax  # a weight gradient XLA:CPU lays out well

        outputs = fastpath_jax.pointwise_matmul(ops.convert_to_tensor(inputs), kernel)
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

    for layer in model._flatten_layers(include_self=True, recursive=True):
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


def shifted_depthwise_conv(inputs, kernel, strides=(1, 1), padding="valid"):
    """`keras.ops.depthwise_conv` (channels_last, dilation 1) as kh*kw shifted
    multiply-adds: out[..., c*M + m] = sum_ij x[shifted by i, j][..., c] * kernel[i, j, c, m].

    inputs: (batch, height, width, channels); kernel: (kh, kw, channels, M).
    "same" pads like TensorFlow/XLA (the odd extra row/column after). Falls
    back to the stock op when height or width is unknown (symbolic None).
    On JAX the gradient is hand-written (`flowerkit.fastpath_jax`).
    """
    import keras
    from keras import ops

    strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
    padding = padding.lower()
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}.")
    if len(inputs.shape) != 4 or len(kernel.shape) != 4:
        raise ValueError(
            "shifted_depthwise_conv needs 4D channels_last inputs (batch, height, width, "
            f"channels) and a 4D kernel (kh, kw, channels, multiplier); got inputs "
            f"{tuple(inputs.shape)} and kernel {tuple(kernel.shape)}."
        )
    kernel_height, kernel_width, channels, multiplier = kernel.shape
    height, width = inputs.shape[1], inputs.shape[2]
    if height is None or width is None:
        return ops.depthwise_conv(inputs, kernel, strides=strides, padding=padding)
    if inputs.shape[3] != channels:
        raise ValueError(
            f"inputs have {inputs.shape[3]} channels but the kernel expects {channels}."
        )

    out_height, pad_height = output_size_and_padding(height, kernel_height, strides[0], padding)
    out_width, pad_width = output_size_and_padding(width, kernel_width, strides[1], padding)
    if multiplier > 1:
        # Output channel c*M + m reads input channel c (the order ops.depthwise_conv uses).
        inputs = ops.repeat(inputs, multiplier, axis=3)
    kernel = ops.reshape(kernel, (kernel_height, kernel_width, channels * multiplier))
    if keras.backend.backend() == "jax":
        # Same sum, with a gradient XLA:CPU trains through ~4x faster.
        from flowerkit import fastpath_jax

        return fastpath_jax.depthwise_conv(
            ops.convert_to_tensor(inputs), kernel, strides, (pad_height, pad_width)
        )
    if pad_height != (0, 0) or pad_width != (0, 0):
        inputs = ops.pad(inputs, ((0, 0), pad_height, pad_width, (0, 0)))

    outputs = None
    for i in range(kernel_height):
        for j in range(kernel_width):
            window = inputs[
                :,
                i : i + strides[0] * (out_height - 1) + 1 : strides[0],
                j : j + strides[1] * (out_width - 1) + 1 : strides[1],
                :,
            ]
            term = window * kernel[i, j]
            outputs = term if outputs is None else outputs + term
    return outputs


def output_size_and_padding(size: int, kernel: int, stride: int, padding: str):
    if padding == "valid":
        if size < kernel:
            raise ValueError(f"'valid' padding needs inputs of at least {kernel}, got {size}.")
        return (size - kernel) // stride + 1, (0, 0)
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, (total // 2, total - total // 2)
