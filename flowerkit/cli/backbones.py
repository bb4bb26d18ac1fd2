"""`flowerkit backbones`: every registered backbone, what it is (sizes,
feature width, published ImageNet top-1, licence) and where its weights
come from, with whether each source loads offline here."""

from __future__ import annotations

import json

from flowerkit.cli.common import start_backend


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    start_backend()
    # Keras starts here (the registry builds Keras models), once the arguments are checked.
    from flowerkit.model.backbones import list_backbones

    rows = list_backbones()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(_summary(row))
        for source in row["sources"]:
            hashed = f" {source['file_hash']}" if source["file_hash"] else ""
            print(f"    --weights {source['name']}: {source['kind']} {source['location']}{hashed}")
            print(f"        offline: {source['offline']}")
    return 0


def _summary(row: dict) -> str:
    facts = [f"preprocessing {row['preprocessing']}"]
    if row["native_size"]:
        facts.append(f"{row['native_size']} px native, {row['default_size']} px in the presets")
    if row["feature_width"]:
        facts.append(f"{row['feature_width']} features")
    if row["imagenet_top1"]:
        facts.append(f"ImageNet top-1 {row['imagenet_top1']}%")
    if row["licence"]:
        facts.append(row["licence"])
    return f"{row['name']}: {row['description']}\n    {'; '.join(facts)}"
