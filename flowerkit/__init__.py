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
import sys
import types

__version__ = "0.1.0"

_EXPORTS = {
    "BACKBONES": "flowerkit.model.backbones",
    "BackboneSpec": "flowerkit.model.backbones",
    "get_backbone": "flowerkit.model.backbones",
    "list_backbones": "flowerkit.model.backbones",
    "register_backbone": "flowerkit.model.backbones",
    "FlowerData": "flowerkit.data.loading",
    "load_data": "flowerkit.data.loading",
    "ImageIndex": "flowerkit.data.sources",
    "index_source": "flowerkit.data.sources",
    "FlowerkitError": "flowerkit.errors",
    "FlowerkitWarning": "flowerkit.errors",
    "evaluate": "flowerkit.exporting.engines",
    "export": "flowerkit.exporting.convert",
    "predict": "flowerkit.exporting.engines",
    "load_model": "flowerkit.model.loading",
    "build_model": "flowerkit.model.build",
    "PRESETS": "flowerkit.config.presets",
    "Recipe": "flowerkit.config.recipe",
    "get_preset": "flowerkit.config.recipe",
    "TrainResult": "flowerkit.training.runner",
    "train": "flowerkit.training.runner",
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


class _Package(types.ModuleType):
    """`flowerkit` itself. Importing a submodule sets it as an attribute of
    its package; `python -m flowerkit.train` (and predict, evaluate, export)
    need entry modules of the API functions' names, so an import of one of
    them leaves the function in place."""

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
