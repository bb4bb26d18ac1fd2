"""`load_data`, the one way in for training, evaluation and the benchmarks."""

import pytest

from flowerkit import FlowerkitError, load_data
from tests.helpers import tiny_recipe


def test_train_and_validation_are_the_recipe_split(session_image_folder):
    data = load_data(tiny_recipe(), str(session_image_folder))
    assert data.class_names == ("blue", "green", "red")
    assert len(data.train) == 39 and len(data.validation) == 9  # 19% of 16 per class
    assert set(data.train.index.images).isdisjoint(data.validation.index.images)


def test_all_is_every_image(session_image_folder):
    data = load_data(tiny_recipe(), str(session_image_folder), subsets=("all",))
    assert len(data["all"]) == 48 and set(data.subsets) == {"all"}


def test_max_images_samples_each_side_of_the_full_split(session_image_folder):
    """A subset run's validation images are the full run's, never its training images."""
    full = load_data(tiny_recipe(), str(session_image_folder))
    small = load_data(tiny_recipe(), str(session_image_folder), max_images=20)
    assert len(small.train) + len(small.validation) == 20
    assert set(small.validation.index.images) <= set(full.validation.index.images)
    assert set(small.train.index.images) <= set(full.train.index.images)


@pytest.mark.parametrize("max_images", [0, -3])
def test_max_images_must_be_positive(session_image_folder, max_images):
    with pytest.raises(FlowerkitError, match="max_images must be at least 1"):
        load_data(tiny_recipe(), str(session_image_folder), max_images=max_images)


def test_unknown_subset_and_class_mismatch_are_errors(session_image_folder):
    with pytest.raises(FlowerkitError, match="Unknown subset"):
        load_data(tiny_recipe(), str(session_image_folder), subsets=("test",))
    with pytest.raises(FlowerkitError, match="differ from the classes"):
        load_data(tiny_recipe(class_names=("daisy", "roses")), str(session_image_folder))
