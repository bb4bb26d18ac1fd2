"""Every use of a Keras private member or internal contract, in one place.

Each entry says what flowerkit relies on and the Keras versions it was
checked on; `tests/test_compat.py` has a test per entry that fails when a
Keras release changes it. Outside `TESTED_KERAS` the fast paths that rely on
these entries fall back to stock Keras with one warning
(`fast_paths_supported`), so a newer Keras is slower, never wrong.
"""

from __future__ import annotations

import functools
import warnings

import keras

from flowerkit.errors import FlowerkitWarning

# The Keras versions the test suite runs on: [lowest, first untested).
TESTED_KERAS = ("3.15.0", "3.16.0")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def keras_is_tested(version: str | None = None) -> bool:
    """Whether `version` (default: the installed Keras) is in `TESTED_KERAS`."""
    found = _version_tuple(version or keras.__version__)
    return _version_tuple(TESTED_KERAS[0]) <= found < _version_tuple(TESTED_KERAS[1])


@functools.lru_cache(maxsize=None)
def fast_paths_supported() -> bool:
    """False, with one warning per process, outside the tested Keras versions."""
    if keras_is_tested():
        return True
    warnings.warn(
        f"flowerkit's fast paths were tested on Keras {TESTED_KERAS[0]} up to (not including) "
        f"{TESTED_KERAS[1]}; Keras {keras.__version__} runs stock Keras layers instead "
        "(correct, possibly slower).",
        FlowerkitWarning,
        stacklevel=2,
    )
    return False


# 1. Layer._flatten_layers(include_self, recursive) (checked on 3.12-3.15.1):
#    every layer inside a model, also those held by custom layers such as
#    keras-hub's MBConvBlock, which `model.layers` does not reach.


def all_layers(layer, include_self: bool = True) -> list:
    """`layer` (with include_self) and every layer nested in it, at any depth."""
    return list(layer._flatten_layers(include_self=include_self, recursive=True))


# 2. The JAX trainer (checked on 3.15.1): `compute_loss_and_updates(trainable,
#    non_trainable, metrics_variables, x, y, sample_weight, training=,
#    optimizer_variables=)` returning (loss, (unscaled_loss, y_pred,
#    non_trainable, metrics_variables)), and the private
#    `_update_metrics_variables(metrics_variables, loss, x, y, y_pred,
#    sample_weight)` returning (logs, metrics_variables). The micro-batched
#    train step (`flowerkit.backends.jax_kernels`) calls both.

JAX_TRAINER_METHODS = ("compute_loss_and_updates", "_update_metrics_variables")


def has_jax_trainer(model) -> bool:
    return all(hasattr(model, name) for name in JAX_TRAINER_METHODS)


def jax_update_metrics(model, metrics_variables, loss, x, y, y_pred, sample_weight):
    """Keras's loss and metric updates for one step: (logs, metrics_variables)."""
    return model._update_metrics_variables(metrics_variables, loss, x, y, y_pred, sample_weight)


# 3. BackupAndRestore's private save and restore points (checked on 3.12-3.15.1):
#    `_save_model()` writes a backup, reading `_current_epoch` and
#    `_last_batch_seen`; `on_train_begin` restores from `_weights_path` and
#    `_training_metadata_path`.


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore with its private save and restore points
    as two public methods that a subclass may override or call."""

    def restore_from(self, weights_path: str, metadata_path: str) -> None:
        """Where `on_train_begin` restores from (call it before)."""
        self._weights_path = weights_path
        self._training_metadata_path = metadata_path

    def save_backup(self, epoch: int, batch: int | None) -> None:
        """Writes a backup after `epoch` finished epochs (Keras's own, by default)."""
        super()._save_model()

    def _save_model(self):
        self.save_backup(self._current_epoch, self._last_batch_seen)


# 4. A preprocessing layer's `backend` attribute (checked on 3.15.1): the
#    `DynamicBackend` it computes with (switched to TensorFlow inside
#    tf.data), whose `image.affine_transform(images, transform,
#    interpolation, fill_mode, fill_value, data_format)` RandomZoom,
#    RandomRotation and RandomTranslation call.

AFFINE_TRANSFORM_PARAMETERS = (
    "images", "transform", "interpolation", "fill_mode", "fill_value", "data_format",
)


def layer_backend(layer):
    return getattr(layer, "backend", None)


def set_layer_backend(layer, backend) -> None:
    layer.backend = backend


# 5. `Layer.supports_jit` (checked on 3.15.1): `compile` drops jit for the
#    whole model when any layer says False, as Keras's affine augmentation
#    layers do for TensorFlow's sake.


def allow_jit(layer) -> None:
    layer.supports_jit = True


# 6. The TensorFlow trainer on a tf.data dataset of unknown length (checked on
#    3.15.1): each epoch ends with a call of the train function on the spent
#    iterator, and that call still adds one to `optimizer.iterations` though
#    no gradient is applied. Adam's bias correction and learning-rate
#    schedules read that count, so a run on flowerkit's tf.data pipeline
#    (unknown length: it drops files that went bad) would train otherwise
#    than the same run on the Pillow pipeline or the feature cache.

UNKNOWN_CARDINALITY = -2  # tf.data.UNKNOWN_CARDINALITY


class KeepOptimizerSteps(keras.callbacks.Callback):
    """Sets `optimizer.iterations`, at each epoch's end, to its count at the
    epoch's start plus the epoch's training steps (one read per epoch)."""

    def __init__(self):
        super().__init__()
        self._at_epoch_start, self._steps = None, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._at_epoch_start = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps = batch + 1  # Keras passes the last step this call ran

    def on_epoch_end(self, epoch, logs=None):
        if self._at_epoch_start is not None:
            self.model.optimizer.iterations.assign(self._at_epoch_start + self._steps)


def optimizer_step_callbacks(dataset) -> list:
    """[KeepOptimizerSteps()] where `fit(dataset)` miscounts steps (entry 6):
    the TensorFlow backend, a tf.data dataset of unknown length; else []."""
    cardinality = getattr(dataset, "cardinality", None)
    if keras.backend.backend() != "tensorflow" or cardinality is None:
        return []
    return [KeepOptimizerSteps()] if int(cardinality()) == UNKNOWN_CARDINALITY else []


# 7. The PyTorch trainer's step (checked on 3.15.1 and keras-nightly
#    3.16.0.dev2026102704): `train_step(data)` runs the forward pass,
#    `loss.backward()`, and then calls
#    `self.optimizer.apply(gradients, trainable_weights)` once, with the
#    gradients in `trainable_weights` order; `compute_metrics` and the
#    epoch's logs (`fit`, `evaluate`) read every metric through
#    `self.get_metrics_result()`, looked up at each call, so wrappers set on
#    the model instance take effect. The train function (`make_train_function`)
#    calls `self.train_step`: 3.15 looks it up at each step, 3.16 once, when
#    it is made. Data-parallel PyTorch (`flowerkit.backends.torch_distributed`)
#    wraps these to all-reduce gradients and metrics.


def torch_around_gradient_apply(model, reduce):
    """Each training step's gradients pass through `reduce(gradients, data)`
    (data: the step's batch) before `model.optimizer` applies them, until
    the returned function is called."""
    original_step, optimizer = model.train_step, model.optimizer
    original_apply = optimizer.apply
    current = {}

    def train_step(data):
        current["data"] = data
        return original_step(data)

    def apply(gradients, variables=None, **kwargs):
        return original_apply(reduce(list(gradients), current["data"]), variables, **kwargs)

    model.train_step, optimizer.apply = train_step, apply
    model.make_train_function(force=True)  # one made earlier may hold the unwrapped step

    def restore():
        model.__dict__.pop("train_step", None)
        optimizer.__dict__.pop("apply", None)
        model.make_train_function(force=True)

    return restore


def torch_around_metrics_result(model, read):
    """Keras reads the model's metric results through `read(original_read)`,
    until the returned function is called."""
    original = model.get_metrics_result
    model.get_metrics_result = lambda: read(original)
    return lambda: model.__dict__.pop("get_metrics_result", None)


# 8. `keras.distribution` on the current backend (feature-detected): Keras
#    3.15 has no torch engine, and its `list_devices()` then fails on a
#    missing backend module (AttributeError); keras-nightly
#    3.16.0.dev2026102704 has one (`keras.src.backend.torch.distribution_lib`).


def keras_distribution_available() -> bool:
    try:
        keras.distribution.list_devices()
    except (AttributeError, NotImplementedError):
        return False
    return True
