"""Backbone registry: name -> how to build it, preprocess for it, load weights.

Each entry builds a feature extractor mapping *preprocessed* images to a
feature map; `flowerkit.model` puts the matching preprocessing layer in front,
so finished models take raw RGB 0-255 images on every backend.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from flowerkit.errors import FlowerkitError

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
    build: Callable | None  # (input_shape, weights, kwargs) -> keras.Model
    preprocessing: str
    default_image_size: int
    description: str


def _load_keras_application(constructor_name: str, **fixed_kwargs) -> Callable:
    def build(input_shape, weights, kwargs):
        import keras

        constructor = getattr(keras.applications, constructor_name)
        if weights not in (None, "imagenet"):
            weights = _existing_file(weights)
        try:
            return constructor(
                input_shape=input_shape,
                include_top=False,
                weights=weights,
                **fixed_kwargs,
                **kwargs,
            )
        except TypeError as error:
            raise FlowerkitError(f"{constructor_name}: {error}") from None
        except ValueError as error:
            raise FlowerkitError(f"{constructor_name}: {error}") from None
        except Exception as error:  # download failures surface as bare Exception
            if weights == "imagenet" and "fetch failure" in str(error):
                raise FlowerkitError(
                    f"Could not download the ImageNet weights for {constructor_name} "
                    f"({error}). Offline? Put the Keras weight files in "
                    "$KERAS_HOME/models (e.g. copy ../shared/weights/keras_home/models), "
                    "or pass --weights PATH to a weights file, or --weights none."
                ) from None
            raise

    return build


def _load_keras_hub_backbone(default_preset: str) -> Callable:
    def build(input_shape, weights, kwargs):
        keras_hub = import_keras_hub()
        preset = default_preset if weights in (None, "imagenet") else weights
        if _looks_like_path(preset) and not Path(preset).is_dir():
            raise FlowerkitError(f"keras-hub preset folder not found: {preset}")
        try:
            return keras_hub.models.Backbone.from_preset(
                preset, load_weights=weights is not None, **kwargs
            )
        except (OSError, ValueError) as error:
            raise FlowerkitError(
                f"Could not load keras-hub preset {preset!r}: {error}. Offline? "
                "Pass --weights DIR with a local preset folder "
                "(e.g. ../shared/weights/efficientnet_lite0_keras_hub)."
            ) from None

    return build


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


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec(
            "none", None, "unit", 192, "no backbone: the codelab's dense network on pixels"
        ),
        BackboneSpec(
            "mobilenet_v2",
            _load_keras_application("MobileNetV2"),
            "tf",
            224,
            "keras.applications.MobileNetV2 (option: alpha)",
        ),
        BackboneSpec(
            "mobilenet",
            _load_keras_application("MobileNet"),
            "tf",
            224,
            "keras.applications.MobileNet v1 (options: alpha, depth_multiplier)",
        ),
        BackboneSpec(
            "efficientnet_v2_b0",
            _load_keras_application("EfficientNetV2B0", include_preprocessing=True),
            "raw",
            224,
            "keras.applications.EfficientNetV2B0 (preprocesses inside)",
        ),
        BackboneSpec(
            "resnet50_v2",
            _load_keras_application("ResNet50V2"),
            "tf",
            224,
            "keras.applications.ResNet50V2",
        ),
        BackboneSpec(
            "xception",
            _load_keras_application("Xception"),
            "tf",
            299,
            "keras.applications.Xception",
        ),
        BackboneSpec(
            "efficientnet_lite0",
            _load_keras_hub_backbone("efficientnet_lite0_ra_imagenet"),
            "lite",
            224,
            "keras-hub EfficientNet-Lite0 (weights: preset name or local preset folder)",
        ),
    ]
}


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise FlowerkitError(
            f"Unknown backbone {name!r}. Available: {', '.join(BACKBONES)}."
        ) from None
