"""Numbers from labels and predictions: the confusion matrix, the
per-class report (accuracy, balanced accuracy, precision, recall, support)
and the top-k classes of one prediction."""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels, predicted, num_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predicted)), 1)
    return matrix


def classification_report(labels, predicted, class_names) -> dict:
    """Accuracy, per-class precision/recall/support and the confusion matrix,
    as JSON-ready data. A class never predicted has precision 0; a class
    with no images has recall 0. Balanced accuracy: the mean recall over the
    classes that have images, which a neglected small class cannot hide in."""
    matrix = confusion_matrix(labels, predicted, len(class_names))
    true_positives = np.diag(matrix).astype(float)
    predicted_counts, true_counts = matrix.sum(0), matrix.sum(1)
    precision = np.divide(
        true_positives, predicted_counts, out=np.zeros(len(class_names)), where=predicted_counts > 0
    )
    recall = np.divide(
        true_positives, true_counts, out=np.zeros(len(class_names)), where=true_counts > 0
    )
    return {
        "accuracy": float(true_positives.sum() / max(matrix.sum(), 1)),
        "balanced_accuracy": float(recall[true_counts > 0].mean()) if (true_counts > 0).any() else 0.0,
        "images": int(matrix.sum()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "support": int(true_counts[i]),
            }
            for i, name in enumerate(class_names)
        },
        "class_names": list(class_names),
        "confusion_matrix": matrix.tolist(),
    }


def format_report(report: dict) -> str:
    """The report as a plain-text table, for the terminal."""
    names = report["class_names"]
    width = max(len(n) for n in names + ["class"])
    lines = [
        f"accuracy: {report['accuracy']:.4f} on {report['images']} images"
        + (f" (balanced accuracy {report['balanced_accuracy']:.4f})" if "balanced_accuracy" in report else ""),
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


def top_classes(probabilities, class_names, top_k: int) -> list[dict]:
    """The `top` list of `flowerkit predict --json` for one image: the
    `top_k` most probable classes (at most all of them), most probable first."""
    probabilities = np.asarray(probabilities)
    best = np.argsort(probabilities)[::-1][: min(top_k, len(class_names))]
    return [{"class": class_names[i], "probability": float(probabilities[i])} for i in best]
