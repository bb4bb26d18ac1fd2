"""`flowerkit evaluate MODEL --data SOURCE`: accuracy, per-class precision
and recall, and the confusion matrix, printed and written to a folder."""

from __future__ import annotations

import json
from pathlib import Path

from flowerkit.cli.common import (
    add_model_arguments, add_quiet_argument, check_data_source, positive_int, quiet, say_engine, stage, start_backend,
)
from flowerkit.report.artifacts import write_evaluation
from flowerkit.report.metrics import format_report


def add_arguments(parser) -> None:
    add_model_arguments(parser, tta_help=", reported apart from the plain figures")
    parser.add_argument("--data", metavar="SOURCE", help="as for train (default: tf_flowers)")
    parser.add_argument(
        "--split", choices=("all", "validation"), default="all",
        help="all images, or only the recipe's validation split (default: all)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--output", metavar="DIR", help="default: MODEL_DIR/evaluation")
    add_quiet_argument(parser)


def run(args) -> int:
    check_data_source(args.data)
    start_backend(args.model)
    # Keras and its backend start here, once the arguments are checked.
    from flowerkit.exporting.engines import evaluate

    with stage(args, f"Evaluating on the {args.split} split" + (" with flip TTA" if args.tta else "")) as done:
        report = evaluate(
            args.model, args.data, split=args.split, batch_size=args.batch_size, tta=args.tta,
            engine=args.engine, quiet=quiet(args),
        )
        done.update(report["images"])
    say_engine(report["engine"])
    output = Path(args.output) if args.output else Path(args.model).parent / "evaluation"
    written = write_evaluation(output, report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        if "tta" in report:
            print(f"\nwith {report['tta']['method']} test-time augmentation: accuracy "
                  f"{report['tta']['accuracy']:.4f} (plain {report['accuracy']:.4f})")
        print(f"\nwrote {' and '.join(str(path) for path in written)}")
    return 0

