"""`flowerkit train|predict|evaluate|export|inspect|serve|backbones`: the console script.

Each subcommand is a module here (`flowerkit.cli.<name>`, with
`add_arguments` and `run`); `python -m flowerkit.<name>` runs the same. This
module holds the parser and the one place where errors become a single line
on stderr with exit status 2 (no tracebacks); `common` holds what the
subcommands share.
"""

from __future__ import annotations

import os
import sys
import typing
import warnings

from flowerkit.cli import backbones, evaluate, export, inspect, predict, serve, train
from flowerkit.cli.common import Parser, add_model_arguments, positive_int, start_backend
from flowerkit.errors import FlowerkitError, FlowerkitWarning

# name -> (module, help)
COMMANDS = {
    "train": (train, "train a recipe and write model + reports"),
    "predict": (predict, "top-k classes for image files"),
    "evaluate": (evaluate, "accuracy, precision/recall, confusion matrix"),
    "export": (export, "export to TF SavedModel, ONNX or LiteRT, checked in its runtime"),
    "inspect": (inspect, "duplicates, label conflicts, likely label errors, class balance"),
    "serve": (serve, "an HTTP API and a web page for a model (the serve extra)"),
    "backbones": (backbones, "the backbones, their sizes and weight sources, and what is here offline"),
}

__all__ = ["COMMANDS", "add_model_arguments", "build_parser", "main", "positive_int",
           "run_subcommand", "start_backend"]


def build_parser() -> Parser:
    parser = Parser(prog="flowerkit", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (command, help_text) in COMMANDS.items():
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
