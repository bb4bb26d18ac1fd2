"""Synthetic class-per-folder datasets for the scale benchmark (issue 31):
small JPEGs (64-96 px) of smooth random colour fields with a few shapes, so
every image hashes differently, and 1% planted near-duplicates (cropped up to
10% per side, resized to 60-90%, re-encoded at JPEG quality 60-90), half in
their original's class and half in another.

    python -m bench.scale_data 10000 100000 1000000   # under $FLOWERKIT_SCALE_DIR

Each size goes to `$FLOWERKIT_SCALE_DIR/<size>/images/<class>/` (default
/tmp/flowerkit-scale, never the repository), with `planted.json` (the copy
pairs) and `complete.json` beside it. Generation is resumable: chunks finished
by an interrupted run are kept.

Colour fields are not photographs: a backbone's features hardly tell one
from another, so what the feature check finds among them says little about
photos. `python -m bench.scale_data --photos SIZES` adds `PHOTO_ORIGINALS`
of the shared flower photos and a copy of each, transformed as above (three
in four cropped), half in another class, to a finished folder, with
`photos.json` (their pairs) beside it: the copies a user's photo collection
has, to be found among a million other images.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

CHUNK = 2000
COPY_FRACTION = 0.01
MAX_CLASSES = 1000
PHOTO_ORIGINALS = 400


def scale_root() -> Path:
    return Path(os.environ.get("FLOWERKIT_SCALE_DIR", "/tmp/flowerkit-scale"))


def dataset_folder(size: int) -> Path:
    return scale_root() / str(size)


def class_count(size: int) -> int:
    """Up to 1,000 classes, about 100 images each below that."""
    return min(MAX_CLASSES, max(2, size // 100))


def class_name(label: int) -> str:
    return f"class{label:04d}"


def original_pixels(number: int) -> np.ndarray:
    """Image `number`'s pixels, the same in every dataset: a 6x6 random
    colour grid blown up (low frequencies differ, so perceptual hashes do),
    three random shapes and light noise."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([31, number])
    width, height = (int(v) for v in rng.integers(64, 97, size=2))
    grid = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(grid).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, x1 = sorted(rng.integers(0, width, size=2).tolist())
        y0, y1 = sorted(rng.integers(0, height, size=2).tolist())
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1 + 4, y1 + 4), fill=colour)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-6, 7, size=(height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def near_copy(pixels: np.ndarray, rng, crop: bool = True) -> tuple[np.ndarray, int]:
    """A crop of up to 10% per side (unless not `crop`), resized to 60-90%,
    and its JPEG quality (60-90)."""
    from PIL import Image

    if crop:
        height, width = pixels.shape[:2]
        left, right = (int(width * f) for f in rng.uniform(0, 0.10, size=2))
        top, bottom = (int(height * f) for f in rng.uniform(0, 0.10, size=2))
        pixels = pixels[top:height - bottom, left:width - right]
    image = Image.fromarray(pixels)
    scale = rng.uniform(0.60, 0.90)
    image = image.resize((max(8, round(image.width * scale)), max(8, round(image.height * scale))),
                         Image.BILINEAR)
    return np.asarray(image), int(rng.integers(60, 91))


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    data = io.BytesIO()
    Image.fromarray(pixels).save(data, "JPEG", quality=quality)
    return data.getvalue()


def plan(size: int) -> tuple[int, list[tuple[int, int, int]]]:
    """(originals, copies as (copy number, original number, target class))."""
    classes = class_count(size)
    copies = int(size * COPY_FRACTION)
    originals = size - copies
    stride = max(1, originals // max(copies, 1))
    planted = []
    for copy in range(copies):
        original = (copy * stride) % originals
        label = original % classes
        target = label if copy % 2 == 0 else (label + 1 + copy % (classes - 1)) % classes
        planted.append((copy, original, target))
    return originals, planted


def relative_path(number: int, label: int, copy: int | None = None) -> str:
    name = f"img{number:07d}.jpg" if copy is None else f"img{number:07d}-c{copy:06d}.jpg"
    return f"{class_name(label)}/{name}"


def _write_chunk(task) -> int:
    size, kind, start, stop = task
    folder = dataset_folder(size)
    marker = folder / "chunks" / f"{kind}-{start}.done"
    if marker.exists():
        return 0
    classes = class_count(size)
    images = folder / "images"
    if kind == "originals":
        for number in range(start, stop):
            quality = int(np.random.default_rng([32, number]).integers(75, 96))
            path = images / relative_path(number, number % classes)
            path.write_bytes(_jpeg(original_pixels(number), quality))
    else:
        _, planted = plan(size)
        for copy, original, target in planted[start:stop]:
            pixels, quality = near_copy(original_pixels(original), np.random.default_rng([33, copy]))
            (images / relative_path(original, target, copy)).write_bytes(_jpeg(pixels, quality))
    marker.touch()
    return stop - start


def generate(size: int, processes: int = 2) -> Path:
    folder = dataset_folder(size)
    if (folder / "complete.json").exists():
        print(f"{folder}: complete", flush=True)
        return folder
    images = folder / "images"
    (folder / "chunks").mkdir(parents=True, exist_ok=True)
    for label in range(class_count(size)):
        (images / class_name(label)).mkdir(parents=True, exist_ok=True)
    originals, planted = plan(size)
    tasks = [(size, "originals", s, min(s + CHUNK, originals)) for s in range(0, originals, CHUNK)]
    tasks += [(size, "copies", s, min(s + CHUNK, len(planted))) for s in range(0, len(planted), CHUNK)]
    started, written = time.perf_counter(), 0
    with multiprocessing.Pool(processes) as pool:
        for done, count in enumerate(pool.imap_unordered(_write_chunk, tasks), 1):
            written += count
            if done % max(1, len(tasks) // 20) == 0 or done == len(tasks):
                rate = written / max(time.perf_counter() - started, 1e-9)
                print(f"{size}: {done}/{len(tasks)} chunks, {rate:.0f} images/s", flush=True)
    pairs = [[relative_path(o, o % class_count(size)), relative_path(o, t, c)] for c, o, t in planted]
    (folder / "planted.json").write_text(json.dumps({"pairs": pairs}) + "\n")
    record = {"images": size, "classes": class_count(size), "planted_pairs": len(pairs),
              "seconds": round(time.perf_counter() - started, 1)}
    (folder / "complete.json").write_text(json.dumps(record) + "\n")
    print(f"{folder}: {record}", flush=True)
    return folder


def plant_photos(size: int, photos: Path, originals: int = PHOTO_ORIGINALS) -> Path:
    """Adds `originals` shared photos and a near copy of each to the finished
    folder of `size` (see the module docstring); their pairs in photos.json."""
    from PIL import Image

    folder = dataset_folder(size)
    record = folder / "photos.json"
    if record.exists():
        print(f"{record}: present", flush=True)
        return record
    if not (folder / "complete.json").exists():
        raise SystemExit(f"bench.scale_data: {folder} is not complete: python -m bench.scale_data {size}")
    files = sorted(photos.glob("*/*.jpg"))
    if len(files) < originals:
        raise SystemExit(f"bench.scale_data: {photos} has {len(files)} photos, {originals} needed "
                         "(FLOWERKIT_SHARED names the shared folder)")
    rng = np.random.default_rng(34)
    classes = class_count(size)
    pairs = []
    for k, number in enumerate(sorted(rng.choice(len(files), originals, replace=False).tolist())):
        source = files[number]
        label = int(rng.integers(classes))
        target = label if k % 2 == 0 else (label + 1 + int(rng.integers(classes - 1))) % classes
        with Image.open(source) as opened:
            pixels = np.asarray(opened.convert("RGB"))
        copy, quality = near_copy(pixels, rng, crop=k % 4 != 3)  # one in four resized and re-encoded only
        original = f"{class_name(label)}/photo-{source.parent.name}-{source.stem}.jpg"
        copied = f"{class_name(target)}/photo-{source.parent.name}-{source.stem}-copy.jpg"
        (folder / "images" / original).write_bytes(source.read_bytes())
        (folder / "images" / copied).write_bytes(_jpeg(copy, quality))
        pairs.append({"pair": [original, copied], "cropped": k % 4 != 3})
    record.write_text(json.dumps({"source": str(photos), "pairs": pairs}) + "\n")
    print(f"{folder}: {len(pairs)} photo pairs planted", flush=True)
    return record


def main(argv=None):
    arguments = list(argv if argv is not None else sys.argv[1:])
    photos = "--photos" in arguments
    sizes = [int(s) for s in arguments if s != "--photos"] or [10_000, 100_000, 1_000_000]
    for size in sizes:
        generate(size)
        if photos:
            shared = Path(os.environ.get("FLOWERKIT_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
            plant_photos(size, shared / "data" / "flower_photos")


if __name__ == "__main__":
    main()
