"""Class balance: counts, the imbalance ratio, and class weights
(`Recipe.class_weight`). Keras-free."""

from __future__ import annotations

import numpy as np

from flowerkit.config.recipe import check_choice

# "auto" weighs the classes when the largest has at least this many times
# the images of the smallest.
AUTO_RATIO = 1.5


def imbalance_ratio(counts) -> float:
    """Largest class over smallest (inf if a class is empty)."""
    counts = np.asarray(counts, dtype=np.float64)
    return float(counts.max() / counts.min()) if counts.min() > 0 else float("inf")


def class_weights(labels, num_classes: int, mode: str) -> np.ndarray | None:
    """Per-class loss weights for `mode`, or None (unweighted).

    "balanced": n / (classes * count), as scikit-learn's, so that every class
    carries the same total weight and the mean weight per image is 1 (the
    loss keeps its scale). "auto": "balanced" when the imbalance ratio is at
    least AUTO_RATIO, else none."""
    check_choice("class_weight", mode)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    if mode == "none" or (mode == "auto" and imbalance_ratio(counts) < AUTO_RATIO):
        return None
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def balance_report(labels, class_names) -> dict:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    return {
        "counts": dict(zip(class_names, counts.tolist())),
        "imbalance_ratio": imbalance_ratio(counts),
        "largest": class_names[int(counts.argmax())],
        "smallest": class_names[int(counts.argmin())],
        "auto_class_weight": imbalance_ratio(counts) >= AUTO_RATIO,
    }
