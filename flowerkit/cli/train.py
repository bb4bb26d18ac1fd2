"""`flowerkit train`: train a recipe and write the model and its reports.

Every `Recipe` field is a flag that overrides just that field, generated
from the dataclass, so a new hyperparameter needs no change here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowerkit.backends import devices
from flowerkit.cli.common import check_data_source, positive_int, start_backend
from flowerkit.cli.offline import offline_advice
from flowerkit.config.recipe import Recipe, field_types
from flowerkit.errors import FlowerkitError, OfflineError
from flowerkit.inspection.lists import read_path_list, read_relabel_csv


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


def _auto_or_count(text: str):
    if text == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a whole number, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(filter(None, text.split(",")))


def _units(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(unit) for unit in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 500,50, got {text!r}") from None


_SPECIAL_FLAGS = {
    "backbone_kwargs": (_key_values, "KEY=VALUE,..."),
    "weights": (_optional_str, "imagenet|SOURCE|PATH|none"),
    "jit_compile": (_jit, "auto|true|false"),
    "micro_batch": (_auto_or_count, "auto|N"),
    "class_names": (_names, "A,B,..."),
    "augmentation": (_names, "OP,OP:ARG,..."),
    "fine_tune_augmentation": (_names, "OP,OP:ARG,..."),
    "head_units": (_units, "N,N,..."),
}


def add_arguments(parser) -> None:
    parser.add_argument(
        "--preset", "--recipe", dest="preset", default="codelab", metavar="NAME|DIR|JSON",
        help="a preset name, a run folder or a recipe.json to start from (default: codelab)",
    )
    parser.add_argument(
        "--data", metavar="SOURCE",
        help="folder with one subfolder per class, TFRecord glob (local or gs://), "
        "or 'tf_flowers' (default: download tf_flowers into the Keras cache)",
    )
    parser.add_argument("--output", metavar="DIR", help="run folder (default: runs/PRESET-BACKEND)")
    parser.add_argument(
        "--max-images", type=positive_int, metavar="N", help="use a seeded random subset of N images"
    )
    parser.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="train again into an --output that holds a finished (or interrupted) run",
    )
    parser.add_argument(
        "--tpu", metavar="ADDRESS",
        help="TensorFlow: the TPU to train on ('local' on a TPU VM, or a TPU name or grpc:// "
        "address), found with TPUClusterResolver as in the codelab",
    )
    parser.add_argument(
        "--exclude", metavar="FILE",
        help="paths (one a line, relative to the data folder) left out; kept in recipe.json "
        "(flowerkit inspect writes one: exclude.txt)",
    )
    parser.add_argument(
        "--relabel", metavar="FILE", help="path,label CSV of corrected labels; kept in recipe.json"
    )
    _add_recipe_flags(parser)


# Recipe fields set by --exclude FILE and --relabel FILE instead.
_FILE_FIELDS = ("exclude", "relabel")


def _add_recipe_flags(parser) -> None:
    group = parser.add_argument_group("recipe overrides (default: the preset's values)")
    for name, annotation in field_types().items():
        if name == "name" or name in _FILE_FIELDS:
            continue
        if name in _SPECIAL_FLAGS:
            convert, metavar = _SPECIAL_FLAGS[name]
        elif annotation is bool:
            convert, metavar = _bool, "true|false"
        else:
            convert, metavar = annotation, name.upper()
        # SUPPRESS: only flags actually given appear in args (so "--weights none" counts).
        group.add_argument(
            "--" + name.replace("_", "-"), dest=f"recipe_{name}", type=convert,
            metavar=metavar, default=argparse.SUPPRESS,
        )
    group.add_argument(
        "--alpha", type=float, default=None, help="shorthand for --backbone-kwargs alpha=VALUE"
    )


def recipe_from_args(args):
    """The preset (or saved recipe) with the flags given applied."""
    recipe = Recipe.from_preset(args.preset)
    changes = {
        key.removeprefix("recipe_"): value
        for key, value in vars(args).items()
        if key.startswith("recipe_")
    }
    if args.alpha is not None:
        kwargs = dict(changes.get("backbone_kwargs", recipe.backbone_kwargs))
        changes["backbone_kwargs"] = {**kwargs, "alpha": args.alpha}
    # Added to what the recipe already holds, so a rerun from recipe.json is the same run.
    if getattr(args, "exclude", None):
        changes["exclude"] = (*recipe.exclude, *read_path_list(args.exclude))
    if getattr(args, "relabel", None):
        changes["relabel"] = {**recipe.relabel, **read_relabel_csv(args.relabel)}
    return recipe.replace(**changes) if changes else recipe


def run(args) -> int:
    recipe = recipe_from_args(args)  # a bad flag fails here, before any backend starts
    check_data_source(args.data)  # and a bad --data, before the run folder is looked at
    start_backend()
    # Keras and its backend start here, once the arguments are checked.
    from flowerkit.training import train

    output = Path(args.output or f"runs/{recipe.name}-{devices.backend()}")
    print(
        f"flowerkit: training preset {recipe.name!r} ({recipe.backbone} "
        f"{dict(recipe.backbone_kwargs)}, {recipe.image_size}px, weights={recipe.weights}) "
        f"on {devices.backend()} / {devices.device_summary()['name']}; output: {output}",
        flush=True,
    )
    try:
        result = train(
            recipe,
            source=args.data,
            output_dir=output,
            max_images=args.max_images,
            # One line per epoch with --quiet or into a file or pipe; Keras draws bars on stdout.
            verbose=2 if args.quiet or not sys.stdout.isatty() else "auto",
            overwrite=args.overwrite,
            tpu=args.tpu,
        )
    except OfflineError as error:
        raise FlowerkitError(offline_advice(error.what, recipe, args.preset, args.data, args.output)) from None
    except KeyboardInterrupt:
        print(f"flowerkit: interrupted; run the same command again to resume from the last "
              f"finished epoch ({output})", flush=True)
        raise
    if result.output_dir is None:  # another process of a torchrun job: process 0 reports
        return 0
    metrics = result.metrics
    print(
        f"flowerkit: validation accuracy {metrics['val_accuracy']:.4f} "
        f"(loss {metrics['val_loss']:.4f}) after {metrics['epochs']} epochs in "
        f"{metrics['wall_seconds']:.0f} s; wrote {output}/model.keras and reports"
    )
    return 0

