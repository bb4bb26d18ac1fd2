"""Exact and near duplicates, grouped, within and across classes.

Two images are duplicates when
  - their bytes are identical (content hash): "exact"; or
  - their perceptual hashes differ in at most `STRICT_BITS` bits (resized or
    re-encoded copies; with features, their cosine is at least
    `STRICT_COSINE` too, as unrelated photos can collide); or, given backbone features, when the cosine
    similarity of their features confirms a looser match: at least
    `CONFIRM_COSINE` within `CANDIDATE_BITS` bits, or at least
    `FEATURE_COSINE` whatever the hash (cropped copies move a 64-bit hash by
    10-18 bits, but barely move a backbone's pooled features).
Duplicate pairs are joined into groups (connected components); a group with
more than one class is a label conflict. Keras-free."""

from __future__ import annotations

import dataclasses

import numpy as np

from flowerkit.data.hashing import ImageHashes, hamming_pairs

STRICT_BITS = 4  # resized / re-encoded copies of the photos: <= 2 bits
CANDIDATE_BITS = 20
CONFIRM_COSINE = 0.90
FEATURE_COSINE = 0.95
STRICT_COSINE = 0.80  # with features, even a close hash needs this much (pHash collides)


@dataclasses.dataclass(frozen=True)
class Duplicates:
    """Duplicate groups of an index (positions), and each image's group."""

    groups: list[list[int]]  # each sorted, >= 2 members, sorted by first member
    kinds: list[str]  # "exact" if every member has the same bytes, else "near"
    conflicts: list[int]  # indices into `groups` that span more than one class
    group_of: np.ndarray  # (n,) group id per image; singletons get their own ids
    pairs: list[dict]  # every confirmed pair: first, second, kind, bits, cosine
    thresholds: dict

    @property
    def duplicate_images(self) -> int:
        """Images that are a copy of another (group sizes minus one each)."""
        return sum(len(group) - 1 for group in self.groups)

    def conflict_members(self) -> list[int]:
        return sorted(m for g in self.conflicts for m in self.groups[g])


def find_duplicates(
    hashes: ImageHashes, labels, features: np.ndarray | None = None,
    strict_bits: int = STRICT_BITS, candidate_bits: int = CANDIDATE_BITS,
    confirm_cosine: float = CONFIRM_COSINE, feature_cosine: float = FEATURE_COSINE,
) -> Duplicates:
    """Groups of duplicates among the hashed images; `features` (n, d), if
    given, confirm near matches (see the module docstring)."""
    labels = np.asarray(labels)
    count = len(hashes)
    pairs = {}
    by_content: dict[str, list[int]] = {}
    for position, digest in enumerate(hashes.content):
        by_content.setdefault(digest, []).append(position)
    for members in by_content.values():
        for other in members[1:]:
            pairs[(members[0], other)] = {"kind": "exact", "bits": 0, "cosine": None}
    loose = candidate_bits if features is not None else strict_bits
    first, second, bits = hamming_pairs(hashes.phash, loose)
    unit = _normalised(features) if features is not None else None
    for i, j, distance in zip(first.tolist(), second.tolist(), bits.tolist()):
        cosine = float(unit[i] @ unit[j]) if unit is not None else None
        hashed = distance <= strict_bits and (cosine is None or cosine >= STRICT_COSINE)
        if hashed or (cosine is not None and cosine >= confirm_cosine):
            pairs.setdefault((i, j), {"kind": "near", "bits": distance, "cosine": cosine})
    if unit is not None:
        for i, j, cosine in _similar_pairs(unit, feature_cosine):
            distance = int(np.unpackbits(hashes.phash[i] ^ hashes.phash[j]).sum())
            pairs.setdefault((i, j), {"kind": "near", "bits": distance, "cosine": cosine})
    for (i, j), pair in pairs.items():
        if pair["cosine"] is None and unit is not None:
            pair["cosine"] = float(unit[i] @ unit[j])
    group_of = _components(count, list(pairs))
    members: dict[int, list[int]] = {}
    for position, group in enumerate(group_of.tolist()):
        members.setdefault(group, []).append(position)
    groups = sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])
    kinds = ["exact" if len({hashes.content[m] for m in g}) == 1 else "near" for g in groups]
    conflicts = [k for k, g in enumerate(groups) if len(set(labels[g].tolist())) > 1]
    listed = [{"first": i, "second": j, **pair} for (i, j), pair in sorted(pairs.items())]
    thresholds = {
        "strict_bits": strict_bits,
        "candidate_bits": candidate_bits if features is not None else None,
        "confirm_cosine": confirm_cosine if features is not None else None,
        "feature_cosine": feature_cosine if features is not None else None,
        "hash": "64-bit DCT perceptual hash (pHash)",
    }
    return Duplicates(groups, kinds, conflicts, group_of, listed, thresholds)


def _normalised(features: np.ndarray) -> np.ndarray:
    flat = np.asarray(features, np.float32).reshape(len(features), -1)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def _similar_pairs(unit: np.ndarray, threshold: float, chunk: int = 2048):
    for start in range(0, len(unit), chunk):
        similarity = unit[start : start + chunk] @ unit.T
        rows, columns = np.nonzero(similarity >= threshold)
        for row, column in zip(rows.tolist(), columns.tolist()):
            if start + row < column:
                yield start + row, column, float(similarity[row, column])


def _components(count: int, edges) -> np.ndarray:
    """Connected components (union-find), numbered by their first member."""
    parent = list(range(count))

    def root(node):
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for i, j in edges:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.asarray([root(node) for node in range(count)], dtype=np.int64)
