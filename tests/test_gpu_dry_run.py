"""bench/gpu.sh's CPU dry run end to end: wheels built and installed offline
into a target folder, each installed backend's tiny run, the JSON and the
report. Runs in the torch environment, which has both PyTorch and JAX (as
the GPU machine has, without TensorFlow)."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, installed, shared_path


@pytest.mark.backends("torch")  # once, in the torch environment (PyTorch and JAX, no TensorFlow)
def test_gpu_script_dry_run(tmp_path):
    photos = shared_path("data/flower_photos")
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", str(REPO / "bench/gpu.sh"), "--dry-run", str(out), str(photos)],
        capture_output=True, text=True, timeout=1200,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (out / "gpu.txt").read_text().startswith("dry run")
    wheels = sorted(p.name.split("-")[0] for p in (out / "wheels").glob("*.whl"))
    assert wheels == ["keras", "namex", "optree"]
    assert (out / "site/keras/__init__.py").is_file()  # installed with --no-index --target
    ran = [b for b in ("jax", "torch", "tensorflow") if installed(b)]
    assert {"jax", "torch"} <= set(ran)
    for backend in ("jax", "torch", "tensorflow"):
        if backend not in ran:
            assert (out / f"{backend}-skipped.txt").is_file()
            continue
        rows = [b["extra_info"] for b in json.loads((out / f"{backend}-gpu-tiny.json").read_text())["benchmarks"]]
        kinds = {(r["benchmark"], r.get("implementation")) for r in rows}
        for kind in ("inference", "train_step_frozen", "train_step_finetune"):
            assert {(kind, "flowerkit"), (kind, "plain_keras")} <= kinds, kind
            assert (kind, "native_torch") in kinds if backend == "torch" else (kind, "native_torch") not in kinds
        assert ("input_pipeline", "flowerkit") in kinds and ("accuracy", None) in kinds
        # The frozen phase's yardstick: one pass over exactly the photos it trained and validated on.
        accuracy = next(r for r in rows if r["benchmark"] == "accuracy")
        assert accuracy["forward_pass_images"] == accuracy["train_images"] + accuracy["validation_images"]
        assert accuracy["forward_pass_seconds"] > 0 and 0 <= accuracy["val_accuracy"] <= 1
        if backend == "jax":  # on 1, 2 and 4 virtual devices (bench/test_distribution.py)
            parallel = [r for r in rows if r["benchmark"] == "train_step_data_parallel"]
            assert [r["devices"] for r in parallel] == [1, 2, 4], parallel
            assert {r["strategy"] for r in parallel} == {"keras.distribution.DataParallel"}
        assert all(r["backend"] == backend for r in rows)
        limits = next(r for r in rows if r["benchmark"] == "machine_limits")
        assert limits["peak_gflops"] > 0 and limits["copy_gb_per_second"] > 0
        for row in rows:
            if row["benchmark"].startswith(("inference", "train_step_f")):
                assert 0 < row["fraction_of_peak"] and row["peak_gflops"] == limits["peak_gflops"]
    # PyTorch under torchrun on 1 and 2 gloo processes (bench/torch_scaling.py).
    scaling = json.loads((out / "torch-scaling-tiny.json").read_text())
    assert [(r["processes"], r["strategy"]) for r in scaling["rows"]] == [(1, None), (2, "torch.distributed")]
    assert scaling["scaling_efficiency"] > 0
    page = (out / "README.md").read_text()
    assert "| benchmark | jax CPU | torch CPU" in page and "↳ plain Keras" in page
    assert (out / "README.png").stat().st_size > 10_000
