"""Pillow decoding: one image (a file path or encoded bytes) to float32 RGB
pixels, centre-cropped and resized the way both pipelines do it."""

from __future__ import annotations

import io

import numpy as np

# Formats that both tf.io.decode_image and Pillow read.
DECODABLE_FORMATS = ("JPEG", "PNG", "BMP", "GIF")


def open_image(image):
    """A Pillow image from a file path or encoded bytes (TFRecords)."""
    from PIL import Image

    return Image.open(io.BytesIO(image) if isinstance(image, bytes) else image)


def is_readable_image(image) -> bool:
    """True if `image` (path or bytes) is an image both pipelines can decode.

    JPEGs are decoded in Pillow's draft mode (DCT-scaled, ~10x cheaper than a
    full decode), which still catches truncated and corrupt data.
    """
    try:
        with open_image(image) as opened:
            if opened.format not in DECODABLE_FORMATS:
                return False
            opened.draft("RGB", (16, 16))
            opened.load()
        return True
    except Exception:
        return False


def decode_image(image, image_size: int) -> np.ndarray:
    """Decode + centre crop + bilinear resize, as float32 RGB 0..255 (HWC)."""
    from PIL import Image

    with open_image(image) as opened:
        # JPEG draft: decode at the smallest DCT scale still >= the target.
        opened.draft("RGB", (image_size, image_size))
        rgb = opened.convert("RGB")
        width, height = rgb.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        rgb = rgb.resize(
            (image_size, image_size),
            Image.BILINEAR,
            box=(left, top, left + side, top + side),
        )
        return np.asarray(rgb, dtype=np.float32)
