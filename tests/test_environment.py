"""The tox environments are what they claim: one backend each, and the JAX
and PyTorch environments free of TensorFlow."""

import importlib.util
import os

import pytest


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") not in ("jax", "torch"),
                    reason="only the jax and torch environments must lack TensorFlow")
def test_no_tensorflow_installed():
    assert importlib.util.find_spec("tensorflow") is None
    assert importlib.util.find_spec("tensorflow_text") is None


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") not in ("jax", "torch"),
                    reason="only the jax and torch environments must lack TensorFlow")
def test_keras_hub_works_without_tensorflow():
    keras_hub = pytest.importorskip("keras_hub")
    assert hasattr(keras_hub.models, "Backbone")


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
