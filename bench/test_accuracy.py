"""Final accuracy: train a recipe end to end on real photos through
`flowerkit.train`, as users do, and record accuracy and time."""

from __future__ import annotations

import time

import keras

import flowerkit
from bench.flops import train_step_flops
from bench.measure import run_info


class TimeToAccuracy(keras.callbacks.Callback):
    """Wall seconds from the start of training until val_accuracy >= target."""

    def __init__(self, target):
        super().__init__()
        self.target = target
        self.reached_after = None
        self.reached_epoch = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.reached_after is None and (logs or {}).get("val_accuracy", 0) >= self.target:
            self.reached_after = time.perf_counter() - self.start
            self.reached_epoch = epoch + 1


def test_final_accuracy(benchmark, bench_config, data_source):
    recipe = flowerkit.get_preset(bench_config.accuracy_preset).replace(precision=bench_config.precision)
    if bench_config.epochs:
        recipe = recipe.replace(epochs=bench_config.epochs)
    if bench_config.accuracy_batch_size:
        recipe = recipe.replace(batch_size=bench_config.accuracy_batch_size)
    clock = TimeToAccuracy(bench_config.target_accuracy)
    result = benchmark.pedantic(
        flowerkit.train,
        args=(recipe,),
        kwargs=dict(source=data_source, max_images=bench_config.max_images or None,
                    verbose=0, callbacks=[clock]),
        rounds=1,
        iterations=1,
    )
    metrics = result.metrics
    flops = train_step_flops(result.model)
    benchmark.extra_info.update(
        {
            **run_info("accuracy", result.recipe),
            "epochs": metrics["epochs"],
            "train_images": metrics["train_images"],
            "validation_images": metrics["validation_images"],
            "val_accuracy": metrics["val_accuracy"],
            "best_val_accuracy": metrics["best_val_accuracy"],
            "wall_seconds": metrics["wall_seconds"],
            "images_per_second": metrics["train_images_per_second"],
            "compile_seconds": None,  # inside the first epoch; see epoch_train_seconds
            "epoch_train_seconds": metrics["epoch_train_seconds"],
            "flops_per_image": flops,
            "gflops_per_second": flops * metrics["train_images_per_second"] / 1e9,
            "target_accuracy": bench_config.target_accuracy,
            "seconds_to_target": clock.reached_after,
            "epochs_to_target": clock.reached_epoch,
        }
    )
    assert metrics["val_accuracy"] >= bench_config.min_accuracy, (
        f"validation accuracy {metrics['val_accuracy']:.3f} is below the floor "
        f"{bench_config.min_accuracy} for {bench_config.size} size"
    )
