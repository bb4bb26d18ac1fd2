"""`flowerkit inspect SOURCE`: class balance, duplicates, label conflicts and
likely label errors, written as inspection.json, inspection.html (with
thumbnails), a contact sheet of suspects and an exclude file."""

from __future__ import annotations

from pathlib import Path

from flowerkit.cli.common import (
    add_quiet_argument, check_data_source, positive_int, quiet, stage, start_backend,
)
from flowerkit.config.recipe import Recipe


def add_arguments(parser) -> None:
    parser.add_argument("source", metavar="SOURCE",
                        help="folder with one subfolder per class, a path,label CSV, or TFRecords")
    parser.add_argument("--preset", "--recipe", dest="preset", default="mobilenet_v2_035",
                        metavar="NAME|DIR|JSON",
                        help="whose backbone's features confirm near duplicates and train the "
                        "out-of-fold head (default: mobilenet_v2_035, the cheapest)")
    parser.add_argument("--image-size", type=positive_int, metavar="PIXELS",
                        help="the backbone's input size for the features (default: the recipe's); "
                        "smaller is faster: for a folder of small images, about their size")
    parser.add_argument("--output", metavar="DIR", help="default: inspection/<source folder name>")
    parser.add_argument("--folds", type=positive_int, default=5, help="out-of-fold folds (default: 5)")
    parser.add_argument("--top", type=positive_int, default=10, help="suspects in the terminal table")
    parser.add_argument("--json", action="store_true", help="print inspection.json instead of a table")
    add_quiet_argument(parser)


def run(args) -> int:
    recipe = Recipe.from_preset(args.preset)  # a bad preset fails before any backend starts
    if args.image_size:
        recipe = recipe.replace(image_size=args.image_size)
    check_data_source(args.source, flag="SOURCE")
    start_backend()
    # After start_backend: these import Keras (its start-up noise held back).
    from flowerkit.inspection.report import terminal_table, write_report
    from flowerkit.inspection.runner import inspect_source

    output = Path(args.output or f"inspection/{Path(str(args.source)).stem or 'data'}")
    with stage(args, f"Inspecting {args.source} (hashes, duplicates, {recipe.name} features, "
                     f"{args.folds}-fold label check)") as done:
        findings = inspect_source(recipe, args.source, folds=args.folds, quiet=quiet(args))
        done.update(sum(findings["balance"]["counts"].values()))
    paths = write_report(findings, output)
    if args.json:
        print(paths["json"].read_text(encoding="utf-8"))
    else:
        print(terminal_table(findings, args.top))
        print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0
