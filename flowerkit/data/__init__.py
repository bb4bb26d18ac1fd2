"""The data half of a recipe, and the one way in for training, evaluation
and the benchmarks:

    source -> ImageIndex (sources) -> split -> [sample] -> datasets (pipelines)

Names are imported on first use, so that `flowerkit.data.decode` (Pillow
only) and `flowerkit.data.sources` can be used without Keras: serving an
exported model decodes its images here and must not start a backend.
"""

import importlib

_EXPORTS = {
    "FlowerData": "flowerkit.data.loading",
    "Subset": "flowerkit.data.loading",
    "SUBSETS": "flowerkit.data.loading",
    "load_data": "flowerkit.data.loading",
    "ImageIndex": "flowerkit.data.sources",
    "iterate_batches": "flowerkit.data.pipelines",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flowerkit.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
