"""Frozen-backbone features, computed once and reused (the "bottleneck"
cache of TF Hub's retrain.py).

A frozen backbone maps the same image to the same features every epoch, so
the head can train on features computed once per image and augmentation
view (the image and its horizontal flip). The cache lives in
`$KERAS_HOME/flowerkit/features/<features key>/<subset key>/`: the first
hashes what maps an image to its features (backbone and its options, weights
(file hash or preset), image size, precision, decoding pipeline, backend,
Keras version), the second the images with their sizes and modification
times, labels and views. Any change is a new key, so a stale cache is never
read; a subset whose images all sit in caches of the same features (inspect's
whole folder after train's split) is gathered from them.

Features are written and read memory-mapped, in batches, never whole: at a
million images they are gigabytes. A recipe whose cache would not fit (a
`flatten` head caches whole feature maps) is refused before the feature pass.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import shutil
from pathlib import Path

import keras
import numpy as np

from flowerkit import progress
from flowerkit.backends.devices import backend
from flowerkit.backends.policy import resolve_precision
from flowerkit.config.recipe import Recipe
from flowerkit.data.loading import Subset
from flowerkit.data.pipelines import BatchSequence, build_dataset
from flowerkit.distribute import sharding
from flowerkit.distribute.plan import Plan
from flowerkit.errors import FlowerkitError
from flowerkit.keras_home import flowerkit_cache
from flowerkit.processes import process_alive

CACHE_VERSION = 2  # 2: integer labels (one-hot is 4 GB at 1M images x 1,000 classes)
# The largest cache computed: beyond it (or beyond the free disk) the recipe is refused.
MAX_CACHE_BYTES = 64 * 1024**3
# Rows copied at a time when a cache is cut short (images that broke after indexing).
COPY_ROWS = 4096


@dataclasses.dataclass(frozen=True)
class CachedFeatures:
    """Features of one subset: `features[view, image]` (memory-mapped) and
    each image's class."""

    features: np.ndarray  # (views, images, *feature_shape), float32
    classes: np.ndarray  # (images,), int32
    class_count: int
    folder: Path
    computed: bool  # False: read from an earlier run's cache

    @property
    def views(self) -> int:
        return self.features.shape[0]

    def one_hot(self, positions) -> np.ndarray:
        return np.eye(self.class_count, dtype=np.float32)[self.classes[positions]]


def cache_root() -> Path:
    """`flowerkit/features` in the Keras cache folder, beside the manifests."""
    return flowerkit_cache() / "features"


def cache_key(recipe: Recipe, subset: Subset, views: int, pipeline: str, fingerprints=None) -> str:
    """`<features key>/<subset key>`: what computes the features (see
    `features_key`), then the subset's images, labels and views.
    fingerprints: `image_fingerprints` of the subset, when already known."""
    if fingerprints is None:
        fingerprints = image_fingerprints(subset.index.images)
    digest = hashlib.sha256()
    described = {"views": views, "class_names": list(subset.index.class_names)}
    digest.update(json.dumps(described, sort_keys=True).encode())
    digest.update(np.asarray(subset.index.labels, np.int64).tobytes())
    digest.update(fingerprints.tobytes())
    return f"{features_key(recipe, pipeline)}/{digest.hexdigest()[:32]}"


def features_key(recipe: Recipe, pipeline: str) -> str:
    """Hash of what maps an image to its features; not the head's training
    (epochs, learning rate...), so train's caches serve inspect too."""
    described = {
        "version": CACHE_VERSION,
        "backbone": recipe.backbone,
        "backbone_kwargs": dict(recipe.backbone_kwargs),
        "weights": _weights_fingerprint(recipe.weights),
        "image_size": recipe.image_size,
        "precision": resolve_precision(recipe.precision),
        "head": recipe.head,  # "gap" caches pooled features, "flatten" the feature map
        "pipeline": pipeline,
        "backend": backend(),
        "keras": keras.__version__,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def image_fingerprints(images) -> np.ndarray:
    """(images, 32) uint8: each image's SHA-256 of its bytes, or of its
    path, size and modification time."""
    digests = b"".join(hashlib.sha256(_image_fingerprint(image)).digest() for image in images)
    return np.frombuffer(digests, np.uint8).reshape(-1, 32)


def _image_fingerprint(image) -> bytes:
    if isinstance(image, bytes):
        return hashlib.sha256(image).digest()
    stat = os.stat(image)
    return f"{image}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()


def _weights_fingerprint(weights) -> str | None:
    if weights is None or weights == "imagenet" or not Path(weights).exists():
        return weights  # None, the Keras default, or a keras-hub preset name
    path = Path(weights)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def cached_features(
    extractor: keras.Model, recipe: Recipe, subset: Subset, views: int, pipeline: str, verbose=1,
    plan: Plan | None = None,
) -> CachedFeatures:
    """The subset's features, read from the cache or computed into it.

    views: 1 (the images) or 2 (the images and their horizontal flips).
    plan: the device plan (`flowerkit.distribute.plan`) to share the work over.
    """
    fingerprints = image_fingerprints(subset.index.images)
    folder = cache_root() / cache_key(recipe, subset, views, pipeline, fingerprints)
    if views == 1 and plan is None and not (folder / "features.npy").is_file():
        wanted = [fingerprint.tobytes() for fingerprint in fingerprints]
        rows = _cached_rows(folder.parent)
        missing = np.array([i for i, fingerprint in enumerate(wanted) if fingerprint not in rows], np.int64)
        computed_part = 0 < len(missing) <= len(subset) // 2
        if computed_part:
            # Most images are cached already (e.g. train left out a few conflict copies):
            # compute only the others, into a cache of their own, then gather.
            part = Subset(subset.index.subset(missing), dataset=None)
            part_folder = cache_root() / cache_key(recipe, part, 1, pipeline, fingerprints[missing])
            if not (part_folder / "features.npy").is_file():
                check_cache_fits(recipe, extractor.output_shape[1:], len(part), 1)
                _compute_into(part_folder, extractor, recipe, part, 1, pipeline, verbose, None,
                              fingerprints[missing])
            _add_rows(rows, part_folder)
        reused = _from_other_caches(folder.parent, subset, rows, wanted)
        if reused is not None:
            return dataclasses.replace(reused, computed=computed_part)
    # Computing takes every process of a multi-host run: all do, if one must.
    computed = sharding.any_process(not (folder / "features.npy").is_file(), plan)
    if computed:
        check_cache_fits(recipe, extractor.output_shape[1:], len(subset), views)
        _compute_into(folder, extractor, recipe, subset, views, pipeline, verbose, plan, fingerprints)
    return CachedFeatures(
        np.load(folder / "features.npy", mmap_mode="r"),
        np.load(folder / "labels.npy", mmap_mode="r"),
        len(subset.index.class_names), folder, computed,
    )


def _cached_rows(folder: Path) -> dict:
    """Image fingerprint -> (cache folder, row) over the caches of the same features."""
    rows = {}
    for cache in sorted(folder.glob("[!.]*/fingerprints.npy")):
        _add_rows(rows, cache.parent)
    return rows


def _add_rows(rows: dict, cache: Path) -> None:
    """Adds the images of the cache in folder `cache` to `rows` (`_cached_rows`);
    none from a cache cut short by images that broke (it has no fingerprints)."""
    path = cache / "fingerprints.npy"
    if not path.is_file():
        return
    for row, fingerprint in enumerate(np.load(path)):
        rows.setdefault(fingerprint.tobytes(), (cache, row))


def _from_other_caches(folder: Path, subset: Subset, rows: dict,
                       fingerprints: list) -> CachedFeatures | None:
    """The subset's plain-image features gathered from the caches of the same
    features (`rows`, from `_cached_rows`) that hold all its images (their
    `fingerprints`), e.g. inspect's whole folder from train's train and
    validation caches; None if some image is missing."""
    wanted = [rows.get(fingerprint) for fingerprint in fingerprints]
    if not wanted or None in wanted:
        return None
    caches = sorted({cache for cache, _ in wanted})
    number = {cache: i for i, cache in enumerate(caches)}
    cache_of = np.array([number[cache] for cache, _ in wanted])
    rows_wanted = np.array([row for _, row in wanted])
    features = [np.load(cache / "features.npy", mmap_mode="r") for cache in caches]
    gathered = np.empty((1, len(wanted), *features[0].shape[2:]), np.float32)
    for i, saved in enumerate(features):
        positions = cache_of == i
        gathered[0, positions] = saved[0, rows_wanted[positions]]  # view 0: the plain image
    classes = np.asarray(subset.index.labels, np.int32)
    return CachedFeatures(gathered, classes, len(subset.index.class_names), folder, False)


def cache_bytes(feature_shape, images: int, views: int) -> int:
    """Bytes of a float32 cache of `views` x `images` features of `feature_shape`."""
    return 4 * views * images * math.prod(int(d) for d in feature_shape)


def check_cache_fits(recipe: Recipe, feature_shape, images: int, views: int) -> None:
    """Refuses, before any feature is computed, a cache larger than
    MAX_CACHE_BYTES or than the free disk under `cache_root()`."""
    needed = cache_bytes(feature_shape, images, views)
    limit = min(MAX_CACHE_BYTES, _free_bytes(cache_root()))
    if needed <= limit:
        return
    raise FlowerkitError(
        f"The feature cache for {images:,} images x {views} view(s) of {tuple(feature_shape)} features "
        f"would take {_size(needed)}, over the {_size(limit)} available under {cache_root()}; "
        f"use {_instead(recipe, feature_shape, images, views)}."
    )


def _instead(recipe: Recipe, feature_shape, images: int, views: int) -> str:
    """What scales: pooled features where a flatten head caches feature maps."""
    if recipe.head == "flatten" and len(feature_shape) > 1:
        pooled = _size(cache_bytes(feature_shape[-1:], images, views))
        return f"--head gap (pooled features, {pooled}) or --feature-cache off"
    return "--feature-cache off"


def _free_bytes(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _size(count: int) -> str:
    return f"{count / 1024**3:.1f} GiB" if count >= 1024**3 else f"{count / 1024**2:.0f} MiB"


def _stream(verbose):
    return io.StringIO() if not verbose else None  # silent: the line goes nowhere


def _compute_into(folder, extractor, recipe, subset, views, pipeline, verbose, plan, fingerprints) -> None:
    """Runs the extractor over every image (and flip), with a progress bar,
    straight into a memory-mapped file; the folder appears only when done,
    so an interrupted run leaves no half-filled cache behind. `fingerprints`:
    the subset's `image_fingerprints`, saved beside the features."""
    dataset, state = build_dataset(
        subset.index, recipe.image_size, recipe.batch_size, shuffle=False, pipeline=pipeline
    )
    partial = folder.with_name(f".partial-{folder.name}-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    _remove_abandoned(folder)
    partial.mkdir(parents=True)
    shape = (views, len(subset), *extractor.output_shape[1:])
    features = np.lib.format.open_memmap(partial / "features.npy", "w+", np.float32, shape)
    labels = np.lib.format.open_memmap(partial / "labels.npy", "w+", np.int32, (len(subset),))
    filled = 0
    label = f"Caching {recipe.backbone} features" + (" (images and flips)" if views == 2 else "")
    # verbose as `fit` takes it: 0 silent, 2 one line (--quiet), 1 a bar on a terminal.
    quiet = None if verbose == 1 else True
    with progress.stage(label, total=len(subset), quiet=quiet, stream=_stream(verbose)) as bar:
        # Shared out over the plan's devices, if any.
        for outputs, one_hot in sharding.predict_batches(extractor, dataset, views, plan, state):
            stop = filled + len(one_hot)
            for view, output in enumerate(outputs):
                features[view, filled:stop] = output
            labels[filled:stop] = np.argmax(one_hot, axis=-1)
            bar.update(stop - filled)
            filled = stop
    features.flush()
    labels.flush()
    del features, labels
    if filled < len(subset):  # images that broke after indexing: keep what was read
        for name in ("features.npy", "labels.npy"):
            _keep_first_rows(partial / name, filled)
    else:  # rows by image, for other subsets of the same images (`_from_other_caches`)
        np.save(partial / "fingerprints.npy", fingerprints)
    try:
        os.replace(partial, folder)
    except OSError:  # another process finished the same cache first
        shutil.rmtree(partial, ignore_errors=True)


def _keep_first_rows(path: Path, rows: int) -> None:
    """Cuts the saved array at `path` to its first `rows` images (axis 0 for
    labels, 1 for features), copying COPY_ROWS at a time, never whole."""
    source = np.load(path, mmap_mode="r")
    axis = 1 if source.ndim > 1 else 0
    shape = (*source.shape[:axis], rows, *source.shape[axis + 1:])
    shorter = path.with_name("short-" + path.name)
    target = np.lib.format.open_memmap(shorter, "w+", source.dtype, shape)
    for start in range(0, rows, COPY_ROWS):
        rows_now = slice(start, min(start + COPY_ROWS, rows))
        target[(slice(None),) * axis + (rows_now,)] = source[(slice(None),) * axis + (rows_now,)]
    target.flush()
    del source, target
    os.replace(shorter, path)


def _remove_abandoned(folder: Path) -> None:
    """Half-computed caches of this key left by processes that died (a
    crash, `kill -9`): they can be as large as the features themselves."""
    for partial in folder.parent.glob(f".partial-{folder.name}-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


class FeatureBatches(BatchSequence):
    """Batches of cached features for training the head: every epoch each
    image comes as one of its views, drawn at random (a random flip), in the
    image pipeline's order for that epoch (`BatchSequence.positions`)."""

    def __init__(self, cached: CachedFeatures, batch_size: int, shuffle: bool, seed: int):
        # Rows of an array in memory (or mapped): no loader threads needed.
        super().__init__(len(cached.classes), batch_size, shuffle, seed, threads=1)
        self.cached = cached

    def views(self, epoch: int) -> np.ndarray:
        """Which view each image is in epoch `epoch`."""
        return _epoch_views(self.count, self.cached.views if self.shuffle else 1, self.seed, epoch)

    def load(self, positions, epoch: int = 0):
        features = self.cached.features[self.views(epoch)[positions], positions]
        return np.asarray(features, np.float32), self.cached.one_hot(positions)


@functools.lru_cache(maxsize=16)
def _epoch_views(count: int, views: int, seed: int, epoch: int) -> np.ndarray:
    """One epoch's random view per image (all 0 with one view), drawn once
    per epoch rather than per batch; read-only, shared by its batches."""
    drawn = np.random.default_rng((seed, epoch, 1)).integers(0, views, count)
    drawn.flags.writeable = False
    return drawn
