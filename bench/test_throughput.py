"""Images per second: input pipeline, inference, frozen and fine-tuning
training steps. Compilation (the first call) is timed apart from the rounds."""

from __future__ import annotations

import itertools

import pytest

from bench.flops import forward_flops, train_step_flops
from bench.measure import random_batch, row_info, timed
from flowerkit import build_model, load_data
from flowerkit.data import iterate_batches


def _record(benchmark, kind, recipe, images_per_round, compile_seconds, flops):
    benchmark.extra_info.update(
        row_info(kind, recipe, images_per_round, compile_seconds, flops, benchmark.stats.stats.as_dict())
    )


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


def test_inference(benchmark, bench_config):
    recipe = bench_config.throughput_recipe()
    model = build_model(recipe)
    images, _ = random_batch(recipe)
    compile_seconds = timed(lambda: model.predict_on_batch(images))
    benchmark.pedantic(model.predict_on_batch, args=(images,), rounds=bench_config.rounds, iterations=1)
    _record(benchmark, "inference", recipe, len(images), compile_seconds, forward_flops(model))


@pytest.mark.parametrize("trainable_backbone", [False, True], ids=["frozen", "finetune"])
def test_train_step(benchmark, bench_config, trainable_backbone):
    recipe = bench_config.throughput_recipe(trainable_backbone=trainable_backbone)
    model = build_model(recipe)
    images, labels = random_batch(recipe)
    # train_on_batch returns Python floats: the step has finished on the device.
    compile_seconds = timed(lambda: model.train_on_batch(images, labels))
    benchmark.pedantic(model.train_on_batch, args=(images, labels), rounds=bench_config.rounds, iterations=1)
    kind = "train_step_finetune" if trainable_backbone else "train_step_frozen"
    _record(benchmark, kind, recipe, len(images), compile_seconds, train_step_flops(model))
