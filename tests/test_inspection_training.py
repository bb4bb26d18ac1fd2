"""Class weights in the loss, and odd datasets (greyscale, palette, RGBA,
tiny, unicode class names) trained and predicted with exclude/relabel
recorded in recipe.json and replayed."""

import json

import numpy as np
import pytest
from tests.helpers import write_image

import flowerkit
from flowerkit.data import load_data
from flowerkit.inspection.lists import read_path_list
from flowerkit.model.losses import ClassWeightedCrossentropy


def test_class_weights_scale_each_rows_loss_as_computed_by_hand():
    y_true = np.array([[1, 0], [0, 1]], "float32")
    y_pred = np.array([[0.8, 0.2], [0.4, 0.6]], "float32")
    loss = ClassWeightedCrossentropy([1.0, 3.0])
    expected = (-np.log(0.8) * 1.0 + -np.log(0.6) * 3.0) / 2
    assert float(loss(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)
    unweighted = ClassWeightedCrossentropy([1.0, 1.0])
    assert float(unweighted(y_true, y_pred)) == pytest.approx((-np.log(0.8) - np.log(0.6)) / 2, rel=1e-5)
    restored = ClassWeightedCrossentropy.from_config(loss.get_config())
    assert restored.class_weights == [1.0, 3.0]


@pytest.fixture
def odd_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "odd data"
    colours = {"grüne Blätter": (40, 180, 60), "red roses": (200, 40, 40), "蓝": (40, 60, 200)}
    for label, (name, colour) in enumerate(colours.items()):
        for i in range(8):
            path = write_image(root / name / f"{i}.png", colour, size=(24, 20), seed=label * 100 + i)
            with Image.open(path) as image:
                converted = {0: image.convert("L"), 1: image.convert("P"), 2: image.convert("RGBA")}[i % 3]
            converted.save(path)
    # The large class: imbalance 16:8, for class_weight auto.
    for i in range(8, 16):
        write_image(root / "red roses" / f"{i}.jpg", colours["red roses"], size=(12, 12), seed=900 + i)
    return root


def test_odd_dataset_trains_predicts_and_replays_exclude_relabel(odd_folder, tmp_path):
    (tmp_path / "exclude.txt").write_text("red roses/0.png\n")
    recipe = flowerkit.get_preset("dense").replace(
        image_size=32, epochs=2, batch_size=8, exclude=read_path_list(tmp_path / "exclude.txt"),
        relabel={"蓝/1.png": "red roses"},
    )
    run = tmp_path / "run"
    result = flowerkit.train(recipe, source=str(odd_folder), output_dir=run, verbose=0)
    inspection = result.metrics["data_inspection"]
    assert inspection["curation"] == {"excluded": 1, "relabelled": 1, "unmatched": 0}
    assert inspection["odd_modes"] >= 12  # L, P and RGBA files
    assert result.metrics["class_weights"] is not None  # auto: 16 against 7-8 images
    assert 0 <= result.metrics["val_balanced_accuracy"] <= 1
    saved = json.loads((run / "recipe.json").read_text(encoding="utf-8"))
    assert saved["exclude"] == ["red roses/0.png"] and saved["relabel"] == {"蓝/1.png": "red roses"}
    assert saved["class_names"] == ["grüne Blätter", "red roses", "蓝"]
    # A rerun from recipe.json is the same run: the same images on each side.
    again = load_data(flowerkit.Recipe.load(run / "recipe.json"), str(odd_folder))
    assert again.inspection["curation"] == inspection["curation"]
    assert len(again.train) == result.metrics["train_images"]
    predictions = flowerkit.predict(run / "model.keras", [str(odd_folder / "蓝" / "2.png")])
    assert predictions[0]["top"][0]["class"] in saved["class_names"]
    assert sum(row["probability"] for row in predictions[0]["top"]) == pytest.approx(1, abs=1e-4)
