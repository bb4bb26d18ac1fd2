"""The tox environments are what they claim: one backend each, and the JAX
and PyTorch environments free of TensorFlow."""

import importlib.util
import os

import keras
import pytest


def test_backend_is_the_one_asked_for():
    wanted = os.environ.get("KERAS_BACKEND")
    if not wanted:
        pytest.skip("KERAS_BACKEND not set (tox sets it per environment)")
    assert keras.backend.backend() == wanted


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
