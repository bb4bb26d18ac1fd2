"""Faults and hostile files: `kill -9` at any point of a run, two runs on one
folder, a full disk, a tampered or hostile tf_flowers archive, models that
would run code or are not flowerkit's, weights of another backbone.

The kill -9 cases run `python -m flowerkit.train` in a child process that
kills itself with SIGKILL at a chosen point (the test patches flowerkit
there, in the child only), then run the same command again."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import flowerkit
from flowerkit import FlowerkitError
from tests.helpers import COLOURS, make_image_folder, one_error_line, run_main, shared_path, write_image

WEIGHTS = "weights/mobilenet_v2_0.35_imagenet_no_top.weights.h5"




def leftovers(folder: Path) -> list[str]:
    """Half-written files a run may leave: temporary names, or backups."""
    return sorted(
        str(path.relative_to(folder)) for path in folder.rglob("*")
        if path.name.startswith(".partial-") or path.suffix == ".tmp" or path.name == "backup"
    )


# --- kill -9, then the same command again ---------------------------------

# Runs the CLI with one flowerkit function patched to SIGKILL this process
# at a chosen point: what the kernel does to a process on `kill -9`, at a
# point the test can name.
CHILD = textwrap.dedent("""
    import os, signal, sys
    point = sys.argv[1]

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "mid_epoch":  # in the 3rd epoch, after two backups
        import keras
        import flowerkit.training.phases as phases

        class Kill(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch
            def on_train_batch_end(self, batch, logs=None):
                if self.epoch == 2 and batch == 1:
                    die()

        fit = phases._fit
        phases._fit = lambda model, train, validation, epochs, initial, callbacks, *rest, **kw: fit(
            model, train, validation, epochs, initial, [*callbacks, Kill()], *rest, **kw)
    elif point == "caching_features":  # the cache's memory-mapped file half filled
        import flowerkit.distribute.sharding as distribution

        batches = distribution.predict_batches  # what the feature cache computes through
        def predict_batches(*args, **kwargs):
            for number, batch in enumerate(batches(*args, **kwargs)):
                if number == 1:
                    die()
                yield batch
        distribution.predict_batches = predict_batches
    elif point == "final_save":  # model.keras half written
        import keras

        def save(model, path, *args, **kwargs):
            from pathlib import Path
            keras.Model.save.__wrapped__(model, path, *args, **kwargs)
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
            die()
        save.__wrapped__ = keras.Model.save
        keras.Model.save = save
    from flowerkit.cli import main
    sys.exit(main(["train", *sys.argv[2:]]))
""")


def _recipe(weights: Path):
    """MobileNetV2 alpha 0.35 at 32 px with real weights and cached features:
    seconds per run, and every phase-1 stage (caching, epochs) to kill in."""
    return flowerkit.get_preset("mobilenet_v2_035").replace(
        weights=str(weights), image_size=32, epochs=4, batch_size=8, head="gap", head_units=(),
        dropout=0.0, label_smoothing=0.0, augmentation=("flip",))


def _train_child(args, point=None, env=None, timeout=300):
    command = [sys.executable, "-c", CHILD, point, *args] if point else [
        sys.executable, "-m", "flowerkit.train", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.backend_independent  # the run folder's logic; no backend branches there
def test_kill_9_at_any_point_then_the_same_command_resumes_and_finishes(tmp_path):
    """Killed while caching features, then mid-epoch, then while writing
    model.keras: each time the same command resumes, and the run ends as an
    uninterrupted one does."""
    recipe = _recipe(shared_path(WEIGHTS))
    photos = make_image_folder(tmp_path / "photos", per_class=8)
    uninterrupted = flowerkit.train(recipe, source=str(photos), output_dir=tmp_path / "uninterrupted",
                                    verbose=0).metrics
    recipe_file = tmp_path / "recipe.json"
    recipe.save(recipe_file)
    run = tmp_path / "run"
    args = ["--recipe", recipe_file, "--data", photos, "--output", run, "--quiet"]
    args = [str(arg) for arg in args]
    # A feature cache of its own, so that the caching step really runs.
    home = tmp_path / "keras_home"
    env = {"KERAS_HOME": str(home)}
    features = home / "flowerkit" / "features"

    killed = _train_child(args, "caching_features", env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list(features.rglob(".partial-*")) and not (run / "model.keras").exists()

    killed = _train_child(args, "mid_epoch", env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # No epoch had finished: nothing to resume, the run starts over (issue 33).
    assert "resuming the interrupted run" not in killed.stdout
    assert not list(features.rglob(".partial-*"))  # the dead process's half cache is gone
    assert [p.name for p in (run / "backup" / "head").iterdir()] == ["epoch-00002"]

    killed = _train_child(args, "final_save", env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert f"resuming the interrupted run in {run} after epoch 2" in killed.stdout
    assert (run / ".partial-model.keras").is_file() and not (run / "model.keras").exists()

    again = _train_child(args, env=env)
    assert again.returncode == 0, again.stderr
    assert f"resuming the interrupted run in {run} after epoch 4" in again.stdout
    assert leftovers(run) == []
    assert flowerkit.load_model(run / "model.keras").output_shape == (None, 3)
    metrics = json.loads((run / "metrics.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert metrics["epochs"] == len(history["loss"]) == 4
    assert len(metrics["epoch_train_seconds"]) == 4  # the killed processes' epochs too
    print(f"kill -9 x3 then resume: val_accuracy {metrics['val_accuracy']:.4f}, val_loss "
          f"{metrics['val_loss']:.6f}; uninterrupted {uninterrupted['val_accuracy']:.4f}, "
          f"{uninterrupted['val_loss']:.6f}")
    assert abs(metrics["val_accuracy"] - uninterrupted["val_accuracy"]) <= 0.01
    # Accuracy alone cannot tell on such easy data; the loss shows the
    # training went on from the backups (weights and optimizer state) rather
    # than over. Not to the last digit: a resumed phase draws its epochs'
    # shuffles from epoch 0 again (measured: 0.15% apart).
    assert metrics["val_loss"] == pytest.approx(uninterrupted["val_loss"], rel=0.02)


def test_a_backup_killed_while_saving_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    """Keras's BackupAndRestore writes weights, then the epoch, in place: a
    kill between or within them broke or skewed the resume."""
    from flowerkit.training.run_folder import AtomicBackupAndRestore

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((4, 2), "float32"), np.ones((4, 1), "float32")

    class Crash(Exception):
        pass

    class CrashOnSecondSave(AtomicBackupAndRestore):
        def save_backup(self, epoch, batch):
            if epoch == 2:
                monkeypatch.setattr(type(model), "save_weights", lambda *a, **k: (_ for _ in ()).throw(Crash()))
            super().save_backup(epoch, batch)

    backup = tmp_path / "backup"
    with pytest.raises(Crash):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[CrashOnSecondSave(str(backup))])
    monkeypatch.undo()
    assert [p.name for p in backup.iterdir() if not p.name.startswith(".partial-")] == ["epoch-00001"]
    restore = AtomicBackupAndRestore(str(backup))
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[restore])
    assert history.epoch == [1, 2]  # resumed after the one whole backup
    assert not backup.exists()


# --- two runs on one folder -----------------------------------------------

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from flowerkit.report import artifacts
    with artifacts.locked(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(300)
""")


def test_a_second_run_on_a_folder_being_written_is_refused(image_folder, tmp_path, capsys):
    output = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(output)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        status, _, err = run_main(capsys, "train", "--preset", "dense", "--data", image_folder,
                                  "--image-size", "32", "--epochs", "1", "--output", output)
        assert status == 2
        assert one_error_line(err).endswith(
            f"{output} is being written by another flowerkit run (pid {holder.pid}); "
            "wait for it to finish, or choose another --output.")
        assert not (output / "recipe.json").exists()  # nothing touched
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.wait()
    flowerkit.train(flowerkit.get_preset("dense").replace(image_size=32, epochs=1),
                    source=str(image_folder), output_dir=output, verbose=0)
    assert (output / "model.keras").is_file()


def test_ctrl_c_says_that_the_same_command_resumes(image_folder, tmp_path, capsys, monkeypatch):
    import flowerkit.training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(flowerkit.training, "train", interrupted)
    status, out, err = run_main(capsys, "train", "--preset", "dense", "--data", image_folder,
                                "--output", tmp_path / "run")
    assert status == 130 and "Traceback" not in err
    assert (f"flowerkit: interrupted; run the same command again to resume from the last "
            f"finished epoch ({tmp_path / 'run'})") in out


def test_only_the_process_that_writes_the_run_prints_its_last_line(image_folder, tmp_path, capsys,
                                                                    monkeypatch):
    """Under torchrun every process runs the command; the others (no run
    folder written) end without repeating process 0's summary."""
    import flowerkit.training
    from flowerkit.training.runner import TrainResult

    def trained(recipe, output_dir, **kwargs):
        metrics = {"val_accuracy": 0.5, "val_loss": 1.0, "epochs": 1, "wall_seconds": 2.0}
        return TrainResult(None, recipe, {}, metrics, output_dir if writes else None)

    monkeypatch.setattr(flowerkit.training, "train", trained)
    for writes in (True, False):
        status, out, _ = run_main(capsys, "train", "--preset", "dense", "--data", image_folder,
                                  "--output", tmp_path / "run")
        assert status == 0
        assert ("flowerkit: validation accuracy 0.5000 (loss 1.0000) after 1 epochs" in out) == writes


# --- a finished run; a full disk ---------------------------------------------


def test_finished_run_is_refused_overwrite_retrains_and_a_full_disk_keeps_the_old_model(
    image_folder, tmp_path, capsys, monkeypatch
):
    output = tmp_path / "run"
    args = ["train", "--preset", "dense", "--data", image_folder, "--image-size", "32",
            "--epochs", "2", "--batch-size", "8", "--output", output, "--quiet"]
    assert run_main(capsys, *args)[0] == 0
    accuracy = json.loads((output / "metrics.json").read_text())["val_accuracy"]
    before = {name: (output / name).read_bytes() for name in ("model.keras", "metrics.json")}

    status, _, err = run_main(capsys, *args)
    assert status == 2
    assert one_error_line(err).endswith(
        f"{output} already holds a finished run (val_accuracy {accuracy:.4f}); pass "
        "--overwrite to train it again, or choose another --output.")

    def full_disk(model, path, *rest, **options):
        Path(path).write_bytes(b"PK\3\4 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", full_disk)
    status, _, err = run_main(capsys, *args, "--overwrite", "--epochs", "3")
    assert status == 2
    assert one_error_line(err).endswith(
        f"Could not write {output / 'model.keras'}: no space left on device; free some space "
        "and run again (any earlier model.keras is unchanged).")
    assert {name: (output / name).read_bytes() for name in before} == before
    assert not list(output.glob(".partial-*"))

    monkeypatch.undo()
    status, out, err = run_main(capsys, *args, "--epochs", "3")  # the overwriting run resumes
    assert status == 0, err
    assert f"resuming the interrupted run in {output} after epoch 3" in out
    assert json.loads((output / "metrics.json").read_text())["epochs"] == 3
    assert leftovers(output) == []


def test_wall_time_and_epoch_times_cover_every_process_of_a_resumed_run(image_folder, tmp_path):
    from tests.test_training import StopAfter

    class SlowFirstEpoch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 0 and batch == 0:
                time.sleep(1.5)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    recipe = flowerkit.get_preset("dense").replace(image_size=32, epochs=4, batch_size=8)
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        flowerkit.train(recipe, source=str(image_folder), output_dir=tmp_path, verbose=0,
                        max_images=27, callbacks=[SlowFirstEpoch(), StopAfter(2)])
    first_process = time.perf_counter() - started
    result = flowerkit.train(recipe, source=str(image_folder), output_dir=tmp_path, verbose=0,
                             max_images=27)
    assert json.loads((tmp_path / "metrics.json").read_text())["max_images"] == 27
    times = result.metrics["epoch_train_seconds"]
    assert len(times) == 4 and times[0] >= 1.5
    # The first call's time up to its last finished epoch: all of it but the interruption.
    assert result.metrics["wall_seconds"] >= 1.5 + sum(times[2:])
    assert result.metrics["wall_seconds"] >= first_process * 0.8


# --- the tf_flowers archive ------------------------------------------------


def _archive(path: Path, members: dict[str, bytes], links: dict[str, str] = ()) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in dict(links).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _flower_members(tmp_path) -> dict[str, bytes]:
    jpeg = write_image(tmp_path / "src.jpg", COLOURS["red"]).read_bytes()
    return {f"flower_photos/{name}/{i}.jpg": jpeg for name in ("daisy", "roses") for i in range(2)}


@pytest.fixture
def tf_flowers_mirror(tmp_path, monkeypatch):
    """A private Keras cache and a file:// mirror; returns a function that
    publishes an archive there (and pins its hash)."""
    import flowerkit.data.sources as sources

    (tmp_path / "keras_home").mkdir()  # get_file falls back to /tmp/.keras if it is missing
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    mirror = tmp_path / "mirror" / "flower_photos.tgz"
    mirror.parent.mkdir()
    monkeypatch.setenv("FLOWERKIT_TF_FLOWERS_URL", mirror.as_uri())

    def publish(archive: Path | None, pin: bool = True):
        if archive is None:
            mirror.unlink(missing_ok=True)  # the mirror unreachable
            return
        mirror.write_bytes(archive.read_bytes())
        if pin:
            monkeypatch.setattr(sources, "TF_FLOWERS_SHA256", hashlib.sha256(mirror.read_bytes()).hexdigest())

    return publish, tmp_path / "keras_home" / "datasets"


def test_tampered_or_truncated_cached_archive_is_downloaded_again(tf_flowers_mirror, tmp_path):
    from flowerkit.data.sources import index_source

    publish, cache = tf_flowers_mirror
    good = _archive(tmp_path / "good.tgz", _flower_members(tmp_path))
    publish(good)
    assert len(index_source("tf_flowers")) == 4
    cached = cache / "flower_photos.tgz"
    for damage in (lambda data: data[: len(data) // 2], lambda data: data[:100] + b"X" + data[101:]):
        cached.write_bytes(damage(good.read_bytes()))
        assert len(index_source("tf_flowers")) == 4
        assert cached.read_bytes() == good.read_bytes()  # caught by its hash, downloaded again


def test_damaged_archive_offline_or_from_the_mirror_is_a_clear_error(tf_flowers_mirror, tmp_path):
    from flowerkit.data.sources import index_source

    publish, cache = tf_flowers_mirror
    good = _archive(tmp_path / "good.tgz", _flower_members(tmp_path))
    publish(good)
    cache.mkdir(parents=True)
    (cache / "flower_photos.tgz").write_bytes(good.read_bytes()[:200])  # truncated
    publish(None)  # offline
    with pytest.raises(FlowerkitError, match="Could not download tf_flowers .* Offline\\? Pass --data DIR"):
        index_source("tf_flowers")
    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(good.read_bytes()[:200])
    publish(truncated, pin=False)  # the mirror serves a truncated archive
    with pytest.raises(FlowerkitError, match="does not match its pinned SHA-256 .*run again"):
        index_source("tf_flowers")
    assert not (cache / "flower_photos_extracted").exists()


@pytest.mark.parametrize(
    "hostile, links",
    [
        ({"flower_photos/../../evil.jpg": b"x"}, {}),
        ({"/tmp/flowerkit-evil-absolute.jpg": b"x"}, {}),
        ({}, {"flower_photos/daisy/link.jpg": "../../../evil.jpg"}),
        ({}, {"flower_photos/daisy/abs.jpg": "/etc/passwd"}),
    ],
    ids=["dotdot", "absolute", "symlink-out", "symlink-absolute"],
)
def test_archive_with_path_traversal_members_is_refused(tf_flowers_mirror, tmp_path, hostile, links):
    from flowerkit.data.sources import index_source

    publish, cache = tf_flowers_mirror
    members = {**_flower_members(tmp_path), **hostile}
    publish(_archive(tmp_path / "hostile.tgz", members, links))
    with pytest.raises(FlowerkitError, match="Refusing to extract .*: its member .* nothing was extracted"):
        index_source("tf_flowers")
    assert not (cache / "evil.jpg").exists() and not (tmp_path / "evil.jpg").exists()
    assert not Path("/tmp/flowerkit-evil-absolute.jpg").exists()
    assert sorted(p.name for p in cache.iterdir()) == ["flower_photos.tgz"]


# --- models and weights that are not what they seem ------------------------


def _lambda_model(path: Path) -> Path:
    def brighten(images):  # a named function: Keras stores its code
        return images * 2.0

    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Lambda(brighten)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(path)
    return path


def _damaged_models(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (model file, what the error says)."""
    inputs = keras.Input((16, 16, 3), name="image")
    good = tmp_path / "good.keras"
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(inputs))).save(good)
    data = good.read_bytes()
    (truncated := tmp_path / "truncated.keras").write_bytes(data[: len(data) // 2])
    (not_zip := tmp_path / "not_zip.keras").write_bytes(b"\x89HDF\r\n\x1a\n not a zip")
    import zipfile

    damaged_weights = tmp_path / "damaged_weights.keras"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(damaged_weights, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            target.writestr(item, content[:64] if item.filename.endswith(".h5") else content)
    tabular = tmp_path / "tabular.keras"
    features = keras.Input((5,))
    keras.Model(features, keras.layers.Dense(3, activation="softmax")(features)).save(tabular)
    lambda_model = _lambda_model(tmp_path / "lambda.keras")
    return {
        "truncated": (truncated, f"Not a Keras model file (.keras), or a truncated one: {truncated}"),
        "not_zip": (not_zip, f"Not a Keras model file (.keras), or a truncated one: {not_zip}"),
        "damaged_weights": (damaged_weights, f"Cannot load the model {damaged_weights} (damaged, or not a flowerkit model)"),
        "not_flowerkit": (tabular, f"{tabular} is not a flowerkit model: it takes (None, 5)"),
        "lambda": (lambda_model, f"Refusing to load {lambda_model}: it contains a Lambda layer (arbitrary code"),
    }


def test_bad_model_files_are_one_line_errors_for_predict_evaluate_and_export(tmp_path, image_folder, capsys):
    image = image_folder / "red" / "red_000.jpg"
    for name, (model, message) in _damaged_models(tmp_path).items():
        for command in (["predict", model, image], ["evaluate", model, "--data", image_folder],
                        ["export", model, "--format", "onnx", "--no-verify"]):
            status, _, err = run_main(capsys, *command)
            assert status == 2, (name, command[0], err)
            assert message in one_error_line(err), (name, command[0], err)


def test_lambda_model_is_refused_before_keras_reads_its_config(tmp_path):
    model = _lambda_model(tmp_path / "lambda.keras")
    with pytest.raises(FlowerkitError, match="Refusing to load .*Lambda layer"):
        flowerkit.load_model(model)


def test_weights_of_another_backbone_are_a_one_line_error(tmp_path, image_folder, capsys):
    mobilenet_v1 = shared_path("weights/keras_home/models/mobilenet_2_5_224_tf_no_top.h5")
    status, _, err = run_main(capsys, "train", "--preset", "mobilenet_v2_035", "--data", image_folder,
                              "--weights", mobilenet_v1, "--image-size", "32", "--output", tmp_path / "run")
    assert status == 2
    line = one_error_line(err)
    assert f"The weights file {mobilenet_v1} does not fit MobileNetV2 (alpha=0.35) without its top" in line
    assert "Layer count mismatch" in line and "--backbone" in line
    assert "_load_container_state" not in err  # Keras's per-layer warnings held back
