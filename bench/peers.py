"""What flowerkit is measured against, on the same network, size, batch and data.

* Plain Keras: what a user writes from the codelab and the Keras
  transfer-learning guide: a stock `keras.applications` backbone, the
  recipe's head, `model.compile` with Keras's defaults (`jit_compile="auto"`,
  float32), none of flowerkit's fast paths. BatchNorm stays in inference mode
  when fine-tuning, as the guide says and flowerkit does, so both do the same
  arithmetic.
* Native PyTorch: torchvision's MobileNetV2 (same width multiplier, global
  average pooling, dropout, linear classifier), channels-last, inference
  under `torch.inference_mode`, a plain training loop with Adam; see
  `native_torch_model`.
* Exported runtimes: flowerkit's own model exported as `flowerkit export`
  writes it, run in ONNX Runtime or LiteRT (`exported_model`): what a user
  deploys instead of Keras.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import sys
import types

import keras
import numpy as np

from flowerkit.exporting import check_can_export, export, load_exported
from flowerkit.exporting.formats import require_runtime

# Recipe fields that switch off every flowerkit fast path (the recipe's stock form).
STOCK_FIELDS = dict(depthwise_conv="stock", pointwise_conv="stock", torch_layers="stock",
                    affine_augmentation="stock", micro_batch=0)

# keras.applications constructors and their pixel scaling (x * scale + offset).
_APPLICATIONS = {"mobilenet_v2": ("MobileNetV2", 1 / 127.5, -1.0), "mobilenet": ("MobileNet", 1 / 127.5, -1.0)}


def plain_keras_model(recipe, num_classes: int = 5) -> keras.Model:
    """The recipe's network written with stock Keras, compiled with Keras's
    defaults; only MobileNet backbones (the benchmark's)."""
    if recipe.backbone not in _APPLICATIONS:
        raise ValueError(f"plain Keras peer: no keras.applications model for {recipe.backbone!r}")
    name, scale, offset = _APPLICATIONS[recipe.backbone]
    base = getattr(keras.applications, name)(
        input_shape=recipe.image_shape, include_top=False, weights=recipe.weights, **recipe.backbone_kwargs)
    base.trainable = recipe.trainable_backbone
    for layer in base.layers:  # the guide: BatchNorm keeps its ImageNet statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    inputs = keras.Input(recipe.image_shape)
    x = inputs
    if "flip" in recipe.augmentation:
        x = keras.layers.RandomFlip("horizontal")(x)
    x = keras.layers.Rescaling(scale, offset=offset)(x)
    x = base(x, training=False)
    x = keras.layers.Flatten()(x) if recipe.head == "flatten" else keras.layers.GlobalAveragePooling2D()(x)
    for units in recipe.head_units:
        x = keras.layers.Dense(units, activation="relu")(x)
    if recipe.dropout:
        x = keras.layers.Dropout(recipe.dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
                  metrics=["accuracy"])
    return model


# The exported-runtime peers: row name -> export format.
EXPORTED = {"onnx_runtime": "onnx", "litert": "litert"}


def exported_model(model, recipe, folder, format: str):
    """`model` saved in `folder` as a run folder, exported to `format`
    (unverified: the export tests check agreement) and loaded in its
    runtime: (predict(images) -> probabilities, the ExportResult). A format
    this backend or environment cannot produce or run raises FlowerkitError."""
    check_can_export(format)
    require_runtime(format)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    recipe.save(folder / "recipe.json")
    result = export(folder / "model.keras", format, verify=False, quiet=True)
    return load_exported(result.path, format), result


@functools.cache
def import_torchvision():
    """torchvision, or its pure-PyTorch model definitions alone where its
    compiled operators do not load: PyPI's torchvision 0.28.0 links its
    `_C.so` against CUDA's torch (libc10_cuda.so, libtorch_cuda.so), which
    the CPU build lacks, and the CPU index with a matching build may be out of
    reach. The models need none of those operators. Returns (module, version)."""
    version = importlib.metadata.version("torchvision")  # PackageNotFoundError: not installed
    try:
        import torchvision  # optional heavy dependency: torchvision
    except (OSError, RuntimeError):  # "operator torchvision::nms does not exist"
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        spec = importlib.util.find_spec("torchvision")
        package = types.ModuleType("torchvision")
        package.__path__, package.__spec__, package.__version__ = list(spec.submodule_search_locations), spec, version
        sys.modules["torchvision"] = package
        import torchvision.models  # optional heavy dependency: torchvision
        torchvision = package
        version += " (models only: its compiled operators need CUDA's torch)"
    return torchvision, version


class NativeTorch:
    """torchvision's MobileNetV2 for `recipe` (random weights), channels-last,
    BatchNorm in inference mode; `predict(images)` and `train_step(images,
    labels)` take NHWC float32 0-255 numpy batches and return host data."""

    def __init__(self, recipe, num_classes: int = 5):
        import torch  # optional heavy dependency: torch

        if recipe.backbone != "mobilenet_v2" or recipe.head != "gap" or recipe.head_units:
            raise ValueError("native PyTorch peer: MobileNetV2 with a pooled linear head only")
        torchvision, self.version = import_torchvision()
        self.torch = torch
        self.model = torchvision.models.mobilenet_v2(
            width_mult=recipe.backbone_kwargs.get("alpha", 1.0), num_classes=num_classes,
            dropout=recipe.dropout).to(memory_format=torch.channels_last)
        trainable = self.model.parameters() if recipe.trainable_backbone else self.model.classifier.parameters()
        if not recipe.trainable_backbone:
            self.model.features.requires_grad_(False)
        self.optimizer = torch.optim.Adam(list(trainable), lr=recipe.learning_rate)
        self.label_smoothing = recipe.label_smoothing
        self.flip = "flip" in recipe.augmentation

    def _tensor(self, images: np.ndarray):
        # NHWC memory seen as NCHW is exactly channels-last; scaled as Keras's MobileNetV2 wants.
        return self.torch.from_numpy(images).permute(0, 3, 1, 2) / 127.5 - 1.0

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.model.eval()
        with self.torch.inference_mode():
            return self.model(self._tensor(images)).softmax(-1).numpy()

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> float:
        torch = self.torch
        self.model.train()
        for module in self.model.modules():  # BatchNorm keeps its statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        x = self._tensor(images)
        if self.flip:  # a random half of the batch mirrored, as RandomFlip does
            mirrored = torch.rand(len(x)) < 0.5
            x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
        loss = torch.nn.functional.cross_entropy(
            self.model(x.contiguous(memory_format=torch.channels_last)), torch.from_numpy(labels),
            label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()
