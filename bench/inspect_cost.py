"""Cost of `flowerkit inspect` on all shared photos (issue 24): wall time
with the features not cached (a fresh KERAS_HOME holding only the weights)
and again cached, against the feature pass it contains (inspection.json's
timings.feature_seconds of the uncached run). Writes
bench/results/inspect_cost.json.

    KERAS_BACKEND=jax python -m bench.inspect_cost [PHOTOS]"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import write_result

PHOTOS = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/flower_photos").resolve()
SHARED = Path(os.environ.get("FLOWERKIT_SHARED", "../shared")).resolve()


def timed_inspect(home: Path, output: Path) -> tuple[float, dict]:
    env = {**os.environ, "KERAS_HOME": str(home)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flowerkit", "inspect", str(PHOTOS), "--output", str(output)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return seconds, json.loads((output / "inspection.json").read_text())


def main():
    work = Path(tempfile.mkdtemp(prefix="inspect-cost-"))
    home = work / "keras_home"
    shutil.copytree(SHARED / "weights" / "keras_home", home)
    runs = {}
    for name in ("uncached", "cached"):
        seconds, found = timed_inspect(home, work / name)
        runs[name] = {"wall_seconds": seconds, "timings": found["timings"]}
        print(name, f"{seconds:.1f} s", json.dumps(found["timings"]), flush=True)
    feature_pass = runs["uncached"]["timings"]["feature_seconds"]
    result = {
        "backend": os.environ.get("KERAS_BACKEND"), "images": found["images"],
        "preset": "mobilenet_v2_035 (default)",
        "feature_pass_seconds": feature_pass,
        "uncached_over_feature_pass": runs["uncached"]["wall_seconds"] / feature_pass,
        "uncached_inside_over_feature_pass": runs["uncached"]["timings"]["total_seconds"] / feature_pass,
        "runs": runs,
        "note": "wall_seconds includes process start and backend import; one run each, 2-core CPU",
    }
    write_result("inspect_cost", result)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
