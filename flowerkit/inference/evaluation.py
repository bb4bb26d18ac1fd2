"""The evaluate and predict flows of a trained run (model.keras with its
recipe.json beside it)."""

from __future__ import annotations

from flowerkit.data.loading import load_data
from flowerkit.errors import FlowerkitError
from flowerkit.inference.loading import load_run
from flowerkit.inference.predicting import predict_dataset, predict_images
from flowerkit.report.metrics import classification_report

SPLITS = ("all", "validation")


def evaluate(
    model_path, source: str | None = None, split: str = "all", batch_size: int = 64, tta=None,
    quiet: bool | None = None,
) -> dict:
    """Accuracy, per-class precision/recall and confusion matrix of a saved
    model on `source`: all of it, or (split="validation") the validation
    part of the recipe's split, the images training never saw.

    tta="flip" adds the same report for flip test-time augmentation under
    "tta", apart from the plain figures. quiet: progress of indexing and
    hashing, as in `flowerkit.progress.stage`."""
    if split not in SPLITS:
        raise FlowerkitError(f"split must be one of {SPLITS}, got {split!r}")
    if batch_size < 1:
        raise FlowerkitError(f"batch_size must be at least 1, got {batch_size}.")
    run = load_run(model_path)
    recipe = run.recipe.replace(batch_size=batch_size, image_size=run.image_size)
    data = load_data(recipe, source, subsets=(split,), quiet=quiet)
    predictions = predict_dataset(run.model, data[split].dataset, tta=tta, state=data[split].state)
    report = classification_report(predictions.labels, predictions.predicted, data.class_names)
    if tta:
        tta_predicted = predictions.tta_probabilities.argmax(axis=1)
        report["tta"] = {
            "method": tta,
            **classification_report(predictions.labels, tta_predicted, data.class_names),
        }
    return report


def predict(model_path, image_paths, top_k: int = 3, tta=None) -> list[dict]:
    """Top-k classes with probabilities for each image file."""
    run = load_run(model_path)
    return predict_images(run.model, image_paths, run.class_names, top_k=top_k, tta=tta)
