"""Where flowerkit keeps what it computes once (manifests, features, compiled
programs): `flowerkit` in the Keras cache folder, found the way Keras finds it."""

from __future__ import annotations

import os
from pathlib import Path


def flowerkit_cache() -> Path:
    """`$KERAS_HOME/flowerkit`, else `~/.keras/flowerkit`, else `/tmp/.keras/flowerkit`
    (Keras's own order: a home folder that cannot be written is skipped)."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]) / "flowerkit"
    base = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
    return base / ".keras" / "flowerkit"
