"""Inference engines by batch size, on this backend and machine: Keras (the
backend's own) and ONNX Runtime / LiteRT on the model's cached, verified
exports (`flowerkit.exporting.engines`), each timed at batches 1 to 64 in
one process with the rounds interleaved, so that a busy machine slows all
alike. The data behind `policy.inference_engine`'s table.

    KERAS_BACKEND=torch python -m bench.engine_table [--model runs/x/model.keras]
        [--batches 1,2,4,8,16,32,64] [--rounds 5] [--output bench/results/engines-torch.json]

Without --model: the throughput benchmark's network (mobilenet_v2_035_finetune,
MobileNetV2 alpha 0.35 at 224x224, random weights) in a temporary run folder.
One row per engine and batch: median seconds, images/s, speed relative to
Keras; per batch, the engine `auto` picks and the fastest measured.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
from pathlib import Path

from bench.measure import random_batch, timed
from bench.report import RESULTS, write_result
from flowerkit import build_model, get_preset
from flowerkit.backends.devices import backend, device_kind, device_summary
from flowerkit.backends.policy import inference_engine
from flowerkit.exporting.engines import available_engines, cached_export
from flowerkit.inference.loading import load_run

BATCHES = (1, 2, 4, 8, 16, 32, 64)


def benchmark_run(folder: Path) -> Path:
    """The throughput benchmark's network, random weights, saved as a run folder."""
    recipe = get_preset("mobilenet_v2_035_finetune").replace(
        weights=None, precision="float32", class_names=tuple(f"c{i}" for i in range(5)))
    folder.mkdir(parents=True, exist_ok=True)
    build_model(recipe).save(folder / "model.keras")
    recipe.save(folder / "recipe.json")
    return folder / "model.keras"


def engine_predictors(model_path) -> dict:
    """engine -> predict(images), for every engine this environment runs:
    Keras as `flowerkit predict` loads it, the others on their cached export."""
    predictors = {"keras": load_run(model_path).model.predict_on_batch}
    for engine in available_engines():
        if engine != "keras":
            predictors[engine] = cached_export(model_path, engine).predict
    return predictors


def interleaved_medians(predictors: dict, images, rounds: int) -> dict:
    """name -> median seconds of `predict(images)`, after one warm-up call
    each at this shape, the names taking turns within every round."""
    for predict in predictors.values():
        predict(images)
    seconds = {name: [] for name in predictors}
    for _ in range(rounds):
        for name, predict in predictors.items():
            seconds[name].append(timed(lambda: predict(images)))
    return {name: statistics.median(values) for name, values in seconds.items()}


def engine_rows(predictors: dict, images, batches, rounds: int) -> list[dict]:
    rows = []
    available = tuple(predictors)
    for batch in batches:
        medians = interleaved_medians(predictors, images[:batch], rounds)
        auto = inference_engine(backend(), device_kind(), available, "auto")
        fastest = min(medians, key=medians.get)
        for engine, seconds in medians.items():
            rows.append({"engine": engine, "batch": batch, "median_seconds": seconds,
                         "images_per_second": batch / seconds, "over_keras": medians["keras"] / seconds,
                         "auto": auto, "fastest": fastest})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_table", description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a saved run's model.keras (default: the benchmark's network)")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", help=f"the JSON file (default: {RESULTS}/engines-BACKEND.json)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    model_path = Path(args.model) if args.model else benchmark_run(Path(tempfile.mkdtemp(prefix="engines_")))
    predictors = engine_predictors(model_path)
    recipe = load_run(model_path).recipe.replace(batch_size=max(batches))
    images, _ = random_batch(recipe)
    load_before = os.getloadavg()[0]
    rows = engine_rows(predictors, images, batches, args.rounds)
    result = {"backend": backend(), "device": device_summary()["name"], "cpus": os.cpu_count(),
              "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
              "model": str(args.model or "mobilenet_v2_035_finetune, random weights"),
              "image_size": recipe.image_size, "rounds": args.rounds,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),  # PyTorch's threads, where set
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), "rows": rows}
    write_result(f"engines-{backend()}", result, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
