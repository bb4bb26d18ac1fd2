"""The label check's cost and recall (issue 31): `find_label_issues` on
labels with 5% of them flipped to another class, how many flips rank in the
top 2x as many images (recall), and its wall time, with full-batch steps and
with mini-batches (`label_issues.BATCH_ROWS`, the default).

    KERAS_BACKEND=jax python -m bench.label_noise [--photos DIR] [--sizes 10000,100000]

Rows: the shared photos (pooled features of the inspect recipe, read from
the feature cache or computed once), and synthetic features at the scale
benchmark's shape (1280 wide, 1,000 classes, a Gaussian per class as far
apart as the photos' classes are in accuracy) at each size; full batches
only where they take minutes, not hours. Writes bench/results/label_noise.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from pathlib import Path

import numpy as np

from bench.report import write_result
from bench.scale_data import class_count
from flowerkit.config.recipe import get_preset
from flowerkit.data.sources import index_source
from flowerkit.inspection import label_issues
from flowerkit.inspection.runner import feature_recipe, pooled_features

SHARED = Path(os.environ.get("FLOWERKIT_SHARED", "../shared")).resolve()
FLIPPED = 0.05
FULL_BATCH_UP_TO = 20_000  # images: beyond this full-batch steps take tens of minutes
SPREAD = 0.15  # of the class centres, per dimension (noise 1): out-of-fold accuracy ~93% at 10 k


def flipped_labels(labels, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, flipped positions): FLIPPED of the images moved to another class."""
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(labels), int(round(FLIPPED * len(labels))), replace=False)
    noisy = np.array(labels, np.int64)
    noisy[flipped] = (noisy[flipped] + rng.integers(1, classes, len(flipped))) % classes
    return noisy, flipped


def measured(features, labels, classes: int, batch_rows: int) -> dict:
    noisy, flipped = flipped_labels(labels, classes)
    started = time.perf_counter()
    issues = label_issues.find_label_issues(features, noisy, classes, batch_rows=batch_rows)
    seconds = time.perf_counter() - started
    top = set(issues.top(2 * len(flipped)).tolist())
    return {
        # A fold's head trains on the other folds' rows: full batches when they fit.
        "batch_rows": "full" if batch_rows >= len(labels) - len(labels) // issues.folds else batch_rows,
        "seconds": seconds,
        "flipped": len(flipped),
        "recall_top_2x": len(top & set(flipped.tolist())) / len(flipped),
        "suspect_recall": len(set(issues.suspects.tolist()) & set(flipped.tolist())) / len(flipped),
        "suspects": len(issues.suspects),
        "out_of_fold_accuracy_on_true_labels": float((issues.predicted == labels).mean()),
    }


def photo_features(photos: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Pooled features of every photo for the inspect recipe (the feature cache's)."""
    index = index_source(str(photos))
    recipe = feature_recipe(get_preset("mobilenet_v2_035").replace(class_names=index.class_names))
    features, _ = pooled_features(recipe, index, verbose=2)
    return features, np.asarray(index.labels), len(index.class_names)


def synthetic_features(images: int, width: int = 1280, spread: float = SPREAD, seed: int = 0):
    """A Gaussian per class in `width` dimensions, in as many classes as the
    scale benchmark's folder of that size (about 100 images each, up to
    1,000), spread so that the out-of-fold head is right about as often as
    on the photos."""
    classes = class_count(images)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, images)
    centres = rng.normal(0, spread, (classes, width)).astype(np.float32)
    features = rng.standard_normal((images, width), np.float32)
    features += centres[labels]
    return features, labels, classes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=SHARED / "data" / "flower_photos")
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args(argv)
    rows = []
    if args.photos.is_dir():
        features, labels, classes = photo_features(args.photos)
        rows.append({"data": "shared photos", "images": len(labels), "classes": classes,
                     **measured(features, labels, classes, label_issues.BATCH_ROWS)})
        print(rows[-1], flush=True)
    for size in [int(s) for s in args.sizes.split(",") if s]:
        features, labels, classes = synthetic_features(size)
        fold_rows = size - size // label_issues.FOLDS
        batches = ([label_issues.BATCH_ROWS] if fold_rows > label_issues.BATCH_ROWS else []) \
            + ([size] if size <= FULL_BATCH_UP_TO else [])
        for batch_rows in batches:
            rows.append({"data": "synthetic Gaussians", "images": size, "classes": classes,
                         "width": features.shape[1], **measured(features, labels, classes, batch_rows)})
            print(rows[-1], flush=True)
        del features
    write_result("label_noise", {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "load_average": [round(v, 1) for v in os.getloadavg()],
        "flipped_fraction": FLIPPED,
        "steps": label_issues.STEPS,
        "folds": label_issues.FOLDS,
        "rows": rows,
    })


if __name__ == "__main__":
    main()
