"""Where Keras keeps its files (keras.json, downloaded weights) and where
flowerkit keeps what it computes once (manifests, features, compiled
programs), found the way Keras finds its folder. Imports nothing heavy: the
backend is chosen from keras.json before Keras starts."""

from __future__ import annotations

import os
from pathlib import Path


def keras_home() -> Path:
    """`$KERAS_HOME`, else `~/.keras`, else `/tmp/.keras` where the home folder
    cannot be written: Keras's own rule (keras/src/backend/config.py, 3.15)."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"])
    base = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
    return base / ".keras"


def flowerkit_cache() -> Path:
    """`flowerkit` in the Keras folder (`keras_home`)."""
    return keras_home() / "flowerkit"
