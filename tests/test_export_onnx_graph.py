"""The rewrites `flowerkit export` applies to an ONNX graph
(`flowerkit.exporting.onnx_graph`): each keeps the values, and ONNX Runtime
then runs the graph it would run for TensorFlow's file. Tiny hand-made graphs,
run in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from flowerkit.exporting.onnx_graph import (
    clips_from_max_min,
    drop_empty_trailing_inputs,
    global_pools_from_means,
)

pytestmark = pytest.mark.backend_independent


def _model(nodes, inputs, outputs, constants=(), opset=20):
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in constants])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model, **inputs):
    onnx.checker.check_model(model)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def runtime_operators(model, tmp_path) -> list[str]:
    """The op types ONNX Runtime runs after its own load-time optimisation."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]


def test_relu6_as_max_and_min_becomes_one_clip():
    """Max(x, 0) then Min(., 6) (jax2onnx's ReLU6) is rewritten as Clip(x, 0, 6),
    same values in ONNX Runtime; a Max read elsewhere too is left alone."""

    def relu6_graph(max_read_twice: bool):
        nodes = [helper.make_node("Max", ["x", "zero"], ["m"]), helper.make_node("Min", ["m", "six"], ["y"])]
        outputs = [("y", [5])]
        if max_read_twice:
            nodes.append(helper.make_node("Neg", ["m"], ["n"]))
            outputs.append(("n", [5]))
        return _model(nodes, [("x", [5])], outputs, [("zero", np.float32(0)), ("six", np.float32(6))])

    x = np.array([-3, 0, 2.5, 6, 9], dtype=np.float32)
    model = relu6_graph(max_read_twice=False)
    assert clips_from_max_min(model.graph) == 1
    assert [(n.op_type, list(n.input)) for n in model.graph.node] == [("Clip", ["x", "zero", "six"])]
    np.testing.assert_array_equal(_run(model, x=x)[0], np.clip(x, 0, 6))

    shared = relu6_graph(max_read_twice=True)
    assert clips_from_max_min(shared.graph) == 0
    assert [n.op_type for n in shared.graph.node] == ["Max", "Min", "Neg"]


def test_pad_with_an_empty_input_folds_into_the_conv_once_dropped(tmp_path):
    """torch.onnx's Pad(x, pads, "") before a convolution: ONNX Runtime keeps
    it as a copy; without the "" it folds it into the Conv. Same values; an
    empty input before a given one stays."""
    rng = np.random.default_rng(0)
    pads = np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int64)  # TensorFlow's "same": after only
    constants = [("pads", pads), ("w", rng.normal(size=(4, 2, 3, 3)).astype(np.float32)),
                 ("six", np.float32(6))]
    nodes = [helper.make_node("Pad", ["x", "pads", ""], ["padded"], mode="constant"),
             helper.make_node("Conv", ["padded", "w"], ["conv"], strides=[2, 2]),
             helper.make_node("Clip", ["conv", "", "six"], ["y"])]
    model = _model(nodes, [("x", [1, 2, 7, 7])], [("y", [1, 4, 4, 4])], constants)
    x = rng.normal(size=(1, 2, 7, 7)).astype(np.float32)
    expected = _run(model, x=x)[0]
    assert "Pad" in runtime_operators(model, tmp_path)

    assert drop_empty_trailing_inputs(model.graph) == 1

    assert [list(n.input) for n in model.graph.node] == [["x", "pads"], ["padded", "w"], ["conv", "", "six"]]
    assert "Pad" not in runtime_operators(model, tmp_path)
    np.testing.assert_allclose(_run(model, x=x)[0], expected, atol=1e-6)


@pytest.mark.parametrize("keepdims", [0, 1])
def test_mean_over_height_and_width_becomes_a_global_pool(keepdims):
    """ReduceMean over axes 1 and 2 of an NHWC tensor (Keras's global average
    pooling), axes as an input (opset 18+) or an attribute: GlobalAveragePool
    between Transposes, the same values and shape."""
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 5)).astype(np.float32)
    shape = [2, 1, 1, 5] if keepdims else [2, 5]
    as_input = _model([helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=keepdims)],
                      [("x", [None, 3, 4, 5])], [("y", shape)], [("axes", np.array([1, 2]))])
    as_attribute = _model([helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 1], keepdims=keepdims)],
                          [("x", [None, 3, 4, 5])], [("y", shape)], opset=13)
    for model in (as_input, as_attribute):
        assert global_pools_from_means(model) == 1

        assert "ReduceMean" not in [n.op_type for n in model.graph.node]
        assert "GlobalAveragePool" in [n.op_type for n in model.graph.node]
        assert not model.graph.initializer  # the axes, read by nothing else
        result = _run(model, x=x)[0]
        assert result.shape == tuple(shape)
        np.testing.assert_allclose(result, x.mean(axis=(1, 2), keepdims=bool(keepdims)), atol=1e-6)


def test_other_means_are_left_alone():
    """A mean over other axes, or over axes 1 and 2 of a 3-D tensor, stays."""
    over_channels = _model([helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)],
                           [("x", [2, 3, 4, 5])], [("y", [2, 3, 4])], [("axes", np.array([3]))])
    three_d = _model([helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)],
                     [("x", [2, 3, 4])], [("y", [2])], [("axes", np.array([1, 2]))])
    for model in (over_channels, three_d):
        assert global_pools_from_means(model) == 0
        assert [n.op_type for n in model.graph.node] == ["ReduceMean"]
