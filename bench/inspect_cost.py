"""Cost of `flowerkit inspect` on all shared photos (issue 24): wall time
with the features not cached (a fresh KERAS_HOME holding only the weights)
and again cached, against the feature pass it contains (inspection.json's
timings.feature_seconds of the uncached run). Writes
bench/results/inspect_cost.json, or NAME.json.

    KERAS_BACKEND=jax python -m bench.inspect_cost [PHOTOS] [--name NAME] [--manifests-from KERAS_HOME]

--manifests-from copies the dataset manifests of another Keras cache (the
scale benchmark's, `bench.scale`) so that indexing and hashing start warm,
as they do from a user's second run on: issue 31's 100k row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import write_result

SHARED = Path(os.environ.get("FLOWERKIT_SHARED", "../shared")).resolve()


def timed_inspect(photos: Path, home: Path, output: Path) -> tuple[float, dict]:
    env = {**os.environ, "KERAS_HOME": str(home)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flowerkit", "inspect", str(photos), "--output", str(output)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return seconds, json.loads((output / "inspection.json").read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="?", default="../shared/data/flower_photos", type=Path)
    parser.add_argument("--name", default="inspect_cost", help="result file name, without .json")
    parser.add_argument("--manifests-from", type=Path, help="a KERAS_HOME whose dataset manifests to start from")
    args = parser.parse_args(argv)
    photos = args.photos.resolve()
    work = Path(tempfile.mkdtemp(prefix="inspect-cost-"))
    home = work / "keras_home"
    shutil.copytree(SHARED / "weights" / "keras_home", home)
    if args.manifests_from:
        shutil.copytree(args.manifests_from / "flowerkit" / "manifests", home / "flowerkit" / "manifests")
    runs = {}
    for name in ("uncached", "cached"):
        seconds, found = timed_inspect(photos, home, work / name)
        runs[name] = {"wall_seconds": seconds, "timings": found["timings"]}
        print(name, f"{seconds:.1f} s", json.dumps(found["timings"]), flush=True)
    feature_pass = runs["uncached"]["timings"]["feature_seconds"]
    result = {
        "backend": os.environ.get("KERAS_BACKEND"), "images": found["images"],
        "preset": "mobilenet_v2_035 (default)", "manifest": "warm" if args.manifests_from else "cold",
        "feature_pass_seconds": feature_pass,
        "uncached_over_feature_pass": runs["uncached"]["wall_seconds"] / feature_pass,
        "uncached_inside_over_feature_pass": runs["uncached"]["timings"]["total_seconds"] / feature_pass,
        "runs": runs,
        "note": "wall_seconds includes process start and backend import; one run each, 2-core CPU",
    }
    write_result(args.name, result)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
