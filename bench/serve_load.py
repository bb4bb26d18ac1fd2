"""Load on `flowerkit serve`: requests/s and p50/p99 latency for 1, 8 and 32
concurrent clients, batching on (--max-batch 32) and off (--max-batch 1),
served from model.keras and from its ONNX export; then a load run of 32
clients x 50 requests that must have no failed request and end with the
server's resident memory within 10% of what it was after warm-up.

    KERAS_BACKEND=jax python -m bench.serve_load [--image-size 224] [--output FILE]

The model is the mobilenet_v2_035 recipe with untrained weights (speed
does not depend on them) at --image-size; each request is one real photo
from ../shared as the raw body. Traffic goes to 127.0.0.1 only. Rows are
written in pytest-benchmark's JSON shape (benchmarks[].extra_info with
"benchmark": "serve", stats.median = p50 seconds), to
bench/results/{backend}-{device}-serve.json by default.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from flowerkit.backends import devices as runtime
from flowerkit.exporting import export
from flowerkit.model import build_model
from flowerkit.config.recipe import get_preset
from tests.helpers import REPO, SHARED
from tests.serve_fixtures import free_port, wait_ready

CLIENTS = (1, 8, 32)
LOAD_CLIENTS, LOAD_REQUESTS = 32, 50
RSS_TOLERANCE = 0.10


def save_model(folder: Path, image_size: int) -> tuple[Path, Path]:
    recipe = get_preset("mobilenet_v2_035").replace(
        image_size=image_size, weights=None,
        class_names=("daisy", "dandelion", "roses", "sunflowers", "tulips"))
    model = build_model(recipe, compile=False)
    model.save(folder / "model.keras")
    recipe.save(folder / "recipe.json")
    onnx = export(folder / "model.keras", "onnx", verify=False).path
    return folder / "model.keras", onnx


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def load(url: str, bodies: list[bytes], clients: int, per_client: int) -> dict:
    """`clients` threads, each with its own keep-alive connection, sending
    `per_client` requests back to back; latencies of the successful ones."""
    latencies, failures, lock = [], [], threading.Lock()

    def client(offset):
        with httpx.Client(base_url=url, timeout=60) as session:
            for i in range(per_client):
                body = bodies[(offset + i) % len(bodies)]
                started = time.perf_counter()
                try:
                    response = session.post("/v1/predict", content=body, headers={"content-type": "image/jpeg"})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - started
                with lock:
                    (latencies if ok else failures).append(elapsed)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i * 7,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    milliseconds = np.asarray(latencies) * 1000
    return {
        "clients": clients, "requests": clients * per_client, "failed": len(failures),
        "wall_seconds": round(wall, 3), "requests_per_second": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(milliseconds, 50)), 2),
        "p99_ms": round(float(np.percentile(milliseconds, 99)), 2),
        "latencies": latencies,
    }


def serve(model: Path, max_batch: int):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flowerkit.serve", str(model), "--port", str(port), "--max-batch",
         str(max_batch), "--max-wait-ms", "5", "--max-images", "1"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, timeout=300, process=process)
    return process, url


def row(info: dict, common: dict) -> dict:
    latencies = sorted(info.pop("latencies"))
    stats = {"median": float(np.median(latencies)), "min": latencies[0], "max": latencies[-1],
             "mean": float(np.mean(latencies)), "rounds": len(latencies)}
    name = f"serve[{info['model_format']}-{info['batching']}-{info['clients']}]"
    return {"name": name, "extra_info": {**common, **info}, "stats": stats}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--requests", type=int, default=96, help="requests per configuration (default 96)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    photos = sorted((SHARED / "data/flower_photos").glob("*/*.jpg"))[::97][:32]
    bodies = [path.read_bytes() for path in photos]
    common = {"benchmark": "serve", "backend": runtime.backend(), "device_kind": runtime.device_kind(),
              "device_name": runtime.device_summary()["name"], "precision": "float32",
              "recipe": "mobilenet_v2_035", "image_size": args.image_size, "max_wait_ms": 5,
              "versions": runtime.library_versions()}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        keras_model, onnx_model = save_model(Path(folder), args.image_size)
        for model_format, model in (("keras", keras_model), ("onnx", onnx_model)):
            for batching, max_batch in (("on", 32), ("off", 1)):
                process, url = serve(model, max_batch)
                try:
                    load(url, bodies, 8, 4)  # warm connections and caches
                    for clients in CLIENTS:
                        per_client = max(1, args.requests // clients)
                        info = load(url, bodies, clients, per_client)
                        info.update(model_format=model_format, batching=batching, max_batch=max_batch)
                        rows.append(row(info, common))
                        print(json.dumps({k: v for k, v in rows[-1]["extra_info"].items() if k != "versions"}),
                              flush=True)
                    if batching == "on":
                        warm = resident_mib(process.pid)
                        info = load(url, bodies, LOAD_CLIENTS, LOAD_REQUESTS)
                        end = resident_mib(process.pid)
                        info.update(model_format=model_format, batching=batching, max_batch=max_batch,
                                    load_run=True, rss_after_warm_up_mib=round(warm, 1),
                                    rss_end_mib=round(end, 1), rss_growth=round(end / warm - 1, 4))
                        rows.append(row(info, common))
                        print(json.dumps({k: v for k, v in rows[-1]["extra_info"].items() if k != "versions"}),
                              flush=True)
                        assert info["failed"] == 0, f"{info['failed']} failed requests in the load run"
                        assert abs(end / warm - 1) <= RSS_TOLERANCE, f"RSS {warm:.0f} -> {end:.0f} MiB"
                finally:
                    process.terminate()
                    process.wait(timeout=30)
    output = args.output or REPO / f"bench/results/{common['backend']}-{common['device_name'].replace(' ', '_')}-serve.json"
    output.write_text(json.dumps({"datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                                  "benchmarks": rows}, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
