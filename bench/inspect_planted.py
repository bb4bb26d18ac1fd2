"""Planted near-duplicates for `flowerkit inspect` (issue 24): resized,
re-encoded and lightly cropped copies of 50 shared photos, in the same and
in other classes, among 400 other photos; recall and precision of the
copies' pairs. Writes bench/results/inspect_planted.json.

    KERAS_BACKEND=jax python -m bench.inspect_planted"""

from __future__ import annotations

import io
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.report import write_result
from flowerkit.inspection.runner import inspect_source
from flowerkit.config.recipe import get_preset

PHOTOS = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/flower_photos")


def variants(path):
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    crop = int(min(width, height) * 0.05)
    made = {
        "resized": image.resize((width * 2 // 3, height * 2 // 3)),
        "q40": image,
        "cropped": image.crop((crop, crop, width - crop, height - crop)),
    }
    for kind, picture in made.items():
        data = io.BytesIO()
        picture.save(data, "JPEG", quality=40 if kind == "q40" else 85)
        yield kind, data.getvalue()


def main():
    rng = random.Random(0)
    classes = sorted(p.name for p in PHOTOS.iterdir() if p.is_dir())
    files = {c: sorted((PHOTOS / c).glob("*.jpg")) for c in classes}
    root = Path(tempfile.mkdtemp(prefix="planted-"))
    chosen = [(c, f) for c in classes for f in rng.sample(files[c], 90)]
    for c, f in chosen:
        (root / c).mkdir(exist_ok=True)
        shutil.copy(f, root / c / f.name)
    planted = set()
    for c, f in rng.sample(chosen, 50):
        for k, (kind, data) in enumerate(variants(f)):
            target = c if k < 2 else rng.choice([o for o in classes if o != c])  # crops elsewhere
            name = f"{f.stem}-{kind}.jpg"
            (root / target / name).write_bytes(data)
            planted.add(frozenset((f"{c}/{f.name}", f"{target}/{name}")))
    started = time.perf_counter()
    findings = inspect_source(get_preset("mobilenet_v2_035"), str(root), verbose=0)
    seconds = time.perf_counter() - started
    found = set()
    for group in findings["duplicates"]["groups"]:
        paths = [i["path"] for i in group["images"]]
        found |= {frozenset((a, b)) for a in paths for b in paths if a < b}
    # A copy pair counts as found when both are in one group; found pairs
    # between two copies of one original are true too.
    originals = {p: next(iter(pair - {p})) for pair in planted for p in pair if "-" in p.rsplit("/", 1)[1]}
    def true_pair(pair):
        a, b = sorted(pair)
        root_of = lambda p: originals.get(p, p)
        return root_of(a) == root_of(b)
    recall = sum(pair in found for pair in planted) / len(planted)
    planted_related = [pair for pair in found if any(p in originals or p in originals.values() for p in pair)]
    precision = (sum(true_pair(p) for p in planted_related) / len(planted_related)) if planted_related else 0.0
    result = {
        "images": findings["images"], "planted_pairs": len(planted), "recall": recall,
        "precision_on_planted_images": precision,
        "groups_found": findings["duplicates"]["group_count"],
        "conflict_groups": findings["duplicates"]["conflict_groups"],
        "thresholds": findings["duplicates"]["thresholds"], "seconds": seconds,
        "timings": findings["timings"],
    }
    write_result("inspect_planted", result)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
