"""The evaluate and predict flows of a trained run (model.keras with its
recipe.json beside it), on Keras or on another engine handed in from above
(`flowerkit.exporting.engines` picks it: this layer imports no exporter)."""

from __future__ import annotations

from flowerkit.data.loading import load_data
from flowerkit.errors import FlowerkitError
from flowerkit.inference.loading import Run, load_run
from flowerkit.inference.predicting import EngineModel, predict_dataset, predict_images
from flowerkit.report.metrics import classification_report

SPLITS = ("all", "validation")


def evaluate(
    model_path, source: str | None = None, split: str = "all", batch_size: int = 64, tta=None,
    quiet: bool | None = None,
    engine=None,
) -> dict:
    """Accuracy, per-class precision/recall and confusion matrix of a saved
    model on `source`: all of it, or (split="validation") the validation
    part of the recipe's split, the images training never saw.

    tta="flip" adds the same report for flip test-time augmentation under
    "tta", apart from the plain figures. quiet: progress of indexing and
    hashing, as in `flowerkit.progress.stage`. `engine`: see `engine_model`."""
    if split not in SPLITS:
        raise FlowerkitError(f"split must be one of {SPLITS}, got {split!r}")
    if batch_size < 1:
        raise FlowerkitError(f"batch_size must be at least 1, got {batch_size}.")
    run = load_run(model_path)
    recipe = run.recipe.replace(batch_size=batch_size, image_size=run.image_size)
    data = load_data(recipe, source, subsets=(split,), quiet=quiet)
    predictions = predict_dataset(engine_model(run, engine), data[split].dataset, tta=tta,
                                  state=data[split].state)
    report = classification_report(predictions.labels, predictions.predicted, data.class_names)
    report["engine"] = engine_name(engine)
    if tta:
        tta_predicted = predictions.tta_probabilities.argmax(axis=1)
        report["tta"] = {
            "method": tta,
            **classification_report(predictions.labels, tta_predicted, data.class_names),
        }
    return report


def predict(model_path, image_paths, top_k: int = 3, tta=None, engine=None) -> list[dict]:
    """Top-k classes with probabilities for each image file, and the engine
    that ran them. `engine`: see `engine_model`."""
    run = load_run(model_path)
    results = predict_images(engine_model(run, engine), image_paths, run.class_names, top_k=top_k, tta=tta)
    return [{**result, "engine": engine_name(engine)} for result in results]


def engine_model(run: Run, engine):
    """The run's Keras model (engine None, or one whose `predict` is None),
    or a stand-in running `engine.predict` (an `EngineChoice`)."""
    if engine is None or engine.predict is None:
        return run.model
    return EngineModel(engine.predict, run.model.input_shape)


def engine_name(engine) -> str:
    return "keras" if engine is None else engine.engine
