"""The check `train` runs before its split (content and perceptual hashes,
no features), on the shared photos: duplicate groups, cross-class conflicts,
how many groups the old random split put on both sides, and how many the
duplicate-aware split keeps together. Writes bench/results/inspect_shared.json.

    python -m bench.inspect_shared [PHOTOS_DIR]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from bench.report import write_result
from flowerkit.config.recipe import get_preset
from flowerkit.data.duplicates import find_duplicates
from flowerkit.data.hashing import hash_index
from flowerkit.data.sources import index_source, split_index
from flowerkit.data.splitting import group_split

PHOTOS = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/flower_photos")


def main() -> None:
    recipe = get_preset("mobilenet_v2_035")
    index = index_source(str(PHOTOS))
    started = time.perf_counter()
    duplicates = find_duplicates(hash_index(index), index.labels)
    seconds = time.perf_counter() - started
    _, old_validation = split_index(index, recipe.validation_split, recipe.seed)
    held_out = set(old_validation.images)
    in_validation = np.array([image in held_out for image in index.images])
    crossing = sum(len(set(in_validation[group])) > 1 for group in duplicates.groups)
    _, _, kept = group_split(index, recipe.validation_split, recipe.seed, duplicates.group_of)
    result = {
        "images": len(index),
        "duplicate_groups": len(duplicates.groups),
        "exact_groups": duplicates.kinds.count("exact"),
        "duplicate_images": duplicates.duplicate_images,
        "conflict_groups": len(duplicates.conflicts),
        "conflicts": [[str(index.images[m]) for m in duplicates.groups[g]] for g in duplicates.conflicts],
        "groups_across_the_old_split": crossing,
        "groups_kept_together_by_the_new_split": kept,
        "seconds": seconds,
        "thresholds": duplicates.thresholds,
        "split": {"validation_split": recipe.validation_split, "seed": recipe.seed},
    }
    write_result("inspect_shared", result)


if __name__ == "__main__":
    main()
