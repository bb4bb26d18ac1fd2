"""Predictions and the numbers computed from them: accuracy, per-class
precision and recall, the confusion matrix, top-k labels for images."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from flowerkit.errors import FlowerkitError
from flowerkit.pipeline import decode_image


@dataclasses.dataclass
class Predictions:
    """Model outputs over a dataset, aligned with the labels actually seen."""

    probabilities: np.ndarray  # (n, classes)
    labels: np.ndarray  # (n,) int
    sample_images: np.ndarray  # a few images, for plots
    sample_positions: np.ndarray  # their positions in the dataset

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def iterate_batches(dataset):
    """(images, one-hot labels) numpy batches of a tf.data or PyDataset."""
    if hasattr(dataset, "as_numpy_iterator"):
        yield from dataset.as_numpy_iterator()
    else:
        for batch in range(len(dataset)):
            yield dataset[batch]


def predict_dataset(model, dataset, sample_positions=range(9)) -> Predictions:
    """Predicts every batch; keeps the images at `sample_positions` for plots."""
    wanted = set(int(p) for p in sample_positions)
    probabilities, labels, samples = [], [], []
    seen = 0
    for images, one_hot in iterate_batches(dataset):
        probabilities.append(np.asarray(model.predict_on_batch(images)))
        labels.append(np.asarray(one_hot).argmax(axis=1))
        samples += [np.asarray(images[p - seen]) for p in sorted(wanted) if seen <= p < seen + len(images)]
        seen += len(images)
    if not probabilities:
        raise FlowerkitError("No images to predict on.")
    positions = [p for p in sorted(wanted) if p < seen]
    return Predictions(
        probabilities=np.concatenate(probabilities),
        labels=np.concatenate(labels),
        sample_images=np.stack(samples) if samples else np.zeros((0, 1, 1, 3)),
        sample_positions=np.asarray(positions, dtype=np.int64),
    )


def confusion_matrix(labels, predicted, num_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predicted)), 1)
    return matrix


def classification_report(predictions: Predictions, class_names) -> dict:
    matrix = confusion_matrix(predictions.labels, predictions.predicted, len(class_names))
    true_positives = np.diag(matrix).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(matrix.sum(0) > 0, true_positives / matrix.sum(0), 0.0)
        recall = np.where(matrix.sum(1) > 0, true_positives / matrix.sum(1), 0.0)
    return {
        "accuracy": float(true_positives.sum() / max(matrix.sum(), 1)),
        "images": int(matrix.sum()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "support": int(matrix[i].sum()),
            }
            for i, name in enumerate(class_names)
        },
        "class_names": list(class_names),
        "confusion_matrix": matrix.tolist(),
    }


def format_report(report: dict) -> str:
    names = report["class_names"]
    width = max(len(n) for n in names + ["class"])
    lines = [
        f"accuracy: {report['accuracy']:.4f} on {report['images']} images",
        "",
        f"{'class':<{width}}  precision  recall  support",
    ]
    for name, row in report["per_class"].items():
        lines.append(
            f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['support']:7d}"
        )
    lines += ["", "confusion matrix (rows: true, columns: predicted)"]
    lines.append(" " * (width + 2) + " ".join(f"{n[:6]:>6}" for n in names))
    for name, row in zip(names, report["confusion_matrix"]):
        lines.append(f"{name:<{width}}  " + " ".join(f"{v:6d}" for v in row))
    return "\n".join(lines)


def predict_images(model, image_paths, class_names, top_k: int = 3) -> list[dict]:
    """Top-k classes and probabilities for each image file."""
    image_size = model.input_shape[1]
    if not image_paths:
        raise FlowerkitError("No images given.")
    images = []
    for path in image_paths:
        if not Path(path).is_file():
            raise FlowerkitError(f"Image not found: {path}")
        try:
            images.append(decode_image(str(path), image_size))
        except Exception as error:
            raise FlowerkitError(f"Cannot read image {path}: {error}") from None
    probabilities = np.concatenate(
        [np.asarray(model.predict_on_batch(np.stack(images[i : i + 64]))) for i in range(0, len(images), 64)]
    )
    top_k = min(top_k, len(class_names))
    results = []
    for path, row in zip(image_paths, probabilities):
        best = np.argsort(row)[::-1][:top_k]
        results.append(
            {
                "image": str(path),
                "top": [
                    {"class": class_names[i], "probability": float(row[i])} for i in best
                ],
            }
        )
    return results


def load_trained(model_path):
    """A saved model and the recipe saved beside it (recipe.json)."""
    from flowerkit.model import load_model
    from flowerkit.recipe import Recipe

    model_path = Path(model_path)
    model = load_model(model_path)
    recipe_path = model_path.with_name("recipe.json")
    if recipe_path.is_file():
        recipe = Recipe.load(recipe_path)
    else:
        classes = model.output_shape[-1]
        recipe = Recipe(
            class_names=tuple(f"class_{i}" for i in range(classes)),
            image_size=model.input_shape[1],
        )
    return model, recipe


def evaluate(model_path, source: str | None = None, split: str = "all", batch_size: int = 64) -> dict:
    """Accuracy, per-class precision/recall and confusion matrix of a saved
    model on `source`: all of it, or (split="validation") the validation
    part of the recipe's split, as during training."""
    from flowerkit.pipeline import make_dataset
    from flowerkit.sources import index_source, split_index

    if split not in ("all", "validation"):
        raise FlowerkitError(f"split must be 'all' or 'validation', got {split!r}")
    model, recipe = load_trained(model_path)
    index = index_source(source)
    if tuple(index.class_names) != tuple(recipe.class_names):
        raise FlowerkitError(
            f"The model was trained on classes {list(recipe.class_names)} but "
            f"{index.source} has {list(index.class_names)}."
        )
    if split == "validation":
        _, index = split_index(index, recipe.validation_split, recipe.seed)
    dataset = make_dataset(index, model.input_shape[1], batch_size)
    predictions = predict_dataset(model, dataset)
    return classification_report(predictions, recipe.class_names)


def predict(model_path, image_paths, top_k: int = 3) -> list[dict]:
    """Top-k classes with probabilities for each image file."""
    model, recipe = load_trained(model_path)
    return predict_images(model, image_paths, recipe.class_names, top_k=top_k)
