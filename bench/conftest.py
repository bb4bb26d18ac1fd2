"""Knobs, shared fixtures and JSON output for `pytest bench --benchmark-only`.

Every knob is a command-line option or an environment variable:

    --bench-size tiny|smoke|full FLOWERKIT_BENCH_SIZE     (default: smoke; tiny: bench/gpu.sh --dry-run)
    --bench-preset NAME          FLOWERKIT_BENCH_PRESET   throughput recipe (mobilenet_v2_035_finetune)
    --bench-backbone NAME        FLOWERKIT_BENCH_BACKBONE override the recipe's backbone
    --bench-image-size N         FLOWERKIT_BENCH_IMAGE_SIZE
    --bench-batch-size N         FLOWERKIT_BENCH_BATCH_SIZE throughput batch (full: the recipe's
                                 on a CPU, 256 on a GPU/TPU; bench.measure)
    --bench-rounds N             FLOWERKIT_BENCH_ROUNDS   timed rounds per benchmark
    --bench-precision P          FLOWERKIT_BENCH_PRECISION auto|float32|mixed_bfloat16|mixed_float16
    --bench-accuracy-preset A,B  FLOWERKIT_BENCH_ACCURACY_PRESET presets trained for accuracy
                                 (smoke: mobilenet_v2_035; full: it and the fine-tuning presets)
    --bench-epochs N             FLOWERKIT_BENCH_EPOCHS   accuracy run epochs
    --bench-max-images N         FLOWERKIT_BENCH_MAX_IMAGES accuracy run subset (0 = all)
    --bench-accuracy-batch-size N FLOWERKIT_BENCH_ACCURACY_BATCH_SIZE
    --bench-target-accuracy X    FLOWERKIT_BENCH_TARGET_ACCURACY
    --bench-data SOURCE          FLOWERKIT_BENCH_DATA     (../shared/data/flower_photos)
    --bench-min-accuracy X       FLOWERKIT_BENCH_MIN_ACCURACY the accuracy run fails below this

The private Keras cache (KERAS_HOME) is set up by the repository's root
conftest.py, as for the tests.

Without --benchmark-json, results go to
bench/results/{backend}-{device}-{precision}-{size}.json. The session ends
with a short table of its rows (pytest_terminal_summary).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from tests.helpers import REPO, REQUIRE_SHARED, SHARED

SIZES = {
    # Every code path in seconds: bench/gpu.sh --dry-run (tests/test_gpu_dry_run.py).
    "tiny": dict(image_size=32, batch_size=4, rounds=1, epochs=1, max_images=40,
                 accuracy_batch_size=8, target_accuracy=0.0, min_accuracy=0.0,
                 accuracy_preset="mobilenet_v2_035", pipeline_batches=1,
                 matmul_size=256, copy_megabytes=8),
    # Under two minutes per backend on a 2-core CPU.
    "smoke": dict(image_size=96, batch_size=8, rounds=3, epochs=2, max_images=300,
                  accuracy_batch_size=16, target_accuracy=0.6, min_accuracy=0.6,
                  accuracy_preset="mobilenet_v2_035",
                  pipeline_batches=4, matmul_size=1024, copy_megabytes=64),
    # Measures properly: the recipes' own sizes, full data.
    "full": dict(image_size=None, batch_size=None, rounds=10, epochs=None, max_images=0,
                 accuracy_batch_size=None, target_accuracy=0.85, min_accuracy=0.85,
                 accuracy_preset="mobilenet_v2_035,mobilenet_v2_035_finetune,efficientnet_lite0_finetune,"
                 "efficientnet_lite2,efficientnet_lite2_finetune",
                 pipeline_batches=20, matmul_size=2048, copy_megabytes=256),
}

KNOBS = {
    "size": ("smoke", str),
    # MobileNetV2 alpha 0.35 at 224, flip augmentation, linear head: the
    # recipe that fine-tunes, and the network of the peers (bench/peers.py).
    "preset": ("mobilenet_v2_035_finetune", str),
    "backbone": (None, str),
    "image_size": (None, int),
    "batch_size": (None, int),
    "rounds": (None, int),
    "precision": ("auto", str),
    "accuracy_preset": (None, str),
    "epochs": (None, int),
    "max_images": (None, int),
    "accuracy_batch_size": (None, int),
    "target_accuracy": (None, float),
    "min_accuracy": (None, float),
    "data": (str(SHARED / "data/flower_photos"), str),
}


def pytest_addoption(parser):
    group = parser.getgroup("flowerkit benchmarks")
    for name, (_, kind) in KNOBS.items():
        group.addoption("--bench-" + name.replace("_", "-"), type=kind, default=None)


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    size: str
    preset: str
    backbone: str | None
    image_size: int | None
    batch_size: int | None
    rounds: int
    precision: str
    accuracy_preset: str
    epochs: int | None
    max_images: int
    accuracy_batch_size: int | None
    target_accuracy: float
    min_accuracy: float
    data: str
    pipeline_batches: int
    matmul_size: int
    copy_megabytes: int

    def throughput_recipe(self, **changes):
        """The recipe under test, with random weights (pure speed)."""
        from flowerkit import get_preset

        recipe = get_preset(self.preset)
        overrides = dict(weights=None, precision=self.precision, class_names=tuple(f"c{i}" for i in range(5)))
        if self.backbone:
            overrides.update(backbone=self.backbone, backbone_kwargs={})
        if self.image_size:
            overrides["image_size"] = self.image_size
        if self.batch_size:
            overrides["batch_size"] = self.batch_size
        else:  # the full size on a GPU/TPU: a batch that keeps the device busy
            from bench.measure import throughput_batch_size
            from flowerkit.backends import devices as runtime

            overrides["batch_size"] = throughput_batch_size(recipe.batch_size, runtime.device_kind())
        return recipe.replace(**{**overrides, **changes})


def _knob(config, name):
    default, kind = KNOBS[name]
    value = config.getoption("--bench-" + name.replace("_", "-"))
    if value is None and f"FLOWERKIT_BENCH_{name.upper()}" in os.environ:
        value = kind(os.environ[f"FLOWERKIT_BENCH_{name.upper()}"])
    return default if value is None else value


def read_config(config) -> BenchConfig:
    size = _knob(config, "size")
    if size not in SIZES:
        raise pytest.UsageError(f"--bench-size must be one of {list(SIZES)}, got {size!r}")
    values = {name: _knob(config, name) for name in KNOBS}
    for name, default in SIZES[size].items():
        if values.get(name) is None:
            values[name] = default
    return BenchConfig(**values)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # Default JSON output named by backend, device and precision (timm style).
    if getattr(config.option, "benchmark_json", "absent") is None:
        import keras

        from flowerkit.backends import devices as runtime
        from flowerkit.backends import policy

        bench = read_config(config)
        device = re.sub(r"[^A-Za-z0-9.]+", "_", runtime.device_summary()["name"]).strip("_")
        precision = policy.resolve_precision(bench.precision)
        name = f"{keras.backend.backend()}-{device}-{precision}-{bench.size}.json"
        path = REPO / "bench" / "results" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        config.option.benchmark_json = str(path)


@pytest.fixture(scope="session", autouse=True)
def _process_settings():
    """The process-wide allocator choice `flowerkit.train()` and the CLI
    make, so the rows time what users run (PyTorch on a CPU: ~3x per step)."""
    from flowerkit.backends import allocator

    allocator.configure()


@pytest.fixture(scope="session")
def bench_config(pytestconfig) -> BenchConfig:
    return read_config(pytestconfig)


@pytest.fixture(scope="session")
def data_source(bench_config) -> str | None:
    """The photos to read: ../shared's copy here, tf_flowers elsewhere."""
    if Path(bench_config.data).is_dir():
        return bench_config.data
    if REQUIRE_SHARED:
        pytest.fail(f"benchmark data not found: {bench_config.data}")
    return None  # tf_flowers through the Keras cache


@pytest.fixture(scope="session")
def machine_limits(bench_config) -> dict:
    """This machine's matmul peak and copy bandwidth, measured once per run
    (bench.limits); every throughput row states its fraction of the peak."""
    from bench.limits import measure

    return measure(bench_config.matmul_size, bench_config.copy_megabytes)


ROWS = pytest.StashKey[list]()


@pytest.fixture(autouse=True)
def _collect_row(request):
    """Keeps each benchmark's row for the summary at the end of the session."""
    yield
    benchmark = getattr(request.node, "funcargs", {}).get("benchmark")
    if benchmark is not None:
        info = benchmark.extra_info
        if info.get("benchmark"):
            request.config.stash.setdefault(ROWS, []).append(dict(info))


def pytest_terminal_summary(terminalreporter, config):
    rows = config.stash.get(ROWS, [])
    if rows:
        from bench.summary import summary_lines

        terminalreporter.section("flowerkit benchmarks")
        for line in summary_lines(rows):
            terminalreporter.write_line(line)
