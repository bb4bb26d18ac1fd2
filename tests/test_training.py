"""The Python API's train(): artefacts, and resuming an interrupted run."""

import json

import keras
import numpy as np
import pytest

import flowerkit
from tests.helpers import tiny_recipe


class StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt("simulated interruption")


def test_train_api_returns_model_history_and_metrics(image_folder):
    result = flowerkit.train(tiny_recipe(epochs=4), source=str(image_folder), verbose=0)
    assert result.recipe.class_names == ("blue", "green", "red")
    assert len(result.history["loss"]) == 4
    assert result.metrics["train_images"] + result.metrics["validation_images"] == 30
    assert result.metrics["backend"] == keras.backend.backend()
    assert result.metrics["max_images"] is None
    assert result.output_dir is None
    probabilities = result.model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0)
    assert probabilities.shape == (1, 3)


def test_interrupted_run_resumes_with_nothing_lost(image_folder, tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        flowerkit.train(tiny_recipe(epochs=4), source=str(image_folder), output_dir=tmp_path, verbose=0,
                        callbacks=[StopAfter(2)])
    assert (tmp_path / "backup").is_dir()
    assert not (tmp_path / "model.keras").exists()
    # A changed recipe must not touch the interrupted run.
    saved_recipe = (tmp_path / "recipe.json").read_text()
    with pytest.raises(flowerkit.FlowerkitError, match="interrupted run of a different recipe"):
        flowerkit.train(tiny_recipe(epochs=4).replace(learning_rate=0.5), source=str(image_folder),
                        output_dir=tmp_path, verbose=0)
    assert (tmp_path / "recipe.json").read_text() == saved_recipe
    capsys.readouterr()
    result = flowerkit.train(tiny_recipe(epochs=4), source=str(image_folder), output_dir=tmp_path, verbose=1)
    assert f"resuming the interrupted run in {tmp_path} after epoch 2" in capsys.readouterr().out
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["loss"]) == 4  # two epochs before, two after the interruption
    assert history == result.history
    assert not (tmp_path / "backup").exists()
    # A finished run is not trained over by accident; with overwrite it starts afresh.
    with pytest.raises(flowerkit.FlowerkitError, match="already holds a finished run .*pass --overwrite"):
        flowerkit.train(tiny_recipe(epochs=4), source=str(image_folder), output_dir=tmp_path, verbose=0)
    flowerkit.train(tiny_recipe(epochs=4).replace(epochs=1), source=str(image_folder), output_dir=tmp_path,
                    verbose=0, overwrite=True)
    assert len(json.loads((tmp_path / "history.json").read_text())["loss"]) == 1


class LearningRates(keras.callbacks.Callback):
    """The optimizer's learning rate and step count as each epoch begins."""

    def __init__(self):
        super().__init__()
        self.rates, self.steps = {}, {}

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        self.rates[epoch] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        self.steps[epoch] = int(keras.ops.convert_to_numpy(optimizer.iterations))


def test_cosine_schedule_decays_over_phase_one_and_resumes_where_it_was(image_folder, tmp_path):
    recipe = tiny_recipe(epochs=4).replace(learning_rate_schedule="cosine", learning_rate=0.01)
    total_steps = recipe.epochs * 3  # 24 training images in batches of 8

    def cosine(step):  # (TensorFlow's tf.data path counts one step more per epoch)
        return 0.01 * (1 + np.cos(np.pi * min(step, total_steps) / total_steps)) / 2

    seen = LearningRates()
    with pytest.raises(KeyboardInterrupt):
        flowerkit.train(recipe, source=str(image_folder), output_dir=tmp_path, verbose=0,
                        callbacks=[seen, StopAfter(2)])
    resumed = LearningRates()
    flowerkit.train(recipe, source=str(image_folder), output_dir=tmp_path, verbose=0,
                    callbacks=[resumed])
    assert sorted(seen.rates) == [0, 1] and sorted(resumed.rates) == [2, 3]
    rates, steps = {**seen.rates, **resumed.rates}, {**seen.steps, **resumed.steps}
    assert steps[0] == 0 and steps[2] >= 6  # the resumed run went on from its step count
    np.testing.assert_allclose([rates[e] for e in range(4)], [cosine(steps[e]) for e in range(4)],
                               rtol=1e-5)
    assert rates[0] == pytest.approx(0.01) and rates[3] < 0.002
    # The constant default leaves the rate alone.
    constant = LearningRates()
    flowerkit.train(tiny_recipe(epochs=4), source=str(image_folder), verbose=0, callbacks=[constant])
    np.testing.assert_allclose(list(constant.rates.values()), [tiny_recipe(epochs=4).learning_rate] * 4, rtol=1e-6)


def test_recipe_class_mismatch_is_an_error(image_folder):
    recipe = tiny_recipe(epochs=4).replace(class_names=("daisy", "roses"))
    with pytest.raises(flowerkit.FlowerkitError, match="differ from the classes"):
        flowerkit.train(recipe, source=str(image_folder))
