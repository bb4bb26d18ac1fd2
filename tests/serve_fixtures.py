"""Shared by the serving tests: a tiny saved model with the flower classes,
a running server, and real photos."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

from tests.helpers import shared_path

FLOWER_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


def save_tiny_run(folder: Path, image_size: int = 32) -> Path:
    """A run folder with an untrained 'dense' model (seconds to build and to
    warm up on every backend) and its recipe: model.keras, recipe.json."""
    import keras

    from flowerkit.model import build_model
    from flowerkit.config.recipe import get_preset

    recipe = get_preset("dense").replace(image_size=image_size, class_names=FLOWER_CLASSES,
                                         head_units=(16,), augmentation=())
    keras.utils.set_random_seed(0)
    model = build_model(recipe, compile=False)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    recipe.save(folder / "recipe.json")
    return folder


def photos(count_per_class: int = 2) -> list[Path]:
    """The first photos of each class from ../shared."""
    root = shared_path("data/flower_photos")
    return [path for name in FLOWER_CLASSES for path in sorted((root / name).glob("*.jpg"))[:count_per_class]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_server(app, timeout: float = 60.0):
    """A real uvicorn server for `app` on 127.0.0.1 in a thread; yields its
    URL once /readyz says the model is warmed up."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_ready(url: str, timeout: float = 60.0, process=None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} was not ready within {timeout} s")
