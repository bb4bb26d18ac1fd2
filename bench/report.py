"""Merge benchmark runs into one markdown table and one PNG chart.

    python -m bench.report bench/results/*.json [--output bench/results/report]
    python -m bench.report bench/results/*.json bench/results/*/*.json \
        --markdown bench/results/README.md     # the results page and its chart

Each input is a pytest-benchmark JSON file written by `pytest bench
--benchmark-only` (one backend/device/precision per file). Columns are runs,
rows are benchmarks; each cell gives images/s and the ratio to the fastest
run in its row.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

DATA_PARALLEL = "train_step_data_parallel"  # bench/test_distribution.py, one row per device count
FEATURE_CACHE = "feature_cache_agreement"  # bench/test_accuracy.py, --bench-size full
ORDER = ["input_pipeline", "inference", "train_step_frozen", "train_step_finetune", "accuracy"]
LABELS = {
    "input_pipeline": "input pipeline (img/s)",
    "inference": "inference (img/s)",
    "train_step_frozen": "train step, frozen backbone (img/s)",
    "train_step_finetune": "train step, fine-tuning (img/s)",
    "accuracy": "training epochs (img/s; on cached features when frozen)",
}


RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, result: dict, path=None) -> Path:
    """A bench script's result as `bench/results/NAME.json`, or at `path`
    (printed too), for the page."""
    path = Path(path) if path else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path


def read_rows(path) -> list[dict]:
    """The rows a sweep script has saved at `path` so far (`save_row`)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else []


def save_row(path, row: dict, key: tuple[str, ...]) -> None:
    """Adds `row` to a sweep script's JSON list at `path` as soon as it is
    measured, in place of the row with the same values of the `key` fields."""
    rows = [r for r in read_rows(path) if [r[k] for k in key] != [row[k] for k in key]]
    Path(path).write_text(json.dumps([*rows, row], indent=1) + "\n")


def load_rows(paths) -> list[dict]:
    """One row per benchmark per file: its extra_info plus the run's name."""
    rows = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(f"bench.report: error: cannot read {path}: {error}")
        for bench in data.get("benchmarks", []) if isinstance(data, dict) else ():  # a script's rows
            info = dict(bench.get("extra_info", {}))
            if "benchmark" not in info:
                continue
            info["run"] = run_name(info)
            info["median_seconds"] = bench["stats"]["median"]
            info.setdefault("implementation", "flowerkit")
            info["group"] = group_name(Path(path), info["backend"])
            info["date"] = data.get("datetime", "")[:16].replace("T", " ")
            rows.append(info)
    if not rows:
        raise SystemExit("bench.report: error: no flowerkit benchmark rows in the given files")
    return rows


def group_name(path: Path, backend: str) -> str:
    """The suite run a file belongs to: its name without the backend
    (`jax-AMD_EPYC-float32-full.json` -> `AMD_EPYC-float32-full`), under
    its folder when that is not bench/results itself."""
    stem = path.stem.removeprefix(backend + "-")
    return stem if path.parent.name == "results" else f"{path.parent.name}/{stem}"


def run_name(info: dict) -> str:
    name = f"{info['backend']} {info['device_kind']}"
    if info.get("precision", "float32") != "float32":
        name += f" {info['precision']}"
    return name


def _runs(rows):
    runs = []
    for row in rows:
        if row["run"] not in runs:
            runs.append(row["run"])
    return runs


def _cell(rows, run, kind, implementation="flowerkit"):
    if kind == "accuracy":  # the epochs of one recipe, the first frozen one, in every column
        recipes = _accuracy_recipes(rows)
        return _accuracy_cell(rows, run, recipes[0]) if recipes else None
    for row in rows:
        if row["run"] == run and row["benchmark"] == kind and row["implementation"] == implementation:
            return row
    return None


def _native(rows, kind):
    """The native PyTorch reference's row for `kind`, from whichever run has it."""
    return next((r for r in rows if r["benchmark"] == kind and r["implementation"] == "native_torch"), None)


# Peers measured on every backend, each a row of its own under flowerkit's (bench/peers.py).
PEERS = {"plain_keras": "plain Keras", "onnx_runtime": "ONNX Runtime, exported", "litert": "LiteRT, exported"}


def _peer_rows(rows, runs, kind) -> list[str]:
    """Under a flowerkit speed row: each peer run on every backend (plain
    Keras, the exported runtimes) with flowerkit's ratio to it, flowerkit's
    ratio to the native reference, GFLOP/s with the fraction of the run's
    measured matmul peak, and the roofline."""
    mine = [_cell(rows, run, kind) for run in runs]
    native = _native(rows, kind)
    lines = []

    def speed(cell):
        return (cell or {}).get("images_per_second")

    for implementation, name in PEERS.items():
        peer = [_cell(rows, run, kind, implementation) for run in runs]
        if any(speed(c) for c in peer):
            lines.append(_row(f"↳ {name} (img/s; flowerkit ×)", [
                (m, p) if speed(p) else None for m, p in zip(mine, peer)],
                lambda c: f"{speed(c[1]):,.1f} ({_times(speed(c[0]), speed(c[1]))})"))
    if speed(native):
        lines.append(_row(f"↳ flowerkit × native PyTorch ({speed(native):,.1f} img/s)", mine,
                          lambda c: _times(speed(c), speed(native))))
    engines = [_engine_cell(rows, run, cell) for run, cell in zip(runs, mine)]
    if any(engine and engine[0] != "keras" for engine in engines):
        lines.append(_row("↳ as `flowerkit predict` runs it (`auto` engine: img/s; × native PyTorch)", engines,
                          lambda c: f"{c[0]}: {speed(c[1]):,.1f}"
                                    + (f" ({_times(speed(c[1]), speed(native))})" if speed(native) else "")))
    if any(c and c.get("fraction_of_peak") for c in mine):
        lines.append(_row("↳ GFLOP/s (fraction of measured peak)", mine,
                          lambda c: f"{c['gflops_per_second']:.1f} ({c['fraction_of_peak']:.0%})"
                          if c.get("fraction_of_peak") else "–"))
    if any(roofline(c) for c in mine if c):
        lines.append(_row("↳ roofline: img/s at the measured limit (flowerkit's share, bound)", mine,
                          _roofline_text))
    return lines


def _engine_cell(rows, run, cell):
    """(the engine `flowerkit predict` picked in this run, its speed row), or
    None where the run did not record it (runs before it did) or lacks that row."""
    engine = (cell or {}).get("auto_engine")
    if engine == "keras":
        return engine, cell
    peer = {"onnx": "onnx_runtime", "litert": "litert"}.get(engine)  # bench.peers.EXPORTED, inverted
    row = _cell(rows, run, cell["benchmark"], peer) if peer else None
    return (engine, row) if row else None


def roofline(cell) -> tuple[float, str] | None:
    """(images/s at this machine's limit, "compute" or "memory") for a row:
    its FLOPs at the measured matmul peak or its bytes (bench.flops) at the
    measured copy bandwidth, whichever takes longer; None where a figure
    is missing (runs before the bytes were recorded)."""
    fields = ("flops_per_image", "bytes_per_image", "peak_gflops", "copy_gb_per_second")
    flops, traffic, peak, bandwidth = (cell.get(field) for field in fields)
    if not (flops and traffic and peak and bandwidth):
        return None
    compute, memory = flops / (peak * 1e9), traffic / (bandwidth * 1e9)
    return 1 / max(compute, memory), "compute" if compute >= memory else "memory"


def _roofline_text(cell) -> str:
    limit = roofline(cell)
    if not limit:
        return "–"
    return f"{limit[0]:,.0f} ({cell['images_per_second'] / limit[0]:.0%}, {limit[1]})"


def _times(value, reference) -> str:
    return f"{value / reference:.2f}×" if value and reference else "–"


LIMITS = [
    ("machine: float32 matmul, backend (GFLOP/s)", "backend_matmul_gflops", "{:.1f}"),
    ("machine: float32 matmul, numpy (GFLOP/s)", "numpy_matmul_gflops", "{:.1f}"),
    ("machine: memory copy (GB/s, read + write)", "copy_gb_per_second", "{:.1f}"),
]


def markdown_table(rows) -> str:
    runs = _runs(rows)
    lines = [
        "| benchmark | " + " | ".join(runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    recipes = _accuracy_recipes(rows)
    for kind in ORDER:
        if kind == "accuracy":  # after the single-device train steps: one row per device count
            for devices in sorted({r["devices"] for r in rows if r["benchmark"] == DATA_PARALLEL}):
                cells = [_parallel_cell(rows, run, devices) for run in runs]
                label = f"train step, data parallel on {devices} device{'s' if devices > 1 else ''} (img/s)"
                lines.extend(_speed_row(label, cells))
        cells = [_cell(rows, run, kind) for run in runs]
        label = LABELS[kind] + (f" (`{recipes[0]}`)" if kind == "accuracy" and len(recipes) > 1 else "")
        speed_row = _speed_row(label, cells)
        lines.extend(speed_row)
        if speed_row and kind != "accuracy":
            lines.extend(_peer_rows(rows, runs, kind))
    limits = [_cell(rows, run, "machine_limits") for run in runs]
    if any(limits):
        for label, field, text in LIMITS:
            lines.append(_row(label, limits, lambda c: text.format(c[field])))
    agreement = [_cell(rows, run, FEATURE_CACHE) for run in runs]
    if any(agreement):
        lines.append(_row("feature cache on / off: validation accuracy (wall s)", agreement, _agreement_text))
    for recipe in recipes:
        # One block per accuracy recipe; named when there are several.
        name = f" (`{recipe}`)" if len(recipes) > 1 else ""
        accuracy = [_accuracy_cell(rows, run, recipe) for run in runs]
        lines.append(_row(f"final validation accuracy{name}", accuracy, lambda c: f"{c['val_accuracy']:.3f}"))
        lines.append(_row(f"training wall time (s){name}", accuracy, lambda c: f"{c['wall_seconds']:.0f}"))
        lines.append(_row(f"time to target accuracy (s){name}", accuracy, _time_to_target))
        if any(c and c.get("seconds_to", {}).get("0.95") for c in accuracy):
            lines.append(_row(f"time to 95% (s){name}", accuracy, _time_to_95))
        if any(_frozen_phase(c) for c in accuracy):
            lines.append(_row(f"frozen phase / feature pass{name}", accuracy,
                              lambda c: _frozen_ratio(c, "feature_seconds")))
        if any(_frozen_phase(c) and c.get("forward_pass_seconds") for c in accuracy):
            lines.append(_row(f"frozen phase / one forward pass{name}", accuracy,
                              lambda c: _frozen_ratio(c, "forward_pass_seconds")))
        if any(_first_epochs(_frozen_phase(c)) and c.get("forward_pass_seconds") for c in accuracy):
            lines.append(_row(f"frozen phase to epoch {TARGET_EPOCHS} / one forward pass{name}", accuracy,
                              _first_epochs_ratio))
    compile_cells = []
    for run in runs:
        seconds = [c["compile_seconds"] for c in rows if c["run"] == run and c.get("compile_seconds")]
        compile_cells.append(f"{max(seconds):.1f}" if seconds else "–")
    lines.append("| slowest warm-up / compile (s) | " + " | ".join(compile_cells) + " |")
    return "\n".join(lines) + "\n\n" + _setup_notes(rows)


def _agreement_text(cell) -> str:
    accuracy, seconds = cell["val_accuracy"], cell["wall_seconds"]
    return (f"{accuracy['cached']:.3f} / {accuracy['uncached']:.3f} "
            f"({seconds['cached']:.0f} / {seconds['uncached']:.0f})")


def _speed_row(label, cells) -> list[str]:
    """[the row], images/s and the ratio to the fastest cell; [] when no
    cell has a speed."""
    speeds = [c["images_per_second"] for c in cells if c and c.get("images_per_second")]
    if not speeds:
        return []
    fastest = max(speeds)
    texts = []
    for cell in cells:
        ips = (cell or {}).get("images_per_second")
        texts.append(f"{ips:,.1f} ({ips / fastest:.2f}×)" if ips else "–")
    return [f"| {label} | " + " | ".join(texts) + " |"]


def _parallel_cell(rows, run, devices):
    return next((r for r in rows if r["run"] == run and r["benchmark"] == DATA_PARALLEL
                 and r["devices"] == devices), None)


def _accuracy_recipes(rows) -> list[str]:
    """The accuracy recipes, frozen ones first, whatever the file order."""
    recipes = list(dict.fromkeys(r["recipe"] for r in rows if r["benchmark"] == "accuracy"))
    return sorted(recipes, key=lambda recipe: _fine_tunes(rows, recipe))


def _fine_tunes(rows, recipe) -> bool:
    return any(r.get("fine_tune_epochs") for r in rows if r["benchmark"] == "accuracy" and r["recipe"] == recipe)


def _epochs(row) -> str:
    fine_tune = row.get("fine_tune_epochs") or 0
    if fine_tune:
        return f"{row['epochs'] - fine_tune} + {fine_tune} epochs (head + fine-tuning)"
    return f"{row['epochs']} epochs"


def _accuracy_cell(rows, run, recipe):
    for row in rows:
        if row["run"] == run and row["benchmark"] == "accuracy" and row["recipe"] == recipe:
            return row
    return None


def _row(label, cells, text) -> str:
    return f"| {label} | " + " | ".join(text(c) if c else "–" for c in cells) + " |"


def _time_to_95(cell) -> str:
    seconds = cell.get("seconds_to", {}).get("0.95")
    return f"{seconds:.0f}" if seconds is not None else "not reached"


def _frozen_phase(cell):
    phases = (cell or {}).get("phases") or []
    return next((p for p in phases if p.get("feature_seconds")), None)


# The yardstick: 10 frozen epochs against one forward pass.
TARGET_EPOCHS = 10


def _first_epochs(phase) -> float | None:
    """Seconds of the frozen phase up to the end of its epoch 10 (features
    included), where it ran that many epochs in one process."""
    ends = (phase or {}).get("epoch_end_seconds") or []
    return ends[TARGET_EPOCHS - 1] if len(ends) >= TARGET_EPOCHS else None


def _first_epochs_ratio(cell) -> str:
    return _ratio_text(_first_epochs(_frozen_phase(cell)), cell.get("forward_pass_seconds"))


def _frozen_ratio(cell, yardstick: str) -> str:
    """Wall time of the whole frozen phase (features + every head epoch)
    against a yardstick in seconds: "feature_seconds", the feature
    computation alone (one pass per view), or "forward_pass_seconds", one
    plain inference pass over the training and validation photos."""
    phase = _frozen_phase(cell)
    return _ratio_text(phase and phase["seconds"], phase and (phase.get(yardstick) or cell.get(yardstick)))


def _ratio_text(seconds, yardstick) -> str:
    """"a s / b s = r×", or a dash where either is missing."""
    if not (seconds and yardstick):
        return "–"
    return f"{seconds:.0f} s / {yardstick:.0f} s = {seconds / yardstick:.2f}×"


def _time_to_target(cell) -> str:
    if cell.get("seconds_to_target") is None:
        return f"not reached ({cell['target_accuracy']:.0%})"
    return f"{cell['seconds_to_target']:.0f} ({cell['target_accuracy']:.0%}, epoch {cell['epochs_to_target']})"


def _setup_notes(rows) -> str:
    notes = []
    speed = next((r for r in rows if r["benchmark"] == "inference"), None)
    if speed:
        options = ", ".join(f"{k}={v}" for k, v in speed["backbone_kwargs"].items())
        notes.append(
            f"Throughput: recipe `{speed['recipe']}` ({speed['backbone']}"
            f"{' ' + options if options else ''}, random weights), "
            f"{speed['image_size']}×{speed['image_size']}, batch {speed['batch_size']}, "
            f"{speed['flops_per_image'] / 1e9:.2f} GFLOP per image forward."
        )
    first = {}  # each accuracy recipe's first row
    for row in rows:
        if row["benchmark"] == "accuracy":
            first.setdefault(row["recipe"], row)
    recipes = [first[recipe] for recipe in _accuracy_recipes(rows)]
    if recipes:
        epochs = ", ".join(f"`{r['recipe']}` {_epochs(r)}" for r in recipes)
        notes.append(
            f"Accuracy: {epochs}; {recipes[0]['train_images']} training / "
            f"{recipes[0]['validation_images']} validation images."
        )
    if any(_frozen_phase(r) for r in rows if r["benchmark"] == "accuracy"):
        notes.append(
            "Frozen phase: computing the feature cache and every head epoch (to epoch 10: "
            "up to the end of the tenth). Feature pass: the cache's computation alone (each "
            "training photo, and its mirror image where the recipe flips, each validation "
            "photo). One forward pass: the same extractor once over each training and "
            "validation photo, decoding included, timed after training."
        )
    devices = sorted({f"{r['device_kind']}: {r['device_name']} ×{r['device_count']}" for r in rows})
    notes.append("Devices: " + "; ".join(devices) + ".")
    versions = {}
    for row in rows:
        for package in ("keras", "tensorflow", "jax", "torch"):
            if package in row.get("versions", {}):
                versions[package] = row["versions"][package]
    notes.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    dates = sorted({r["date"] for r in rows if r.get("date")})
    if dates:
        notes.append(f"Date (UTC): {dates[0]}" + (f" to {dates[-1]}" if len(dates) > 1 else "") + ".")
    if any(r["implementation"] != "flowerkit" for r in rows):
        notes.append(
            "Peers (bench/peers.py), same network, size, batch and data in the same run: plain Keras is "
            "the stock keras.applications network with Keras's compile defaults and no flowerkit fast "
            "path; native PyTorch is torchvision's MobileNetV2, channels-last, in the torch run; "
            "ONNX Runtime and LiteRT run flowerkit's model as `flowerkit export` writes it, where the "
            "backend can export it at the row's batch (not LiteRT from PyTorch: batch 1 only).")
    if any(roofline(r) for r in rows):
        notes.append(
            "Roofline: the row's FLOPs at the run's measured matmul peak or its bytes at the measured "
            "copy bandwidth, whichever is slower; bytes as a fully fused network moves them (each "
            "convolution's output written and read once; bench/flops.py).")
    notes.append("Cells: median images/s (ratio to the fastest run in the row).")
    return "\n".join(notes) + "\n"


def _groups(rows) -> list[str]:
    """Suite runs, newest first."""
    newest = {}
    for row in rows:
        newest[row["group"]] = max(newest.get(row["group"], ""), row.get("date") or "")
    return sorted(newest, key=lambda group: newest[group], reverse=True)


def serving_table(rows) -> list[str]:
    """`bench/serve_load.py`'s rows: requests/s and latency per model, batching, clients."""
    served = [r for r in rows if r["benchmark"] == "serve"]
    if not served:
        return []
    lines = [f"## Serving: `{served[0]['group']}` ({served[0]['backend']}, {served[0]['date']})", "",
             "| model | batching | clients | requests | failed | requests/s | p50 (ms) | p99 (ms) | "
             "resident memory, warm-up → end |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in served:
        memory = (f"{r['rss_after_warm_up_mib']:.0f} → {r['rss_end_mib']:.0f} MiB ({r['rss_growth']:+.1%})"
                  if r.get("load_run") else "")
        lines.append(f"| {r['model_format']} | {r['batching']} | {r['clients']} | {r['requests']} | "
                     f"{r['failed']} | {r['requests_per_second']:.1f} | {r['p50_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} | {memory} |")
    return lines + [""]


def inspection_section(paths) -> list[str]:
    """`bench/inspect_*.py`'s results (issue 24's targets), where present."""
    found = {Path(p).stem: json.loads(Path(p).read_text()) for p in paths
             if Path(p).name.startswith(("inspect_", "label_noise")) and Path(p).suffix == ".json"}
    if not found:
        return []
    lines = ["## Data inspection (`flowerkit inspect`)", ""]
    shared = found.get("inspect_shared")
    if shared:
        lines.append(f"- The shared photos ({shared['images']}), hashes only, as `train` checks them: "
                     f"{shared['duplicate_groups']} duplicate groups ({shared['exact_groups']} "
                     f"byte-identical), {shared['conflict_groups']} across classes; the old random split "
                     f"put {shared['groups_across_the_old_split']} groups on both sides, the "
                     f"duplicate-aware split keeps all {shared['groups_kept_together_by_the_new_split']} "
                     f"together (`bench/inspect_shared.py`).")
    planted = found.get("inspect_planted")
    if planted:
        lines.append(f"- Planted near-duplicates ({planted['planted_pairs']} pairs among "
                     f"{planted['images']} images): recall {planted['recall']:.1%}, precision "
                     f"{planted['precision_on_planted_images']:.1%} (`bench/inspect_planted.py`).")
    for name in sorted(n for n in found if n.startswith("inspect_imbalance")):
        balance = found[name]
        weights = balance["class_weight"]
        lines.append(f"- Imbalance ({balance['settings']['kept_whole']} whole, the others cut to "
                     f"{balance['settings']['others_fraction']:.0%}; {balance['backend']}): validation "
                     f"balanced accuracy {weights['none']['val_balanced_accuracy']:.3f} with "
                     f"`class_weight=none`, {weights['auto']['val_balanced_accuracy']:.3f} with `auto` "
                     f"(`bench/inspect_imbalance.py`).")
    for name in sorted(n for n in found if n.startswith("inspect_cost")):
        cost = found[name]
        lines.append(f"- `inspect` on {cost['images']:,} images ({cost['backend']}, `{name}`): "
                     f"{cost['runs']['uncached']['wall_seconds']:.0f} s uncached, "
                     f"{cost['uncached_over_feature_pass']:.2f}x its feature pass; "
                     f"{cost['runs']['cached']['wall_seconds']:.0f} s cached (`bench/inspect_cost.py`).")
    for row in found.get("label_noise", {}).get("rows", []):
        lines.append(f"- Label check, {row['flipped']:,} of {row['images']:,} labels flipped "
                     f"({row['data']}, {row['classes']} classes, batch {row['batch_rows']}): "
                     f"{row['recall_top_2x']:.1%} of them in the top {2 * row['flipped']:,}, "
                     f"{row['seconds']:.0f} s (`bench/label_noise.py`).")
    return lines + [""]


def engine_section(paths) -> list[str]:
    """`bench/engine_table.py`'s rows: each engine's images/s per batch size
    on each backend, with the engine `auto` picks there and the fastest."""
    tables = [json.loads(Path(p).read_text()) for p in paths
              if Path(p).name.startswith("engines-") and Path(p).suffix == ".json"]
    tables.sort(key=lambda table: (table["backend"], table.get("omp_num_threads") or ""))
    if not tables:
        return []
    engines = list(dict.fromkeys(row["engine"] for table in tables for row in table["rows"]))
    lines = ["## Inference engines by batch (`bench/engine_table.py`)", "",
             "| backend | batch | " + " | ".join(f"{e} (img/s, × keras)" for e in engines)
             + " | `auto` picks | fastest |", "|---|---:|" + "---:|" * len(engines) + "---|---|"]
    for table in tables:
        for batch in dict.fromkeys(row["batch"] for row in table["rows"]):
            rows = {row["engine"]: row for row in table["rows"] if row["batch"] == batch}
            cells = [f"{rows[e]['images_per_second']:,.1f} ({rows[e]['over_keras']:.2f}×)" if e in rows else "–"
                     for e in engines]
            first = next(iter(rows.values()))
            threads = f" (OMP_NUM_THREADS={table['omp_num_threads']})" if table.get("omp_num_threads") else ""
            lines.append(f"| {table['backend']}{threads} | {batch} | " + " | ".join(cells)
                         + f" | {first['auto']} | {first['fastest']} |")
    notes = "; ".join(f"{t['backend']}: {t['date']}, {t['model']} at {t['image_size']} px, {t['rounds']} "
                      f"interleaved rounds, load average {t['load_average'][0]}–{t['load_average'][1]} on "
                      f"{t['cpus']} CPUs" for t in tables)
    return lines + ["", notes + ".", ""]


def onnx_backends_section(paths) -> list[str]:
    """`bench/onnx_backends.py`'s rows: one model's ONNX export from each
    backend in ONNX Runtime, images/s and the ratio to the fastest export."""
    found = [Path(p) for p in paths if Path(p).name == "onnx_backends.json"]
    if not found:
        return []
    result = json.loads(found[0].read_text())
    backends = list(dict.fromkeys(row["backend"] for row in result["rows"]))
    lines = ["## ONNX exports by backend, in ONNX Runtime (`bench/onnx_backends.py`)", "",
             "| batch | " + " | ".join(f"from {b} (img/s, × fastest)" for b in backends) + " |",
             "|---:|" + "---:|" * len(backends)]
    for batch in dict.fromkeys(row["batch"] for row in result["rows"]):
        rows = {row["backend"]: row for row in result["rows"] if row["batch"] == batch}
        lines.append(f"| {batch} | " + " | ".join(
            f"{rows[b]['images_per_second']:,.1f} ({rows[b]['over_fastest']:.2f}×)" if b in rows else "–"
            for b in backends) + " |")
    return lines + ["", f"{result['runtime']}, {result['date']}, {result['rounds']} interleaved rounds, load "
                    f"average {result['load_average'][0]}–{result['load_average'][1]} on {result['cpus']} CPUs.", ""]


def scale_section(paths) -> list[str]:
    """`bench/scale.py`'s rows (issue 31): each data pass as a multiple of one
    decoding pass, per folder size, with peak memory; its chart."""
    found = [Path(p) for p in paths if Path(p).name == "scale.json"]
    if not found:
        return []
    scale = json.loads(found[0].read_text())
    sizes = sorted(scale["sizes"].values(), key=lambda s: s["images"])
    steps = ("load_cold", "load_warm", "search", "split", "train")
    lines = ["## Scale (`bench/scale.py`)", "",
             "| images | decoding pass (s) | " + " | ".join(f"{s.replace('_', ' ')} (× decoding)" for s in steps)
             + " | load warm (s) | train's first epoch (s): first run, new folder, again | peak memory (GiB) |",
             "|---:|---:|" + "---:|" * (len(steps) + 3)]
    for size in sizes:
        ratios = [f"{size['over_decode'][s]:.2f}" if s in size["over_decode"] else "" for s in steps]
        warm = size["seconds"].get("load_warm")
        epochs = [size["steps"].get(name, {}).get("first_epoch_seconds")
                  for name in ("train", "train_new_folder", "train_again")]
        peak = max((gib for name, gib in size["peak_rss_gib"].items() if not name.startswith("planted")),
                   default=0)
        lines.append(f"| {size['images']:,} | {size['seconds']['decode']:.1f} | " + " | ".join(ratios)
                     + f" | {f'{warm:.1f}' if warm else ''} | "
                     + ", ".join(f"{e:.1f}" if e else "–" for e in epochs) + f" | {peak:.2f} |")
    return (lines + ["", f"{scale.get('note', '')}; chart: [scale.png](scale.png).", ""]
            + _other_backends(sizes, scale.get("train_on_the_photos")) + _planted_lines(sizes))


def _other_backends(sizes, photos: dict | None = None) -> list[str]:
    """Train's first epoch measured on other backends than the table's (JAX),
    and the first run of the same command on the shared photos (`photos`)."""
    found = {}
    for size in sizes:
        for base in ("train", "train_new_folder", "train_again"):
            for backend in ("tensorflow", "torch"):
                row = size["steps"].get(f"{base}_{backend}", {})
                if row.get("first_epoch_seconds"):
                    found.setdefault((size["images"], backend), {})[base] = row["first_epoch_seconds"]
    lines = [f"- {backend}, {images:,} images: " + ", ".join(
        f"{epochs[k]:.1f}" if k in epochs else "–" for k in ("train", "train_new_folder", "train_again"))
        for (images, backend), epochs in sorted(found.items())]
    if photos:
        lines.append(f"- first run on the {photos['images']:,} shared photos instead: " + ", ".join(
            f"{backend} {row['first_epoch_seconds']:.1f}" for backend, row in sorted(photos["rows"].items())))
    return (["Train's first epoch (s: first run, new folder, again) on the other backends:", ""] + lines + [""]
            if lines else [])


def _planted_lines(sizes) -> list[str]:
    """The planted copies that `inspect`'s feature check found at each size
    (`bench.scale`'s planted_features rows): recall / precision per kind."""
    rows = [(size, name, row) for size in sizes for name, row in sorted(size["steps"].items())
            if name.startswith("planted_features") and "feature_seconds" in row]
    if not rows:
        return []

    def scored(row, kind):
        found = row.get(kind)
        if not found:
            return "–"
        precision = f"{found['precision']:.3f}" if found["precision"] is not None else "–"
        return f"{found['recall']:.3f} / {precision} ({found['pairs']})"

    lines = ["Planted copies found with features (`--steps planted_features`): recall / precision (pairs);"
             " precision over the grouped pairs that involve a planted image.", "",
             "| images | backend | feature size (px) | feature pass (s) | search (s) | photos | photos, cropped "
             "| colour fields | groups equal to the exact search | peak memory (GiB) |",
             "|---:|---|---:|---:|---:|---|---|---|---|---:|"]
    for size, _, row in rows:
        differ = row.get("images_grouped_differently")
        exact = "–" if differ is None else ("yes" if differ == 0 else f"no: {differ:,} images differ")
        if differ and row.get("photo_images_grouped_differently") is not None:
            exact += f", {row['photo_images_grouped_differently']} of the photos"
        lines.append(f"| {row['images']:,} | {row.get('backend') or ''} | {row['image_size']} | "
                     f"{row.get('feature_pass', {}).get('seconds', row['feature_seconds']):.0f} | "
                     f"{row['search_seconds']:.1f} | {scored(row, 'photos')} | "
                     f"{scored(row, 'photos_cropped')} | {scored(row, 'colour_fields')} | {exact} | "
                     f"{row.get('peak_rss_bytes', 0) / 1024**3:.2f} |")
    return lines + [""]


def results_readme(rows, chart_name: str, paths=()) -> str:
    """bench/results/README.md: the newest run with throughput rows in full,
    the newest accuracy per recipe and backend, and one line per run."""
    groups = _groups(rows)
    throughput = [g for g in groups if any(r["group"] == g and r["benchmark"] == "inference" for r in rows)]
    parts = ["# Benchmark results", "",
             "Written by `python -m bench.report bench/results/*.json --markdown bench/results/README.md`"
             " from the JSON files beside it; how to run and read them: the README's \"Benchmarks\"."
             " Compare ratios within one run: this VM is shared and noisy.", ""]
    if throughput:
        latest = [r for r in rows if r["group"] == throughput[0]]
        parts += [f"## Latest throughput run: `{throughput[0]}`", "", markdown_table(latest),
                  f"![benchmark chart]({chart_name})", ""]
    accuracy = sorted((r for r in rows if r["benchmark"] == "accuracy"), key=lambda r: r["date"], reverse=True)
    if accuracy:
        parts += ["## Accuracy: the newest run of each recipe on each backend", "", markdown_table(accuracy)]
    parts += serving_table(rows) + engine_section(paths) + onnx_backends_section(paths)
    parts += inspection_section(paths) + scale_section(paths)
    parts += ["## Every run", "", "| run | date (UTC) | device | backend | inference (img/s) | "
              "fine-tuning step (img/s) | final validation accuracy |", "|---|---|---|---|---:|---:|---|"]
    for group in groups:
        for run in _runs([r for r in rows if r["group"] == group]):
            mine = [r for r in rows if r["group"] == group and r["run"] == run]
            parts.append(_summary_line(group, run, mine))
    return "\n".join(parts) + "\n"


def _summary_line(group, run, rows) -> str:
    def speed(kind):
        row = _cell(rows, run, kind)
        return f"{row['images_per_second']:,.1f}" if row and row.get("images_per_second") else "–"

    accuracy = ", ".join(f"`{r['recipe']}` {r['val_accuracy']:.3f}" for r in rows if r["benchmark"] == "accuracy")
    dates = sorted(r["date"] for r in rows if r.get("date"))
    device = rows[0]["device_name"]
    return (f"| `{group}` | {dates[0] if dates else '–'} | {device} | {run} | {speed('inference')} | "
            f"{speed('train_step_finetune')} | {accuracy or '–'} |")


def plot_chart(rows, path) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    runs = _runs(rows)
    kinds = [k for k in ORDER if any(_cell(rows, r, k) for r in runs)]
    width = 0.8 / len(runs)
    figure = Figure(figsize=(2.2 * len(kinds) + 2, 4.5))
    axis = figure.subplots()
    for i, run in enumerate(runs):
        values = [(_cell(rows, run, k) or {}).get("images_per_second") or 0 for k in kinds]
        bars = axis.bar(np.arange(len(kinds)) + i * width, values, width, label=run)
        axis.bar_label(bars, fmt="%.0f", fontsize=8)
    axis.set_xticks(np.arange(len(kinds)) + width * (len(runs) - 1) / 2)
    labels = [textwrap.fill(LABELS[k].replace(" (img/s)", "").replace("img/s; ", ""), 24) for k in kinds]
    axis.set_xticklabels(labels, fontsize=9)
    for i, run in enumerate(runs):  # the peers, as outlines on the same places
        for offset, implementation, style in ((0, "plain_keras", "--"), (0, "native_torch", ":")):
            values = [(_cell(rows, run, k, implementation) or {}).get("images_per_second") or 0 for k in kinds]
            if any(values):
                axis.bar(np.arange(len(kinds)) + i * width, values, width, fill=False, linestyle=style,
                         label=f"{run}: {implementation.replace('_', ' ')}")
    axis.set_yscale("log")
    axis.set_ylabel("images per second (log scale)")
    axis.set_title("flowerkit throughput per backend")
    axis.legend()
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN.json")
    parser.add_argument("--output", default="bench/results/report",
                        help="writes OUTPUT.md and OUTPUT.png (default: bench/results/report)")
    parser.add_argument("--markdown", metavar="README.md",
                        help="instead: the results page (newest throughput run in full, newest accuracy "
                             "per recipe, one line per run) and its chart beside it (.png)")
    args = parser.parse_args(argv)
    rows = load_rows(args.runs)
    if args.markdown:
        page = Path(args.markdown)
        page.parent.mkdir(parents=True, exist_ok=True)
        groups = _groups(rows)
        chart_rows = [r for r in rows if r["group"] == groups[0]]
        throughput = [g for g in groups if any(r["group"] == g and r["benchmark"] == "inference" for r in rows)]
        if throughput:
            chart_rows = [r for r in rows if r["group"] == throughput[0]]
        plot_chart(chart_rows, page.with_suffix(".png"))
        page.write_text(results_readme(rows, page.with_suffix(".png").name, args.runs))
        print(f"wrote {page} and {page.with_suffix('.png')}")
        return 0
    table = markdown_table(rows)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(table)
    plot_chart(rows, output.with_suffix(".png"))
    print(table)
    print(f"wrote {output.with_suffix('.md')} and {output.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
