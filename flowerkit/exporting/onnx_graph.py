"""Rewrites of an exported ONNX graph into the forms ONNX Runtime optimises,
each computing the same values. The converters of the three backends write
one network three ways; these bring the PyTorch and JAX files to the graph
ONNX Runtime runs for TensorFlow's (docs/fast-paths.md, ONNX by backend).

Needs `onnx` only (no Keras, no runtime).
"""

from __future__ import annotations

import collections


def tune_for_onnxruntime(model) -> dict:
    """Applies every rewrite to `model` (an `onnx.ModelProto`, changed in
    place); returns how many nodes each one changed."""
    graph = model.graph
    return {
        "clips_from_max_min": clips_from_max_min(graph),
        "empty_trailing_inputs": drop_empty_trailing_inputs(graph),
        "global_pools_from_means": global_pools_from_means(model),
    }


def clips_from_max_min(graph) -> int:
    """Rewrites Max(x, low) then Min(., high), low <= high scalar constants,
    the Max read by nothing else, as the one node Clip(x, low, high), the same
    values; returns how many. jax2onnx writes ReLU6 so, and ONNX Runtime fuses
    a Clip into the convolution before it but not a Max and a Min."""
    scalars = {name: value for name, value in _constants(graph).items() if not value.shape}
    readers = _readers(graph)
    producers = {output: node for node in graph.node for output in node.output}
    merged = set()
    for node in graph.node:
        inner = producers.get(node.input[0]) if node.op_type == "Min" and len(node.input) == 2 else None
        if (inner is None or inner.op_type != "Max" or len(inner.input) != 2 or readers[inner.output[0]] != 1
                or inner.input[1] not in scalars or node.input[1] not in scalars
                or scalars[inner.input[1]] > scalars[node.input[1]]):
            continue
        node.op_type = "Clip"
        node.input[:] = [inner.input[0], inner.input[1], node.input[1]]
        merged.add(inner.output[0])
    _replace_nodes(graph, [node for node in graph.node if not (node.op_type == "Max" and node.output[0] in merged)])
    return len(merged)


def drop_empty_trailing_inputs(graph) -> int:
    """Drops the trailing inputs named "" (an optional input left out, which
    ONNX lets a file say either way) from every node; returns how many nodes
    changed. torch.onnx writes Pad(x, pads, ""), and ONNX Runtime folds a Pad
    into the convolution after it only when no input is "": MobileNetV2's
    4 strided depthwise convolutions each kept a Pad between NCHWc reorders."""
    changed = 0
    for node in graph.node:
        kept = len(node.input)
        while kept and not node.input[kept - 1]:
            kept -= 1
        if kept < len(node.input):
            del node.input[kept:]
            changed += 1
    return changed


def global_pools_from_means(model) -> int:
    """Rewrites ReduceMean over axes 1 and 2 of a 4-D channels-last tensor
    (Keras's GlobalAveragePooling2D) as Transpose to NCHW, GlobalAveragePool
    and Flatten (or a Transpose back, with keepdims); returns how many.
    ONNX Runtime then cancels the Transpose against the one before it and
    pools in its blocked layout, with the last ReLU6 fused into the Conv;
    the ReduceMean made it reorder the whole last feature map to NHWC first."""
    from onnx import helper, shape_inference

    graph = model.graph
    ranks = _ranks(shape_inference.infer_shapes(model).graph)
    constants = _constants(graph)
    nodes, axes_names, rewritten = [], [], 0
    for node in graph.node:
        if node.op_type != "ReduceMean" or ranks.get(node.input[0]) != 4 or _axes(node, constants) != [1, 2]:
            nodes.append(node)
            continue
        keepdims = _attribute(node, "keepdims", 1)
        source, output = node.input[0], node.output[0]
        nchw, pooled = f"{output}/nchw", f"{output}/pooled"
        nodes += [
            helper.make_node("Transpose", [source], [nchw], name=f"{node.name}/to_nchw", perm=[0, 3, 1, 2]),
            helper.make_node("GlobalAveragePool", [nchw], [pooled], name=f"{node.name}/pool"),
            helper.make_node("Transpose", [pooled], [output], name=f"{node.name}/to_nhwc", perm=[0, 2, 3, 1])
            if keepdims else helper.make_node("Flatten", [pooled], [output], name=f"{node.name}/flatten", axis=1),
        ]
        axes_names.extend(node.input[1:])
        rewritten += 1
    _replace_nodes(graph, nodes)
    _drop_unread(graph, axes_names)
    return rewritten


def _drop_unread(graph, names) -> None:
    """Drops the initializers and Constant nodes among `names` that nothing
    (no node, no graph output) reads any more; graph inputs stay."""
    readers = _readers(graph)
    unread = set(names) - set(readers) - {graph_input.name for graph_input in graph.input}
    for tensor in [tensor for tensor in graph.initializer if tensor.name in unread]:
        graph.initializer.remove(tensor)
    _replace_nodes(graph, [node for node in graph.node
                           if not (node.op_type == "Constant" and node.output[0] in unread)])


def _axes(node, constants) -> list[int] | None:
    """A ReduceMean's axes, from its attribute (opset < 18) or its second
    input (a constant); None when they are not known."""
    if len(node.input) > 1 and node.input[1]:
        value = constants.get(node.input[1])
        return None if value is None else sorted(int(axis) for axis in value.reshape(-1))
    axes = _attribute(node, "axes", None)
    return None if axes is None else sorted(axes)


def _attribute(node, name: str, default):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _constants(graph) -> dict:
    """name -> NumPy value of every initializer and Constant node's tensor."""
    from onnx import numpy_helper

    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _ranks(graph) -> dict:
    """name -> rank of every value whose shape inference knows it."""
    infos = [*graph.input, *graph.value_info, *graph.output]
    return {info.name: len(info.type.tensor_type.shape.dim) for info in infos
            if info.type.tensor_type.HasField("shape")}


def _readers(graph) -> collections.Counter:
    readers = collections.Counter(name for node in graph.node for name in node.input)
    readers.update(output.name for output in graph.output)
    return readers


def _replace_nodes(graph, nodes) -> None:
    nodes = list(nodes)
    del graph.node[:]
    graph.node.extend(nodes)
