"""Linear SVM classifier as a TF1 graph: one dense layer of C scores and the CS231n multiclass
hinge loss, mean over the batch of sum_{j != y} max(0, s_j - s_y + 1).

(Keras's CategoricalHinge is the Crammer-Singer loss, a different one, so the loss is written
out here with TF ops.)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf1_compat.train import GraphModel, build_graph
from zoo.errors import ConfigError
from zoo.specs import ModelSpec

__all__ = ["build", "get_weights", "loss", "set_weights"]


def loss(scores: tf.Tensor, labels: tf.Tensor, margin: float = 1.0) -> tf.Tensor:
    """Mean multiclass hinge loss of int64 labels (N,) given scores (N, C)."""
    onehot = tf.one_hot(labels, tf.shape(scores)[1], dtype=scores.dtype)
    correct = tf.reduce_sum(scores * onehot, axis=1, keepdims=True)
    # relu's gradient is 0 at exactly 0 (a margin of exactly zero is inactive), as in the
    # numpy reference; the j == y term (always 1) is masked out.
    margins = tf.nn.relu(scores - correct + margin) * (1.0 - onehot)
    return tf.reduce_mean(tf.reduce_sum(margins, axis=1))


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32", *, seed: int | None = None) -> GraphModel:
    """The graph of `dense_0` (kernel (F, C), bias (C,)); `output` is softmax(scores), so that
    `predict` returns class probabilities like the other classifiers.

    Without `init`, TF1's default `get_variable` initializer applies: glorot_uniform for the
    kernel AND the bias.
    """
    if model_spec.name != "svm" or model_spec.hidden:
        raise ConfigError(f"tf1_compat.svm builds the 'svm' model, got {model_spec}.")
    return build_graph(model_spec, init, dtype, loss, tf.nn.softmax, seed=seed)


def get_weights(model: GraphModel) -> dict[str, np.ndarray]:
    """The variables' values in the canonical layout."""
    return model.get_weights()


def set_weights(model: GraphModel, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights into the variables (same names and layout: nothing to convert)."""
    model.set_weights(weights)
