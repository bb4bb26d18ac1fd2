"""flowerkit: the "Your first Keras model, with transfer learning" codelab as a
backend-agnostic Keras 3 package.

    import flowerkit
    recipe = flowerkit.get_preset("mobilenet_v2_035").replace(epochs=5)
    result = flowerkit.train(recipe, source="path/to/flower_photos", output_dir="runs/demo")
    flowerkit.predict("runs/demo/model.keras", ["rose.jpg"])

Names are imported on first use, so `import flowerkit` (and `flowerkit
--help`) does not start Keras and its backend.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "BACKBONES": "flowerkit.backbones",
    "BackboneSpec": "flowerkit.backbones",
    "get_backbone": "flowerkit.backbones",
    "register_backbone": "flowerkit.backbones",
    "FlowerData": "flowerkit.data",
    "load_data": "flowerkit.data",
    "ImageIndex": "flowerkit.data.sources",
    "index_source": "flowerkit.data.sources",
    "FlowerkitError": "flowerkit.errors",
    "FlowerkitWarning": "flowerkit.errors",
    "evaluate": "flowerkit.evaluation",
    "export": "flowerkit.exporting",
    "predict": "flowerkit.evaluation",
    "load_model": "flowerkit.inference",
    "build_model": "flowerkit.model",
    "PRESETS": "flowerkit.presets",
    "Recipe": "flowerkit.recipe",
    "get_preset": "flowerkit.recipe",
    "TrainResult": "flowerkit.training",
    "train": "flowerkit.training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flowerkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
