"""Set-up shared by the tests and the benchmarks. pytest loads this file
before any test module, so it runs before Keras is imported: Keras reads
KERAS_HOME once, at import, and every session gets a private cache,
pre-filled with the shared ImageNet weights when they are present, and
removed at the end (a killed session's, at the start of the next one).
JAX's compiled programs are kept there for the whole session, as the CLI
keeps them (`flowerkit.backends.compile_cache`), set here once: a test's
own KERAS_HOME must not become the folder of later tests' programs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tests.helpers import SHARED, private_keras_home

_KERAS_HOME = private_keras_home(Path(tempfile.gettempdir()))
if (SHARED / "weights/keras_home/models").is_dir():
    shutil.copytree(SHARED / "weights/keras_home/models", _KERAS_HOME / "models")
os.environ["KERAS_HOME"] = str(_KERAS_HOME)
os.environ["JAX_COMPILATION_CACHE_DIR"] = str(_KERAS_HOME / "flowerkit" / "jax-compilation-cache")
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_unconfigure(config):
    shutil.rmtree(_KERAS_HOME, ignore_errors=True)
