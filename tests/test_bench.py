"""The benchmark harness: the report from fixture runs, and the suite's
speed rows at tiny size on TensorFlow (the rest: tests/test_gpu_dry_run.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tests.helpers import REPO, shared_path
from PIL import Image

FIXTURES = REPO / "tests/fixtures/bench"


def _edited_fixtures(folder, edit) -> list[str]:
    """The fixture runs, each passed through `edit(name, run)` and written
    to `folder`; their paths, in name order."""
    paths = []
    for path in sorted(FIXTURES.glob("*.json")):
        run = json.loads(path.read_text())
        edit(path.name, run)
        (folder / path.name).write_text(json.dumps(run))
        paths.append(str(folder / path.name))
    return paths


@pytest.mark.backend_independent
def test_throughput_batch_grows_on_accelerators_only():
    from bench.measure import ACCELERATOR_BATCH, throughput_batch_size

    assert throughput_batch_size(64, "CPU") == 64
    assert throughput_batch_size(64, "GPU") == throughput_batch_size(64, "tpu") == ACCELERATOR_BATCH
    assert throughput_batch_size(2 * ACCELERATOR_BATCH, "GPU") == 2 * ACCELERATOR_BATCH


@pytest.mark.backend_independent
def test_report_merges_runs_side_by_side(tmp_path):
    from bench.report import main

    runs = sorted(str(p) for p in FIXTURES.glob("*.json"))
    assert main([*runs, "--output", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report.md").read_text()
    header = table.splitlines()[0]
    assert header == "| benchmark | jax CPU | tensorflow CPU | torch CPU |"
    inference = next(line for line in table.splitlines() if line.startswith("| inference"))
    assert inference == "| inference (img/s) | 20.0 (0.10×) | 205.0 (1.00×) | 45.0 (0.22×) |"
    assert "| final validation accuracy | 0.890 | 0.890 | 0.890 |" in table
    assert "not reached (85%)" in table and "120 (85%, epoch 2)" in table
    with Image.open(tmp_path / "report.png") as chart:
        chart.load()
        assert chart.width > 600


@pytest.mark.backend_independent
def test_report_puts_frozen_recipes_first(tmp_path):
    """A second file of the same run with a fine-tuning recipe (read first
    here) adds its own block after the frozen one's; the epochs row stays on
    the frozen recipe."""
    from bench.report import main

    torch_run = json.loads((FIXTURES / "torch-cpu.json").read_text())
    accuracy = next(b for b in torch_run["benchmarks"] if b["extra_info"]["benchmark"] == "accuracy")
    accuracy["extra_info"].update(recipe="mobilenet_v2_035_finetune", fine_tune_epochs=8,
                                  images_per_second=7.0, val_accuracy=0.93)
    (tmp_path / "a-torch-finetune.json").write_text(json.dumps({"benchmarks": [accuracy]}))
    runs = [str(tmp_path / "a-torch-finetune.json"), *sorted(str(p) for p in FIXTURES.glob("*.json"))]
    assert main([*runs, "--output", str(tmp_path / "report")]) == 0
    lines = (tmp_path / "report.md").read_text().splitlines()
    epochs = next(line for line in lines if line.startswith("| training epochs"))
    assert lines[0] == "| benchmark | torch CPU | jax CPU | tensorflow CPU |"  # runs in reading order
    assert epochs.endswith("(`mobilenet_v2_035`) | 35.0 (0.50×) | 16.0 (0.23×) | 70.0 (1.00×) |")
    frozen = lines.index("| final validation accuracy (`mobilenet_v2_035`) | 0.890 | 0.890 | 0.890 |")
    assert lines.index("| final validation accuracy (`mobilenet_v2_035_finetune`) | 0.930 | – | – |") > frozen
    accuracy = next(line for line in lines if line.startswith("Accuracy:"))
    assert "`mobilenet_v2_035` 10 epochs, `mobilenet_v2_035_finetune` 2 + 8 epochs (head + fine-tuning)" in accuracy


@pytest.mark.backend_independent
def test_report_sets_the_frozen_phase_against_both_passes(tmp_path):
    """The frozen phase against the feature pass (both views) and against one
    plain forward pass over the photos, also up to its tenth epoch; a run
    without that measurement gets a dash, and the notes say what each pass is."""
    from bench.report import main

    def add_phases(name, run):
        accuracy = next(b for b in run["benchmarks"] if b["extra_info"]["benchmark"] == "accuracy")
        accuracy["extra_info"]["phases"] = [
            {"name": "head", "epochs": 12, "seconds": 30.0, "feature_seconds": 24.0,
             "epoch_end_seconds": [24.0 + epoch * 0.5 for epoch in range(1, 13)]}]
        if "tensorflow" in name:
            accuracy["extra_info"]["forward_pass_seconds"] = 15.0
        if "torch" in name:  # a run without the epochs' ends
            del accuracy["extra_info"]["phases"][0]["epoch_end_seconds"]

    assert main([*_edited_fixtures(tmp_path, add_phases), "--output", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| frozen phase / feature pass | 30 s / 24 s = 1.25× | 30 s / 24 s = 1.25× | 30 s / 24 s = 1.25× |" in text
    assert "| frozen phase / one forward pass | – | 30 s / 15 s = 2.00× | – |" in text
    assert "| frozen phase to epoch 10 / one forward pass | – | 29 s / 15 s = 1.93× | – |" in text
    assert "One forward pass: the same extractor once over each training and validation photo" in text


@pytest.mark.backend_independent
def test_report_gives_a_data_parallel_row_per_device_count(tmp_path):
    """JAX's rows on 1, 2 and 4 virtual devices sit after the single-device
    train steps, one row each; runs without them get a dash."""
    from bench.report import main

    def add_parallel_rows(name, run):
        if "jax" not in name:
            return
        frozen = next(b for b in run["benchmarks"] if b["extra_info"]["benchmark"] == "train_step_frozen")
        for devices, speed in ((4, 30.0), (1, 20.0), (2, 25.0)):
            row = json.loads(json.dumps(frozen))
            row["extra_info"].update(benchmark="train_step_data_parallel", devices=devices,
                                     images_per_second=speed)
            run["benchmarks"].append(row)

    assert main([*_edited_fixtures(tmp_path, add_parallel_rows), "--output", str(tmp_path / "report")]) == 0
    lines = (tmp_path / "report.md").read_text().splitlines()
    parallel = [line for line in lines if "data parallel" in line]
    assert parallel == [
        "| train step, data parallel on 1 device (img/s) | 20.0 (1.00×) | – | – |",
        "| train step, data parallel on 2 devices (img/s) | 25.0 (1.00×) | – | – |",
        "| train step, data parallel on 4 devices (img/s) | 30.0 (1.00×) | – | – |",
    ]
    assert lines.index(parallel[0]) == 1 + next(
        i for i, line in enumerate(lines) if line.startswith("| train step, fine-tuning"))


@pytest.mark.backend_independent
def test_report_shows_the_feature_cache_check(tmp_path):
    from bench.report import main

    def add_agreement_row(name, run):
        if "torch" not in name:
            return
        row = json.loads(json.dumps(run["benchmarks"][0]))
        row["extra_info"].update(benchmark="feature_cache_agreement",
                                 val_accuracy={"cached": 0.79, "uncached": 0.785},
                                 wall_seconds={"cached": 12.8, "uncached": 22.7})
        run["benchmarks"].append(row)

    assert main([*_edited_fixtures(tmp_path, add_agreement_row), "--output", str(tmp_path / "report")]) == 0
    lines = (tmp_path / "report.md").read_text().splitlines()
    assert [line for line in lines if "feature cache on / off" in line] == [
        "| feature cache on / off: validation accuracy (wall s) | – | – | 0.790 / 0.785 (13 / 23) |"]


@pytest.mark.backend_independent
def test_report_rejects_files_without_rows(tmp_path):
    from bench.report import main

    (tmp_path / "empty.json").write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(SystemExit, match="no flowerkit benchmark rows"):
        main([str(tmp_path / "empty.json")])


@pytest.mark.backends("tensorflow")
def test_tiny_suite_writes_every_field(tmp_path, backend):
    """The benchmark suite's speed rows at its tiny size write every field.
    Its accuracy rows, whose code is the same on every backend, and the
    JAX and PyTorch suites: tests/test_gpu_dry_run.py."""
    shared_path("data/flower_photos")
    output = tmp_path / "run.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "bench"), "--benchmark-only",
         f"--benchmark-json={output}", "-p", "no:cacheprovider", "-q", "-k", "not accuracy"],
        capture_output=True, text=True, cwd=REPO, timeout=900,
        env={**os.environ, "FLOWERKIT_BENCH_SIZE": "tiny"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    benchmarks = json.loads(output.read_text())["benchmarks"]
    rows = {b["extra_info"]["benchmark"]: b["extra_info"] for b in benchmarks
            if b["extra_info"].get("implementation", "flowerkit") == "flowerkit"}
    limits = rows.pop("machine_limits")
    assert limits["peak_gflops"] > 0 and limits["copy_gb_per_second"] > 0
    peers = {(b["extra_info"]["benchmark"], b["extra_info"]["implementation"]) for b in benchmarks
             if b["extra_info"].get("implementation", "flowerkit") != "flowerkit"}
    assert {(kind, "plain_keras") for kind in ("inference", "train_step_frozen", "train_step_finetune")} <= peers
    # TensorFlow exports both formats at any batch: flowerkit's model in ONNX Runtime and LiteRT.
    exported = {b["extra_info"]["implementation"]: b["extra_info"] for b in benchmarks
                if b["extra_info"].get("implementation") in ("onnx_runtime", "litert")}
    assert set(exported) == {"onnx_runtime", "litert"}
    assert all(row["images_per_second"] > 0 and row["export_seconds"] > 0 for row in exported.values())
    assert set(rows) == {"input_pipeline", "inference", "train_step_frozen", "train_step_finetune"}
    assert rows["inference"]["auto_engine"] == "onnx"  # what `flowerkit predict` runs on TensorFlow
    for row in rows.values():
        assert row["backend"] == backend
        for field in ("device_kind", "device_name", "device_count", "versions", "batch_size",
                      "image_size", "precision", "jit_compile", "images_per_second",
                      "distribution", "devices", "processes", "global_batch", "per_device_batch"):
            assert row[field] is not None, field
        assert row["images_per_second"] > 0
    for kind in ("inference", "train_step_frozen", "train_step_finetune"):
        assert rows[kind]["compile_seconds"] > 0
        assert rows[kind]["flops_per_image"] > 1e6 and rows[kind]["gflops_per_second"] > 0
        assert rows[kind]["fraction_of_peak"] == rows[kind]["gflops_per_second"] / limits["peak_gflops"]
        assert rows[kind]["bytes_per_image"] > 32 * 32 * 3 * 4  # the image and every layer's output
        assert rows[kind]["copy_gb_per_second"] == limits["copy_gb_per_second"]
    assert rows["train_step_finetune"]["flops_per_image"] > rows["train_step_frozen"]["flops_per_image"]


def _add_peers(name, run):
    """Plain Keras beside each flowerkit speed row, the native reference in
    the torch run, the machine's limits in every run."""
    speeds = {"jax": 2.0, "tensorflow": 1.0, "torch": 0.5}  # flowerkit's speed / plain Keras's
    backend = name.split("-")[0]
    for bench in list(run["benchmarks"]):
        info = bench["extra_info"]
        if info["benchmark"] not in ("inference", "train_step_frozen", "train_step_finetune"):
            continue
        info.update(fraction_of_peak=info["gflops_per_second"] / 100.0, peak_gflops=100.0)
        for peer, speed in (("plain_keras", info["images_per_second"] / speeds[backend]),
                            ("native_torch", 100.0)):
            if peer == "native_torch" and backend != "torch":
                continue
            row = json.loads(json.dumps(bench))
            row["extra_info"].update(implementation=peer, images_per_second=speed)
            run["benchmarks"].append(row)
    limits = json.loads(json.dumps(run["benchmarks"][0]))
    limits["extra_info"].update(benchmark="machine_limits", backend_matmul_gflops=90.0,
                                numpy_matmul_gflops=100.0, copy_gb_per_second=20.0, peak_gflops=100.0)
    run["benchmarks"].append(limits)
    run["datetime"] = "2026-12-02T10:00:00"


def test_report_sets_flowerkit_beside_its_peers_and_the_peak(tmp_path):
    """Under each flowerkit row: plain Keras with flowerkit's ratio to it,
    the ratio to native PyTorch (one reference for every backend), GFLOP/s
    and the fraction of the run's peak; the machine's limits per run. Peer
    rows never displace flowerkit's."""
    from bench.report import main

    assert main([*_edited_fixtures(tmp_path, _add_peers), "--output", str(tmp_path / "report")]) == 0
    lines = (tmp_path / "report.md").read_text().splitlines()
    at = lines.index("| inference (img/s) | 20.0 (0.10×) | 205.0 (1.00×) | 45.0 (0.22×) |")
    assert lines[at + 1] == "| ↳ plain Keras (img/s; flowerkit ×) | 10.0 (2.00×) | 205.0 (1.00×) | 90.0 (0.50×) |"
    assert lines[at + 2] == "| ↳ flowerkit × native PyTorch (100.0 img/s) | 0.20× | 2.05× | 0.45× |"
    assert lines[at + 3].startswith("| ↳ GFLOP/s (fraction of measured peak) | 2.2 (2%) |")
    assert "| machine: float32 matmul, numpy (GFLOP/s) | 100.0 | 100.0 | 100.0 |" in lines
    assert "| machine: memory copy (GB/s, read + write) | 20.0 | 20.0 | 20.0 |" in lines
    assert any(line.startswith("Peers (bench/peers.py)") for line in lines)


def test_report_markdown_page_has_latest_run_accuracy_and_every_run(tmp_path):
    """--markdown: the newest run with throughput rows in full with its chart,
    the newest accuracy per recipe, one line per run and backend (older
    runs included), newest first."""
    from bench.report import main

    new = tmp_path / "new"
    new.mkdir()
    _edited_fixtures(new, _add_peers)
    old = sorted(str(p) for p in FIXTURES.glob("*.json"))  # no date: older than any dated run
    page = tmp_path / "page" / "README.md"
    assert main([*old, *sorted(str(p) for p in new.glob("*.json")), "--markdown", str(page)]) == 0
    text = page.read_text()
    assert text.index("## Latest throughput run: `new/cpu`") < text.index("## Accuracy") < text.index("## Every run")
    assert "![benchmark chart](README.png)" in text and "Date (UTC): 2026-12-02 10:00." in text
    runs = [line for line in text.splitlines() if line.startswith("| `")]
    assert runs[0] == "| `new/cpu` | 2026-12-02 10:00 | Test CPU | jax CPU | 20.0 | 6.0 | `mobilenet_v2_035` 0.890 |"
    assert len(runs) == 6 and runs[3].startswith("| `bench/cpu` | – |")
    with Image.open(page.with_suffix(".png")) as chart:
        chart.load()
        assert chart.width > 600


def test_summary_table_gives_ratios_and_peak():
    from bench.summary import summary_lines

    base = dict(backend="torch", device_kind="CPU", device_name="Test CPU", precision="float32")
    rows = [
        dict(base, benchmark="inference", implementation="flowerkit", images_per_second=300.0,
             gflops_per_second=60.0, fraction_of_peak=0.5),
        dict(base, benchmark="inference", implementation="plain_keras", images_per_second=100.0),
        dict(base, benchmark="inference", implementation="native_torch", images_per_second=200.0),
        dict(base, benchmark="accuracy", recipe="mobilenet_v2_035", val_accuracy=0.91, wall_seconds=40.0),
        dict(base, benchmark="machine_limits", implementation="flowerkit", backend_matmul_gflops=110.0,
             numpy_matmul_gflops=120.0, copy_gb_per_second=20.0),
    ]
    lines = summary_lines(rows)
    assert lines[0] == "torch on CPU (Test CPU), float32"
    assert lines[2].split() == ["inference", "300.0", "3.00×", "1.50×", "60.0", "50%"]
    assert lines[3].split()[:3] == ["plain", "keras", "100.0"]
    assert "accuracy `mobilenet_v2_035`: 0.910 in 40 s" in lines
    assert lines[-1] == "machine: float32 matmul 110.0 GFLOP/s (torch), 120.0 (numpy); copy 20.0 GB/s"


def test_plain_keras_peer_is_the_recipes_network_without_fast_paths():
    """The hand-written codelab model has flowerkit's network: the same
    weights and analytic FLOPs as build_model with every fast path off."""
    import keras

    from bench.flops import forward_flops, train_step_flops
    from bench.peers import STOCK_FIELDS, plain_keras_model
    from flowerkit import build_model, get_preset

    recipe = get_preset("mobilenet_v2_035_finetune").replace(
        weights=None, image_size=32, class_names=tuple("abcde"), trainable_backbone=True)
    plain, stock = plain_keras_model(recipe), build_model(recipe.replace(**STOCK_FIELDS))
    assert [w.shape for w in plain.weights] == [w.shape for w in stock.weights]
    assert forward_flops(plain) == forward_flops(stock) and train_step_flops(plain) == train_step_flops(stock)
    assert not any(isinstance(l, keras.layers.BatchNormalization) and l.trainable
                   for l in plain.layers[-4].layers)  # BatchNorm keeps its statistics
    assert plain.predict_on_batch(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 5)


@pytest.mark.backend_independent
def test_results_page_shows_serving_and_inspection_rows(tmp_path):
    from bench.report import main

    serve = {"datetime": "2026-12-02T16:55:00", "benchmarks": [{"stats": {"median": 0.02}, "extra_info": {
        "benchmark": "serve", "backend": "jax", "device_kind": "CPU", "device_name": "cpu",
        "precision": "float32", "model_format": "onnx", "batching": "on", "clients": 32, "requests": 1600,
        "failed": 0, "requests_per_second": 12.0, "p50_ms": 2627.7, "p99_ms": 3596.9, "load_run": True,
        "rss_after_warm_up_mib": 729.4, "rss_end_mib": 720.4, "rss_growth": -0.0123}}]}
    (tmp_path / "jax-cpu-serve.json").write_text(json.dumps(serve))
    (tmp_path / "inspect_planted.json").write_text(json.dumps(
        {"images": 600, "planted_pairs": 150, "recall": 148 / 150, "precision_on_planted_images": 1.0}))
    (tmp_path / "inspect_cost_100k.json").write_text(json.dumps(
        {"images": 100000, "backend": "jax", "uncached_over_feature_pass": 1.12,
         "runs": {"uncached": {"wall_seconds": 2800.0}, "cached": {"wall_seconds": 300.0}}}))
    (tmp_path / "label_noise.json").write_text(json.dumps({"rows": [
        {"data": "synthetic Gaussians", "images": 100000, "classes": 1000, "batch_rows": 8192,
         "flipped": 5000, "recall_top_2x": 0.95, "seconds": 170.0}]}))
    runs = [*sorted(str(p) for p in FIXTURES.glob("*.json")), *map(str, sorted(tmp_path.glob("*.json")))]
    assert main([*runs, "--markdown", str(tmp_path / "page" / "README.md")]) == 0
    page = (tmp_path / "page" / "README.md").read_text()
    assert "| onnx | on | 32 | 1600 | 0 | 12.0 | 2628 | 3597 | 729 → 720 MiB (-1.2%) |" in page
    assert "recall 98.7%, precision 100.0%" in page
    assert "- `inspect` on 100,000 images (jax, `inspect_cost_100k`): 2800 s uncached, 1.12x" in page
    assert ("- Label check, 5,000 of 100,000 labels flipped (synthetic Gaussians, 1000 classes, "
            "batch 8192): 95.0% of them in the top 10,000, 170 s") in page


def _add_runtimes_and_limits(name, run):
    """The exported runtimes where a backend exports (ONNX on TensorFlow and
    PyTorch, LiteRT on TensorFlow only), and what the roofline needs."""
    backend = name.split("-")[0]
    inference = next(b for b in run["benchmarks"] if b["extra_info"]["benchmark"] == "inference")
    compute_bound = backend == "tensorflow"
    inference["extra_info"].update(bytes_per_image=44e6, peak_gflops=110.0 if compute_bound else 100.0,
                                   copy_gb_per_second=100.0 if compute_bound else 20.0)
    runtimes = {"tensorflow": {"onnx_runtime": 410.0, "litert": 205.0}, "torch": {"onnx_runtime": 90.0}}
    for implementation, speed in runtimes.get(backend, {}).items():
        row = json.loads(json.dumps(inference))
        row["extra_info"].update(implementation=implementation, images_per_second=speed)
        run["benchmarks"].append(row)
    inference["extra_info"]["auto_engine"] = "keras" if backend == "jax" else "onnx"


@pytest.mark.backend_independent
def test_report_shows_the_exported_runtimes_and_the_roofline(tmp_path):
    """Under flowerkit's inference row: ONNX Runtime and LiteRT on its export
    where the run measured them, and the roofline (FLOPs at the peak or bytes
    at the copy bandwidth, the slower) with flowerkit's share and the bound."""
    from bench.report import main

    paths = _edited_fixtures(tmp_path, _add_runtimes_and_limits)
    assert main([*paths, "--markdown", str(tmp_path / "page" / "README.md")]) == 0
    lines = (tmp_path / "page" / "README.md").read_text().splitlines()
    at = lines.index("| inference (img/s) | 20.0 (0.10×) | 205.0 (1.00×) | 45.0 (0.22×) |")
    assert lines[at + 1:at + 5] == [
        "| ↳ ONNX Runtime, exported (img/s; flowerkit ×) | – | 410.0 (0.50×) | 90.0 (0.50×) |",
        "| ↳ LiteRT, exported (img/s; flowerkit ×) | – | 205.0 (1.00×) | – |",
        # What `flowerkit predict` runs: the engine its run recorded, at that engine's speed.
        "| ↳ as `flowerkit predict` runs it (`auto` engine: img/s; × native PyTorch) "
        "| keras: 20.0 | onnx: 410.0 | onnx: 90.0 |",
        "| ↳ roofline: img/s at the measured limit (flowerkit's share, bound) "
        "| 455 (4%, memory) | 1,000 (20%, compute) | 455 (10%, memory) |",
    ]
    assert any(line.startswith("Roofline: the row's FLOPs at the run's measured matmul peak") for line in lines)
    # Without them (the fixtures as they are), none of those rows.
    main([*sorted(str(p) for p in FIXTURES.glob("*.json")), "--output", str(tmp_path / "plain")])
    plain = (tmp_path / "plain.md").read_text().splitlines()
    assert not any("exported" in line or "roofline" in line for line in plain)


@pytest.mark.backends("torch")  # every engine kind (ONNX Runtime, LiteRT) exports here; the code is shared
def test_engine_table_times_every_engine_at_every_batch(tmp_path):
    """bench/engine_table.py on a tiny saved run: a row per engine and
    batch with its speed against Keras, the engine `auto` picks as the
    policy says, and the fastest; the results page gets its table."""
    from bench.engine_table import main
    from bench.report import main as report
    from flowerkit.backends.policy import inference_engine
    from flowerkit.exporting.engines import available_engines
    from tests.helpers import tiny_run_folder

    model = tiny_run_folder(tmp_path / "run")
    output = tmp_path / "engines-torch.json"
    assert main(["--model", str(model), "--batches", "1,9", "--rounds", "1",
                 "--output", str(output)]) == 0
    table = json.loads(output.read_text())
    engines = available_engines()
    assert [(r["batch"], r["engine"]) for r in table["rows"]] == [
        (batch, engine) for batch in (1, 9) for engine in engines]
    for row in table["rows"]:
        assert row["images_per_second"] == pytest.approx(row["batch"] / row["median_seconds"])
        assert row["auto"] == inference_engine("torch", "CPU", engines, "auto")
        same_batch = [r for r in table["rows"] if r["batch"] == row["batch"]]
        assert row["fastest"] == min(same_batch, key=lambda r: r["median_seconds"])["engine"]
        assert (row["over_keras"] == 1.0) == (row["engine"] == "keras")
    assert table["omp_num_threads"] == os.environ.get("OMP_NUM_THREADS")
    one_thread = tmp_path / "engines-torch-1thread.json"  # the same rows, as if run with one thread
    one_thread.write_text(json.dumps({**table, "omp_num_threads": "1"}))
    runs = sorted(str(p) for p in FIXTURES.glob("*.json"))
    assert report([*runs, str(output), str(one_thread), "--markdown", str(tmp_path / "page" / "README.md")]) == 0
    page = (tmp_path / "page" / "README.md").read_text().splitlines()
    header = page.index("## Inference engines by batch (`bench/engine_table.py`)") + 2
    assert page[header].startswith("| backend | batch | keras (img/s, × keras) | onnx (img/s, × keras) |")
    first = table["rows"][0]
    assert page[header + 2].startswith(f"| torch | 1 | {first['images_per_second']:,.1f} (1.00×) |")
    assert page[header + 2].endswith(f" | {first['auto']} | {first['fastest']} |")
    assert page[header + 4].startswith("| torch (OMP_NUM_THREADS=1) | 1 | ")


@pytest.mark.backends("torch")  # one backend's export stands in for all three; the timing code is shared
def test_onnx_exports_are_timed_side_by_side(tmp_path):
    """bench/onnx_backends.py: `export` writes this backend's file beside
    the run's model, `time` times every .onnx there at each batch against
    the fastest; the page shows them."""
    import shutil

    from bench.onnx_backends import main
    from bench.report import main as report
    from tests.helpers import tiny_run_folder

    folder = tiny_run_folder(tmp_path / "onnx").parent
    assert main(["export", str(folder)]) == 0
    shutil.copy(folder / "torch.onnx", folder / "copy.onnx")  # a second "backend": the same file
    output = tmp_path / "onnx_backends.json"
    assert main(["time", str(folder), "--batches", "1,4", "--rounds", "1", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert [(r["batch"], r["backend"]) for r in result["rows"]] == [
        (1, "copy"), (1, "torch"), (4, "copy"), (4, "torch")]
    for batch in (1, 4):
        ratios = sorted(r["over_fastest"] for r in result["rows"] if r["batch"] == batch)
        assert 0 < ratios[0] <= ratios[1] == 1.0
    runs = sorted(str(p) for p in FIXTURES.glob("*.json"))
    assert report([*runs, str(output), "--markdown", str(tmp_path / "page" / "README.md")]) == 0
    page = (tmp_path / "page" / "README.md").read_text().splitlines()
    header = page.index("## ONNX exports by backend, in ONNX Runtime (`bench/onnx_backends.py`)") + 2
    assert page[header] == "| batch | from copy (img/s, × fastest) | from torch (img/s, × fastest) |"
    assert page[header + 2].startswith("| 1 | ") and page[header + 3].startswith("| 4 | ")
    assert page[header + 5].startswith(f"{result['runtime']}, {result['date']}, 1 interleaved rounds")


def test_eval_sizes_scores_one_run_at_several_sizes_on_its_own_split(tmp_path, image_folder):
    import flowerkit
    from bench.eval_sizes import main, resized_model
    from flowerkit.inference.loading import load_run
    from tests.helpers import tiny_recipe

    recipe = tiny_recipe(head="gap", head_units=(), epochs=1)
    flowerkit.train(recipe, str(image_folder), output_dir=tmp_path / "run", verbose=0)
    output = tmp_path / "rows.json"
    main([str(tmp_path / "run/model.keras"), "--sizes", "48,32", "--data", str(image_folder),
          "--output", str(output)])
    rows = json.loads(output.read_text())
    assert [row["image_size"] for row in rows] == [32, 48]  # the trained size first, once
    evaluated = flowerkit.evaluate(tmp_path / "run/model.keras", str(image_folder), split="validation",
                                   tta="flip", quiet=True)
    assert rows[0]["val_accuracy"] == pytest.approx(evaluated["accuracy"])
    assert rows[0]["val_accuracy_flip_tta"] == pytest.approx(evaluated["tta"]["accuracy"])
    assert rows[1]["validation_images"] == rows[0]["validation_images"] == evaluated["images"]
    # The same weights at 48 px: a plain image pools to the same pixel at any size.
    run = load_run(tmp_path / "run/model.keras")
    at_48 = resized_model(run.model, run.recipe.replace(image_size=48, weights=None))
    plain = np.linspace(0, 255, 3, dtype=np.float32)
    np.testing.assert_allclose(at_48.predict_on_batch(np.tile(plain, (1, 48, 48, 1))),
                               run.model.predict_on_batch(np.tile(plain, (1, 32, 32, 1))), rtol=1e-5)


def test_eval_sizes_refuses_a_head_that_takes_one_size(tmp_path, image_folder):
    import flowerkit
    from bench.eval_sizes import main
    from tests.helpers import tiny_recipe

    flowerkit.train(tiny_recipe(epochs=1), str(image_folder), output_dir=tmp_path / "run", verbose=0)
    with pytest.raises(SystemExit, match="Flatten head takes one input size"):
        main([str(tmp_path / "run/model.keras"), "--sizes", "48", "--data", str(image_folder),
              "--output", str(tmp_path / "rows.json")])
