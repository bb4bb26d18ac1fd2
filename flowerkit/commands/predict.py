"""`flowerkit predict MODEL IMAGE...`: top-k classes with probabilities for
each image."""

from __future__ import annotations

import json

from flowerkit.cli import positive_int, start_backend


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model.keras written by train (recipe.json beside it)")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--top-k", type=positive_int, default=3, help="(default: 3)")
    parser.add_argument(
        "--tta", choices=("flip",), default=None,
        help="test-time augmentation: average with the mirror image",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    start_backend()
    from flowerkit.evaluation import predict

    results = predict(args.model, args.images, top_k=args.top_k, tta=args.tta)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        ranked = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in result["top"])
        print(f"{result['image']}: {ranked}")
    return 0

