"""The data half of a recipe, and the one way in for training, evaluation
and the benchmarks:

    source -> ImageIndex (sources) -> split -> [sample] -> datasets (pipelines)

`decode` and `sources` need only Pillow and NumPy; `pipelines` and
`loading` start Keras. So that `flowerkit.data.decode` stays that light,
this package imports nothing itself: `load_data`, `FlowerData` and the rest
are imported from their modules on first use.
"""

import importlib

_EXPORTS = {
    "FlowerData": "flowerkit.data.loading",
    "Subset": "flowerkit.data.loading",
    "SUBSETS": "flowerkit.data.loading",
    "load_data": "flowerkit.data.loading",
    "ImageIndex": "flowerkit.data.sources",
    "index_source": "flowerkit.data.sources",
    "iterate_batches": "flowerkit.data.pipelines",
    "make_dataset": "flowerkit.data.pipelines",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flowerkit.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
