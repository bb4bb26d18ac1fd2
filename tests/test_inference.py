"""Predictions on images and datasets, with and without flip test-time
augmentation."""

import keras
import numpy as np
import pytest

from flowerkit import FlowerkitError
from flowerkit.data.pipelines import make_dataset
from flowerkit.data.sources import index_folder
from flowerkit.inference import predict_dataset, predict_images
from tests.helpers import write_image


def _left_right_model(size=16):
    """Probabilities that depend on which half of the image is brighter."""
    inputs = keras.Input((size, size, 3))
    left = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(((0, 0), (0, size // 2)))(inputs))
    right = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(((0, 0), (size // 2, 0)))(inputs))
    logits = keras.layers.Concatenate()([
        keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(left),
        keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(right),
    ])
    outputs = keras.layers.Softmax()(keras.layers.Rescaling(1 / 300)(logits))
    return keras.Model(inputs, outputs)


def _half_bright(path, size=16):
    from PIL import Image

    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[:, : size // 2] = 250
    Image.fromarray(pixels).save(path)
    return path


def test_flip_tta_averages_the_image_and_its_mirror(tmp_path):
    model = _left_right_model()
    path = _half_bright(tmp_path / "left.png")
    plain = predict_images(model, [str(path)], ("left", "right"), top_k=2)[0]["top"]
    assert plain[0]["class"] == "left" and plain[0]["probability"] > 0.9
    averaged = predict_images(model, [str(path)], ("left", "right"), top_k=2, tta="flip")[0]["top"]
    # Mirrored, the image is as bright on the right: the average is even.
    assert [t["probability"] for t in averaged] == pytest.approx([0.5, 0.5], abs=1e-6)


def test_dataset_predictions_keep_plain_and_tta_apart(tmp_path):
    for name in ("a", "b"):
        for i in range(3):
            write_image(tmp_path / name / f"{i}.png", (10 * i, 100, 200), size=(16, 16), seed=i)
    index = index_folder(tmp_path)
    predictions = predict_dataset(_left_right_model(), make_dataset(index, 16, 4), tta="flip")
    assert predictions.probabilities.shape == predictions.tta_probabilities.shape == (6, 2)
    assert not np.allclose(predictions.probabilities, predictions.tta_probabilities)
    np.testing.assert_allclose(predictions.tta_probabilities.sum(1), 1, rtol=1e-6)
    with pytest.raises(FlowerkitError, match="tta must be"):
        predict_dataset(_left_right_model(), make_dataset(index, 16, 4), tta="rotate")
