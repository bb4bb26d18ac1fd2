"""Execution choices per backend and device."""

import keras
import pytest

from flowerkit.backends import devices as runtime
from flowerkit.backends import allocator, policy
from flowerkit.training.record import run_info


def test_jit_compile_auto_per_backend():
    """XLA: always on JAX; off for TensorFlow on a CPU (depthwise convolutions
    ~16x slower there); torch.compile off on PyTorch (slow to warm up)."""
    expected = {"jax": True, "tensorflow": runtime.device_kind() != "CPU", "torch": False}
    assert policy.resolve_jit_compile("auto") is expected[keras.backend.backend()]


@pytest.mark.parametrize("setting", [True, False])
def test_jit_compile_explicit_wins(setting):
    assert policy.resolve_jit_compile(setting) is setting


def test_run_info_names_backend_device_and_fast_path():
    from flowerkit import get_preset
    from flowerkit.backends.policy import AUTO_MICRO_BATCH

    info = run_info(get_preset("dense"))
    assert info["backend"] == keras.backend.backend()
    assert info["device"]["kind"] == runtime.device_kind() and info["device"]["count"] >= 1
    on_jax_cpu = keras.backend.backend() == "jax" and runtime.device_kind() == "CPU"
    assert info["depthwise_conv"] == ("shifted" if on_jax_cpu else "stock")
    assert info["pointwise_conv"] == ("matmul" if on_jax_cpu else "stock")
    assert info["micro_batch"] == 0  # "dense" trains no backbone
    fine_tuning = run_info(get_preset("mobilenet_v2_035_finetune"))
    assert fine_tuning["micro_batch"] == (AUTO_MICRO_BATCH if on_jax_cpu else 0)
    on_torch_cpu = keras.backend.backend() == "torch" and runtime.device_kind() == "CPU"
    assert info["torch_layers"] == ("native" if on_torch_cpu else "stock")
    batched = keras.backend.backend() in ("jax", "torch")
    assert info["affine_augmentation"] == ("batched" if batched else "stock")
    # The allocator setting, which train() makes, is reported where it applies
    # (PyTorch on a CPU) only.
    allocator.configure()
    info = run_info(get_preset("dense"))
    assert ("torch_keep_freed_memory" in info) == on_torch_cpu
    assert set(info["versions"]) >= {"python", "keras", "numpy"}


@pytest.mark.parametrize(
    "kind, capability, expected",
    [
        ("CPU", None, "float32"),
        ("TPU", None, "mixed_bfloat16"),
        ("GPU", (9, 0), "mixed_bfloat16"),  # H100
        ("GPU", (8, 0), "mixed_bfloat16"),  # A100
        ("GPU", (7, 5), "mixed_float16"),  # T4: no bfloat16 tensor cores
        ("GPU", (6, 0), "mixed_float16"),  # P100
    ],
)
def test_precision_auto_per_device(kind, capability, expected):
    assert policy.precision_for(kind, capability) == expected


def test_precision_auto_resolves_here_and_explicit_wins():
    expected = policy.precision_for(runtime.device_kind(), runtime.compute_capability())
    assert policy.resolve_precision("auto") == expected
    assert policy.resolve_precision("mixed_float16") == "mixed_float16"
    from flowerkit import get_preset

    assert run_info(get_preset("dense"))["precision"] == expected


def test_mixed_float16_model_gets_loss_scaling_and_float32_outputs():
    from flowerkit import build_model, get_preset

    recipe = get_preset("dense").replace(
        precision="mixed_float16", image_size=32, head_units=(8,), class_names=("a", "b")
    )
    model = build_model(recipe)
    assert model.dtype_policy.name == "mixed_float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
