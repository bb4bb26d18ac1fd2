"""Nothing lost, nothing crashes: every odd or broken input through indexing,
both pipelines (tf.data where TensorFlow is present, Pillow) and predict.

Each odd file is either read, to the same pixels everywhere, or skipped and
counted in one FlowerkitWarning (training) / a clear FlowerkitError (predict).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings

import numpy as np
import pytest
from tests.helpers import COLOURS, write_image

from flowerkit import FlowerkitError, FlowerkitWarning
from flowerkit.data.decode import decode_image
from flowerkit.data.pipelines import iterate_batches, make_dataset
from flowerkit.data.sources import index_folder
from flowerkit.inference import predict_images

HAS_TF = importlib.util.find_spec("tensorflow") is not None
PIPELINES = [
    "python",
    pytest.param("tf", marks=pytest.mark.skipif(not HAS_TF, reason="tf.data needs TensorFlow (absent in this env by design)")),
]
SIZE = 16


# --- files ---------------------------------------------------------------


def _solid(mode, colour, size=(24, 20)):
    from PIL import Image

    return Image.new(mode, size, colour)


def png_named_jpg(path):
    _solid("RGB", (10, 200, 30)).save(path.with_suffix(".jpg"), format="PNG")
    return path.with_suffix(".jpg"), (10, 200, 30)


def cmyk_jpeg(path):
    _solid("RGB", (200, 40, 40)).convert("CMYK").save(path.with_suffix(".jpg"), quality=95)
    return path.with_suffix(".jpg"), (200, 40, 40)


def grayscale_jpeg(path):
    _solid("L", 128).save(path.with_suffix(".jpg"), quality=95)
    return path.with_suffix(".jpg"), (128, 128, 128)


def one_bit_png(path):
    _solid("1", 1).save(path.with_suffix(".png"))
    return path.with_suffix(".png"), (255, 255, 255)


def rgba_png(path):
    # Fully transparent red: alpha is dropped, the colour under it kept.
    _solid("RGBA", (255, 0, 0, 0)).save(path.with_suffix(".png"))
    return path.with_suffix(".png"), (255, 0, 0)


def palette_png_transparent(path):
    from PIL import Image

    image = Image.new("P", (20, 20), 0)
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    image.paste(1, (0, 10, 20, 20))  # bottom half: index 1; top: transparent index 0
    image.save(path.with_suffix(".png"), transparency=0)
    return path.with_suffix(".png"), (105, 60, 40)


def gif_transparent(path):
    """TensorFlow's GIF decoder blacks out transparent pixels (unlike PNG's)."""
    from PIL import Image

    image = Image.new("P", (20, 20), 0)
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    image.paste(1, (0, 10, 20, 20))
    image.save(path.with_suffix(".gif"), transparency=0)
    return path.with_suffix(".gif"), (100, 50, 25)


def png_16_bit(path):
    from PIL import Image

    pixels = np.full((20, 24), 40000, dtype=np.uint16)
    image = Image.fromarray(pixels)
    assert image.mode == "I;16"
    image.save(path.with_suffix(".png"))
    return path.with_suffix(".png"), (40000 >> 8,) * 3  # 156, not white


def animated_gif(path):
    frames = [_solid("RGB", colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path.with_suffix(".gif"), save_all=True, append_images=frames[1:])
    return path.with_suffix(".gif"), (255, 0, 0)


def one_by_one(path):
    _solid("RGB", (90, 80, 70), size=(1, 1)).save(path.with_suffix(".png"))
    return path.with_suffix(".png"), (90, 80, 70)


def ten_thousand_by_one(path):
    _solid("RGB", (5, 100, 250), size=(10000, 1)).save(path.with_suffix(".png"))
    return path.with_suffix(".png"), (5, 100, 250)


def bmp_24_bit(path):
    _solid("RGB", (30, 60, 90)).save(path.with_suffix(".bmp"))
    return path.with_suffix(".bmp"), (30, 60, 90)


def unicode_and_spaces(path):
    target = path.with_name("fleur d'été 🌸 #1.jpg")
    _solid("RGB", (40, 180, 60)).save(target, quality=95)
    return target, (40, 180, 60)


def nested_subfolder(path):
    target = path.parent / "sub" / "deeper" / "nested.png"
    target.parent.mkdir(parents=True)
    _solid("RGB", (40, 60, 200)).save(target)
    return target, (40, 60, 200)


def exif_rotated(path):
    """Stored 40x20 landscape, left half red, right half blue; EXIF 6 says
    "rotate 90 degrees clockwise": upright it is portrait, red on top."""
    from PIL import Image

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path.with_suffix(".jpg"), exif=exif, quality=95)
    return path.with_suffix(".jpg"), (127.5, 0, 127.5)


READABLE = [
    png_named_jpg, cmyk_jpeg, grayscale_jpeg, one_bit_png, rgba_png, palette_png_transparent,
    gif_transparent, png_16_bit, animated_gif, one_by_one, ten_thousand_by_one, bmp_24_bit, unicode_and_spaces,
    nested_subfolder, exif_rotated,
]


def zero_byte(path):
    (target := path.with_suffix(".jpg")).write_bytes(b"")
    return target


def truncated_jpeg(path):
    data = write_image(path.with_suffix(".jpg"), COLOURS["red"], size=(200, 160)).read_bytes()
    path.with_suffix(".jpg").write_bytes(data[: len(data) // 2])
    return path.with_suffix(".jpg")


def random_bytes_jpg(path):
    (target := path.with_suffix(".jpg")).write_bytes(np.random.default_rng(0).bytes(5000))
    return target


def text_named_png(path):
    (target := path.with_suffix(".png")).write_text("hello, not a picture\n")
    return target


def webp(path):
    _solid("RGB", (200, 40, 40)).save(target := path.with_suffix(".webp"))
    return target


def tiff(path):
    _solid("RGB", (200, 40, 40)).save(target := path.with_suffix(".tiff"))
    return target


def palette_bmp(path):
    _solid("RGB", (200, 40, 40)).convert("P").save(target := path.with_suffix(".bmp"))
    return target


def decompression_bomb(path):
    # Over Image.MAX_IMAGE_PIXELS, which the test lowers to 2,500 pixels.
    _solid("RGB", (200, 40, 40), size=(60, 60)).save(target := path.with_suffix(".png"))
    return target


def huge_bomb(path):
    # Over twice the limit: Pillow's DecompressionBombError rather than its warning.
    _solid("RGB", (200, 40, 40), size=(100, 100)).save(target := path.with_suffix(".png"))
    return target


def broken_symlink(path):
    os.symlink(path.parent / "gone.jpg", target := path.with_suffix(".jpg"))
    return target


def symlink_loop(path):
    os.symlink(path.with_suffix(".jpg").name, target := path.with_suffix(".jpg"))
    return target


def named_pipe(path):
    # Opening a FIFO would block forever: it must never be opened.
    os.mkfifo(target := path.with_suffix(".jpg"))
    return target


# (maker, reason counted in the warning, what predict says)
SKIPPED = [
    (zero_byte, "empty file", "empty file (0 bytes)"),
    (truncated_jpeg, "truncated or corrupt", "truncated or corrupt image"),
    (random_bytes_jpg, "not an image", "not an image (JPEG, PNG, GIF and 24/32-bit BMP are read)"),
    (text_named_png, "not an image", "not an image (JPEG, PNG, GIF and 24/32-bit BMP are read)"),
    (webp, "unsupported format", "WEBP format is not supported (flowerkit reads JPEG, PNG, GIF and 24/32-bit BMP)"),
    (tiff, "unsupported format", "TIFF format is not supported (flowerkit reads JPEG, PNG, GIF and 24/32-bit BMP)"),
    (palette_bmp, "unsupported format", "palette or 1-bit BMP is not supported"),
    (decompression_bomb, "too large", "image too large to decode safely"),
    (huge_bomb, "too large", "image too large to decode safely"),
    (broken_symlink, "broken symlink", "Image not found"),
    (symlink_loop, "symlink loop", "Image not found"),
    (named_pipe, "not a regular file", "Image not found"),
]


# --- helpers -------------------------------------------------------------


def _folder_with(tmp_path, maker):
    """Class "red": two plain images and the odd one; class "blue": two plain."""
    root = tmp_path / "photos"
    for name in ("red", "blue"):
        for i in range(2):
            write_image(root / name / f"{name}_{i}.jpg", COLOURS[name], seed=i)
    made = maker(root / "red" / "odd")
    return root, made


def _images(index, pipeline):
    batches = list(iterate_batches(make_dataset(index, SIZE, 64, pipeline=pipeline)))
    return np.concatenate([images for images, _ in batches])


@functools.cache
def _mean_colour_model():
    """A "model" whose outputs are the mean R, G, B of its input: predict
    then reports the pixels it was given."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))


def _predicted_colour(path):
    [result] = predict_images(_mean_colour_model(), [path], ("r", "g", "b"), top_k=3)
    top = {row["class"]: row["probability"] for row in result["top"]}
    return np.array([top["r"], top["g"], top["b"]])


# --- readable: the same right pixels everywhere ----------------------------


@pytest.mark.parametrize("maker", READABLE, ids=lambda m: m.__name__)
def test_odd_but_readable_images_are_read_to_the_right_pixels(tmp_path, maker):
    root, (path, expected) = _folder_with(tmp_path, maker)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlowerkitWarning)
        index = index_folder(root)
    assert str(path) in index.images and len(index) == 5
    position = index.images.index(str(path))
    assert index.class_names[index.labels[position]] == "red"
    pillow = decode_image(str(path), SIZE)
    np.testing.assert_allclose(pillow.mean(axis=(0, 1)), expected, atol=6)
    np.testing.assert_allclose(_predicted_colour(path), pillow.mean(axis=(0, 1)), atol=1e-3)
    python = _images(index, "python")[position]
    np.testing.assert_array_equal(python, pillow)
    if HAS_TF:
        tf_image = _images(index, "tf")[position]
        assert np.abs(tf_image - pillow).mean() < 6, maker.__name__


def test_sixteen_bit_png_is_scaled_not_white(tmp_path):
    """Bug 1: Pillow's convert("RGB") clips I;16 to white."""
    path, _ = png_16_bit(tmp_path / "deep")
    np.testing.assert_array_equal(decode_image(str(path), SIZE), np.full((SIZE, SIZE, 3), 156.0))


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_exif_orientation_is_applied(tmp_path, pipeline):
    """Bug 4: the upright photo has red on top, blue below (stored: side by side)."""
    root, (path, _) = _folder_with(tmp_path, exif_rotated)
    index = index_folder(root)
    position = index.images.index(str(path))
    assert index.orientations[position] == 6
    image = _images(index, pipeline)[position]
    top, bottom = image[: SIZE // 4].mean(axis=(0, 1)), image[-SIZE // 4 :].mean(axis=(0, 1))
    np.testing.assert_allclose(top, (255, 0, 0), atol=20)
    np.testing.assert_allclose(bottom, (0, 0, 255), atol=20)


def test_every_exif_orientation_matches_pillow_exif_transpose(tmp_path):
    from PIL import Image, ImageOps

    pixels = np.random.default_rng(0).integers(0, 255, (12, 20, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.png"
        Image.fromarray(pixels).save(path, exif=exif)
        with Image.open(path) as opened:
            upright = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
        side = min(upright.shape[:2])
        top, left = (upright.shape[0] - side) // 2, (upright.shape[1] - side) // 2
        expected = upright[top : top + side, left : left + side]
        np.testing.assert_array_equal(decode_image(str(path), side), expected, err_msg=str(orientation))
        if HAS_TF:
            import tensorflow as tf

            from flowerkit.data.pipelines import _tf_orient

            turned = _tf_orient(tf.constant(pixels), tf.constant(orientation)).numpy()
            np.testing.assert_array_equal(turned, upright, err_msg=str(orientation))


# --- skipped and counted (training), a clear error (predict) ---------------


@pytest.mark.parametrize("maker, reason, message", SKIPPED, ids=lambda m: getattr(m, "__name__", None))
def test_bad_files_are_skipped_counted_and_named(tmp_path, monkeypatch, maker, reason, message):
    from PIL import Image

    if reason == "too large":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2500)  # plain images: 1,920 pixels
    root, path = _folder_with(tmp_path, maker)
    with pytest.warns(FlowerkitWarning) as caught:
        index = index_folder(root)
    assert len(caught) == 1
    assert str(caught[0].message).startswith(
        f"Skipped 1 of 5 item(s) in {root}: 1 {reason} (red/{path.name})."
    )
    assert len(index) == 4 and str(path) not in index.images
    for pipeline in ("python", "tf") if HAS_TF else ("python",):
        assert len(_images(index, pipeline)) == 4
    with pytest.raises(FlowerkitError, match="Cannot read image|Image not found") as error:
        predict_images(_mean_colour_model(), [path], ("r", "g", "b"))
    assert str(path) in str(error.value) and message in str(error.value)


def test_unsupported_formats_name_what_is_read(tmp_path):
    root, _ = _folder_with(tmp_path, webp)
    tiff(root / "blue" / "odd")
    with pytest.warns(FlowerkitWarning) as caught:
        index_folder(root)
    assert str(caught[0].message) == (
        f"Skipped 2 of 6 item(s) in {root}: 2 unsupported format (blue/odd.tiff, red/odd.webp). "
        "flowerkit reads JPEG, PNG, GIF and 24/32-bit BMP."
    )


def test_directory_symlink_loop_is_counted_not_followed_forever(tmp_path):
    root, _ = _folder_with(tmp_path, lambda p: None)
    os.symlink(root / "red", root / "red" / "again")
    with pytest.warns(FlowerkitWarning, match=r"Skipped 1 of 5 item\(s\) in .*: 1 symlink loop \(red/again/\)"):
        index = index_folder(root)
    assert len(index) == 4


def test_unreadable_file_is_counted(tmp_path):
    root, _ = _folder_with(tmp_path, lambda p: None)
    locked = write_image(root / "red" / "locked.jpg", COLOURS["red"])
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reading, nothing to test")
        with pytest.warns(FlowerkitWarning, match=r"1 permission denied \(red/locked.jpg\)"):
            assert len(index_folder(root)) == 4
    finally:
        locked.chmod(0o644)


def test_many_skipped_files_are_named_up_to_ten(tmp_path):
    root, _ = _folder_with(tmp_path, lambda p: None)
    for i in range(13):
        (root / "red" / f"bad{i:02d}.jpg").write_bytes(b"nope")
    with pytest.warns(FlowerkitWarning) as caught:
        index_folder(root)
    named = ", ".join(f"red/bad{i:02d}.jpg" for i in range(10))
    assert str(caught[0].message) == (
        f"Skipped 13 of 17 item(s) in {root}: 13 not an image ({named} and 3 more)."
    )


def test_hidden_files_are_ignored_silently(tmp_path):
    """.DS_Store, AppleDouble ._x.jpg, Thumbs.db, hidden folders: OS metadata,
    never photos; counting them would warn on every folder copied from a Mac."""
    root, _ = _folder_with(tmp_path, lambda p: None)
    (root / "red" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "red" / "._red_0.jpg").write_bytes(b"\0\5\26\7AppleDouble")
    (root / "red" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    write_image(root / "red" / ".ipynb_checkpoints" / "red_0.jpg", COLOURS["red"])
    write_image(root / ".trash" / "x.jpg", COLOURS["red"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlowerkitWarning)
        index = index_folder(root)
    assert index.class_names == ("blue", "red") and len(index) == 4


# --- folders -------------------------------------------------------------


def test_empty_class_folder_is_skipped_and_named(tmp_path):
    """Bug 2: it used to become an output class the model could never learn."""
    root, _ = _folder_with(tmp_path, lambda p: None)
    (root / "tulips").mkdir()
    (root / "roses").mkdir()
    (root / "roses" / "broken.jpg").write_bytes(b"")
    with pytest.warns(FlowerkitWarning) as caught:
        index = index_folder(root)
    assert index.class_names == ("blue", "red")
    assert index.labels.tolist() == [0, 0, 1, 1]
    assert str(caught[0].message) == (
        f"Skipped 1 of 5 item(s) in {root}: 1 empty file (roses/broken.jpg). "
        f"Skipped 2 class folder(s) without readable images in {root}: roses, tulips."
    )


def test_empty_class_folder_asked_for_by_class_names_is_an_error(tmp_path):
    root, _ = _folder_with(tmp_path, lambda p: None)
    (root / "tulips").mkdir()
    with pytest.raises(FlowerkitError, match=r"Class folder\(s\) \['tulips'\] in .* have no readable images"):
        index_folder(root, class_names=("red", "tulips", "blue"))


def test_recipe_asking_for_an_empty_class_folder_is_an_error_naming_it(tmp_path):
    from flowerkit.data import load_data
    from flowerkit.config.recipe import Recipe

    root, _ = _folder_with(tmp_path, lambda p: None)
    (root / "tulips").mkdir()
    recipe = Recipe(class_names=("blue", "red", "tulips"), image_size=32)
    with pytest.warns(FlowerkitWarning, match=r"without readable images in .*: tulips\."):
        with pytest.raises(FlowerkitError, match=r"recipe's classes \['blue', 'red', 'tulips'\] differ"):
            load_data(recipe, str(root))


def test_recipe_classes_differing_from_the_folders_is_an_error(tmp_path):
    from flowerkit.data import load_data
    from flowerkit.config.recipe import Recipe

    root, _ = _folder_with(tmp_path, lambda p: None)
    recipe = Recipe(class_names=("red", "green"), image_size=32)
    with pytest.raises(FlowerkitError, match=r"recipe's classes \['red', 'green'\] differ"):
        load_data(recipe, str(root))


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: None, "Data folder not found"),
        (lambda root: root.mkdir(), r"Found 0 class folder\(s\)"),
        (lambda root: write_image(root / "red" / "a.jpg", COLOURS["red"]), r"Found 1 class folder\(s\)"),
        (
            lambda root: [write_image(root / "red" / "a.jpg", COLOURS["red"]), (root / "blue").mkdir()],
            "Only class folder 'red' in .* has readable images; need at least two classes",
        ),
    ],
    ids=["missing", "empty", "one-class", "one-class-with-images"],
)
def test_unusable_folders_are_clear_errors(tmp_path, setup, message):
    root = tmp_path / "photos"
    setup(root)
    with pytest.raises(FlowerkitError, match=message):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FlowerkitWarning)
            index_folder(root)


# --- TFRecords ----------------------------------------------------------


def _example(**features):
    import tensorflow as tf

    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return tf.train.Example(
        features=tf.train.Features(feature={k: feature(v) for k, v in features.items()})
    ).SerializeToString()


@pytest.mark.skipif(not HAS_TF, reason="TFRecords need TensorFlow (absent in this env by design)")
def test_damaged_tfrecords_are_skipped_and_counted(tmp_path):
    import tensorflow as tf

    from flowerkit.data.sources import index_source

    jpeg = write_image(tmp_path / "x.jpg", COLOURS["red"]).read_bytes()
    with tf.io.TFRecordWriter(str(tmp_path / "a.tfrec")) as writer:
        for label in (0, 1, 0, 1):
            writer.write(_example(image=jpeg, **{"class": label}))
        writer.write(_example(**{"class": 1}))  # no image
        writer.write(_example(image=jpeg, **{"class": b"roses"}))  # class of the wrong type
        writer.write(_example(image=7, **{"class": 0}))  # image of the wrong type
        writer.write(_example(image=b"not a jpeg", **{"class": 0}))
    (tmp_path / "b.tfrec").write_bytes(np.random.default_rng(0).bytes(3000))  # corrupt shard
    with pytest.warns(FlowerkitWarning) as caught:
        index = index_source(str(tmp_path / "*.tfrec"))
    assert len(caught) == 1
    pattern = tmp_path / "*.tfrec"
    assert str(caught[0].message) == (
        f"Skipped 5 item(s) in {pattern}: 3 records without image/class or of the wrong type "
        f"({tmp_path}/a.tfrec record 5, {tmp_path}/a.tfrec record 6, {tmp_path}/a.tfrec record 7); "
        f"1 records whose image is not an image ({tmp_path}/a.tfrec record 8); "
        f"1 corrupt or truncated files (later records lost) ({tmp_path}/b.tfrec after record 0)."
    )
    assert index.labels.tolist() == [0, 1, 0, 1]
    for pipeline in ("tf", "python"):
        assert len(_images(index, pipeline)) == 4


@pytest.mark.skipif(not HAS_TF, reason="TFRecords need TensorFlow (absent in this env by design)")
def test_only_corrupt_tfrecords_is_an_error(tmp_path):
    from flowerkit.data.sources import index_source

    (tmp_path / "b.tfrec").write_bytes(b"\0" * 100)
    with pytest.raises(FlowerkitError, match="No readable records in TFRecords"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FlowerkitWarning)
            index_source(str(tmp_path / "*.tfrec"))


# --- the two pipelines agree ----------------------------------------------


def _photo():
    """A real flower photo (320x240) where the shared photos are present, else
    a textured synthetic one: agreement on solid colours would prove little."""
    from PIL import Image

    from tests.helpers import SHARED

    photos = sorted((SHARED / "data" / "flower_photos" / "roses").glob("*.jpg"))[:1]
    if photos:
        with Image.open(photos[0]) as photo:
            return photo.convert("RGB").resize((320, 240))
    y, x = np.mgrid[0:240, 0:320]
    noise = np.random.default_rng(0).normal(0, 25, (240, 320, 3))
    pixels = np.stack([x * 0.8, y, (x + y) * 0.4], axis=-1) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _textured_odd_files(folder):
    """Every readable odd format, made from the same textured photo."""
    from PIL import Image

    photo = _photo()
    folder.mkdir(parents=True)
    photo.save(folder / "rgb.jpg", quality=90)
    photo.save(folder / "progressive.jpg", quality=90, progressive=True)
    photo.convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    photo.convert("L").save(folder / "grayscale.jpg", quality=90)
    photo.save(folder / "png_named.jpg", format="PNG")
    rgba = photo.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
    rgba.save(folder / "rgba.png")
    photo.quantize(64).save(folder / "palette_transparent.png", transparency=0)
    photo.quantize(64).save(folder / "transparent.gif", transparency=0)
    photo.convert("1").save(folder / "one_bit.png")
    deep = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(deep).save(folder / "sixteen_bit.png")
    photo.save(folder / "animated.gif", save_all=True, append_images=[photo.rotate(90)])
    photo.save(folder / "rgb.bmp")
    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        photo.save(folder / f"exif_{orientation}.jpg", exif=exif, quality=90)


@pytest.mark.skipif(not HAS_TF, reason="compares against tf.data; TensorFlow absent")
def test_pipelines_agree_on_every_readable_odd_format(tmp_path):
    root = tmp_path / "photos"
    _textured_odd_files(root / "odd")
    write_image(root / "plain" / "plain.jpg", COLOURS["blue"], size=(300, 200))
    index = index_folder(root)
    assert len(index) == 20
    size = 64
    tf_images, python_images = (
        np.concatenate([x for x, _ in iterate_batches(make_dataset(index, size, 64, pipeline=p))])
        for p in ("tf", "python")
    )
    difference = np.abs(tf_images - python_images).mean(axis=(1, 2, 3))
    table = {os.path.basename(p): round(float(d), 2) for p, d in zip(index.images, difference)}
    print("mean abs difference per image (0..255):", table)
    assert difference.max() < 6, table


# --- the CLI ------------------------------------------------------------


def test_cli_prints_a_flowerkit_warning_as_one_line(monkeypatch, capsys):
    import flowerkit.cli.predict as command
    from flowerkit.cli import main

    def run(args):
        warnings.warn("Skipped 1 of 5 item(s) in photos: 1 empty file (red/a.jpg).", FlowerkitWarning)
        return 0

    monkeypatch.setattr(command, "run", run)
    assert main(["predict", "model.keras", "a.jpg"]) == 0
    assert capsys.readouterr().err == (
        "flowerkit predict: warning: Skipped 1 of 5 item(s) in photos: 1 empty file (red/a.jpg).\n"
    )
