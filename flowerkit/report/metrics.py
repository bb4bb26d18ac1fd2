"""Numbers from labels and predictions: the confusion matrix, the
per-class report (accuracy, balanced accuracy, precision, recall, support),
for many classes the most-confused class pairs, and the top-k classes of
one prediction."""

from __future__ import annotations

import numpy as np

# Beyond this many classes a matrix (or a per-class table) no longer reads:
# the most-confused pairs and the lowest recalls instead; the JSON keeps all.
READABLE_CLASSES = 30


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


def confused_pairs(matrix, class_names, top: int = READABLE_CLASSES) -> list[dict]:
    """The `top` largest off-diagonal cells of a confusion matrix, largest
    first (ties in matrix order): true and predicted class, count, and the
    count's fraction of the true class's images."""
    matrix = np.asarray(matrix)
    wrong = matrix.copy()
    np.fill_diagonal(wrong, 0)
    flat = wrong.ravel()
    count = min(top, int(np.count_nonzero(flat)))
    if count == 0:
        return []
    smallest_kept = np.partition(flat, flat.size - count)[flat.size - count]
    above = np.flatnonzero(flat > smallest_kept)
    ties = np.flatnonzero(flat == smallest_kept)[: count - len(above)]
    chosen = np.concatenate([above, ties])
    chosen = chosen[np.lexsort((chosen, -flat[chosen]))]
    rows, columns = np.divmod(chosen, matrix.shape[1])
    true_counts = matrix.sum(axis=1)
    return [
        {"true": class_names[r], "predicted": class_names[c], "count": int(wrong[r, c]),
         "fraction_of_true": float(wrong[r, c] / true_counts[r])}
        for r, c in zip(rows.tolist(), columns.tolist())
    ]


def format_report(report: dict) -> str:
    """The report as plain text for the terminal: the per-class table from
    the lowest recall up, then the confusion matrix, or beyond
    READABLE_CLASSES classes the lowest recalls and most-confused pairs."""
    names = report["class_names"]
    shown = sorted(report["per_class"].items(), key=lambda item: (item[1]["recall"], names.index(item[0])))
    many = len(names) > READABLE_CLASSES
    shown = shown[:READABLE_CLASSES]
    width = max(len(n) for n in [name for name, _ in shown] + ["class"])
    lines = [
        f"accuracy: {report['accuracy']:.4f} on {report['images']} images"
        + (f" (balanced accuracy {report['balanced_accuracy']:.4f})" if "balanced_accuracy" in report else ""),
        "",
        f"{'class':<{width}}  precision  recall  support",
    ]
    for name, row in shown:
        lines.append(
            f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['support']:7d}"
        )
    if many:
        lines.append(f"... {len(names) - len(shown)} more classes, each with a higher recall (all in the JSON)")
        return "\n".join(lines + ["", *_pair_lines(report)])
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


def _pair_lines(report: dict) -> list[str]:
    pairs = confused_pairs(report["confusion_matrix"], report["class_names"])
    lines = [f"the {len(pairs)} most-confused class pairs (true -> predicted: images, share of the true class)"]
    lines += [f"{p['true']} -> {p['predicted']}: {p['count']} ({p['fraction_of_true']:.0%})" for p in pairs]
    return lines
