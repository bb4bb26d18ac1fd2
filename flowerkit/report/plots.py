"""The codelab's pictures as PNG files: training curves, nine validation
images with their predicted labels, and the confusion matrix (beyond
`metrics.READABLE_CLASSES` classes, a chart of the most-confused pairs: a
1,000 x 1,000 matrix is unreadable, and drawn to scale it takes gigabytes).

Figures are made with `matplotlib.figure.Figure` rather than pyplot: no
display, no global pyplot state, and a notebook's plotting backend is left
as the user set it.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from flowerkit.report.metrics import READABLE_CLASSES, confused_pairs


def plot_training_curves(history: dict, path) -> None:
    """Accuracy and loss, training vs validation (`display_training_curves`),
    with a dashed line where fine-tuning starts."""
    figure = Figure(figsize=(11, 4))
    axes = figure.subplots(1, 2)
    phases = list(history.get("phase", []))
    for axis, metric in zip(axes, ("accuracy", "loss")):
        for key, label in ((metric, "training"), (f"val_{metric}", "validation")):
            if key in history:
                epochs = np.arange(1, len(history[key]) + 1)
                axis.plot(epochs, history[key], marker="o", label=label)
        if "fine_tune" in phases and phases.index("fine_tune") > 0:
            # The boundary between the last head epoch and the first fine-tuning one.
            axis.axvline(phases.index("fine_tune") + 0.5, color="grey", linestyle="--",
                         label="fine-tuning starts")
        axis.set_title(f"model {metric}")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_predictions(images, labels, probabilities, class_names, path) -> None:
    """Up to nine images titled with the predicted class and its probability;
    wrong predictions in red (`display_9_images_with_predictions`)."""
    count = min(9, len(images))
    columns = min(3, count)
    rows = int(np.ceil(count / columns))
    figure = Figure(figsize=(3.3 * columns, 3.5 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for i in range(count):
        axis = axes.flat[i]
        predicted = int(np.argmax(probabilities[i]))
        correct = predicted == int(labels[i])
        title = f"{class_names[predicted]} {probabilities[i][predicted]:.0%}"
        if not correct:
            title += f"\n(true: {class_names[int(labels[i])]})"
        axis.imshow(np.clip(images[i], 0, 255).astype("uint8"))
        axis.set_title(title, color="black" if correct else "red", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_confusion_matrix(matrix, class_names, path) -> None:
    """The matrix, counts in cells and colour by fraction of the true class;
    beyond READABLE_CLASSES classes, `plot_confused_pairs` instead."""
    if len(class_names) > READABLE_CLASSES:
        plot_confused_pairs(matrix, class_names, path)
        return
    matrix = np.asarray(matrix)
    row_sums = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, row_sums, out=np.zeros(matrix.shape), where=row_sums > 0)
    size = 1.1 * len(class_names) + 2
    figure = Figure(figsize=(size + 1, size))
    axis = figure.subplots()
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, column), value in np.ndenumerate(matrix):
        colour = "white" if normalised[row, column] > 0.5 else "black"
        axis.text(column, row, str(value), ha="center", va="center", color=colour)
    figure.colorbar(image, ax=axis, fraction=0.046, label="fraction of true class")
    axis.set_title("confusion matrix")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_confused_pairs(matrix, class_names, path, top: int = READABLE_CLASSES) -> None:
    """A bar per most-confused (true, predicted) pair, of fixed size whatever
    the number of classes."""
    pairs = confused_pairs(matrix, class_names, top)
    figure = Figure(figsize=(9, 1.5 + 0.3 * max(len(pairs), 1)))
    axis = figure.subplots()
    positions = np.arange(len(pairs))
    axis.barh(positions, [p["count"] for p in pairs], color="tab:blue")
    axis.set_yticks(positions, [f"{p['true']} → {p['predicted']}" for p in pairs], fontsize=8)
    axis.invert_yaxis()  # the largest on top
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for position, pair in zip(positions, pairs):
        axis.text(pair["count"], position, f" {pair['count']} ({pair['fraction_of_true']:.0%})",
                  va="center", fontsize=8)
    axis.set_xlabel("validation images (share of the true class)")
    axis.set_title(f"the {len(pairs)} most-confused class pairs of {len(class_names):,} classes "
                   "(full matrix in the JSON)", fontsize=10)
    if not pairs:
        axis.text(0.5, 0.5, "no confusions", ha="center", va="center", transform=axis.transAxes)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
