"""Loading a trained run: the model and the recipe saved beside it, for
predict, evaluate, export and serve alike (the rule for the recipe file:
`flowerkit.report.run_recipe`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras

from flowerkit.config.recipe import Recipe
from flowerkit.errors import FlowerkitError
from flowerkit.model.loading import load_model
from flowerkit.report.run_recipe import RECIPE_FILE, recipe_beside


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run: its model, its recipe, and the model's path."""

    model: keras.Model
    recipe: Recipe
    path: Path

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.recipe.class_names)

    @property
    def image_size(self) -> int:
        return int(self.model.input_shape[1])


def load_run(model_path) -> Run:
    """The saved model at `model_path` and the recipe saved beside it; the
    recipe must name as many classes as the model has outputs."""
    model_path = Path(model_path)
    model = load_model(model_path)
    recipe = recipe_beside(model_path)
    classes = model.output_shape[-1]
    if len(recipe.class_names) != classes:
        raise FlowerkitError(
            f"{model_path.with_name(RECIPE_FILE)} names {len(recipe.class_names)} classes "
            f"but the model has {classes} outputs."
        )
    return Run(model=model, recipe=recipe, path=model_path)
