"""Validation accuracy of a trained run at other input sizes than it was
trained at, each with and without flip test-time augmentation: a network
trained on random zooms sees objects larger than the validation photos show
them at its training size, so it may do better on photos shown a little
larger ("FixRes", Touvron et al. 2019). Chooses a preset's evaluation size
on the validation photos of its own split only.

    KERAS_BACKEND=tensorflow python -m bench.eval_sizes runs/X/model.keras --sizes 340,380

The same weights at each size: the network is built again from the run's
recipe at that size (convolutions and pooling do not depend on it). Rows go
to bench/results/eval_sizes-<backend>.json, keyed by run and size."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

from bench.report import save_row
from flowerkit.data.loading import load_data
from flowerkit.data.pipelines import build_dataset
from flowerkit.inference.loading import load_run
from flowerkit.inference.predicting import predict_dataset
from flowerkit.model import build_model
from tests.helpers import SHARED

RESULTS = Path(__file__).parent / "results"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model.keras of a run (recipe.json beside it)")
    parser.add_argument("--sizes", required=True, help="input sizes, comma-separated")
    parser.add_argument("--data", default=str(SHARED / "data/flower_photos"))
    parser.add_argument("--output", default=str(RESULTS / f"eval_sizes-{keras.backend.backend()}.json"))
    args = parser.parse_args(argv)
    run = load_run(args.model)
    if run.recipe.head == "flatten":
        raise SystemExit(f"{args.model}: a Flatten head takes one input size only; "
                         "eval_sizes needs a pooled head (head: gap).")
    sizes = [run.image_size] + [int(size) for size in args.sizes.split(",") if int(size) != run.image_size]
    validation = load_data(run.recipe, args.data, subsets=("validation",), quiet=True).validation
    for size in sizes:
        started = time.perf_counter()
        recipe = run.recipe.replace(image_size=size, weights=None)
        model = run.model if size == run.image_size else resized_model(run.model, recipe)
        dataset, state = build_dataset(validation.index, size, recipe.batch_size, shuffle=False)
        predictions = predict_dataset(model, dataset, tta="flip", state=state)
        row = {
            "run": str(Path(args.model).resolve().parent.name),
            "recipe": run.recipe.name,
            "backbone": run.recipe.backbone,
            "trained_size": run.image_size,
            "image_size": size,
            "validation_images": len(predictions.labels),
            "val_accuracy": float(np.mean(predictions.predicted == predictions.labels)),
            "val_accuracy_flip_tta": float(np.mean(
                predictions.tta_probabilities.argmax(axis=1) == predictions.labels)),
            "seconds": time.perf_counter() - started,
        }
        print(json.dumps(row), flush=True)
        save_row(args.output, row, key=("run", "image_size"))


def resized_model(trained: keras.Model, recipe) -> keras.Model:
    """`trained`'s weights in the network `recipe` builds (at its image size)."""
    model = build_model(recipe, num_classes=trained.output_shape[-1], compile=False)
    model.set_weights(trained.get_weights())
    return model


if __name__ == "__main__":
    main()
