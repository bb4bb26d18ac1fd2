"""Decode, resize, shuffle, batch: an `ImageIndex` becomes what `fit` eats.

TensorFlow backend: `tf.data`. JAX and PyTorch: a `keras.utils.PyDataset`
decoding with Pillow in worker threads, so no TensorFlow is needed. This is
the one place that choice is made, and `iterate_batches` the one place that
reads either kind back.

Resize policy (both pipelines): centre-crop to a square, then bilinear
(antialiased) resize, as the codelab's TFRecords were made ("crop to fill").
Images come out as float32 RGB in 0..255; each model does its own
preprocessing. Labels come out one-hot.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import threading
import warnings
import weakref
from concurrent.futures import Future, ThreadPoolExecutor

import keras
import numpy as np

from flowerkit.backends.devices import backend
from flowerkit.backends.policy import pipeline_for
from flowerkit.data.decode import ImageProblem, decode_image
from flowerkit.data.sources import ImageIndex, skipped_message
from flowerkit.errors import FlowerkitError, FlowerkitWarning

PIPELINES = ("auto", "tf", "python")


def make_dataset(index: ImageIndex, image_size: int, batch_size: int, shuffle: bool = False,
                 seed: int = 0, pipeline: str = "auto"):
    """A batched dataset of (images, one-hot labels) for `index`.

    pipeline: "tf" (tf.data), "python" (PyDataset) or "auto" (tf.data on the
    TensorFlow backend, PyDataset elsewhere). A shuffled PyDataset is endless,
    one epoch after another: give `fit` steps_per_epoch=len(dataset).
    A tf.data dataset comes without its `PipelineState` (`build_dataset`,
    and `load_data`'s subsets, keep it beside the dataset).
    """
    return build_dataset(index, image_size, batch_size, shuffle, seed, pipeline)[0]


def build_dataset(index: ImageIndex, image_size: int, batch_size: int, shuffle: bool = False,
                  seed: int = 0, pipeline: str = "auto"):
    """`make_dataset`'s dataset and its `PipelineState` (None for a
    PyDataset, which keeps its own record)."""
    if resolve_pipeline(pipeline) == "tf":
        return _tf_dataset(index, image_size, batch_size, shuffle, seed)
    return ImageBatches(index, image_size, batch_size, shuffle=shuffle, seed=seed), None


def resolve_pipeline(pipeline: str = "auto") -> str:
    """"tf" or "python": "auto" is tf.data on the TensorFlow backend, the
    Pillow PyDataset elsewhere (no TensorFlow needed)."""
    if pipeline not in PIPELINES:
        raise FlowerkitError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}.")
    if pipeline == "auto":
        return pipeline_for(backend())
    return pipeline


def iterate_batches(dataset, state: PipelineState | None = None):
    """(images, one-hot labels) numpy batches of a dataset made by
    `make_dataset`, without the placeholders (sample weight 0) that stand in
    for images that failed to decode; a tf.data dataset's bad images are
    reported when its `state` is given."""
    if isinstance(dataset, keras.utils.PyDataset):
        batches = one_pass(dataset)
    else:
        batches = dataset.as_numpy_iterator()
    for batch in batches:
        images, labels, *weights = batch
        if weights:
            keep = weights[0] > 0
            images, labels = images[keep], labels[keep]
        if len(images):
            yield images, labels
    if isinstance(dataset, ImageBatches):
        dataset.report_bad_images()
    elif state is not None:
        state.report_bad_images()


class BadImagesReport(keras.callbacks.Callback):
    """Reports bad images at the end of each epoch of `fit`, for the
    tf.data pipelines of these states, whose end Keras does not announce (a
    PyDataset reports in its own `on_epoch_end`; its state is None)."""

    def __init__(self, *states: PipelineState | None):
        super().__init__()
        self.states = [state for state in states if state is not None]

    def on_epoch_end(self, epoch, logs=None):
        for state in self.states:
            state.report_bad_images()


def _warn_bad_images(index: ImageIndex, reasons: dict[int, str]) -> None:
    names = [
        (reason, image if isinstance(image, str) else f"record {position}")
        for position, reason in sorted(reasons.items())
        for image in [index.images[position]]
    ]
    warnings.warn(
        "Images that went bad after indexing: "
        + skipped_message(index.source, names, len(index)),
        FlowerkitWarning,
        stacklevel=3,
    )


class _DeliveredPositions:
    """Which images a tf.data pass delivered. `ignore_errors` drops an
    element whose file fails to decode, silently as far as Python can see;
    the positions that did not come out of a whole pass are those files."""

    def __init__(self, index: ImageIndex):
        self.index = index
        self.delivered: set[int] = set()

    def record(self, positions) -> bool:
        self.delivered.update(np.asarray(positions).tolist())
        return True

    def report(self) -> None:
        if not self.delivered:
            return  # nothing read since the last report
        missing = set(range(len(self.index))) - self.delivered
        self.delivered = set()
        if missing:
            _warn_bad_images(self.index, {position: "failed to decode" for position in missing})


@dataclasses.dataclass(frozen=True)
class PipelineState:
    """What a tf.data pipeline keeps beside its dataset, never on it (an
    attribute would be lost by any `.map()`): which images each pass
    delivered and, when shuffled, which epoch's order the next pass takes."""

    delivered: _DeliveredPositions
    epochs: EpochCounter | None = None  # shuffled pipelines only

    def report_bad_images(self) -> None:
        """Warns (one `FlowerkitWarning`) about the images that failed to
        decode in the last full pass although they were readable when
        indexed."""
        self.delivered.report()


def one_pass(dataset: BatchSequence):
    """The batches of one pass (one epoch) of `dataset`, in order, loaded
    ahead by its threads."""
    for item in range(len(dataset)):
        yield dataset[item]


def _tf_dataset(index, image_size, batch_size, shuffle, seed):
    import tensorflow as tf

    num_classes = len(index.class_names)
    in_memory = index.in_memory

    def load(image, label, orientation, position):
        data = image if in_memory else tf.io.read_file(image)
        # uint8 whatever the file: 16-bit PNGs are scaled (x >> 8), as
        # decode.to_rgb does; alpha is dropped; a GIF gives its first frame.
        decoded = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        decoded = _tf_orient(decoded, orientation)
        decoded = _tf_crop_to_square(decoded)
        decoded = tf.image.resize(decoded, (image_size, image_size), antialias=True)
        decoded.set_shape((image_size, image_size, 3))
        return decoded, tf.one_hot(label, num_classes), position

    # Each new iteration of a shuffled dataset (Keras starts one per epoch)
    # takes the next epoch's order: the same order the Pillow pipeline and
    # the feature cache use.
    epochs = EpochCounter()
    if in_memory:
        dataset = _tf_records_in_order(index, shuffle, seed, epochs)
    else:
        columns = (
            tf.constant(list(index.images)),
            tf.constant(index.labels),
            tf.constant(index.orientation_array()),
            tf.range(len(index), dtype=tf.int64),
        )
        if shuffle:  # positions, not pixels
            positions = tf.data.Dataset.from_generator(
                lambda: iter(epoch_order(len(index), seed, epochs.next())),
                output_signature=tf.TensorSpec((), tf.int64),
            )
            dataset = positions.map(lambda i: tuple(tf.gather(column, i) for column in columns))
        else:
            dataset = tf.data.Dataset.from_tensor_slices(columns)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # A file that went bad after indexing is dropped, not fatal; the positions
    # that come through tell which (one Python call per batch).
    dataset = dataset.ignore_errors().batch(batch_size)
    delivered = _DeliveredPositions(index)

    def record(images, labels, positions):
        done = tf.py_function(delivered.record, [positions], Tout=tf.bool)
        with tf.control_dependencies([done]):
            return tf.identity(images), labels

    dataset = dataset.map(record).prefetch(tf.data.AUTOTUNE)
    return dataset, PipelineState(delivered, epochs if shuffle else None)


def _tf_records_in_order(index: ImageIndex, shuffle: bool, seed: int, epochs: EpochCounter):
    """(encoded image, label, orientation, position) of an index holding
    encoded images (TFRecords), handed to tf.data one by one from Python
    in each epoch's order: a `tf.constant` of them all would copy the whole
    dataset into the graph, and stop at its 2 GB limit."""
    import tensorflow as tf

    labels, orientations = index.labels, index.orientation_array()

    def elements():
        order = epoch_order(len(index), seed, epochs.next()) if shuffle else range(len(index))
        for position in order:
            yield index.images[position], labels[position], orientations[position], position

    dataset = tf.data.Dataset.from_generator(elements, output_signature=(
        tf.TensorSpec((), tf.string), tf.TensorSpec((), tf.as_dtype(labels.dtype)),
        tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int64)))
    return dataset


class EpochCounter:
    """Which epoch's order a new iteration of a shuffled tf.data pipeline
    takes: the next one, unless `begin_epoch` (called by a callback at each
    epoch's start) has pinned it. Pinning matters under tf.distribute, which
    starts an extra iteration of the dataset when it distributes it."""

    def __init__(self):
        self._iterations = itertools.count()
        self._epochs = itertools.count()
        self._pinned = None

    def next(self) -> int:
        return self._pinned if self._pinned is not None else next(self._iterations)

    def begin_epoch(self) -> None:
        self._pinned = next(self._epochs)


def _tf_orient(image, orientation):
    """`image` turned upright for an EXIF orientation (1..8), exactly as
    decode.apply_orientation does with Pillow."""
    import tensorflow as tf

    def transpose():
        return tf.transpose(image, (1, 0, 2))

    branches = [
        lambda: image,  # 0: not an EXIF value; upright
        lambda: image,  # 1: upright
        lambda: tf.image.flip_left_right(image),  # 2: mirrored
        lambda: tf.image.rot90(image, 2),  # 3: upside down
        lambda: tf.image.flip_up_down(image),  # 4: mirrored, upside down
        transpose,  # 5: mirrored, rotated
        lambda: tf.image.rot90(image, 3),  # 6: rotated 90 degrees clockwise to fix
        lambda: tf.image.rot90(transpose(), 2),  # 7: transverse
        lambda: tf.image.rot90(image, 1),  # 8: rotated 90 degrees anticlockwise to fix
    ]
    return tf.switch_case(tf.clip_by_value(orientation, 0, 8), branches)


def _tf_crop_to_square(image):
    import tensorflow as tf

    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    side = tf.minimum(height, width)
    return tf.image.crop_to_bounding_box(
        image, (height - side) // 2, (width - side) // 2, side, side
    )


def default_workers() -> int:
    """Decoding threads for the Pillow pipeline (Pillow releases the GIL)."""
    return min(8, os.cpu_count() or 1)


@functools.lru_cache(maxsize=16)
def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """One epoch's order: a permutation that depends only on the seed and
    the epoch number (shared with the feature cache's batches, so cached and
    uncached training see the same batches). Cached, read-only: every batch
    of the epoch slices the same array."""
    order = np.random.default_rng((seed, epoch)).permutation(count)
    order.flags.writeable = False
    return order


class BatchSequence(keras.utils.PyDataset):
    """The base of flowerkit's PyDatasets: item `i` is a pure function of `i`,
    loaded ahead in the dataset's own threads.

    Keras's own prefetching (PyDataset workers > 1) is not used. When its
    adapter stops the workers at the end of a pass, it keeps the batches they
    had prefetched and serves them first in the next pass; `fit` reads one
    batch to build the model and stops, so every epoch then began with
    batches of the epoch before, how many depending on thread timing (one
    seed, one process: 0.900, then 0.908 validation accuracy). With
    workers=1 Keras asks for items in order, in one thread.

    A shuffled set (for training) is endless, read by `fit` with
    `steps_per_epoch=len(dataset)`: item i is batch i % len of epoch
    `first_epoch + i // len`, whose order depends only on the seed and that
    epoch, so no prefetching and no order of Keras's calls can mix epochs.
    `EpochStart` sets `first_epoch` to the epoch `fit` starts at (a later
    phase, a resumed run). Subclasses define `load(positions, epoch)`.
    """

    def __init__(self, count: int, batch_size: int, shuffle: bool, seed: int, threads: int):
        super().__init__(workers=1, use_multiprocessing=False)
        self.count = count
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.first_epoch = 0
        self.threads = threads
        self._ahead: dict[tuple[int, int], Future] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self):
        """Batches per epoch."""
        return math.ceil(self.count / self.batch_size)

    @property
    def endless(self) -> bool:
        return self.shuffle

    @property
    def num_batches(self):
        return None if self.endless else len(self)

    def locate(self, item: int) -> tuple[int, int]:
        """(epoch, batch of that epoch) that item `item` is."""
        epoch, batch = divmod(item, len(self))
        if epoch and not self.endless:
            raise IndexError(f"batch {item} of a dataset of {len(self)} batches")
        return self.first_epoch + epoch, batch

    def positions(self, epoch: int, batch: int) -> np.ndarray:
        """Positions of batch `batch` of epoch `epoch`'s order."""
        start = batch * self.batch_size
        stop = min(start + self.batch_size, self.count)
        if not self.shuffle:
            return np.arange(start, stop)
        return epoch_order(self.count, self.seed, epoch)[start:stop]

    def load_batch(self, epoch: int, batch: int):
        return self.load(self.positions(epoch, batch), epoch)

    def load(self, positions, epoch: int = 0):
        raise NotImplementedError

    def __getitem__(self, item):
        key = self.locate(item)
        if self.threads <= 1:
            return self.load_batch(*key)
        # Ahead within this epoch only: after a pass no thread is left working.
        last = min(item + 2 * self.threads, (item // len(self) + 1) * len(self) - 1)
        window = [self.locate(i) for i in range(item, last + 1)]
        with self._lock:
            for stale in self._ahead.keys() - set(window):  # a pass restarted, or another epoch
                self._ahead.pop(stale).cancel()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="flowerkit-batches")
                weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
            for wanted in window:
                if wanted not in self._ahead:
                    self._ahead[wanted] = self._pool.submit(self.load_batch, *wanted)
            future = self._ahead.pop(key)
        return future.result()


class EpochStart(keras.callbacks.Callback):
    """Sets `first_epoch` of endless datasets to the epoch `fit` starts at
    (its initial_epoch, or where BackupAndRestore resumes), before `fit`
    reads the first item of that epoch."""

    def __init__(self, *datasets):
        super().__init__()
        self.datasets = [d for d in datasets if getattr(d, "endless", False)]
        self._started = False

    def on_train_begin(self, logs=None):
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:
            for dataset in self.datasets:
                dataset.first_epoch = epoch
            self._started = True


class ImageBatches(BatchSequence):
    """Batches of decoded images for the JAX and PyTorch backends.

    Decoding runs in threads (Pillow releases the GIL). A shuffled set is
    endless, one order per epoch (`BatchSequence`). A file that fails to
    decode is dropped from its batch and counted; a batch whose every file
    failed becomes one blank image with sample weight 0, which neither
    trains the model nor counts in its metrics (Keras cannot take an empty
    batch, and copying another image would duplicate training data).
    """

    def __init__(self, index: ImageIndex, image_size, batch_size, shuffle=False, seed=0, workers=None):
        super().__init__(len(index), batch_size, shuffle, seed, workers or default_workers())
        self.index = index
        self.image_size = image_size
        self.failed: set[int] = set()
        self._reasons: dict[int, str] = {}
        self._eye = np.eye(len(index.class_names), dtype=np.float32)

    def load(self, positions, epoch: int = 0):
        """(images, one-hot labels) of those positions (any epoch)."""
        images, labels = [], []
        for position in positions:
            image = self._load(position)
            if image is not None:
                images.append(image)
                labels.append(self.index.labels[position])
        if not images:
            blank = np.zeros((1, self.image_size, self.image_size, 3), np.float32)
            return blank, self._eye[:1], np.zeros((1,), np.float32)
        return np.stack(images), self._eye[np.asarray(labels)]

    def _load(self, position):
        try:
            return decode_image(self.index.images[position], self.image_size)
        except ImageProblem as problem:
            self._reasons[int(position)] = problem.reason
        except Exception:
            self._reasons[int(position)] = "failed to decode"
        self.failed.add(int(position))
        return None

    def on_epoch_end(self):
        self.report_bad_images()

    def report_bad_images(self):
        if self.failed:
            _warn_bad_images(self.index, self._reasons)


class ShardedBatches(BatchSequence):
    """One process's part of every global batch of `batches` (an
    ImageBatches or a FeatureBatches), for data-parallel training over
    several processes (`flowerkit.distribute`).

    Global batch B over P processes: process p gets rows [p*B/P, (p+1)*B/P)
    and decodes only those. A shorter (last) batch is padded with zero-weight
    rows to B/P, so every batch has one shape (one compilation) and every
    process runs the same number of steps.
    """

    def __init__(self, batches: BatchSequence, global_batch: int, processes: int = 1, process_index: int = 0):
        super().__init__(batches.count, batches.batch_size, batches.shuffle, batches.seed, batches.threads)
        self.batches = batches
        self.local_batch = global_batch // processes
        self.start = process_index * self.local_batch

    def load_batch(self, epoch: int, batch: int):
        positions = self.batches.positions(epoch, batch)
        mine = positions[self.start : self.start + self.local_batch]
        inputs, labels, *weights = self.batches.load(mine, epoch)
        weights = weights[0] if weights else np.ones(len(inputs), np.float32)
        missing = self.local_batch - len(inputs)
        return tuple(_padded(np.asarray(array), missing) for array in (inputs, labels, weights))

    def on_epoch_end(self):
        self.batches.on_epoch_end()


def _padded(array: np.ndarray, rows: int) -> np.ndarray:
    if rows <= 0:
        return array
    return np.concatenate([array, np.zeros((rows, *array.shape[1:]), array.dtype)])
