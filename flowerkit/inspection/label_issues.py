"""Likely label errors, confident-learning style (Northcutt et al. 2021):
each image's out-of-fold probability for its given label, from a linear
softmax head trained on the other folds' cached backbone features.

An image is a suspect when its given label's probability is below that
class's threshold (the mean probability the class's own images get) while
another class reaches its own threshold (an off-diagonal entry of the
confident joint); suspects rank by self-confidence, lowest first.
Keras-free: a plain numpy head is enough on pooled features."""

from __future__ import annotations

import dataclasses

import numpy as np

FOLDS = 5
STEPS = 150
L2 = 1e-2
LEARNING_RATE = 0.5
# Rows per gradient step. Up to this many training rows every step is the full
# batch (the shared photos' folds are ~2,600); beyond it each step takes the
# next rows of a seeded shuffle, so a fold costs STEPS x BATCH_ROWS rows, not
# STEPS x n: at 100 k images in 1,000 classes 2.3 s a step becomes 0.2 s.
BATCH_ROWS = 8192


@dataclasses.dataclass(frozen=True)
class LabelIssues:
    self_confidence: np.ndarray  # (n,) out-of-fold probability of the given label
    predicted: np.ndarray  # (n,) out-of-fold argmax class
    predicted_probability: np.ndarray  # (n,) its probability
    thresholds: np.ndarray  # (classes,) per-class confident-learning threshold
    suspects: np.ndarray  # positions, most suspect first
    folds: int

    def top(self, count: int) -> np.ndarray:
        """The `count` lowest self-confidences (suspects or not), lowest first."""
        return np.argsort(self.self_confidence, kind="stable")[:count]


def fold_assignment(labels, folds: int, seed: int, groups=None) -> np.ndarray:
    """Stratified folds (0..folds-1); with `groups` (a group id per image),
    a duplicate group's images share a fold, so no copy is its own evidence."""
    labels = np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    rng = np.random.default_rng(seed)
    _, first, group_index = np.unique(groups, return_index=True, return_inverse=True)
    fold_of_group = np.zeros(len(first), np.int64)
    # Each group's fold is dealt from its first image's class, in a seeded
    # order; its members follow it (one lookup each, not a scan per group).
    # The deal goes on from class to class: with one group per class, the
    # groups still spread over the folds rather than all landing in fold 0.
    dealt = 0
    for label in np.unique(labels):
        leaders = rng.permutation(np.flatnonzero(labels[first] == label))
        fold_of_group[leaders] = (dealt + np.arange(len(leaders))) % folds
        dealt += len(leaders)
    return fold_of_group[group_index.ravel()]


def fit_softmax(features, labels, classes: int, steps: int = STEPS, l2: float = L2,
                learning_rate: float = LEARNING_RATE, batch_rows: int = BATCH_ROWS, seed: int = 0,
                rows=None):
    """Multinomial logistic regression by gradient descent with Nesterov
    momentum on standardised features: (weights, bias, mean, scale). Full
    batch up to `batch_rows` rows, else mini-batches of a seeded shuffle.
    `rows` (sorted positions; default all) are read from `features` a batch at
    a time, not copied: a fold's training rows are most of a large cache."""
    features, labels = np.asarray(features), np.asarray(labels)
    rows = np.arange(len(features)) if rows is None else np.asarray(rows)
    full = len(rows) <= batch_rows
    if full:
        x_full, labels = np.asarray(features[rows], np.float32), labels[rows]  # <= batch_rows rows
        mean = x_full.mean(axis=0)
        scale = x_full.std(axis=0) + np.float32(1e-6)
        x_full = (x_full - mean) / scale
    else:
        mean, scale = _moments(features, rows)
    batches = _batches(len(rows), batch_rows, seed)
    weights = np.zeros((features.shape[1], classes), np.float32)
    bias = np.zeros(classes, np.float32)
    velocity_w, velocity_b = np.zeros_like(weights), np.zeros_like(bias)
    rate = np.float32(learning_rate / np.sqrt(features.shape[1]))
    l2, momentum = np.float32(l2), np.float32(0.9)
    for _ in range(steps):
        if full:
            x, y = x_full, labels
        else:
            batch = rows[next(batches)]
            x, y = (np.asarray(features[batch], np.float32) - mean) / scale, labels[batch]
        look_w, look_b = weights + momentum * velocity_w, bias + momentum * velocity_b
        error = _softmax(x @ look_w + look_b)  # minus the one-hot labels, without building them
        error[np.arange(len(x)), y] -= 1
        error /= len(x)
        velocity_w = momentum * velocity_w - rate * (x.T @ error + l2 * look_w)
        velocity_b = momentum * velocity_b - rate * error.sum(axis=0)
        weights, bias = weights + velocity_w, bias + velocity_b
    return weights, bias, mean, scale


def _moments(features, rows, chunk: int = 65_536):
    """Per-column mean and standard deviation (+1e-6) of `features[rows]`,
    accumulated in float64 a chunk of rows at a time."""
    total = np.zeros(features.shape[1])
    squares = np.zeros(features.shape[1])
    for start in range(0, len(rows), chunk):
        x = np.asarray(features[rows[start : start + chunk]], np.float64)
        total += x.sum(axis=0)
        squares += np.square(x).sum(axis=0)
    mean = total / len(rows)
    std = np.sqrt(np.maximum(squares / len(rows) - np.square(mean), 0))
    return mean.astype(np.float32), (std + 1e-6).astype(np.float32)


def _batches(count: int, batch_rows: int, seed: int):
    """Endless sorted row positions, `batch_rows` at a time, from a new seeded
    shuffle each pass (sorted: a gather in file order reads memory forwards)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(count)
        for start in range(0, count - batch_rows + 1, batch_rows):
            yield np.sort(order[start : start + batch_rows])


def predict_softmax(model, features) -> np.ndarray:
    weights, bias, mean, scale = model
    return _softmax(((features - mean) / scale) @ weights + bias)


def _softmax(logits):
    """Softmax over rows, in place: n x classes is the one large array here."""
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def find_label_issues(features, labels, classes: int, folds: int = FOLDS, seed: int = 0,
                      groups=None, progress=None, steps: int = STEPS, l2: float = L2,
                      batch_rows: int = BATCH_ROWS, chunk: int = 65_536) -> LabelIssues:
    """Out-of-fold probabilities and the ranked suspects (module docstring).

    Nothing here is n x classes: each fold's head is kept (features x
    classes), its held-out rows are predicted `chunk` rows at a time, once for
    the self-confidences and again, once the thresholds are known, for the
    other classes' test (at 1 M images in 1,000 classes the probabilities
    would be 4 GB)."""
    features = np.asarray(features)
    features = features.reshape(len(features), -1)
    labels = np.asarray(labels, dtype=np.int64)
    folds = max(2, min(folds, int(np.bincount(labels, minlength=classes).max())))
    assignment = fold_assignment(labels, folds, seed, groups)
    n = len(labels)
    self_confidence = np.zeros(n, np.float32)
    predicted = np.zeros(n, np.int64)
    predicted_probability = np.zeros(n, np.float32)
    heads = []  # (held-out positions, their head) per fold
    for fold in range(folds):
        held = np.flatnonzero(assignment == fold)
        if not len(held):
            continue
        # One group holding every image leaves nothing to learn from: no opinion (uniform).
        head = None if len(held) == n else fit_softmax(
            features, labels, classes, steps, l2, batch_rows=batch_rows, seed=seed + fold,
            rows=np.flatnonzero(assignment != fold))
        heads.append((held, head))
        for rows, probabilities in _held_out(head, features, held, classes, chunk):
            self_confidence[rows] = probabilities[np.arange(len(rows)), labels[rows]]
            predicted[rows] = probabilities.argmax(axis=1)
            predicted_probability[rows] = probabilities[np.arange(len(rows)), predicted[rows]]
        if progress:
            progress(fold + 1, folds)
    counts = np.bincount(labels, minlength=classes)
    totals = np.bincount(labels, weights=self_confidence, minlength=classes)
    thresholds = np.where(counts > 0, totals / np.maximum(counts, 1), 1.0)
    another = np.zeros(n, bool)
    for held, head in heads:
        for rows, probabilities in _held_out(head, features, held, classes, chunk):
            another[rows] = _another_class_above(probabilities, labels[rows], thresholds, chunk)
    suspect = (self_confidence < thresholds[labels]) & another
    order = np.argsort(self_confidence, kind="stable")
    return LabelIssues(self_confidence, predicted, predicted_probability, thresholds, order[suspect[order]],
                       folds)


def _held_out(head, features, held, classes: int, chunk: int):
    """(rows, their probabilities under `head`) for `held`, `chunk` rows at a
    time; a head of None gives every class the same probability."""
    for start in range(0, len(held), chunk):
        rows = held[start : start + chunk]
        if head is None:
            yield rows, np.full((len(rows), classes), 1 / classes, np.float32)
        else:
            yield rows, predict_softmax(head, np.asarray(features[rows], np.float32))


def _another_class_above(probabilities, labels, thresholds, chunk: int = 65_536) -> np.ndarray:
    """(n,) bool: some class other than the given one reaches its threshold
    (rows in chunks: no n x classes mask)."""
    found = np.zeros(len(labels), bool)
    for start in range(0, len(labels), chunk):
        above = probabilities[start : start + chunk] >= thresholds[None, :]
        above[np.arange(len(above)), labels[start : start + chunk]] = False
        found[start : start + chunk] = above.any(axis=1)
    return found
