"""The recipe.json saved beside a model, read by one rule everywhere
(predict, evaluate, export, serve): when it is needed it must be there, and
when it is there it must be readable; otherwise a one-line `FlowerkitError`
names the file. Needs no Keras, so serving an exported file reads it too."""

from __future__ import annotations

from pathlib import Path

from flowerkit.config.recipe import Recipe
from flowerkit.errors import FlowerkitError

RECIPE_FILE = "recipe.json"


def recipe_beside(model_path, required: bool = True) -> Recipe | None:
    """The recipe.json beside `model_path` (a `.keras` file or an exported
    artefact). Missing: an error, or None when not `required` (an exported
    file carries its class names in labels.txt); unreadable: always an error
    naming the file."""
    recipe_path = Path(model_path).with_name(RECIPE_FILE)
    if not recipe_path.is_file():
        if not required:
            return None
        raise FlowerkitError(
            f"No {RECIPE_FILE} beside {model_path}: it holds the class names and image size; "
            "give the model.keras of a run folder that train wrote."
        )
    return Recipe.load(recipe_path)
