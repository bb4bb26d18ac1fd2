"""The string-named augmentation ops a recipe may list (big_vision style):
a registry of ops, each one function beside its properties, and the syntax.

    "flip"             random horizontal flip
    "rotate:0.05"      random rotation, fraction of a full turn
    "zoom:0.1"         random zoom in/out by up to 10%
    "translate:0.1"    random shift by up to 10% of the side
    "contrast:0.2"     random contrast change
    "brightness:0.2"   random brightness change (of the 0-255 range)

Adding an op is one `@register_op` function here. It receives Keras's
`layers` module from `flowerkit.model.augment` rather than importing Keras,
so this layer stays Keras-free and the CLI checks every op before a backend
starts.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from flowerkit.errors import FlowerkitError


@dataclasses.dataclass(frozen=True)
class Op:
    name: str
    build: Callable  # (keras.layers, argument, seed) -> a Keras layer
    default: float | None  # the argument when none is given; None: takes none
    affine: bool  # resamples the image (flowerkit.backends.affine batches these)
    precomputable: bool  # the feature cache computes its views once per image


OPS: dict[str, Op] = {}


def register_op(name: str, default: float | None = None, affine: bool = False,
                precomputable: bool = False):
    """Registers the decorated `build(layers, argument, seed)` as op `name`."""
    def register(build):
        OPS[name] = Op(name, build, default, affine, precomputable)
        return build
    return register


@register_op("flip", precomputable=True)
def _flip(layers, argument, seed):
    return layers.RandomFlip("horizontal", seed=seed)


@register_op("rotate", default=0.05, affine=True)
def _rotate(layers, argument, seed):
    return layers.RandomRotation(argument, seed=seed)


@register_op("zoom", default=0.1, affine=True)
def _zoom(layers, argument, seed):
    return layers.RandomZoom(argument, seed=seed)


@register_op("translate", default=0.1, affine=True)
def _translate(layers, argument, seed):
    return layers.RandomTranslation(argument, argument, seed=seed)


@register_op("contrast", default=0.2)
def _contrast(layers, argument, seed):
    return layers.RandomContrast(argument, seed=seed)


@register_op("brightness", default=0.2)
def _brightness(layers, argument, seed):
    return layers.RandomBrightness(argument, value_range=(0, 255), seed=seed)


def parse_op(op: str) -> tuple[Op, float | None]:
    """(the zoom `Op`, 0.1) for "zoom:0.1"; the default argument when none is given."""
    name, _, argument = op.partition(":")
    if name not in OPS:
        raise FlowerkitError(f"Unknown augmentation op {op!r}. Known: {', '.join(OPS)}.")
    spec = OPS[name]
    if not argument:
        return spec, spec.default
    try:
        value = float(argument)
    except ValueError:
        raise FlowerkitError(f"Augmentation op {op!r}: {argument!r} is not a number.") from None
    if spec.default is None or not 0.0 < value <= 1.0:
        raise FlowerkitError(f"Augmentation op {op!r}: argument must be in (0, 1].")
    return spec, value


def validate_ops(ops, field: str = "augmentation") -> None:
    for op in ops:
        try:
            parse_op(op)
        except FlowerkitError as error:
            raise FlowerkitError(f"{field}: {error}") from None


def precomputable_ops() -> tuple[str, ...]:
    """The ops whose views the feature cache can compute once per image."""
    return tuple(name for name, spec in OPS.items() if spec.precomputable)
