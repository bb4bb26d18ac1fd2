"""The format x backend table (`flowerkit.exporting.formats`): which pairs
export, with what, and the one-line errors for the rest. Keras-free."""

import pytest

from flowerkit import FlowerkitError
from flowerkit.exporting import formats
from flowerkit.exporting.formats import check_can_export, fixed_batch

pytestmark = pytest.mark.backend_independent  # run once, not per backend (tox.ini)


@pytest.mark.parametrize(
    "format, backend, quantize, message",
    [
        ("tf_saved_model", "torch", None, "tf_saved_model export is not available on the torch backend: use KERAS_BACKEND=tensorflow"),
        ("litert", "jax", None, "LiteRT export is not available on the jax backend"),
        ("litert", "torch", "int8", "int8 LiteRT export .* needs the tensorflow backend"),
        ("onnx", "torch", "int8", "is for format='litert' only"),
        ("coreml", "tensorflow", None, "Unknown export format 'coreml'"),
    ],
)
def test_pairs_outside_the_table_fail_in_one_line(format, backend, quantize, message):
    with pytest.raises(FlowerkitError, match=message):
        check_can_export(format, backend, quantize)


@pytest.mark.parametrize(
    "format, backend, message",
    [
        ("tf_saved_model", "jax", "tf_saved_model export on the jax backend needs TensorFlow \\(jax2tf\\): use KERAS_BACKEND=tensorflow"),
        ("onnx", "jax", "ONNX export on the jax backend needs onnx and jax2onnx: pip install 'flowerkit\\[onnx-jax\\]'"),
        ("litert", "torch", "LiteRT export on the torch backend needs litert-torch: pip install 'flowerkit\\[litert-torch\\]', or"),
    ],
)
def test_a_missing_converter_says_what_to_install(monkeypatch, format, backend, message):
    monkeypatch.setattr(formats, "installed", lambda module: False)
    with pytest.raises(FlowerkitError, match=message):
        check_can_export(format, backend)


def test_every_route_exports_when_its_converters_are_installed(monkeypatch):
    monkeypatch.setattr(formats, "installed", lambda module: True)
    for format, backend in formats.ROUTES:
        check_can_export(format, backend)
    check_can_export("litert", "tensorflow", "int8")


def test_litert_on_torch_exports_batch_one_and_the_rest_any_batch():
    assert fixed_batch("litert", "torch") == 1
    assert {fixed_batch(*pair) for pair in formats.ROUTES if pair != ("litert", "torch")} == {None}
    assert fixed_batch("litert", "jax") is None  # not exported at all
