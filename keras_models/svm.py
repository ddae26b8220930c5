"""Linear multiclass SVM in Keras 3: `Sequential([Input, Dense(C)])` giving class scores, trained
with the CS231n multiclass hinge loss (seed 003), written here as a `keras.losses.Loss`.

Keras ships no such loss: `keras.losses.CategoricalHinge` is the Crammer-Singer loss
max(0, 1 + max_{j != y} s_j - s_y) (one term per sample), and `keras.losses.Hinge` is binary.
The loss here sums over every wrong class: mean over the batch of
sum_{j != y} max(0, s_j - s_y + margin).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_models.softmax import get_weights, set_weights, single_dense
from zoo.specs import ModelSpec

__all__ = ["MulticlassHinge", "build", "get_weights", "make_loss", "probabilities",
           "set_weights"]


class MulticlassHinge(keras.losses.Loss):
    """sum_{j != y} max(0, s_j - s_y + margin) per sample; mean over the batch (Keras's
    default `sum_over_batch_size` reduction). `y_true` holds integer labels (N,) or (N, 1)."""

    def __init__(self, margin: float = 1.0, name: str = "multiclass_hinge", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        # Loss.__call__ casts y_true to the loss dtype; labels are small integers, exact in floats.
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        not_true = 1.0 - ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        true_score = ops.sum(y_pred * (1.0 - not_true), axis=-1, keepdims=True)
        # The true class would add max(0, margin) = margin and no gradient: mask it out.
        margins = ops.relu(y_pred - true_score + self.margin) * not_true
        return ops.sum(margins, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "margin": self.margin}


def make_loss() -> keras.losses.Loss:
    """The mean multiclass hinge loss of the scores; targets are integer class labels (N,)."""
    return MulticlassHinge()


def probabilities(scores) -> np.ndarray:
    """Softmax of the class scores (N, C); the SVM itself only ranks classes by score."""
    return keras.ops.convert_to_numpy(keras.ops.softmax(scores, axis=-1))


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32") -> keras.Sequential:
    """`Sequential([Input(shape=(F,)), Dense(C)])` giving raw class scores.

    init None keeps Keras's default initialiser: glorot-uniform kernel, zero bias.
    """
    return single_dense(model_spec, "svm", init, dtype)
