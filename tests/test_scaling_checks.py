"""The data checks that must stay near-linear (issue 31) give the answers
of the all-pairs and per-group code they replaced: duplicate groups equal a
brute-force search, and the group split, label folds and suspects equal the
earlier implementations (kept here, only as the tests' references)."""

import io

import numpy as np
import pytest
from tests.helpers import shared_path

from flowerkit.data.duplicates import (
    CROP_BITS, EXACT_LIMIT, STRICT_BITS, UnitRows, components, find_duplicates, mixed_groups, nearest_neighbours,
)
from flowerkit.data import hashing
from flowerkit.data.hashing import ImageHashes, close_pairs, kept_close_pairs, pack_bits, popcount
from flowerkit.data.manifest import read_record
from flowerkit.data.sources import ImageIndex, split_index
from flowerkit.data.splitting import group_split
from flowerkit.inspection import label_issues
from flowerkit.inspection.label_issues import (
    _another_class_above, find_label_issues, fit_softmax, fold_assignment, predict_softmax,
)

pytestmark = pytest.mark.backend_independent


def planted_hashes(count=3000, seed=0):
    """Random 64-bit hashes with near copies (0-6 bits flipped, chains
    included), exact copies (same bytes) and a few unreadable images."""
    rng = np.random.default_rng(seed)
    phash = rng.integers(0, 256, (count, 8), dtype=np.uint8)
    content = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    for _ in range(count // 10):
        source, target = rng.integers(count, size=2)
        bits = np.unpackbits(phash[source])
        bits[rng.choice(64, rng.integers(0, 7), replace=False)] ^= 1
        phash[target] = np.packbits(bits)
    for _ in range(count // 50):
        source, target = rng.integers(count, size=2)
        phash[target], content[target] = phash[source], content[source]
    problems = {int(p): "truncated or corrupt" for p in rng.choice(count, 5, replace=False)}
    for position in problems:  # as the manifest stores them: all zeros
        phash[position], content[position] = 0, 0
    modes = np.array(["RGB"] * count)
    return ImageHashes(content, phash, modes, np.full((count, 2), 64), problems)


_SET_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)


def all_distances(phash):
    """Hamming distances of every pair of packed hashes (n x n)."""
    distance = np.zeros((len(phash), len(phash)), np.uint8)
    for byte in range(phash.shape[1]):
        distance += _SET_BITS[phash[:, None, byte] ^ phash[None, :, byte]]
    return distance


def brute_force_groups(hashes, threshold):
    """Every pair compared (the n x n search that was replaced)."""
    count = len(hashes)
    content = np.unique(hashes.content, axis=0, return_inverse=True)[1].ravel()
    linked = (all_distances(hashes.phash) <= threshold) | (content[:, None] == content[None, :])
    broken = list(hashes.problems)
    linked[broken, :] = linked[:, broken] = False
    first, second = np.nonzero(np.triu(linked, 1))
    parent = list(range(count))

    def root(node):
        while parent[node] != node:
            node = parent[node]
        return node

    for i, j in zip(first.tolist(), second.tolist()):
        a, b = root(i), root(j)
        parent[max(a, b)] = min(a, b)
    members = {}
    for node in range(count):
        members.setdefault(root(node), []).append(node)
    return sorted(m for m in members.values() if len(m) > 1)


@pytest.mark.parametrize("threshold", [1, 4, 7])
def test_close_pairs_equal_every_pair_within_the_threshold(threshold):
    phash = np.unique(planted_hashes(2000, seed=threshold).phash, axis=0)
    distance = all_distances(phash)
    expected = set(zip(*map(np.ndarray.tolist, np.nonzero(np.triu(distance <= threshold, 1)))))
    first, second, bits = close_pairs(phash, threshold)
    assert set(zip(first.tolist(), second.tolist())) == expected and len(first) == len(expected)
    assert (bits == distance[first, second]).all()


def test_a_search_on_the_same_hashes_is_read_back_not_run_again(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    phash = np.unique(planted_hashes(500).phash, axis=0)
    searched = kept_close_pairs(phash, 4)
    other = kept_close_pairs(phash[1:], 4)  # other hashes: a search of their own
    monkeypatch.setattr(hashing, "close_pairs", lambda *args: pytest.fail("searched again"))
    again = kept_close_pairs(phash, 4)
    assert all((a == b).all() for a, b in zip(again, searched)) and len(searched[0]) > 10
    assert not np.array_equal(other[0], searched[0])  # positions in other hashes
    with pytest.raises(pytest.fail.Exception):
        kept_close_pairs(phash, 5)  # another threshold is another search
    kept = sorted((tmp_path / "flowerkit" / "pairs").iterdir())
    assert len(kept) == 2 and all(not p.name.startswith(".") for p in kept)
    kept[0].write_bytes(b"damaged")
    monkeypatch.setattr(hashing, "close_pairs", close_pairs)
    for hashes, expected in ((phash, searched), (phash[1:], other)):
        assert all((a == b).all() for a, b in zip(kept_close_pairs(hashes, 4), expected))


def test_duplicate_groups_equal_a_brute_force_search():
    hashes = planted_hashes()
    labels = np.random.default_rng(1).integers(0, 5, len(hashes))
    duplicates = find_duplicates(hashes, labels)
    expected = brute_force_groups(hashes, 4)
    assert len(expected) > 100  # chains of near copies and exact copies among them
    assert duplicates.groups == expected
    for group, kind in zip(duplicates.groups, duplicates.kinds):
        exact = all((hashes.content[m] == hashes.content[group[0]]).all() for m in group)
        assert kind == ("exact" if exact else "near")
    assert duplicates.conflicts == [k for k, g in enumerate(expected) if len(set(labels[g])) > 1]
    for group in expected:
        assert (duplicates.group_of[group] == group[0]).all()
    for pair in duplicates.pairs:  # every listed pair is a duplicate pair
        first, second = pair["first"], pair["second"]
        assert duplicates.group_of[first] == duplicates.group_of[second]


def test_components_of_a_long_chain_and_a_star():
    chain = np.arange(999)
    group_of = components(1500, np.r_[chain[::-1], np.full(100, 1200)],
                          np.r_[chain[::-1] + 1, np.arange(1300, 1400)])
    assert (group_of[:1000] == 0).all() and (group_of[1300:1400] == 1200).all()
    assert (group_of[1000:1200] == np.arange(1000, 1200)).all()


def test_mixed_groups_equal_a_scan_of_each_group():
    rng = np.random.default_rng(3)
    group_of = components(3000, rng.integers(0, 3000, 1500), rng.integers(0, 3000, 1500))
    values = rng.integers(0, 3, 3000)
    mixed = mixed_groups(group_of, values)
    groups = [g for g in np.unique(group_of) if (group_of == g).sum() > 1]
    assert len(groups) > 100 and 0 < mixed[groups].sum() < len(groups)
    for group in groups:
        assert mixed[group] == (len(set(values[group_of == group].tolist())) > 1)


def _reference_group_split(labels, validation_fraction, seed, group_of):
    """group_split's validation positions as before issue 31 (a scan per group)."""
    ids, sizes = np.unique(group_of, return_counts=True)
    multi = ids[sizes > 1]
    rng = np.random.default_rng(seed)
    classes = labels.max() + 1
    targets = np.array([round((labels == c).sum() * validation_fraction) for c in range(classes)])
    taken = np.zeros(classes, np.int64)
    validation = np.zeros(len(labels), bool)
    members = {g: np.flatnonzero(group_of == g) for g in multi}
    for group in rng.permutation(multi):
        counts = np.bincount(labels[members[group]], minlength=classes)
        if rng.random() < validation_fraction and np.all(taken + counts <= targets):
            validation[members[group]] = True
            taken += counts
    singles = np.flatnonzero(np.isin(group_of, multi, invert=True))
    for c in range(classes):
        candidates = rng.permutation(singles[labels[singles] == c])
        validation[candidates[: max(targets[c] - taken[c], 0)]] = True
    return np.flatnonzero(validation)


def _index(labels):
    return ImageIndex(class_names=tuple(f"c{c}" for c in range(labels.max() + 1)), labels=labels,
                      images=tuple(f"{i}.jpg" for i in range(len(labels))), source="")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_group_split_equals_the_earlier_split(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, 600).astype(np.int32)
    group_of = np.arange(600)
    for _ in range(80):  # groups of 2-4, some across classes
        members = rng.choice(600, rng.integers(2, 5), replace=False)
        group_of[members] = group_of[members].min()
    group_of = components(600, np.arange(600), group_of)  # each group named by its first member
    _, validation, kept = group_split(_index(labels), 0.2, seed, group_of)
    expected = _reference_group_split(labels, 0.2, seed, group_of)
    assert kept > 40
    assert [int(name[:-4]) for name in validation.images] == expected.tolist()
    plain = split_index(_index(labels), 0.2, seed)[1]
    assert group_split(_index(labels), 0.2, seed, np.arange(600))[1].images == plain.images


def _reference_folds(labels, folds, seed, groups):
    """The earlier scan per group, with the deal carried on from class to
    class (so one group per class no longer leaves folds empty)."""
    rng = np.random.default_rng(seed)
    assignment = np.zeros(len(labels), np.int64)
    _, first = np.unique(groups, return_index=True)
    dealt = 0
    for label in np.unique(labels):
        leaders = rng.permutation(first[labels[first] == label])
        for k, leader in enumerate(leaders):
            assignment[groups == groups[leader]] = (dealt + k) % folds
        dealt += len(leaders)
    return assignment


def test_label_folds_and_suspects_equal_the_earlier_ranking():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 400)
    features = rng.normal(size=(400, 16)).astype(np.float32) + np.eye(4, 16)[labels] * 3
    labels[:20] = (labels[:20] + 1) % 4  # flipped
    groups = np.arange(400)
    groups[100:160:2] = groups[101:161:2]  # pairs of duplicates
    assert (fold_assignment(labels, 5, 0, groups) == _reference_folds(labels, 5, 0, groups)).all()
    issues = find_label_issues(features, labels, 4, seed=0, groups=groups, steps=30)
    # The probabilities as they were computed before: a head per fold on a copy of its rows.
    features = features.astype(np.float32)
    assignment = fold_assignment(labels, 5, 0, groups)
    probabilities = np.zeros((400, 4), np.float32)
    for fold in range(5):
        held = assignment == fold
        head = fit_softmax(features[~held], labels[~held], 4, steps=30, seed=fold)
        probabilities[held] = predict_softmax(head, features[held])
    assert np.array_equal(issues.self_confidence, probabilities[np.arange(400), labels])
    assert np.array_equal(issues.predicted, probabilities.argmax(axis=1))
    assert np.array_equal(issues.predicted_probability, probabilities.max(axis=1))
    thresholds = np.array([probabilities[labels == c, c].mean() for c in range(4)])
    above = probabilities >= thresholds[None, :]
    above[np.arange(400), labels] = False
    order = np.argsort(issues.self_confidence, kind="stable")
    suspect = (issues.self_confidence < thresholds[labels]) & above.any(axis=1)
    assert np.allclose(issues.thresholds, thresholds, rtol=1e-6)
    assert issues.suspects.tolist() == order[suspect[order]].tolist()
    assert len(set(issues.suspects[:40].tolist()) & set(range(20))) >= 15


def test_label_check_reads_rows_in_place_and_chunks_change_nothing():
    """A fold's head reads its rows from the cache (no copy of 80% of it) and
    the held-out rows are predicted in chunks: the same heads and suspects."""
    rng = np.random.default_rng(6)
    classes, n = 12, 3000
    labels = rng.integers(0, classes, n)
    features = (rng.normal(0, 1, (classes, 20))[labels] + rng.normal(size=(n, 20))).astype(np.float32)
    labels[:150] = (labels[:150] + 1) % classes  # flipped: suspects to find
    rows = np.flatnonzero(rng.random(n) < 0.8)
    for batch_rows in (n, 512):  # the full batch, then mini-batches
        in_place = fit_softmax(features, labels, classes, steps=5, batch_rows=batch_rows, rows=rows)
        copied = fit_softmax(features[rows], labels[rows], classes, steps=5, batch_rows=batch_rows)
        for got, expected in zip(in_place, copied):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    whole = find_label_issues(features, labels, classes, seed=0, steps=20, batch_rows=512)
    chunked = find_label_issues(features, labels, classes, seed=0, steps=20, batch_rows=512, chunk=97)
    assert np.array_equal(whole.self_confidence, chunked.self_confidence)
    assert np.array_equal(whole.suspects, chunked.suspects) and len(whole.suspects) > 0


def _reference_fit_softmax(features, labels, classes, steps, l2=1e-2, learning_rate=0.5):
    """fit_softmax as before issue 31 (n x classes one-hot targets)."""
    def softmax(logits):
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    mean, scale = features.mean(axis=0), features.std(axis=0) + np.float32(1e-6)
    x, y = (features - mean) / scale, np.eye(classes, dtype=np.float32)[labels]
    weights, bias = np.zeros((x.shape[1], classes), np.float32), np.zeros(classes, np.float32)
    velocity_w, velocity_b = np.zeros_like(weights), np.zeros_like(bias)
    rate, l2, momentum = np.float32(learning_rate / np.sqrt(x.shape[1])), np.float32(l2), np.float32(0.9)
    for _ in range(steps):
        look_w, look_b = weights + momentum * velocity_w, bias + momentum * velocity_b
        error = (softmax(x @ look_w + look_b) - y) / len(x)
        velocity_w = momentum * velocity_w - rate * (x.T @ error + l2 * look_w)
        velocity_b = momentum * velocity_b - rate * error.sum(axis=0)
        weights, bias = weights + velocity_w, bias + velocity_b
    return weights, bias, mean, scale, softmax(((features - mean) / scale) @ weights + bias)


def test_softmax_head_and_suspect_mask_equal_the_one_hot_code():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 6, 300)
    features = (rng.normal(size=(300, 12)) + np.eye(6, 12)[labels] * 2).astype(np.float32)
    model = fit_softmax(features, labels, 6, steps=20)
    *reference, probabilities = _reference_fit_softmax(features, labels, 6, steps=20)
    for got, expected in zip(model, reference):
        assert np.array_equal(got, expected)
    assert np.array_equal(predict_softmax(model, features), probabilities)
    thresholds = np.array([probabilities[labels == c, c].mean() for c in range(6)])
    above = probabilities >= thresholds[None, :]
    above[np.arange(300), labels] = False
    assert 0 < above.any(axis=1).sum() < 300
    assert np.array_equal(_another_class_above(probabilities, labels, thresholds, chunk=7), above.any(axis=1))


def test_label_head_on_many_rows_steps_on_mini_batches_and_still_ranks_flips():
    """Beyond batch_rows a step reads only batch_rows rows (each once per pass
    of the shuffle), and the flipped labels rank as high as with full batches."""
    rng = np.random.default_rng(5)
    classes, n = 40, 4000
    labels = rng.integers(0, classes, n)
    features = (rng.normal(0, 0.5, (classes, 24))[labels] + rng.normal(size=(n, 24))).astype(np.float32)
    flipped = rng.choice(n, n // 20, replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, classes, len(flipped))) % classes
    batches = label_issues._batches(n, 1000, seed=0)
    passes = [np.concatenate([next(batches) for _ in range(4)]) for _ in range(2)]
    assert all(sorted(rows.tolist()) == list(range(n)) for rows in passes)
    assert not np.array_equal(passes[0], passes[1])  # a new shuffle each pass
    seen = []
    real_softmax = label_issues._softmax
    def counting_softmax(logits):
        seen.append(len(logits))
        return real_softmax(logits)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(label_issues, "_softmax", counting_softmax)
        label_issues.fit_softmax(features, noisy, classes, steps=3, batch_rows=512)
    assert seen == [512, 512, 512]
    recall = {}
    for batch_rows in (n, 512):
        issues = find_label_issues(features, noisy, classes, seed=0, batch_rows=batch_rows)
        recall[batch_rows] = len(set(issues.top(2 * len(flipped)).tolist()) & set(flipped.tolist()))
    # 170 and 169 of 200 in the top 400 when written; 20 would be chance.
    assert recall[512] >= 0.8 * len(flipped) and recall[512] >= recall[n] - 0.03 * len(flipped)


def _flipped(code, count, rng):
    bits = np.unpackbits(code)
    bits[rng.choice(64, count, replace=False)] ^= 1
    return np.packbits(bits)


@pytest.mark.parametrize("exact_limit", [EXACT_LIMIT, 0])  # 0: the faiss HNSW search
def test_features_find_cropped_copies_by_their_crops_hashes(exact_limit):
    rng = np.random.default_rng(5)
    count = 400
    hashes = ImageHashes(rng.integers(0, 256, (count, 32), dtype=np.uint8),
                         rng.integers(0, 256, (count, 8), dtype=np.uint8), np.array(["RGB"] * count),
                         np.full((count, 2), 64), {}, rng.integers(0, 256, (count, 17, 8), dtype=np.uint8))
    features = rng.normal(size=(count, 48)).astype(np.float32)
    copies = {10: 11, 20: 21, 30: 31}  # original -> cropped copy: one crop's hash, 5 bits off
    for original, copy in copies.items():
        features[copy] = features[original] + rng.normal(0, 0.6, 48)  # cosine about 0.85
        hashes.phash[copy] = _flipped(hashes.crops[original, 4], 5, rng)
    features[41] = features[40] + rng.normal(0, 0.6, 48)  # a neighbour with unrelated hashes
    features[51] = features[50] + rng.normal(0, 0.1, 48)  # cosine above FEATURE_COSINE
    labels = np.zeros(count, np.int64)
    plain = find_duplicates(hashes, labels)
    duplicates = find_duplicates(hashes, labels, features, exact_limit=exact_limit)
    assert duplicates.groups == [[10, 11], [20, 21], [30, 31], [50, 51]]  # not 40 and 41
    assert all(plain.group_of[c] != plain.group_of[o] for o, c in copies.items())  # the hash alone misses them
    assert duplicates.thresholds["crop_bits"] == CROP_BITS


def test_approximate_neighbours_find_each_points_near_twin():
    rng = np.random.default_rng(6)
    points = rng.normal(size=(500, 160))
    points = np.concatenate([points, points + rng.normal(0, 0.3, points.shape)])  # twins: cosine ~0.96
    unit = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    approximate = nearest_neighbours(unit, 5, exact_limit=0)  # PCA to 128 dimensions, then HNSW
    twin = np.r_[np.arange(500, 1000), np.arange(500)]
    assert (approximate == twin[:, None]).any(axis=1).mean() >= 0.99
    assert (approximate != np.arange(1000)[:, None]).all()
    assert (nearest_neighbours(unit, 1)[:, 0] == twin).all()  # the exact search


def test_approximate_neighbours_are_the_exact_ones_among_near_ties():
    rng = np.random.default_rng(9)
    centres = rng.normal(size=(60, 160))  # clusters: many near ties, which PCA reorders
    points = (centres[rng.integers(0, 60, 3000)] + 0.7 * rng.normal(size=(3000, 160))).astype(np.float32)
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    exact = nearest_neighbours(unit, 10)
    approximate = nearest_neighbours(unit, 10, exact_limit=0)
    same = np.mean([set(a) == set(e) for a, e in zip(approximate, exact)])
    assert same >= 0.98  # ranked by the principal components alone: 4% of the rows


@pytest.mark.parametrize("exact_limit", [EXACT_LIMIT, 0])
def test_the_feature_search_reports_each_image_once(exact_limit):
    points = np.random.default_rng(11).normal(size=(3000, 16)).astype(np.float32)
    done = []
    nearest_neighbours(points, 5, exact_limit=exact_limit, chunk=512, progress=done.append)
    assert sum(done) == 3000 and len(done) == (6 if exact_limit else 1)  # per block, per 65,536 rows


def test_the_exact_neighbour_search_holds_one_block_at_a_time():
    import tracemalloc

    points = np.random.default_rng(8).normal(size=(8192, 8)).astype(np.float32)
    block = 1024 * 8192 * 8  # one block's ranking: 1,024 rows x 8,192 int64 positions
    tracemalloc.start()
    try:
        nearest = nearest_neighbours(points, 3, exact_limit=10**6)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert nearest.shape == (8192, 3)
    assert peak < 4 * block  # keeping every block's ranking alive was 8 blocks and more


def test_unit_rows_read_a_memory_mapped_cache_a_chunk_at_a_time(tmp_path):
    rng = np.random.default_rng(7)
    points = rng.normal(size=(500, 160)).astype(np.float32)
    points = np.concatenate([points, points + rng.normal(0, 0.3, points.shape).astype(np.float32)])
    mapped = np.lib.format.open_memmap(tmp_path / "features.npy", "w+", np.float32, points.shape)
    mapped[:] = 3 * points  # unnormalised, as a feature cache holds them
    rows = UnitRows(np.load(tmp_path / "features.npy", mmap_mode="r"), chunk=128)
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    np.testing.assert_allclose(rows[:], unit, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows[[7, 3]], unit[[7, 3]], rtol=1e-5, atol=1e-6)
    assert rows[9] @ rows[9] == pytest.approx(1.0)
    assert [start for start, _ in rows.chunks()] == list(range(0, 1000, 128))
    approximate = nearest_neighbours(rows, 5, exact_limit=0)  # added and searched in 8 chunks
    twin = np.r_[np.arange(500, 1000), np.arange(500)]
    assert (approximate == twin[:, None]).any(axis=1).mean() >= 0.99
    assert (nearest_neighbours(rows, 1)[:, 0] == twin).all()


def test_a_cropped_copy_of_a_real_photo_is_close_to_one_of_its_crops():
    from PIL import Image

    photos = sorted(shared_path("data/flower_photos/roses").glob("*.jpg"))[:4]
    records, copies = [], []
    for k, photo in enumerate(photos):
        with Image.open(photo) as opened:
            image = opened.convert("RGB")
        width, height = image.size
        cropped = image.crop((int(width * 0.09), int(height * 0.02 * k), int(width * 0.94),
                              int(height * 0.93))).resize((int(width * 0.6), int(height * 0.6)))
        data = io.BytesIO()
        cropped.save(data, "JPEG", quality=65)
        records.append(read_record(photo.read_bytes()))
        copies.append(read_record(data.getvalue()))
    whole = pack_bits(np.array([r[2] for r in records]))
    crops = pack_bits(np.array([r[3] for r in records]).reshape(-1, 8)).reshape(4, -1)
    copy = pack_bits(np.array([c[2] for c in copies]))
    closest = popcount(copy[:, None, None] ^ np.concatenate([whole[:, None], crops], 1)[None]).min(2)
    assert (np.diag(closest) <= CROP_BITS).all()
    assert (closest[~np.eye(4, dtype=bool)] > CROP_BITS).all()
    assert (popcount(copy ^ whole) > STRICT_BITS).any()  # what the whole image's hash alone misses


@pytest.mark.parametrize("numpy_bit_count", [True, False])
def test_popcount_counts_bits_without_unpacking_them(numpy_bit_count, monkeypatch):
    import tracemalloc

    if not numpy_bit_count:
        monkeypatch.delattr(np, "bitwise_count", raising=False)  # NumPy 1.26
    values = np.random.default_rng(10).integers(0, 2**63, size=(20_000, 17), dtype=np.uint64)
    values[0, :3] = [0, 2**64 - 1, 2**63]
    tracemalloc.start()
    try:
        counted = popcount(values)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counted.shape == values.shape and counted.dtype == np.int64
    assert counted[0, :3].tolist() == [0, 64, 1]
    assert counted[5].tolist() == [bin(int(v)).count("1") for v in values[5]]
    assert peak < 3 * values.nbytes  # unpacked bits were 8x the input
