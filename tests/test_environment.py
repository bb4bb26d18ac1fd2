"""The tox environments are what they claim: one backend each, and the JAX
and PyTorch environments free of TensorFlow."""

import importlib.util
import os

import pytest


@pytest.mark.backends("jax", "torch")  # only these environments must lack TensorFlow
def test_no_tensorflow_installed():
    assert importlib.util.find_spec("tensorflow") is None
    assert importlib.util.find_spec("tensorflow_text") is None


@pytest.mark.backends("jax", "torch")
def test_keras_hub_works_without_tensorflow(tmp_path):
    """keras-hub (installed --no-deps) builds a vision backbone, runs it,
    and saves and reloads it as a preset, with no TensorFlow in the process."""
    import sys

    import numpy as np

    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
        stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block",
        use_pre_activation=False, image_shape=(16, 16, 3))
    images = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    features = np.asarray(backbone.predict(images, verbose=0))
    assert features.shape[0] == 2 and features.std() > 0
    backbone.save_to_preset(str(tmp_path / "preset"))
    reloaded = keras_hub.models.Backbone.from_preset(str(tmp_path / "preset"))
    assert type(reloaded) is type(backbone)
    np.testing.assert_allclose(np.asarray(reloaded.predict(images, verbose=0)), features, rtol=1e-5, atol=1e-6)
    assert "tensorflow" not in sys.modules


def test_sessions_remove_private_keras_homes_that_killed_sessions_left(tmp_path):
    import subprocess
    import sys

    from tests.helpers import KERAS_HOME_PREFIX, private_keras_home

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    left = tmp_path / f"{KERAS_HOME_PREFIX}{finished.stdout.strip()}-abc"  # its process is gone
    (left / "flowerkit/features").mkdir(parents=True)
    running = tmp_path / f"{KERAS_HOME_PREFIX}{os.getpid()}-def"  # a live session's
    running.mkdir()
    other = tmp_path / "unrelated"
    other.mkdir()
    mine = private_keras_home(tmp_path)
    assert mine.name.startswith(f"{KERAS_HOME_PREFIX}{os.getpid()}-")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, other.name, mine.name])
