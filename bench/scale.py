"""The scale benchmark (issue 31): on the synthetic folders of
`bench.scale_data` (10k, 100k, 1M small JPEGs, up to 1,000 classes, 1%
planted near-duplicates), the cost of each data pass against one plain
decoding pass over the same files:

    decode           every file read and fully decoded by Pillow (4 threads),
                     before the other steps and again after them (the VM's
                     load drifts): the ratios are to the mean of the two
    load_data cold   `load_data` with no manifest: index, hashes, duplicate
                     search, group split
    load_data warm   the same again, the manifest kept
    search, split    `find_duplicates` and `group_split` alone (warm hashes)
    train            `flowerkit train --preset mobilenet_v2_035 --max-images
                     2000 --epochs 1` on the whole folder, manifest warm,
                     features and compiled programs not cached yet;
                     `first_epoch_seconds`: from the command's start to its
                     first epoch's end (data, model, feature pass, epoch)
    train_new_folder the same command with the features removed but compiled
                     programs kept: a first run on a new folder by someone who
                     has trained this recipe before
    train_again      the same command again: every cache warm
    planted_features what `inspect`'s feature check finds: the feature pass
                     (the default recipe's pooled features, cached), the
                     duplicate search, recall and precision of the planted
                     copies (colour fields; shared photos, if planted with
                     `bench.scale_data --photos`) and, up to
                     `BRUTE_FORCE_LIMIT` images, whether the groups equal an
                     exact neighbour search's; `--feature-size` runs the
                     backbone at another size (a row of its own)

Each runs in its own process, which reports its peak resident memory
(`ru_maxrss`). Rows accumulate in bench/results/scale.json (one entry per
size, replaced when measured again); bench/results/scale.png is the log-log
chart of seconds against images.

    KERAS_BACKEND=jax python -m bench.scale 10000 100000 [--no-train] [--steps STEP ...] [--feature-size PX]

--steps measures those steps again and keeps the size's other rows.

The folders must exist (`python -m bench.scale_data SIZES`); a private Keras
cache (manifests, features, the shared ImageNet weights) lives beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.report import RESULTS, write_result
from bench.scale_data import dataset_folder, scale_root
from flowerkit.backends import compile_cache
from tests.helpers import SHARED

STEPS = ("decode", "load_cold", "load_warm", "search_split", "decode_again", "train", "train_new_folder",
         "train_again", "planted_features")
BRUTE_FORCE_LIMIT = 120_000  # the exact neighbour search as reference, up to this many images
TRAIN_STEPS = ("train", "train_new_folder", "train_again")
RATIO_STEPS = ("load_cold", "load_warm", "search", "split", "train", "train_again")
DECODE_THREADS = 4  # as the manifest's pass (flowerkit.data.manifest.refresh)
TARGETS = {
    "load_cold_over_decode": 2.0, "load_warm_seconds": 10.0, "peak_rss_gib": 3.0,
    "growth_100k_to_1m": 11.0, "slope": 1.05, "train_seconds": 30.0,
}


def image_files(folder: Path) -> list[str]:
    return sorted(entry.path for classes in os.scandir(folder) if classes.is_dir()
                  for entry in os.scandir(classes.path) if entry.is_file())


def _decode(path: str) -> None:
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").load()


def step_decode(folder: Path) -> dict:
    files = image_files(folder)
    started = time.perf_counter()
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for _ in pool.map(_decode, files, chunksize=64):
            pass
    return {"seconds": time.perf_counter() - started, "images": len(files)}


def _recipe():
    from flowerkit.config.recipe import get_preset

    return get_preset("mobilenet_v2_035")


def step_load(folder: Path, cold: bool) -> dict:
    from flowerkit.data.loading import load_data
    from flowerkit.data.manifest import manifest_path

    if cold:
        manifest_path(str(folder)).unlink(missing_ok=True)
    started = time.perf_counter()
    data = load_data(_recipe(), str(folder), quiet=True)
    seconds = time.perf_counter() - started
    checked = data.inspection
    return {"seconds": seconds, "images": checked.get("images"), "check_seconds": checked.get("seconds"),
            "duplicate_groups": checked.get("duplicate_groups"), "conflict_groups": checked.get("conflict_groups"),
            "train": len(data.train), "validation": len(data.validation)}


def step_search_split(folder: Path) -> dict:
    from flowerkit.data.duplicates import find_duplicates
    from flowerkit.data.hashing import hash_index
    from flowerkit.data.sources import index_source
    from flowerkit.data.splitting import group_split

    index = index_source(str(folder), quiet=True)
    hashes = hash_index(index, quiet=True)
    started = time.perf_counter()
    duplicates = find_duplicates(hashes, index.labels)
    search = time.perf_counter() - started
    started = time.perf_counter()
    group_split(index, 0.2, 0, duplicates.group_of)
    split = time.perf_counter() - started
    return {"search_seconds": search, "split_seconds": split, "duplicate_groups": len(duplicates.groups),
            "planted_pairs_found": _planted_found(folder, index, duplicates.group_of)}


def step_planted_features(folder: Path, image_size: int | None = None) -> dict:
    """What `inspect` finds of the planted copies with features: the feature
    pass (the default recipe's pooled features, at `image_size` if given,
    cached like inspect's), the duplicate search, recall and precision of the
    planted pairs (the colour fields' and, if planted, the photos'), and, up
    to `BRUTE_FORCE_LIMIT` images, whether the groups equal those of an exact
    neighbour search."""
    from flowerkit.data.duplicates import find_duplicates
    from flowerkit.data.hashing import hash_index
    from flowerkit.data.sources import index_source
    from flowerkit.inspection.runner import feature_recipe, pooled_features

    index = index_source(str(folder), quiet=True)
    hashes = hash_index(index, quiet=True)
    recipe = feature_recipe(_recipe().replace(class_names=index.class_names))
    if image_size:
        # Keras keeps MobileNetV2's ImageNet weights per input size; the 224-px file (the
        # recipe's own) is the one offline here, and the same network at any size.
        weights = _keras_home() / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
        recipe = recipe.replace(image_size=image_size, weights=str(weights))
    started = time.perf_counter()
    features, cache = pooled_features(recipe, index, verbose=2)
    feature_seconds = time.perf_counter() - started
    started = time.perf_counter()
    duplicates = find_duplicates(hashes, index.labels, features)
    search = time.perf_counter() - started
    row = {"images": len(index), "image_size": recipe.image_size, "feature_seconds": feature_seconds,
           "feature_cache": cache, "search_seconds": search, "duplicate_groups": len(duplicates.groups),
           "conflict_groups": len(duplicates.conflicts),
           "colour_fields": pair_scores(_planted_positions(folder, index), duplicates.group_of)}
    photos = folder.parent / "photos.json"
    photo_pairs, cropped = [], []
    if photos.is_file():
        position = _positions(folder, index)
        planted = json.loads(photos.read_text())["pairs"]
        photo_pairs = [(position[p["pair"][0]], position[p["pair"][1]]) for p in planted]
        cropped = [pair for pair, p in zip(photo_pairs, planted) if p["cropped"]]
        row["photos"] = pair_scores(photo_pairs, duplicates.group_of)
        row["photos_cropped"] = pair_scores(cropped, duplicates.group_of)
    photo_images = np.zeros(len(index), bool)
    photo_images[np.asarray(photo_pairs, np.int64).ravel()] = True
    if len(index) <= BRUTE_FORCE_LIMIT:
        started = time.perf_counter()
        exact = find_duplicates(hashes, index.labels, features, exact_limit=len(index))
        row["brute_force_seconds"] = time.perf_counter() - started
        # Each image's group is named by its smallest member: equal arrays, equal groups.
        differ = exact.group_of != duplicates.group_of
        row["images_grouped_differently"] = int(np.count_nonzero(differ))
        row["photo_images_grouped_differently"] = int(np.count_nonzero(differ & photo_images))
        row["brute_force_groups"] = len(exact.groups)
        if photo_pairs:
            row["photos_brute_force"] = pair_scores(photo_pairs, exact.group_of)
    return row


def pair_scores(pairs: list[tuple[int, int]], group_of: np.ndarray) -> dict:
    """Recall of planted (original, copy) position pairs (both in one group),
    and precision: the share of planted pairs among the grouped pairs that
    involve a planted image (an original or its copy)."""
    found = sum(group_of[a] == group_of[b] for a, b in pairs)
    involved = np.zeros(len(group_of), bool)
    involved[np.asarray(pairs, np.int64).ravel()] = True
    groups = np.unique(group_of[involved])
    size = np.bincount(group_of, minlength=len(group_of))[groups]
    planted = np.bincount(group_of[involved], minlength=len(group_of))[groups]
    others = size - planted
    # Every pair of a group minus those between two images that are not planted.
    grouped = int((size * (size - 1) // 2 - others * (others - 1) // 2).sum())
    return {"pairs": len(pairs), "recall": found / max(len(pairs), 1),
            "precision": found / grouped if grouped else None, "grouped_pairs": grouped}


def _positions(folder: Path, index) -> dict:
    return {os.path.relpath(path, folder): i for i, path in enumerate(index.images)}


def _planted_positions(folder: Path, index) -> list[tuple[int, int]]:
    position = _positions(folder, index)
    pairs = [(position.get(a), position.get(b))
             for a, b in json.loads((folder.parent / "planted.json").read_text())["pairs"]]
    return [(a, b) for a, b in pairs if a is not None and b is not None]


def _planted_found(folder: Path, index, group_of) -> float | None:
    """The share of planted copy pairs that the hash check put in one group
    (the copies are cropped: the feature check of `inspect` is for those)."""
    if not (folder.parent / "planted.json").is_file():
        return None
    return pair_scores(_planted_positions(folder, index), group_of)["recall"]


class EpochLines(io.TextIOBase):
    """A stream passed through, noting when the first epoch's line of `fit`
    (verbose=2, as `train --quiet`: "26/26 - 42s - 2s/step - ...") is written:
    the seconds from `started` to the end of the first epoch."""

    LINE = re.compile(r"^\s*\d+/\d+ - ", re.MULTILINE)

    def __init__(self, stream, started: float, clock=time.perf_counter):
        super().__init__()
        self.stream, self.started, self.clock, self.first_epoch_seconds = stream, started, clock, None

    def write(self, text: str) -> int:
        if self.first_epoch_seconds is None and self.LINE.search(text):
            self.first_epoch_seconds = self.clock() - self.started
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def step_train(folder: Path) -> dict:
    from flowerkit.cli import main

    output = Path(tempfile.mkdtemp(prefix="scale-train-"))
    started = time.perf_counter()
    lines = EpochLines(sys.stdout, started)
    try:
        with contextlib.redirect_stdout(lines):
            code = main(["train", "--preset", "mobilenet_v2_035", "--data", str(folder), "--max-images", "2000",
                         "--epochs", "1", "--output", str(output / "run"), "--quiet"])
        seconds = time.perf_counter() - started
        metrics = json.loads((output / "run" / "metrics.json").read_text()) if code == 0 else {}
    finally:
        shutil.rmtree(output, ignore_errors=True)
    phase = (metrics.get("phases") or [{}])[0]
    return {"seconds": seconds, "exit_code": code, "first_epoch_seconds": lines.first_epoch_seconds,
            "feature_seconds": phase.get("feature_seconds"),
            "first_epoch_in_phase_seconds": (phase.get("epoch_end_seconds") or [None])[0],
            "data_check_seconds": metrics.get("data_inspection", {}).get("seconds")}


def run_step(name: str, size: int, feature_size: int | None = None) -> dict:
    """One step in this process, with its peak resident memory."""
    folder = dataset_folder(size) / "images"
    if name in ("decode", "decode_again"):
        result = step_decode(folder)
    elif name in ("load_cold", "load_warm"):
        result = step_load(folder, cold=name == "load_cold")
    elif name == "search_split":
        result = step_search_split(folder)
    elif name == "planted_features":
        result = step_planted_features(folder, feature_size)
    else:
        # The first run on this folder: only the manifest kept (train_new_folder:
        # and the compiled programs, which depend on the recipe, not the folder).
        cleared = {"train": ("features", compile_cache.FOLDER_NAME), "train_new_folder": ("features",)}
        for cache in cleared.get(name, ()):
            shutil.rmtree(_keras_home() / "flowerkit" / cache, ignore_errors=True)
        result = step_train(folder)
    return {**result, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def _keras_home() -> Path:
    home = scale_root() / "keras_home"
    models = SHARED / "weights/keras_home/models"
    if models.is_dir() and not (home / "models").is_dir():
        shutil.copytree(models, home / "models")
    return home


def measure(size: int, name: str, feature_size: int | None = None) -> dict:
    """Runs `name` on `size` in a fresh process; its result."""
    environment = {**os.environ, "KERAS_HOME": str(_keras_home())}
    sized = ["--feature-size", str(feature_size)] if feature_size else []
    done = subprocess.run([sys.executable, "-m", "bench.scale", "--step", name, str(size), *sized],
                          env=environment, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-3:], "exit_code": done.returncode}
    return json.loads(lines[-1])


def summarise(size: int, steps: dict) -> dict:
    decodes = [steps[k]["seconds"] for k in ("decode", "decode_again") if steps.get(k, {}).get("seconds")]
    decode = sum(decodes) / len(decodes) if decodes else None
    seconds = {
        "decode": decode,
        "load_cold": steps.get("load_cold", {}).get("seconds"),
        "load_warm": steps.get("load_warm", {}).get("seconds"),
        "search": steps.get("search_split", {}).get("search_seconds"),
        "split": steps.get("search_split", {}).get("split_seconds"),
        "train": steps.get("train", {}).get("seconds"),
        "train_new_folder": steps.get("train_new_folder", {}).get("seconds"),
        "train_again": steps.get("train_again", {}).get("seconds"),
    }
    return {
        "images": size,
        "seconds": seconds,
        "over_decode": {k: seconds[k] / decode for k in RATIO_STEPS if seconds[k] and decode},
        "peak_rss_gib": {k: v["peak_rss_bytes"] / 1024**3 for k, v in steps.items() if "peak_rss_bytes" in v},
        "steps": steps,
    }


def growth(sizes: dict) -> dict:
    """Per step, between consecutive measured sizes: the cost ratio and the
    log-log slope (1.0: linear)."""
    measured = sorted(sizes.values(), key=lambda s: s["images"])
    out = {}
    for small, large in zip(measured, measured[1:]):
        key = f"{small['images']}_to_{large['images']}"
        for step, seconds in large["seconds"].items():
            before = small["seconds"].get(step)
            if seconds and before:
                out.setdefault(step, {})[key] = {
                    "ratio": seconds / before,
                    "slope": math.log(seconds / before) / math.log(large["images"] / small["images"]),
                }
    return out


def chart(sizes: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    measured = sorted(sizes.values(), key=lambda s: s["images"])
    figure = Figure(figsize=(7.5, 5))
    axis = figure.subplots()
    for step in ("decode", "load_cold", "load_warm", "search", "split", "train", "train_new_folder",
                 "train_again"):
        points = [(s["images"], s["seconds"][step]) for s in measured if s["seconds"].get(step)]
        if points:
            axis.plot(*zip(*points), marker="o", label=step.replace("_", " "))
    if measured:
        first = measured[0]
        reference = first["seconds"].get("decode")
        if reference:
            xs = [s["images"] for s in measured]
            axis.plot(xs, [reference * x / first["images"] for x in xs], "k:", label="linear (slope 1)")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("images")
    axis.set_ylabel("seconds")
    axis.set_title("flowerkit data passes against folder size (2-core CPU)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _feature_pass(row: dict, previous: dict) -> dict:
    """A planted_features row that found its features cached keeps the time
    of the pass that computed them (`feature_pass`), from the row before it."""
    if row.get("feature_cache") != "hit":
        return {}
    if previous.get("feature_cache") == "computed":
        return {"feature_pass": {"seconds": previous["feature_seconds"], "date": previous.get("date")}}
    return {"feature_pass": previous["feature_pass"]} if "feature_pass" in previous else {}


def step_key(name: str, feature_size: int | None, backend: str | None = "jax") -> str:
    """The row's name: planted_features at another size, and the train steps
    on another backend than JAX (the chart's), are rows of their own."""
    if name == "planted_features" and feature_size:
        return f"{name}_{feature_size}px"
    if name in TRAIN_STEPS and backend not in (None, "jax"):
        return f"{name}_{backend}"
    return name


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("sizes", nargs="+", type=int)
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--steps", nargs="+", choices=STEPS, help="only these steps, the others kept")
    parser.add_argument("--feature-size", type=int, metavar="PIXELS",
                        help="planted_features: the recipe's features at this size (default: its own)")
    args = parser.parse_args(argv)
    if args.step:  # a child process: one step, one JSON line
        print(json.dumps(run_step(args.step, args.sizes[0], args.feature_size)), flush=True)
        return
    path = RESULTS / "scale.json"
    result = json.loads(path.read_text()) if path.is_file() else {"sizes": {}}
    for size in args.sizes:
        if not (dataset_folder(size) / "complete.json").is_file():
            print(f"bench.scale: {dataset_folder(size)} is not complete: python -m bench.scale_data {size}")
            continue
        kept = result["sizes"].get(str(size), {}).get("steps", {}) if args.steps else {}
        measured = {name: step_key(name, args.feature_size, os.environ.get("KERAS_BACKEND"))
                    for name in args.steps or STEPS
                    if not (name in TRAIN_STEPS and args.no_train)}
        steps = {name: row for name, row in kept.items() if name not in measured.values()}
        for name, key in measured.items():
            print(f"bench.scale: {size} {name} ...", flush=True)
            steps[key] = {**measure(size, name, args.feature_size), "backend": os.environ.get("KERAS_BACKEND"),
                          "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            steps[key].update(_feature_pass(steps[key], kept.get(key, {})))
            print(f"bench.scale: {size} {name}: {json.dumps(steps[key])}", flush=True)
        result["sizes"][str(size)] = summarise(size, steps)
        result["growth"] = growth(result["sizes"])
        result.pop("backend", None)  # each step's row names its own
        result.update(targets=TARGETS, cpus=os.cpu_count(),
                      date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      note="one run per size on a shared 2-core VM (other jobs running): compare ratios; steps "
                           "measured again (--steps) carry their own date")
        write_result("scale", result)
        chart(result["sizes"], RESULTS / "scale.png")


if __name__ == "__main__":
    main()
