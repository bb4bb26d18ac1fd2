"""The model builder: architecture, preprocessing inside, frozen backbone."""

import warnings

import keras
import numpy as np
import pytest
from tests.helpers import shared_path

import flowerkit
from flowerkit import BACKBONES, FlowerkitError, build_model, get_preset
from flowerkit.config.recipe import OPTIMIZERS
from flowerkit.model import find_backbone


def _layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


def test_codelab_architecture():
    recipe = get_preset("codelab").replace(weights=None, class_names=tuple("abcde"))
    model = build_model(recipe)
    assert model.input_shape == (None, 192, 192, 3)
    assert model.output_shape == (None, 5)
    assert _layer_types(model) == ["InputLayer", "Rescaling", "Functional", "Flatten", "Dense"]
    backbone = model.layers[2]
    assert backbone.name.startswith("mobilenetv2_1.00")
    assert not backbone.trainable
    head = model.layers[-1]
    assert head.activation.__name__ == "softmax"
    # Only the head trains: Flatten(6x6x1280) -> 5.
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 6 * 6 * 1280 * 5 + 5
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)


def test_dense_architecture():
    model = build_model(get_preset("dense").replace(class_names=tuple("abcde"), image_size=32))
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [500, 50, 5]


def test_feature_dropout_sits_in_the_head_after_the_cached_features():
    """The features the cache stores are the backbone's; feature dropout is
    the head's first layer, active in training only, absent at rate 0."""
    from flowerkit.model import split_at_features

    recipe = get_preset("mobilenet_v2_035").replace(
        weights=None, class_names=tuple("abcde"), image_size=32, feature_dropout=0.5
    )
    extractor, head = split_at_features(build_model(recipe))
    assert extractor.layers[-1].name == "pool"
    assert [layer.name for layer in head.layers][:3] == ["features", "feature_dropout", "dense_0"]
    dropout = head.get_layer("feature_dropout")
    features = np.ones((8, extractor.output_shape[-1]), "float32")
    dropped = keras.ops.convert_to_numpy(dropout(features, training=True))
    assert 0.3 < (dropped == 0).mean() < 0.7
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dropout(features, training=False)), features)
    unchanged = build_model(recipe.replace(feature_dropout=0.0))
    assert "feature_dropout" not in [layer.name for layer in unchanged.layers]


def test_model_takes_raw_pixels():
    """Preprocessing lives in the model: 0..255 in, the backbone sees -1..1."""
    recipe = get_preset("codelab").replace(
        weights=None, class_names=("a", "b"), image_size=32, backbone_kwargs={"alpha": 0.35}
    )
    model = build_model(recipe)
    rescale = model.get_layer("preprocessing")
    out = keras.ops.convert_to_numpy(rescale(np.array([[0.0, 127.5, 255.0]])))
    np.testing.assert_allclose(out, [[-1, 0, 1]], atol=1e-6)


def test_frozen_backbone_keeps_batchnorm_statistics():
    recipe = get_preset("codelab").replace(
        weights=None, class_names=("a", "b"), image_size=32, backbone_kwargs={"alpha": 0.35},
        trainable_backbone=False,
    )
    model = build_model(recipe)
    bn = next(l for l in model.layers[2].layers if isinstance(l, keras.layers.BatchNormalization))
    before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    # (A random MobileNetV2 emits ~0 features, so the head's bias shows training.)
    bias_before = keras.ops.convert_to_numpy(model.layers[-1].bias).copy()
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = np.eye(2)[[0] * 6 + [1] * 2].astype("float32")
    model.fit(x, y, epochs=2, verbose=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.moving_mean), before)
    assert not np.allclose(keras.ops.convert_to_numpy(model.layers[-1].bias), bias_before)


@pytest.mark.parametrize("trainable_backbone", [True, False], ids=["fine-tuned", "frozen"])
def test_backbone_kernels_move_only_when_fine_tuned(trainable_backbone):
    # Pretrained weights: through a random MobileNetV2 in inference mode the
    # signal (and so every gradient) all but vanishes.
    weights = shared_path("weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5")
    recipe = get_preset("codelab").replace(
        weights=str(weights), class_names=("a", "b"), image_size=64, backbone_kwargs={"alpha": 0.35},
        trainable_backbone=trainable_backbone, head="gap", learning_rate=0.01,
    )
    model = build_model(recipe)
    backbone = model.get_layer(index=2)
    kernel = backbone.get_layer("Conv_1").kernel  # the last convolution: the largest gradients
    bn = next(l for l in backbone.layers if isinstance(l, keras.layers.BatchNormalization))
    kernel_before = keras.ops.convert_to_numpy(kernel).copy()
    mean_before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    x = np.random.default_rng(0).uniform(0, 255, (8, 64, 64, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[[0, 1] * 4]
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    moved = np.abs(keras.ops.convert_to_numpy(kernel) - kernel_before).max()
    if trainable_backbone:
        assert moved > 1e-6
    else:
        assert moved == 0
    # BatchNorm runs in inference mode either way: its statistics never move.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.moving_mean), mean_before)


@pytest.mark.parametrize("name", [n for n in BACKBONES if n not in ("none", "efficientnet_lite0")])
def test_every_keras_application_backbone_builds(name):
    size = 75 if name == "xception" else 64
    recipe = get_preset("codelab").replace(
        backbone=name, backbone_kwargs={}, weights=None, head="gap", class_names=("a", "b", "c"),
        image_size=size,
    )
    model = build_model(recipe, compile=False)
    out = model.predict(np.zeros((1, size, size, 3), "float32"), verbose=0)
    assert out.shape == (1, 3)
    np.testing.assert_allclose(out.sum(), 1.0, rtol=1e-5)


def test_imagenet_weights_from_the_keras_cache():
    """weights="imagenet" resolves through $KERAS_HOME/models (the shared copy)."""
    weights = shared_path("weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5")
    shared_path("weights/keras_home/models")
    base = dict(class_names=("a", "b"), image_size=224, backbone_kwargs={"alpha": 0.35})
    from_cache = build_model(get_preset("codelab").replace(**base), compile=False)
    from_file = build_model(get_preset("codelab").replace(**base, weights=str(weights)), compile=False)
    for a, b in zip(from_cache.layers[2].weights, from_file.layers[2].weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_imagenet_weights_at_a_size_without_their_own_file_are_the_224_ones_quietly():
    """`mobilenet_v2_035` runs at 288 px, for which Keras has no ImageNet file:
    it loads the 224 one, on purpose, so its warning saying so is not shown."""
    weights = shared_path("weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5")
    shared_path("weights/keras_home/models")
    recipe = get_preset("mobilenet_v2_035").replace(class_names=("a", "b"))
    assert recipe.image_size == 288
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from_cache = build_model(recipe, compile=False)
    assert not [w for w in caught if "will be loaded as the default" in str(w.message)]
    from_file = build_model(recipe.replace(weights=str(weights)), compile=False)
    cached, filed = find_backbone(from_cache).weights, find_backbone(from_file).weights
    assert len(cached) == len(filed) > 100
    for a, b in zip(cached, filed):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_efficientnet_lite0_from_local_keras_hub_preset(tmp_path):
    pytest.importorskip("keras_hub", reason="keras-hub not installed")
    preset = shared_path("weights/efficientnet_lite0_keras_hub")
    recipe = get_preset("efficientnet_lite0").replace(weights=str(preset), class_names=("a", "b"))
    model = build_model(recipe)
    assert model.layers[-1].units == 2
    assert not find_backbone(model).trainable  # the hub backbone
    size = recipe.image_size
    image = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
    out = model.predict(image, verbose=0)
    assert out.shape == (1, 2)
    model.save(tmp_path / "model.keras")
    reloaded = flowerkit.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.predict(image, verbose=0), out, atol=1e-5)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    recipe = get_preset("codelab").replace(weights=str(tmp_path / "nope.h5"), class_names=("a", "b"))
    with pytest.raises(FlowerkitError, match="Weights file not found"):
        build_model(recipe)


def test_missing_imagenet_weights_offline_say_what_to_do(monkeypatch):
    """alpha 0.75 at 96px is not in the shared cache: Keras tries to download,
    through a proxy on a closed loopback port, so it fails at once."""
    for variable in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    recipe = get_preset("codelab").replace(
        image_size=96, backbone_kwargs={"alpha": 0.75}, class_names=("a", "b"))
    with pytest.raises(FlowerkitError, match="Offline.*KERAS_HOME.*--weights PATH"):
        build_model(recipe)


def test_needs_two_classes():
    with pytest.raises(FlowerkitError, match="at least two classes"):
        build_model(get_preset("dense").replace(class_names=("only",)))


def test_unknown_backbone_fails_before_any_data_is_read(tmp_path):
    # The recipe is plain data; the model layer owns the backbone registry.
    recipe = get_preset("codelab").replace(backbone="vgg99", class_names=("a", "b"))
    with pytest.raises(FlowerkitError, match="Unknown backbone 'vgg99'. Available: none, mobilenet_v2"):
        build_model(recipe)
    with pytest.raises(FlowerkitError, match="Unknown backbone 'vgg99'"):
        flowerkit.train(recipe, source=str(tmp_path / "no such folder"))


def _two_device_jax_plan():
    from flowerkit.distribute.plan import JAX_DATA_PARALLEL, Plan

    return Plan("data_parallel", JAX_DATA_PARALLEL, 2, 1, 0, 8)  # no engine: nothing is placed


def test_compile_reads_the_plan_it_is_given_not_an_open_scope():
    recipe = get_preset("dense").replace(head_units=(4,), image_size=32)
    plan = _two_device_jax_plan()
    with plan.scope():  # an open scope no longer changes how a model compiles
        inside = build_model(recipe, num_classes=2)
    assert inside.loss.reduction == "sum_over_batch_size"
    sharded = build_model(recipe, num_classes=2, plan=plan)
    # A padded batch's loss: the mean over the rows that count.
    assert sharded.loss.reduction == "mean_with_sample_weight"


def test_one_compile_for_both_phases():
    from flowerkit.model.build import FINE_TUNE, compile_model

    recipe = get_preset("dense").replace(
        head_units=(4,), image_size=32, optimizer="sgd", label_smoothing=0.05
    )
    model = build_model(recipe, num_classes=2, steps_per_epoch=5)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.loss.get_config()["label_smoothing"] == 0.05
    fine_tuning = get_preset("mobilenet_v2_035_finetune")  # 8 epochs, 1 of warm-up
    compile_model(model, fine_tuning, steps_per_epoch=5, class_weights=[1.0, 3.0], phase=FINE_TUNE)
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.weight_decay == pytest.approx(fine_tuning.fine_tune_weight_decay)
    config = model.loss.get_config()
    assert config["label_smoothing"] == fine_tuning.fine_tune_label_smoothing
    assert config["class_weights"] == [1.0, 3.0]
    # Linear warm-up over one epoch (5 steps) to the peak, then cosine decay to 0 at step 40.
    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(fine_tuning.fine_tune_learning_rate)
    assert float(schedule(40)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_recipe_optimizer_compiles(name):
    recipe = get_preset("dense").replace(head_units=(4,), image_size=32, optimizer=name, learning_rate=0.01)
    optimizer = build_model(recipe, num_classes=2).optimizer
    assert type(optimizer).__name__.lower() == name and float(optimizer.learning_rate) == pytest.approx(0.01)
