"""The string-named augmentation ops a recipe may list (big_vision style):
their names, default arguments and syntax. `flowerkit.model.augment` builds
the Keras layers for them.

    "flip"             random horizontal flip
    "rotate:0.05"      random rotation, fraction of a full turn
    "zoom:0.1"         random zoom in/out by up to 10%
    "translate:0.1"    random shift by up to 10% of the side
    "contrast:0.2"     random contrast change
    "brightness:0.2"   random brightness change (of the 0-255 range)
"""

from __future__ import annotations

from flowerkit.errors import FlowerkitError

DEFAULT_ARGUMENTS = {
    "flip": None,
    "rotate": 0.05,
    "zoom": 0.1,
    "translate": 0.1,
    "contrast": 0.2,
    "brightness": 0.2,
}


def parse_op(op: str) -> tuple[str, float | None]:
    """("zoom", 0.1) for "zoom:0.1"; the default argument when none is given."""
    name, _, arg = op.partition(":")
    if name not in DEFAULT_ARGUMENTS:
        raise FlowerkitError(
            f"Unknown augmentation op {op!r}. Known: {', '.join(DEFAULT_ARGUMENTS)}."
        )
    if not arg:
        return name, DEFAULT_ARGUMENTS[name]
    try:
        value = float(arg)
    except ValueError:
        raise FlowerkitError(f"Augmentation op {op!r}: {arg!r} is not a number.") from None
    if name == "flip" or not 0.0 < value <= 1.0:
        raise FlowerkitError(f"Augmentation op {op!r}: argument must be in (0, 1].")
    return name, value


def validate_ops(ops) -> None:
    for op in ops:
        parse_op(op)
