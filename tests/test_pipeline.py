"""Decode/resize/batch pipelines: shapes, labels, crop policy, shuffling."""

from pathlib import Path

import numpy as np
import pytest
from tests.helpers import write_image

from flowerkit.data.decode import decode_image
from flowerkit.data.pipelines import ImageBatches, build_dataset, epoch_order, iterate_batches, make_dataset
from flowerkit.data.sources import index_folder
from flowerkit.errors import FlowerkitWarning


def _has_tensorflow():
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


PIPELINES = ["python", pytest.param("tf", marks=pytest.mark.skipif(
    not _has_tensorflow(), reason="tf.data pipeline needs TensorFlow (absent in this env by design)"))]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_batches_have_images_and_one_hot_labels(image_folder, pipeline):
    index = index_folder(image_folder)
    batches = list(iterate_batches(make_dataset(index, 32, batch_size=8, pipeline=pipeline)))
    assert [len(x) for x, _ in batches] == [8, 8, 8, 6]
    images = np.concatenate([x for x, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    assert images.shape == (30, 32, 32, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255
    np.testing.assert_array_equal(labels.argmax(1), index.labels)
    assert labels.shape == (30, 3) and set(labels.sum(1)) == {1.0}
    # Class colours survive decoding: red images are mostly red.
    red = images[index.labels == 2].mean(axis=(0, 1, 2))
    assert red[0] > 150 and red[2] < 100


def test_crop_to_fill_keeps_the_centre(tmp_path):
    from PIL import Image

    # 90x30: left third blue, centre third green, right third red.
    pixels = np.zeros((30, 90, 3), dtype=np.uint8)
    pixels[:, :30, 2] = pixels[:, 30:60, 1] = pixels[:, 60:, 0] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = decode_image(str(tmp_path / "wide.png"), 16)
    assert image.shape == (16, 16, 3)
    np.testing.assert_allclose(image.mean(axis=(0, 1)), [0, 255, 0], atol=6)


@pytest.mark.skipif(not _has_tensorflow(), reason="compares against tf.data; TensorFlow absent")
def test_tf_and_python_pipelines_agree(image_folder):
    write_image(image_folder / "red" / "big.jpg", (200, 40, 40), size=(300, 200))
    index = index_folder(image_folder)
    tf_images = np.concatenate([x for x, _ in iterate_batches(make_dataset(index, 40, 64, pipeline="tf"))])
    py_images = np.concatenate([x for x, _ in iterate_batches(make_dataset(index, 40, 64, pipeline="python"))])
    # Different JPEG decoders and resize kernels: close, not bit-identical.
    assert np.abs(tf_images - py_images).mean() < 6


def test_python_pipeline_reshuffles_each_epoch(image_folder):
    index = index_folder(image_folder)
    data = ImageBatches(index, 16, batch_size=30, shuffle=True, seed=1)
    assert len(data) == 1 and data.num_batches is None  # endless: fit reads epoch after epoch
    first = data[0][1].argmax(1)
    second = data[1][1].argmax(1)
    assert sorted(first) == sorted(second) and list(first) != list(second)
    np.testing.assert_array_equal(first, index.labels[epoch_order(len(index), 1, 0)])
    again = ImageBatches(index, 16, batch_size=30, shuffle=True, seed=1)
    np.testing.assert_array_equal(again[1][1].argmax(1), second)  # whatever came before
    again.first_epoch = 1  # fit starting at epoch 1 (a later phase, a resumed run)
    np.testing.assert_array_equal(again[0][1].argmax(1), second)


def _concrete(tensor) -> bool:
    import keras

    backend = keras.backend.backend()
    if isinstance(tensor, keras.KerasTensor):
        return False
    if backend == "jax":
        import jax

        return not isinstance(tensor, jax.core.Tracer)
    if backend == "torch":
        return tensor.device.type != "meta"
    import tensorflow as tf

    return tf.executing_eagerly()


def test_fit_reads_each_epoch_in_its_own_order(image_folder):
    """Through Keras's real fit loop: it reads one batch to build the model
    and restarts, Keras's own workers would then carry prefetched batches
    into the next epoch; every epoch must be exactly its own order, the
    first one included, also when fit starts at a later epoch."""
    import keras

    from flowerkit.training.phases import _fit

    index = index_folder(image_folder)  # 30 images
    data = ImageBatches(index, 4, batch_size=8, shuffle=True, seed=5, workers=3)
    seen = []

    class Record(keras.layers.Layer):
        def call(self, images):
            if _concrete(images):  # a batch fit trains on, not a shape being traced
                seen.append(keras.ops.convert_to_numpy(images)[:, 0, 0, 0])
            return images

    # Image i of the index is uniformly filled with the value i.
    data.load = lambda positions, epoch=0: (
        np.repeat(np.asarray(positions, "float32"), 4 * 4 * 3).reshape(-1, 4, 4, 3),
        np.eye(3, dtype="float32")[index.labels[positions]],
    )
    model = keras.Sequential([keras.Input((4, 4, 3)), Record(), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", run_eagerly=True)
    for first_epoch, epochs in ((0, 3), (4, 6)):
        seen.clear()
        _fit(model, data, None, epochs, first_epoch, [], 0, plan=None)
        per_epoch = np.concatenate(seen).astype(int).reshape(epochs - first_epoch, len(index))
        for epoch, order in zip(range(first_epoch, epochs), per_epoch):
            np.testing.assert_array_equal(order, epoch_order(len(index), 5, epoch))


def test_file_broken_after_indexing_is_dropped_not_fatal(image_folder):
    index = index_folder(image_folder)
    with open(index.images[0], "wb") as broken:
        broken.write(b"garbage")
    # One loader thread: decoding threads still running would end their
    # warnings.catch_warnings (process-global) inside pytest.warns below.
    data = ImageBatches(index, 16, batch_size=4, workers=1)
    images, labels = data[0]
    assert len(images) == len(labels) == 3
    assert data.failed == {0}
    # A batch whose only image failed is a zero-weight placeholder for fit;
    # readers of the dataset never see it.
    single = ImageBatches(index, 16, batch_size=1, workers=1)
    blank, _, weights = single[0]
    assert weights.tolist() == [0.0] and not blank.any()
    with pytest.warns(FlowerkitWarning, match="went bad after indexing"):
        assert sum(len(x) for x, _ in iterate_batches(single)) == len(index) - 1


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_file_broken_after_indexing_is_named_in_one_warning_per_pass(image_folder, pipeline):
    import warnings

    index = index_folder(image_folder)
    broken_path = index.images[5]
    with open(broken_path, "wb") as broken:
        broken.write(b"garbage")
    data, state = build_dataset(index, 16, 4, shuffle=True, seed=0, pipeline=pipeline)
    for _ in range(2):  # each pass (epoch) reports what it lost
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read = sum(len(x) for x, _ in iterate_batches(data, state))
        assert read == len(index) - 1
        messages = [str(w.message) for w in caught if issubclass(w.category, FlowerkitWarning)]
        assert len(messages) == 1, messages
        assert "went bad after indexing" in messages[0] and Path(broken_path).name in messages[0]
        assert "Skipped 1 of" in messages[0]


@pytest.mark.skipif(not _has_tensorflow(), reason="compares against tf.data; TensorFlow absent")
def test_both_pipelines_shuffle_into_the_same_order_every_epoch(image_folder):
    index = index_folder(image_folder)
    tf_data = make_dataset(index, 16, 64, shuffle=True, seed=3, pipeline="tf")
    python_data = make_dataset(index, 16, 64, shuffle=True, seed=3, pipeline="python")
    assert len(python_data) == 1
    for epoch in range(2):  # each tf.data iteration is the next epoch
        tf_labels = np.concatenate([y for _, y in iterate_batches(tf_data)]).argmax(1)
        python_labels = python_data[epoch][1].argmax(1)
        np.testing.assert_array_equal(tf_labels, python_labels)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_fit_reports_a_file_broken_after_indexing(image_folder, pipeline):
    import keras

    from flowerkit.data.pipelines import BadImagesReport

    index = index_folder(image_folder)
    broken_path = index.images[2]
    Path(broken_path).write_bytes(b"garbage")
    data, state = build_dataset(index, 16, 8, shuffle=True, seed=0, pipeline=pipeline)
    model = keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(index.class_names), activation="softmax"),
    ])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.warns(FlowerkitWarning, match=f"went bad after indexing.*{Path(broken_path).name}"):
        model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[BadImagesReport(state)],
                  steps_per_epoch=len(data) if pipeline == "python" else None)  # python: endless


@pytest.mark.skipif(not _has_tensorflow(), reason="tf.data pipeline needs TensorFlow (absent in this env by design)")
def test_tf_pipeline_state_travels_beside_the_dataset_through_a_map(image_folder):
    import tensorflow as tf

    index = index_folder(image_folder)
    broken_path = index.images[4]
    Path(broken_path).write_bytes(b"garbage")
    plain = make_dataset(index, 16, 8, pipeline="tf")
    assert isinstance(plain, tf.data.Dataset) and not hasattr(plain, "report_bad_images")
    dataset, state = build_dataset(index, 16, 8, shuffle=True, seed=0, pipeline="tf")
    mapped = dataset.map(lambda images, labels: (images / 255, labels))  # would drop any attribute
    with pytest.warns(FlowerkitWarning, match=f"went bad after indexing.*{Path(broken_path).name}"):
        images = np.concatenate([x for x, _ in iterate_batches(mapped, state)])
    assert len(images) == len(index) - 1 and images.max() <= 1


@pytest.mark.skipif(not _has_tensorflow(), reason="tf.data pipeline needs TensorFlow (absent in this env by design)")
def test_epoch_callbacks_pin_a_shuffled_tf_pipeline_to_each_epochs_order(image_folder):
    from flowerkit.distribute.plan import MIRRORED, Plan
    from flowerkit.distribute.sharding import epoch_callbacks

    index = index_folder(image_folder)
    dataset, state = build_dataset(index, 16, 64, shuffle=True, seed=3, pipeline="tf")
    plan = Plan("data_parallel", MIRRORED, 2, 1, 0, 64)
    assert epoch_callbacks(state, None) == []  # one device: each iteration is the next epoch
    assert epoch_callbacks(build_dataset(index, 16, 64, pipeline="tf")[1], plan) == []  # not shuffled
    (pin,) = epoch_callbacks(state, plan)
    for epoch in (0, 1):
        pin.on_epoch_begin(epoch)
        expected = index.labels[epoch_order(len(index), 3, epoch)]
        for _ in range(2):  # tf.distribute's extra iteration takes the same epoch's order
            labels = np.concatenate([y for _, y in iterate_batches(dataset, state)]).argmax(1)
            np.testing.assert_array_equal(labels, expected)
