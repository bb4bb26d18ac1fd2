"""`flowerkit train|predict|evaluate`: thin wrappers over the Python API.

Recipe flags are generated from the `Recipe` fields, so a new hyperparameter
is a CLI flag without touching this file. User errors print one line and
exit with status 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from pathlib import Path

from flowerkit.errors import FlowerkitError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _scalar(text: str):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _key_values(text: str) -> dict:
    pairs = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value, got {item!r}")
        pairs[key.strip()] = _scalar(value.strip())
    return pairs


def _optional_str(text: str):
    return None if text.lower() in ("none", "null", "") else text


def _jit(text: str):
    return "auto" if text == "auto" else _bool(text)


def _add_recipe_flags(parser: argparse.ArgumentParser) -> None:
    from flowerkit.recipe import field_types

    group = parser.add_argument_group("recipe overrides (default: the preset's values)")
    special = {
        "backbone_kwargs": (_key_values, "KEY=VALUE,..."),
        "weights": (_optional_str, "imagenet|PATH|PRESET|none"),
        "jit_compile": (_jit, "auto|true|false"),
        "class_names": (lambda s: tuple(filter(None, s.split(","))), "A,B,..."),
        "augmentation": (lambda s: tuple(filter(None, s.split(","))), "OP,OP:ARG,..."),
        "head_units": (lambda s: tuple(int(u) for u in filter(None, s.split(","))), "N,N,..."),
    }
    for name, annotation in field_types().items():
        if name == "name":
            continue
        flag = "--" + name.replace("_", "-")
        if name in special:
            convert, metavar = special[name]
        elif annotation is bool:
            convert, metavar = _bool, "true|false"
        else:
            convert, metavar = annotation, name.upper()
        # SUPPRESS: only flags actually given appear in args (so "--weights none" counts).
        group.add_argument(
            flag, dest=f"recipe_{name}", type=convert, metavar=metavar, default=argparse.SUPPRESS
        )
    group.add_argument(
        "--alpha", type=float, default=None, help="shorthand for --backbone-kwargs alpha=VALUE"
    )


def _recipe_from_args(args):
    from flowerkit.recipe import Recipe, get_preset

    recipe = Recipe.load(args.recipe) if args.recipe else get_preset(args.preset)
    changes = {
        key.removeprefix("recipe_"): value
        for key, value in vars(args).items()
        if key.startswith("recipe_")
    }
    if args.alpha is not None:
        kwargs = dict(changes.get("backbone_kwargs", recipe.backbone_kwargs))
        changes["backbone_kwargs"] = {**kwargs, "alpha": args.alpha}
    return recipe.replace(**changes) if changes else recipe


def _train(args) -> int:
    from flowerkit import runtime
    from flowerkit.training import train

    recipe = _recipe_from_args(args)
    output = Path(args.output or f"runs/{recipe.name}-{runtime.backend()}")
    print(
        f"flowerkit: training preset {recipe.name!r} ({recipe.backbone} "
        f"{dict(recipe.backbone_kwargs)}, {recipe.image_size}px, weights={recipe.weights}) "
        f"on {runtime.backend()} / {runtime.device_summary()['name']}; output: {output}",
        flush=True,
    )
    result = train(
        recipe,
        source=args.data,
        output_dir=output,
        max_images=args.max_images,
        verbose=2 if args.quiet else "auto",
    )
    metrics = result.metrics
    print(
        f"flowerkit: validation accuracy {metrics['val_accuracy']:.4f} "
        f"(loss {metrics['val_loss']:.4f}) after {metrics['epochs']} epochs in "
        f"{metrics['wall_seconds']:.0f} s; wrote {output}/model.keras and reports"
    )
    return 0


def _predict(args) -> int:
    from flowerkit.evaluation import predict

    results = predict(args.model, args.images, top_k=args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        ranked = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in result["top"])
        print(f"{result['image']}: {ranked}")
    return 0


def _evaluate(args) -> int:
    from flowerkit.evaluation import evaluate, format_report
    from flowerkit.plots import plot_confusion_matrix

    report = evaluate(args.model, args.data, split=args.split, batch_size=args.batch_size)
    output = Path(args.output) if args.output else Path(args.model).parent / "evaluation"
    output.mkdir(parents=True, exist_ok=True)
    (output / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_confusion_matrix(report["confusion_matrix"], report["class_names"], output / "confusion_matrix.png")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
        print(f"\nwrote {output}/evaluation.json and {output}/confusion_matrix.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from flowerkit.recipe import PRESETS

    parser = _Parser(prog="flowerkit", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a recipe and write model + reports")
    train.add_argument("--preset", default="codelab", choices=list(PRESETS), help="(default: codelab)")
    train.add_argument("--recipe", metavar="JSON", help="start from a saved recipe.json instead of a preset")
    train.add_argument(
        "--data",
        metavar="SOURCE",
        help="folder with one subfolder per class, TFRecord glob (local or gs://), "
        "or 'tf_flowers' (default: download tf_flowers into the Keras cache)",
    )
    train.add_argument("--output", metavar="DIR", help="run folder (default: runs/PRESET-BACKEND)")
    train.add_argument("--max-images", type=int, metavar="N", help="use a seeded random subset of N images")
    train.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    _add_recipe_flags(train)
    train.set_defaults(run=_train)

    predict = commands.add_parser("predict", help="top-k classes for image files")
    predict.add_argument("model", help="model.keras written by train (recipe.json beside it)")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser("evaluate", help="accuracy, precision/recall, confusion matrix")
    evaluate.add_argument("model", help="model.keras written by train (recipe.json beside it)")
    evaluate.add_argument("--data", metavar="SOURCE", help="as for train (default: tf_flowers)")
    evaluate.add_argument(
        "--split", choices=("all", "validation"), default="all",
        help="all images, or only the recipe's validation split (default: all)",
    )
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--output", metavar="DIR", help="default: MODEL_DIR/evaluation")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.set_defaults(run=_evaluate)
    return parser


def main(argv=None) -> int:
    # Quieter TensorFlow start-up; must be set before TensorFlow is imported.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from flowerkit import runtime

        runtime.warm_up_quietly()
        return args.run(args)
    except FlowerkitError as error:
        print(f"flowerkit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flowerkit {args.command}: interrupted", file=sys.stderr)
        return 130


def run_subcommand(name: str) -> typing.NoReturn:
    """Entry point of `python -m flowerkit.<name>`."""
    sys.exit(main([name, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
