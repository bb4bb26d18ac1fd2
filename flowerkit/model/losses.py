"""The class-weighted loss behind `Recipe.class_weight`.

Class weights live in the loss rather than in `fit(class_weight=...)`, so
they apply the same way on every backend, to cached features and images
alike, and under data-parallel training, whose padded batches already carry
sample weights (Keras refuses class_weight together with sample weights)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="flowerkit")
class ClassWeightedCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy (with label smoothing) times the weight of
    each row's true class: row loss = w[y] * CE(y_smoothed, p)."""

    def __init__(self, class_weights, label_smoothing=0.0, reduction="sum_over_batch_size",
                 name="class_weighted_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.class_weights = [float(w) for w in class_weights]
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        losses = keras.losses.categorical_crossentropy(
            y_true, y_pred, label_smoothing=self.label_smoothing
        )
        weights = ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
        return losses * ops.sum(y_true * weights, axis=-1)

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights,
                "label_smoothing": self.label_smoothing}


def crossentropy(label_smoothing: float, reduction: str, class_weights=None):
    """Keras's CategoricalCrossentropy, or the class-weighted one."""
    if class_weights is None:
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction=reduction)
    return ClassWeightedCrossentropy(class_weights, label_smoothing, reduction)
