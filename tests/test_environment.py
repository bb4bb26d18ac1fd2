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
