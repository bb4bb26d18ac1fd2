"""Decode, resize, shuffle, batch: an `ImageIndex` becomes what `fit` eats.

TensorFlow backend: `tf.data`. JAX and PyTorch: a `keras.utils.PyDataset`
decoding with Pillow in worker threads, so no TensorFlow is needed.

Resize policy (both pipelines): centre-crop to the target's aspect ratio,
then bilinear (antialiased) resize, as the codelab's TFRecords were made
("crop to fill"). Images come out as float32 RGB in 0..255; each model does
its own preprocessing. Labels come out one-hot.
"""

from __future__ import annotations

import io
import math
import os
import warnings

import keras
import numpy as np

from flowerkit.errors import FlowerkitError
from flowerkit.sources import FlowerkitWarning, ImageIndex


def make_dataset(
    index: ImageIndex,
    image_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    pipeline: str = "auto",
):
    """A batched dataset of (images, one-hot labels) for `index`.

    pipeline: "tf" (tf.data), "python" (PyDataset) or "auto" (tf.data on the
    TensorFlow backend, PyDataset elsewhere).
    """
    if pipeline == "auto":
        pipeline = "tf" if keras.backend.backend() == "tensorflow" else "python"
    if pipeline == "tf":
        return _tf_dataset(index, image_size, batch_size, shuffle, seed)
    return ImageBatches(index, image_size, batch_size, shuffle=shuffle, seed=seed)


def _tf_dataset(index, image_size, batch_size, shuffle, seed):
    import tensorflow as tf

    num_classes = len(index.class_names)
    from_files = bool(index.paths)

    def load(item, label):
        data = tf.io.read_file(item) if from_files else item
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = _tf_crop_to_aspect(image)
        image = tf.image.resize(image, (image_size, image_size), antialias=True)
        image.set_shape((image_size, image_size, 3))
        return image, tf.one_hot(label, num_classes)

    dataset = tf.data.Dataset.from_tensor_slices((list(index.items), index.labels))
    if shuffle:
        # Shuffle names, not pixels: cheap, and a fresh order every epoch.
        dataset = dataset.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # A file that went bad after indexing is dropped (and logged), not fatal.
    dataset = dataset.ignore_errors(log_warning=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _tf_crop_to_aspect(image):
    import tensorflow as tf

    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    side = tf.minimum(height, width)
    return tf.image.crop_to_bounding_box(
        image, (height - side) // 2, (width - side) // 2, side, side
    )


def decode_image(item, image_size: int) -> np.ndarray:
    """Pillow decode + centre crop + resize, as float32 RGB 0..255 (HWC)."""
    from PIL import Image

    with Image.open(io.BytesIO(item) if isinstance(item, bytes) else item) as image:
        # JPEG draft: decode at the smallest DCT scale still >= the target.
        image.draft("RGB", (image_size, image_size))
        image = image.convert("RGB")
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.resize(
            (image_size, image_size),
            Image.BILINEAR,
            box=(left, top, left + side, top + side),
        )
        return np.asarray(image, dtype=np.float32)


class ImageBatches(keras.utils.PyDataset):
    """Batches of decoded images for the JAX and PyTorch backends.

    Decoding runs in threads (Pillow releases the GIL). Reshuffles every
    epoch. A file that fails to decode is dropped from its batch and counted.
    """

    def __init__(self, index: ImageIndex, image_size, batch_size, shuffle=False, seed=0, workers=None):
        super().__init__(workers=workers or min(8, os.cpu_count() or 1), use_multiprocessing=False)
        self.index = index
        self.image_size = image_size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.failed: set[int] = set()
        self._eye = np.eye(len(index.class_names), dtype=np.float32)
        self._order = self._make_order()

    def _make_order(self):
        order = np.arange(len(self.index))
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(order)
        return order

    def __len__(self):
        return math.ceil(len(self.index) / self.batch_size)

    def __getitem__(self, batch):
        wanted = self._order[batch * self.batch_size : (batch + 1) * self.batch_size]
        images, labels = [], []
        for position in wanted:
            image = self._load(position)
            if image is not None:
                images.append(image)
                labels.append(self.index.labels[position])
        # Keras cannot take an empty batch: borrow the next readable image.
        position = int(wanted[-1]) if len(wanted) else 0
        while not images:
            if len(self.failed) >= len(self.index):
                raise FlowerkitError(f"No image in {self.index.source} could be decoded.")
            position = (position + 1) % len(self.index)
            image = self._load(position)
            if image is not None:
                images, labels = [image], [self.index.labels[position]]
        return np.stack(images), self._eye[np.asarray(labels)]

    def _load(self, position):
        try:
            return decode_image(self.index.items[position], self.image_size)
        except Exception:
            self.failed.add(int(position))
            return None

    def on_epoch_end(self):
        if self.failed:
            warnings.warn(
                f"Skipped {len(self.failed)} image(s) that failed to decode in "
                f"{self.index.source}.",
                FlowerkitWarning,
                stacklevel=2,
            )
        self.epoch += 1
        self._order = self._make_order()
