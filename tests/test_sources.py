"""Data sources and the split: folders, tf_flowers, bad inputs."""

import os
import numpy as np
import pytest
from tests.helpers import CLASSES, COLOURS, write_image

from flowerkit import FlowerkitError, FlowerkitWarning
from flowerkit.data.sources import ImageIndex, index_folder, index_source, sample_index, split_index

pytestmark = pytest.mark.backend_independent  # run once, not per backend (tox.ini)


def test_folder_classes_sorted_and_labels_match(image_folder):
    index = index_folder(image_folder)
    assert index.class_names == CLASSES
    assert len(index) == 30
    for path, label in zip(index.images, index.labels):
        assert f"/{CLASSES[label]}/" in path


def test_class_names_can_fix_order(image_folder):
    index = index_folder(image_folder, class_names=("red", "blue"))
    assert index.class_names == ("red", "blue")
    assert len(index) == 20


def _corrupt(folder):
    daisy = folder / "red"
    (daisy / "empty.jpg").write_bytes(b"")
    (daisy / "text.jpg").write_text("not an image")
    good = (folder / "red" / "red_000.jpg").read_bytes()
    (daisy / "truncated.jpg").write_bytes(good[: len(good) // 2])
    write_image(daisy / "webp_in_disguise.jpg", COLOURS["red"], format="WEBP")
    (daisy / "notes.txt").write_text("read by content: not an image, counted")


def test_unreadable_files_are_skipped_with_one_counting_warning(image_folder):
    _corrupt(image_folder)
    with pytest.warns(FlowerkitWarning, match=r"Skipped 5 of 35 item\(s\) in ") as caught:
        index = index_folder(image_folder)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "1 empty file (red/empty.jpg)" in message
    assert "2 not an image (red/notes.txt, red/text.jpg)" in message
    assert "1 truncated or corrupt (red/truncated.jpg)" in message
    assert "1 unsupported format (red/webp_in_disguise.jpg)" in message
    assert len(index) == 30
    assert not any("empty" in p or "truncated" in p for p in index.images)


def test_only_names_that_are_hidden_are_left_out_of_a_folder(image_folder):
    # A folder's names are checked together first: a look-alike must still be read.
    (image_folder / "red" / "Desktop.ini").write_text("[.ShellClassInfo]")
    (image_folder / "red" / "my thumbs.db").write_text("not an image")
    (image_folder / "blue" / "a.jpg.").write_text("not an image")
    with pytest.warns(FlowerkitWarning, match=r"Skipped 2 of 32 item\(s\) in ") as caught:
        index = index_folder(image_folder)
    assert "2 not an image (blue/a.jpg., red/my thumbs.db)" in str(caught[0].message)
    assert len(index) == 30


def test_other_formats_and_modes_are_kept(image_folder):
    from PIL import Image

    write_image(image_folder / "red" / "x.png", COLOURS["red"])
    Image.new("L", (30, 20), 128).save(image_folder / "red" / "grey.jpg")
    Image.new("RGBA", (30, 20), (255, 0, 0, 128)).save(image_folder / "red" / "alpha.png")
    assert len(index_folder(image_folder)) == 33


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "Data folder not found"),
        (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "not a folder"),
        (lambda p: (p / "only" / "one").mkdir(parents=True) or p / "only", "need at least two"),
        (lambda p: [(p / "e" / c).mkdir(parents=True) for c in "ab"] and p / "e", "No readable images"),
    ],
    ids=["missing", "file", "one-class", "empty-classes"],
)
@pytest.mark.filterwarnings("ignore::flowerkit.errors.FlowerkitWarning")  # empty classes, named
def test_bad_folders_are_clear_errors_naming_the_path(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(FlowerkitError, match=message) as error:
        index_folder(path)
    assert str(path) in str(error.value)


def test_missing_class_folder_named(image_folder):
    with pytest.raises(FlowerkitError, match=r"\['tulips'\] not found"):
        index_folder(image_folder, class_names=("red", "tulips"))


def test_split_is_deterministic_stratified_and_disjoint(image_folder):
    index = index_folder(image_folder)
    train, validation = split_index(index, 0.2, seed=3)
    again_train, again_validation = split_index(index_folder(image_folder), 0.2, seed=3)
    assert validation.images == again_validation.images and train.images == again_train.images
    assert set(train.images).isdisjoint(validation.images)
    assert len(train) + len(validation) == len(index)
    assert validation.class_counts() == {name: 2 for name in CLASSES}
    _, other = split_index(index, 0.2, seed=4)
    assert other.images != validation.images


def test_split_holds_out_what_a_scan_per_class_held_out():
    # The split before it sorted once: each class's members by a scan, permuted in class order.
    labels = np.random.default_rng(0).integers(0, 40, 500).astype(np.int32)
    index = ImageIndex(tuple(f"c{c}" for c in range(40)), labels, tuple(f"{i}.jpg" for i in range(500)))
    rng, expected = np.random.default_rng(7), []
    for label in range(40):
        members = rng.permutation(np.flatnonzero(labels == label))
        expected += members[: int(round(len(members) * 0.3))].tolist()
    train, validation = split_index(index, 0.3, seed=7)
    assert validation.images == tuple(f"{i}.jpg" for i in sorted(expected))
    assert len(train) + len(validation) == 500 and set(train.images).isdisjoint(validation.images)


def test_split_too_small_is_an_error(tmp_path):
    for name in ("a", "b"):
        write_image(tmp_path / name / "one.jpg", (0, 0, 0))
    with pytest.raises(FlowerkitError, match="cannot be split"):
        split_index(index_folder(tmp_path), 0.1, seed=0)


def test_sample_is_seeded(image_folder):
    index = index_folder(image_folder)
    assert sample_index(index, 7, 1).images == sample_index(index, 7, 1).images
    assert len(sample_index(index, 7, 1)) == 7
    assert sample_index(index, 100, 1) is index


def test_tf_flowers_download_failure_says_how_to_work_offline(monkeypatch):
    import flowerkit.data.sources as sources

    # Port 9 on loopback refuses at once: a download that cannot happen.
    monkeypatch.setattr(sources, "TF_FLOWERS_URL", "http://127.0.0.1:9/flower_photos.tgz")
    with pytest.raises(FlowerkitError, match="--data DIR") as error:
        index_source("tf_flowers")
    assert "KERAS_HOME" in str(error.value)


def test_tf_flowers_uses_the_keras_cache_without_downloading(monkeypatch, tmp_path):
    """A cached archive with the pinned hash is used as is (no network), and
    extracted once."""
    import tarfile

    import flowerkit.data.sources as sources

    calls = []
    archive = tmp_path / "flower_photos.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("daisy", "roses"):
            for stem in ("a", "b"):
                image = write_image(tmp_path / "src" / name / f"{stem}.jpg", (1, 2, 3))
                tar.add(image, arcname=f"flower_photos/{name}/{stem}.jpg")

    def fake_get_file(fname, origin, file_hash, hash_algorithm, extract, cache_dir):
        calls.append((fname, file_hash, hash_algorithm, extract, cache_dir))
        return str(archive)

    import keras

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    index = index_source(None)
    assert index.class_names == ("daisy", "roses")
    assert index.images[0].startswith(str(tmp_path / "flower_photos_extracted" / "flower_photos"))
    keras_home = os.environ.get("KERAS_HOME")  # the Keras cache as it is when called
    assert calls == [("flower_photos.tgz", sources.TF_FLOWERS_SHA256, "sha256", False, keras_home)]
    marker = tmp_path / "flower_photos_extracted" / ".flowerkit-extracted"
    marker_time = marker.stat().st_mtime_ns
    assert index_source(None).images == index.images
    assert marker.stat().st_mtime_ns == marker_time  # not extracted again


def test_labels_are_int_array(image_folder):
    index = index_folder(image_folder)
    assert index.labels.dtype == np.int32
