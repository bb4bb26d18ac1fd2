"""`load_data`: a recipe's data, curated, split and batched (see `flowerkit.data`)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from flowerkit.config.recipe import Recipe
from flowerkit.data.balance import imbalance_ratio
from flowerkit.data.duplicates import find_duplicates
from flowerkit.data.hashing import hash_index
from flowerkit.data.pipelines import PipelineState, build_dataset
from flowerkit.data.sources import ImageIndex, index_source, sample_index, split_index
from flowerkit.data.splitting import curate, group_split
from flowerkit.errors import FlowerkitError

SUBSETS = ("train", "validation", "all")


@dataclasses.dataclass(frozen=True)
class Subset:
    """Images of one subset, the batched dataset that reads them and, for
    tf.data, that pipeline's state (`flowerkit.data.pipelines.PipelineState`)."""

    index: ImageIndex
    dataset: Any
    state: PipelineState | None = None

    def __len__(self) -> int:
        return len(self.index)


@dataclasses.dataclass(frozen=True)
class FlowerData:
    """The subsets asked for, by name ("train", "validation", "all")."""

    class_names: tuple[str, ...]
    subsets: dict[str, Subset]
    source: str
    # What the cheap check before the split found and did (`check_before_split`).
    inspection: dict = dataclasses.field(default_factory=dict)

    def __getitem__(self, name: str) -> Subset:
        return self.subsets[name]

    @property
    def train(self) -> Subset:
        return self.subsets["train"]

    @property
    def validation(self) -> Subset:
        return self.subsets["validation"]


def load_data(
    recipe: Recipe,
    source: str | None = None,
    subsets=("train", "validation"),
    max_images: int | None = None,
    pipeline: str = "auto",
    quiet: bool | None = None,
) -> FlowerData:
    """Loads `source` (see `flowerkit.data.sources.index_source`) for `recipe`.

    subsets: any of "train" and "validation" (the recipe's stratified,
    seeded split; the same files on every backend) and "all" (every image).
    max_images: a seeded random subset of about that many images, for quick
    runs. It is drawn after the split, from each side of it, so a subset's
    validation images are always among the full run's validation images.
    quiet: progress of the indexing and hashing passes, as in
    `flowerkit.progress.stage` (None: a bar on a terminal, else one line).
    """
    unknown = set(subsets) - set(SUBSETS)
    if unknown:
        raise FlowerkitError(f"Unknown subset(s) {sorted(unknown)}; choose from {SUBSETS}.")
    if max_images is not None and max_images < 1:
        raise FlowerkitError(f"max_images must be at least 1, got {max_images}.")
    index = index_source(source, quiet=quiet)
    if recipe.class_names and tuple(recipe.class_names) != index.class_names:
        raise FlowerkitError(
            f"The recipe's classes {list(recipe.class_names)} differ from the classes "
            f"found in {index.source}: {list(index.class_names)}."
        )
    index, curation = curate(index, recipe.exclude, recipe.relabel)
    indexes = {"all": index}
    inspection = {"curation": curation} if curation else {}
    if {"train", "validation"} & set(subsets):
        if recipe.split_groups or recipe.exclude_conflicts:
            to_split, group_of, inspection = check_before_split(index, recipe, inspection, quiet)
        else:
            to_split, group_of = index, np.arange(len(index))
        if recipe.split_groups:
            indexes["train"], indexes["validation"], kept = group_split(
                to_split, recipe.validation_split, recipe.seed, group_of
            )
            inspection["groups_kept_together"] = kept
        else:
            indexes["train"], indexes["validation"] = split_index(
                to_split, recipe.validation_split, recipe.seed
            )
    chosen = {}
    for name in subsets:
        chosen_index = indexes[name]
        if max_images:
            share = round(max_images * len(chosen_index) / len(index))
            chosen_index = sample_index(chosen_index, max(share, 1), recipe.seed)
        dataset, state = build_dataset(
            chosen_index,
            recipe.image_size,
            recipe.batch_size,
            shuffle=name == "train",
            seed=recipe.seed,
            pipeline=pipeline,
        )
        chosen[name] = Subset(chosen_index, dataset, state)
    return FlowerData(class_names=index.class_names, subsets=chosen, source=index.source,
                      inspection=inspection)


def check_before_split(index: ImageIndex, recipe: Recipe, record: dict, quiet: bool | None = None):
    """The cheap part of `flowerkit inspect` (content and perceptual hashes,
    no features), run before every split: the index to split (label
    conflicts left out if `recipe.exclude_conflicts`), each image's
    duplicate group, and the record for metrics.json."""
    started = time.perf_counter()
    hashes = hash_index(index, quiet=quiet)
    duplicates = find_duplicates(hashes, index.labels)
    counts = np.bincount(index.labels, minlength=len(index.class_names))
    record = {
        **record,
        "images": len(index),
        "class_counts": dict(zip(index.class_names, counts.tolist())),
        "imbalance_ratio": imbalance_ratio(counts),
        "duplicate_groups": len(duplicates.groups),
        "duplicate_images": duplicates.duplicate_images,
        "conflict_groups": len(duplicates.conflicts),
        "odd_modes": int(np.isin(hashes.modes, ("RGB", ""), invert=True).sum()),
        "thresholds": duplicates.thresholds,
    }
    group_of = duplicates.group_of
    if recipe.exclude_conflicts and duplicates.conflicts:
        dropped = duplicates.conflict_members()
        kept = np.ones(len(index), bool)
        kept[dropped] = False
        keep = np.flatnonzero(kept)  # setdiff1d sorts all n positions: a second at a million
        index, group_of = index.subset(keep), group_of[keep]
        record["conflict_images_excluded"] = len(dropped)
    record["seconds"] = time.perf_counter() - started
    return index, group_of, record
