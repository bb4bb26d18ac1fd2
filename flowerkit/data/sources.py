"""Where images come from: a class-per-folder tree, the tf_flowers download,
or the codelab's TFRecords. Every source becomes an `ImageIndex`: the images
(files, or encoded bytes for TFRecords) with integer labels and class names,
already checked so that unreadable files are skipped once, here, with a
warning. Splitting and sampling an index live here too."""

from __future__ import annotations

import collections.abc
import dataclasses
import errno
import operator
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from flowerkit import progress
from flowerkit.data import manifest
from flowerkit.data.decode import SUPPORTED, ImageProblem
from flowerkit.errors import FlowerkitError, FlowerkitWarning, OfflineError

TF_FLOWERS_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
)
# Pinned from TensorFlow Datasets' url_checksums/tf_flowers.txt (228,813,984 bytes).
TF_FLOWERS_SHA256 = "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"
CODELAB_TFRECORDS = "gs://flowers-public/tfrecords-jpeg-192x192-2/*.tfrec"


@dataclasses.dataclass(frozen=True, eq=False)
class RecordImages(collections.abc.Sequence):
    """The encoded images of TFRecord shards as a sequence of bytes, each
    read from its shard when asked for (one seek and read): the dataset is
    never held in memory, and epochs keep their order (any position, any
    time). `offsets`/`lengths`: where each image's bytes lie in its shard."""

    shards: tuple[str, ...]
    shard: np.ndarray  # (n,) int32: position in `shards`
    offsets: np.ndarray  # (n,) int64
    lengths: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.shard)

    def __getitem__(self, position):
        if isinstance(position, slice):
            return self.take(np.arange(len(self))[position])
        with _open_shard(self.shards[self.shard[position]]) as handle:
            handle.seek(int(self.offsets[position]))
            return handle.read(int(self.lengths[position]))

    def take(self, indices) -> "RecordImages":
        return RecordImages(self.shards, self.shard[indices], self.offsets[indices], self.lengths[indices])


def _open_shard(path: str):
    if "://" not in path:
        return open(path, "rb")
    import tensorflow as tf  # heavy: only for shards in cloud storage (gs://), which need it

    return tf.io.gfile.GFile(path, "rb")


@dataclasses.dataclass(frozen=True)
class ImageIndex:
    """Images and their labels, before any decoding.

    Each entry of `images` is what the decoders open: a file path (str), or
    the encoded bytes of an image where the source has no files (TFRecords:
    a `RecordImages`, read from the shards on access). `orientations`: the EXIF orientation (1..8) of
    each image, read once when indexing, for the tf.data pipeline (Pillow
    reads it from the file itself); empty means all upright.
    """

    class_names: tuple[str, ...]
    labels: np.ndarray
    images: tuple[str | bytes, ...] | RecordImages
    source: str = ""
    orientations: tuple[int, ...] = ()
    # The manifest rows of file images (`flowerkit.data.manifest`), aligned
    # with `images`: hashing reuses them instead of a second stat per file.
    rows: manifest.Manifest | manifest.Rows | None = dataclasses.field(default=None, repr=False, compare=False)
    # The `images` those rows were made for: an index whose images were
    # replaced since (dataclasses.replace) has other ones. Checked by
    # identity: comparing a million paths costs a second in a warm run.
    rows_images: tuple | None = dataclasses.field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        return bool(self.images) and isinstance(self.images[0], bytes)

    def subset(self, indices) -> "ImageIndex":
        indices = np.asarray(indices, dtype=np.int64)
        images = (self.images.take(indices) if isinstance(self.images, RecordImages)
                  else _pick(self.images, indices))
        aligned = self.rows is not None and self.rows_images is self.images
        return dataclasses.replace(
            self,
            labels=self.labels[indices],
            images=images,
            orientations=_pick(self.orientations, indices) if self.orientations else (),
            rows=manifest.Rows.of(self.rows).take(indices) if aligned else None,
            rows_images=images if aligned else None,
        )

    @property
    def has_rows(self) -> bool:
        """Whether `rows` are the manifest rows of exactly these images."""
        return self.rows is not None and self.rows_images is self.images

    def orientation_array(self) -> np.ndarray:
        """EXIF orientation per image (int32, 1 = upright)."""
        if self.orientations:
            return np.asarray(self.orientations, dtype=np.int32)
        return np.ones(len(self), dtype=np.int32)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return dict(zip(self.class_names, counts.tolist()))


def _pick(items, indices) -> tuple:
    """items[i] for each i, as a tuple (itemgetter: one C loop, not a Python one)."""
    if len(indices) == 0:
        return ()
    picked = operator.itemgetter(*(indices.tolist() if isinstance(indices, np.ndarray) else indices))(items)
    return picked if len(indices) > 1 else (picked,)


def index_source(source: str | None, quiet: bool | None = None) -> ImageIndex:
    """Resolves a data source string to an `ImageIndex`.

    None or "tf_flowers": download (once) into the Keras cache. A path or
    glob ending in .tfrec/.tfrecord, or any gs:// URL: the codelab's
    TFRecords. A .csv file: `path,label` rows (`index_csv`). Anything else:
    a folder with one subfolder per class. `quiet`: progress as in
    `flowerkit.progress.stage` (a bar on a terminal, else one line).
    """
    if source in (None, "", "tf_flowers"):
        return index_folder(download_tf_flowers(), quiet=quiet)
    if source.lower().endswith(".csv"):
        return index_csv(source, quiet=quiet)
    if source == "codelab_tfrecords":
        source = CODELAB_TFRECORDS
    if source.startswith("gs://") or source.rstrip("*").endswith((".tfrec", ".tfrecord")):
        return read_tfrecords(source)
    return index_folder(source, quiet=quiet)


def download_tf_flowers() -> Path:
    """tf_flowers (flower_photos.tgz) in the Keras cache, downloaded once and
    checked against its pinned SHA-256. Returns the class-per-folder root.

    Keras's `get_file` checks the hash of a cached archive too, and
    downloads a tampered or truncated one again. The archive is extracted
    here rather than by `get_file` (which extracts on every call): once,
    into a temporary folder renamed into place, after checking that no
    member would land outside it."""
    import keras

    # FLOWERKIT_TF_FLOWERS_URL points at a mirror (same archive, same hash).
    url = os.environ.get("FLOWERKIT_TF_FLOWERS_URL", TF_FLOWERS_URL)
    try:
        archive = Path(keras.utils.get_file(
            "flower_photos.tgz",
            origin=url,
            file_hash=TF_FLOWERS_SHA256,
            hash_algorithm="sha256",
            extract=False,
            # KERAS_HOME as it is now: Keras reads it once, when imported.
            cache_dir=os.environ.get("KERAS_HOME"),
        ))
    except ValueError as error:  # downloaded, but not the archive the hash names
        raise FlowerkitError(
            f"The tf_flowers archive downloaded from {url} does not match its pinned SHA-256 "
            f"(truncated or altered: {error}); run again to download it again, or pass "
            "--data DIR with one subfolder per class."
        ) from None
    except Exception as error:  # get_file raises bare Exception on fetch failures
        raise OfflineError(
            f"Could not download tf_flowers from {url} ({error}). "
            "Offline? Pass --data DIR with one subfolder per class "
            "(e.g. --data ../shared/data/flower_photos) and, for pretrained weights, "
            "fill $KERAS_HOME/models (e.g. from ../shared/weights/keras_home/models) "
            "or pass --weights PATH.",
            what="tf_flowers",
        ) from None
    root = _extract_once(archive, archive.with_name("flower_photos_extracted"), TF_FLOWERS_SHA256)
    return root / "flower_photos" if (root / "flower_photos").is_dir() else root


def _extract_once(archive: Path, destination: Path, digest: str) -> Path:
    """`archive` (a tar file) extracted into `destination`, unless a whole
    extraction of the same archive (`digest`) is already there."""
    import shutil
    import tarfile

    marker = destination / ".flowerkit-extracted"
    if marker.is_file() and marker.read_text().strip() == digest:
        return destination
    partial = destination.with_name(f".partial-{destination.name}-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            partial.mkdir(parents=True)
            # The "data" filter (Python 3.12, backported to 3.10.12/3.11.4)
            # also drops special files and unsafe permissions.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(partial, members=members, filter="data")
            else:
                tar.extractall(partial, members=members)
    except (tarfile.TarError, EOFError, OSError) as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise FlowerkitError(f"Cannot extract {archive} ({error}); delete it to download it again.") from None
    (partial / marker.name).write_text(digest + "\n")
    shutil.rmtree(destination, ignore_errors=True)  # an earlier, partial or other extraction
    os.replace(partial, destination)
    return destination


def _check_member(member, archive: Path) -> None:
    """Refuses members that would be written outside the extraction folder
    (absolute paths, "..", links pointing out) or that are not plain files,
    folders or links."""
    def outside(path: str) -> bool:
        return path.startswith(("/", "\\")) or os.path.normpath(path).split(os.sep)[0] == ".."

    name = member.name
    unsafe = outside(name)
    if member.issym():  # relative to the link's folder
        unsafe = unsafe or member.linkname.startswith("/") or outside(
            os.path.join(os.path.dirname(name), member.linkname))
    elif member.islnk():  # relative to the archive's root
        unsafe = unsafe or outside(member.linkname)
    elif not (member.isfile() or member.isdir()):
        unsafe = True
    if unsafe:
        raise FlowerkitError(
            f"Refusing to extract {archive}: its member {name!r} would be written outside the "
            "extraction folder or is not a plain file; nothing was extracted."
        )


def index_folder(root, class_names=(), quiet: bool | None = None) -> ImageIndex:
    """Indexes a folder with one subfolder of images per class.

    Class names are the subfolder names in sorted order, unless `class_names`
    fixes them (and their order). Images in nested subfolders belong to the
    class folder they are in; symlinks are followed (loops are not).

    Every file in a class folder is read by its content, not its extension,
    and is either indexed or skipped and counted in one `FlowerkitWarning`
    (unreadable, unsupported format, broken symlink, ...). Hidden files and
    folders (.DS_Store, ._x.jpg AppleDouble files, .ipynb_checkpoints) and
    Thumbs.db/desktop.ini are operating-system metadata, ignored silently.
    A class folder without readable images is skipped and named in that
    warning; if `class_names` asks for it, that is an error instead.

    What is read of each file is kept in the source's manifest
    (`flowerkit.data.manifest`): the next call reads only new or changed
    files. `quiet` as in `flowerkit.progress.stage`.
    """
    root = Path(root)
    if not root.exists():
        raise FlowerkitError(f"Data folder not found: {root}")
    if not root.is_dir():
        raise FlowerkitError(f"Data source is not a folder: {root}")
    try:
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not _is_hidden(p.name))
    except OSError as error:
        raise FlowerkitError(f"Cannot list data folder {root}: {error.strerror or error}") from None
    if class_names:
        missing = [name for name in class_names if name not in folders]
        if missing:
            raise FlowerkitError(f"Class folder(s) {missing} not found in {root}.")
        folders = list(class_names)
    if len(folders) < 2:
        raise FlowerkitError(
            f"Found {len(folders)} class folder(s) in {root}; need at least two "
            "(one subfolder of images per class)."
        )
    candidates, stats, labels, skipped = [], [np.zeros((0, 2), np.int64)], [], []
    for label, name in enumerate(folders):
        paths, found = _class_files(root / name, skipped)
        candidates += paths
        stats.append(found)
        labels.append(np.full(len(paths), label, np.int32))
    total = len(candidates) + len(skipped)
    stats = np.concatenate(stats)
    keep, orientations, rows = _index_files(root, candidates, stats, np.arange(len(candidates)), skipped, quiet)
    labels = np.concatenate([np.zeros(0, np.int32), *labels])[keep]
    counts = np.bincount(labels, minlength=len(folders))
    empty = [name for name, count in zip(folders, counts) if count == 0]
    if empty and class_names:
        _warn_skipped(root, skipped, total)
        raise FlowerkitError(
            f"Class folder(s) {empty} in {root} have no readable images, but the "
            "recipe's class_names ask for them."
        )
    _warn_skipped(root, skipped, total, empty)
    kept_classes = [label for label, count in enumerate(counts) if count > 0]
    if 0 < len(kept_classes) < 2:
        raise FlowerkitError(
            f"Only class folder {folders[kept_classes[0]]!r} in {root} has readable images; "
            "need at least two classes."
        )
    relabel = np.full(len(folders), -1, dtype=np.int32)
    relabel[kept_classes] = np.arange(len(kept_classes), dtype=np.int32)
    images = tuple(candidates) if len(keep) == len(candidates) else _pick(candidates, keep)
    index = ImageIndex(
        class_names=tuple(folders[label] for label in kept_classes),
        labels=relabel[labels],
        images=images,
        source=str(root),
        orientations=orientations,
        rows=rows,
        rows_images=images,
    )
    _check_not_empty(index)
    return index


_HIDDEN_NAMES = ("thumbs.db", "desktop.ini")


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in _HIDDEN_NAMES


_NAME, _PATH = operator.attrgetter("name"), operator.attrgetter("path")
_MODE, _SIZE, _MTIME = (operator.attrgetter(field) for field in ("st_mode", "st_size", "st_mtime_ns"))


def _class_files(folder: Path, skipped: list) -> tuple[list[str], np.ndarray]:
    """Every non-hidden file under `folder` (sorted) and its (size, mtime)
    row, following symlinks; broken links, link loops and unlistable folders
    go to `skipped`. Each folder's entries are stat'ed and read by `map` (C
    loops, no Python per file): at a million files a warm run is mostly
    this walk."""
    paths, stats, seen = [], [], set()
    pending = [str(folder)]
    while pending:
        directory = pending.pop()
        try:
            status = os.stat(directory)
            entries = list(os.scandir(directory))
        except OSError as error:
            skipped.append((_os_reason(error, "unreadable folder"), directory + os.sep))
            continue
        if (status.st_dev, status.st_ino) in seen:
            skipped.append(("symlink loop", directory + os.sep))
            continue
        seen.add((status.st_dev, status.st_ino))
        entries, statuses = _stat_entries(_visible(entries), skipped)
        modes = np.fromiter(map(_MODE, statuses), np.int64, len(statuses)) & 0o170000
        for position in np.flatnonzero(modes != stat.S_IFREG).tolist():
            if modes[position] == stat.S_IFDIR:
                pending.append(entries[position].path)
            else:
                skipped.append(("not a regular file", entries[position].path))
        regular = np.flatnonzero(modes == stat.S_IFREG).tolist()
        if len(regular) < len(entries):
            entries, statuses = _pick(entries, regular), _pick(statuses, regular)
        paths += map(_PATH, entries)
        stats.append(np.stack([np.fromiter(map(_SIZE, statuses), np.int64, len(statuses)),
                               np.fromiter(map(_MTIME, statuses), np.int64, len(statuses))], axis=1))
    stats = np.concatenate([np.zeros((0, 2), np.int64), *stats])
    order = sorted(range(len(paths)), key=paths.__getitem__)  # nested folders: one sorted list
    return list(_pick(paths, order)), stats[order]


def _visible(entries: list) -> list:
    """The entries that are not hidden (`_is_hidden`); names are checked one
    by one only where one of a folder's names may be hidden."""
    names = "\0" + "\0".join(map(_NAME, entries)).lower() + "\0"
    if "\0." not in names and not any(f"\0{hidden}\0" in names for hidden in _HIDDEN_NAMES):
        return entries
    return [entry for entry in entries if not _is_hidden(entry.name)]


def _stat_entries(entries: list, skipped: list) -> tuple[list, list]:
    """The entries that can be stat'ed (following symlinks) and their stats;
    the others go to `skipped`."""
    try:
        return entries, list(map(os.DirEntry.stat, entries))
    except OSError:  # a broken link or a file gone: one by one, to name it
        pass
    kept, statuses = [], []
    for entry in entries:
        try:
            statuses.append(entry.stat())
            kept.append(entry)
        except OSError as error:
            skipped.append((_os_reason(error, "unreadable"), entry.path))
    return kept, statuses


def _os_reason(error: OSError, default: str) -> str:
    return {
        errno.ENOENT: "broken symlink",
        errno.ELOOP: "symlink loop",
        errno.EACCES: "permission denied",
    }.get(error.errno, default)


def _index_files(source, candidates, stats: np.ndarray, listed: np.ndarray, skipped: list, quiet=None):
    """The positions of the readable `candidates`, their orientations and
    their manifest rows, from the manifest of `source` (new or changed files
    are read now, with progress). `listed`: the positions of the candidates
    that could be stat'ed, `stats` their (size, mtime) rows; the unreadable
    go to `skipped` as (reason, path)."""
    listed_paths = candidates if len(listed) == len(candidates) else _pick(candidates, listed)
    with progress.stage("Indexing images", total=len(listed), quiet=quiet) as bar:
        rows = manifest.refresh(source, listed_paths, stats, progress=bar)
    readable = rows.reasons == b""
    if readable.all():  # the usual case: no copy of a million rows
        return listed, tuple(rows.orientations.tolist()), rows
    skipped += [(reason.decode(), listed_paths[row])
                for row, reason in zip(np.flatnonzero(~readable).tolist(), rows.reasons[~readable])]
    return listed[readable], tuple(rows.orientations[readable].tolist()), rows.take(readable)


def _stat_pair(path: str, skipped: list):
    """(size, mtime) of a listed file, or None (and a reason in `skipped`)."""
    try:
        status = os.stat(path)
    except OSError as error:
        skipped.append(("permission denied" if error.errno == errno.EACCES else "unreadable", path))
        return None
    if not stat.S_ISREG(status.st_mode):
        skipped.append(("not a regular file", path))
        return None
    return status.st_size, status.st_mtime_ns


def index_csv(path, class_names=(), quiet: bool | None = None) -> ImageIndex:
    """Indexes a CSV of `path,label` rows (a `path,label` header is optional),
    paths relative to the CSV's folder. Classes are the labels in sorted
    order (or `class_names`). Unreadable images are skipped as for folders;
    a label whose images are all missing or unreadable is an error."""
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise FlowerkitError(f"CSV data source not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise FlowerkitError(f"Cannot read the CSV data source {path}: {error}") from None
    if rows and [cell.strip().lower() for cell in rows[:1][0]] == ["path", "label"]:
        rows = rows[1:]
    bad = [n for n, row in enumerate(rows, 1) if len(row) != 2 or not row[0].strip() or not row[1].strip()]
    if bad:
        raise FlowerkitError(f"CSV data source {path}: row(s) {bad[:5]} are not 'path,label'.")
    if not rows:
        raise FlowerkitError(f"CSV data source {path} lists no images.")
    names = tuple(class_names) or tuple(sorted({row[1].strip() for row in rows}))
    if len(names) < 2:
        raise FlowerkitError(f"CSV data source {path} has one class ({names[0]!r}); need at least two.")
    unknown = sorted({row[1].strip() for row in rows} - set(names))
    if unknown:
        raise FlowerkitError(f"CSV data source {path} has labels {unknown} outside the recipe's classes.")
    candidates = [str(path.parent / row[0].strip()) for row in rows]
    labels = [names.index(row[1].strip()) for row in rows]
    skipped = []
    stats = [_stat_pair(candidate, skipped) for candidate in candidates]
    listed = np.asarray([i for i, pair in enumerate(stats) if pair is not None], np.int64)
    listed_stats = np.asarray([stats[i] for i in listed], np.int64).reshape(len(listed), 2)
    keep, orientations, kept_rows = _index_files(path, candidates, listed_stats, listed, skipped, quiet)
    _warn_skipped(path.parent, skipped, len(candidates))
    kept_labels = np.asarray(labels, dtype=np.int32)[keep]
    empty = [name for c, name in enumerate(names) if not (kept_labels == c).any()]
    if empty:
        raise FlowerkitError(
            f"CSV data source {path}: label(s) {empty} have no readable images "
            "(missing files or unreadable images; see the warning)."
        )
    images = _pick(candidates, keep)
    return ImageIndex(
        class_names=names,
        labels=kept_labels,
        images=images,
        source=str(path),
        orientations=orientations,
        rows=kept_rows,
        rows_images=images,
    )


def read_tfrecords(pattern: str) -> ImageIndex:
    """Indexes TFRecords in the codelab's format: each readable record's
    image bytes are checked now, and kept as a place in its shard
    (`RecordImages`) that the pipelines read again per epoch.

    Features: `image` (JPEG bytes) and `class` (int64) are required; `label`
    (class name bytes) names the classes when present. `size` and
    `one_hot_class` are redundant and ignored.
    """
    try:
        import tensorflow as tf
    except ImportError:
        raise FlowerkitError(
            "Reading TFRecords needs TensorFlow, which is not installed: "
            "pip install tensorflow  (or use a folder of images with --data DIR)."
        ) from None
    try:
        files = sorted(tf.io.gfile.glob(pattern))
    except tf.errors.OpError as error:
        raise FlowerkitError(f"Cannot list TFRecords {pattern}: {error.message}") from None
    if not files:
        raise FlowerkitError(f"No TFRecord files match {pattern}")
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "class": tf.io.FixedLenFeature([], tf.int64),
        "label": tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    places, classes, names, orientations, damaged = [], [], {}, [], []
    for shard, file in enumerate(files):
        position = end = 0
        try:
            for position, record in enumerate(tf.data.TFRecordDataset(file), start=1):
                where = f"{file} record {position}"
                raw = record.numpy()
                start = end + 12  # a record: its length (8 bytes), their CRC (4), the bytes, their CRC (4)
                end = start + len(raw) + 4
                try:
                    example = tf.io.parse_single_example(record, features)
                except tf.errors.InvalidArgumentError:
                    damaged.append(("records without image/class or of the wrong type", where))
                    continue
                data = example["image"].numpy()
                record = manifest.safe_record(data)
                if isinstance(record, ImageProblem):
                    damaged.append((f"records whose image is {record.reason}", where))
                    continue
                orientation = record[0]
                label = int(example["class"].numpy())
                if label < 0:
                    damaged.append(("records with a negative class", where))
                    continue
                places.append((shard, start + raw.find(data), len(data)))  # the bytes are stored verbatim
                classes.append(label)
                orientations.append(orientation)
                names.setdefault(label, example["label"].numpy().decode("utf-8", "replace") or f"class_{label}")
        except tf.errors.OpError as error:
            reason = "corrupt or truncated files (later records lost)" if isinstance(
                error, tf.errors.DataLossError) else "unreadable files"
            damaged.append((reason, f"{file} after record {position}"))
    _warn_skipped(pattern, damaged, None)
    if not places:
        raise FlowerkitError(f"No readable records in TFRecords {pattern}")
    num_classes = max(names) + 1
    shard, offsets, lengths = np.asarray(places, dtype=np.int64).T
    index = ImageIndex(
        class_names=tuple(names.get(i, f"class_{i}") for i in range(num_classes)),
        labels=np.asarray(classes, dtype=np.int32),
        images=RecordImages(tuple(files), shard.astype(np.int32), offsets, lengths),
        source=pattern,
        orientations=tuple(orientations),
    )
    _check_not_empty(index)
    return index


MAX_NAMED = 10


def skipped_message(source, skipped, total: int | None = None, empty_classes=()) -> str:
    """One line: how many items were skipped, by reason, naming up to
    MAX_NAMED of them (paths relative to a folder `source`)."""
    base = Path(source) if Path(str(source)).is_dir() else None

    def name(item):
        item = str(item)
        if base is not None and item.startswith(str(base) + os.sep):
            return item[len(str(base)) + 1 :]
        return item

    parts = []
    if skipped:
        by_reason: dict[str, list] = {}
        for reason, item in skipped:
            by_reason.setdefault(reason, []).append(name(item))
        budget = MAX_NAMED
        groups = []
        for reason, items in by_reason.items():
            shown = items[:budget]
            budget -= len(shown)
            listed = ", ".join(shown)
            if len(items) > len(shown):
                listed += f" and {len(items) - len(shown)} more"
            groups.append(f"{len(items)} {reason} ({listed})" if shown else f"{len(items)} {reason}")
        of = f" of {total}" if total else ""
        parts.append(f"Skipped {len(skipped)}{of} item(s) in {source}: " + "; ".join(groups) + ".")
        if "unsupported format" in by_reason:
            parts.append(f"flowerkit reads {SUPPORTED}.")
    if empty_classes:
        parts.append(
            f"Skipped {len(empty_classes)} class folder(s) without readable images "
            f"in {source}: {', '.join(empty_classes)}."
        )
    return " ".join(parts)


def _warn_skipped(source, skipped, total=None, empty_classes=()) -> None:
    if skipped or empty_classes:
        warnings.warn(
            skipped_message(source, skipped, total, empty_classes), FlowerkitWarning, stacklevel=3
        )


def _check_not_empty(index: ImageIndex) -> None:
    if len(index) == 0:
        raise FlowerkitError(f"No readable images found in {index.source}")
    empty = [name for name, count in index.class_counts().items() if count == 0]
    if len(empty) > len(index.class_names) - 2:
        raise FlowerkitError(
            f"Need images in at least two classes; class(es) {empty} in "
            f"{index.source} have none."
        )


def split_index(index: ImageIndex, validation_fraction: float, seed: int):
    """Deterministic stratified split: the same files land in validation for
    a given seed, whatever the backend or filesystem order."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(index), bool)
    # One sort, each class a slice of it in index order (not a scan of every
    # image per class): the same members, permuted by the same draws.
    order = np.argsort(index.labels, kind="stable")
    bounds = np.searchsorted(index.labels[order], np.arange(len(index.class_names) + 1))
    for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        members = rng.permutation(order[start:end])
        held[members[: int(round(len(members) * validation_fraction))]] = True
    train, validation = np.flatnonzero(~held), np.flatnonzero(held)
    if len(train) == 0 or len(validation) == 0:
        raise FlowerkitError(
            f"{len(index)} images cannot be split {1 - validation_fraction:.0%}/"
            f"{validation_fraction:.0%} into non-empty training and validation sets."
        )
    return index.subset(train), index.subset(validation)


def sample_index(index: ImageIndex, count: int, seed: int) -> ImageIndex:
    """A seeded random subset of `count` images (all if there are fewer)."""
    if count >= len(index):
        return index
    rng = np.random.default_rng(seed)
    return index.subset(np.sort(rng.choice(len(index), size=count, replace=False)))
