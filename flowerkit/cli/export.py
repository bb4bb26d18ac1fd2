"""`flowerkit export MODEL --format tf_saved_model|onnx|litert`: the model for
TF Serving, ONNX Runtime or a phone, checked against Keras in its own runtime."""

from __future__ import annotations

import json

from flowerkit.cli.common import (
    add_quiet_argument, choose_backend, positive_int, quiet, stage, start_backend,
)
from flowerkit.exporting.formats import FORMATS, check_can_export


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model.keras written by train (recipe.json beside it)")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output", metavar="PATH",
                        help="default: beside the model (model_saved_model/, model.onnx, model.tflite)")
    parser.add_argument("--quantize", choices=("int8",), default=None,
                        help="LiteRT only: int8 post-training quantization")
    parser.add_argument("--calibration-data", metavar="SOURCE",
                        help="photos for int8 calibration (the recipe's training split) and the "
                        "accuracy check (its validation split)")
    parser.add_argument("--calibration-images", type=positive_int, default=200)
    parser.add_argument("--no-verify", action="store_true",
                        help="skip running the artefact in its runtime against Keras")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a line")
    add_quiet_argument(parser)


def run(args) -> int:
    backend = choose_backend(args.model)
    check_can_export(args.format, backend=backend, quantize=args.quantize)  # before the backend starts
    start_backend(args.model)
    # Keras and its backend start here, once the arguments are checked.
    from flowerkit.exporting.convert import export

    label = f"Exporting to {args.format}" + ("" if args.no_verify else " and checking it in its runtime")
    with stage(args, label, unit="model") as done:
        result = export(
            args.model, args.format, output=args.output, quantize=args.quantize,
            calibration_data=args.calibration_data, calibration_images=args.calibration_images,
            verify=not args.no_verify, quiet=quiet(args),
        )
        done.update()
    print(json.dumps(result.to_dict(), indent=2) if args.json else f"flowerkit: {result.summary()}")
    return 0
