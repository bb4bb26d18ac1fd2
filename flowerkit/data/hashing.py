"""Content and perceptual hashes of every image of an index, with what the
loader notices about each (mode, size), in one cheap decoding pass.

    content:  SHA-256 of the file's bytes (exact duplicates)
    phash:    64-bit DCT hash of a 32x32 greyscale thumbnail (near duplicates:
              resized, re-encoded, lightly cropped copies stay within a few bits)
    dhash:    64-bit difference hash of a 9x8 thumbnail (a second opinion)

JPEGs decode in Pillow's draft mode (DCT-scaled), so hashing costs a small
fraction of a feature pass. Keras-free."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from flowerkit.data.decode import ImageProblem, apply_orientation, exif_orientation, open_image, to_rgb
from flowerkit.data.sources import ImageIndex

HASH_BITS = 64
# Modes that the loader converts to RGB (counted as "odd" in the report).
PLAIN_MODES = ("RGB",)


@dataclasses.dataclass(frozen=True)
class ImageHashes:
    """Per image (aligned with the index): hashes, and what was read."""

    content: tuple[str, ...]  # hex SHA-256
    phash: np.ndarray  # (n, 8) uint8: 64 bits
    dhash: np.ndarray  # (n, 8) uint8
    modes: tuple[str, ...]
    sizes: np.ndarray  # (n, 2) int: width, height
    problems: dict  # position -> reason, for images that broke after indexing

    def __len__(self) -> int:
        return len(self.content)


def _dct_matrix(size: int) -> np.ndarray:
    k = np.arange(size)
    return np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * size))


_DCT32 = _dct_matrix(32)


def perceptual_hash(grey32: np.ndarray) -> np.ndarray:
    """pHash: the 8x8 lowest frequencies of the thumbnail's DCT against their
    median (the DC term excluded from the median), packed into 8 bytes."""
    coefficients = (_DCT32 @ grey32 @ _DCT32.T)[:8, :8].ravel()
    bits = coefficients > np.median(coefficients[1:])
    return np.packbits(bits)


def difference_hash(grey9x8: np.ndarray) -> np.ndarray:
    """dHash: is each pixel brighter than its right neighbour (8 rows x 8)."""
    return np.packbits((grey9x8[:, 1:] > grey9x8[:, :-1]).ravel())


def hash_image(image) -> tuple[str, np.ndarray, np.ndarray, str, tuple[int, int]]:
    """(content hash, phash, dhash, mode, (width, height)) of one image
    (path or bytes). Raises `ImageProblem` for what cannot be read."""
    from PIL import Image

    data = image if isinstance(image, bytes) else _read(image)
    content = hashlib.sha256(data).hexdigest()
    with open_image(data) as opened:
        mode, size = opened.mode, opened.size
        orientation = exif_orientation(opened)
        opened.draft("RGB", (64, 64))
        try:
            rgb = apply_orientation(to_rgb(opened), orientation)
        except Exception as error:  # Pillow raises many types for broken data
            raise ImageProblem("truncated or corrupt", f"truncated or corrupt image ({error})") from None
    grey = rgb.convert("L")
    grey32 = np.asarray(grey.resize((32, 32), Image.BILINEAR), dtype=np.float64)
    grey9 = np.asarray(grey.resize((9, 8), Image.BILINEAR), dtype=np.int16)
    return content, perceptual_hash(grey32), difference_hash(grey9), mode, size


def _read(path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise ImageProblem("unreadable", f"cannot read: {error.strerror or error}") from None


def _safe_hash(image):
    try:
        return hash_image(image)
    except ImageProblem as problem:
        return problem


def hash_index(index: ImageIndex, workers: int | None = None) -> ImageHashes:
    """Hashes of every image of `index`, decoded in a thread pool (Pillow
    releases the GIL while decoding)."""
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_safe_hash, index.images, chunksize=16))
    count = len(results)
    phash = np.zeros((count, 8), np.uint8)
    dhash = np.zeros((count, 8), np.uint8)
    sizes = np.zeros((count, 2), np.int64)
    content, modes, problems = [], [], {}
    for position, result in enumerate(results):
        if isinstance(result, ImageProblem):
            problems[position] = result.reason
            content.append(f"unreadable:{position}")  # never equal to another image
            modes.append("")
            continue
        digest, p, d, mode, size = result
        content.append(digest)
        phash[position], dhash[position], sizes[position] = p, d, size
        modes.append(mode)
    return ImageHashes(tuple(content), phash, dhash, tuple(modes), sizes, problems)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming_pairs(hashes: np.ndarray, threshold: int, chunk: int = 1024):
    """Index pairs (i < j) whose packed hashes differ in at most `threshold`
    bits, and their distances, in chunks of rows (memory O(chunk * n))."""
    count = len(hashes)
    firsts, seconds, distances = [], [], []
    for start in range(0, count, chunk):
        block = hashes[start : start + chunk]
        distance = _POPCOUNT[block[:, None, :] ^ hashes[None, :, :]].sum(axis=2, dtype=np.int32)
        rows, columns = np.nonzero(distance <= threshold)
        rows += start
        keep = rows < columns
        firsts.append(rows[keep])
        seconds.append(columns[keep])
        distances.append(distance[rows[keep] - start, columns[keep]])
    if not firsts:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(distances)
