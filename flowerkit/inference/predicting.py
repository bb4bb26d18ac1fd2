"""Running a model: predict a dataset (with the active distribution plan
sharing out the work) or image files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from flowerkit.data.decode import decode_image, flip_averaged
from flowerkit.data.pipelines import iterate_batches
from flowerkit.distribute.sharding import jax_plan, one_replica, predict_batches
from flowerkit.errors import FlowerkitError
from flowerkit.report.metrics import top_classes


@dataclasses.dataclass
class Predictions:
    """Model outputs over a dataset, aligned with the labels actually seen."""

    probabilities: np.ndarray  # (n, classes)
    labels: np.ndarray  # (n,) int
    sample_images: np.ndarray  # a few images, for plots
    sample_positions: np.ndarray  # their positions in the dataset
    tta_probabilities: np.ndarray | None = None  # with test-time augmentation

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


TTA = (None, "flip")


class EngineModel:
    """What `predict_dataset` and `predict_images` run when another engine
    than Keras does the work (an export in its runtime, chosen above this
    layer by `flowerkit.exporting.engines`): that engine's `predict` with
    the Keras model's input shape."""

    def __init__(self, predict, input_shape):
        self._predict = predict
        self.input_shape = input_shape

    def predict_on_batch(self, images) -> np.ndarray:
        return self._predict(np.asarray(images, dtype=np.float32))


def _check_tta(tta) -> None:
    if tta not in TTA:
        raise FlowerkitError(f"tta must be 'flip' or None, got {tta!r}.")


def predict_dataset(model, dataset, sample_positions=range(9), tta=None, state=None) -> Predictions:
    """Predicts every batch; keeps the images at `sample_positions` for plots.

    With tta="flip", also the flip-averaged probabilities. state: a tf.data
    dataset's `PipelineState`, to report images that failed to decode.
    """
    _check_tta(tta)
    wanted = sorted(int(p) for p in sample_positions)
    probabilities, tta_probabilities, labels, samples = [], [], [], []
    seen = 0
    for images, one_hot in iterate_batches(dataset, state):
        probabilities.append(np.asarray(model.predict_on_batch(images)))
        if tta:
            tta_probabilities.append(flip_averaged(model.predict_on_batch, images, probabilities[-1]))
        labels.append(np.asarray(one_hot).argmax(axis=1))
        samples += [np.asarray(images[p - seen]) for p in wanted if seen <= p < seen + len(images)]
        seen += len(images)
    if not probabilities:
        raise FlowerkitError("No images to predict on.")
    return Predictions(
        probabilities=np.concatenate(probabilities),
        labels=np.concatenate(labels),
        sample_images=np.stack(samples) if samples else np.zeros((0, 1, 1, 3)),
        sample_positions=np.asarray([p for p in wanted if p < seen], dtype=np.int64),
        tta_probabilities=np.concatenate(tta_probabilities) if tta else None,
    )


def predict_images(model, image_paths, class_names, top_k: int = 3, tta=None) -> list[dict]:
    """Top-k classes and probabilities for each image file (flip-averaged
    with tta="flip")."""
    _check_tta(tta)
    if not image_paths:
        raise FlowerkitError("No images given.")
    if top_k < 1:
        raise FlowerkitError(f"top_k must be at least 1, got {top_k}.")
    image_size = model.input_shape[1]
    images = []
    for path in image_paths:
        if not Path(path).is_file():
            raise FlowerkitError(f"Image not found: {path}")
        try:
            images.append(decode_image(str(path), image_size))
        except Exception as error:
            raise FlowerkitError(f"Cannot read image {path}: {error}") from None
    batches = []
    for start in range(0, len(images), 64):
        batch = np.stack(images[start : start + 64])
        probabilities = np.asarray(model.predict_on_batch(batch))
        batches.append(flip_averaged(model.predict_on_batch, batch, probabilities) if tta else probabilities)
    probabilities = np.concatenate(batches)
    return [{"image": str(path), "top": top_classes(row, class_names, top_k)}
            for path, row in zip(image_paths, probabilities)]


def predict_subset(model, subset, sample_positions, plan=None):
    """`predict_dataset` for a `Subset`, shared out over the devices and
    processes of `plan` (`flowerkit.distribute.plan`; None: one device)."""
    if jax_plan(plan) is None:
        return predict_dataset(one_replica(model, plan), subset.dataset, sample_positions=sample_positions,
                               state=subset.state)
    probabilities, labels = [], []
    for (outputs,), one_hot in predict_batches(model, subset.dataset, plan=plan, state=subset.state):
        probabilities.append(outputs)
        labels.append(one_hot.argmax(axis=1))
    if not probabilities:
        raise FlowerkitError("No images to predict on.")
    probabilities = np.concatenate(probabilities)
    wanted = [int(p) for p in sorted(sample_positions) if p < len(probabilities)]
    size = subset.dataset.image_size
    return Predictions(
        probabilities=probabilities,
        labels=np.concatenate(labels),
        sample_images=np.stack([decode_image(subset.index.images[p], size) for p in wanted])
        if wanted else np.zeros((0, 1, 1, 3)),
        sample_positions=np.asarray(wanted, dtype=np.int64),
    )
