"""The transfer-learning recipe: every hyperparameter of a run, in one place.

A `Recipe` is plain, immutable data (big_vision style). The model builder, the
data pipeline, the training loop, the CLIs and the benchmarks all read it and
nothing else, so a `recipe.json` saved beside a model is enough to rebuild the
run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from flowerkit.config.ops import precomputable_ops, validate_ops
from flowerkit.config.presets import PRESETS
from flowerkit.errors import FlowerkitError, did_you_mean

HEADS = ("flatten", "gap")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
LEARNING_RATE_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
JIT_COMPILE = ("auto", True, False)
CLASS_WEIGHTS = ("none", "balanced", "auto")  # flowerkit.data.balance
FEATURE_CACHE = ("auto", "on", "off")
# The fast-path settings; `flowerkit.backends.policy` says what "auto" picks.
DEPTHWISE_CONV = ("auto", "shifted", "stock")
TORCH_LAYERS = ("auto", "native", "stock")
POINTWISE_CONV = ("auto", "matmul", "stock")
AFFINE_AUGMENTATION = ("auto", "batched", "stock")
DISTRIBUTION_MODES = ("auto", "none", "data_parallel")

# Numeric ranges: (what the error says, the test).
POSITIVE = ("positive", lambda value: value > 0)
NOT_NEGATIVE = (">= 0", lambda value: value >= 0)
FRACTION = ("in [0, 1)", lambda value: 0.0 <= value < 1.0)
OPEN_FRACTION = ("in (0, 1)", lambda value: 0.0 < value < 1.0)
AT_LEAST_32 = ("at least 32", lambda value: value >= 32)


def _one_of(choices: tuple, default):
    """A field whose value must be one of `choices` (checked by `Recipe`)."""
    return dataclasses.field(default=default, metadata={"choices": choices})


def _within(bounds: tuple, default):
    """A numeric field that must pass `bounds` (one of the ranges above)."""
    return dataclasses.field(default=default, metadata={"bounds": bounds})


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything that defines a training run.

    Attributes:
        name: preset this recipe started from (informational).
        class_names: class names in label order; empty means "take them from
            the data source" (sorted folder names).
        image_size: square side, in pixels, that images are resized to.
        backbone: a name from `flowerkit.model.backbones.BACKBONES` (checked when
            the model is built), or "none" for
            the codelab's plain dense network on pixels.
        backbone_kwargs: extra constructor options, e.g. `{"alpha": 0.35}`.
        weights: None (random), "imagenet" (the backbone's first weight
            source), a source's name (`flowerkit backbones` lists them; a
            keras-hub preset name too), or a path to a weights file or folder.
        head: "flatten" (the codelab) or "gap" (global average pooling).
        head_units: hidden Dense(relu) layers between the features and the
            softmax (the codelab's dense section uses (500, 50)).
        dropout: dropout rate before the softmax layer.
        feature_dropout: dropout rate on the backbone's features, before
            the head's hidden layers: regularises a head that trains for
            many epochs on the same cached features.
        trainable_backbone: fine-tune the backbone instead of freezing it.
            BatchNorm layers stay in inference mode either way.
        optimizer, learning_rate: optimizer name and its learning rate.
        learning_rate_schedule: "constant", or "cosine": the rate decays from
            `learning_rate` to 0 over the steps of phase 1's `epochs`, so that
            the last epochs settle rather than end on whichever noisy step
            came last.
        label_smoothing: for the categorical cross-entropy loss.
        batch_size, epochs: as in `model.fit`.
        validation_split: fraction of each class held out for validation.
        seed: drives the split, shuffling, augmentation and initialisation.
        augmentation: string-named ops, see `flowerkit.config.ops`.
        precision: "float32", "mixed_float16", "mixed_bfloat16", or "auto":
            mixed bfloat16 on TPUs and GPUs of compute capability 8.0+, mixed
            float16 (with loss scaling) on older GPUs, float32 on CPUs.
        jit_compile: "auto" picks the fastest known setting per backend and
            device (XLA off for TensorFlow on CPU, where it is ~16x slower).
        depthwise_conv: "auto" computes depthwise convolutions as shifted
            multiply-adds where that is measured faster (JAX on CPU, see
            `flowerkit.backends.policy`), the stock op elsewhere; "shifted" or
            "stock" force one. Saved models hold stock layers either way.
        pointwise_conv: "auto" computes 1x1 convolutions as matrix products
            where that is measured faster (JAX on CPU); "matmul" or "stock"
            force one.
        micro_batch: rows per micro-batch of a training step that trains the
            backbone: the batch's gradient is the mean of its micro-batches'
            gradients, one after another (XLA:CPU runs smaller
            activations faster). "auto" uses 4 on JAX with CPU devices (fine-tuning,
            one device), the whole batch elsewhere; an integer forces it
            on JAX (0: off). See `flowerkit.backends.policy.micro_batch_size`.
        affine_augmentation: "auto" resamples zoom, rotation and translation
            as one batch on JAX and PyTorch, whose stock resampling goes
            image by image or channel by channel (`flowerkit.backends.affine`);
            "stock" keeps Keras's own. Same pixels either way.
        torch_layers: "auto" runs convolutions and frozen BatchNorm on
            PyTorch's channels_last tensors without Keras's layout copies
            where that is measured faster (PyTorch on CPU, see
            `flowerkit.backends.torch_kernels`); "native" or "stock" force one.
        feature_cache: "auto" trains the head on backbone features computed
            once per image and augmentation view, when the backbone is frozen
            and every augmentation op can be precomputed ("flip"); "on"
            insists (an error otherwise); "off" runs the backbone every epoch.

    Fine-tuning, a second phase after the head has trained (`epochs`):
        fine_tune_epochs: epochs of phase 2; 0 skips it.
        fine_tune_layers: how many of the backbone's top layers train; 0 for
            all. BatchNorm stays in inference mode.
        fine_tune_learning_rate: AdamW's peak learning rate, reached after
            `fine_tune_warmup_epochs` of linear warm-up, then cosine decay to 0.
        fine_tune_weight_decay: AdamW's decoupled weight decay.
        fine_tune_augmentation: ops added on top of `augmentation` in phase 2.
        fine_tune_label_smoothing: label smoothing in phase 2.

    Devices:
        distribution: "auto" (data-parallel over every local accelerator
            when there is more than one, else one device), "none", or
            "data_parallel" / "data_parallel:N" (all devices, or the first
            N, CPU devices included). `batch_size` is the global batch: each
            of N devices gets batch_size / N. See `flowerkit.distribute.plan`.

    Data (see `flowerkit.inspection`):
        class_weight: "none", "balanced" (each class the same total loss
            weight, in both phases), or "auto": balanced when the largest
            class has at least 1.5x the images of the smallest.
        split_groups: keep each group of duplicate images (same bytes or a
            perceptual hash within a few bits) on one side of the split.
        exclude_conflicts: leave out of training the duplicates found in
            more than one class (label conflicts).
        exclude: image paths (relative to the source folder) left out.
        relabel: image path -> class name, applied before the split.
    """

    name: str = "custom"
    class_names: tuple[str, ...] = ()
    image_size: int = _within(AT_LEAST_32, 192)
    backbone: str = "mobilenet_v2"
    backbone_kwargs: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    weights: str | None = "imagenet"
    head: str = _one_of(HEADS, "flatten")
    head_units: tuple[int, ...] = ()
    dropout: float = _within(FRACTION, 0.0)
    feature_dropout: float = _within(FRACTION, 0.0)
    trainable_backbone: bool = False
    optimizer: str = _one_of(OPTIMIZERS, "adam")
    learning_rate: float = _within(POSITIVE, 1e-3)
    learning_rate_schedule: str = _one_of(LEARNING_RATE_SCHEDULES, "constant")
    label_smoothing: float = _within(FRACTION, 0.0)
    batch_size: int = _within(POSITIVE, 64)
    epochs: int = _within(POSITIVE, 10)
    validation_split: float = _within(OPEN_FRACTION, 0.19)
    seed: int = 42
    augmentation: tuple[str, ...] = ()
    precision: str = _one_of(PRECISIONS, "auto")
    jit_compile: str | bool = _one_of(JIT_COMPILE, "auto")
    feature_cache: str = _one_of(FEATURE_CACHE, "auto")
    depthwise_conv: str = _one_of(DEPTHWISE_CONV, "auto")
    torch_layers: str = _one_of(TORCH_LAYERS, "auto")
    pointwise_conv: str = _one_of(POINTWISE_CONV, "auto")
    micro_batch: str | int = "auto"
    affine_augmentation: str = _one_of(AFFINE_AUGMENTATION, "auto")
    fine_tune_epochs: int = _within(NOT_NEGATIVE, 0)
    fine_tune_layers: int = _within(NOT_NEGATIVE, 0)
    fine_tune_learning_rate: float = _within(POSITIVE, 1e-4)
    fine_tune_warmup_epochs: int = _within(NOT_NEGATIVE, 1)
    fine_tune_weight_decay: float = _within(NOT_NEGATIVE, 0.05)
    fine_tune_augmentation: tuple[str, ...] = ("flip", "zoom:0.15", "rotate:0.05", "contrast:0.2")
    fine_tune_label_smoothing: float = _within(FRACTION, 0.1)
    distribution: str = "auto"
    class_weight: str = _one_of(CLASS_WEIGHTS, "auto")
    split_groups: bool = True
    exclude_conflicts: bool = True
    exclude: tuple[str, ...] = ()
    relabel: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )

    def __post_init__(self):
        # Normalise JSON/CLI input (lists, dicts) into immutable forms.
        set_ = object.__setattr__
        set_(self, "class_names", tuple(self.class_names))
        set_(self, "head_units", tuple(int(u) for u in self.head_units))
        set_(self, "augmentation", tuple(self.augmentation))
        set_(self, "fine_tune_augmentation", tuple(self.fine_tune_augmentation))
        set_(self, "backbone_kwargs", types.MappingProxyType(dict(self.backbone_kwargs)))
        set_(self, "exclude", tuple(sorted(set(map(str, self.exclude)))))
        set_(self, "relabel", types.MappingProxyType(
            {str(k): str(v) for k, v in sorted(dict(self.relabel).items())}))
        self._validate()

    def _validate(self):
        """Each step raises a one-line FlowerkitError naming the field."""
        try:
            self._check_kinds()
            self._check_choices_and_bounds()
            self._check_micro_batch()
            self._check_fine_tuning()
            self._check_distribution()
            self._check_class_names()
            validate_ops(self.augmentation, "augmentation")
            validate_ops(self.fine_tune_augmentation, "fine_tune_augmentation")
            self._check_feature_cache()
        except FlowerkitError as error:
            raise FlowerkitError(f"Invalid recipe: {error}") from None

    def _check_kinds(self):
        """Scalar fields as JSON or the CLI may give them, per the annotations."""
        for name, kinds in _field_kinds().items():
            value = getattr(self, name)
            # bool is an int subclass: `"epochs": true` is not a number.
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                wanted = " or ".join(kind.__name__ for kind in kinds)
                raise FlowerkitError(f"{name} must be {wanted}, got {value!r}.")

    def _check_choices_and_bounds(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if "choices" in field.metadata:
                check_choice(field.name, value)
            if "bounds" in field.metadata:
                description, test = field.metadata["bounds"]
                if not test(value):
                    raise FlowerkitError(f"{field.name} must be {description}, got {value!r}.")

    def _check_micro_batch(self):
        if self.micro_batch != "auto" and not (isinstance(self.micro_batch, int) and self.micro_batch >= 0):
            raise FlowerkitError(
                f"micro_batch must be 'auto' or a number of rows >= 0 (0: off), got {self.micro_batch!r}."
            )

    def _check_fine_tuning(self):
        if self.fine_tune_epochs and self.backbone == "none":
            raise FlowerkitError("fine_tune_epochs needs a backbone to fine-tune (backbone is 'none').")

    def _check_distribution(self):
        _, devices = parse_distribution(self.distribution)
        if devices and self.batch_size % devices:
            raise FlowerkitError(
                f"batch_size {self.batch_size} (the global batch) must be divisible by the "
                f"{devices} devices of distribution {self.distribution!r}."
            )

    def _check_class_names(self):
        if len(set(self.class_names)) != len(self.class_names):
            raise FlowerkitError(f"class_names has duplicates: {self.class_names}.")

    def _check_feature_cache(self):
        if self.feature_cache == "on" and not self.can_cache_features:
            raise FlowerkitError(
                "feature_cache 'on' needs a frozen backbone and augmentation ops that can be "
                f"precomputed ({', '.join(precomputable_ops())}); this recipe has "
                f"backbone {self.backbone!r}, trainable_backbone={self.trainable_backbone}, "
                f"augmentation {list(self.augmentation)}. Use feature_cache 'auto' or 'off'."
            )

    @property
    def can_cache_features(self) -> bool:
        """A frozen backbone whose augmentation views can be precomputed."""
        ops = {op.partition(":")[0] for op in self.augmentation}
        return (
            self.backbone != "none"
            and not self.trainable_backbone
            and ops <= set(precomputable_ops())
        )

    @property
    def caches_features(self) -> bool:
        return self.feature_cache != "off" and self.can_cache_features

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def replace(self, **changes) -> "Recipe":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise FlowerkitError(
                f"Unknown recipe field(s): {', '.join(sorted(unknown))}. "
                f"Known: {', '.join(field_names())}."
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Recipe":
        unknown = set(data) - set(field_names())
        if unknown:
            raise FlowerkitError(f"Unknown recipe field(s): {', '.join(sorted(unknown))}.")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FlowerkitError(f"Recipe file not found: {path}") from None
        except json.JSONDecodeError as error:
            raise FlowerkitError(f"Recipe file {path} is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise FlowerkitError(f"Recipe file {path} must hold a JSON object of recipe fields.")
        try:
            return cls.from_dict(data)
        except FlowerkitError as error:
            raise FlowerkitError(f"Recipe file {path}: {error}") from None

    @classmethod
    def from_preset(cls, preset: str | Path) -> "Recipe":
        """A preset name (see `flowerkit.config.presets`), a run folder holding
        recipe.json, or a recipe.json file: what `--preset` accepts."""
        path = Path(preset)
        if path.is_dir():
            return cls.load(path / "recipe.json")
        if path.suffix == ".json" or path.is_file():
            return cls.load(path)
        return get_preset(str(preset))


def check_choice(field: str, value) -> None:
    """Raises a FlowerkitError unless `value` is one of `field`'s choices:
    the one membership check, for the recipe and for the policy tables."""
    choices = choices_of(field)
    if value not in choices:
        listed = ", ".join(str(choice) for choice in choices)
        raise FlowerkitError(f"{field} must be one of {listed}; got {value!r}.")


def choices_of(field: str) -> tuple:
    """The values `field` allows, as the dataclass declares them."""
    return _FIELDS[field].metadata["choices"]


_FIELDS = {field.name: field for field in dataclasses.fields(Recipe)}
_SCALARS = (str, int, float, bool, type(None))


@functools.cache
def _field_kinds() -> dict[str, tuple[type, ...]]:
    """The Python types each scalar field accepts, read from its annotation
    (a float field takes an int too); tuples and mappings are left to
    `__post_init__`, which normalises them."""
    kinds = {}
    for name, annotation in field_types().items():
        members = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
        if all(member in _SCALARS for member in members):
            accepted = [(int, float) if member is float else (member,) for member in members]
            kinds[name] = tuple(dict.fromkeys(kind for group in accepted for kind in group))
    return kinds


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(Recipe))


def field_types() -> dict[str, Any]:
    return typing.get_type_hints(Recipe)


def get_preset(name: str) -> Recipe:
    """The recipe of a preset in `flowerkit.config.presets.PRESETS`."""
    if name not in PRESETS:
        raise FlowerkitError(
            f"Unknown preset {name!r}.{did_you_mean(name, PRESETS)} Available: {', '.join(PRESETS)}."
        )
    return Recipe(name=name, **PRESETS[name])


def parse_distribution(text: str) -> tuple[str, int | None]:
    """("auto"|"none"|"data_parallel", device count or None) of a recipe's
    `distribution`: "auto", "none", "data_parallel" or "data_parallel:N"."""
    mode, _, count = str(text).partition(":")
    if mode not in DISTRIBUTION_MODES or (count and mode != "data_parallel"):
        raise FlowerkitError(
            f"distribution must be 'auto', 'none', 'data_parallel' or 'data_parallel:N', "
            f"got {text!r}."
        )
    if not count:
        return mode, None
    if not count.isdigit() or int(count) < 1:
        raise FlowerkitError(f"distribution {text!r}: N must be a positive device count.")
    return mode, int(count)
