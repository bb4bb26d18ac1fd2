"""flowerkit: the "Your first Keras model, with transfer learning" codelab as a
backend-agnostic Keras 3 package.

    import flowerkit
    recipe = flowerkit.get_preset("mobilenet_v2_035").replace(epochs=5)
    result = flowerkit.train(recipe, source="path/to/flower_photos", output_dir="runs/demo")
    flowerkit.predict("runs/demo/model.keras", ["rose.jpg"])
"""

from flowerkit.backbones import BACKBONES, BackboneSpec, get_backbone
from flowerkit.data import FlowerData, load_data
from flowerkit.errors import FlowerkitError
from flowerkit.evaluation import evaluate, predict
from flowerkit.model import build_model, load_model
from flowerkit.recipe import PRESETS, Recipe, get_preset
from flowerkit.sources import FlowerkitWarning, ImageIndex, index_source
from flowerkit.training import TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "FlowerData",
    "FlowerkitError",
    "FlowerkitWarning",
    "ImageIndex",
    "PRESETS",
    "Recipe",
    "TrainResult",
    "build_model",
    "evaluate",
    "get_backbone",
    "get_preset",
    "index_source",
    "load_data",
    "load_model",
    "predict",
    "train",
]
