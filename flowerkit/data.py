"""The data half of a recipe: source -> index -> split -> pipelines."""

from __future__ import annotations

import dataclasses
from typing import Any

from flowerkit.errors import FlowerkitError
from flowerkit.pipeline import make_dataset
from flowerkit.recipe import Recipe
from flowerkit.sources import ImageIndex, index_source, sample_index, split_index


@dataclasses.dataclass
class FlowerData:
    """Training and validation datasets plus what they were made from."""

    class_names: tuple[str, ...]
    train: Any
    validation: Any
    train_index: ImageIndex
    validation_index: ImageIndex


def load_data(
    recipe: Recipe,
    source: str | None = None,
    max_images: int | None = None,
    pipeline: str = "auto",
) -> FlowerData:
    """Loads `source` (see `flowerkit.sources.index_source`) for `recipe`.

    `max_images` keeps a seeded random subset, for quick runs.
    """
    index = index_source(source)
    if recipe.class_names and tuple(recipe.class_names) != index.class_names:
        raise FlowerkitError(
            f"The recipe's classes {list(recipe.class_names)} differ from the classes "
            f"found in {index.source}: {list(index.class_names)}."
        )
    if max_images:
        index = sample_index(index, max_images, recipe.seed)
    train_index, validation_index = split_index(index, recipe.validation_split, recipe.seed)
    return FlowerData(
        class_names=index.class_names,
        train=make_dataset(
            train_index, recipe.image_size, recipe.batch_size,
            shuffle=True, seed=recipe.seed, pipeline=pipeline,
        ),
        validation=make_dataset(
            validation_index, recipe.image_size, recipe.batch_size, pipeline=pipeline
        ),
        train_index=train_index,
        validation_index=validation_index,
    )
