"""Training a recipe: `train()` (runner), its two phases, the feature cache,
the run folder (resume, lock, atomic backups) and the run record."""

from flowerkit.training.runner import TrainResult, train

__all__ = ["TrainResult", "train"]
