"""Exact and near duplicates, grouped, within and across classes.

Two images are duplicates when
  - their bytes are identical (content hash): "exact"; or
  - their perceptual hashes differ in at most `STRICT_BITS` bits (resized or
    re-encoded copies; with features, their cosine is at least
    `STRICT_COSINE` too, as unrelated photos can collide); or, given backbone
    features, when one is among the other's `NEIGHBOURS` nearest by cosine
    and either the hash of one is within `CROP_BITS` bits of the hash of the
    other or of one of its crops (copies cropped by up to 10% per side,
    resized to 60-90% and re-encoded at JPEG quality 60-90 move the whole
    image's hash by 4-22 bits, one of the crops' by at most 8; unrelated
    photos stay 12 or more bits from all of them), or their cosine is at
    least `FEATURE_COSINE`. Measured on the shared photos:
    bench/results/inspect_planted.json.
Duplicate pairs are joined into groups (connected components); a group with
more than one class is a label conflict.

Nothing is n x n: identical hashes and contents are grouped by sorting,
close hashes found by multi-index hashing (`hashing.close_pairs`, its result
kept for the next run on the same hashes), feature neighbours by an
approximate nearest-neighbour index (faiss HNSW, its candidates ranked again
by exact cosine) beyond `EXACT_LIMIT` images, the features read in chunks
(`UnitRows`). `pairs` lists the pairs that joined the groups (each
image to its group's first holder of the same bytes or hash, and the close
pairs between those), not every pair of members. Keras-free."""

from __future__ import annotations

import dataclasses

import numpy as np

from flowerkit.data.hashing import ImageHashes, kept_close_pairs, pack_bits, popcount

STRICT_BITS = 4  # resized / re-encoded copies of the photos: <= 2 bits
STRICT_COSINE = 0.80  # with features, even a close hash needs this much (pHash collides)
CROP_BITS = 10  # planted cropped copies: <= 8 bits; unrelated neighbours: >= 12
FEATURE_COSINE = 0.95  # unrelated photos of one flower: < 0.89
NEIGHBOURS = 10  # feature neighbours looked at per image (the copies: within 5)
EXACT_LIMIT = 20_000  # up to this many images, neighbours from exact cosines in blocks
ANN_DIMS = 128  # beyond it, faiss HNSW on the features' first principal components
CHUNK = 65_536  # feature rows read, scaled and searched at a time
RERANKED = 3  # approximate candidates per neighbour, ranked again by exact cosine
RERANK_ROWS = 1024  # rows re-ranked at a time (their candidates' features: ~150 MB)


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
    crop_bits: int = CROP_BITS, exact_limit: int = EXACT_LIMIT, progress=None,
) -> Duplicates:
    """Groups of duplicates among the hashed images; `features` (n, d), if
    given, confirm close hashes and find cropped copies (see the module
    docstring). progress(images): called as the feature neighbours of that
    many more images are found."""
    labels = np.asarray(labels)
    count = len(hashes)
    readable = np.ones(count, bool)
    readable[list(hashes.problems)] = False
    content = _ids(hashes.content.view(np.dtype((np.void, 32))).ravel(), readable)
    exact = _star_edges(content)
    first, second, bits = _hash_edges(hashes.phash, readable, strict_bits)
    unit = unit_rows(features) if features is not None else None
    cosine = None
    if unit is not None:
        cosine = _cosines(unit, first, second)
        confirmed = cosine >= STRICT_COSINE
        first, second, bits, cosine = first[confirmed], second[confirmed], bits[confirmed], cosine[confirmed]
        near = _feature_edges(hashes, unit, readable, crop_bits, feature_cosine, exact_limit, progress)
        first, second, bits, cosine = (np.concatenate(pair) for pair in zip((first, second, bits, cosine), near))
    pairs = _listed(exact, (first, second, bits, cosine), unit)
    group_of = components(count, np.concatenate([exact[0], first]), np.concatenate([exact[1], second]))
    groups = _groups(group_of)
    leaders = np.array([g[0] for g in groups], np.int64)
    kinds = np.where(mixed_groups(group_of, content)[leaders], "near", "exact").tolist()
    conflicts = np.flatnonzero(mixed_groups(group_of, labels)[leaders]).tolist()
    thresholds = {
        "strict_bits": strict_bits,
        "strict_cosine": STRICT_COSINE if features is not None else None,
        "crop_bits": crop_bits if features is not None else None,
        "feature_cosine": feature_cosine if features is not None else None,
        "neighbours": NEIGHBOURS if features is not None else None,
        "hash": "64-bit DCT perceptual hash (pHash) of the image and of 17 crops",
    }
    return Duplicates(groups, kinds, conflicts, group_of, pairs, thresholds)


def _feature_edges(hashes, unit, readable, crop_bits, feature_cosine, exact_limit, progress=None):
    """Feature neighbours whose hashes (or crops' hashes) are close, or
    whose cosine is high: (first, second, bits, cosine)."""
    first, second, cosine = similar_pairs(unit, -1.0, exact_limit=exact_limit, progress=progress)
    both = readable[first] & readable[second]
    first, second, cosine = first[both], second[both], cosine[both]
    codes = pack_bits(hashes.phash)
    bits = popcount(codes[first] ^ codes[second])
    closest = bits
    if hashes.crops is not None:
        crops = pack_bits(hashes.crops.reshape(-1, hashes.crops.shape[-1])).reshape(len(codes), -1)
        closest = np.concatenate([np.zeros(0, np.int64)] + [
            _crop_bits(codes, crops, first[s : s + CHUNK], second[s : s + CHUNK], bits[s : s + CHUNK])
            for s in range(0, len(first), CHUNK)])
    keep = (closest <= crop_bits) | (cosine >= feature_cosine)
    return first[keep], second[keep], bits[keep], cosine[keep]


def _crop_bits(codes, crops, first, second, bits) -> np.ndarray:
    """The fewest bits between a pair's hashes, or one's hash and any of
    the other's crops' hashes."""
    return np.minimum.reduce([
        bits,
        popcount(codes[first, None] ^ crops[second]).min(axis=1),
        popcount(codes[second, None] ^ crops[first]).min(axis=1),
    ])


def _cosines(unit, first, second, chunk: int = CHUNK) -> np.ndarray:
    """Cosine of each pair of unit rows, in chunks (never n x d copies)."""
    return np.concatenate([np.zeros(0)] + [
        np.einsum("ij,ij->i", unit[first[s : s + chunk]], unit[second[s : s + chunk]]).astype(np.float64)
        for s in range(0, len(first), chunk)
    ])


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
    first, second, bits = kept_close_pairs(phash[leaders], threshold)
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


class UnitRows:
    """Feature rows scaled to unit length as they are read: a memory-mapped
    feature cache is read in chunks, never copied whole (n x d float32 is
    5 GB at 1 M images of 1,280 features). Indexed like an array."""

    def __init__(self, features, chunk: int = CHUNK):
        self.rows = features.reshape(len(features), -1)
        self.chunk = chunk
        norms = np.concatenate([np.zeros(0, np.float32)] + [
            np.linalg.norm(np.asarray(self.rows[s : s + chunk], np.float32), axis=1)
            for s in range(0, len(self.rows), chunk)])
        self.scale = (1.0 / np.maximum(norms, 1e-12)).astype(np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.shape

    def __getitem__(self, positions) -> np.ndarray:
        rows = np.asarray(self.rows[positions], np.float32)
        return rows * (self.scale[positions][..., None] if rows.ndim > 1 else self.scale[positions])

    def chunks(self):
        """(start, unit rows) from the first row to the last."""
        for start in range(0, len(self), self.chunk):
            yield start, self[start : start + self.chunk]


def unit_rows(features) -> UnitRows:
    """`features` (an array, a memory map) as `UnitRows`, or itself if it is."""
    return features if isinstance(features, UnitRows) else UnitRows(np.asanyarray(features))


def similar_pairs(unit: "np.ndarray | UnitRows", threshold: float, neighbours: int = NEIGHBOURS,
                  exact_limit: int = EXACT_LIMIT, progress=None):
    """Pairs (i < j), one among the other's `neighbours` nearest by cosine,
    with a cosine of at least `threshold`, and their cosines."""
    unit = unit_rows(unit)
    count = len(unit)
    nearest = nearest_neighbours(unit, min(neighbours, count - 1), exact_limit, progress=progress)
    rows = np.repeat(np.arange(count), nearest.shape[1])
    columns = nearest.ravel()
    valid = (columns >= 0) & (columns != rows)
    low = np.minimum(rows[valid], columns[valid])
    high = np.maximum(rows[valid], columns[valid])
    _, unique = np.unique(low * count + high, return_index=True)
    low, high = low[unique], high[unique]
    cosine = _cosines(unit, low, high)
    keep = cosine >= threshold
    return low[keep], high[keep], cosine[keep]


def nearest_neighbours(unit: "np.ndarray | UnitRows", neighbours: int, exact_limit: int = EXACT_LIMIT,
                       chunk: int = 1024, progress=None) -> np.ndarray:
    """(n, neighbours) positions of each unit row's nearest others by cosine
    (-1 where fewer were found): exact in blocks up to `exact_limit` rows,
    else from a faiss HNSW graph on the first `ANN_DIMS` principal
    components, ranked again exactly (`_approximate_neighbours`)."""
    unit = unit_rows(unit)
    count = len(unit)
    if neighbours < 1:
        return np.zeros((count, 0), np.int64)
    if count > exact_limit:
        return _approximate_neighbours(unit, neighbours, progress)
    whole = unit[:]  # up to exact_limit rows (the brute-force reference: any)
    found = []
    for start in range(0, count, chunk):
        similarity = whole[start : start + chunk] @ whole.T
        similarity[np.arange(len(similarity)), np.arange(start, start + len(similarity))] = -np.inf
        # A copy: the slice alone would keep each block's whole (chunk x n) ranking alive.
        found.append(np.argpartition(-similarity, neighbours - 1, axis=1)[:, :neighbours].copy())
        if progress:
            progress(len(similarity))
    return np.concatenate(found)


def _approximate_neighbours(unit: UnitRows, neighbours: int, progress=None) -> np.ndarray:
    """Each row's `neighbours` nearest others: `RERANKED` x as many
    candidates from a faiss HNSW graph on the first principal components,
    ranked again by their exact cosines (the components' ranking of near
    ties differs from the exact one)."""
    import faiss  # heavy (its own OpenMP runtime): loaded only for large searches

    dims = min(ANN_DIMS, unit.shape[1])
    wanted = min(neighbours * RERANKED + 1, len(unit))
    graph = faiss.IndexHNSWFlat(dims, 32, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = 80
    graph.hnsw.efSearch = max(64, wanted)
    index = graph
    if dims < unit.shape[1]:
        index = faiss.IndexPreTransform(faiss.PCAMatrix(unit.shape[1], dims), graph)
        sample = np.random.default_rng(0).permutation(len(unit))[:50_000]
        index.train(np.ascontiguousarray(unit[np.sort(sample)]))
    for _, rows in unit.chunks():  # added and searched a chunk at a time: no n x d copy
        index.add(np.ascontiguousarray(rows))
    found = []
    for start, rows in unit.chunks():
        candidates = index.search(np.ascontiguousarray(rows), wanted)[1]
        found += [_reranked(unit, rows[s : s + RERANK_ROWS], start + s, candidates[s : s + RERANK_ROWS],
                            neighbours) for s in range(0, len(rows), RERANK_ROWS)]
        if progress:
            progress(len(rows))
    return np.concatenate(found)


def _reranked(unit: UnitRows, rows, start: int, candidates, neighbours: int) -> np.ndarray:
    """The `neighbours` candidates of each row (positions from `start`) with
    the highest exact cosines, itself and missing ones (-1) left out."""
    own = np.arange(start, start + len(rows))[:, None]
    valid = (candidates >= 0) & (candidates != own)
    gathered = unit[candidates.clip(0).ravel()].reshape(*candidates.shape, -1)
    cosine = np.where(valid, np.einsum("md,mkd->mk", rows, gathered), -np.inf)
    best = np.argsort(-cosine, axis=1, kind="stable")[:, :neighbours]
    chosen = np.take_along_axis(candidates, best, 1)
    return np.where(np.take_along_axis(valid, best, 1), chosen, -1).astype(np.int64)


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


def mixed_groups(group_of: np.ndarray, values) -> np.ndarray:
    """(n,) bool: at a group's id (its first member's position), whether its
    members' `values` (integers, one per image) differ. Two scatters, O(n)."""
    values = np.asarray(values, np.int64)
    low = np.full(len(group_of), np.iinfo(np.int64).max)
    high = np.full(len(group_of), np.iinfo(np.int64).min)
    np.minimum.at(low, group_of, values)
    np.maximum.at(high, group_of, values)
    return low != high


def _groups(group_of: np.ndarray) -> list[list[int]]:
    """Members of each component of two or more, by first member."""
    order = np.argsort(group_of, kind="stable")
    ids = group_of[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    return [order[s : s + n].tolist() for s, n in zip(starts.tolist(), sizes.tolist()) if n > 1]
