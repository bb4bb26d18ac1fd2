"""Tunes the frozen `efficientnet_lite2` preset on validation only: one
feature pass per image size (the costly part, cached under KERAS_HOME), then
head settings trained on the cached features by phase 1 of `flowerkit.train`
(`measure`), in seconds each, over several duplicate-aware splits (seeds):
a new split gathers its features from the caches of the others.
Flip test-time augmentation is measured on the seed-42 split (the preset's)
from the validation photos' mirror-image features, computed once per size.

    KERAS_BACKEND=jax python bench/tune_lite2.py --sizes 300,260

Each row (size, setting, seed: final and best-epoch validation accuracy,
with flip TTA on seed 42) is added to bench/results/tune_lite2-<backend>.json
as soon as it is measured; rows already there are not measured again, so an
interrupted sweep goes on where it stopped. The Keras cache defaults to a folder of its own in the temporary folder, kept
between runs so that the feature passes are paid once."""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from pathlib import Path

# Before Keras is imported: it reads KERAS_HOME once.
os.environ.setdefault("KERAS_HOME", str(Path(tempfile.gettempdir()) / "flowerkit-tune-lite2"))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import flowerkit  # noqa: E402
from bench.report import read_rows, save_row  # noqa: E402
from flowerkit.data.decode import mirror_images  # noqa: E402
from flowerkit.data.pipelines import iterate_batches, make_dataset, resolve_pipeline  # noqa: E402
from flowerkit.model import build_model, split_at_features  # noqa: E402
from flowerkit.training import features, phases  # noqa: E402
from tests.helpers import SHARED  # noqa: E402

RESULTS = Path(__file__).parent / "results"
WEIGHTS = SHARED / "weights/efficientnet-lite2-9656183e.pth"
# Head settings against the preset's (Lite0's head: Dense(256), dropout 0.5,
# label smoothing 0.1, Adam 1e-3 constant, 10 epochs).
SETTINGS = {
    "preset": {},
    "epochs20": dict(epochs=20),
    "epochs40": dict(epochs=40),
    "cosine10": dict(learning_rate_schedule="cosine"),
    "cosine20": dict(learning_rate_schedule="cosine", epochs=20),
    "cosine40": dict(learning_rate_schedule="cosine", epochs=40),
    "lr5e-4_epochs30_cosine": dict(learning_rate=5e-4, epochs=30, learning_rate_schedule="cosine"),
    "linear": dict(head_units=(), dropout=0.2),
    "linear_cosine20": dict(head_units=(), dropout=0.2, learning_rate_schedule="cosine", epochs=20),
    "dropout0.2": dict(dropout=0.2),
    "smoothing0": dict(label_smoothing=0.0),
    "smoothing0.2": dict(label_smoothing=0.2),
    "units512_cosine20": dict(head_units=(512,), learning_rate_schedule="cosine", epochs=20),
    "feature_dropout0.2_cosine20": dict(feature_dropout=0.2, learning_rate_schedule="cosine", epochs=20),
    # The chosen head with each training photo's mirror image as a second cached view.
    "units512_cosine20_flip": dict(head_units=(512,), learning_rate_schedule="cosine", epochs=20,
                                   augmentation=("flip",)),
}
# The recipe fields a row records: those the settings change.
CHANGED_FIELDS = {"image_size", "augmentation", "head_units", "dropout", "feature_dropout", "label_smoothing",
                  "learning_rate", "learning_rate_schedule", "epochs", "seed"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="300,260", help="image sizes, comma-separated")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="names from SETTINGS")
    parser.add_argument("--seeds", default="42,1,2", help="splits; the preset's (42) gets flip TTA too")
    parser.add_argument("--data", default=str(SHARED / "data/flower_photos"))
    parser.add_argument("--output", default=str(RESULTS / f"tune_lite2-{keras.backend.backend()}.json"))
    args = parser.parse_args()
    output = Path(args.output)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    done = {(row["image_size"], row["setting"], row["seed"]) for row in read_rows(output)}
    for size in (int(size) for size in args.sizes.split(",")):
        recipe = flowerkit.get_preset("efficientnet_lite2").replace(image_size=size, weights=str(WEIGHTS))
        for name in args.settings.split(","):
            for seed in seeds:
                if (size, name, seed) in done:
                    continue
                row = measure(recipe.replace(**SETTINGS[name], seed=seed), args.data,
                              with_tta=seed == recipe.seed)
                save_row(output, {"image_size": size, "setting": name, "seed": seed, **row},
                         key=("image_size", "setting", "seed"))


def measure(recipe, source: str, with_tta: bool) -> dict:
    """Phase 1 of `flowerkit.train` (`phases.train_head`: the same model,
    seed, class weights and cached features) without its closing
    prediction pass over the validation photos, which runs the whole network
    and costs more than the head's training: final and best validation
    accuracy, and with_tta, the accuracy with flip test-time augmentation."""
    started = time.perf_counter()
    data = load_split(recipe, source)
    recipe = recipe.replace(class_names=data.class_names)
    keras.utils.set_random_seed(recipe.seed)  # initial weights and dropout, as flowerkit.train
    model = build_model(recipe)
    # No device plan: a new seed's split then gathers its features from the
    # caches of the others (`features.cached_features`) instead of a new pass.
    phase = phases.train_head(model, data, recipe, [], verbose=0)
    row = {
        "val_accuracy": phase.history["val_accuracy"][-1],
        "best_val_accuracy": max(phase.history["val_accuracy"]),
        "feature_cache": phase.info["feature_cache"],
        "feature_seconds": phase.info["feature_seconds"],
        "seconds": time.perf_counter() - started,
        "recipe": {k: v for k, v in recipe.to_dict().items() if k in CHANGED_FIELDS},
    }
    if with_tta:
        row["val_accuracy_flip_tta"] = flip_tta_accuracy(model, recipe, data.validation)
    print(json.dumps(row), flush=True)
    return row


@functools.lru_cache(maxsize=4)
def _load_split(seed: int, image_size: int, source: str):
    recipe = flowerkit.get_preset("efficientnet_lite2").replace(seed=seed, image_size=image_size)
    return flowerkit.load_data(recipe, source, quiet=True)


def load_split(recipe, source: str):
    """The recipe's duplicate-aware split (depends on its seed and image size only)."""
    return _load_split(recipe.seed, recipe.image_size, source)


def flip_tta_accuracy(model, recipe, validation) -> float:
    """Validation accuracy of the mean of the head's probabilities on each
    photo and on its mirror image (`flowerkit evaluate --tta flip`), from
    the cached plain features and the mirror images' features."""
    extractor, head = split_at_features(model)
    pipeline = resolve_pipeline()
    plain = features.cached_features(extractor, recipe, validation, 1, pipeline, verbose=0)
    mirrored = mirrored_features(extractor, recipe, validation, pipeline)
    probabilities = (head.predict(plain.features[0], verbose=0) + head.predict(mirrored, verbose=0)) / 2
    return float(np.mean(probabilities.argmax(axis=1) == np.asarray(plain.classes)))


def mirrored_features(extractor, recipe, subset, pipeline) -> np.ndarray:
    """Features of the subset's mirror images, computed once per features
    and subset, kept beside the feature cache."""
    key = features.cache_key(recipe, subset, 1, pipeline)
    path = features.cache_root() / "mirrored" / f"{key.replace('/', '-')}.npy"
    if path.is_file():
        return np.load(path)
    dataset = make_dataset(subset.index, recipe.image_size, recipe.batch_size, shuffle=False, pipeline=pipeline)
    rows = [np.asarray(extractor.predict_on_batch(mirror_images(images))) for images, _ in iterate_batches(dataset)]
    mirrored = np.concatenate(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, mirrored)
    return mirrored


if __name__ == "__main__":
    main()
