"""Execution choices per backend and device."""

import keras
import pytest

from flowerkit import runtime


def test_jit_compile_auto_per_backend():
    """XLA: always on JAX; off for TensorFlow on a CPU (depthwise convolutions
    ~16x slower there); torch.compile off on PyTorch (slow to warm up)."""
    expected = {"jax": True, "tensorflow": runtime.device_kind() != "CPU", "torch": False}
    assert runtime.resolve_jit_compile("auto") is expected[keras.backend.backend()]


@pytest.mark.parametrize("setting", [True, False])
def test_jit_compile_explicit_wins(setting):
    assert runtime.resolve_jit_compile(setting) is setting


def test_run_info_names_backend_device_and_fast_path():
    from flowerkit import get_preset

    info = runtime.run_info(get_preset("dense"))
    assert info["backend"] == keras.backend.backend()
    assert info["device"]["kind"] == runtime.device_kind() and info["device"]["count"] >= 1
    on_jax_cpu = keras.backend.backend() == "jax" and runtime.device_kind() == "CPU"
    assert info["depthwise_conv"] == ("shifted" if on_jax_cpu else "stock")
    on_torch_cpu = keras.backend.backend() == "torch" and runtime.device_kind() == "CPU"
    assert info["torch_layers"] == ("native" if on_torch_cpu else "stock")
    assert set(info["versions"]) >= {"python", "keras", "numpy"}
