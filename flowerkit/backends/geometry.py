"""Convolution geometry shared by the kernels: output sizes and "same"
padding as TensorFlow/XLA compute them, and the depthwise convolution as
kh*kw shifted multiply-adds. Keras is imported on first use, as in the rest
of the backends layer, so that importing it (the CLI does) starts no backend."""

from __future__ import annotations



def shifted_depthwise_conv(inputs, kernel, strides=(1, 1), padding="valid"):
    """`keras.ops.depthwise_conv` (channels_last, dilation 1) as kh*kw shifted
    multiply-adds: out[..., c*M + m] = sum_ij x[shifted by i, j][..., c] * kernel[i, j, c, m].

    inputs: (batch, height, width, channels); kernel: (kh, kw, channels, M).
    "same" pads like TensorFlow/XLA (the odd extra row/column after). Falls
    back to the stock op when height or width is unknown (symbolic None).
    On JAX the gradient is hand-written (`flowerkit.backends.jax_kernels`).
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
        from flowerkit.backends import jax_kernels  # needs jax: JAX environments only

        return jax_kernels.depthwise_conv(
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
