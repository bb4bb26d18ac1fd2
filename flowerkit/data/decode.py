"""Pillow decoding: one image (a file path or encoded bytes) to float32 RGB
pixels, centre-cropped and resized the way both pipelines do it.

Which images are read is decided here, once, for the tf.data pipeline, the
Pillow pipeline and predict alike (`inspect_image`): only what both
tf.io.decode_image (every TensorFlow version flowerkit supports) and Pillow
decode to the same pixels. Everything else raises `ImageProblem`, whose
`reason` is the short word the skip warnings count by.

Pixel rules, identical in both pipelines: EXIF orientation applied; alpha
dropped (the colour under it kept, as tf.io.decode_image(channels=3) does;
transparent GIF pixels are black there, and here);
16-bit greyscale PNG scaled to 8 bits (x >> 8, as libpng's strip-16 in
TensorFlow); animated GIF: the first frame.
"""

from __future__ import annotations

import io
import os
import threading
import warnings

import numpy as np

from flowerkit.errors import FlowerkitError

# Formats that both tf.io.decode_image and Pillow read to the same pixels.
# Not WebP (tf.io.decode_image reads it only from TensorFlow 2.18 on, and
# not at all when animated or with alpha), not TIFF (TensorFlow cannot),
# not palette/1-bit BMP (TensorFlow returns palette indices as pixels).
DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
SUPPORTED = "JPEG, PNG, GIF and 24/32-bit BMP"
ORIENTATION_TAG = 0x0112
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# Image.open and the decompression-bomb warning-as-error filter: the warnings
# filter list is process-global, so threads take turns (opening only parses
# the header; decoding runs outside the lock).
_OPEN_LOCK = threading.Lock()


class ImageProblem(FlowerkitError):
    """An image flowerkit does not read; `reason` is a short category
    ("not an image", "unsupported format", "too large", ...)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def open_image(image):
    """A Pillow image from a file path or encoded bytes (TFRecords).

    Raises `ImageProblem` for what cannot be opened, including images over
    Pillow's `Image.MAX_IMAGE_PIXELS` (decompression bombs).
    """
    from PIL import Image, UnidentifiedImageError

    source = io.BytesIO(image) if isinstance(image, bytes) else image
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(source)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise ImageProblem("too large", f"image too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        if _is_empty(image):
            raise ImageProblem("empty file", "empty file (0 bytes)") from None
        raise ImageProblem("not an image", f"not an image ({SUPPORTED} are read)") from None
    except PermissionError:
        raise ImageProblem("permission denied", "permission denied") from None
    except OSError as error:
        if error.errno is None:  # Pillow's own errors: broken data, not the file system
            raise ImageProblem("truncated or corrupt", f"truncated or corrupt image ({error})") from None
        raise ImageProblem("unreadable", f"cannot open: {error.strerror or error}") from None
    except Exception as error:  # SyntaxError, ValueError, ... from a plugin's header parser
        raise ImageProblem("truncated or corrupt", f"truncated or corrupt image ({error})") from None


def _is_empty(image) -> bool:
    if isinstance(image, bytes):
        return not image
    try:
        return os.path.getsize(image) == 0
    except OSError:
        return False


def check_format(opened) -> None:
    """Raises `ImageProblem` unless both pipelines decode `opened` alike."""
    if opened.format not in DECODABLE_FORMATS:
        raise ImageProblem(
            "unsupported format",
            f"{opened.format or 'this'} format is not supported (flowerkit reads {SUPPORTED})",
        )
    if opened.format == "BMP" and opened.mode not in ("RGB", "RGBA"):
        raise ImageProblem(
            "unsupported format",
            f"palette or 1-bit BMP is not supported (flowerkit reads {SUPPORTED})",
        )


def exif_orientation(opened) -> int:
    """The EXIF orientation (1..8; 1 when absent or invalid)."""
    try:
        orientation = int(opened.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # malformed EXIF: read the pixels as stored
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def inspect_image(image) -> int:
    """Checks that `image` (path or bytes) is one both pipelines decode, and
    returns its EXIF orientation. Raises `ImageProblem` otherwise.

    JPEGs are decoded in Pillow's draft mode (DCT-scaled, ~10x cheaper than a
    full decode), which still catches truncated and corrupt data.
    """
    with open_image(image) as opened:
        check_format(opened)
        orientation = exif_orientation(opened)
        opened.draft("RGB", (16, 16))
        load_pixels(opened)
    return orientation


def load_pixels(opened) -> None:
    """Decodes an opened image's pixels (at its draft size, if one was set);
    raises `ImageProblem` for data that cannot be decoded."""
    try:
        opened.load()
    except ImageProblem:
        raise
    except PermissionError:
        raise ImageProblem("permission denied", "permission denied") from None
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise ImageProblem("truncated or corrupt", f"truncated or corrupt image ({error})") from None


def to_rgb(opened):
    """An RGB Pillow image: alpha dropped, 16-bit greyscale scaled to 8 bits."""
    from PIL import Image

    if opened.mode in _SIXTEEN_BIT:
        pixels = np.clip(np.asarray(opened, dtype=np.int64), 0, 65535) >> 8
        return Image.fromarray(pixels.astype(np.uint8), "L").convert("RGB")
    if opened.mode in ("P", "L") and "transparency" in opened.info:
        rgba = opened.convert("RGBA")
        if opened.format != "GIF":
            return rgba.convert("RGB")  # the palette colour under the transparency
        # TensorFlow's GIF decoder gives transparent pixels as black.
        pixels = np.array(rgba)
        pixels[pixels[..., 3] == 0, :3] = 0
        return Image.fromarray(np.ascontiguousarray(pixels[..., :3]), "RGB")
    return opened.convert("RGB")


def apply_orientation(image, orientation: int):
    """`image` turned upright for an EXIF orientation (as ImageOps.exif_transpose)."""
    from PIL import Image

    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return image.transpose(method) if method is not None else image


def decode_image(image, image_size: int) -> np.ndarray:
    """Decode + orient + centre crop + bilinear resize, as float32 RGB 0..255 (HWC).

    Raises `ImageProblem` for images flowerkit does not read.
    """
    from PIL import Image

    with open_image(image) as opened:
        check_format(opened)
        orientation = exif_orientation(opened)
        # JPEG draft: decode at the smallest DCT scale still >= the target.
        opened.draft("RGB", (image_size, image_size))
        load_pixels(opened)
        rgb = apply_orientation(to_rgb(opened), orientation)
        width, height = rgb.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        rgb = rgb.resize(
            (image_size, image_size),
            Image.BILINEAR,
            box=(left, top, left + side, top + side),
        )
        return np.asarray(rgb, dtype=np.float32)


def mirror_images(images: np.ndarray) -> np.ndarray:
    """A batch (n, H, W, C) flipped left to right, contiguous for the model."""
    return np.ascontiguousarray(np.asarray(images)[:, :, ::-1])


def flip_averaged(predict, images: np.ndarray, plain: np.ndarray) -> np.ndarray:
    """Flip test-time augmentation: the mean of `plain` (the probabilities
    of `images`) and of `predict` on their mirror images."""
    return (plain + np.asarray(predict(mirror_images(images)))) / 2
