"""Helpers for the tests and benchmarks: where the shared photos and weights
are, and small synthetic image folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FLOWERKIT_SHARED", REPO.parent / "shared")).resolve()
# CI sets FLOWERKIT_REQUIRE_SHARED=1: there, missing shared data is a failure, never a skip.
REQUIRE_SHARED = os.environ.get("FLOWERKIT_REQUIRE_SHARED", "") not in ("", "0")

CLASSES = ("blue", "green", "red")
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


def shared_path(relative: str) -> Path:
    """A path under ../shared (FLOWERKIT_SHARED); skips the test if absent,
    or fails it when FLOWERKIT_REQUIRE_SHARED is set (as in CI)."""
    path = SHARED / relative
    if not path.exists():
        message = f"shared data not found: {path} (set FLOWERKIT_SHARED)"
        if REQUIRE_SHARED:
            pytest.fail(message)
        pytest.skip(message)
    return path


def write_image(path: Path, colour, size=(48, 40), seed=0, format=None) -> Path:
    """A noisy image of one colour: trivially separable classes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype("uint8")).save(path, format=format)
    return path


def make_image_folder(root: Path, per_class: int = 10, classes=CLASSES) -> Path:
    for label, name in enumerate(classes):
        for i in range(per_class):
            write_image(root / name / f"{name}_{i:03d}.jpg", COLOURS[name], seed=label * 1000 + i)
    return root
