"""`flowerkit train|predict|evaluate|export|serve`: the console script.

Each subcommand lives in `flowerkit.commands.<name>`; `python -m
flowerkit.<name>` runs the same. This module holds what they share: the parser, flag types, and the one place where errors become a
single line on stderr with exit status 2 (no tracebacks).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import typing
import warnings

from flowerkit.errors import FlowerkitError, FlowerkitWarning

COMMANDS = {
    "train": "train a recipe and write model + reports",
    "predict": "top-k classes for image files",
    "evaluate": "accuracy, precision/recall, confusion matrix",
    "export": "export to TF SavedModel, ONNX or LiteRT, checked in its runtime",
    "serve": "an HTTP API and a web page for a model (the serve extra)",
}


class _Parser(argparse.ArgumentParser):
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
    back. Commands call it after their arguments are checked, so a typo
    fails in a fraction of a second."""
    from flowerkit import runtime

    runtime.warm_up_quietly()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flowerkit", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, help_text in COMMANDS.items():
        command = importlib.import_module(f"flowerkit.commands.{name}")
        command.add_arguments(commands.add_parser(name, help=help_text))
        commands.choices[name].set_defaults(run=command.run)
    return parser


def main(argv=None) -> int:
    # Quieter TensorFlow start-up; must be set before TensorFlow is imported.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    show_warning = warnings.showwarning
    # FlowerkitWarnings (skipped data) as one clean line; others as Python shows them.
    warnings.showwarning = lambda message, category, *rest, **kw: (
        print(f"flowerkit {args.command}: warning: {message}", file=sys.stderr)
        if issubclass(category, FlowerkitWarning) else show_warning(message, category, *rest, **kw)
    )
    try:
        return args.run(args)
    except FlowerkitError as error:
        print(f"flowerkit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flowerkit {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = show_warning


def run_subcommand(name: str) -> typing.NoReturn:
    """Entry point of `python -m flowerkit.<name>`."""
    sys.exit(main([name, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
