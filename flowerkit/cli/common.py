"""What the subcommands share: flag types, the model arguments of predict
and evaluate, and starting the backend quietly."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from flowerkit import progress
from flowerkit.backends import allocator, compile_cache, selection
from flowerkit.backends.devices import warm_up_quietly
from flowerkit.errors import FlowerkitError, did_you_mean


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}{_did_you_mean(message)} (see --help)\n")


def _did_you_mean(message: str) -> str:
    """argparse's "invalid choice: 'trian' (choose from ...)" with the close match."""
    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not found:
        return ""
    choices = re.findall(r"'([^']*)'", found.group(2)) or [c.strip() for c in found.group(2).split(",")]
    return did_you_mean(found.group(1), choices).replace(" Did", "; did")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model_arguments(parser, tta_help: str) -> None:
    """What predict and evaluate share: the model, test-time augmentation, JSON output."""
    parser.add_argument("model", help="model.keras written by train (recipe.json beside it)")
    parser.add_argument(
        "--tta", choices=("flip",), default=None,
        help="test-time augmentation: average with the mirror image" + tta_help,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_engine_argument(parser)


ENGINES = ("auto", "keras", "onnx", "litert")


def add_engine_argument(parser) -> None:
    parser.add_argument(
        "--engine", choices=ENGINES, default="auto",
        help="what runs the model: Keras, or ONNX Runtime / LiteRT on an export verified and cached "
             "beside it (default: auto, the fastest measured for this backend and device)",
    )


def say_engine(engine: str) -> None:
    """The one stderr line naming the engine that ran the model."""
    print(f"flowerkit: engine {engine}", file=sys.stderr, flush=True)


def choose_backend(model_path=None) -> str:
    """The backend this command runs on, chosen without importing Keras
    where nothing chose one (for a saved model `model_path`, the one it was
    trained on: `flowerkit.backends.selection`), and said on stderr."""
    if model_path is not None and not Path(model_path).exists():
        raise FlowerkitError(f"Model file not found: {model_path}")  # before a backend starts
    chosen = selection.choose_backend(model_path)
    if chosen:
        print(f"flowerkit: {chosen}", file=sys.stderr, flush=True)
    return selection.configured_backend()[0]


def start_backend(model_path=None) -> None:
    """Chooses the backend (`choose_backend`), then imports Keras and its
    backend with the native start-up noise held back and without Keras
    writing a keras.json, and makes the process-wide choices that `train()`
    makes (`flowerkit.backends.allocator`, `compile_cache`), so predict,
    evaluate and serve run as fast as training. Commands call it after their
    arguments are checked, so a typo fails in a fraction of a second."""
    choose_backend(model_path)
    with selection.keras_config_left_alone():
        warm_up_quietly()
    allocator.configure()
    compile_cache.configure()


DATA_SOURCES = ("a folder with one subfolder per class, a path,label .csv file, a TFRecord glob "
                "(local or gs://), or tf_flowers")


def check_data_source(source: str | None, flag: str = "--data") -> None:
    """A local data source that cannot be one fails here, before a backend
    starts or a run folder is touched, saying what a data source can be."""
    if source in (None, "", "tf_flowers", "codelab_tfrecords") or source.startswith("gs://"):
        return
    if source.rstrip("*").endswith((".tfrec", ".tfrecord")) or any(c in source for c in "*?["):
        return
    path = Path(source)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise FlowerkitError(f"CSV data source not found: {source} ({flag}).")
        return
    if not path.exists():
        raise FlowerkitError(f"Data folder not found: {source} ({flag}); a data source is {DATA_SOURCES}.")
    if not path.is_dir():
        raise FlowerkitError(f"{flag} {source} is a file, not a data source; a data source is {DATA_SOURCES}.")


def add_quiet_argument(parser) -> None:
    parser.add_argument("--quiet", action="store_true",
                        help="one line per stage instead of progress bars (also when not a terminal)")


def quiet(args) -> bool | None:
    """`quiet` for `flowerkit.progress.stage` from --quiet: True (one line
    per stage) with it, else None (a bar on a terminal)."""
    return True if getattr(args, "quiet", False) else None


def stage(args, label: str, unit: str = "image"):
    """A labelled progress stage on stderr: a bar on a terminal, one line
    with --quiet or when stderr is a file or pipe (`flowerkit.progress`)."""
    return progress.stage(label, unit=unit, quiet=quiet(args))
