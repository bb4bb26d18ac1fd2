"""PyTorch data-parallel scaling under torchrun: the same short run of
`flowerkit.train` on 1 process and on N (one per GPU; gloo processes on a
CPU in a dry run), each device on the same per-device batch, and the
scaling efficiency: images/s on N / (N x images/s on 1). For bench/gpu.sh:

    python -m bench.torch_scaling OUT_JSON PROCESSES PHOTOS_DIR|- [--dry-run]

Without photos it trains on a small synthetic folder (tests/helpers.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

# (arguments, per-device batch): full size on GPUs; tiny on a CPU.
FULL = (["--preset", "mobilenet_v2_035", "--feature-cache", "off", "--max-images", "1024"], 64)
TINY = (["--preset", "dense", "--image-size", "32", "--head-units", "16", "--max-images", "96"], 8)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def run(processes: int, photos: Path, output: Path, arguments: list[str], global_batch: int,
        env: dict | None = None) -> dict:
    """One `flowerkit.train` run on `processes` processes: its metrics.json."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
               f"--master_port={_free_port()}", "-m", "flowerkit.train", *arguments,
               "--data", str(photos), "--output", str(output), "--quiet",
               "--batch-size", str(global_batch),
               "--distribution", "data_parallel" if processes > 1 else "none"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    return json.loads((output / "metrics.json").read_text())


def main():
    out, processes, photos = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    dry_run = "--dry-run" in sys.argv
    with tempfile.TemporaryDirectory(prefix="flowerkit-scaling-") as folder:
        if photos == "-":
            from tests.helpers import make_image_folder

            photos = make_image_folder(Path(folder) / "photos", per_class=32)
        rows = []
        for count in sorted({1, processes}):
            arguments, per_device = TINY if dry_run else FULL
            metrics = run(count, Path(photos), Path(folder) / f"run-{count}", [*arguments, "--epochs", "3"],
                          per_device * count)
            rows.append({key: metrics[key] for key in (
                "backend", "strategy", "devices", "processes", "global_batch", "per_device_batch",
                "train_images_per_second", "val_accuracy", "device")})
    single, most = rows[0]["train_images_per_second"], rows[-1]["train_images_per_second"]
    efficiency = most / (processes * single) if single and most else None
    out.write_text(json.dumps({"benchmark": "torch_data_parallel_scaling", "rows": rows,
                               "scaling_efficiency": efficiency}, indent=1))
    for row in rows:
        print(f"{row['processes']} process(es): {row['train_images_per_second']:.1f} images/s, "
              f"val_accuracy {row['val_accuracy']:.3f}")
    print(f"scaling efficiency on {processes}: {efficiency}")


if __name__ == "__main__":
    main()
