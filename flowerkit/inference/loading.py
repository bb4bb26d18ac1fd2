"""Loading a trained run: the model and the recipe saved beside it."""

from __future__ import annotations

from pathlib import Path

import keras

from flowerkit.config.recipe import Recipe
from flowerkit.model.loading import load_model


def load_trained(model_path) -> tuple[keras.Model, Recipe]:
    """A saved model and the recipe saved beside it (recipe.json)."""
    model_path = Path(model_path)
    model = load_model(model_path)
    recipe_path = model_path.with_name("recipe.json")
    if recipe_path.is_file():
        return model, Recipe.load(recipe_path)
    classes = model.output_shape[-1]
    return model, Recipe(
        class_names=tuple(f"class_{i}" for i in range(classes)),
        image_size=model.input_shape[1],
    )
