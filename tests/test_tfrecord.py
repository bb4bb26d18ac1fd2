"""The codelab's TFRecords: written here in its exact format, read back."""

import importlib.util

import numpy as np
import pytest
from tests.helpers import COLOURS, write_image

from flowerkit import FlowerkitError
from flowerkit.data.sources import index_source

HAS_TF = importlib.util.find_spec("tensorflow") is not None
CODELAB_CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def write_codelab_tfrecords(folder, shards=2, per_shard=5):
    """As the codelab's `to_tfrecord`: image, class, label, size, one_hot_class."""
    import tensorflow as tf

    def feature(kind, values):
        lists = {"bytes_list": tf.train.BytesList, "int64_list": tf.train.Int64List,
                 "float_list": tf.train.FloatList}
        return tf.train.Feature(**{kind: lists[kind](value=values)})

    expected = []
    for shard in range(shards):
        path = folder / f"flowers{shard:02d}-{per_shard}.tfrec"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for i in range(per_shard):
                label = (shard * per_shard + i) % len(CODELAB_CLASSES)
                jpeg = write_image(folder / "tmp.jpg", list(COLOURS.values())[label % 3],
                                   size=(192, 192), seed=i).read_bytes()
                one_hot = np.eye(len(CODELAB_CLASSES))[label]
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image": feature("bytes_list", [jpeg]),
                    "class": feature("int64_list", [label]),
                    "label": feature("bytes_list", [CODELAB_CLASSES[label].encode()]),
                    "size": feature("int64_list", [192, 192]),
                    "one_hot_class": feature("float_list", one_hot.tolist()),
                }))
                writer.write(example.SerializeToString())
                expected.append(label)
    return expected


@pytest.mark.skipif(not HAS_TF, reason="TFRecords need TensorFlow (absent in this env by design)")
def test_reads_codelab_tfrecords(tmp_path):
    expected = write_codelab_tfrecords(tmp_path)
    index = index_source(str(tmp_path / "*.tfrec"))
    assert index.class_names == tuple(CODELAB_CLASSES)
    assert index.labels.tolist() == expected
    assert len(index.images) == 10 and index.in_memory and index.images[0][:2] == b"\xff\xd8"


@pytest.mark.skipif(not HAS_TF, reason="TFRecords need TensorFlow (absent in this env by design)")
def test_tfrecord_images_are_read_from_their_shards_not_held(tmp_path):
    import tensorflow as tf

    from flowerkit.data.sources import RecordImages

    write_codelab_tfrecords(tmp_path)
    written = [tf.train.Example.FromString(record.numpy()).features.feature["image"].bytes_list.value[0]
               for shard in sorted(tmp_path.glob("*.tfrec")) for record in tf.data.TFRecordDataset(str(shard))]
    index = index_source(str(tmp_path / "*.tfrec"))
    assert isinstance(index.images, RecordImages) and list(index.images) == written
    picked = index.subset([7, 2])
    assert isinstance(picked.images, RecordImages) and list(picked.images) == [written[7], written[2]]
    shard = tmp_path / "flowers01-5.tfrec"  # record 7 is the third of the second shard
    data = shard.read_bytes()
    start = data.find(written[7])
    shard.write_bytes(data[:start] + bytes(len(written[7])) + data[start + len(written[7]):])
    assert picked.images[0] == bytes(len(written[7])) and picked.images[1] == written[2]


@pytest.mark.skipif(not HAS_TF, reason="TFRecords need TensorFlow (absent in this env by design)")
def test_tfrecord_pipeline_and_damage(tmp_path):
    from flowerkit.data.pipelines import iterate_batches, make_dataset

    write_codelab_tfrecords(tmp_path)
    data = (tmp_path / "flowers01-5.tfrec").read_bytes()
    (tmp_path / "flowers01-5.tfrec").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="truncated"):
        index = index_source(str(tmp_path / "*.tfrec"))
    assert 5 <= len(index) < 10
    for pipeline in ("tf", "python"):
        images, labels = next(iter(iterate_batches(make_dataset(index, 64, 4, pipeline=pipeline))))
        assert images.shape == (4, 64, 64, 3) and labels.shape == (4, 5)


@pytest.mark.skipif(not HAS_TF, reason="TFRecords need TensorFlow (absent in this env by design)")
def test_no_matching_tfrecords_is_an_error(tmp_path):
    with pytest.raises(FlowerkitError, match="No TFRecord files match"):
        index_source(str(tmp_path / "*.tfrec"))


@pytest.mark.skipif(HAS_TF, reason="checks the error raised where TensorFlow is absent")
def test_tfrecords_without_tensorflow_name_the_package(tmp_path):
    with pytest.raises(FlowerkitError, match="needs TensorFlow.*pip install tensorflow"):
        index_source(str(tmp_path / "*.tfrec"))


@pytest.mark.skipif(not HAS_TF, reason="TFRecords need TensorFlow (absent in this env by design)")
def test_tfrecord_images_stream_in_each_epochs_order_as_the_pillow_pipeline(tmp_path):
    """Encoded images come from Python one by one (no graph constant of
    them all, which stops at 2 GB), in the same order per epoch as Pillow's."""
    from flowerkit.data.pipelines import make_dataset

    write_codelab_tfrecords(tmp_path, shards=3, per_shard=6)
    index = index_source(str(tmp_path / "*.tfrec"))
    tf_data = make_dataset(index, 32, 6, shuffle=True, seed=3, pipeline="tf")
    pillow = make_dataset(index, 32, 6, shuffle=True, seed=3, pipeline="python")
    for epoch in range(2):
        tf_labels = np.concatenate([labels for _, labels in tf_data.as_numpy_iterator()])
        pillow_labels = np.concatenate([pillow[epoch * len(pillow) + b][1] for b in range(len(pillow))])
        np.testing.assert_array_equal(tf_labels, pillow_labels)
    first = np.concatenate([images for images, _ in make_dataset(index, 32, 6, pipeline="tf").as_numpy_iterator()])
    pillow_first = make_dataset(index, 32, 6, pipeline="python")[0][0][:3]
    assert np.abs(first[:3] - pillow_first).mean() < 2  # the same images (decoders round apart)
