"""The run record: where and how a recipe runs, for metrics.json and the
benchmark rows."""

from __future__ import annotations

from flowerkit.backends import allocator, compile_cache
from flowerkit.backends.devices import backend, device_summary, library_versions
from flowerkit.backends.fastpaths import current_micro_batch, fast_path_record
from flowerkit.backends.policy import resolve_jit_compile, resolve_precision
from flowerkit.distribute.plan import Plan, one_device


def run_info(recipe, plan: Plan | None = None) -> dict:
    """Backend, device, distribution (`plan`; None: one device), compile and
    precision settings, the fast paths in effect and the library versions."""
    plan = plan or one_device(recipe.batch_size)
    fast_paths = fast_path_record(
        recipe.depthwise_conv, recipe.torch_layers, recipe.pointwise_conv, recipe.affine_augmentation
    )
    trains_backbone = recipe.trainable_backbone or recipe.fine_tune_epochs > 0
    micro_batch = current_micro_batch(recipe.micro_batch, trains_backbone, plan.is_data_parallel)
    record = {
        "backend": backend(),
        "device": device_summary(),
        **plan.record(),  # devices, processes, global and per-device batch
        "jit_compile": resolve_jit_compile(recipe.jit_compile),
        "precision": resolve_precision(recipe.precision),
        "depthwise_conv": fast_paths["depthwise_conv"],
        "torch_layers": fast_paths["torch_layers"],
        "pointwise_conv": fast_paths["pointwise_conv"],
        "affine_augmentation": fast_paths["affine_augmentation"],
        "micro_batch": micro_batch,  # rows; 0: off
        "versions": library_versions(),
    }
    if allocator.freed_memory_kept() is not None:
        record["torch_keep_freed_memory"] = allocator.freed_memory_kept()
    if compile_cache.folder_in_use() is not None:
        record["compilation_cache"] = str(compile_cache.folder_in_use())
    return record
