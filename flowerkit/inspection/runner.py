"""`flowerkit inspect`: every check on one data source, in one pass.

    index -> hashes (bytes, pHash of each image and of its crops; the manifest)
          -> backbone features (the feature cache)
          -> duplicates (close hashes by multi-index lookups, confirmed by feature
             cosine; cropped copies among feature neighbours: `data.duplicates`)
          -> out-of-fold label suspects -> balance -> report files
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings

import numpy as np

from flowerkit.training import features as features_lib
from flowerkit.data.loading import Subset
from flowerkit.data.pipelines import resolve_pipeline
from flowerkit.data.sources import index_source, split_index
from flowerkit.data.splitting import curate, group_split, relative_name, source_root
from flowerkit.errors import FlowerkitWarning
from flowerkit.data.balance import balance_report
from flowerkit.data.duplicates import find_duplicates, mixed_groups
from flowerkit.data.hashing import hash_index
from flowerkit.inspection.label_issues import FOLDS, find_label_issues
from flowerkit.model.build import build_model, split_at_features
from flowerkit.config.recipe import Recipe
from flowerkit import progress


def feature_recipe(recipe: Recipe) -> Recipe:
    """The recipe's backbone, frozen, with pooled features of the plain images."""
    return recipe.replace(head="gap", head_units=(), augmentation=(), trainable_backbone=False,
                          fine_tune_epochs=0, feature_cache="auto", distribution="none")


def inspect_source(recipe: Recipe, source=None, folds: int = FOLDS,
                   quiet: bool | None = None) -> dict:
    """Every finding on `source` as JSON-ready data (see `report.write_report`),
    with the index, hashes, duplicates and label issues under private keys
    ("_index", ...) for the report writer. quiet: each stage's progress as in
    `flowerkit.progress.stage` (None: a bar on a terminal, else one line)."""
    timer = _Timer()
    with timer("index_seconds"):
        index, curation, loader_messages = _indexed(source, recipe, quiet)
    with timer("hash_seconds"):
        hashes = hash_index(index, quiet=quiet)
    features = None
    if recipe.backbone != "none":
        with timer("feature_seconds"):
            features, cache = pooled_features(
                feature_recipe(recipe.replace(class_names=index.class_names)), index,
                verbose=2 if quiet else 1)
        timer.seconds["feature_cache"] = cache
    with timer("duplicate_seconds"):
        by_hashes = find_duplicates(hashes, index.labels)  # what `train` counts, reported beside
        duplicates = by_hashes
        if features is not None:  # minutes at a million images: a stage of its own
            with progress.stage("Searching feature neighbours", total=len(index), quiet=quiet) as bar:
                duplicates = find_duplicates(hashes, index.labels, features, progress=bar.update)
    issues = None
    if features is not None:
        with timer("label_issue_seconds"), progress.stage(
                "Checking labels", total=folds, unit="fold", quiet=quiet) as bar:
            issues = find_label_issues(features, index.labels, len(index.class_names), folds,
                                       recipe.seed, groups=duplicates.group_of,
                                       progress=lambda done, total: bar.update())
    _, _, kept = group_split(index, recipe.validation_split, recipe.seed, duplicates.group_of)
    root = source_root(index)
    names = [relative_name(image, root) if isinstance(image, str) else f"record {i}"
             for i, image in enumerate(index.images)]
    timer.seconds["total_seconds"] = time.perf_counter() - timer.started
    return {
        "source": index.source,
        "root": root,
        "recipe": recipe.name,
        "backbone": recipe.backbone,
        "image_size": recipe.image_size,
        "images": len(index),
        "class_names": list(index.class_names),
        "balance": balance_report(index.labels, index.class_names),
        "loader": _loader_report(hashes, loader_messages, recipe.image_size),
        "curation": curation,
        "duplicates": _duplicates_report(duplicates, by_hashes, features is not None, index, names,
                                         _old_split_sides(index, recipe), kept),
        "label_issues": _issues(issues, index, names),
        "timings": timer.seconds,
        "_private": {"index": index, "names": names, "issues": issues},
    }


class _Timer:
    """`with timer("name_seconds"):` records the block's wall time under that key."""

    def __init__(self):
        self.started = time.perf_counter()
        self.seconds = {}

    @contextlib.contextmanager
    def __call__(self, key: str):
        step = time.perf_counter()
        yield
        self.seconds[key] = time.perf_counter() - step


def _indexed(source, recipe: Recipe, quiet: bool | None = None):
    """(index after the recipe's exclude/relabel, the curation record, the
    loader's warnings): each warning is still shown, once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FlowerkitWarning)
        index = index_source(source, quiet=quiet)
        index, curation = curate(index, recipe.exclude, recipe.relabel)
    messages = [str(w.message) for w in caught if issubclass(w.category, FlowerkitWarning)]
    for message in messages:
        warnings.warn(message, FlowerkitWarning, stacklevel=3)
    return index, curation, messages


def _loader_report(hashes, loader_messages, image_size: int) -> dict:
    modes = {}
    for mode in hashes.modes:
        modes[mode or "unreadable"] = modes.get(mode or "unreadable", 0) + 1
    return {
        "skipped": loader_messages,
        "modes": modes,
        "smaller_than_input": int((hashes.sizes.min(axis=1) < image_size).sum()),
        "broke_after_indexing": len(hashes.problems),
    }


def _duplicates_report(duplicates, by_hashes, with_features: bool, index, names, sides,
                       kept: int) -> dict:
    conflicts = np.zeros(len(duplicates.groups), bool)
    conflicts[duplicates.conflicts] = True
    leaders = [members[0] for members in duplicates.groups]
    crossing = mixed_groups(duplicates.group_of, sides)[leaders].tolist()
    groups = [
        {
            "kind": kind,
            "conflict": bool(conflict),
            "crosses_random_split": crosses,
            "images": [{"path": names[m], "label": index.class_names[index.labels[m]]} for m in members],
        }
        for members, kind, conflict, crosses in zip(duplicates.groups, duplicates.kinds, conflicts, crossing)
    ]
    return {
        "groups": groups,
        "pairs": [{**pair, "first": names[pair["first"]], "second": names[pair["second"]]}
                  for pair in duplicates.pairs],
        "thresholds": duplicates.thresholds,
        "checks": "hashes and backbone features" if with_features else "hashes",
        "hash_only": {"group_count": len(by_hashes.groups), "duplicate_images": by_hashes.duplicate_images},
        "group_count": len(duplicates.groups),
        "duplicate_images": duplicates.duplicate_images,
        "exact_groups": duplicates.kinds.count("exact"),
        "conflict_groups": len(duplicates.conflicts),
        "groups_crossing_random_split": sum(g["crosses_random_split"] for g in groups),
        "groups_kept_together_by_group_split": kept,
    }


def pooled_features(recipe: Recipe, index, verbose):
    """(n, width) float32 pooled features of every image of `index` (the
    feature cache's), and "computed" or "hit"."""
    model = build_model(recipe, compile=False)
    extractor, _ = split_at_features(model)
    cached = features_lib.cached_features(
        extractor, recipe, Subset(index, None), 1, resolve_pipeline(), verbose)
    # A view of the memory-mapped cache (float32 already): pages are read as the checks use them.
    flat = np.asarray(cached.features[0], np.float32).reshape(len(index), -1)
    return flat, "computed" if cached.computed else "hit"


def _old_split_sides(index, recipe) -> np.ndarray:
    """0/1 per image: the side a random stratified split (without groups) puts it on."""
    tagged = dataclasses.replace(index, images=tuple(range(len(index))), orientations=())
    _, validation = split_index(tagged, recipe.validation_split, recipe.seed)
    sides = np.zeros(len(index), np.int64)
    sides[list(validation.images)] = 1
    return sides


def _issues(issues, index, names) -> dict:
    if issues is None:
        return {"available": False, "reason": "no backbone: no features to train a head on"}
    suspects = [
        {
            "path": names[p],
            "given": index.class_names[index.labels[p]],
            "predicted": index.class_names[issues.predicted[p]],
            "given_probability": float(issues.self_confidence[p]),
            "predicted_probability": float(issues.predicted_probability[p]),
        }
        for p in issues.suspects.tolist()
    ]
    return {
        "available": True,
        "method": "confident learning (self-confidence ranking), out-of-fold softmax head on "
                  "pooled backbone features",
        "folds": issues.folds,
        "thresholds": dict(zip(index.class_names, map(float, issues.thresholds))),
        "out_of_fold_accuracy": float((issues.predicted == index.labels).mean()),
        "suspect_count": len(suspects),
        "suspects": suspects,
    }
