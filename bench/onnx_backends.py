"""One model's ONNX exports from every backend, timed in ONNX Runtime side by
side: does the runtime a user gets depend on the backend they trained on?

    KERAS_BACKEND=tensorflow python -m bench.onnx_backends export FOLDER   # then jax, then torch
    python -m bench.onnx_backends time FOLDER [--batches 1,32] [--rounds 5]

`export` saves the benchmark's network (bench.engine_table.benchmark_run,
random weights) in FOLDER the first time, so that every backend exports the
same weights, to FOLDER/BACKEND.onnx. `time` loads each FOLDER/*.onnx in ONNX
Runtime, times them at each batch with the rounds interleaved, and writes
bench/results/onnx_backends.json: images/s and the ratio to the fastest
export at that batch. (Agreement with Keras is `flowerkit export`'s check,
tests/test_export.py: with random weights every output here is 1/5.)
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from bench.engine_table import benchmark_run, interleaved_medians
from bench.measure import random_batch
from bench.report import write_result
from flowerkit.backends.devices import backend
from flowerkit.exporting import export, load_exported
from flowerkit.inference.loading import load_run


def export_here(folder: Path) -> Path:
    """This backend's ONNX export of FOLDER/model.keras (made first if absent)."""
    model_path = folder / "model.keras"
    if not model_path.is_file():
        benchmark_run(folder)
    return export(model_path, "onnx", output=folder / f"{backend()}.onnx", verify=False, quiet=True).path


def time_exports(folder: Path, batches, rounds: int) -> dict:
    exports = {path.stem: load_exported(path, "onnx") for path in sorted(folder.glob("*.onnx"))}
    if not exports:
        raise SystemExit(f"bench.onnx_backends: error: no .onnx files in {folder}; run `export` first")
    images, _ = random_batch(load_run(folder / "model.keras").recipe.replace(batch_size=max(batches)))
    load_before = os.getloadavg()[0]
    rows = []
    for batch in batches:
        medians = interleaved_medians(exports, images[:batch], rounds)
        fastest = min(medians.values())
        for name, seconds in medians.items():
            rows.append({"backend": name, "batch": batch, "median_seconds": seconds,
                         "images_per_second": batch / seconds, "over_fastest": fastest / seconds})
    return {"runtime": next(iter(exports.values())).runtime, "cpus": os.cpu_count(),
            "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)], "rounds": rounds,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.onnx_backends", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("export", "time"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", help="the JSON file (default: bench/results/onnx_backends.json)")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    if args.step == "export":
        print(f"wrote {export_here(args.folder)}")
        return 0
    batches = [int(b) for b in args.batches.split(",")]
    write_result("onnx_backends", time_exports(args.folder, batches, args.rounds), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
