"""Fixtures for the tests (set-up shared with the benchmarks: ../conftest.py;
helpers: tests/helpers.py)."""

from __future__ import annotations

import pytest

from tests.helpers import make_image_folder


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
