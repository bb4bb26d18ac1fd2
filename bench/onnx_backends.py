"""One model's ONNX exports from every backend, timed in ONNX Runtime side by
side: does the runtime a user gets depend on the backend they trained on?

    KERAS_BACKEND=tensorflow python -m bench.onnx_backends export FOLDER \
        --photos ../shared/data/flower_photos                             # then jax, then torch
    KERAS_BACKEND=torch python -m bench.onnx_backends time FOLDER [--batches 1,32] [--rounds 5] [--threads 1]

`export` saves the benchmark's network (MobileNetV2-0.35 at 224 px, the
shared ImageNet weights, a seeded head) in FOLDER the first time, so that every
backend exports the same weights, to FOLDER/BACKEND.onnx, checked against Keras
on 32 validation photos of --photos (else seeded noise; FOLDER/BACKEND.json). `time` loads each
FOLDER/*.onnx in ONNX Runtime, times them at each batch with the rounds
interleaved in a shuffled order (a sample at batch B is largest batch / B
calls in a row), and writes bench/results/onnx_backends.json: images/s, the ratio
to the fastest export at that batch, each export's difference from Keras and
from the first export on the timed batch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.measure import random_batch
from bench.report import write_result
from flowerkit import build_model, get_preset
from flowerkit.backends.devices import backend
from flowerkit.exporting import export
from flowerkit.inference.loading import load_run

SHARED = Path(os.environ.get("FLOWERKIT_SHARED", "../shared"))
WEIGHTS = SHARED / "weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5"


def pretrained_run(folder: Path) -> Path:
    """The throughput benchmark's network with ImageNet weights (random
    weights give 1/5 for every class, which no difference would show)."""
    recipe = get_preset("mobilenet_v2_035_finetune").replace(
        weights=str(WEIGHTS), precision="float32",
        class_names=("daisy", "dandelion", "roses", "sunflowers", "tulips"))
    folder.mkdir(parents=True, exist_ok=True)
    build_model(recipe).save(folder / "model.keras")
    recipe.save(folder / "recipe.json")
    return folder / "model.keras"


def export_here(folder: Path, photos=None) -> Path:
    """This backend's ONNX export of FOLDER/model.keras (made first if absent),
    compared with Keras on 32 validation photos of `photos` (FOLDER/BACKEND.json)."""
    model_path = folder / "model.keras"
    if not model_path.is_file():
        pretrained_run(folder)
    result = export(model_path, "onnx", output=folder / f"{backend()}.onnx", calibration_data=photos,
                    validation_images=32, probe_images=32, quiet=True)
    result.path.with_suffix(".json").write_text(json.dumps(result.to_dict(), indent=1))
    print(result.summary())
    return result.path


def _checked(path: Path) -> dict:
    """The export's check against Keras, as `export_here` recorded it."""
    record = path.with_suffix(".json")
    if not record.is_file():
        return {}
    checks = json.loads(record.read_text())
    return {"max_abs_diff_to_keras": checks["max_abs_diff"], "probe_photos": checks["probe_images"]}


def time_exports(folder: Path, batches, rounds: int, threads: int = 0) -> dict:
    exports = {path.stem: _session(path, threads) for path in sorted(folder.glob("*.onnx"))}
    if not exports:
        raise SystemExit(f"bench.onnx_backends: error: no .onnx files in {folder}; run `export` first")
    images, _ = random_batch(load_run(folder / "model.keras").recipe.replace(batch_size=max(batches)))
    load_before = os.getloadavg()[0]
    outputs = {name: predict(images) for name, predict in exports.items()}
    first = next(iter(outputs.values()))
    rows = []
    for batch in batches:
        medians = shuffled_medians(exports, images[:batch], rounds, repeats=max(batches) // batch)
        fastest = min(medians.values())
        for name, seconds in medians.items():
            rows.append({"backend": name, "batch": batch, "median_seconds": seconds,
                         "images_per_second": batch / seconds, "over_fastest": fastest / seconds,
                         "nodes": len(onnx_nodes(folder / f"{name}.onnx")),
                         "max_abs_diff_to_first": float(np.max(np.abs(outputs[name] - first))),
                         **_checked(folder / f"{name}.onnx")})
    import onnxruntime  # the runtime timed; not needed to export

    return {"runtime": f"onnxruntime {onnxruntime.__version__}", "cpus": os.cpu_count(),
            "threads": threads or "default", "images_per_sample": max(batches),
            "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)], "rounds": rounds,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), "rows": rows}


def shuffled_medians(exports: dict, images, rounds: int, repeats: int = 1, seed: int = 0) -> dict:
    """name -> median seconds of one call on `images`, after a warm-up call
    each. Every round times each export once, in a new random order (in a
    fixed order a loaded machine's periodic stalls fell on the same file),
    each sample `repeats` calls in a row (a batch-1 call is a few ms)."""
    rng = random.Random(seed)
    for predict in exports.values():
        predict(images)
    seconds = {name: [] for name in exports}
    for _ in range(rounds):
        for name in rng.sample(list(exports), len(exports)):
            predict = exports[name]
            started = time.perf_counter()
            for _ in range(repeats):
                predict(images)
            seconds[name].append((time.perf_counter() - started) / repeats)
    return {name: statistics.median(values) for name, values in seconds.items()}


def _session(path: Path, threads: int):
    """predict(images) on the export in ONNX Runtime; with `threads`, that many
    threads per operator (one keeps a loaded machine's thread stalls out)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # 0: ONNX Runtime's default
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


def onnx_nodes(path: Path) -> list[str]:
    """The op type of every node of an ONNX file's main graph."""
    import onnx

    return [node.op_type for node in onnx.load(str(path)).graph.node]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.onnx_backends", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("export", "time"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--photos", help="export: check against Keras on these photos' validation split")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0,
                        help="time: threads per operator (default: ONNX Runtime's)")
    parser.add_argument("--output", help="the JSON file (default: bench/results/onnx_backends.json)")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    if args.step == "export":
        print(f"wrote {export_here(args.folder, args.photos)}")
        return 0
    batches = [int(b) for b in args.batches.split(",")]
    write_result("onnx_backends", time_exports(args.folder, batches, args.rounds, args.threads), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
