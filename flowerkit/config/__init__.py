"""What a run is, as plain data: the `Recipe` (with its own validation), the
named presets, and the augmentation-op grammar. Imports nothing of flowerkit
but its errors, and no Keras."""

from flowerkit.config.presets import PRESETS
from flowerkit.config.recipe import Recipe, field_names, field_types, get_preset, parse_distribution

__all__ = ["PRESETS", "Recipe", "field_names", "field_types", "get_preset", "parse_distribution"]
