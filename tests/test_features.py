"""The frozen-feature cache: hits, misses, invalidation, and results that
match training without it."""

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

import flowerkit
from flowerkit import FlowerkitError, load_data
from flowerkit.training import features
from flowerkit.model import build_model, split_at_features
from tests.helpers import shared_path

WEIGHTS = "weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5"


def _recipe(**changes):
    # Real weights: a random MobileNetV2 in inference mode emits ~1e-11 features.
    base = dict(image_size=32, backbone_kwargs={"alpha": 0.35}, weights=str(shared_path(WEIGHTS)),
                head="gap", batch_size=8, epochs=2, augmentation=("flip",))
    return flowerkit.get_preset("mobilenet_v2_035").replace(**{**base, **changes})


def _features(recipe, folder, views=2, pipeline="python"):
    recipe = recipe.replace(class_names=("blue", "green", "red"))
    extractor, _ = split_at_features(build_model(recipe, compile=False))
    subset = load_data(recipe, str(folder)).train
    return features.cached_features(extractor, recipe, subset, views, pipeline, verbose=0)


def test_cache_miss_then_hit_with_flipped_view(image_folder):
    first = _features(_recipe(), image_folder)
    assert first.computed and first.features.shape == (2, 24, 1280)
    assert first.classes.shape == (24,) and first.one_hot([0, 1]).shape == (2, 3)
    assert isinstance(first.features, np.memmap)  # read in batches, never whole
    # The second view is the horizontal flip: different features, same labels.
    assert not np.allclose(first.features[0], first.features[1])
    again = _features(_recipe(), image_folder)
    assert not again.computed and again.folder == first.folder
    np.testing.assert_array_equal(again.features, first.features)


@pytest.mark.parametrize(
    "change",
    ["image_size", "alpha", "weights", "precision", "pipeline", "image_mtime", "image_added"],
)
def test_every_key_change_recomputes(image_folder, tmp_path, change):
    recipe, views, pipeline = _recipe(), 2, "python"
    if change == "alpha":  # the weights file is for alpha 0.35 only
        recipe = recipe.replace(weights=None)
    first = _features(recipe, image_folder, views, pipeline)
    if change == "image_size":
        recipe = recipe.replace(image_size=48)
    elif change == "alpha":
        recipe = recipe.replace(backbone_kwargs={"alpha": 0.5})
    elif change == "weights":
        copy = tmp_path / "w.weights.h5"  # same weights, another file: the content counts
        copy.write_bytes(Path(recipe.weights).read_bytes() + b"\0")
        recipe = recipe.replace(weights=str(copy))
    elif change == "precision":
        recipe = recipe.replace(precision="mixed_bfloat16")
    elif change == "pipeline":
        pipeline = "tf"
    elif change == "image_mtime":
        for path in (image_folder / "red").iterdir():
            os.utime(path, ns=(0, 0))
    elif change == "image_added":
        (image_folder / "red" / "extra.jpg").write_bytes((image_folder / "red" / "red_000.jpg").read_bytes())
    if pipeline == "tf":
        pytest.importorskip("tensorflow", reason="the tf.data pipeline needs TensorFlow (absent by design)")
    second = _features(recipe, image_folder, views, pipeline)
    assert second.computed and second.folder != first.folder


def test_a_subset_of_cached_images_is_gathered_not_computed(image_folder, monkeypatch):
    """Inspect's whole folder after train's split: view 0 of the train and
    validation caches, in the folder's order, equal to computing it."""
    recipe = _recipe().replace(class_names=("blue", "green", "red"))
    extractor, _ = split_at_features(build_model(recipe, compile=False))
    data = load_data(recipe, str(image_folder), subsets=("train", "validation", "all"))
    features.cached_features(extractor, recipe, data.train, 2, "python", verbose=0)
    features.cached_features(extractor, recipe, data.validation, 1, "python", verbose=0)
    gathered = features.cached_features(extractor, recipe, data["all"], 1, "python", verbose=0)
    assert not gathered.computed and gathered.features.shape == (1, 30, 1280)
    np.testing.assert_array_equal(gathered.classes, data["all"].index.labels)
    monkeypatch.setattr(features, "_from_other_caches", lambda *args: None)
    computed = features.cached_features(extractor, recipe, data["all"], 1, "python", verbose=0)
    assert computed.computed
    np.testing.assert_allclose(gathered.features, computed.features, rtol=1e-5, atol=1e-6)
    # Another backbone's caches of the same images are not gathered.
    other = recipe.replace(weights=None)
    extractor, _ = split_at_features(build_model(other, compile=False))
    assert features.cached_features(extractor, other, data["all"], 1, "python", verbose=0).computed


def test_images_missing_from_the_caches_are_computed_alone_then_gathered(image_folder, monkeypatch):
    """Train's caches lack a few images (e.g. the label conflicts it leaves
    out): only those are computed, and the gathered whole equals computing it."""
    recipe = _recipe().replace(class_names=("blue", "green", "red"))
    extractor, _ = split_at_features(build_model(recipe, compile=False))
    data = load_data(recipe, str(image_folder), subsets=("train", "all"))
    features.cached_features(extractor, recipe, data.train, 1, "python", verbose=0)
    sizes, compute = [], features._compute_into
    monkeypatch.setattr(features, "_compute_into", lambda folder, extractor, recipe, subset, *rest: (
        sizes.append(len(subset)), compute(folder, extractor, recipe, subset, *rest))[1])
    gathered = features.cached_features(extractor, recipe, data["all"], 1, "python", verbose=0)
    assert sizes == [len(data["all"]) - len(data.train)] and gathered.computed
    monkeypatch.setattr(features, "_from_other_caches", lambda *args: None)
    whole = features.cached_features(extractor, recipe, data["all"], 1, "python", verbose=0)
    assert sizes[-1] == len(data["all"])
    np.testing.assert_allclose(gathered.features, whole.features, rtol=1e-5, atol=1e-6)


def test_inspect_after_train_reads_its_features_and_quiet_is_one_line_per_stage(
        image_folder, tmp_path, capsys):
    from tests.helpers import run_main

    weights = str(shared_path(WEIGHTS))
    status, _, err = run_main(
        capsys, "train", "--preset", "mobilenet_v2_035", "--data", image_folder, "--output",
        tmp_path / "run", "--image-size", 32, "--batch-size", 8, "--epochs", 1, "--weights", weights,
        "--augmentation", "flip", "--quiet")
    assert status == 0
    assert [line.split(":")[0] for line in err.splitlines() if " images in " in line] == [
        "Indexing images", "Hashing images", "Caching mobilenet_v2 features (images and flips)",
        "Caching mobilenet_v2 features"]
    status, _, err = run_main(capsys, "inspect", image_folder, "--preset", tmp_path / "run",
                              "--output", tmp_path / "inspection", "--folds", 2, "--quiet")
    assert status == 0 and "Caching" not in err and "\r" not in err  # no bar
    assert [line.split(":")[0] for line in err.splitlines() if " images in " in line] == [
        "Indexing images", "Hashing images", "Searching feature neighbours",
        f"Inspecting {image_folder} (hashes, duplicates, mobilenet_v2_035 features, 2-fold label check)"]
    assert [line for line in err.splitlines() if line.startswith("Checking labels: 2 folds in ")]
    report = json.loads((tmp_path / "inspection" / "inspection.json").read_text())
    assert report["timings"]["feature_cache"] == "hit"
    status, _, err = run_main(capsys, "inspect", image_folder, "--preset", tmp_path / "run", "--image-size", 48,
                              "--output", tmp_path / "smaller", "--folds", 2, "--quiet")
    assert status == 0, err
    assert "Caching mobilenet_v2 features" in err  # another size: its own features
    report = json.loads((tmp_path / "smaller" / "inspection.json").read_text())
    assert report["image_size"] == 48 and report["timings"]["feature_cache"] == "computed"


def test_feature_cache_on_with_random_augmentation_is_an_error():
    with pytest.raises(FlowerkitError, match="feature_cache 'on' needs a frozen backbone"):
        _recipe(feature_cache="on", augmentation=("flip", "zoom:0.1"))
    with pytest.raises(FlowerkitError, match="feature_cache 'on'"):
        _recipe(feature_cache="on", trainable_backbone=True)
    assert not _recipe(augmentation=("zoom:0.1",)).caches_features  # "auto" falls back
    assert _recipe(augmentation=("flip",)).caches_features


def test_the_saved_model_carries_the_head_trained_on_features(image_folder, tmp_path, capsys, eager_steps):
    result = flowerkit.train(_recipe(), source=str(image_folder), output_dir=tmp_path, verbose=2)
    # verbose=2 (--quiet): one labelled line per feature pass, not a bare bar.
    err = capsys.readouterr().err
    assert f"Caching mobilenet_v2 features (images and flips): {result.metrics['train_images']} images in " in err
    assert f"Caching mobilenet_v2 features: {result.metrics['validation_images']} images in " in err
    head = result.metrics["phases"][0]
    assert head["feature_cache"] == "computed" and head["feature_views"] == 2
    # The phase's time after each epoch, the feature pass included (bench.report's yardstick).
    ends = head["epoch_end_seconds"]
    assert len(ends) == 2 and head["feature_seconds"] < ends[0] < ends[1] <= head["seconds"]
    trained = keras.ops.convert_to_numpy(result.model.get_layer("predictions").kernel)
    initial = keras.ops.convert_to_numpy(build_model(result.recipe).get_layer("predictions").kernel)
    assert not np.allclose(trained, initial)
    saved = flowerkit.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(saved.get_layer("predictions").kernel), trained)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(saved.predict(images, verbose=0), result.model.predict(images, verbose=0), atol=1e-6)
    again = flowerkit.train(_recipe(), source=str(image_folder), output_dir=tmp_path / "again", verbose=0)
    assert again.metrics["phases"][0]["feature_cache"] == "hit"


def test_cached_and_uncached_runs_train_on_the_same_batches(image_folder, eager_steps):
    """Same seed and data: the cache changes speed, not results. (On real
    photos, 1500 of them: bench/test_accuracy.py's feature-cache check.)"""
    # Without augmentation or dropout, and with the feature batches served
    # like the image batches (same order per epoch, same Keras prefetching),
    # both runs train on the same batches: what remains is float rounding.
    recipe = _recipe(augmentation=(), dropout=0.0, epochs=3)
    cached = flowerkit.train(recipe, source=str(image_folder), verbose=0)
    uncached = flowerkit.train(recipe.replace(feature_cache="off"), source=str(image_folder), verbose=0)
    assert cached.metrics["phases"][0]["feature_cache"] in ("computed", "hit")
    assert uncached.metrics["phases"][0]["feature_cache"] == "off"
    for name in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(cached.history[name], uncached.history[name], rtol=1e-3, err_msg=name)
    assert cached.history["loss"][-1] < cached.history["loss"][0]  # the head learned


def test_feature_batches_are_one_view_per_image_in_each_epochs_image_order():
    """The head sees the image pipeline's order for each epoch (so cached and
    uncached runs see the same batches), each image as one of its views,
    whatever was read before."""
    from flowerkit.data.pipelines import epoch_order
    from flowerkit.training.features import CachedFeatures, FeatureBatches

    count = 40
    features = np.zeros((2, count, 2), "float32")
    features[:, :, 0] = np.arange(count)  # feature 0: the image; feature 1: the view
    features[1, :, 1] = 1
    cached = CachedFeatures(features=features, classes=np.arange(count) % 5, class_count=5,
                            folder=Path("."), computed=True)
    batches = FeatureBatches(cached, batch_size=8, shuffle=True, seed=2)
    assert len(batches) == 5 and batches.num_batches is None
    epochs = [np.concatenate([batches[epoch * 5 + b][0] for b in range(5)]) for epoch in (2, 0, 1)]
    for epoch, rows in zip((2, 0, 1), epochs):
        np.testing.assert_array_equal(rows[:, 0], epoch_order(count, 2, epoch))
        np.testing.assert_array_equal(rows[:, 1], batches.views(epoch)[rows[:, 0].astype(int)])
    assert 0 < epochs[1][:, 1].sum() < count  # both views occur
    assert not np.array_equal(epochs[1][:, 1], epochs[2][:, 1])  # a new draw each epoch
    validation = FeatureBatches(cached, batch_size=8, shuffle=False, seed=2)
    assert validation.num_batches == 5 and not validation[4][0][:, 1].any()  # originals, in order
    with pytest.raises(IndexError):
        validation[5]


def test_a_cache_too_large_is_refused_before_the_feature_pass(image_folder, monkeypatch):
    """A flatten head caches whole feature maps (at 1M images, hundreds of
    GB): one line naming the pooled head instead, and nothing computed."""
    monkeypatch.setattr(features, "MAX_CACHE_BYTES", 24 * 2 * 1280 * 4 - 1)  # under the gap cache
    computed = []
    monkeypatch.setattr(features, "_compute_into", lambda *args: computed.append(args))
    with pytest.raises(FlowerkitError, match=r"over the .* available .*; use --feature-cache off\.$"):
        _features(_recipe(), image_folder)
    with pytest.raises(FlowerkitError, match=r"x 2 view\(s\) of \(1, 1, 1280\) features .* use --head gap "
                                             r"\(pooled features, 0 MiB\) or --feature-cache off"):
        _features(_recipe(head="flatten"), image_folder)
    assert not computed


def test_a_cache_cut_short_keeps_its_first_rows_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "COPY_ROWS", 3)
    values = np.arange(2 * 10 * 4, dtype="float32").reshape(2, 10, 4)
    np.save(tmp_path / "features.npy", values)
    np.save(tmp_path / "labels.npy", np.arange(10, dtype="int32"))
    features._keep_first_rows(tmp_path / "features.npy", 7)
    features._keep_first_rows(tmp_path / "labels.npy", 7)
    np.testing.assert_array_equal(np.load(tmp_path / "features.npy"), values[:, :7])
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), np.arange(7))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npy", "labels.npy"]
