"""Helpers for the tests and benchmarks: where the shared photos and weights
are, and small synthetic image folders."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from flowerkit.processes import process_alive

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FLOWERKIT_SHARED", REPO.parent / "shared")).resolve()
# CI sets FLOWERKIT_REQUIRE_SHARED=1: there, missing shared data is a failure, never a skip.
REQUIRE_SHARED = os.environ.get("FLOWERKIT_REQUIRE_SHARED", "") not in ("", "0")

CLASSES = ("blue", "green", "red")
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


KERAS_HOME_PREFIX = "flowerkit-keras-home-"


def private_keras_home(parent: Path) -> Path:
    """A new private KERAS_HOME under `parent`, named with this process's
    pid; first removes those that sessions killed before their clean-up
    (SIGKILL, a CI time limit) left behind, which can hold gigabytes of
    cached features."""
    for folder in parent.glob(f"{KERAS_HOME_PREFIX}*"):
        pid = folder.name[len(KERAS_HOME_PREFIX):].partition("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{KERAS_HOME_PREFIX}{os.getpid()}-", dir=parent))


def shared_path(relative: str) -> Path:
    """A path under ../shared (FLOWERKIT_SHARED); skips the test if absent,
    or fails it when FLOWERKIT_REQUIRE_SHARED is set (as in CI)."""
    path = SHARED / relative
    if not path.exists():
        message = f"shared data not found: {path} (set FLOWERKIT_SHARED)"
        if REQUIRE_SHARED:
            pytest.fail(message)
        pytest.skip(message)
    return path


def write_image(path: Path, colour, size=(48, 40), seed=0, format=None) -> Path:
    """A noisy image of one colour: trivially separable classes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype("uint8")).save(path, format=format)
    return path


def make_image_folder(root: Path, per_class: int = 10, classes=CLASSES) -> Path:
    for label, name in enumerate(classes):
        for i in range(per_class):
            write_image(root / name / f"{name}_{i:03d}.jpg", COLOURS[name], seed=label * 1000 + i)
    return root


def installed(module: str) -> bool:
    """True if `module` can be imported in this environment."""
    return importlib.util.find_spec(module) is not None


def run_main(capsys, *argv):
    """(exit status, stdout, stderr) of `flowerkit ARGV...`, in this process."""
    from flowerkit.cli import main

    try:
        status = main([str(arg) for arg in argv])
    except SystemExit as exit:  # argparse's own errors and --help
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def tiny_recipe(**changes):
    """The dense preset at 32 px, batch 8: a whole run trains in seconds."""
    import flowerkit

    return flowerkit.get_preset("dense").replace(image_size=32, batch_size=8, **changes)


def tiny_run_folder(folder: Path, classes=CLASSES, image_size: int = 32) -> Path:
    """A run folder as train leaves it for predict, export and serve:
    model.keras (pooling and a softmax Dense: milliseconds to run or convert)
    and recipe.json naming `classes`. Returns the model's path."""
    import keras

    from flowerkit.config.recipe import Recipe

    keras.utils.set_random_seed(0)
    inputs = keras.Input((image_size, image_size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(len(classes), activation="softmax")(pooled))
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    Recipe(class_names=tuple(classes), image_size=image_size).save(folder / "recipe.json")
    return folder / "model.keras"


@contextlib.contextmanager
def eager_steps_where_not_jit():
    """Keras compiles every model with run_eagerly=True where flowerkit's
    "auto" jit_compile is off (TensorFlow on CPU; PyTorch is eager anyway):
    tracing MobileNetV2's step costs many times what a few eager batches
    of 8 do. Where the step is XLA-compiled (JAX), it stays compiled: eager
    JAX is slower still.
    For tests about what training does, not how its step is compiled."""
    import keras

    from flowerkit.backends.policy import resolve_jit_compile

    with pytest.MonkeyPatch.context() as patch:
        if not resolve_jit_compile("auto"):
            compile = keras.Model.compile

            def eager_compile(model, *args, **kwargs):
                compile(model, *args, **{**kwargs, "run_eagerly": True})

            patch.setattr(keras.Model, "compile", eager_compile)
        yield


# --- small models shared by the fast-path tests (tests/test_fastpath*.py) ------


# MobileNetV2 cut after block 6: 7 of its 17 depthwise convolutions (strides
# 1 and 2), 40% of its layers, so train steps compile in less than half the time.
MOBILENET_V2_CUT = "block_6_project_BN"


def small_mobilenet_v2(pretrained=False, cut_after=None):
    """MobileNetV2 alpha 0.35 at 64x64 with a Dense(3) head, seeded;
    `cut_after` a layer name: the backbone ends there (MOBILENET_V2_CUT)."""
    import keras

    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(
        alpha=0.35, input_shape=(64, 64, 3), weights=None, include_top=False
    )
    if pretrained:
        backbone.load_weights(shared_path("weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5"))
    if cut_after:
        backbone = keras.Model(backbone.input, backbone.get_layer(cut_after).output)
    inputs = keras.Input((64, 64, 3))
    # training=False as in transfer learning: BatchNormalization on its moving
    # statistics. (Batch statistics of 4 images at 2x2 pixels amplify float
    # rounding in the gradient far beyond any tolerance, stock vs stock alike.)
    features = keras.layers.GlobalAveragePooling2D()(backbone(inputs, training=False))
    return keras.Model(inputs, keras.layers.Dense(3)(features))


def efficientnet_lite0_backbone(load_weights=True):
    """The keras-hub EfficientNet-Lite0 from the shared preset folder."""
    import importlib.util

    if importlib.util.find_spec("keras_hub") is None:
        pytest.skip("keras-hub is not installed")
    import keras_hub

    folder = shared_path("weights/efficientnet_lite0_keras_hub")
    return keras_hub.models.Backbone.from_preset(str(folder), load_weights=load_weights)


def small_images(count=4, seed=0):
    """(images in [-1, 1] at 64x64, labels of 3 classes) for small_mobilenet_v2."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, size=(count, 64, 64, 3)).astype("float32"), np.arange(count) % 3


def one_train_step(model, x, y, sample_weight=None, micro_batch=0):
    """One SGD(0.1) train_on_batch: (loss, the change of every trainable
    weight); `micro_batch` rows per micro-batch (JAX; 0: Keras's step)."""
    import keras

    from flowerkit.backends.fastpaths import use_micro_batches

    before = [np.asarray(w) for w in model.trainable_weights]
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    assert use_micro_batches(model, micro_batch) == micro_batch
    loss = float(model.train_on_batch(x, y, sample_weight=sample_weight))
    return loss, [np.asarray(w) - b for w, b in zip(model.trainable_weights, before)]


def assert_same_train_step(reference, candidate, rtol=1e-3, layer_rtol=None):
    """Two one_train_step results agree: loss within 1e-5, every update within
    rtol (and 1e-4 of the largest update); the reference step moved weights.
    With `layer_rtol`, each weight's update is compared as a whole instead:
    the norm of the difference within `layer_rtol` of the update's norm
    (and 1e-4 of the largest update)."""
    (loss0, updates0), (loss1, updates1) = reference, candidate
    np.testing.assert_allclose(loss1, loss0, rtol=1e-5)
    scale = max(float(np.abs(u).max()) for u in updates0)
    assert scale > 1e-3  # the step changed the weights
    for expected, actual in zip(updates0, updates1):
        if layer_rtol is None:
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-4 * scale)
        else:
            difference, norm = np.linalg.norm(actual - expected), np.linalg.norm(expected)
            assert difference <= layer_rtol * norm + 1e-4 * scale, (difference, norm, expected.shape)


def one_error_line(err: str) -> str:
    """The one `error:` line a CLI printed, with no traceback."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    return errors[0]
