"""Logistic regression in Keras 3: `Sequential([Input, Dense(1)])` giving one logit, trained
with `BinaryCrossentropy(from_logits=True)` (seed 002's binary classifier).

The seed writes `Dense(1, activation="sigmoid")` with `loss="binary_crossentropy"`; here the
sigmoid moves into the loss (`from_logits=True`) and into `probabilities`. With probabilities,
Keras clips at 1e-7 (a loss of 30 reads 16.12) and its hidden `_keras_logits` shortcut makes the
result depend on the backend (porting-facts rows 4 and 7). Targets are float 0/1 of shape (N, 1).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_models.softmax import get_weights, set_weights, single_dense
from zoo.specs import ModelSpec

__all__ = ["build", "get_weights", "make_loss", "probabilities", "set_weights"]


def make_loss() -> keras.losses.Loss:
    """Mean binary cross-entropy from the logit; targets float 0/1 of shape (N, 1)."""
    return keras.losses.BinaryCrossentropy(from_logits=True)


def probabilities(logits) -> np.ndarray:
    """P(class 1) = sigmoid(logit), shape (N, 1)."""
    return keras.ops.convert_to_numpy(keras.ops.sigmoid(logits))


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32") -> keras.Sequential:
    """`Sequential([Input(shape=(F,)), Dense(1)])` outputting the logit (no sigmoid layer).

    init None keeps Keras's default initialiser: glorot-uniform kernel, zero bias.
    """
    return single_dense(model_spec, "logistic", init, dtype)
