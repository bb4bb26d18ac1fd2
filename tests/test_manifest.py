"""The dataset manifest (flowerkit/data/manifest.py): kept and reused,
updated for what changed, safe when a writer dies or runs beside another;
and the progress lines of the index and hash passes."""

import dataclasses
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from tests.helpers import COLOURS, REPO, make_image_folder, write_image

from flowerkit import FlowerkitWarning
from flowerkit.data import hashing, manifest
from flowerkit.data.hashing import hash_index
from flowerkit.data.sources import index_csv, index_folder

pytestmark = pytest.mark.backend_independent


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def reads(monkeypatch):
    """The paths `read_record` opens (each one a file read again)."""
    opened = []
    original = manifest.read_record

    def counting(image):
        opened.append(os.path.basename(image))
        return original(image)

    monkeypatch.setattr(manifest, "read_record", counting)
    return opened


def test_a_second_index_reads_no_file(image_folder, keras_home, reads):
    first = index_folder(image_folder, quiet=True)
    assert len(reads) == 30 and manifest.manifest_path(image_folder).is_file()
    reads.clear()
    again = index_folder(image_folder, quiet=True)
    hashes = hash_index(again, quiet=True)
    assert reads == []
    assert again.images == first.images and again.orientations == first.orientations
    assert (again.labels == first.labels).all()
    assert hashes.modes.tolist() == ["RGB"] * 30 and (hashes.sizes == [48, 40]).all()


def test_hashing_an_indexed_folder_reuses_its_rows_without_a_second_stat(image_folder, keras_home,
                                                                          monkeypatch):
    index = index_folder(image_folder, quiet=True)
    restated = hash_index(dataclasses.replace(index, rows=None), quiet=True)
    picked = index.subset([7, 2, 29])
    monkeypatch.setattr(hashing, "_file_rows", lambda *args: pytest.fail("files stat'ed again"))
    whole, part = hash_index(index, quiet=True), hash_index(picked, quiet=True)
    assert (whole.phash == restated.phash).all() and (whole.content == restated.content).all()
    assert (part.crops == restated.crops[[7, 2, 29]]).all()
    assert part.modes.tolist() == ["RGB"] * 3
    swapped = dataclasses.replace(picked, images=picked.images[::-1])
    with pytest.raises(pytest.fail.Exception, match="stat'ed again"):
        hash_index(swapped, quiet=True)  # rows of other images are not reused


def test_a_subsets_rows_are_those_of_the_manifest_gathered_on_reading(image_folder, keras_home):
    rows = index_folder(image_folder, quiet=True).rows
    picked = manifest.Rows.of(rows).take([7, 2, 29, 4]).take([3, 0])  # a split, then a sample
    eager = rows.take([7, 2, 29, 4]).take([3, 0])
    assert len(picked) == 2 and picked.positions.tolist() == [4, 7]
    for field in dataclasses.fields(manifest.Manifest):
        assert np.array_equal(getattr(picked, field.name), getattr(eager, field.name)), field.name


def test_added_changed_and_deleted_files_are_all_that_is_read(image_folder, keras_home, reads):
    index_folder(image_folder, quiet=True)
    before = hash_index(index_folder(image_folder, quiet=True), quiet=True)
    reads.clear()
    write_image(image_folder / "red" / "red_new.jpg", COLOURS["red"], seed=99)
    write_image(image_folder / "blue" / "blue_001.jpg", COLOURS["green"], size=(60, 40), seed=98)
    (image_folder / "green" / "green_002.jpg").unlink()
    index = index_folder(image_folder, quiet=True)
    hashes = hash_index(index, quiet=True)
    assert sorted(reads) == ["blue_001.jpg", "red_new.jpg"]
    assert len(index) == 30
    stored = manifest.load(image_folder)
    names = [os.path.basename(p.decode()) for p in stored.paths]
    assert "green_002.jpg" not in names and "red_new.jpg" in names and len(stored) == 30
    changed = index.images.index(str(image_folder / "blue" / "blue_001.jpg"))
    assert hashes.sizes[changed].tolist() == [60, 40]
    assert not np.array_equal(hashes.content[changed], before.content[changed])


def test_a_csv_of_the_same_files_keeps_its_own_manifest(image_folder, keras_home, reads):
    listing = image_folder / "list.csv"
    listing.write_text("red/red_000.jpg,red\nblue/blue_000.jpg,blue\n")
    index = index_csv(listing, quiet=True)
    assert len(index) == 2 and sorted(reads) == ["blue_000.jpg", "red_000.jpg"]
    reads.clear()
    index_csv(listing, quiet=True)
    assert reads == []
    assert len(manifest.load(listing)) == 2


def test_an_exception_while_writing_leaves_the_old_manifest(image_folder, keras_home, monkeypatch):
    index_folder(image_folder, quiet=True)
    path = manifest.manifest_path(image_folder)
    old = path.read_bytes()

    def broken_savez(stream, **arrays):
        stream.write(b"PK\x03\x04 half a manifest")
        raise OSError("disk full")

    write_image(image_folder / "red" / "red_new.jpg", COLOURS["red"], seed=99)
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.warns(FlowerkitWarning, match=r"Could not keep the manifest .*disk full"):
        assert len(index_folder(image_folder, quiet=True)) == 31  # right, if slower next time
    assert path.read_bytes() == old
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]


def test_a_writer_killed_mid_write_leaves_the_old_manifest(image_folder, keras_home):
    index_folder(image_folder, quiet=True)
    path = manifest.manifest_path(image_folder)
    old = manifest.load(image_folder)
    write_image(image_folder / "red" / "red_new.jpg", COLOURS["red"], seed=99)
    killed = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from flowerkit.data.sources import index_folder

        def dying_savez(stream, **arrays):
            stream.write(b"PK\\x03\\x04 half a manifest")
            stream.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        np.savez = dying_savez
        index_folder({str(image_folder)!r}, quiet=True)
    """)
    run = subprocess.run([sys.executable, "-c", killed], cwd=REPO, capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == -9
    orphans = [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
    assert len(orphans) == 1  # its temporary file, never renamed
    stored = manifest.load(image_folder)
    assert np.array_equal(stored.paths, old.paths) and np.array_equal(stored.phash, old.phash)
    assert len(index_folder(image_folder, quiet=True)) == 31
    assert not orphans[0].exists()  # the next writer removed it
    assert len(manifest.load(image_folder)) == 31


def test_two_concurrent_runs_both_finish_and_keep_every_row(tmp_path, keras_home):
    folder = make_image_folder(tmp_path / "photos", per_class=20)
    run = textwrap.dedent(f"""
        from flowerkit.data.hashing import hash_index
        from flowerkit.data.sources import index_folder
        index = index_folder({str(folder)!r}, quiet=True)
        print(len(index), int(hash_index(index, quiet=True).phash.sum()))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [subprocess.Popen([sys.executable, "-c", run], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in runs]
    assert [process.returncode for process in runs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0] and outputs[0][0].split()[0] == "60"
    assert len(manifest.load(folder)) == 60


def test_rows_of_two_writers_are_merged_not_overwritten(image_folder, keras_home):
    files = sorted(str(p) for p in image_folder.rglob("*.jpg"))
    stats = [(os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
    manifest.refresh(image_folder, files[:10], stats[:10], whole=False)
    manifest.refresh(image_folder, files[10:], stats[10:], whole=False)  # another run's subset
    stored = manifest.load(image_folder)
    assert [p.decode() for p in stored.paths] == files


def test_an_unreadable_manifest_is_rebuilt(image_folder, keras_home, reads):
    index_folder(image_folder, quiet=True)
    manifest.manifest_path(image_folder).write_bytes(b"not a manifest")
    reads.clear()
    assert len(index_folder(image_folder, quiet=True)) == 30
    assert len(reads) == 30 and len(manifest.load(image_folder)) == 30


def test_index_and_hash_passes_print_one_line_each_when_quiet(image_folder, keras_home, capsys):
    index = index_folder(image_folder, quiet=True)
    hash_index(index, quiet=True)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["Indexing images", "Hashing images"]
    assert all(" 30 images in " in line for line in lines)


def test_progress_on_a_stream_that_is_no_terminal_is_one_line(image_folder, keras_home, capsys):
    index_folder(image_folder)  # quiet=None: capsys's stderr is not a terminal
    assert capsys.readouterr().err.startswith("Indexing images: 30 images in ")


def test_rows_read_by_worker_processes_equal_those_read_in_threads(image_folder, keras_home):
    (image_folder / "red" / "empty.jpg").write_bytes(b"")
    (image_folder / "blue" / "notes.jpg").write_text("not an image")
    files = sorted(str(p) for p in image_folder.rglob("*.jpg"))
    stats = [(os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
    threads = manifest.read_files(files, stats, processes=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlowerkitWarning)  # no fallback to threads
        pooled = manifest.read_files(files, stats, processes=2)
    assert [p.decode() for p in pooled.paths] == files
    for field in dataclasses.fields(manifest.Manifest):
        assert np.array_equal(getattr(pooled, field.name), getattr(threads, field.name)), field.name
    assert sorted(set(pooled.reasons.tolist())) == [b"", b"empty file", b"not an image"]


def test_a_script_without_a_main_guard_still_reads_every_file(image_folder, tmp_path, keras_home):
    # Spawned workers re-run such a script and stop at its first pool: the
    # parent warns and reads the files itself.
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        from flowerkit.data import manifest
        from flowerkit.data.sources import index_folder
        manifest.POOL_FROM = manifest.POOL_MIN_CPUS = 1
        print(len(index_folder({str(image_folder)!r}, quiet=True)))
    """))
    run = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["30"]
    assert "FlowerkitWarning: Reading the remaining images in this process" in run.stderr
    assert len(manifest.load(image_folder)) == 30
