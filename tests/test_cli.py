"""The CLIs end to end, as a user runs them: real files; `python -m` in a
subprocess where the entry point itself is under test, in-process otherwise."""

import importlib.util
import json
import os
import subprocess
import sys
import time

import keras
import pytest
from PIL import Image

from flowerkit.cli import COMMANDS
from flowerkit.errors import FlowerkitError
from tests.helpers import SHARED, one_error_line, run_main, write_image


def run(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def trained_run(session_image_folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("run")
    result = run(
        "flowerkit.train", "--preset", "dense", "--data", str(session_image_folder),
        "--image-size", "32", "--epochs", "3", "--batch-size", "8", "--output", str(output),
    )
    assert result.returncode == 0, result.stderr
    return output, result


def test_train_writes_model_recipe_metrics_and_pictures(trained_run):
    output, result = trained_run
    assert "validation accuracy" in result.stdout
    # Not a terminal: one line per epoch, no progress bars drawn into the pipe.
    assert [line for line in result.stdout.splitlines() if line.startswith("Epoch ")] == [
        "Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert "\x1b[" not in result.stdout and "━" not in result.stdout
    for name in ("curves.png", "predictions.png", "confusion_matrix.png"):
        with Image.open(output / name) as image:
            image.load()
            assert image.width > 300 and image.height > 200
    recipe = json.loads((output / "recipe.json").read_text())
    assert recipe["class_names"] == ["blue", "green", "red"] and recipe["epochs"] == 3
    history = json.loads((output / "history.json").read_text())
    assert set(history) >= {"accuracy", "loss", "val_accuracy", "val_loss"}
    assert len(history["loss"]) == 3
    metrics = json.loads((output / "metrics.json").read_text())
    assert set(metrics) >= {
        "val_accuracy", "val_loss", "wall_seconds", "train_images_per_second",
        "backend", "device", "versions",
    }
    assert metrics["backend"] == keras.backend.backend()  # the subprocess inherits the backend
    # The fast path chosen for this backend (the device is a CPU here).
    assert metrics["depthwise_conv"] == ("shifted" if keras.backend.backend() == "jax" else "stock")
    assert metrics["torch_layers"] == ("native" if keras.backend.backend() == "torch" else "stock")
    assert metrics["val_accuracy"] == history["val_accuracy"][-1]
    assert (output / "model.keras").is_file()
    assert not (output / "backup").exists()  # removed once training completes


def test_predict_table_and_json(trained_run, session_image_folder, capsys):
    output, _ = trained_run
    images = [str(session_image_folder / "red" / "red_000.jpg"), str(session_image_folder / "blue" / "blue_001.jpg")]
    table = run("flowerkit.predict", str(output / "model.keras"), *images)
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("%") == 6  # top-3 for each of two images
    status, out, err = run_main(capsys, "predict", str(output / "model.keras"), *images, "--json", "--top-k", "2")
    assert status == 0, err
    predictions = json.loads(out)
    assert [p["image"] for p in predictions] == images
    for p in predictions:
        assert len(p["top"]) == 2
        assert p["top"][0]["probability"] >= p["top"][1]["probability"]
    assert predictions[0]["top"][0]["class"] == "red"
    assert predictions[1]["top"][0]["class"] == "blue"


def test_evaluate_prints_and_writes_report(trained_run, session_image_folder, tmp_path, capsys):
    output, _ = trained_run
    status, out, err = run_main(capsys, "evaluate", str(output / "model.keras"), "--data",
                                str(session_image_folder), "--output", str(tmp_path))
    assert status == 0, err
    assert "precision" in out and "confusion matrix" in out
    assert "Evaluating on the all split: 48 images in " in err  # not a terminal: one line
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["images"] == 48
    assert set(report["per_class"]) == {"blue", "green", "red"}
    assert sum(map(sum, report["confusion_matrix"])) == 48
    assert report["accuracy"] > 0.8  # colours are trivially separable
    Image.open(tmp_path / "confusion_matrix.png").load()
    status, out, _ = run_main(capsys, "evaluate", str(output / "model.keras"), "--data",
                              str(session_image_folder), "--split", "validation", "--json",
                              "--output", str(tmp_path / "v"))
    assert status == 0 and json.loads(out)["images"] == 9  # 19% of 16 per class, rounded
    status, out, _ = run_main(capsys, "evaluate", str(output / "model.keras"), "--data",
                              str(session_image_folder), "--tta", "flip", "--output", str(tmp_path / "t"))
    assert status == 0 and "with flip test-time augmentation: accuracy" in out
    report = json.loads((tmp_path / "t" / "evaluation.json").read_text())
    assert report["tta"]["method"] == "flip" and report["tta"]["images"] == report["images"] == 48


SUBCOMMANDS = ("train", "predict", "evaluate", "export", "inspect", "serve", "backbones")


@pytest.mark.backend_independent  # argparse's listing: the same on every backend
def test_console_script_lists_every_subcommand():
    result = run("flowerkit", "--help")
    assert result.returncode == 0
    assert tuple(COMMANDS) == SUBCOMMANDS
    listed = result.stdout.split("{", 1)[1].split("}", 1)[0]  # usage: flowerkit [-h] {train,...}
    assert tuple(listed.split(",")) == SUBCOMMANDS
    words = " ".join(result.stdout.split())  # argparse wraps the help lines
    for name, (_, help_text) in COMMANDS.items():
        assert f" {name} {help_text} " in words


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_python_m_entry_modules_run_their_subcommand(name, monkeypatch, capsys):
    import runpy

    monkeypatch.setattr(sys, "argv", [f"flowerkit.{name}", "--help"])
    with pytest.raises(SystemExit) as exit:
        runpy.run_module(f"flowerkit.{name}", run_name="__main__", alter_sys=True)
    assert exit.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: flowerkit {name} ")


@pytest.mark.backend_independent  # module names: the same on every backend
def test_importing_an_entry_module_keeps_the_api_function():
    """`python -m flowerkit.train` needs a module `flowerkit.train`; importing
    it must not replace the function `flowerkit.train`."""
    script = (
        "import types, flowerkit, flowerkit.train, flowerkit.predict, flowerkit.evaluate, flowerkit.export\n"
        "import sys\n"
        "assert sys.modules['flowerkit.train'].__name__ == 'flowerkit.train'\n"
        "from flowerkit import evaluate\n"
        "for function in (flowerkit.train, flowerkit.predict, flowerkit.export, evaluate):\n"
        "    assert isinstance(function, types.FunctionType), function\n"
        "print(flowerkit.train.__module__, flowerkit.export.__module__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["flowerkit.training.runner", "flowerkit.exporting.convert"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("train", "--data", "/no/such/folder", "--preset", "dense"), "Data folder not found: /no/such/folder"),
        (("train", "--epochs", "many"), "invalid int value: 'many'"),
        (("train", "--bogus"), "unrecognized arguments: --bogus"),
        (("train", "--head", "pyramid", "--data", "."), "head must be one of"),
        (("train", "--preset", "nope"), "Unknown preset 'nope'"),
        (("train", "--max-images", "-3"), "must be at least 1, got -3"),
        (("train", "--max-images", "0"), "must be at least 1, got 0"),
        (("train", "--batch-size", "0"), "Invalid recipe: batch_size must be positive, got 0."),
        (("train", "--epochs", "0", "--data", "."), "Invalid recipe: epochs must be positive, got 0."),
        (("train", "--preset", "mobilenet_v2_35"), "Did you mean 'mobilenet_v2_035'?"),
        (("trian",), "did you mean 'train'?"),
        (("predict", "/no/model.keras", "x.jpg"), "Model file not found: /no/model.keras"),
        (("predict", "/no/model.keras", "x.jpg", "--top-k", "0"), "must be at least 1, got 0"),
        (("evaluate", "/no/model.keras"), "Model file not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(capsys, args, message):
    status, _, err = run_main(capsys, *args)
    assert status == 2
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], err


def test_a_run_that_fails_on_its_input_leaves_no_folder(tmp_path, capsys):
    output = tmp_path / "runs" / "new"
    status, _, err = run_main(capsys, "train", "--preset", "dense", "--data", "/no/such/folder",
                              "--output", str(output))
    assert status == 2 and "Data folder not found" in err
    assert not output.exists()  # not even its lock files
    assert not output.parent.exists()  # nor the runs/ folder it made for it
    (tmp_path / "kept").mkdir()  # a folder that existed before stays
    status, _, _ = run_main(capsys, "train", "--preset", "dense", "--data", "/no/such/folder",
                            "--output", str(tmp_path / "kept"))
    assert status == 2 and (tmp_path / "kept").is_dir()


def test_predict_unreadable_image(trained_run, tmp_path, capsys):
    output, _ = trained_run
    (tmp_path / "bad.jpg").write_text("not a jpeg")
    status, _, err = run_main(capsys, "predict", str(output / "model.keras"), str(tmp_path / "bad.jpg"))
    assert status == 2 and "Cannot read image" in err
    (tmp_path / "model.keras").write_text("not a model")
    status, _, err = run_main(capsys, "predict", str(tmp_path / "model.keras"), str(tmp_path / "bad.jpg"))
    assert status == 2 and "Not a Keras model file" in err


@pytest.mark.backend_independent  # refused before Keras is imported
def test_default_train_offline_fails_fast_with_guidance(tmp_path):
    """No flags = codelab on tf_flowers; with no network and an empty cache it
    must say how to point at local data and weights, within seconds."""
    started = time.monotonic()
    result = run(
        "flowerkit.train", "--output", str(tmp_path / "run"),
        env={"KERAS_HOME": str(tmp_path / "empty_cache"),
             "FLOWERKIT_TF_FLOWERS_URL": "http://127.0.0.1:9/flower_photos.tgz"},
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("flowerkit train: error: Could not download tf_flowers (offline?). "
                            "This works with what is on this machine: flowerkit train --preset ")
    assert "--data DIR" in error or f"--data {SHARED / 'data/flower_photos'}" in error
    assert "--weights" in error
    assert time.monotonic() - started < 90


def test_offline_advice_names_a_preset_with_cached_weights(tmp_path, monkeypatch):
    """The codelab's alpha-1.0 weights are not cached, the alpha-0.35 ones are:
    the advice switches to mobilenet_v2_035 and keeps the --data given."""
    from flowerkit.cli.offline import offline_advice
    from flowerkit.config.recipe import Recipe

    (tmp_path / "models").mkdir()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    codelab = Recipe.from_preset("codelab")
    advice = offline_advice("the weights", codelab, "codelab", "photos", None)
    assert "flowerkit train --preset codelab --weights none --data photos" in advice
    (tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5").touch()
    advice = offline_advice("the weights", codelab, "codelab", "photos", "runs/x")
    assert "flowerkit train --preset mobilenet_v2_035 --data photos --output runs/x" in advice


def test_data_that_is_a_file_fails_before_the_run_folder_is_touched(tmp_path, capsys):
    image = write_image(tmp_path / "rose.jpg", (200, 40, 40))
    output = tmp_path / "done"
    output.mkdir()
    (output / "model.keras").write_text("a finished run")  # would be refused, later
    status, _, err = run_main(capsys, "train", "--data", str(image), "--output", str(output))
    assert status == 2
    assert one_error_line(err) == (
        f"flowerkit train: error: --data {image} is a file, not a data source; a data source is "
        "a folder with one subfolder per class, a path,label .csv file, a TFRecord glob "
        "(local or gs://), or tf_flowers.")


def test_a_failed_run_does_not_block_the_next_and_leaves_no_locks(image_folder, tmp_path, capsys):
    """A first attempt that fails before any epoch (here on a missing weights
    file) leaves recipe.json and backup/; the next command with another recipe
    trains there without --overwrite, and no lock file stays."""
    output = tmp_path / "run"
    status, _, err = run_main(capsys, "train", "--preset", "mobilenet_v2_035", "--data", str(image_folder),
                              "--image-size", "32", "--weights", str(tmp_path / "no.h5"), "--output", str(output))
    assert status == 2 and "Weights file not found" in err
    assert (output / "recipe.json").is_file() and not (output / ".lock").exists()
    status, out, err = run_main(capsys, "train", "--preset", "dense", "--data", str(image_folder),
                                "--image-size", "32", "--epochs", "1", "--output", str(output), "--quiet")
    assert status == 0, err
    assert "resuming" not in out and (output / "model.keras").is_file()
    assert sorted(p.name for p in output.iterdir() if p.name.startswith(".")) == []


BACKEND_CHOICE = """
import json, os, sys
from flowerkit.cli.common import start_backend
start_backend(sys.argv[1] if len(sys.argv) > 1 else None)
import keras
print(json.dumps([keras.backend.backend(), os.environ["KERAS_BACKEND"]]))
"""


def test_without_keras_backend_the_cli_picks_this_environment_s_backend(trained_run, tmp_path):
    """KERAS_BACKEND unset and no keras.json: a saved model runs on the backend it
    was trained on (this environment's), says so on one line, and Keras writes
    no keras.json; a backend that is not installed is one line."""
    output, _ = trained_run
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path / "keras_home")
    here = keras.backend.backend()
    result = subprocess.run([sys.executable, "-c", BACKEND_CHOICE, str(output / "model.keras")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [here, here]
    assert f"flowerkit: backend {here} (the model was trained on it; set KERAS_BACKEND to choose)" in result.stderr
    assert not (tmp_path / "keras_home" / "keras.json").exists()
    missing = next(name for name in ("tensorflow", "jax", "torch") if importlib.util.find_spec(name) is None)
    env["KERAS_BACKEND"] = missing
    result = run("flowerkit", "predict", str(output / "model.keras"), "x.jpg", env=env, timeout=120)
    assert result.returncode == 2
    assert one_error_line(result.stderr) == (
        f"flowerkit predict: error: KERAS_BACKEND chooses the {missing} backend, which is not installed "
        f"here (pip install 'flowerkit[{missing}]', or set KERAS_BACKEND={here}).")


def test_keras_json_chooses_when_keras_backend_is_unset(tmp_path, monkeypatch):
    from flowerkit.backends import selection

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "theano"}))
    with pytest.raises(FlowerkitError, match="names the backend 'theano'; flowerkit runs on tensorflow, jax, torch"):
        selection.choose_backend()
    (tmp_path / "keras.json").write_text(json.dumps({"backend": keras.backend.backend()}))
    assert selection.choose_backend() is None and "KERAS_BACKEND" not in os.environ


@pytest.mark.backend_independent
def test_a_command_starting_beside_an_import_never_reads_the_keras_json_keras_writes(tmp_path, monkeypatch):
    """Keras writes a default keras.json ("tensorflow") while it imports; a second
    process choosing its backend meanwhile (another torchrun rank) waits until
    that file is gone instead of reading it."""
    import threading

    from flowerkit.backends import selection

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    seen = []
    reader = threading.Thread(target=lambda: seen.append(selection.configured_backend()))
    with selection.keras_config_left_alone():
        (tmp_path / "keras.json").write_text(json.dumps({"backend": "tensorflow"}))  # as Keras's import does
        reader.start()
        reader.join(timeout=1.0)
        assert reader.is_alive() and seen == []  # waiting for the import to end
    reader.join(timeout=30)
    assert seen == [None] and not (tmp_path / "keras.json").exists()


@pytest.mark.backend_independent
def test_under_torchrun_pytorch_comes_first(tmp_path, monkeypatch):
    from flowerkit.backends import selection

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(selection, "installed_backends", lambda: ["tensorflow", "jax", "torch"])
    assert selection.choose_backend().startswith("backend tensorflow (installed")
    monkeypatch.delenv("KERAS_BACKEND")  # set by the call above
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    assert selection.choose_backend() == "backend torch (launched by torchrun; set KERAS_BACKEND to choose)"
    assert os.environ["KERAS_BACKEND"] == "torch"


def test_api_names_survive_the_cli(capsys):
    """`flowerkit.train` etc. stay the API functions after the CLI ran in this
    process (the `python -m` entry modules of the same names are never imported)."""
    run_main(capsys, "--help")
    import flowerkit

    assert flowerkit.train.__module__ == "flowerkit.training.runner"
    assert flowerkit.export.__module__ == "flowerkit.exporting.convert"
    assert flowerkit.predict.__module__ == flowerkit.evaluate.__module__ == "flowerkit.exporting.engines"


def test_export_onnx_from_the_cli(trained_run, tmp_path, capsys):
    output, _ = trained_run
    status, out, err = run_main(capsys, "export", str(output / "model.keras"), "--format", "onnx",
                                "--output", str(tmp_path / "flowers.onnx"))
    assert status == 0, err
    assert out.startswith(f"flowerkit: onnx: {tmp_path / 'flowers.onnx'}") and "max |p - p_keras|" in out
    assert "Exporting to onnx and checking it in its runtime: 1 model in " in err
    assert (tmp_path / "labels.txt").read_text().split() == ["blue", "green", "red"]
