"""Content and perceptual hashes of every image of an index, with what the
loader notices about each (mode, size), and the search for close hashes.

    content:  SHA-256 of the file's bytes (exact duplicates)
    phash:    64-bit DCT hash of a 32x32 greyscale thumbnail (near duplicates:
              resized and re-encoded copies stay within a few bits)
    crops:    the same hash of 17 crops (a copy cropped by up to 10% per
              side is within a few bits of one of them)

Files are read once per change: their rows come from the source's manifest
(`flowerkit.data.manifest`), which reads only new or changed files. Images
held in memory (TFRecords) are hashed on every call. Keras-free."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from flowerkit import progress
from flowerkit.data import manifest
from flowerkit.data.sources import ImageIndex
from flowerkit.keras_home import flowerkit_cache

HASH_BITS = 64
# Modes that the loader converts to RGB (counted as "odd" in the report).
PLAIN_MODES = ("RGB",)
PAIRS_VERSION = 1  # of `close_pairs`'s results as kept by `kept_close_pairs`
KEPT_PAIRS = 16  # newest search results kept: one per dataset and threshold in use


@dataclasses.dataclass(frozen=True)
class ImageHashes:
    """Per image (aligned with the index): hashes, and what was read."""

    content: np.ndarray  # (n, 32) uint8: SHA-256
    phash: np.ndarray  # (n, 8) uint8: 64 bits
    modes: np.ndarray  # (n,) str ("" where unreadable)
    sizes: np.ndarray  # (n, 2) int: width, height
    problems: dict  # position -> reason, for images that broke after indexing
    crops: np.ndarray | None = None  # (n, crops, 8) uint8: pHashes of crops (manifest.CROP_BOXES)

    def __len__(self) -> int:
        return len(self.content)


def hash_index(index: ImageIndex, workers: int | None = None, quiet: bool | None = None) -> ImageHashes:
    """Hashes of every image of `index`: from the manifest of its source for
    files (reading only those new or changed since), else decoded now in a
    thread pool (Pillow releases the GIL). `quiet` as in `progress.stage`."""
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with progress.stage("Hashing images", total=len(index), quiet=quiet) as bar:
        if index.in_memory or not index.source:
            records = []
            with ThreadPoolExecutor(max_workers=workers) as pool:
                # Positions, not bytes: map submits every argument at once, and
                # TFRecord images are read from their shards by the workers.
                images = index.images
                for record in pool.map(lambda position: manifest.safe_record(images[position]),
                                       range(len(images)), chunksize=16):
                    records.append(record)
                    bar.update()
            unknown = np.zeros(len(records))
            rows = manifest.build([""] * len(records), unknown, unknown, records, sort=False)
        elif index.has_rows:
            rows = index.rows  # read (or found fresh) when the folder was indexed
            bar.update(len(rows))
        else:
            rows = _file_rows(index, bar, workers)
    reasons = rows.reasons  # once: a subset's rows gather a column on each read
    problems = {int(p): reasons[p].decode() for p in np.flatnonzero(reasons != b"")}
    return ImageHashes(rows.content, rows.phash, rows.modes.astype(str), rows.pixels.astype(np.int64),
                       problems, rows.crops)


def _file_rows(index: ImageIndex, bar, workers: int) -> manifest.Manifest:
    """Manifest rows of an index of files; a file that can no longer be
    stat'ed gets an unreadable row."""
    stats = np.zeros((len(index), 2), np.int64)
    for position, path in enumerate(index.images):
        try:
            status = os.stat(path)
        except OSError:
            continue  # gone since indexing: read now, and kept as unreadable
        stats[position] = status.st_size, status.st_mtime_ns
    return manifest.refresh(index.source, index.images, stats, progress=bar, workers=workers,
                            whole=False)


def pack_bits(phash: np.ndarray) -> np.ndarray:
    """(n, 8) uint8 hashes as (n,) uint64 (big-endian: bit order kept)."""
    return np.ascontiguousarray(phash).view(">u8").ravel().astype(np.uint64)


_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (same shape), with no temporary larger than
    its input (unpacking to bits took 64 bytes per value: 11 GB for the
    crop distances of 10 M candidate pairs)."""
    values = np.ascontiguousarray(values, np.uint64)
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(values).astype(np.int64)
    return _BYTE_BITS[values.view(np.uint8)].reshape(*values.shape, 8).sum(axis=-1, dtype=np.int64)


def close_pairs(phash: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position pairs (i < j) of distinct hashes at most `threshold` bits
    apart, and their distances: multi-index hashing (Norouzi et al.,
    CVPR 2012). Split into threshold // 2 + 1 substrings, two hashes within
    `threshold` bits agree on some substring in all but at most one bit, so
    exact lookups of each substring and its one-bit neighbours in a sorted
    table find every such pair. Near-linear where hashes spread (each
    lookup meets few others); identical hashes are left to the caller."""
    codes = pack_bits(phash)
    count = len(codes)
    parts = threshold // 2 + 1
    flips = threshold // parts  # 0 or 1 differing bits to look up around each substring
    bounds = np.linspace(0, HASH_BITS, parts + 1).astype(int)
    found = [np.zeros(0, np.int64)] * 3
    for start, end in zip(bounds[:-1], bounds[1:]):
        width = int(end - start)
        keys = (codes >> np.uint64(HASH_BITS - end)) & np.uint64((1 << width) - 1)
        order = np.argsort(keys, kind="stable")
        table = _BucketTable(keys[order], width)
        for mask in [0] + ([1 << bit for bit in range(width)] if flips else []):
            first, second = _lookups(keys ^ np.uint64(mask), table, order)
            bits = popcount(codes[first] ^ codes[second])
            near = bits <= threshold
            found = [np.concatenate([a, b[near]]) for a, b in zip(found, (first, second, bits))]
    first, second, bits = found
    _, unique = np.unique(first * count + second, return_index=True)
    return first[unique], second[unique], bits[unique]


def kept_close_pairs(phash: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`close_pairs`, kept under `$KERAS_HOME/flowerkit/pairs/` and keyed by
    the hashes and the threshold: on an unchanged dataset the search is one
    small file read. A result that cannot be read or kept is searched again."""
    codes = np.ascontiguousarray(phash, np.uint8)
    described = f"{PAIRS_VERSION}\0{threshold}\0{codes.shape}\0".encode() + codes.tobytes()
    path = flowerkit_cache() / "pairs" / f"{hashlib.sha256(described).hexdigest()[:32]}.npy"
    try:
        kept = np.load(path, allow_pickle=False)
        if kept.ndim == 2 and len(kept) == 3:
            return kept[0], kept[1], kept[2]
    except (OSError, ValueError):  # not searched yet, or a damaged file
        pass
    pairs = close_pairs(phash, threshold)
    try:
        _keep_pairs(path, np.stack(pairs).astype(np.int64))
    except OSError:  # a full disk or a read-only cache: slower next time, not wrong
        pass
    return pairs


def _keep_pairs(path, pairs: np.ndarray) -> None:
    """Writes `pairs` atomically (a temporary file renamed), then drops all
    but the newest `KEPT_PAIRS` results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with manifest.replaced_atomically(path) as stream:
        np.save(stream, pairs)
    kept = sorted(path.parent.glob("*.npy"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in kept[KEPT_PAIRS:]:
        old.unlink(missing_ok=True)


class _BucketTable:
    """Where each substring value starts in the sorted keys, and how many
    hold it: a direct table for substrings of up to 24 bits where the keys
    fill it (one read per lookup), else binary search (building the table
    costs ~0.3 s a substring, the whole search's cost below ~100k hashes)."""

    def __init__(self, sorted_keys: np.ndarray, width: int):
        self.sorted_keys = sorted_keys
        self.bounds = None
        if width <= 24 and len(sorted_keys) << 6 >= 1 << width:  # value v's keys: positions bounds[v] .. bounds[v + 1]
            counts = np.bincount(sorted_keys.astype(np.intp), minlength=1 << width)
            self.bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)

    def find(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.bounds is not None:
            targets = targets.astype(np.intp)
            low = self.bounds[targets]
            return low, self.bounds[targets + 1] - low
        low = np.searchsorted(self.sorted_keys, targets, "left")
        return low, np.searchsorted(self.sorted_keys, targets, "right") - low


def _lookups(targets: np.ndarray, table: _BucketTable, order: np.ndarray):
    """Pairs (i, j), i < j, with sorted key j equal to targets[i]."""
    low, counts = table.find(targets)
    first = np.repeat(np.arange(len(targets)), counts)
    offsets = np.arange(len(first)) - np.repeat(np.cumsum(counts) - counts, counts)
    second = order[np.repeat(low, counts) + offsets]
    keep = first < second
    return first[keep], second[keep]
