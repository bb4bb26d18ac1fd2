"""Planted near-duplicates for `flowerkit inspect` (issues 24 and 31): copies
of 80 shared photos cropped by 0-10% per side (each side drawn apart),
resized to 60-90% and re-encoded at JPEG quality 60-90, half of them in
another class, and 30 uncropped copies (resized and re-encoded only), among
450 other photos. Rows: recall and precision of the copies' pairs with
features (`inspect`), and what the hash-only check that `train` runs finds.
Writes bench/results/inspect_planted.json.

    KERAS_BACKEND=jax python -m bench.inspect_planted [PHOTOS]"""

from __future__ import annotations

import io
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.report import write_result
from flowerkit.config.recipe import get_preset
from flowerkit.data.duplicates import find_duplicates
from flowerkit.data.hashing import hash_index
from flowerkit.inspection.runner import inspect_source

PHOTOS = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/flower_photos")
ORIGINALS_PER_CLASS = 90
CROPPED = 80
UNCROPPED = 30


def copy_of(path, rng: random.Random, crop: bool) -> bytes:
    """The planted transformation of issue 31 (the crop left out if not `crop`)."""
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    if crop:
        image = image.crop((round(width * rng.uniform(0, 0.1)), round(height * rng.uniform(0, 0.1)),
                            width - round(width * rng.uniform(0, 0.1)),
                            height - round(height * rng.uniform(0, 0.1))))
    scale = rng.uniform(0.6, 0.9)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    data = io.BytesIO()
    image.save(data, "JPEG", quality=rng.randint(60, 90))
    return data.getvalue()


def plant(root: Path, rng: random.Random) -> dict:
    """The folder; returns {"cropped": pairs, "uncropped": pairs} of relative paths."""
    classes = sorted(p.name for p in PHOTOS.iterdir() if p.is_dir())
    files = {c: sorted((PHOTOS / c).glob("*.jpg")) for c in classes}
    chosen = [(c, f) for c in classes for f in rng.sample(files[c], ORIGINALS_PER_CLASS)]
    for c, f in chosen:
        (root / c).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / c / f.name)
    planted = {"cropped": set(), "uncropped": set()}
    sources = rng.sample(chosen, CROPPED + UNCROPPED)
    for k, (c, f) in enumerate(sources):
        kind = "cropped" if k < CROPPED else "uncropped"
        target = c if k % 2 else rng.choice([o for o in classes if o != c])  # half across classes
        name = f"{f.stem}-{kind}.jpg"
        (root / target / name).write_bytes(copy_of(f, rng, crop=kind == "cropped"))
        planted[kind].add(frozenset((f"{c}/{f.name}", f"{target}/{name}")))
    return planted


def found_pairs(groups) -> set:
    return {frozenset((a, b)) for group in groups for a in group for b in group if a < b}


def scores(groups, planted_pairs) -> dict:
    """Recall of the planted pairs (both in one group) and precision over the
    found pairs that involve a planted copy or its original (a pair of the
    original's own duplicate among the photos and its copy counts as false)."""
    found = found_pairs(groups)
    involved = {p for pair in planted_pairs for p in pair}
    related = [pair for pair in found if pair & involved]
    true = sum(pair in planted_pairs for pair in related)
    return {
        "recall": sum(pair in found for pair in planted_pairs) / len(planted_pairs),
        "precision": true / len(related) if related else 0.0,
    }


def main():
    rng = random.Random(0)
    root = Path(tempfile.mkdtemp(prefix="planted-"))
    planted = plant(root, rng)
    every = planted["cropped"] | planted["uncropped"]
    started = time.perf_counter()
    findings = inspect_source(get_preset("mobilenet_v2_035"), str(root), quiet=True)
    seconds = time.perf_counter() - started
    with_features = [[image["path"] for image in group["images"]]
                     for group in findings["duplicates"]["groups"]]
    index, names = findings["_private"]["index"], findings["_private"]["names"]
    hash_only = find_duplicates(hash_index(index, quiet=True), index.labels)  # as `train` checks
    hashed = [[names[m] for m in group] for group in hash_only.groups]
    with_scores = scores(with_features, every)
    result = {
        "images": findings["images"], "planted_pairs": len(every),
        "recall": with_scores["recall"], "precision_on_planted_images": with_scores["precision"],
        "transformations": "crop 0-10% per side, resize 60-90%, JPEG q60-90; half across classes",
        "with_features": {kind: scores(with_features, planted[kind]) for kind in planted},
        "hash_only": {kind: scores(hashed, planted[kind]) for kind in planted},
        # Pairs among the shared photos themselves (tf_flowers has duplicates of its own).
        "pairs_among_the_photos": len({pair for pair in found_pairs(with_features)
                                       if not pair & {p for q in every for p in q}}),
        "groups_found": findings["duplicates"]["group_count"],
        "conflict_groups": findings["duplicates"]["conflict_groups"],
        "thresholds": findings["duplicates"]["thresholds"], "seconds": seconds,
        "timings": findings["timings"],
    }
    write_result("inspect_planted", result)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
