"""Fixtures for the tests (set-up shared with the benchmarks: ../conftest.py;
helpers: tests/helpers.py), and the `backends` marker."""

from __future__ import annotations

import pytest

from tests.helpers import eager_steps_where_not_jit, make_image_folder


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backends(*names): runs only on these Keras backends; deselected on the others")


def pytest_collection_modifyitems(config, items):
    """A test marked `backends("jax", ...)` is deselected on other backends
    rather than skipped: it never applies there, so no skip line is due."""
    import keras

    backend = keras.config.backend()
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("backends")
        (kept if marker is None or backend in marker.args else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def image_folder(tmp_path):
    return make_image_folder(tmp_path / "photos")


@pytest.fixture(scope="session")
def session_image_folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("photos"), per_class=16)


@pytest.fixture(scope="session")
def backend() -> str:
    import keras

    return keras.backend.backend()


@pytest.fixture
def eager_steps():
    """Training steps run eagerly where they are not XLA-compiled
    (tests.helpers.eager_steps_where_not_jit)."""
    with eager_steps_where_not_jit():
        yield
