"""PyTorch without Keras's slow paths: convolutions and frozen BatchNorm
without layout copies, and affine augmentation resampled as one batch.

Keras's torch backend keeps tensors channels_last (NHWC). For every
convolution it copies the input to a contiguous NCHW tensor, then copies it
again to torch's channels_last memory format, pads "same" inputs into a third
tensor, and computes BatchNorm as three elementwise passes. Profiled on CPU
(MobileNetV2, batch 32) those copies took half of the forward time and the
convolutions themselves a sixth.

An NHWC tensor *is* an NCHW tensor in channels_last memory format, seen
through `permute(0, 3, 1, 2)`: no copy. So the layers here call
`torch.nn.functional.conv2d` and `batch_norm` on that view directly, and the
output, channels_last in memory, permutes back to NHWC for free. Like the
JAX depthwise path (`flowerkit.backends.fastpaths`), each eligible layer *instance*
gets its own `call`; classes, configs and weights stay stock. The affine
augmentation layers get `grid_sample_affine_transform` through their own
backend object (`flowerkit.backends.affine`).

The allocator switch that suits it lives in `flowerkit.backends.allocator`.
"""

from __future__ import annotations

from flowerkit.backends.geometry import output_size_and_padding


def supports_native(layer) -> bool:
    """Whether the native call reproduces this layer's stock computation."""
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        return (
            type(layer).call is keras.layers.BatchNormalization.call
            and layer.axis in (-1, 3)
            and not getattr(layer, "synchronized", False)
            and getattr(layer, "renorm", False) is False
        )
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
        stock_call = (
            keras.layers.DepthwiseConv2D.call
            if isinstance(layer, keras.layers.DepthwiseConv2D)
            else keras.layers.Conv2D.call
        )
        return (
            type(layer).call is stock_call
            and layer.data_format == "channels_last"
            and tuple(layer.dilation_rate) == (1, 1)
            and layer.padding in ("same", "valid")
            and layer.dtype_policy.quantization_mode is None
            and not getattr(layer, "lora_enabled", False)
        )
    return False


def native_call(layer):
    """The replacement `call` function for a layer `supports_native` accepts."""
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        return _batch_norm_call
    return _conv_call


def is_native(layer) -> bool:
    call = vars(layer).get("call")
    return getattr(call, "__func__", None) in NATIVE_CALLS


def _conv_call(self, inputs):
    """Conv2D / DepthwiseConv2D.call on the channels_last view of `inputs`."""
    import keras
    import torch.nn.functional as functional

    if inputs.ndim != 4:
        return type(self).call(self, inputs)
    images = inputs.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: no copy
    kernel = self.kernel.value
    if isinstance(self, keras.layers.DepthwiseConv2D):
        # (kh, kw, C, M) -> (C*M, 1, kh, kw): output channel c*M + m reads channel c.
        height, width, channels, multiplier = kernel.shape
        weight = kernel.reshape(height, width, 1, channels * multiplier).permute(3, 2, 0, 1)
        groups = channels
    else:
        weight = kernel.permute(3, 2, 0, 1)  # (kh, kw, in/groups, out) -> (out, in/groups, kh, kw)
        groups = self.groups
    # Python ints: a trace (the ONNX export) would otherwise record the pads
    # as arithmetic on the input's shape, a Pad ONNX Runtime cannot fold into the Conv.
    height, width = int(images.shape[2]), int(images.shape[3])
    _, pad_height = output_size_and_padding(height, weight.shape[2], self.strides[0], self.padding)
    _, pad_width = output_size_and_padding(width, weight.shape[3], self.strides[1], self.padding)
    if pad_height[0] == pad_height[1] and pad_width[0] == pad_width[1]:
        padding = (pad_height[0], pad_width[0])  # symmetric: the convolution pads itself
    else:
        # TensorFlow's "same" puts the odd extra row/column after.
        images = functional.pad(images, (*pad_width, *pad_height))
        padding = (0, 0)
    bias = self.bias.value if self.use_bias else None
    outputs = functional.conv2d(images, weight, bias, tuple(self.strides), padding, 1, groups)
    outputs = outputs.permute(0, 2, 3, 1)
    if self.activation is not None:
        outputs = self.activation(outputs)
    return outputs


def _batch_norm_call(self, inputs, training=None, mask=None):
    """BatchNormalization.call in one fused pass, for the inference mode that
    flowerkit's frozen BatchNorm layers always run in."""
    import keras
    import torch
    import torch.nn.functional as functional

    if (training and self.trainable) or inputs.ndim != 4 or inputs.dtype != torch.float32:
        return keras.layers.BatchNormalization.call(self, inputs, training=training, mask=mask)
    outputs = functional.batch_norm(
        inputs.permute(0, 3, 1, 2),
        self.moving_mean.value,
        self.moving_variance.value,
        self.gamma.value if self.scale else None,
        self.beta.value if self.center else None,
        False,
        0.0,
        self.epsilon,
    )
    return outputs.permute(0, 2, 3, 1)


NATIVE_CALLS = (_conv_call, _batch_norm_call)


# --- affine augmentation (RandomZoom, RandomRotation, RandomTranslation) ----------
#
# Keras's torch `affine_transform` maps every image separately; this does the
# whole batch in one `grid_sample` call (see `flowerkit.backends.affine`).


def grid_sample_affine_transform(images, transform, interpolation="bilinear", fill_mode="constant",
                                 fill_value=0.0):
    """`keras.ops.image.affine_transform` for a channels_last batch, through
    `torch.nn.functional.grid_sample`.

    transform rows [a0, a1, a2, b0, b1, b2, c0, c1] map an output pixel
    (x, y) to the input point ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k),
    k = c0 x + c1 y + 1, as in Keras. fill_mode "reflect" (d c b a | a b c d)
    is grid_sample's "reflection" about the image's outer edges
    (align_corners=False), "nearest" its "border", "constant" its zeros plus
    `fill_value` outside.
    """
    import torch
    import torch.nn.functional as functional

    batch, height, width, _ = images.shape
    transform = torch.as_tensor(transform, dtype=torch.float32, device=images.device)
    if transform.ndim == 1:
        transform = transform.unsqueeze(0).expand(batch, -1)
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=images.device),
        torch.arange(width, dtype=torch.float32, device=images.device),
        indexing="ij",
    )
    a0, a1, a2, b0, b1, b2, c0, c1 = (transform[:, i, None, None] for i in range(8))
    k = c0 * x + c1 * y + 1.0
    x_in = (a0 * x + a1 * y + a2) / k
    y_in = (b0 * x + b1 * y + b2) / k
    # align_corners=False: -1 and 1 are the outer edges of the border pixels.
    grid = torch.stack(((2 * x_in + 1) / width - 1, (2 * y_in + 1) / height - 1), dim=-1)
    padding_mode = {"reflect": "reflection", "nearest": "border", "constant": "zeros"}[fill_mode]
    source = images.permute(0, 3, 1, 2).float()
    sampled = functional.grid_sample(
        source, grid, mode=interpolation, padding_mode=padding_mode, align_corners=False
    )
    if fill_mode == "constant" and fill_value:
        inside = functional.grid_sample(
            torch.ones_like(source[:, :1]), grid, mode=interpolation, padding_mode="zeros",
            align_corners=False,
        )
        sampled = sampled + (1 - inside) * fill_value
    return sampled.permute(0, 2, 3, 1).to(images.dtype)
