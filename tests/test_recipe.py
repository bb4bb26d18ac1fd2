import dataclasses
import json

import pytest

from flowerkit import PRESETS, FlowerkitError, Recipe, get_preset
from flowerkit.cli import build_parser
from flowerkit.cli.train import recipe_from_args

pytestmark = pytest.mark.backend_independent  # run once, not per backend (tox.ini)


def test_codelab_preset_is_the_notebook():
    recipe = get_preset("codelab")
    assert recipe.backbone == "mobilenet_v2"
    assert dict(recipe.backbone_kwargs) == {"alpha": 1.0}
    assert recipe.weights == "imagenet"
    assert (recipe.image_size, recipe.batch_size, recipe.epochs) == (192, 64, 10)
    assert recipe.validation_split == 0.19
    assert recipe.head == "flatten" and recipe.head_units == () and recipe.dropout == 0
    assert (recipe.optimizer, recipe.learning_rate) == ("adam", 1e-3)
    assert not recipe.trainable_backbone


def test_dense_preset_is_the_codelab_dense_network():
    recipe = get_preset("dense")
    assert recipe.backbone == "none" and recipe.weights is None
    assert recipe.head == "flatten" and recipe.head_units == (500, 50)


@pytest.mark.parametrize("name", list(PRESETS))
def test_json_round_trip(tmp_path, name):
    recipe = get_preset(name).replace(class_names=("a", "b"), augmentation=("flip", "zoom:0.2"))
    recipe.save(tmp_path / "recipe.json")
    assert Recipe.load(tmp_path / "recipe.json") == recipe


def test_recipe_is_immutable():
    recipe = get_preset("codelab")
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.epochs = 3
    with pytest.raises(TypeError):
        recipe.backbone_kwargs["alpha"] = 0.5


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"head": "pyramid"}, "head must be one of"),
        ({"validation_split": 1.5}, "validation_split"),
        ({"augmentation": ("spin",)}, "Unknown augmentation op 'spin'"),
        ({"augmentation": ("zoom:lots",)}, "is not a number"),
        ({"precision": "float8"}, "precision must be one of"),
        ({"image_size": 8}, "image_size"),
        ({"class_names": ("a", "a")}, "duplicates"),
        ({"micro_batch": "small"}, "micro_batch must be 'auto' or a number of rows"),
        ({"micro_batch": -8}, "micro_batch must be 'auto' or a number of rows"),
        ({"micro_batch": True}, "micro_batch must be str or int"),
        ({"feature_dropout": 1.0}, r"feature_dropout must be in \[0, 1\)"),
        ({"learning_rate_schedule": "step"}, "learning_rate_schedule must be one of"),
    ],
)
def test_invalid_values_are_clear_errors(changes, message):
    with pytest.raises(FlowerkitError, match=message):
        get_preset("codelab").replace(**changes)


def test_unknown_field_is_an_error():
    with pytest.raises(FlowerkitError, match="Unknown recipe field"):
        get_preset("codelab").replace(epochz=3)
    with pytest.raises(FlowerkitError, match="Unknown preset 'nope'"):
        get_preset("nope")


def test_cli_flags_override_single_fields():
    args = build_parser().parse_args(
        ["train", "--preset", "codelab", "--epochs", "3", "--alpha", "0.35",
         "--weights", "none", "--augmentation", "flip,zoom:0.1", "--trainable-backbone", "true",
         "--micro-batch", "4"]
    )
    recipe = recipe_from_args(args)
    assert recipe == get_preset("codelab").replace(
        epochs=3,
        backbone_kwargs={"alpha": 0.35},
        weights=None,
        augmentation=("flip", "zoom:0.1"),
        trainable_backbone=True,
        micro_batch=4,
    )
    args = build_parser().parse_args(["train", "--micro-batch", "auto"])
    assert recipe_from_args(args).micro_batch == "auto"


def test_cli_starts_from_saved_recipe(tmp_path):
    saved = get_preset("dense").replace(epochs=2)
    saved.save(tmp_path / "r.json")
    args = build_parser().parse_args(["train", "--recipe", str(tmp_path / "r.json"), "--seed", "7"])
    assert recipe_from_args(args) == saved.replace(seed=7)


def test_from_preset_takes_a_name_a_run_folder_or_a_recipe_file(tmp_path):
    saved = get_preset("dense").replace(epochs=2, class_names=("a", "b"))
    saved.save(tmp_path / "recipe.json")
    assert Recipe.from_preset("dense") == get_preset("dense")
    assert Recipe.from_preset(tmp_path) == saved
    assert Recipe.from_preset(tmp_path / "recipe.json") == saved
    with pytest.raises(FlowerkitError, match="Recipe file not found"):
        Recipe.from_preset(tmp_path / "other.json")
    args = build_parser().parse_args(["train", "--preset", str(tmp_path)])
    assert recipe_from_args(args) == saved


@pytest.mark.parametrize(
    "content, message",
    [
        ({"epochs": "abc"}, "epochs must be int, got 'abc'"),
        ({"image_size": 22.5}, "image_size must be int"),
        ({"trainable_backbone": "yes"}, "trainable_backbone must be bool"),
        ({"learning_rate": True}, "learning_rate must be int or float"),
        ({"epochz": 3}, "Unknown recipe field"),
        ([1, 2], "must hold a JSON object"),
    ],
)
def test_bad_recipe_files_name_the_file_and_the_field(tmp_path, content, message):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(content))
    with pytest.raises(FlowerkitError, match=message) as error:
        Recipe.load(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_recipe_that_survives_json(name, tmp_path):
    fields = json.loads(json.dumps(PRESETS[name]))  # plain data, as a recipe.json holds it
    recipe = get_preset(name)
    assert recipe.name == name
    saved = recipe.to_dict()
    for field, value in fields.items():
        assert saved[field] == value, field
    recipe.save(tmp_path / "recipe.json")
    assert Recipe.load(tmp_path / "recipe.json") == recipe
