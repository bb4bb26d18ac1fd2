"""Which Keras backend a flowerkit command runs on, decided before Keras is
imported (Keras reads `KERAS_BACKEND` and `keras.json` once, at import).

The rule, for the CLI only (`import flowerkit` leaves Keras's choice alone):
`KERAS_BACKEND`, else `$KERAS_HOME/keras.json`'s "backend", else, for a saved
model, the backend it was trained on if installed, else the first installed
of TensorFlow (Keras's default), JAX, PyTorch. A chosen backend that is not
installed is a one-line `FlowerkitError`, not an import traceback.

Keras writes a default `keras.json` ("backend": "tensorflow") at import when
there is none, even with `KERAS_BACKEND` set (keras/src/backend/config.py,
checked on 3.15), which would turn a later command without `KERAS_BACKEND`
into a TensorFlow one: `keras_config_left_alone` removes the file it wrote,
and holds a lock meanwhile that `configured_backend` waits for, so that a
process starting beside it (another rank under torchrun, another terminal)
never reads that passing file. Under torchrun, PyTorch comes first.
Nothing here imports Keras or a backend."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
from pathlib import Path

from flowerkit.errors import FlowerkitError
from flowerkit.keras_home import keras_home

# Keras's own default first, so an install with TensorFlow behaves as Keras does.
BACKENDS = ("tensorflow", "jax", "torch")
_EXTRAS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def installed_backends() -> list[str]:
    """The backends whose package is installed (found, not imported)."""
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def keras_config_path() -> Path:
    """`keras.json` where Keras reads it (`keras_home`)."""
    return keras_home() / "keras.json"


def configured_backend() -> tuple[str, str] | None:
    """(backend, where it was set) from `KERAS_BACKEND` or `keras.json`, or None."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"], "KERAS_BACKEND"
    path = keras_config_path()
    try:
        with _config_lock(fcntl.LOCK_SH):
            chosen = json.loads(path.read_text(encoding="utf-8")).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return (chosen, str(path)) if isinstance(chosen, str) and chosen else None


def trained_backend(model_path) -> str | None:
    """The backend a saved model was trained on: `metrics.json` beside it."""
    folder = Path(model_path)
    folder = folder if folder.is_dir() else folder.parent
    try:
        backend = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return backend if backend in BACKENDS else None


def choose_backend(model_path=None) -> str | None:
    """Sets `KERAS_BACKEND` for this process when nothing chose a backend yet,
    and returns the line that says which (None when KERAS_BACKEND or
    keras.json chose). Raises `FlowerkitError` when the chosen backend, or
    every backend, is missing."""
    installed = installed_backends()
    configured = configured_backend()
    if configured:
        backend, where = configured
        if backend not in installed:
            trained = trained_backend(model_path) if model_path else None
            # Suggest the backend the model was trained on, when it is here.
            suggested = [trained] if trained in installed else installed
            raise FlowerkitError(_not_installed(backend, where, suggested))
        return None
    if not installed:
        raise FlowerkitError(
            "No Keras backend is installed: pip install 'flowerkit[jax]' (or [tensorflow], [torch])."
        )
    trained = trained_backend(model_path) if model_path else None
    if trained in installed:
        backend, why = trained, "the model was trained on it"
    elif "TORCHELASTIC_RUN_ID" in os.environ and "torch" in installed:
        backend, why = "torch", "launched by torchrun"
    elif trained:
        backend, why = installed[0], f"trained on {trained}, which is not installed"
    else:
        backend, why = installed[0], "installed" + ("" if len(installed) == 1 else f": {', '.join(installed)}")
    os.environ["KERAS_BACKEND"] = backend
    return f"backend {backend} ({why}; set KERAS_BACKEND to choose)"


def _not_installed(backend: str, where: str, installed: list[str]) -> str:
    if backend not in BACKENDS:
        return f"{where} names the backend {backend!r}; flowerkit runs on {', '.join(BACKENDS)}."
    fix = (f"set KERAS_BACKEND={installed[0]}" if installed
           else "no backend is installed")
    return (f"{where} chooses the {backend} backend, which is not installed here "
            f"(pip install 'flowerkit[{_EXTRAS[backend]}]', or {fix}).")


@contextlib.contextmanager
def keras_config_left_alone():
    """Removes the `keras.json` Keras writes while importing in this block,
    when there was none before (its content is Keras's defaults)."""
    path = keras_config_path()
    with _config_lock(fcntl.LOCK_EX):
        existed = path.exists()
        try:
            yield
        finally:
            if not existed:
                with contextlib.suppress(OSError):
                    path.unlink()


@contextlib.contextmanager
def _config_lock(kind: int):
    """An flock beside `keras.json` (shared to read it, exclusive while Keras
    may write it); no lock where that folder cannot be written."""
    folder = keras_config_path().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".flowerkit-keras-json.lock", "a")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, kind)
        yield
