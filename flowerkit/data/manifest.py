"""The dataset manifest: what one pass over a source's files learnt about
each image, kept under `$KERAS_HOME/flowerkit/manifests/<key>.npz` so that
the next run reads only the files that are new or changed.

Per file (rows sorted by path): its size and mtime (a row is trusted only
while both still match the file: stat-based, as make and rsync), the EXIF
orientation, SHA-256 of the bytes, the 64-bit perceptual hash of the image
and of 17 crops of it, the mode and size in pixels, or the reason it cannot
be read. Columns are numpy arrays in one uncompressed .npz (~300 bytes a
row with its path).

Many new files (`POOL_FROM`, on `POOL_MIN_CPUS` CPUs or more) are read by
one spawned worker process per CPU (hashing is Python work that holds the
GIL), others in threads; both give the same rows.

Writes take a file lock, merge with what is on disk (a concurrent run may
have added rows), and replace the file atomically (temporary name, then
`os.replace`): a run killed mid-write leaves the previous manifest whole.
A manifest that cannot be read is rebuilt, and one that cannot be written
(full disk, read-only cache) is a warning, never an error. Keras-free."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import multiprocessing
import operator
import os
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from filelock import FileLock

from flowerkit.data.decode import (
    ImageProblem, apply_orientation, check_format, exif_orientation, load_pixels, open_image, to_rgb,
)
from flowerkit.errors import FlowerkitWarning
from flowerkit.keras_home import flowerkit_cache
from flowerkit.processes import process_alive

VERSION = 1
HASH_BYTES = 8  # a 64-bit perceptual hash
# Crops hashed besides the whole image (left, top, right, bottom fractions
# cut off): a copy cropped by up to 10% per side is within a few bits of one
# of them (bench/results/inspect_planted.json).
CROP_BOXES = ((0.05,) * 4,) + tuple(itertools.product((0.025, 0.075), repeat=4))


def manifest_path(source) -> Path:
    """Where the manifest of `source` (a folder or a CSV file) is kept: keyed
    by the manifest's version and the source's absolute path."""
    described = f"{VERSION}\0{os.path.abspath(str(source))}".encode("utf-8", "surrogateescape")
    return flowerkit_cache() / "manifests" / f"{hashlib.sha256(described).hexdigest()[:32]}.npz"


# ---------------------------------------------------------------- one image

_DCT32 = np.cos(np.pi * (2 * np.arange(32)[None, :] + 1) * np.arange(32)[:, None] / 64)


def perceptual_hash(grey32: np.ndarray) -> np.ndarray:
    """pHash: the 8x8 lowest frequencies of the thumbnail's DCT against their
    median (the DC term excluded from the median), packed into 8 bytes; of
    one (32, 32) thumbnail or a stack of them (..., 32, 32)."""
    coefficients = _DCT32[:8] @ grey32 @ _DCT32[:8].T  # the 8x8 lowest frequencies only
    coefficients = coefficients.reshape(*coefficients.shape[:-2], 64)
    median = np.partition(coefficients[..., 1:], 31, axis=-1)[..., 31:32]  # 63 values: the 32nd
    return np.packbits(coefficients > median, axis=-1)


@functools.lru_cache(maxsize=4096)  # a dataset has a few hundred distinct sides at most
def _crop_projection(length: int, start: int, stop: int, size: int = 32) -> np.ndarray:
    """(8, length): pixels start..stop of a row averaged into `size` cells
    (area resampling), then the 8 lowest DCT frequencies of those cells: a
    crop's thumbnail and its DCT in one small product."""
    edges = np.linspace(start, stop, size + 1)
    pixels = np.arange(length)
    overlap = np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels)
    return _DCT32[:8] @ (np.clip(overlap, 0, None) / np.diff(edges)[:, None])


# Crops share their top and bottom cuts (5 distinct pairs for 17 crops):
# each distinct row projection is applied to the pixels once.
_ROW_CUTS = tuple(dict.fromkeys((top, bottom) for _, top, _, bottom in CROP_BOXES))
_ROW_OF_CROP = np.array([_ROW_CUTS.index((top, bottom)) for _, top, _, bottom in CROP_BOXES])


# Cached per side, not per (height, width): rows depend on the height alone
# and columns on the width, and a folder of photos has far more sizes than sides.
@functools.lru_cache(maxsize=1024)
def _row_projections(height: int) -> np.ndarray:
    """(distinct row cuts, 8, height): each cut's projection of the image's rows."""
    return np.asarray([_crop_projection(height, round(height * top), height - round(height * bottom))
                       for top, bottom in _ROW_CUTS])


@functools.lru_cache(maxsize=1024)
def _column_projections(width: int) -> np.ndarray:
    """(crops, width, 8): every crop's projection of the image's columns."""
    return np.asarray([_crop_projection(width, round(width * left), width - round(width * right)).T
                       for left, _, right, _ in CROP_BOXES])


def crop_hashes(grey) -> np.ndarray:
    """(len(CROP_BOXES), 8) pHashes of the crops of a greyscale Pillow image."""
    pixels = np.asarray(grey, np.float64)
    rows, columns = _row_projections(pixels.shape[0]), _column_projections(pixels.shape[1])
    coefficients = (((rows @ pixels)[_ROW_OF_CROP]) @ columns).reshape(len(CROP_BOXES), 64)
    median = np.partition(coefficients[:, 1:], 31, axis=1)[:, 31:32]  # 63 values: the 32nd
    return np.packbits(coefficients > median, axis=1)


def read_record(image):
    """(orientation, sha256 digest, phash, crop hashes, mode, (width, height))
    of one image (path or bytes) from one read and one draft-mode decode: the
    checks of `decode.inspect_image` and the hashes together. Raises
    `ImageProblem`."""
    from PIL import Image

    data = image if isinstance(image, bytes) else _read(image)
    with open_image(data) as opened:
        check_format(opened)
        mode, size = opened.mode, opened.size
        orientation = exif_orientation(opened)
        opened.draft("RGB", (64, 64))  # JPEGs decode DCT-scaled: a fraction of a full decode
        load_pixels(opened)
        try:
            # The same grey pixels as to_rgb's, without its copy of an RGB image;
            # turned upright after (a transpose commutes with a per-pixel conversion).
            grey = (opened if opened.mode == "RGB" else to_rgb(opened)).convert("L")
        except Exception as error:  # Pillow raises many types for broken data
            raise ImageProblem("truncated or corrupt", f"truncated or corrupt image ({error})") from None
    grey = apply_orientation(grey, orientation)
    grey32 = np.asarray(grey.resize((32, 32), Image.BILINEAR), dtype=np.float64)
    return (orientation, hashlib.sha256(data).digest(), perceptual_hash(grey32), crop_hashes(grey),
            mode, size)


def _read(path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except PermissionError:
        raise ImageProblem("permission denied", "permission denied") from None
    except OSError as error:
        raise ImageProblem("unreadable", f"cannot read: {error.strerror or error}") from None


def safe_record(image):
    """`read_record`, or the `ImageProblem` it raised."""
    try:
        return read_record(image)
    except ImageProblem as problem:
        return problem
    except Exception as error:  # a Pillow failure outside its usual errors
        return ImageProblem("unreadable", f"cannot read: {error}")


# ---------------------------------------------------------------- the table

@dataclasses.dataclass(frozen=True)
class Manifest:
    """Rows sorted by `paths` (utf-8 bytes); `reasons` is "" for readable images."""

    paths: np.ndarray  # (n,) bytes
    sizes: np.ndarray  # (n,) int64, bytes on disk
    mtimes: np.ndarray  # (n,) int64, st_mtime_ns
    orientations: np.ndarray  # (n,) int8, 1..8
    content: np.ndarray  # (n, 32) uint8, SHA-256
    phash: np.ndarray  # (n, 8) uint8
    crops: np.ndarray  # (n, len(CROP_BOXES), 8) uint8: pHashes of crops
    modes: np.ndarray  # (n,) bytes, e.g. b"RGB"
    pixels: np.ndarray  # (n, 2) int32: width, height
    reasons: np.ndarray  # (n,) bytes, why unreadable (b"" if readable)

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, rows) -> "Manifest":
        return Manifest(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})

    def holds_exactly(self, paths: np.ndarray, stats: np.ndarray) -> bool:
        """Whether these rows are those of `paths` in this order, each still
        fresh (`stats`: (size, mtime) per path): whole-array comparisons."""
        return (len(self) == len(paths) and np.array_equal(self.paths, paths)
                and np.array_equal(self.sizes, stats[:, 0]) and np.array_equal(self.mtimes, stats[:, 1]))

    def find(self, paths: np.ndarray, sizes, mtimes) -> tuple[np.ndarray, np.ndarray]:
        """(row per path, whether that row is still fresh): a path whose file
        changed size or mtime, or that is not here, is not fresh."""
        if not len(self):
            return np.zeros(len(paths), np.int64), np.zeros(len(paths), bool)
        rows = np.minimum(np.searchsorted(self.paths, paths), len(self) - 1)
        fresh = (self.paths[rows] == paths) & (self.sizes[rows] == sizes) & (self.mtimes[rows] == mtimes)
        return rows, fresh


@dataclasses.dataclass(frozen=True)
class Rows:
    """Some rows of a manifest, gathered only when a column is read: an
    index's subsets (the split, a sample) keep their rows without copying
    every column of a million rows each time."""

    table: Manifest
    positions: np.ndarray  # int64 rows of `table`, in order

    @classmethod
    def of(cls, rows: "Manifest | Rows") -> "Rows":
        return rows if isinstance(rows, Rows) else cls(rows, np.arange(len(rows)))

    def __len__(self) -> int:
        return len(self.positions)

    def __getattr__(self, column: str) -> np.ndarray:
        if column.startswith("__"):  # copy and pickle probe special names
            raise AttributeError(column)
        return getattr(self.table, column)[self.positions]

    def take(self, rows) -> "Rows":
        return Rows(self.table, self.positions[rows])


def empty() -> Manifest:
    return Manifest(
        paths=np.zeros(0, "S1"), sizes=np.zeros(0, np.int64), mtimes=np.zeros(0, np.int64),
        orientations=np.zeros(0, np.int8), content=np.zeros((0, 32), np.uint8),
        phash=np.zeros((0, HASH_BYTES), np.uint8),
        crops=np.zeros((0, len(CROP_BOXES), HASH_BYTES), np.uint8), modes=np.zeros(0, "S1"),
        pixels=np.zeros((0, 2), np.int32), reasons=np.zeros(0, "S1"),
    )


def encode_paths(paths) -> np.ndarray:
    """Paths as a numpy bytes array (utf-8; undecodable names kept as is)."""
    if isinstance(paths, np.ndarray) and paths.dtype.kind == "S":
        return paths
    if not all(map(str.__instancecheck__, paths)):  # Path objects
        paths = list(map(str, paths))
    return np.array(list(map(_ENCODE, paths)), dtype=bytes)  # a C loop, no bytecode per path


_ENCODE = operator.methodcaller("encode", "utf-8", "surrogateescape")


def build(paths, sizes, mtimes, records, sort: bool = True) -> Manifest:
    """A manifest of new rows from `safe_record` results; `sort=False`
    keeps their order (rows of images that have no path)."""
    count = len(records)
    table = {
        "orientations": np.ones(count, np.int8), "content": np.zeros((count, 32), np.uint8),
        "phash": np.zeros((count, HASH_BYTES), np.uint8), "pixels": np.zeros((count, 2), np.int32),
        "crops": np.zeros((count, len(CROP_BOXES), HASH_BYTES), np.uint8),
    }
    modes, reasons = [], []
    for row, record in enumerate(records):
        if isinstance(record, ImageProblem):
            modes.append(b"")
            reasons.append(record.reason.encode())
            continue
        orientation, digest, phash, crops, mode, size = record
        table["orientations"][row] = orientation
        table["crops"][row] = crops
        table["content"][row] = np.frombuffer(digest, np.uint8)
        table["phash"][row] = phash
        table["pixels"][row] = size
        modes.append(mode.encode())
        reasons.append(b"")
    manifest = Manifest(
        paths=encode_paths(paths), sizes=np.asarray(sizes, np.int64).reshape(count),
        mtimes=np.asarray(mtimes, np.int64).reshape(count),
        modes=np.array(modes, dtype=bytes) if count else np.zeros(0, "S1"),
        reasons=np.array(reasons, dtype=bytes) if count else np.zeros(0, "S1"), **table,
    )
    return manifest.take(np.argsort(manifest.paths, kind="stable")) if sort else manifest


def stacked(parts) -> Manifest:
    """The rows of `parts` one after another (in no sorted order)."""
    return Manifest(**{f.name: np.concatenate([getattr(part, f.name) for part in parts])
                       for f in dataclasses.fields(Manifest)})


def merge(older: Manifest, newer: Manifest) -> Manifest:
    """Rows of both, sorted by path; a path in both keeps `newer`'s row."""
    both = stacked([older, newer])
    order = np.argsort(both.paths, kind="stable")  # older first among equal paths
    paths = both.paths[order]
    last = np.ones(len(order), bool)
    last[:-1] = paths[1:] != paths[:-1]
    return both.take(order[last])


# ---------------------------------------------------------------- on disk

def load(source) -> Manifest:
    """The manifest of `source`, or an empty one (none yet, or unreadable)."""
    path = manifest_path(source)
    try:
        with np.load(path, allow_pickle=False) as stored:
            if int(stored["version"]) != VERSION:
                return empty()
            return Manifest(**{f.name: stored[f.name] for f in dataclasses.fields(Manifest)})
    except Exception:  # absent, truncated by a full disk, an older layout: rebuild
        return empty()


def save(source, rows: Manifest, keep: np.ndarray | None = None) -> None:
    """Merges `rows` into the manifest of `source` on disk; with `keep`
    (sorted paths), rows of other paths (deleted files) are dropped."""
    path = manifest_path(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        merged = merge(load(source), rows)
        if keep is not None:
            merged = merged.take(np.flatnonzero(np.isin(merged.paths, keep)))
        _remove_orphans(path)
        with replaced_atomically(path) as stream:
            np.savez(stream, version=np.int64(VERSION),
                     **{f.name: getattr(merged, f.name) for f in dataclasses.fields(merged)})


@contextlib.contextmanager
def replaced_atomically(path: Path):
    """A binary stream whose content replaces `path` when the block ends:
    written to a temporary file beside it (`.<name>.<pid>-…`, which
    `_remove_orphans` clears after a kill), synced, then renamed over it.
    An error leaves `path` as it was."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _remove_orphans(path: Path) -> None:
    """Temporary files of writers killed before their rename (kill -9)."""
    for orphan in path.parent.glob(f".{path.name}.*"):
        pid = orphan.name[len(path.name) + 2 :].partition("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            orphan.unlink(missing_ok=True)


def refresh(source, images, stats, progress=None, workers: int = 4, whole: bool = True,
            processes: int | None = None) -> Manifest:
    """The manifest rows of `images` (paths; `stats`: their (size, mtime)
    pairs), aligned with them: fresh rows from disk, the others read now
    (counted on `progress`, a `flowerkit.progress.Stage`; `workers` and
    `processes` as in `read_files`). `whole`: `images` are all of the
    source, so rows of other files (deleted) are dropped."""
    stored = load(source)
    paths = encode_paths(images)
    stats = np.asarray(stats, np.int64).reshape(len(paths), 2)
    if stored.holds_exactly(paths, stats):  # an unchanged folder: no search, no copy
        if progress is not None:
            progress.update(len(paths))
        return stored
    rows, fresh = stored.find(paths, stats[:, 0], stats[:, 1])
    if progress is not None:
        progress.update(int(fresh.sum()))
    stale = np.flatnonzero(~fresh)
    deleted = whole and len(stored) > len(np.unique(rows[fresh]))
    if not len(stale) and not deleted:
        return stored.take(rows)
    read = read_files([images[i] for i in stale], stats[stale], progress, workers, processes)
    try:
        save(source, read, keep=np.unique(paths) if whole else None)
    except OSError as error:  # a full disk or a read-only cache: slower next time, not wrong
        warnings.warn(f"Could not keep the manifest of {source} in {manifest_path(source).parent} "
                      f"({error}); the next run reads these files again.", FlowerkitWarning, stacklevel=3)
    stored = merge(stored, read)
    return stored.take(stored.find(paths, stats[:, 0], stats[:, 1])[0])


# ---------------------------------------------------------------- reading files

def read_files(images, stats, progress=None, workers: int = 4, processes: int | None = None) -> Manifest:
    """Rows of the files `images` (`stats`: their (size, mtime) pairs),
    sorted by path. Many files are read by `processes` worker processes
    (default: one per CPU from `POOL_FROM` files and `POOL_MIN_CPUS` CPUs
    on; per-image Python work holds the GIL, so threads alone use about one
    core), a few by `workers` threads (Pillow releases the GIL while decoding)."""
    stats = np.asarray(stats, np.int64).reshape(len(images), 2)
    if processes is None:
        cpus = _cpu_count()
        processes = cpus if len(images) >= POOL_FROM and cpus >= POOL_MIN_CPUS else 1
    parts, left = [], np.arange(len(images))
    if processes > 1 and len(images) > 1:
        parts, left = _read_in_processes(images, stats, progress, processes)
    if len(left):
        parts.append(_read_in_threads([images[i] for i in left], stats[left], progress, workers))
    rows = stacked([empty(), *parts])
    return rows.take(np.argsort(rows.paths, kind="stable"))


POOL_FROM = 2000  # fewer new files are read in threads: starting processes costs ~1 s
# Two CPUs are enough: on an idle 2-CPU machine two processes read 20,000
# small JPEGs 2.5x as fast as threads and the 3,303 photos 1.25x (the hashes'
# numpy steps hold the GIL). Only an oversubscribed machine favoured threads
# (bench/results/manifest_cold.json, measured with other jobs running).
POOL_MIN_CPUS = 2
POOL_CHUNK = 256  # files per task sent to a worker process
THREAD_CHUNK = 32  # files per task of a thread


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _read_in_threads(images, stats, progress, workers: int) -> Manifest:
    """Rows read by `workers` threads, a chunk of files per task (a task
    per file costs as much as hashing a small image)."""
    chunks = [images[start : start + THREAD_CHUNK] for start in range(0, len(images), THREAD_CHUNK)]
    records = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for chunk in pool.map(_safe_records, chunks):
            records.extend(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return build(images, stats[:, 0], stats[:, 1], records, sort=False)


def _safe_records(images) -> list:
    return [safe_record(image) for image in images]


def _read_in_processes(images, stats, progress, processes: int) -> tuple[list[Manifest], np.ndarray]:
    """Rows read by spawned processes (never forked: the parent may hold
    JAX's or TensorFlow's threads), a chunk of files per task; and the
    positions of the files left unread if the workers stopped."""
    chunk = max(1, min(POOL_CHUNK, len(images) // (4 * processes)))  # a few tasks a worker at least
    parts, done = [], np.zeros(len(images), bool)
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            tasks = {pool.submit(_read_chunk, list(images[s : s + chunk]), stats[s : s + chunk]): s
                     for s in range(0, len(images), chunk)}
            for task in as_completed(tasks):
                parts.append(task.result())
                done[tasks[task] : tasks[task] + chunk] = True
                if progress is not None:
                    progress.update(len(parts[-1]))
    except BrokenProcessPool as error:  # a worker killed, or an unguarded __main__ re-run by spawn
        warnings.warn(f"Reading the remaining images in this process: the worker processes stopped "
                      f"({error}). A script that calls flowerkit at import time needs "
                      f"`if __name__ == \"__main__\":`.", FlowerkitWarning, stacklevel=2)
    return parts, np.flatnonzero(~done)


def _read_chunk(images, stats) -> Manifest:
    """One worker process's task: the rows of some files, in order."""
    return build(images, stats[:, 0], stats[:, 1], _safe_records(images), sort=False)
