"""Where images come from: a class-per-folder tree, the tf_flowers download,
or the codelab's TFRecords. Every source becomes an `ImageIndex`: the images
(files, or encoded bytes for TFRecords) with integer labels and class names,
already checked so that unreadable files are skipped once, here, with a
warning. Splitting and sampling an index live here too."""

from __future__ import annotations

import dataclasses
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from flowerkit.data.decode import is_readable_image
from flowerkit.errors import FlowerkitError, FlowerkitWarning

TF_FLOWERS_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
)
# Pinned from TensorFlow Datasets' url_checksums/tf_flowers.txt (228,813,984 bytes).
TF_FLOWERS_SHA256 = "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"
CODELAB_TFRECORDS = "gs://flowers-public/tfrecords-jpeg-192x192-2/*.tfrec"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass(frozen=True)
class ImageIndex:
    """Images and their labels, before any decoding.

    Each entry of `images` is what the decoders open: a file path (str), or
    the encoded bytes of an image where the source has no files (TFRecords
    are read into memory).
    """

    class_names: tuple[str, ...]
    labels: np.ndarray
    images: tuple[str | bytes, ...]
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        return bool(self.images) and isinstance(self.images[0], bytes)

    def subset(self, indices) -> "ImageIndex":
        indices = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            labels=self.labels[indices],
            images=tuple(self.images[i] for i in indices),
        )

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return dict(zip(self.class_names, counts.tolist()))


def index_source(source: str | None) -> ImageIndex:
    """Resolves a data source string to an `ImageIndex`.

    None or "tf_flowers": download (once) into the Keras cache. A path or
    glob ending in .tfrec/.tfrecord, or any gs:// URL: the codelab's
    TFRecords. Anything else: a folder with one subfolder per class.
    """
    if source in (None, "", "tf_flowers"):
        return index_folder(download_tf_flowers())
    if source == "codelab_tfrecords":
        source = CODELAB_TFRECORDS
    if source.startswith("gs://") or source.rstrip("*").endswith((".tfrec", ".tfrecord")):
        return read_tfrecords(source)
    return index_folder(source)


def download_tf_flowers() -> Path:
    """tf_flowers (flower_photos.tgz) in the Keras cache, downloaded once and
    checked against its pinned SHA-256. Returns the class-per-folder root."""
    import keras

    # FLOWERKIT_TF_FLOWERS_URL points at a mirror (same archive, same hash).
    url = os.environ.get("FLOWERKIT_TF_FLOWERS_URL", TF_FLOWERS_URL)
    try:
        extracted = keras.utils.get_file(
            "flower_photos.tgz",
            origin=url,
            file_hash=TF_FLOWERS_SHA256,
            hash_algorithm="sha256",
            extract=True,
        )
    except Exception as error:  # get_file raises bare Exception on fetch failures
        raise FlowerkitError(
            f"Could not download tf_flowers from {url} ({error}). "
            "Offline? Pass --data DIR with one subfolder per class "
            "(e.g. --data ../shared/data/flower_photos) and, for pretrained weights, "
            "fill $KERAS_HOME/models (e.g. from ../shared/weights/keras_home/models) "
            "or pass --weights PATH."
        ) from None
    root = Path(extracted)
    return root / "flower_photos" if (root / "flower_photos").is_dir() else root


def index_folder(root, class_names=()) -> ImageIndex:
    """Indexes a folder with one subfolder of images per class.

    Class names are the subfolder names in sorted order, unless `class_names`
    fixes them (and their order). Unreadable files are skipped with one
    `FlowerkitWarning` that counts them.
    """
    root = Path(root)
    if not root.exists():
        raise FlowerkitError(f"Data folder not found: {root}")
    if not root.is_dir():
        raise FlowerkitError(f"Data source is not a folder: {root}")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if class_names:
        missing = [name for name in class_names if name not in folders]
        if missing:
            raise FlowerkitError(f"Class folder(s) {missing} not found in {root}.")
        folders = list(class_names)
    if len(folders) < 2:
        raise FlowerkitError(
            f"Found {len(folders)} class folder(s) in {root}; need at least two "
            "(one subfolder of images per class)."
        )
    candidates, labels = [], []
    for label, name in enumerate(folders):
        files = sorted(
            str(p)
            for p in (root / name).rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        candidates += files
        labels += [label] * len(files)
    with ThreadPoolExecutor(max_workers=4) as pool:
        readable = list(pool.map(is_readable_image, candidates))
    _warn_skipped(root, [c for c, ok in zip(candidates, readable) if not ok])
    keep = np.flatnonzero(readable)
    labels = np.asarray(labels, dtype=np.int32)[keep]
    index = ImageIndex(
        class_names=tuple(folders),
        labels=labels,
        images=tuple(candidates[i] for i in keep),
        source=str(root),
    )
    _check_not_empty(index)
    return index


def read_tfrecords(pattern: str) -> ImageIndex:
    """Reads TFRecords in the codelab's format into memory.

    Features: `image` (JPEG bytes) and `class` (int64) are required; `label`
    (class name bytes) names the classes when present. `size` and
    `one_hot_class` are redundant and ignored.
    """
    try:
        import tensorflow as tf
    except ImportError:
        raise FlowerkitError(
            "Reading TFRecords needs TensorFlow, which is not installed: "
            "pip install tensorflow  (or use a folder of images with --data DIR)."
        ) from None
    try:
        files = sorted(tf.io.gfile.glob(pattern))
    except tf.errors.OpError as error:
        raise FlowerkitError(f"Cannot list TFRecords {pattern}: {error.message}") from None
    if not files:
        raise FlowerkitError(f"No TFRecord files match {pattern}")
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "class": tf.io.FixedLenFeature([], tf.int64),
        "label": tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    images, classes, names, damaged = [], [], {}, []
    for file in files:
        try:
            for record in tf.data.TFRecordDataset(file):
                try:
                    example = tf.io.parse_single_example(record, features)
                except tf.errors.InvalidArgumentError:
                    damaged.append(f"{file} (record without image/class)")
                    continue
                data = example["image"].numpy()
                if not is_readable_image(data):
                    damaged.append(f"{file} (undecodable image)")
                    continue
                label = int(example["class"].numpy())
                images.append(data)
                classes.append(label)
                names.setdefault(label, example["label"].numpy().decode() or f"class_{label}")
        except tf.errors.DataLossError:
            damaged.append(f"{file} (truncated file: later records lost)")
    _warn_skipped(pattern, damaged)
    if not images:
        raise FlowerkitError(f"No readable records in TFRecords {pattern}")
    num_classes = max(names) + 1
    index = ImageIndex(
        class_names=tuple(names.get(i, f"class_{i}") for i in range(num_classes)),
        labels=np.asarray(classes, dtype=np.int32),
        images=tuple(images),
        source=pattern,
    )
    _check_not_empty(index)
    return index


def _warn_skipped(source, skipped: list[str]) -> None:
    if skipped:
        examples = ", ".join(str(s) for s in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warnings.warn(
            f"Skipped {len(skipped)} unreadable image(s) in {source}: {examples}{more}",
            FlowerkitWarning,
            stacklevel=3,
        )


def _check_not_empty(index: ImageIndex) -> None:
    if len(index) == 0:
        raise FlowerkitError(f"No readable images found in {index.source}")
    empty = [name for name, count in index.class_counts().items() if count == 0]
    if len(empty) > len(index.class_names) - 2:
        raise FlowerkitError(
            f"Need images in at least two classes; class(es) {empty} in "
            f"{index.source} have none."
        )


def split_index(index: ImageIndex, validation_fraction: float, seed: int):
    """Deterministic stratified split: the same files land in validation for
    a given seed, whatever the backend or filesystem order."""
    rng = np.random.default_rng(seed)
    validation = []
    for label in range(len(index.class_names)):
        members = rng.permutation(np.flatnonzero(index.labels == label))
        validation += members[: int(round(len(members) * validation_fraction))].tolist()
    validation = np.sort(np.asarray(validation, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(index)), validation)
    if len(train) == 0 or len(validation) == 0:
        raise FlowerkitError(
            f"{len(index)} images cannot be split {1 - validation_fraction:.0%}/"
            f"{validation_fraction:.0%} into non-empty training and validation sets."
        )
    return index.subset(train), index.subset(validation)


def sample_index(index: ImageIndex, count: int, seed: int) -> ImageIndex:
    """A seeded random subset of `count` images (all if there are fewer)."""
    if count >= len(index):
        return index
    rng = np.random.default_rng(seed)
    return index.subset(np.sort(rng.choice(len(index), size=count, replace=False)))
