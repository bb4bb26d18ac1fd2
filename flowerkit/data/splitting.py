"""The duplicate-aware split and the curation a recipe asks for.

`group_split`: a stratified split that keeps each group of duplicates on
one side (validation never holds a copy of a training photo). `curate`:
the recipe's `exclude` and `relabel` lists applied to an index, by path
relative to the source folder, with a record of what they changed."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np

from flowerkit.data.sources import ImageIndex, split_index
from flowerkit.errors import FlowerkitError, FlowerkitWarning


def group_split(index: ImageIndex, validation_fraction: float, seed: int, group_of):
    """(train, validation, groups kept together): stratified per class like
    `split_index`, with every group (images sharing a `group_of` id) on one
    side. Without groups of two or more it is exactly `split_index`."""
    group_of = np.asarray(group_of)
    ids, sizes = np.unique(group_of, return_counts=True)
    multi = ids[sizes > 1]
    if not len(multi):
        return (*split_index(index, validation_fraction, seed), 0)
    rng = np.random.default_rng(seed)
    labels = index.labels
    classes = len(index.class_names)
    counts = np.bincount(labels, minlength=classes)
    targets = np.array([round(count * validation_fraction) for count in counts.tolist()], dtype=np.int64)
    taken = np.zeros(classes, np.int64)
    validation = np.zeros(len(index), bool)
    members = group_members(group_of, multi)
    # Groups first, each to validation with the split's odds if it fits
    # there; then single images fill each class up to its target exactly.
    for group in rng.permutation(multi):
        counts = np.bincount(labels[members[group]], minlength=classes)
        if rng.random() < validation_fraction and np.all(taken + counts <= targets):
            validation[members[group]] = True
            taken += counts
    singles = np.flatnonzero(np.isin(group_of, multi, invert=True))
    single_labels = labels[singles]
    order = np.argsort(single_labels, kind="stable")  # each class's singles, in index order
    bounds = np.searchsorted(single_labels[order], np.arange(classes + 1))
    for c in range(classes):
        candidates = rng.permutation(singles[order[bounds[c] : bounds[c + 1]]])
        chosen = candidates[: max(targets[c] - taken[c], 0)]
        validation[chosen] = True
    train = np.flatnonzero(~validation)
    held = np.flatnonzero(validation)
    if len(train) == 0 or len(held) == 0:
        raise FlowerkitError(
            f"{len(index)} images cannot be split {1 - validation_fraction:.0%}/"
            f"{validation_fraction:.0%} into non-empty training and validation sets."
        )
    return index.subset(train), index.subset(held), len(multi)


def group_members(group_of: np.ndarray, ids) -> dict:
    """Positions holding each of `ids` in `group_of`, by one sort (not a
    scan per group)."""
    order = np.argsort(group_of, kind="stable")
    sorted_ids = group_of[order]
    starts = np.searchsorted(sorted_ids, ids, "left")
    ends = np.searchsorted(sorted_ids, ids, "right")
    return {group: order[start:end] for group, start, end in zip(ids.tolist(), starts, ends)}


def relative_name(image, root) -> str:
    """An image's path relative to its source folder (POSIX separators), or as given."""
    image = str(image)
    if root and image.startswith(str(root).rstrip(os.sep) + os.sep):
        image = image[len(str(root).rstrip(os.sep)) + 1 :]
    return image.replace(os.sep, "/")


def source_root(index: ImageIndex) -> str:
    """The folder that relative paths are relative to: the class-folder
    root, or the folder of a CSV source."""
    source = Path(index.source)
    return str(source.parent if source.suffix.lower() == ".csv" else source)


def curate(index: ImageIndex, exclude=(), relabel=None) -> tuple[ImageIndex, dict]:
    """`index` without the `exclude` paths and with `relabel` (path -> class
    name) applied; paths relative to the source folder. Returns the new
    index and a record: how many were excluded and relabelled, and the paths
    that matched no image (one warning names them)."""
    relabel = dict(relabel or {})
    if not exclude and not relabel:
        return index, {}
    root = source_root(index)
    names = [relative_name(image, root) if isinstance(image, str) else None for image in index.images]
    position = {name: i for i, name in enumerate(names) if name is not None}
    unknown = sorted({label for label in relabel.values() if label not in index.class_names})
    if unknown:
        raise FlowerkitError(
            f"--relabel names class(es) {unknown} that {index.source} does not have; "
            f"its classes are {list(index.class_names)}."
        )
    labels = index.labels.copy()
    relabelled = 0
    for name, label in relabel.items():
        if name in position:
            new = index.class_names.index(label)
            relabelled += int(labels[position[name]] != new)
            labels[position[name]] = new
    dropped = {position[name] for name in exclude if name in position}
    unmatched = sorted(name for name in [*exclude, *relabel] if name not in position)
    if unmatched:
        shown = ", ".join(unmatched[:10]) + (f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else "")
        warnings.warn(
            f"{len(unmatched)} path(s) to exclude or relabel match no image in {index.source}: "
            f"{shown}.", FlowerkitWarning, stacklevel=3,
        )
    keep = np.setdiff1d(np.arange(len(index)), np.fromiter(dropped, np.int64, len(dropped)))
    curated = dataclasses.replace(index.subset(keep), labels=labels[keep])
    record = {"excluded": len(dropped), "relabelled": relabelled, "unmatched": len(unmatched)}
    return curated, record
