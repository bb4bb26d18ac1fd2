"""`flowerkit predict MODEL IMAGE...`: top-k classes with probabilities for
each image."""

from __future__ import annotations

import json

from flowerkit.cli.common import add_model_arguments, positive_int, say_engine, start_backend


def add_arguments(parser) -> None:
    add_model_arguments(parser, tta_help="")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--top-k", type=positive_int, default=3, help="(default: 3)")


def run(args) -> int:
    start_backend(args.model)
    # Keras and its backend start here, once the arguments are checked.
    from flowerkit.exporting.engines import predict

    results = predict(args.model, args.images, top_k=args.top_k, tta=args.tta, engine=args.engine)
    say_engine(results[0]["engine"])
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        ranked = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in result["top"])
        print(f"{result['image']}: {ranked}")
    return 0

