"""Imbalance for issue 24: one class of the shared photos kept whole, the
others cut to a tenth (a CSV source), frozen mobilenet_v2_035 on cached
features; validation balanced accuracy with class_weight none vs auto.
Writes bench/results/inspect_imbalance-BACKEND.json.

    KERAS_BACKEND=jax python -m bench.inspect_imbalance [PHOTOS]"""

from __future__ import annotations

import csv
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.report import write_result
from flowerkit.backends.devices import backend, cpu_name
from flowerkit.config.recipe import get_preset
from flowerkit.training import train

PHOTOS = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/flower_photos").resolve()
KEPT_WHOLE = "dandelion"
FRACTION = 0.1
# Keras ships 0.35-width ImageNet weights per input size; the shared folder
# holds the size-free .weights.h5 for 160 px.
WEIGHTS = Path(os.environ.get("FLOWERKIT_SHARED", "../shared")) / "weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5"
SETTINGS = dict(image_size=160, epochs=8, fine_tune_epochs=0, seed=0, weights=str(WEIGHTS.resolve()))


def write_csv(folder: Path) -> tuple[Path, dict]:
    rng = random.Random(0)
    rows, counts = [], {}
    for folder_class in sorted(p for p in PHOTOS.iterdir() if p.is_dir()):
        files = sorted(folder_class.glob("*.jpg"))
        if folder_class.name != KEPT_WHOLE:
            files = rng.sample(files, max(2, round(len(files) * FRACTION)))
        counts[folder_class.name] = len(files)
        rows += [(os.path.relpath(f, folder), folder_class.name) for f in files]
    path = folder / "imbalanced.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("path", "label"), *rows])
    return path, counts


def main():
    folder = Path(tempfile.mkdtemp(prefix="imbalance-"))
    source, counts = write_csv(folder)
    results = {}
    for weight in ("none", "auto"):
        recipe = get_preset("mobilenet_v2_035").replace(class_weight=weight, **SETTINGS)
        started = time.perf_counter()
        metrics = train(recipe, str(source), verbose=0).metrics
        results[weight] = {
            "val_accuracy": metrics.get("val_accuracy"),
            "val_balanced_accuracy": metrics["val_balanced_accuracy"],
            "class_weights": metrics.get("class_weights"),
            "seconds": time.perf_counter() - started,
        }
        print(weight, json.dumps(results[weight]), flush=True)
    result = {
        "backend": backend(), "cpu": cpu_name(), "preset": "mobilenet_v2_035",
        "settings": {**SETTINGS, "phase": "frozen (cached features)", "kept_whole": KEPT_WHOLE,
                     "others_fraction": FRACTION, "source": "CSV of the shared photos"},
        "class_counts": counts,
        "class_weight": results,
        "balanced_accuracy_gain": (results["auto"]["val_balanced_accuracy"]
                                   - results["none"]["val_balanced_accuracy"]),
    }
    write_result(f"inspect_imbalance-{backend()}", result)


if __name__ == "__main__":
    main()
