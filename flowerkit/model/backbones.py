"""Backbone registry (timm / keras-hub style): a name -> how to build it and
how it wants its pixels.

    @register_backbone("mobilenet_v2", preprocessing="tf")
    def mobilenet_v2(input_shape, weights, **options): ...

A builder returns a feature extractor mapping *preprocessed* images to a
feature map (or None for no backbone); `flowerkit.model` puts the matching
preprocessing layer in front, so finished models take raw RGB 0-255 images
on every backend.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Callable

from flowerkit.errors import FlowerkitError, OfflineError, did_you_mean

# How a backbone wants its pixels; the model applies it as a Rescaling layer.
#   "tf":   x / 127.5 - 1          (MobileNet, MobileNetV2, ResNetV2, Xception)
#   "lite": (x - 127) / 128        (EfficientNet-Lite, as trained by TF)
#   "unit": x / 255                (plain networks with no pretraining)
#   "raw":  0..255 unchanged       (the backbone preprocesses by itself)
PREPROCESSING_SCALES = {
    "tf": (1 / 127.5, -1.0),
    "lite": (1 / 128, -127 / 128),
    "unit": (1 / 255, 0.0),
    "raw": None,
}


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    build: Callable  # (input_shape, weights, **options) -> keras.Model | None
    preprocessing: str


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(name: str, preprocessing: str):
    """Registers the decorated builder under `name`."""
    if preprocessing not in PREPROCESSING_SCALES:
        raise ValueError(f"preprocessing must be one of {list(PREPROCESSING_SCALES)}")

    def register(build: Callable) -> Callable:
        if name in BACKBONES:
            raise ValueError(f"Backbone {name!r} is already registered.")
        BACKBONES[name] = BackboneSpec(name, build, preprocessing)
        return build

    return register


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise FlowerkitError(
            f"Unknown backbone {name!r}.{did_you_mean(name, BACKBONES)} "
            f"Available: {', '.join(BACKBONES)}."
        ) from None


@register_backbone("none", preprocessing="unit")
def no_backbone(input_shape, weights, **options):
    """No backbone: the codelab's dense network on pixels."""
    return None


@register_backbone("mobilenet_v2", preprocessing="tf")
def mobilenet_v2(input_shape, weights, **options):
    """keras.applications.MobileNetV2 (option: alpha)."""
    return keras_application("MobileNetV2", input_shape, weights, options)


@register_backbone("mobilenet", preprocessing="tf")
def mobilenet(input_shape, weights, **options):
    """keras.applications.MobileNet v1 (options: alpha, depth_multiplier)."""
    return keras_application("MobileNet", input_shape, weights, options)


@register_backbone("efficientnet_v2_b0", preprocessing="raw")
def efficientnet_v2_b0(input_shape, weights, **options):
    """keras.applications.EfficientNetV2B0, which preprocesses inside."""
    options.setdefault("include_preprocessing", True)
    return keras_application("EfficientNetV2B0", input_shape, weights, options)


@register_backbone("resnet50_v2", preprocessing="tf")
def resnet50_v2(input_shape, weights, **options):
    """keras.applications.ResNet50V2."""
    return keras_application("ResNet50V2", input_shape, weights, options)


@register_backbone("xception", preprocessing="tf")
def xception(input_shape, weights, **options):
    """keras.applications.Xception."""
    return keras_application("Xception", input_shape, weights, options)


@register_backbone("efficientnet_lite0", preprocessing="lite")
def efficientnet_lite0(input_shape, weights, **options):
    """keras-hub EfficientNet-Lite0 (weights: a preset name or a local preset folder)."""
    return keras_hub_backbone("efficientnet_lite0_ra_imagenet", weights, options)


def keras_application(constructor_name: str, input_shape, weights, options: dict):
    """A `keras.applications` model without its top, as a backbone."""
    import keras

    constructor = getattr(keras.applications, constructor_name)
    weights_file = weights not in (None, "imagenet")
    if weights_file:
        weights = _existing_file(weights)
    try:
        # A weights file that does not fit makes Keras warn once per layer
        # before it raises: held back, and replayed only if it loads.
        with warnings.catch_warnings(record=weights_file) as caught:
            # Sizes without their own ImageNet file (288 for `mobilenet_v2_035`)
            # get the 224 one, on purpose: Keras's warning about it is noise here.
            warnings.filterwarnings("ignore", message=r".*Weights for input shape \(224, 224\) will be loaded")
            backbone = constructor(input_shape=input_shape, include_top=False, weights=weights, **options)
    except (TypeError, ValueError, OSError) as error:
        if not weights_file:
            raise FlowerkitError(f"{constructor_name}: {error}") from None
        # Keras's message can run to pages of weight values: its first line.
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".:")
        raise FlowerkitError(
            f"The weights file {weights} does not fit {constructor_name}{_described(options)} "
            f"without its top ({reason}); pass a file saved from that backbone, or the "
            "--backbone and --backbone-kwargs it was saved from."
        ) from None
    except Exception as error:  # download failures surface as bare Exception
        if weights == "imagenet" and "fetch failure" in str(error):
            raise OfflineError(
                f"Could not download the ImageNet weights for {constructor_name} "
                f"({error}). Offline? Put the Keras weight files in "
                "$KERAS_HOME/models (e.g. copy ../shared/weights/keras_home/models), "
                "or pass --weights PATH to a weights file, or --weights none.",
                what=f"the ImageNet weights for {constructor_name}{_described(options)}",
            ) from None
        raise
    for warning in caught or ():
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return backbone


def _described(options: dict) -> str:
    return f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else ""


def keras_hub_backbone(default_preset: str, weights, options: dict):
    """A keras-hub backbone from a preset name or a local preset folder."""
    keras_hub = import_keras_hub()
    preset = default_preset if weights in (None, "imagenet") else weights
    if _looks_like_path(preset) and not Path(preset).is_dir():
        raise FlowerkitError(f"keras-hub preset folder not found: {preset}")
    try:
        return keras_hub.models.Backbone.from_preset(
            preset, load_weights=weights is not None, **options
        )
    except (OSError, ValueError) as error:
        raise FlowerkitError(
            f"Could not load keras-hub preset {preset!r}: {error}. Offline? "
            "Pass --weights DIR with a local preset folder "
            "(e.g. ../shared/weights/efficientnet_lite0_keras_hub)."
        ) from None


def import_keras_hub():
    try:
        import keras_hub
    except ImportError:
        raise FlowerkitError(
            "This backbone needs keras-hub: pip install 'flowerkit[hub]' "
            "&& pip install --no-deps keras-hub"
        ) from None
    return keras_hub


def _looks_like_path(value: str) -> bool:
    return "/" in value or value.startswith(".") or Path(value).exists()


def _existing_file(path: str) -> str:
    if not Path(path).is_file():
        raise FlowerkitError(f"Weights file not found: {path}")
    return str(path)
