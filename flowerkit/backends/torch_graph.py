"""A convolutional backbone (MobileNetV2's) run on PyTorch as one torch
computation, with each convolution, its frozen BatchNorm and its ReLU6 as
one convolution.

torchvision's MobileNetV2 runs a convolution, a BatchNorm pass and a ReLU6
pass per block; Keras adds a ZeroPadding2D copy before every strided
depthwise convolution and a Python `Layer.__call__` per layer. Here a
Functional model made only of convolutions, frozen BatchNorm, ReLU, zero
padding and adds gets its own `call` (as the per-layer fast paths do, on the
instance; saved models stay stock) that runs a plan built once from its graph:

* a frozen BatchNorm after a convolution is folded into it: conv(x, W * s) + b'
  with s = gamma / sqrt(var + eps), so its pass (forward and backward) is gone;
* a ReLU/ReLU6 after it is the convolution's post-op (oneDNN's fused
  convolution when no gradient is wanted; an in-place clamp otherwise);
* zero padding, a ZeroPadding2D's or TensorFlow's asymmetric "same", becomes
  the convolution's own symmetric padding with the kernel widened by zeros at
  the front where no gradient is wanted: no padded copy of the input.

Gradients flow through the folding to the convolution's kernel and bias, so
fine-tuning trains the same weights. The plan only runs eagerly on CPU float32
tensors with every folded BatchNorm frozen; anything else (an ONNX or LiteRT
export tracing the model included) calls the layers one by one.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref

from flowerkit.backends.geometry import output_size_and_padding
from flowerkit.backends.torch_kernels import supports_native

_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclasses.dataclass
class _Convolution:
    """One convolution step: its zero padding, BatchNorm and ReLU folded in."""

    conv: object
    source: str
    padding: tuple | None = None  # ((top, bottom), (left, right)) of an absorbed ZeroPadding2D
    batch_norm: object = None
    relu_max: float | None = None  # with `relu`: 6.0 for ReLU6, inf for ReLU
    relu: bool = False


@dataclasses.dataclass
class _Step:
    """A layer left on its own: "add", "batch_norm", "relu" or "pad"."""

    kind: str
    layer: object
    sources: tuple


@dataclasses.dataclass
class _Plan:
    input_name: str
    output_name: str
    steps: list  # (output name, _Convolution | _Step), in graph order

    @property
    def convolutions(self) -> int:
        return sum(isinstance(step, _Convolution) for _, step in self.steps)


def supports_fused_graph(layer) -> bool:
    """Whether `layer` is a Functional model that `fused_call` runs whole."""
    return _plan(layer) is not None


def fused_convolutions(layer) -> int:
    plan = _plan(layer)
    return plan.convolutions if plan else 0


def _plan(model):
    import keras

    if not isinstance(model, keras.Model):  # Functional or not: _graph reads its config
        return None
    try:
        return _PLANS[model]
    except KeyError:
        plan = _build_plan(model)
        _PLANS[model] = plan
        return plan
    except TypeError:  # not weak-referenceable
        return None


def _graph(model):
    """({layer name: (layer, [input layer names])} in graph order, the output
    layer's name) from the model's public config; None for what the plan does
    not cover (not Functional, several inputs or outputs, shared layers)."""
    try:
        config = model.get_config()
    except (NotImplementedError, TypeError, ValueError):  # a layer without a config
        return None
    output_name = _single_endpoint(config, "output_layers")
    if _single_endpoint(config, "input_layers") is None or output_name is None:
        return None
    graph = {}
    for entry in config["layers"]:
        nodes = entry.get("inbound_nodes", [])
        if len(nodes) > 1:
            return None
        sources = []
        for argument in nodes[0]["args"] if nodes else []:
            tensors = argument if isinstance(argument, list) else [argument]
            for tensor in tensors:
                history = tensor.get("config", {}).get("keras_history") if isinstance(tensor, dict) else None
                if history is None or tuple(history[1:]) != (0, 0):
                    return None
                sources.append(history[0])
        graph[entry["name"]] = (model.get_layer(entry["name"]), sources)
    return graph, output_name


def _single_endpoint(config, key):
    """The layer name of a config's one input or output: saved as
    [name, 0, 0] for one, [[name, 0, 0], ...] for several."""
    endpoints = config.get(key) or []
    if endpoints and isinstance(endpoints[0], str):
        endpoints = [endpoints]
    return endpoints[0][0] if len(endpoints) == 1 and tuple(endpoints[0][1:]) == (0, 0) else None


def _layer_kind(layer) -> str | None:
    import keras

    if isinstance(layer, keras.layers.InputLayer):
        return "input"
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
        linear = layer.activation in (None, keras.activations.linear)
        return "conv" if supports_native(layer) and linear else None
    if isinstance(layer, keras.layers.BatchNormalization):
        return "batch_norm" if supports_native(layer) else None
    if isinstance(layer, keras.layers.ReLU):
        plain = not layer.negative_slope and not layer.threshold and type(layer).call is keras.layers.ReLU.call
        return "relu" if plain else None
    if isinstance(layer, keras.layers.ZeroPadding2D):
        return "pad" if layer.data_format == "channels_last" and type(layer).call is keras.layers.ZeroPadding2D.call else None
    if isinstance(layer, keras.layers.Add) and type(layer).call is keras.layers.Add.call:
        return "add"
    return None


def _build_plan(model) -> _Plan | None:
    graph_and_output = _graph(model)
    if graph_and_output is None:
        return None
    graph, output_name = graph_and_output
    kinds = {name: _layer_kind(layer) for name, (layer, _) in graph.items()}
    if None in kinds.values() or list(kinds.values()).count("input") != 1:
        return None
    if any(layer.compute_dtype != "float32" for layer, _ in graph.values()):
        return None  # mixed precision computes in float16/bfloat16: left to the layers
    consumers = {name: [] for name in graph}
    for name, (_, sources) in graph.items():
        for source in sources:
            consumers[source].append(name)
    consumers[output_name].append(None)  # the model's output is read from outside

    def only_consumer(name, kind):
        following = consumers[name]
        return following[0] if len(following) == 1 and following[0] and kinds[following[0]] == kind else None

    steps, absorbed, alias = [], set(), {}
    for name, (layer, sources) in graph.items():
        kind = kinds[name]
        if kind == "input" or name in absorbed:
            continue
        sources = tuple(alias.get(source, source) for source in sources)
        if kind == "pad":
            conv = only_consumer(name, "conv")
            if conv and graph[conv][0].padding == "valid":
                alias[name] = sources[0]  # the convolution pads
                continue
        if kind != "conv":
            steps.append((name, _Step(kind, layer, sources)))
            continue
        step = _Convolution(layer, sources[0])
        padding_layer = next((source for source in graph[name][1] if kinds[source] == "pad"), None)
        if padding_layer is not None and padding_layer in alias:
            step.padding = tuple(tuple(pair) for pair in graph[padding_layer][0].padding)
        output = name
        batch_norm = only_consumer(name, "batch_norm")
        if batch_norm:
            step.batch_norm = graph[batch_norm][0]
            absorbed.add(batch_norm)
            output = batch_norm
            relu = only_consumer(batch_norm, "relu")
            if relu:
                step.relu = True
                step.relu_max = graph[relu][0].max_value
                absorbed.add(relu)
                output = relu
        for absorbed_name in {batch_norm, output} - {None, name}:
            alias[absorbed_name] = name
        steps.append((name, step))
    input_name = next(name for name, kind in kinds.items() if kind == "input")
    return _Plan(input_name, alias.get(output_name, output_name), steps)


def _runs(plan: _Plan, inputs, mask) -> bool:
    """Whether the plan computes what the layers would for this call."""
    import torch

    return (
        mask is None
        # Not while torch.compile or an export traces it (fake or functional
        # tensor subclasses): exported files keep the stock layers' ops.
        and type(inputs) is torch.Tensor
        and not _tracing(torch)
        and inputs.ndim == 4
        and inputs.dtype == torch.float32
        and inputs.device.type == "cpu"
        and all(
            step.batch_norm is None or not step.batch_norm.trainable
            for _, step in plan.steps if isinstance(step, _Convolution)
        )
        and all(
            not step.layer.trainable or step.kind != "batch_norm"
            for _, step in plan.steps if isinstance(step, _Step)
        )
    )


def _tracing(torch) -> bool:
    compiler = torch.compiler
    return (torch.jit.is_tracing() or compiler.is_compiling()
            or bool(getattr(compiler, "is_exporting", lambda: False)()))


def fused_call(self, inputs, training=None, mask=None, **kwargs):
    """Functional.call through the fused plan (see the module docstring)."""
    plan = _plan(self)
    if plan is None or kwargs or not _runs(plan, inputs, mask):
        return type(self).call(self, inputs, training=training, mask=mask, **kwargs)
    values = {plan.input_name: inputs.permute(0, 3, 1, 2)}  # NCHW view of NHWC memory
    for name, step in plan.steps:
        if isinstance(step, _Convolution):
            values[name] = _convolution(step, values[step.source])
        else:
            values[name] = _single_step(step, [values[source] for source in step.sources])
    return values[plan.output_name].permute(0, 2, 3, 1)


def _folded_weights(step: _Convolution):
    """The convolution's torch weight (out, in/groups, kh, kw) and bias, with
    the BatchNorm folded in."""
    import keras
    import torch

    conv = step.conv
    kernel = conv.kernel.value
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        height, width, channels, multiplier = kernel.shape
        weight = kernel.reshape(height, width, 1, channels * multiplier).permute(3, 2, 0, 1)
    else:
        weight = kernel.permute(3, 2, 0, 1)
    bias = conv.bias.value if conv.use_bias else None
    norm = step.batch_norm
    if norm is None:
        return weight, bias
    scale = torch.rsqrt(norm.moving_variance.value + norm.epsilon)
    if norm.scale:
        scale = scale * norm.gamma.value
    shift = -norm.moving_mean.value * scale
    if bias is not None:
        shift = shift + bias * scale
    if norm.center:
        shift = shift + norm.beta.value
    return weight * scale.reshape(-1, 1, 1, 1), shift


def _symmetric_padding(before: int, after: int):
    """(symmetric padding, zeros to put before the kernel) that reproduce
    `before`/`after` zero padding, or None where only a copy can (before > after):
    with `after` on both sides, a kernel starting `after - before` taps later
    reads exactly the asymmetric window."""
    if before > after:
        return None
    return after, after - before


def _convolution(step: _Convolution, images):
    import keras
    import torch
    import torch.nn.functional as functional

    conv = step.conv
    weight, bias = _folded_weights(step)
    explicit = step.padding or ((0, 0), (0, 0))
    pads = []
    for axis in (0, 1):
        size = images.shape[2 + axis] + sum(explicit[axis])
        _, same = output_size_and_padding(size, weight.shape[2 + axis], conv.strides[axis], conv.padding)
        pads.append((explicit[axis][0] + same[0], explicit[axis][1] + same[1]))
    wants_gradient = torch.is_grad_enabled() and (
        images.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    symmetric = [_symmetric_padding(*pair) for pair in pads]
    widened = None not in symmetric and any(zeros for _, zeros in symmetric)
    # A widened kernel beats a padded copy forward, but its backward ran slower
    # than the copy (docs/fast-paths.md): copy where a gradient is wanted.
    if None in symmetric or (widened and wants_gradient):
        images = functional.pad(images, (*pads[1], *pads[0]))
        padding = (0, 0)
    else:
        padding = tuple(pad for pad, _ in symmetric)
        front = tuple(zeros for _, zeros in symmetric)
        if widened:
            weight = functional.pad(weight, (front[1], 0, front[0], 0))
    groups = images.shape[1] if isinstance(conv, keras.layers.DepthwiseConv2D) else conv.groups
    fused = _fused_convolution_op()
    if not wants_gradient and fused is not None:
        attribute, scalars = _post_op(step)
        return fused(images, weight, bias, list(padding), list(conv.strides), [1, 1], groups,
                                  attribute, scalars, "")
    outputs = functional.conv2d(images, weight, bias, tuple(conv.strides), padding, 1, groups)
    if step.relu:
        # In place: the convolution's backward needs its inputs, not its outputs.
        outputs = _relu(outputs, step.relu_max, inplace=True)
    return outputs


def _post_op(step: _Convolution):
    if not step.relu:
        return "none", []
    if step.relu_max is None:
        return "relu", []
    return "hardtanh", [0.0, float(step.relu_max)]


def _relu(values, maximum, inplace=False):
    import torch.nn.functional as functional

    if maximum is None:
        return functional.relu(values, inplace=inplace)
    return functional.hardtanh(values, 0.0, float(maximum), inplace=inplace)


def _single_step(step: _Step, inputs):
    import torch.nn.functional as functional

    layer = step.layer
    if step.kind == "add":
        total = inputs[0]
        for other in inputs[1:]:
            total = total + other
        return total
    if step.kind == "relu":
        return _relu(inputs[0], layer.max_value)
    if step.kind == "pad":
        (top, bottom), (left, right) = layer.padding
        return functional.pad(inputs[0], (left, right, top, bottom))
    return functional.batch_norm(  # a frozen BatchNorm on its own
        inputs[0], layer.moving_mean.value, layer.moving_variance.value,
        layer.gamma.value if layer.scale else None, layer.beta.value if layer.center else None,
        False, 0.0, layer.epsilon,
    )


@functools.cache
def _fused_convolution_op():
    """oneDNN's convolution with a post-op (what torch.compile's CPU backend
    calls), or None where this PyTorch build lacks it."""
    try:
        import torch

        if not torch.backends.mkldnn.is_available():
            return None
        return torch.ops.mkldnn._convolution_pointwise
    except (ImportError, AttributeError, RuntimeError):
        return None

