"""The JAX side of `flowerkit.backends.fastpaths`: depthwise and 1x1 convolutions with
hand-written gradients that XLA:CPU compiles well, the micro-batched train
step, and batched affine resampling for `flowerkit.backends.affine`.

Autodiff of the shifted multiply-adds in `flowerkit.backends.fastpaths` is exact but
slow to train through on XLA:CPU (the step times: docs/fast-paths.md):
- the kernel gradient needs each of the kh*kw shifted windows of the input;
  XLA materialises every window (kh*kw copies of the activation) in the
  forward pass, and reduces each with its own pass;
- the input gradient is the sum of kh*kw padded copies of the output gradient;
- the 1x1 convolution's weight gradient makes XLA pick a transposed layout for
  its operand, and it computes the whole fused backward chain (the depthwise
  input gradient, ReLU6 mask, BatchNorm scale) in that cache-hostile order.

The custom VJPs below keep only the input and kernel as residuals and compute
- the input gradient as one fused loop: the output gradient dilated by the
  stride, padded "full" and correlated with the flipped kernel;
- the kernel gradient as one variadic reduction of all taps over the rows
  (then a small sum), so no window is materialised;
- the 1x1 weight gradient as an explicit inputs^T @ gradient product.
They are reverse-mode only (`jax.grad`, Keras training); forward-mode (`jax.jvp`)
through them is not defined.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from flowerkit import compat


def depthwise_conv(inputs, kernel, strides, pads):
    """Depthwise convolution, channels_last, dilation 1.

    inputs: (batch, height, width, channels); kernel: (kh, kw, channels), one
    output channel per input channel (repeat the inputs first for a depth
    multiplier); strides: (sh, sw); pads: ((top, bottom), (left, right)), as
    `flowerkit.backends.geometry.output_size_and_padding` computes for "same"/"valid".
    """
    return _depthwise(inputs, kernel, tuple(strides), tuple(map(tuple, pads)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise(inputs, kernel, strides, pads):
    return _depthwise_forward(inputs, kernel, strides, pads)[0]


def _depthwise_forward(inputs, kernel, strides, pads):
    padded = jnp.pad(inputs, ((0, 0), pads[0], pads[1], (0, 0)))
    out_height, out_width = _output_size(padded, kernel, strides)
    outputs = _sum_of_taps(padded, kernel, (out_height, out_width), strides)
    return outputs, (inputs, kernel)


def _depthwise_backward(strides, pads, residuals, output_gradient):
    inputs, kernel = residuals
    kernel_height, kernel_width = kernel.shape[:2]
    padded = jnp.pad(inputs, ((0, 0), pads[0], pads[1], (0, 0)))
    out_height, out_width = output_gradient.shape[1:3]

    # Kernel gradient: for every tap, sum(window * output_gradient). One
    # variadic reduce over the rows reads each window once without storing
    # it; the remaining (batch, width) sums are small.
    taps = [(i, j) for i in range(kernel_height) for j in range(kernel_width)]
    products = tuple(
        _window(padded, i, j, (out_height, out_width), strides) * output_gradient for i, j in taps
    )
    zeros = tuple(jnp.zeros((), output_gradient.dtype) for _ in taps)
    row_sums = lax.reduce(
        products, zeros, lambda a, b: tuple(x + y for x, y in zip(a, b)), (1,)
    )
    kernel_gradient = jnp.stack([jnp.sum(s, axis=(0, 1)) for s in row_sums])
    kernel_gradient = kernel_gradient.reshape(kernel.shape).astype(kernel.dtype)

    # Input gradient: the transposed convolution as shifted multiply-adds. The
    # output gradient, dilated by the stride (interior zeros) and padded by
    # kernel-1 ("full"), correlated with the flipped kernel gives the gradient
    # of the padded input; crop the padding off.
    padded_height, padded_width = padded.shape[1:3]
    dilated_height = strides[0] * (out_height - 1) + 1
    dilated_width = strides[1] * (out_width - 1) + 1
    full = lax.pad(
        output_gradient,
        jnp.zeros((), output_gradient.dtype),
        (
            (0, 0, 0),
            (kernel_height - 1, padded_height - dilated_height, strides[0] - 1),
            (kernel_width - 1, padded_width - dilated_width, strides[1] - 1),
            (0, 0, 0),
        ),
    )
    padded_gradient = _sum_of_taps(
        full, kernel[::-1, ::-1], (padded_height, padded_width), (1, 1)
    )
    height, width = inputs.shape[1:3]
    input_gradient = padded_gradient[:, pads[0][0] : pads[0][0] + height, pads[1][0] : pads[1][0] + width]
    return input_gradient.astype(inputs.dtype), kernel_gradient


_depthwise.defvjp(_depthwise_forward, _depthwise_backward)


def _output_size(padded, kernel, strides):
    return tuple(
        (padded.shape[axis + 1] - kernel.shape[axis]) // strides[axis] + 1 for axis in (0, 1)
    )


def _window(padded, i, j, out_size, strides):
    """The input window that tap (i, j) multiplies: every stride-th pixel."""
    limits = (
        padded.shape[0],
        i + strides[0] * (out_size[0] - 1) + 1,
        j + strides[1] * (out_size[1] - 1) + 1,
        padded.shape[3],
    )
    return lax.slice(padded, (0, i, j, 0), limits, (1, strides[0], strides[1], 1))


def _sum_of_taps(padded, kernel, out_size, strides):
    """sum over taps of window(i, j) * kernel[i, j]: XLA fuses it into one loop."""
    outputs = None
    for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
            term = _window(padded, i, j, out_size, strides) * kernel[i, j]
            outputs = term if outputs is None else outputs + term
    return outputs


@jax.custom_vjp
def pointwise_matmul(inputs, kernel):
    """inputs (..., in) @ kernel (in, out): a 1x1 convolution, channels_last."""
    return jnp.matmul(inputs, kernel)


def _pointwise_forward(inputs, kernel):
    return jnp.matmul(inputs, kernel), (inputs, kernel)


def _pointwise_backward(residuals, output_gradient):
    inputs, kernel = residuals
    input_gradient = jnp.matmul(output_gradient, kernel.T)
    # Written as one 2-D product: XLA then transposes the (small) inputs, not
    # the fused chain that produces the output gradient.
    kernel_gradient = jnp.dot(
        inputs.reshape(-1, inputs.shape[-1]).T,
        output_gradient.reshape(-1, output_gradient.shape[-1]),
    )
    return input_gradient.astype(inputs.dtype), kernel_gradient.astype(kernel.dtype)


pointwise_matmul.defvjp(_pointwise_forward, _pointwise_backward)


def micro_batched_train_step(model, micro_batch: int):
    """A `train_step` for `model` (Keras's JAX trainer) that takes the
    gradient of a batch as the mean of the gradients of its micro-batches of
    `micro_batch` rows, one after another in a `lax.scan`, then applies the
    optimizer once.

    With the loss's "sum_over_batch_size" reduction (sample weights
    included) the mean of the micro-batch gradients is the batch's gradient;
    float rounding and dropout draws differ. XLA:CPU runs the step faster
    on smaller activations (cache-sized, presumably; not profiled); 4 rows
    was the fastest size measured (docs/fast-paths.md). A batch that
    `micro_batch` does not divide (the last of an epoch) takes Keras's step.
    """
    import keras

    stock_step = type(model).train_step

    def train_step(state, data):
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        rows = jax.tree_util.tree_leaves(x)[0].shape[0]
        if rows % micro_batch or rows == micro_batch:
            return stock_step(model, state, data)
        steps = rows // micro_batch
        gradient_of = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)

        def one(carry, batch):
            gradient_sum, non_trainable, metrics_variables = carry
            (_, aux), gradients = gradient_of(
                trainable, non_trainable, metrics_variables, *batch,
                training=True, optimizer_variables=optimizer_variables,
            )
            unscaled_loss, y_pred, non_trainable, metrics_variables = aux
            gradient_sum = jax.tree_util.tree_map(jnp.add, gradient_sum, gradients)
            return (gradient_sum, non_trainable, metrics_variables), (unscaled_loss, y_pred)

        def split(array):
            return array.reshape(steps, micro_batch, *array.shape[1:])

        zeros = jax.tree_util.tree_map(jnp.zeros_like, trainable)
        (gradient_sum, non_trainable, metrics_variables), (losses, y_pred) = lax.scan(
            one, (zeros, non_trainable, metrics_variables),
            jax.tree_util.tree_map(split, (x, y, sample_weight)),
        )
        gradients = jax.tree_util.tree_map(lambda total: total / steps, gradient_sum)
        trainable, optimizer_variables = model.optimizer.stateless_apply(
            optimizer_variables, gradients, trainable
        )
        y_pred = jax.tree_util.tree_map(lambda a: a.reshape(rows, *a.shape[2:]), y_pred)
        # Keras's loss and metric updates, once, over the whole batch.
        logs, metrics_variables = compat.jax_update_metrics(
            model, metrics_variables, jnp.mean(losses), x, y, y_pred, sample_weight
        )
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    return train_step


# --- affine augmentation (RandomZoom, RandomRotation, RandomTranslation) ----------
#
# Keras's JAX `affine_transform` gives `map_coordinates` a 3-D coordinate per
# pixel *and channel*, so every output value interpolates between 8 corners
# (channel axis included) through its own gathers: ~0.5 s for 64 images of
# 224x224 on 2 CPU cores. Interpolating each pixel once between its 4
# neighbours, gathering whole RGB rows, gives the same values ~4x faster.


def gather_affine_transform(images, transform, interpolation="bilinear", fill_mode="constant",
                            fill_value=0.0):
    """`keras.ops.image.affine_transform` for a channels_last batch.

    transform rows [a0, a1, a2, b0, b1, b2, c0, c1] map an output pixel
    (x, y) to the input point ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k),
    k = c0 x + c1 y + 1. Fill modes as `map_coordinates`: "reflect"
    (d c b a | a b c d), "nearest", "wrap", "constant" (`fill_value`); nearest
    interpolation rounds halves away from zero, as it does.
    """
    batch, height, width, channels = images.shape
    transform = jnp.asarray(transform, jnp.float32)
    if transform.ndim == 1:
        transform = jnp.broadcast_to(transform, (batch, 8))
    y, x = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
    )
    a0, a1, a2, b0, b1, b2, c0, c1 = (transform[:, i, None, None] for i in range(8))
    k = c0 * x + c1 * y + 1.0
    x_in = (a0 * x + a1 * y + a2) / k
    y_in = (b0 * x + b1 * y + b2) / k
    if interpolation == "nearest":
        nearest = lambda v: jnp.sign(v) * jnp.floor(jnp.abs(v) + 0.5)  # noqa: E731
        corners = [(nearest(y_in), nearest(x_in), None)]
    else:
        y0, x0 = jnp.floor(y_in), jnp.floor(x_in)
        dy, dx = y_in - y0, x_in - x0
        corners = [
            (y0, x0, (1 - dy) * (1 - dx)), (y0, x0 + 1, (1 - dy) * dx),
            (y0 + 1, x0, dy * (1 - dx)), (y0 + 1, x0 + 1, dy * dx),
        ]
    rows = images.reshape(batch, height * width, channels)
    output = None
    for corner_y, corner_x, weight in corners:
        row, column = corner_y.astype(jnp.int32), corner_x.astype(jnp.int32)
        flat = _fold(row, height, fill_mode) * width + _fold(column, width, fill_mode)
        values = jnp.take_along_axis(rows, flat.reshape(batch, height * width, 1), axis=1)
        values = values.reshape(batch, height, width, channels)
        if fill_mode == "constant":
            inside = (row >= 0) & (row < height) & (column >= 0) & (column < width)
            values = jnp.where(inside[..., None], values, jnp.asarray(fill_value, values.dtype))
        term = values if weight is None else weight[..., None] * values
        output = term if output is None else output + term
    return output.astype(images.dtype)


def _fold(index, size: int, fill_mode: str):
    """Integer pixel positions outside [0, size) mapped inside per fill mode
    ("constant" clips; its outside values are replaced afterwards)."""
    if fill_mode == "reflect":  # d c b a | a b c d
        index = jnp.mod(index, 2 * size)
        return jnp.where(index >= size, 2 * size - 1 - index, index)
    if fill_mode == "wrap":
        return jnp.mod(index, size)
    return jnp.clip(index, 0, size - 1)
