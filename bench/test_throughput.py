"""Images per second: input pipeline, inference, frozen and fine-tuning
training steps, each for flowerkit and its peers (bench/peers.py: plain
Keras, native PyTorch; for inference also flowerkit's model exported to
ONNX Runtime and LiteRT) on the same network, batch and data; and the
machine's limits. Compilation (the first call; for the exported peers the
export too, as `export_seconds`) is timed apart from the rounds. Each row
also carries the bytes its network must move per image (bench.flops), for
the report's roofline."""

from __future__ import annotations

import importlib.metadata
import itertools

import pytest

from bench.flops import forward_bytes, forward_flops, train_step_bytes, train_step_flops
from bench.limits import matmul_gflops
from bench.measure import random_batch, row_info, run_info, timed
from bench.peers import EXPORTED, STOCK_FIELDS, NativeTorch, exported_model, plain_keras_model
from flowerkit import build_model, load_data
from flowerkit.backends import devices as runtime
from flowerkit.backends.policy import inference_engine
from flowerkit.data import iterate_batches
from flowerkit.errors import FlowerkitError
from flowerkit.exporting.engines import available_engines
from flowerkit.exporting.formats import fixed_batch


IMPLEMENTATIONS = ["flowerkit", "plain_keras", "native_torch"]


def _record(benchmark, kind, recipe, images_per_round, compile_seconds, flops, limits=None,
            implementation="flowerkit", **fields):
    benchmark.extra_info.update(
        row_info(kind, recipe, images_per_round, compile_seconds, flops, benchmark.stats.stats.as_dict(),
                 limits, implementation),
        copy_gb_per_second=(limits or {}).get("copy_gb_per_second"),
        **fields,
    )


class _Subject:
    """One implementation of the benchmark's network: `predict(images)` and
    `train_step(images, labels)` return host data; `recipe` is what it runs
    (the stock recipe for the peers); `fields` go into its row."""

    def __init__(self, implementation, recipe, folder=None):
        self.recipe, self.fields = recipe, {}
        if implementation in EXPORTED:
            batch = fixed_batch(EXPORTED[implementation], runtime.backend())
            if batch and batch != recipe.batch_size:  # minutes to convert, for a row that runs image by image
                pytest.skip(f"{implementation} on {runtime.backend()}: batch {batch} only (bench/test_export.py)")
            self.flops_model = build_model(recipe)
            try:
                self.predict, result = exported_model(self.flops_model, recipe, folder, EXPORTED[implementation])
            except FlowerkitError as error:  # a format this backend or environment lacks
                pytest.skip(str(error))
            self.fields = dict(runtime=self.predict.runtime, export_seconds=result.export_seconds,
                               jit_compile=False)
            return
        if implementation == "native_torch":
            if runtime.backend() != "torch":
                pytest.skip("native PyTorch reference: in the torch backend's run")
            try:
                native = NativeTorch(recipe)
            except importlib.metadata.PackageNotFoundError:
                pytest.skip("native PyTorch reference: torchvision is not installed")
            except ValueError as error:  # another network than the peers know
                pytest.skip(str(error))
            self.predict, self.train_step = native.predict, native.train_step
            self.flops_model = build_model(recipe.replace(**STOCK_FIELDS), compile=False)
            self.fields = dict(torchvision=native.version, jit_compile=False)
            return
        if implementation == "plain_keras":
            self.recipe = recipe.replace(**STOCK_FIELDS, precision="float32")
            try:
                model = plain_keras_model(recipe)
            except ValueError as error:
                pytest.skip(str(error))
            self.fields = dict(jit_compile=model.jit_compile)
        else:
            model = build_model(recipe)
        self.flops_model = model
        self.predict, self.train_step = model.predict_on_batch, model.train_on_batch


def test_input_pipeline(benchmark, bench_config, data_source):
    """Decode + crop + resize + batch real JPEGs: the training subset that
    `flowerkit.train` feeds to `fit`."""
    recipe = bench_config.throughput_recipe(class_names=())
    batches = bench_config.pipeline_batches
    images = recipe.batch_size * batches
    # max_images over the whole source: about `images` of them land in training.
    train = load_data(recipe, data_source, subsets=("train",),
                      max_images=round(images / (1 - recipe.validation_split))).train

    def one_pass():
        return [x.shape for x, _ in itertools.islice(iterate_batches(train.dataset), batches)]

    compile_seconds = timed(one_pass)  # first pass: thread pools, file cache
    benchmark.pedantic(one_pass, rounds=bench_config.rounds, iterations=1)
    _record(benchmark, "input_pipeline", recipe, min(len(train), images), compile_seconds, None)


@pytest.mark.parametrize("implementation", [*IMPLEMENTATIONS, *EXPORTED])
def test_inference(benchmark, bench_config, machine_limits, implementation, tmp_path):
    subject = _Subject(implementation, bench_config.throughput_recipe(), tmp_path)
    images, _ = random_batch(subject.recipe)
    compile_seconds = timed(lambda: subject.predict(images))
    benchmark.pedantic(subject.predict, args=(images,), rounds=bench_config.rounds, iterations=1)
    if implementation == "flowerkit":  # the engine `flowerkit predict` runs this model on here
        subject.fields["auto_engine"] = inference_engine(runtime.backend(), runtime.device_kind(),
                                                         available_engines())
    _record(benchmark, "inference", subject.recipe, len(images), compile_seconds,
            forward_flops(subject.flops_model), machine_limits, implementation,
            bytes_per_image=forward_bytes(subject.flops_model), **subject.fields)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("trainable_backbone", [False, True], ids=["frozen", "finetune"])
def test_train_step(benchmark, bench_config, machine_limits, trainable_backbone, implementation):
    subject = _Subject(implementation, bench_config.throughput_recipe(trainable_backbone=trainable_backbone))
    images, labels = random_batch(subject.recipe)
    # Every train step returns Python floats: the step has finished on the device.
    compile_seconds = timed(lambda: subject.train_step(images, labels))
    benchmark.pedantic(subject.train_step, args=(images, labels), rounds=bench_config.rounds, iterations=1)
    kind = "train_step_finetune" if trainable_backbone else "train_step_frozen"
    _record(benchmark, kind, subject.recipe, len(images), compile_seconds,
            train_step_flops(subject.flops_model), machine_limits, implementation,
            bytes_per_image=train_step_bytes(subject.flops_model), **subject.fields)


def test_machine_limits(benchmark, bench_config, machine_limits):
    """The run's float32 matmul peak (backend and numpy) and copy bandwidth,
    as a row of its own; one more timed backend product for pytest-benchmark."""
    recipe = bench_config.throughput_recipe()
    benchmark.pedantic(lambda: matmul_gflops(bench_config.matmul_size, repeats=1), rounds=1, iterations=1)
    benchmark.extra_info.update({**run_info("machine_limits", recipe), **machine_limits})
