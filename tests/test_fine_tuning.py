"""Phase 2: which layers train, BatchNorm frozen, both phases in the run's
history, and resuming inside phase 2."""

import json

import keras
import numpy as np
import pytest

import flowerkit
from flowerkit import compat
from flowerkit.model import build_model, find_backbone, unfreeze_backbone
from tests.helpers import make_image_folder
from tests.test_training import StopAfter


def _recipe(**changes):
    # MobileNet (v1) at alpha 0.25: the same kinds of layers as MobileNetV2,
    # half as many for each backend to compile in both phases.
    base = dict(image_size=32, backbone="mobilenet", backbone_kwargs={"alpha": 0.25}, weights=None, head="gap",
                batch_size=8, epochs=2, fine_tune_epochs=2, class_names=("blue", "green", "red"))
    return flowerkit.get_preset("mobilenet_v2_035_finetune").replace(**{**base, **changes})


def _trainable(backbone):
    return [layer.name for layer in backbone.layers if layer.trainable and layer.weights]


@pytest.mark.parametrize("layers", [0, 10])
def test_which_backbone_layers_train(layers):
    model = build_model(_recipe(fine_tune_layers=layers))
    backbone = find_backbone(model)
    assert _trainable(backbone) == []  # phase 1: frozen
    unfreeze_backbone(model, _recipe(fine_tune_layers=layers))
    trainable = _trainable(backbone)
    with_weights = [layer for layer in backbone.layers if layer.weights]
    batch_norms = {l.name for l in with_weights if isinstance(l, keras.layers.BatchNormalization)}
    assert not batch_norms & set(trainable)  # BatchNorm never trains
    if layers == 0:
        assert set(trainable) == {l.name for l in with_weights} - batch_norms
    else:
        top = {l.name for l in backbone.layers[-layers:]}
        assert set(trainable) == {l.name for l in with_weights if l.name in top} - batch_norms
        assert "conv_pw_13" in trainable and "conv1" not in trainable


class _SeenAtTrainBegin(keras.callbacks.Callback):
    """Each fit's affine augmentation layers (batched or not) and jit setting."""

    def __init__(self):
        super().__init__()
        self.batched, self.compiled = [], []

    def on_train_begin(self, logs=None):
        from flowerkit.backends.affine import is_batched_affine

        affine = [layer for layer in compat.all_layers(self.model)
                  if type(layer).__name__ in ("RandomZoom", "RandomRotation")]
        self.batched.append([is_batched_affine(layer) for layer in affine])
        self.compiled.append(self.model.jit_compile)


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    """One two-phase run, read by the tests below: its folder, result, the
    backbone it started from and what each fit saw."""
    folder = tmp_path_factory.mktemp("fine_tuned")
    images = make_image_folder(folder / "photos")
    keras.utils.set_random_seed(_recipe().seed)  # as train() does: the same initial backbone
    initial = find_backbone(build_model(_recipe()))
    seen = _SeenAtTrainBegin()
    result = flowerkit.train(_recipe(), source=str(images), output_dir=folder / "run", verbose=0,
                             callbacks=[seen])
    return folder / "run", result, initial, seen


def test_two_phases_in_history_csv_and_metrics(fine_tuned):
    run, result, _, _ = fine_tuned
    history = json.loads((run / "history.json").read_text())
    assert history["phase"] == ["head", "head", "fine_tune", "fine_tune"]
    rows = (run / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,phase,") and [r.split(",")[1] for r in rows[1:]] == history["phase"]
    assert [p["name"] for p in result.metrics["phases"]] == ["head", "fine_tune"]
    assert result.metrics["epochs"] == 4


def test_fine_tuning_keeps_batch_norm_statistics_and_moves_the_backbone(fine_tuned):
    _, result, backbone, _ = fine_tuned
    after_backbone = find_backbone(result.model)
    moving = {w.path: keras.ops.convert_to_numpy(w) for w in backbone.weights if "moving" in w.path}
    assert len(moving) > 50
    for weight in after_backbone.weights:
        if "moving" in weight.path:
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), moving.pop(weight.path))
    assert not moving
    kernel = keras.ops.convert_to_numpy(after_backbone.get_layer("conv_pw_13").kernel)
    initial = keras.ops.convert_to_numpy(backbone.get_layer("conv_pw_13").kernel)
    assert not np.array_equal(kernel, initial)


def test_phase_two_augmentation_takes_the_backends_fast_path(fine_tuned):
    """The zoom and rotation added for phase 2 live in a training wrapper
    around the model; they get the same fast path as the model's layers (on
    PyTorch, Keras's own take ~20 s per batch of 64 at 224 px, on JAX ~0.5 s)."""
    seen = fine_tuned[3]
    batched = keras.backend.backend() in ("jax", "torch")
    assert seen.batched[-1] == [batched] * 2  # phase 2: the preset's zoom and rotation
    # On JAX the zoom and rotation do not turn XLA off for the whole step
    # (Keras marks them not jit-compilable, which is so on TensorFlow only).
    assert seen.compiled[-1] is (keras.backend.backend() == "jax")


def test_resume_inside_phase_two(image_folder, tmp_path, eager_steps):
    # Eager on TensorFlow: the fixture above trains phase 2 in a traced graph.
    with pytest.raises(KeyboardInterrupt):
        flowerkit.train(_recipe(), source=str(image_folder), output_dir=tmp_path, verbose=0,
                        callbacks=[StopAfter(3)])  # after the first fine-tuning epoch
    assert (tmp_path / "backup" / "head_finished.weights.h5").is_file()
    result = flowerkit.train(_recipe(), source=str(image_folder), output_dir=tmp_path, verbose=0)
    assert result.history["phase"] == ["head", "head", "fine_tune", "fine_tune"]
    assert [p["name"] for p in result.metrics["phases"]] == ["fine_tune"]  # phase 1 not rerun
    assert result.metrics["phases"][0]["epochs"] == 1
    assert not (tmp_path / "backup").exists()
