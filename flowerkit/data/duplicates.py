"""Exact and near duplicates, grouped, within and across classes.

Two images are duplicates when
  - their bytes are identical (content hash): "exact"; or
  - their perceptual hashes differ in at most `STRICT_BITS` bits (resized or
    re-encoded copies; with features, their cosine is at least
    `STRICT_COSINE` too, as unrelated photos can collide); or, given backbone
    features, when their cosine similarity is at least `FEATURE_COSINE`
    whatever the hash (cropped copies move a 64-bit hash by 6-18 bits, but
    barely move a backbone's pooled features).
Duplicate pairs are joined into groups (connected components); a group with
more than one class is a label conflict.

Nothing is n x n: identical hashes and contents are grouped by sorting,
close hashes found by multi-index hashing (`hashing.close_pairs`), similar
features among each image's nearest neighbours. `pairs` lists the pairs
that joined the groups (each image to its group's first holder of the same
bytes or hash, and the close pairs between those), not every pair of
members. Keras-free."""

from __future__ import annotations

import dataclasses

import numpy as np

from flowerkit.data.hashing import ImageHashes, close_pairs, pack_bits, popcount

STRICT_BITS = 4  # resized / re-encoded copies of the photos: <= 2 bits
FEATURE_COSINE = 0.95
STRICT_COSINE = 0.80  # with features, even a close hash needs this much (pHash collides)
NEIGHBOURS = 10  # feature neighbours looked at per image


@dataclasses.dataclass(frozen=True)
class Duplicates:
    """Duplicate groups of an index (positions), and each image's group."""

    groups: list[list[int]]  # each sorted, >= 2 members, sorted by first member
    kinds: list[str]  # "exact" if every member has the same bytes, else "near"
    conflicts: list[int]  # indices into `groups` that span more than one class
    group_of: np.ndarray  # (n,) group id per image (its first member's position)
    pairs: list[dict]  # the pairs that joined the groups: first, second, kind, bits, cosine
    thresholds: dict

    @property
    def duplicate_images(self) -> int:
        """Images that are a copy of another (group sizes minus one each)."""
        return sum(len(group) - 1 for group in self.groups)

    def conflict_members(self) -> list[int]:
        return sorted(m for g in self.conflicts for m in self.groups[g])


def find_duplicates(
    hashes: ImageHashes, labels, features: np.ndarray | None = None,
    strict_bits: int = STRICT_BITS, feature_cosine: float = FEATURE_COSINE,
) -> Duplicates:
    """Groups of duplicates among the hashed images; `features` (n, d), if
    given, confirm close hashes and find what the hash misses (see the
    module docstring)."""
    labels = np.asarray(labels)
    count = len(hashes)
    readable = np.ones(count, bool)
    readable[list(hashes.problems)] = False
    content = _ids(hashes.content.view(np.dtype((np.void, 32))).ravel(), readable)
    exact = _star_edges(content)
    first, second, bits = _hash_edges(hashes.phash, readable, strict_bits)
    unit = _normalised(features) if features is not None else None
    cosine = None
    if unit is not None:
        cosine = np.einsum("ij,ij->i", unit[first], unit[second])
        confirmed = cosine >= STRICT_COSINE
        first, second, bits, cosine = first[confirmed], second[confirmed], bits[confirmed], cosine[confirmed]
        similar_first, similar_second, similar_cosine = similar_pairs(unit, feature_cosine)
        codes = pack_bits(hashes.phash)
        first = np.concatenate([first, similar_first])
        second = np.concatenate([second, similar_second])
        bits = np.concatenate([bits, popcount(codes[similar_first] ^ codes[similar_second])])
        cosine = np.concatenate([cosine, similar_cosine])
    pairs = _listed(exact, (first, second, bits, cosine), unit)
    group_of = components(count, np.concatenate([exact[0], first]), np.concatenate([exact[1], second]))
    groups = _groups(group_of)
    kinds = ["exact" if len(np.unique(content[g])) == 1 else "near" for g in groups]
    conflicts = [k for k, g in enumerate(groups) if len(np.unique(labels[g])) > 1]
    thresholds = {
        "strict_bits": strict_bits,
        "strict_cosine": STRICT_COSINE if features is not None else None,
        "feature_cosine": feature_cosine if features is not None else None,
        "hash": "64-bit DCT perceptual hash (pHash)",
    }
    return Duplicates(groups, kinds, conflicts, group_of, pairs, thresholds)


def _ids(values: np.ndarray, readable: np.ndarray) -> np.ndarray:
    """An id per distinct value; each unreadable image gets an id of its own."""
    ids = np.unique(values, return_inverse=True)[1].ravel().astype(np.int64)
    ids[~readable] = ids.max(initial=0) + 1 + np.arange(int((~readable).sum()))
    return ids


def _star_edges(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first holder of each id, every later holder): linear, unlike all pairs."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    leader = order[np.repeat(starts, np.diff(np.r_[starts, len(order)]))]
    later = leader != order
    return leader[later], order[later]


def _hash_edges(phash: np.ndarray, readable: np.ndarray, threshold: int):
    """Pairs within `threshold` bits: each image to the first image with
    its hash, and the close pairs between those first images."""
    ids = _ids(pack_bits(phash), readable)
    same_first, same_second = _star_edges(ids)
    leaders = np.flatnonzero(readable)[np.unique(ids[readable], return_index=True)[1]]
    first, second, bits = close_pairs(phash[leaders], threshold)
    return (np.concatenate([same_first, leaders[first]]), np.concatenate([same_second, leaders[second]]),
            np.concatenate([np.zeros(len(same_first), np.int64), bits]))


def _listed(exact, near, unit) -> list[dict]:
    """The pairs as dicts, sorted; an exact pair is listed once, as exact."""
    first, second, bits, cosine = near
    listed = {}
    for i, j in zip(*(np.minimum(*exact).tolist(), np.maximum(*exact).tolist())):
        listed[(i, j)] = {"kind": "exact", "bits": 0,
                          "cosine": float(unit[i] @ unit[j]) if unit is not None else None}
    for k, (i, j) in enumerate(zip(np.minimum(first, second).tolist(), np.maximum(first, second).tolist())):
        listed.setdefault((i, j), {"kind": "near", "bits": int(bits[k]),
                                   "cosine": float(cosine[k]) if cosine is not None else None})
    return [{"first": i, "second": j, **pair} for (i, j), pair in sorted(listed.items())]


def _normalised(features: np.ndarray) -> np.ndarray:
    flat = np.asarray(features, np.float32).reshape(len(features), -1)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def similar_pairs(unit: np.ndarray, threshold: float, neighbours: int = NEIGHBOURS, chunk: int = 1024):
    """Pairs (i < j) among each image's `neighbours` nearest by cosine with a
    cosine of at least `threshold`, and their cosines."""
    found = [[], [], []]
    count = len(unit)
    k = min(neighbours + 1, count)
    for start in range(0, count, chunk):
        similarity = unit[start : start + chunk] @ unit.T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        cosine = np.take_along_axis(similarity, nearest, axis=1)
        rows = np.repeat(np.arange(start, start + len(similarity)), k)
        keep = (cosine.ravel() >= threshold) & (rows != nearest.ravel())
        found[0].append(rows[keep])
        found[1].append(nearest.ravel()[keep])
        found[2].append(cosine.ravel()[keep])
    first, second, cosine = (np.concatenate(part) for part in found)
    low, high = np.minimum(first, second), np.maximum(first, second)
    _, unique = np.unique(low * count + high, return_index=True)
    return low[unique], high[unique], cosine[unique].astype(np.float64)


def components(count: int, first, second) -> np.ndarray:
    """Connected components of the graph with edges (first[k], second[k]):
    each node's smallest member, by hooking and pointer jumping (vectorised
    union-find: O(edges) per round, a few rounds)."""
    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)
    parent = np.arange(count, dtype=np.int64)
    while True:
        low = np.minimum(parent[first], parent[second])
        hooked = parent.copy()
        np.minimum.at(hooked, parent[first], low)
        np.minimum.at(hooked, parent[second], low)
        while True:  # every node points at its root
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, parent):
            return parent
        parent = hooked


def _groups(group_of: np.ndarray) -> list[list[int]]:
    """Members of each component of two or more, by first member."""
    order = np.argsort(group_of, kind="stable")
    ids = group_of[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    return [order[s : s + n].tolist() for s, n in zip(starts.tolist(), sizes.tolist()) if n > 1]
