"""The short table `pytest bench --benchmark-only` prints at its end: one
line per row of this session's backend, images/s, ratio to plain Keras and
to the native reference, fraction of the measured peak, accuracy."""

from __future__ import annotations

KINDS = {
    "input_pipeline": "input pipeline",
    "inference": "inference",
    "train_step_frozen": "train step, frozen",
    "train_step_finetune": "train step, fine-tuning",
}
PEERS = ("plain_keras", "native_torch", "onnx_runtime", "litert")


def _implementation(row) -> str:
    return row.get("implementation") or "flowerkit"


def _ratio(value, reference) -> str:
    return f"{value / reference:.2f}×" if value and reference else "–"


def summary_lines(rows) -> list[str]:
    by_key = {(r["benchmark"], _implementation(r)): r for r in rows}
    lines = []
    header = f"{'row':<26} {'img/s':>9} {'× plain Keras':>14} {'× native':>9} {'GFLOP/s':>8} {'of peak':>8}"
    first = rows[0]
    lines.append(f"{first['backend']} on {first['device_kind']} ({first['device_name']}), {first['precision']}")
    lines.append(header)
    for kind, label in KINDS.items():
        for implementation in ("flowerkit", *PEERS):
            row = by_key.get((kind, implementation))
            if not row or not row.get("images_per_second"):
                continue
            speed = row["images_per_second"]
            name = label if implementation == "flowerkit" else f"  {implementation.replace('_', ' ')}"
            plain = by_key.get((kind, "plain_keras"), {}).get("images_per_second")
            native = by_key.get((kind, "native_torch"), {}).get("images_per_second")
            mine = implementation == "flowerkit"
            gflops, fraction = row.get("gflops_per_second"), row.get("fraction_of_peak")
            lines.append(
                f"{name:<26} {speed:>9,.1f} {_ratio(speed, plain) if mine else '':>14} "
                f"{_ratio(speed, native) if mine else '':>9} "
                f"{f'{gflops:.1f}' if gflops else '–':>8} {f'{fraction:.0%}' if fraction else '–':>8}")
    for row in rows:
        if row["benchmark"] == "accuracy":
            lines.append(f"accuracy `{row['recipe']}`: {row['val_accuracy']:.3f} in {row['wall_seconds']:.0f} s")
    limits = by_key.get(("machine_limits", "flowerkit"))
    if limits:
        lines.append(
            f"machine: float32 matmul {limits['backend_matmul_gflops']:.1f} GFLOP/s ({first['backend']}), "
            f"{limits['numpy_matmul_gflops']:.1f} (numpy); copy {limits['copy_gb_per_second']:.1f} GB/s")
    return lines
