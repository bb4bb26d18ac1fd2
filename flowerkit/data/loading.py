"""`load_data`: a source and a recipe become the subsets training and
evaluation read (re-exported by `flowerkit.data`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from flowerkit.data.pipelines import make_dataset
from flowerkit.data.sources import ImageIndex, index_source, sample_index, split_index
from flowerkit.errors import FlowerkitError
from flowerkit.recipe import Recipe

SUBSETS = ("train", "validation", "all")


@dataclasses.dataclass(frozen=True)
class Subset:
    """Images of one subset and the batched dataset that reads them."""

    index: ImageIndex
    dataset: Any

    def __len__(self) -> int:
        return len(self.index)


@dataclasses.dataclass(frozen=True)
class FlowerData:
    """The subsets asked for, by name ("train", "validation", "all")."""

    class_names: tuple[str, ...]
    subsets: dict[str, Subset]
    source: str

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
) -> FlowerData:
    """Loads `source` (see `flowerkit.data.sources.index_source`) for `recipe`.

    subsets: any of "train" and "validation" (the recipe's stratified,
    seeded split; the same files on every backend) and "all" (every image).
    max_images: a seeded random subset of about that many images, for quick
    runs. It is drawn after the split, from each side of it, so a subset's
    validation images are always among the full run's validation images.
    """
    unknown = set(subsets) - set(SUBSETS)
    if unknown:
        raise FlowerkitError(f"Unknown subset(s) {sorted(unknown)}; choose from {SUBSETS}.")
    if max_images is not None and max_images < 1:
        raise FlowerkitError(f"max_images must be at least 1, got {max_images}.")
    index = index_source(source)
    if recipe.class_names and tuple(recipe.class_names) != index.class_names:
        raise FlowerkitError(
            f"The recipe's classes {list(recipe.class_names)} differ from the classes "
            f"found in {index.source}: {list(index.class_names)}."
        )
    indexes = {"all": index}
    if {"train", "validation"} & set(subsets):
        indexes["train"], indexes["validation"] = split_index(
            index, recipe.validation_split, recipe.seed
        )
    chosen = {}
    for name in subsets:
        chosen_index = indexes[name]
        if max_images:
            share = round(max_images * len(chosen_index) / len(index))
            chosen_index = sample_index(chosen_index, max(share, 1), recipe.seed)
        chosen[name] = Subset(
            chosen_index,
            make_dataset(
                chosen_index,
                recipe.image_size,
                recipe.batch_size,
                shuffle=name == "train",
                seed=recipe.seed,
                pipeline=pipeline,
            ),
        )
    return FlowerData(class_names=index.class_names, subsets=chosen, source=index.source)
