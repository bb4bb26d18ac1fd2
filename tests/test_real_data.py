"""Real photos and real ImageNet weights from ../shared: the transfer
learning actually learns."""

import pytest
from tests.helpers import shared_path

import flowerkit


@pytest.mark.slow
def test_mobilenet_v2_035_learns_flowers_in_one_epoch(tmp_path):
    photos = shared_path("data/flower_photos")
    shared_path("weights/keras_home/models")  # copied into KERAS_HOME by conftest
    recipe = flowerkit.get_preset("mobilenet_v2_035").replace(epochs=1, batch_size=8)
    assert (recipe.backbone, recipe.backbone_kwargs["alpha"], recipe.image_size) == ("mobilenet_v2", 0.35, 288)
    assert recipe.weights == "imagenet"
    result = flowerkit.train(recipe, source=str(photos), output_dir=tmp_path, max_images=400, verbose=0)
    assert result.recipe.class_names == ("daisy", "dandelion", "roses", "sunflowers", "tulips")
    assert result.metrics["validation_images"] == 76
    # Chance is 0.2; random-weight features reach about 0.4 (see ../shared/weights/README.md).
    assert result.metrics["val_accuracy"] >= 0.6, result.metrics["val_accuracy"]
    assert (tmp_path / "model.keras").is_file()
