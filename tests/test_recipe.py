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


# Every validation step of Recipe, each message naming the field.
@pytest.mark.parametrize(
    "changes, message",
    [
        # kinds, read from the annotations
        ({"epochs": "3"}, "epochs must be int, got '3'"),
        ({"epochs": True}, "epochs must be int, got True"),
        ({"dropout": "0.1"}, "dropout must be int or float"),
        ({"trainable_backbone": 1}, "trainable_backbone must be bool"),
        ({"weights": 3}, "weights must be str or NoneType"),
        ({"jit_compile": 1}, "jit_compile must be str or bool"),
        ({"micro_batch": True}, "micro_batch must be str or int"),
        # choices
        ({"head": "pyramid"}, "head must be one of flatten, gap; got 'pyramid'"),
        ({"optimizer": "lamb"}, "optimizer must be one of adam, adamw, sgd, rmsprop"),
        ({"learning_rate_schedule": "step"}, "learning_rate_schedule must be one of"),
        ({"precision": "float8"}, "precision must be one of"),
        ({"jit_compile": "xla"}, "jit_compile must be one of auto, True, False"),
        ({"feature_cache": "maybe"}, "feature_cache must be one of auto, on, off"),
        ({"depthwise_conv": "fast"}, "depthwise_conv must be one of auto, shifted, stock"),
        ({"torch_layers": "fast"}, "torch_layers must be one of auto, native, stock"),
        ({"pointwise_conv": "dot"}, "pointwise_conv must be one of auto, matmul, stock"),
        ({"affine_augmentation": "fast"}, "affine_augmentation must be one of auto, batched"),
        ({"class_weight": "inverse"}, "class_weight must be one of none, balanced, auto"),
        # bounds
        ({"image_size": 8}, "image_size must be at least 32, got 8"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"feature_dropout": 1.0}, r"feature_dropout must be in \[0, 1\)"),
        ({"learning_rate": 0.0}, "learning_rate must be positive, got 0.0"),
        ({"label_smoothing": -0.1}, r"label_smoothing must be in \[0, 1\)"),
        ({"batch_size": 0}, "batch_size must be positive, got 0"),
        ({"epochs": 0}, "epochs must be positive, got 0"),
        ({"validation_split": 1.5}, r"validation_split must be in \(0, 1\), got 1.5"),
        ({"validation_split": 0.0}, r"validation_split must be in \(0, 1\)"),
        ({"fine_tune_epochs": -1}, "fine_tune_epochs must be >= 0, got -1"),
        ({"fine_tune_layers": -1}, "fine_tune_layers must be >= 0"),
        ({"fine_tune_learning_rate": -1e-4}, "fine_tune_learning_rate must be positive"),
        ({"fine_tune_warmup_epochs": -1}, "fine_tune_warmup_epochs must be >= 0"),
        ({"fine_tune_weight_decay": -0.1}, "fine_tune_weight_decay must be >= 0"),
        ({"fine_tune_label_smoothing": 1.0}, r"fine_tune_label_smoothing must be in \[0, 1\)"),
        # micro_batch
        ({"micro_batch": "small"}, "micro_batch must be 'auto' or a number of rows"),
        ({"micro_batch": -8}, "micro_batch must be 'auto' or a number of rows"),
        # fine-tuning
        ({"backbone": "none", "fine_tune_epochs": 2}, "fine_tune_epochs needs a backbone"),
        # distribution
        ({"distribution": "model_parallel"}, "distribution must be 'auto', 'none'"),
        ({"distribution": "none:2"}, "distribution must be 'auto', 'none'"),
        ({"distribution": "data_parallel:two"}, "distribution 'data_parallel:two': N must be"),
        ({"distribution": "data_parallel:0"}, "distribution 'data_parallel:0': N must be"),
        ({"distribution": "data_parallel:3"}, "batch_size 64 .* divisible by the 3 devices"),
        # class names
        ({"class_names": ("a", "a")}, "class_names has duplicates"),
        # augmentation ops, in either list
        ({"augmentation": ("spin",)}, "augmentation: Unknown augmentation op 'spin'"),
        ({"augmentation": ("zoom:lots",)}, "augmentation: .*'lots' is not a number"),
        ({"augmentation": ("zoom:1.5",)}, r"augmentation: .*must be in \(0, 1\]"),
        ({"augmentation": ("flip:0.5",)}, r"augmentation: .*'flip:0.5': argument must be"),
        ({"fine_tune_augmentation": ("spin",)}, "fine_tune_augmentation: Unknown augmentation op"),
        # feature cache
        ({"feature_cache": "on", "augmentation": ("zoom",)}, "feature_cache 'on' needs a frozen"),
        ({"feature_cache": "on", "trainable_backbone": True}, "feature_cache 'on' needs a frozen"),
    ],
)
def test_invalid_values_are_clear_errors(changes, message):
    with pytest.raises(FlowerkitError, match=f"^Invalid recipe: {message}"):
        get_preset("codelab").replace(**changes)


def test_field_kinds_follow_the_annotations():
    # A new scalar field is checked without a second list to keep in step.
    from flowerkit.config.recipe import _field_kinds

    kinds = _field_kinds()
    assert kinds["epochs"] == (int,) and kinds["learning_rate"] == (int, float)
    assert kinds["micro_batch"] == (str, int) and kinds["weights"] == (str, type(None))
    assert "augmentation" not in kinds and "backbone_kwargs" not in kinds


def test_policy_and_balance_check_the_recipe_choices():
    from flowerkit.backends.policy import depthwise_implementation
    from flowerkit.data.balance import class_weights

    with pytest.raises(FlowerkitError, match="depthwise_conv must be one of auto, shifted, stock"):
        depthwise_implementation("jax", "CPU", "fast")
    with pytest.raises(FlowerkitError, match="class_weight must be one of none, balanced, auto"):
        class_weights([0, 1], 2, "inverse")


def test_augmentation_ops_come_from_one_registry():
    from flowerkit.config.ops import OPS, precomputable_ops

    assert list(OPS) == ["flip", "rotate", "zoom", "translate", "contrast", "brightness"]
    assert [name for name, op in OPS.items() if op.affine] == ["rotate", "zoom", "translate"]
    assert precomputable_ops() == ("flip",)
    assert get_preset("codelab").replace(augmentation=("flip",)).can_cache_features
    assert not get_preset("codelab").replace(augmentation=("flip", "contrast")).can_cache_features


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
