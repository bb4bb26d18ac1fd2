"""What the subcommands share: flag types, the model arguments of predict
and evaluate, and starting the backend quietly."""

from __future__ import annotations

import argparse

from flowerkit.backends import allocator
from flowerkit.backends.devices import warm_up_quietly


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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


def start_backend() -> None:
    """Imports Keras and its backend with the native start-up noise held
    back, and makes the process-wide allocator choice that `train()` makes
    (`flowerkit.backends.allocator`), so predict, evaluate and serve run as
    fast as training. Commands call it after their arguments are checked, so
    a typo fails in a fraction of a second."""
    warm_up_quietly()
    allocator.configure()
