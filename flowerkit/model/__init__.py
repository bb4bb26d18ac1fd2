"""The model: backbones (a registry), augmentation layers, building a
recipe's model and loading a saved one. The only layer that applies the
backends' fast paths to a model."""

from flowerkit.model.backbones import (
    BACKBONES, BackboneSpec, WeightSource, get_backbone, list_backbones, register_backbone,
)
from flowerkit.model.build import build_model, find_backbone, split_at_features, unfreeze_backbone
from flowerkit.model.loading import load_model

__all__ = [
    "BACKBONES", "BackboneSpec", "build_model", "find_backbone", "get_backbone", "load_model",
    "list_backbones", "register_backbone", "split_at_features", "unfreeze_backbone", "WeightSource",
]
