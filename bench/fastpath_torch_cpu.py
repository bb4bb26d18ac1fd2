"""PyTorch on CPU: flowerkit's torch paths against native torchvision, the
rounds interleaved in one process so that a busy machine slows all alike.

    KERAS_BACKEND=torch python -m bench.fastpath_torch_cpu [VARIANT ...]

VARIANTs (default: stock layers fused native):
  stock          Keras's own layers (`torch_layers: stock`)
  layers         per-layer native convolutions and BatchNorm, no fused backbone
  fused-noop     the fused backbone without oneDNN's convolution+ReLU6 post-op
  fused-copypad  the fused backbone with asymmetric padding as a padded copy
  fused          what `torch_layers: auto` runs (flowerkit.backends.torch_graph)
  fused-compile  the same under torch.compile (`jit_compile=True`)
  native         torchvision's MobileNetV2, channels-last, eager (bench.peers)
  onnx           the model's ONNX export in ONNX Runtime (inference only)

The benchmark's network: MobileNetV2 alpha 0.35, 224x224, batch 64 (the
mobilenet_v2_035_finetune recipe), random weights. MODES (inference,frozen,
finetune), ROUNDS (5), BATCH (64) and THREADS (PyTorch's default) are
environment variables; on a shared machine THREADS=1 keeps other processes
from stalling PyTorch's thread barriers. Prints one JSON
row per variant and mode: the median step, images per second, the first call
minus one step (compile time), and the speed relative to `native` when measured.
"""
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import torch  # noqa: E402

from bench.measure import random_batch  # noqa: E402
from bench.peers import NativeTorch, exported_model  # noqa: E402
from flowerkit import build_model, get_preset  # noqa: E402
from flowerkit.backends import allocator, torch_graph  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "5"))
MODES = os.environ.get("MODES", "inference,frozen,finetune").split(",")
DEFAULT_VARIANTS = ("stock", "layers", "fused", "native")


def recipe_for(mode, batch):
    return get_preset("mobilenet_v2_035_finetune").replace(
        weights=None, precision="float32", class_names=tuple(f"c{i}" for i in range(5)),
        batch_size=batch, trainable_backbone=mode == "finetune")


class _Patched:
    """Switches one part of the fused path off while a variant builds and runs."""

    def __init__(self, variant):
        self.variant = variant

    def __enter__(self):
        self.saved = (torch_graph.supports_fused_graph, torch_graph._fused_convolution_op,
                      torch_graph._symmetric_padding)
        if self.variant == "layers":
            torch_graph.supports_fused_graph = lambda layer: False
        if self.variant == "fused-noop":
            torch_graph._fused_convolution_op = lambda: None
        if self.variant == "fused-copypad":
            torch_graph._symmetric_padding = lambda before, after: None if before != after else (after, 0)

    def __exit__(self, *_):
        (torch_graph.supports_fused_graph, torch_graph._fused_convolution_op,
         torch_graph._symmetric_padding) = self.saved


def step_function(variant, mode, recipe, images, labels):
    if variant == "onnx":  # as `flowerkit export` writes it
        folder = Path(tempfile.mkdtemp(prefix="fastpath_onnx_"))
        exported, _ = exported_model(build_model(recipe), recipe, folder, "onnx")
        return lambda: exported(images)
    if variant == "native":
        native = NativeTorch(recipe)
        if mode == "inference":
            return lambda: native.predict(images)
        indices = labels.argmax(-1)
        return lambda: native.train_step(images, indices)
    torch_layers = "stock" if variant == "stock" else "native"
    with _Patched(variant):
        model = build_model(recipe.replace(torch_layers=torch_layers,
                                           jit_compile=variant.endswith("compile")))
    if mode == "inference":
        call = lambda: model.predict_on_batch(images)  # noqa: E731
    else:
        call = lambda: model.train_on_batch(images, labels)  # noqa: E731

    def run():
        with _Patched(variant):
            return call()
    return run


def measure(mode, variants, batch):
    if mode != "inference":
        variants = tuple(variant for variant in variants if variant != "onnx")
    recipe = recipe_for(mode, batch)
    images, labels = random_batch(recipe)
    steps = {variant: step_function(variant, mode, recipe, images, labels) for variant in variants}
    first = {}
    for variant, step in steps.items():
        start = time.perf_counter()
        step()
        first[variant] = time.perf_counter() - start
    times = {variant: [] for variant in variants}
    for _ in range(ROUNDS):
        for variant, step in steps.items():
            start = time.perf_counter()
            step()
            times[variant].append(time.perf_counter() - start)
    medians = {variant: statistics.median(values) for variant, values in times.items()}
    for variant in variants:
        row = {"mode": mode, "variant": variant, "batch": batch, "step_s": round(medians[variant], 3),
               "img_per_s": round(batch / medians[variant], 1),
               "compile_s": round(first[variant] - medians[variant], 1)}
        if "native" in medians:
            row["vs_native"] = round(medians["native"] / medians[variant], 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    allocator.configure()  # as train() and the CLI do
    if os.environ.get("THREADS"):
        torch.set_num_threads(int(os.environ["THREADS"]))
    print(json.dumps({"torch": torch.__version__, "keras": keras.__version__, "threads": torch.get_num_threads(),
                      "cpus": os.cpu_count(), "load_average": os.getloadavg()[0], "rounds": ROUNDS}), flush=True)
    for mode in MODES:
        measure(mode, tuple(sys.argv[1:]) or DEFAULT_VARIANTS, int(os.environ.get("BATCH", "64")))
