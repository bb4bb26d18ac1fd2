"""The second process-wide switch of the backends layer (beside
`allocator`): JAX's persistent compilation cache, kept in the Keras cache.
`flowerkit.train()` and the CLI call `configure()`; building or loading a
model never does.

JAX compiles every new shape of every operation with XLA, and building a
network draws each weight's random initial value with a program compiled for
that shape, even when pretrained weights replace them next: most of a short
run's start-up (docs/fast-paths.md). Given a folder, JAX keeps its compiled
programs there and the next run loads them. flowerkit uses
`$KERAS_HOME/flowerkit/jax-compilation-cache`, keeps programs of any
compile time, and bounds the folder (least recently used first). Left alone
where the user chose a cache folder or turned JAX's cache off
(JAX_COMPILATION_CACHE_DIR, JAX_ENABLE_COMPILATION_CACHE)."""

from __future__ import annotations

from pathlib import Path

from flowerkit.backends.devices import backend
from flowerkit.backends.policy import keeps_compiled_programs
from flowerkit.keras_home import flowerkit_cache

FOLDER_NAME = "jax-compilation-cache"
MAX_BYTES = 2**30  # a recipe's programs take a few MB
_folder: Path | None = None


def configure() -> Path | None:
    """Keeps compiled programs in `FOLDER_NAME` of the flowerkit cache where the policy
    says so (`policy.keeps_compiled_programs`), once per process; the folder
    in use, or None."""
    global _folder
    if _folder is None and keeps_compiled_programs(backend()):
        _folder = _use_jax_cache(flowerkit_cache() / FOLDER_NAME)
    return _folder


def folder_in_use() -> Path | None:
    """The folder `configure` gave JAX, or None (not asked for, not JAX, or
    the user's own choice)."""
    return _folder


def _use_jax_cache(folder: Path) -> Path | None:
    import jax  # the JAX backend's own package: imported only when it runs
    from jax.experimental.compilation_cache import compilation_cache

    if jax.config.jax_compilation_cache_dir or not jax.config.jax_enable_compilation_cache:
        return None  # the user's own choice
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only cache: compiled again next time, not wrong
        return None
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    # JAX looks for a cache folder once, at its first compilation: a program
    # compiled before this call (a model the caller built) found none.
    compilation_cache.reset_cache()
    compilation_cache.set_cache_dir(str(folder))
    return folder
