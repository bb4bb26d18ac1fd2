"""One test per Keras internal that `flowerkit.compat` relies on: each fails
when a Keras release changes it, and the version gate sends fast paths back
to stock Keras outside the tested range."""

from __future__ import annotations

import importlib.util
import inspect
import re
import tomllib
import warnings

import keras
import numpy as np
import pytest
from tests.helpers import REPO

from flowerkit import compat
from flowerkit.backends.fastpaths import apply_fast_paths, fast_path_record, is_shifted
from flowerkit.errors import FlowerkitWarning


def test_pyproject_declares_the_tested_keras_range():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    keras_spec = next(d for d in dependencies if re.match(r"keras\b", d))
    assert keras_spec == f"keras>={compat.TESTED_KERAS[0]},<{compat.TESTED_KERAS[1]}"
    assert compat.keras_is_tested(), f"Keras {keras.__version__} is outside {compat.TESTED_KERAS}"


@pytest.mark.parametrize("version, tested", [
    ("3.15.0", True), ("3.15.1", True), ("3.15.2.dev2026", True), ("3.14.9", False),
    ("3.16.0", False), ("4.0.0", False),
])
def test_keras_versions_in_and_out_of_the_tested_range(version, tested):
    assert compat.keras_is_tested(version) is tested


def test_outside_the_tested_range_fast_paths_fall_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    compat.fast_paths_supported.cache_clear()
    try:
        model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.DepthwiseConv2D(3)])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            record = apply_fast_paths(model, "shifted")  # forced: stock all the same
            apply_fast_paths(model, "shifted")
        ours = [w for w in caught if issubclass(w.category, FlowerkitWarning)]
        assert len(ours) == 1 and "Keras 3.99.0 runs stock Keras layers" in str(ours[0].message)
        assert record["depthwise_conv"] == "stock" and record["shifted_layers"] == 0
        assert not any(is_shifted(layer) for layer in compat.all_layers(model))
        assert fast_path_record("shifted")["depthwise_conv"] == "stock"
    finally:
        compat.fast_paths_supported.cache_clear()


class _Holder(keras.layers.Layer):
    """A custom layer holding another as an attribute, as keras-hub's blocks do."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.DepthwiseConv2D(3, padding="same")

    def call(self, inputs):
        return self.inner(inputs)


def test_all_layers_reaches_layers_held_by_custom_layers():
    holder = _Holder()
    model = keras.Sequential([keras.Input((8, 8, 3)), holder])
    assert holder.inner not in model.layers
    assert holder.inner in compat.all_layers(model)
    assert model in compat.all_layers(model) and model not in compat.all_layers(model, include_self=False)


@pytest.mark.backends("jax")  # the JAX trainer exists on the JAX backend only
def test_the_jax_trainer_has_the_step_functions_the_micro_batched_step_calls():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert compat.has_jax_trainer(model)
    assert list(inspect.signature(model.compute_loss_and_updates).parameters) == [
        "trainable_variables", "non_trainable_variables", "metrics_variables", "x", "y",
        "sample_weight", "training", "optimizer_variables",
    ]
    assert list(inspect.signature(model._update_metrics_variables).parameters) == [
        "metrics_variables", "unscaled_loss", "x", "y", "y_pred", "sample_weight",
    ]


def test_backup_and_restore_calls_save_backup_and_restores_from_the_paths_given(tmp_path):
    saved = []

    class Recording(compat.BackupAndRestore):
        def save_backup(self, epoch, batch):
            saved.append((epoch, batch))
            super().save_backup(epoch, batch)

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 2), "float32")
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[Recording(str(tmp_path / "a"), delete_checkpoint=False)])
    assert [epoch for epoch, _ in saved] == [1, 2]  # epochs finished
    assert (tmp_path / "a" / "latest.weights.h5").is_file()
    # Restoring from other paths: Keras reads the epoch to resume from there.
    restoring = compat.BackupAndRestore(str(tmp_path / "b"))
    restoring.restore_from(str(tmp_path / "a" / "latest.weights.h5"),
                           str(tmp_path / "a" / "training_metadata.json"))
    history = model.fit(x, y, epochs=3, batch_size=4, verbose=0, callbacks=[restoring])
    assert len(history.history["loss"]) == 1  # epochs 0 and 1 were done


def test_affine_layers_compute_through_their_backend_attribute():
    layer = keras.layers.RandomZoom(0.5, seed=1)
    backend = compat.layer_backend(layer)
    parameters = list(inspect.signature(backend.image.affine_transform).parameters)
    assert parameters == list(compat.AFFINE_TRANSFORM_PARAMETERS)
    calls = []

    class Spy:
        def __init__(self, wrapped):
            self.wrapped = wrapped

        def __getattr__(self, name):
            if name == "image":
                image = self.wrapped.image

                class Image:
                    def __getattr__(self, attribute):
                        return getattr(image, attribute)

                    def affine_transform(self, *args, **kwargs):
                        calls.append(1)
                        return image.affine_transform(*args, **kwargs)

                return Image()
            return getattr(self.wrapped, name)

    compat.set_layer_backend(layer, Spy(backend))
    layer(np.ones((2, 8, 8, 3), "float32"), training=True)
    assert calls, "RandomZoom no longer calls its backend's image.affine_transform"


def test_supports_jit_decides_whether_compile_keeps_jit():
    rotation = keras.layers.RandomRotation(0.1)
    model = keras.Sequential([keras.Input((8, 8, 3)), rotation, keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    assert rotation.supports_jit is False  # why flowerkit lifts it on JAX
    model.compile("sgd", "mse", jit_compile=True)
    if keras.backend.backend() != "torch":
        assert model.jit_compile is False
    compat.allow_jit(rotation)
    assert rotation.supports_jit is True
    model.compile("sgd", "mse", jit_compile=True)
    if keras.backend.backend() == "torch":
        return  # torch.compile is another matter; the attribute is what Keras reads
    assert model.jit_compile is True


@pytest.mark.backends("tensorflow")  # the TensorFlow trainer's (entry 6)
def test_unknown_length_datasets_miscount_steps_and_keep_optimizer_steps_fixes_it():
    import tensorflow as tf

    x = np.random.default_rng(0).uniform(size=(24, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(24) % 3]
    positions = tf.data.Dataset.from_generator(lambda: iter(range(24)), output_signature=tf.TensorSpec((), tf.int64))
    dataset = positions.map(lambda i: (tf.gather(x, i), tf.gather(y, i))).batch(8)  # 3 batches, length unknown

    def new_model():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(keras.optimizers.Adam(0.1), "categorical_crossentropy")
        return model

    def fit(callbacks):
        model = new_model()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            model.fit(dataset, epochs=2, verbose=0, callbacks=callbacks)
        return model

    assert [type(c) for c in compat.optimizer_step_callbacks(dataset)] == [compat.KeepOptimizerSteps]
    assert compat.optimizer_step_callbacks(dataset.apply(tf.data.experimental.assert_cardinality(3))) == []
    # Keras's own count: one step too many per epoch. When this fails, Keras
    # counts right: remove entry 6 and its callback.
    assert int(fit([]).optimizer.iterations.numpy()) == 8
    kept = fit(compat.optimizer_step_callbacks(dataset))
    assert int(kept.optimizer.iterations.numpy()) == 6
    reference = new_model()  # the same steps, one batch at a time
    for _ in range(2):
        for images, labels in dataset:
            reference.train_on_batch(images, labels)
    np.testing.assert_allclose(kept.get_weights()[0], reference.get_weights()[0], rtol=1e-6, atol=1e-7)


@pytest.mark.skipif("keras.backend.backend() != 'torch'", reason="the PyTorch trainer")
def test_the_torch_train_step_applies_gradients_and_reads_metrics_through_the_wrappers():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x, y = np.ones((3, 4), "float32"), np.zeros((3, 2), "float32")
    seen = []

    def reduce(gradients, data):
        seen.append(([tuple(g.shape) for g in gradients], keras.tree.flatten(data)[0].shape[0]))
        return [g * 0 for g in gradients]  # what the optimizer applies: nothing moves

    def read(original):
        return {**original(), "mae": 123.0}

    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    restores = [compat.torch_around_gradient_apply(model, reduce),
                compat.torch_around_metrics_result(model, read)]
    history = model.fit(x, y, batch_size=3, epochs=1, verbose=0).history
    # One step: its gradients in trainable_weights order; the epoch's logs
    # read through the wrapper.
    assert seen == [([(4, 2), (2,)], 3)] and history["mae"] == [123.0]
    for weight, old in zip(model.weights, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), old)
    for restore in restores:
        restore()
    history = model.fit(x, y, batch_size=3, epochs=1, verbose=0).history
    assert len(seen) == 1 and history["mae"] != [123.0]  # the wrappers are gone
    assert not np.array_equal(keras.ops.convert_to_numpy(model.weights[0]), before[0])


def test_keras_distribution_is_feature_detected_per_backend():
    if keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow's keras.distribution support varies with the device")
    # JAX has an engine; torch has none in Keras 3.15, one in 3.16 development builds.
    expected = keras.backend.backend() == "jax" or (
        importlib.util.find_spec("keras.src.backend.torch.distribution_lib") is not None)
    assert compat.keras_distribution_available() is expected
