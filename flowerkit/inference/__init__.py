"""Using a trained model: load a run (model + recipe), predict a dataset or
image files, evaluate on a data source."""

from flowerkit.inference.evaluation import evaluate, predict
from flowerkit.inference.loading import Run, load_run
from flowerkit.inference.predicting import Predictions, predict_dataset, predict_images, predict_subset
from flowerkit.model.loading import load_model

__all__ = [
    "Predictions", "Run", "evaluate", "load_model", "load_run", "predict", "predict_dataset",
    "predict_images", "predict_subset",
]
