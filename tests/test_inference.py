"""Loading a run (one rule for its recipe.json), predictions on images and
datasets, with and without flip test-time augmentation, top-k."""

import keras
import numpy as np
import pytest

import flowerkit
from flowerkit import FlowerkitError
from flowerkit.config.recipe import Recipe
from flowerkit.data.decode import flip_averaged, mirror_images
from flowerkit.data.pipelines import make_dataset
from flowerkit.data.sources import index_folder
from flowerkit.inference import load_run, predict_dataset, predict_images
from flowerkit.report.metrics import top_classes
from tests.helpers import tiny_run_folder, write_image


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


def test_load_run_reads_the_model_and_its_recipe(tmp_path):
    model_path = tiny_run_folder(tmp_path / "run", classes=("a", "b"))
    run = load_run(model_path)
    assert run.class_names == ("a", "b") and run.image_size == 32 and run.path == model_path
    assert run.model.output_shape == (None, 2)


@pytest.mark.parametrize("damage, message", [
    ("missing", "No recipe.json beside"),
    ("not json", "is not valid JSON"),
    ("a list", "must hold a JSON object"),
    ("three classes", "names 3 classes but the model has 2 outputs"),
])
def test_one_rule_for_a_missing_or_damaged_recipe(tmp_path, damage, message):
    """predict, evaluate, export and serve all load a run through load_run."""
    model_path = tiny_run_folder(tmp_path / "run", classes=("a", "b"))
    recipe_path = model_path.with_name("recipe.json")
    if damage == "missing":
        recipe_path.unlink()
    elif damage == "not json":
        recipe_path.write_text("{class_names: ")
    elif damage == "a list":
        recipe_path.write_text("[]")
    else:
        Recipe(class_names=("a", "b", "c"), image_size=32).save(recipe_path)
    with pytest.raises(FlowerkitError, match=message) as error:
        load_run(model_path)
    assert "\n" not in str(error.value)
    if damage != "three classes":
        assert str(recipe_path if damage != "missing" else model_path) in str(error.value)
    with pytest.raises(FlowerkitError, match=message):
        flowerkit.predict(model_path, ["any.jpg"])


@pytest.mark.backend_independent
def test_top_classes_are_the_most_probable_first():
    probabilities = np.array([0.1, 0.6, 0.3], np.float32)
    top = top_classes(probabilities, ("a", "b", "c"), top_k=2)
    assert top == [{"class": "b", "probability": pytest.approx(0.6)},
                   {"class": "c", "probability": pytest.approx(0.3)}]
    assert [t["class"] for t in top_classes(probabilities, ("a", "b", "c"), top_k=9)] == ["b", "c", "a"]


@pytest.mark.backend_independent
def test_mirror_and_flip_average():
    images = np.arange(2 * 2 * 3 * 1, dtype=np.float32).reshape(2, 2, 3, 1)
    mirrored = mirror_images(images)
    np.testing.assert_array_equal(mirrored[1, 0, :, 0], images[1, 0, ::-1, 0])
    assert mirrored.flags["C_CONTIGUOUS"]
    # A "model" that reads the first column: plain sees column 0, mirrored the last one.
    first_column = lambda batch: batch[:, 0, 0, :]  # noqa: E731
    averaged = flip_averaged(first_column, images, first_column(images))
    np.testing.assert_allclose(averaged[:, 0], (images[:, 0, 0, 0] + images[:, 0, -1, 0]) / 2)
