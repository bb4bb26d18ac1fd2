"""A model trained and saved on one backend loads on the others and gives
the same probabilities (fixtures from tests/make_crossbackend_fixtures.py)."""

import numpy as np
import pytest
from tests.helpers import REPO
from tests.make_crossbackend_fixtures import fixture_inputs

from flowerkit import load_model

FIXTURES = REPO / "tests/fixtures/crossbackend"


# jax_data_parallel: trained by flowerkit.train on 4 virtual JAX devices.
@pytest.mark.parametrize("saved_on", ["tensorflow", "jax", "torch", "jax_data_parallel"])
def test_model_saved_on_any_backend_predicts_the_same(saved_on):
    folder = FIXTURES / saved_on
    model = load_model(folder / "model.keras")
    probabilities = model.predict(fixture_inputs().astype("float32"), verbose=0)
    expected = np.load(folder / "probabilities.npy")
    assert expected.std() > 0.01  # a trained model, not a uniform output
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)


def test_save_and_reload_on_this_backend(tmp_path):
    from tests.make_crossbackend_fixtures import fixture_recipe

    from flowerkit import build_model

    model = build_model(fixture_recipe(weights=None))
    inputs = fixture_inputs().astype("float32")
    before = model.predict(inputs, verbose=0)
    model.save(tmp_path / "model.keras")
    after = load_model(tmp_path / "model.keras").predict(inputs, verbose=0)
    np.testing.assert_allclose(after, before, atol=1e-6)
