"""PyTorch on CPU: Keras's stock layers vs flowerkit's native channels_last
calls (`torch_layers`), eager vs torch.compile (`jit_compile`), threads.

    KERAS_BACKEND=torch python bench/fastpath_torch_cpu.py [CONFIG ...]

CONFIG is LAYERS-JIT-THREADS, e.g. stock-eager-0, native-eager-0,
native-compile-0, native-eager-1 (threads 0: PyTorch's default). Model:
MobileNetV2 alpha 1.0, 192x192, batch 32, random weights, BatchNorm frozen
as flowerkit runs it. Prints one JSON row per measurement: the median step
(ROUNDS, default 5) and the first call minus one step as compile time, with
how many steps that compile time takes to pay back against eager.
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import torch

import keras
from flowerkit.backends.fastpaths import apply_fast_paths

ROUNDS = int(os.environ.get("ROUNDS", "5"))
DEFAULT_CONFIGS = ("stock-eager-0", "native-eager-0", "native-eager-1", "native-compile-0")


def timed(function, rounds=ROUNDS):
    start = time.perf_counter()
    function()
    first = time.perf_counter() - start
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return median, first - median


def build(mode):
    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(
        input_shape=(192, 192, 3), alpha=1.0, include_top=False, weights=None)
    backbone.trainable = mode == "train_finetune"
    for layer in backbone.layers:  # flowerkit keeps BatchNorm frozen
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    inputs = keras.Input((192, 192, 3))
    features = keras.layers.GlobalAveragePooling2D()(backbone(inputs, training=False))
    return keras.Model(inputs, keras.layers.Dense(5)(features))


def main(configs):
    x = np.random.default_rng(0).random((32, 192, 192, 3), dtype=np.float32) * 2 - 1
    y = np.arange(32) % 5
    default_threads = torch.get_num_threads()
    eager_step = {}
    for config in configs:
        layers, jit, threads = config.split("-")
        torch.set_num_threads(int(threads) or default_threads)
        for mode in ("inference", "train_frozen", "train_finetune"):
            net = build(mode)
            record = apply_fast_paths(net, "stock", layers)
            net.compile(optimizer="adam", jit_compile=jit == "compile",
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            if mode == "inference":
                step = lambda: net.predict_on_batch(x)  # noqa: E731
            else:
                step = lambda: net.train_on_batch(x, y)  # noqa: E731
            seconds, compile_s = timed(step)
            row = {"model": "MobileNetV2 alpha 1.0 192x192 batch 32", "mode": mode,
                   "torch_layers": record["torch_layers"], "native_layers": record["native_layers"],
                   "jit_compile": jit == "compile", "threads": torch.get_num_threads(),
                   "step_s": round(seconds, 3), "img_per_s": round(32 / seconds, 1),
                   "compile_s": round(compile_s, 1)}
            if jit == "eager":
                eager_step[(layers, threads, mode)] = seconds
            elif (layers, threads, mode) in eager_step:
                saved = eager_step[(layers, threads, mode)] - seconds
                row["payback_steps"] = round(compile_s / saved) if saved > 0 else None  # None: never
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    print(json.dumps({"torch": torch.__version__, "keras": keras.__version__,
                      "threads": torch.get_num_threads(), "cpus": os.cpu_count()}), flush=True)
    main(tuple(sys.argv[1:]) or DEFAULT_CONFIGS)
