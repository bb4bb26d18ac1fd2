"""The cold data check against one plain decoding pass (issue 31): on a
class-per-folder source, index + hashes + duplicate search with no
manifest, read in threads only and with the worker processes whatever
the CPU count (`flowerkit.data.manifest.read_files`), each between two decoding passes
(`bench.scale`'s, 4 threads) in the same process; the ratios are to the
mean of the two passes around it. CPU seconds (this process and its
workers) are kept too: on a shared machine they vary less than wall time.
Writes bench/results/manifest_cold.json.

    python -m bench.manifest_cold FOLDER [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import write_result
from bench.scale import step_decode

MODES = ("threads", "processes")


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cold_check(folder: Path, mode: str) -> dict:
    from flowerkit.data import manifest
    from flowerkit.data.duplicates import find_duplicates
    from flowerkit.data.hashing import hash_index
    from flowerkit.data.sources import index_source

    manifest.manifest_path(str(folder)).unlink(missing_ok=True)
    minimum = manifest.POOL_MIN_CPUS
    manifest.POOL_MIN_CPUS = 1 if mode == "processes" else float("inf")
    started, cpu = time.perf_counter(), cpu_seconds()
    try:
        index = index_source(str(folder), quiet=True)
        find_duplicates(hash_index(index, quiet=True), index.labels)
    finally:
        manifest.POOL_MIN_CPUS = minimum
    return {"seconds": time.perf_counter() - started, "cpu_seconds": cpu_seconds() - cpu}


def decode_pass(folder: Path) -> dict:
    cpu = cpu_seconds()
    return {**step_decode(folder), "cpu_seconds": cpu_seconds() - cpu}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="manifest-cold-")  # no manifest of earlier runs
    rows = []
    for round_ in range(arguments.rounds):
        for mode in MODES:
            before = decode_pass(arguments.folder)
            cold = cold_check(arguments.folder, mode)
            after = decode_pass(arguments.folder)
            decode = {key: (before[key] + after[key]) / 2 for key in ("seconds", "cpu_seconds")}
            rows.append({"round": round_, "mode": mode, "images": before["images"], "decode": decode,
                         "cold": cold, "over_decode": cold["seconds"] / decode["seconds"],
                         "cpu_over_decode": cold["cpu_seconds"] / decode["cpu_seconds"]})
            print(rows[-1], flush=True)
    medians = {mode: {key: statistics.median(r[key] for r in rows if r["mode"] == mode)
                      for key in ("over_decode", "cpu_over_decode")} for mode in MODES}
    write_result("manifest_cold", {
        "folder": str(arguments.folder), "cpus": len(os.sched_getaffinity(0)), "load_average": os.getloadavg(),
        "median": medians, "rows": rows, "target_over_decode": 2.0,
    })


if __name__ == "__main__":
    main()
