"""Tunes `efficientnet_lite2_finetune` on validation only: each setting (a
few recipe fields changed from the preset) is one whole `flowerkit.train`
run on the shared photos (the preset's duplicate-aware split, seed 42) into
a run folder that is kept, so that `bench.eval_sizes` can score its model at
other input sizes and with flip test-time augmentation afterwards.

    KERAS_BACKEND=tensorflow python -m bench.tune_lite2_finetune --settings 340px

Each run costs 45-65 minutes on 2 CPU cores. A row (final and best
validation accuracy, the fine-tuning epochs' validation and training
accuracy, wall time) goes to bench/results/tune_lite2_finetune-<backend>.json;
a run folder that holds a finished run of the same recipe is recorded
without training again."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import keras

import flowerkit
from bench.report import save_row
from flowerkit.config.recipe import Recipe
from tests.helpers import SHARED

RESULTS = Path(__file__).parent / "results"
WEIGHTS = SHARED / "weights/efficientnet-lite2-9656183e.pth"
SETTINGS = {
    "preset": {},
    "340px": dict(image_size=340),
    "strong_augmentation": dict(
        fine_tune_augmentation=("flip", "zoom:0.25", "rotate:0.1", "translate:0.1", "contrast:0.2")),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default="preset", help="names from SETTINGS, comma-separated")
    parser.add_argument("--data", default=str(SHARED / "data/flower_photos"))
    parser.add_argument("--runs", default=str(Path(tempfile.gettempdir()) / "flowerkit-tune-lite2-finetune"),
                        help="where the run folders are kept: SETTING-BACKEND")
    parser.add_argument("--output", default=None, help="default: bench/results/tune_lite2_finetune-BACKEND.json")
    args = parser.parse_args(argv)
    backend = keras.backend.backend()
    output = Path(args.output or RESULTS / f"tune_lite2_finetune-{backend}.json")
    for name in args.settings.split(","):
        recipe = setting_recipe(name)
        folder = Path(args.runs) / f"{name}-{backend}"
        if not (folder / "metrics.json").is_file():
            flowerkit.train(recipe, args.data, output_dir=folder, verbose=2, overwrite=True)
        row = recorded_row(name, recipe, folder)
        print(json.dumps(row), flush=True)
        save_row(output, row, key=("setting", "backend"))


def setting_recipe(name: str) -> Recipe:
    if name not in SETTINGS:
        raise SystemExit(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")
    recipe = flowerkit.get_preset("efficientnet_lite2_finetune").replace(**SETTINGS[name])
    return recipe.replace(weights=str(WEIGHTS)) if WEIGHTS.is_file() else recipe


def recorded_row(name: str, recipe: Recipe, folder: Path) -> dict:
    """The row of the finished run in `folder`, which must have trained `recipe`."""
    trained = Recipe.load(folder / "recipe.json")
    if trained.replace(class_names=()) != recipe.replace(class_names=()):
        raise SystemExit(f"{folder} holds a run of another recipe than setting {name!r}")
    metrics = json.loads((folder / "metrics.json").read_text())
    history = json.loads((folder / "history.json").read_text())
    fine_tuning = [i for i, phase in enumerate(history["phase"]) if phase == "fine_tune"]
    return {
        "setting": name,
        "changes": SETTINGS[name],
        "backend": keras.backend.backend(),
        "run": folder.name,
        "val_accuracy": metrics["val_accuracy"],
        "best_val_accuracy": metrics["best_val_accuracy"],
        "fine_tune_val_accuracy": [round(history["val_accuracy"][i], 4) for i in fine_tuning],
        "fine_tune_accuracy": [round(history["accuracy"][i], 4) for i in fine_tuning],
        "validation_images": metrics["validation_images"],
        "wall_seconds": metrics["wall_seconds"],
    }


if __name__ == "__main__":
    main()
