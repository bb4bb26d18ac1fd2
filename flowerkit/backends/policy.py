"""The "auto" policy tables: which implementation, precision and compile
setting each backend and device gets. Every choice here is a pure function
of names ("jax", "CPU", ...) except the `resolve_*` helpers, which ask
`flowerkit.backends.devices` for the current ones. The measurements behind
each choice are in bench/results/ (and docs/fast-paths.md)."""

from __future__ import annotations

from flowerkit.backends.devices import backend, compute_capability, device_kind
from flowerkit.config.recipe import check_choice


def depthwise_implementation(backend: str, device_kind: str, setting: str = "auto") -> str:
    """Which depthwise convolution to use: "shifted" or "stock".

    "auto" picks "shifted" only on JAX with CPU devices, where it was
    measured to win; XLA:GPU/TPU, TensorFlow and PyTorch have fast native
    depthwise kernels. An explicit "shifted" or "stock" wins over the policy.
    """
    check_choice("depthwise_conv", setting)
    if setting != "auto":
        return setting
    if backend.lower() == "jax" and device_kind.upper() == "CPU":
        return "shifted"
    return "stock"


# Rows per micro-batch of a JAX fine-tuning step on CPUs (see
# `jax_kernels.micro_batched_train_step`): 4 ran fastest, then 2, 8, 16.
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


def pointwise_implementation(backend: str, device_kind: str, setting: str = "auto") -> str:
    """How 1x1 convolutions compute: "matmul" or "stock". "auto" picks
    "matmul" on JAX with CPU devices, where it was measured to win."""
    check_choice("pointwise_conv", setting)
    if setting != "auto":
        return setting
    return "matmul" if backend.lower() == "jax" and device_kind.upper() == "CPU" else "stock"


def torch_layers_implementation(backend: str, device_kind: str, setting: str = "auto") -> str:
    """How PyTorch runs convolutions and frozen BatchNorm: "native" or "stock".

    "auto" picks "native" on PyTorch with a CPU, where it was measured to win
    (flowerkit.backends.torch_kernels); GPUs keep the stock layers until measured.
    """
    check_choice("torch_layers", setting)
    if backend.lower() != "torch":
        return "stock"
    if setting != "auto":
        return setting
    return "native" if device_kind.upper() == "CPU" else "stock"


def affine_implementation(backend: str, setting: str = "auto") -> str:
    """How RandomZoom, RandomRotation and RandomTranslation resample:
    "batched" (`flowerkit.backends.affine`) or "stock". "auto" and "batched"
    pick it on JAX and PyTorch, whose stock resampling goes image by image
    or channel by channel; TensorFlow's own kernel is batched already."""
    check_choice("affine_augmentation", setting)
    if backend.lower() not in ("jax", "torch"):
        return "stock"
    return "stock" if setting == "stock" else "batched"


def resolve_precision(setting: str) -> str:
    """The recipe's precision, with "auto" resolved for the current device."""
    if setting != "auto":
        return setting
    return precision_for(device_kind(), compute_capability())


def precision_for(kind: str, capability: tuple[int, int] | None = None) -> str:
    """Mixed bfloat16 on TPUs and on GPUs with bfloat16 tensor cores (compute
    capability 8.0+, Ampere on); mixed float16 on older GPUs (Keras adds loss
    scaling for it); float32 on CPUs, where lower precision is no faster."""
    if kind == "TPU":
        return "mixed_bfloat16"
    if kind == "GPU":
        return "mixed_bfloat16" if capability is None or capability >= (8, 0) else "mixed_float16"
    return "float32"


def resolve_jit_compile(setting) -> bool:
    """The recipe's jit_compile, with "auto" resolved per backend and device.

    JAX always traces with XLA; PyTorch's torch.compile is slow to warm up and
    not yet a win for these models; XLA on TensorFlow pays off on GPU/TPU but
    runs depthwise convolutions ~16x slower on CPU.
    """
    if setting != "auto":
        return bool(setting)
    name = backend()
    if name == "jax":
        return True
    if name == "tensorflow":
        return device_kind() != "CPU"
    return False


def pipeline_for(backend_name: str) -> str:
    """The image pipeline "auto" picks: tf.data on TensorFlow, where Keras
    feeds it natively; Pillow worker threads elsewhere (no TensorFlow)."""
    return "tf" if backend_name == "tensorflow" else "python"


def allows_jit_for_affine_layers(backend_name: str) -> bool:
    """Whether RandomRotation/Zoom/Translation may be marked XLA-compilable:
    on JAX their `affine_transform` is plain jax.numpy and compiles, while
    Keras marks them not compilable (TensorFlow's projective transform kernel
    is not), which made `compile` drop jit for the whole model."""
    return backend_name == "jax"


def keeps_freed_memory(backend_name: str, device: str) -> bool:
    """Whether glibc should keep freed memory (`flowerkit.backends.allocator`):
    PyTorch on a CPU, which allocates every activation through malloc."""
    return backend_name == "torch" and device.upper() == "CPU"


def keeps_compiled_programs(backend_name: str) -> bool:
    """Whether compiled programs are kept between runs
    (`flowerkit.backends.compile_cache`): JAX, which compiles every
    operation, the random draws of each weight's initial value included.
    TensorFlow and PyTorch run those eagerly, without compiling."""
    return backend_name == "jax"


# Inference engines per backend on a CPU, fastest first (after Keras itself,
# which every run has), from one quiet run of bench/engine_table.py per backend
# (bench/results/engines-*.json, batches 1-64): each backend's ONNX export ran
# 2.0-6.8x its Keras model at every batch (JAX's too, and it served 1.2-2x the
# requests: bench/results/jax-AMD_EPYC-serve.json). LiteRT, faster for one
# image, is left out: it converts in 11-20 s (ONNX 2-5 s) and was not faster
# at 64 (docs/fast-paths.md).
ENGINES = ("keras", "onnx", "litert")
FASTER_ENGINES_ON_CPU = {"tensorflow": ("onnx",), "jax": ("onnx",), "torch": ("onnx",)}


def inference_engine(backend: str, device_kind: str, available=(), setting: str = "auto") -> str:
    """Which engine runs `predict`, `evaluate` and `serve`: "keras" (the
    backend's own), or "onnx"/"litert" on an export cached beside the model.
    "auto" picks the first of `FASTER_ENGINES_ON_CPU` that is `available` on
    a CPU, "keras" on GPUs and TPUs; a named engine is forced."""
    if setting not in ("auto", *ENGINES):
        raise ValueError(f"Unknown engine {setting!r}: use one of auto, {', '.join(ENGINES)}.")
    if setting != "auto":
        return setting
    if device_kind.upper() != "CPU":
        return "keras"
    return next((engine for engine in FASTER_ENGINES_ON_CPU.get(backend.lower(), ()) if engine in available),
                "keras")
