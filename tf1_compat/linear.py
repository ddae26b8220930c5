"""Linear regression as a TF1 graph: Dense(1) and the mean squared error,
`tf.reduce_mean(tf.square(pred - y))` with y fed as (N, 1) (never `tf.nn.l2_loss`, which is
sum / 2, and never (N,) targets, which would broadcast to N x N silently)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf1_compat.train import GraphModel, build_graph
from zoo.errors import ConfigError
from zoo.specs import ModelSpec

__all__ = ["build", "get_weights", "loss", "set_weights"]


def loss(pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean squared error of (N, 1) predictions and (N, 1) targets."""
    return tf.reduce_mean(tf.square(pred - target))


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32", *, seed: int | None = None) -> GraphModel:
    """The graph of `dense_0` (kernel (F, 1), bias (1,)); `output` is the raw value.

    Without `init`, TF1's default `get_variable` initializer applies: glorot_uniform for the
    kernel AND the bias.
    """
    if model_spec.name != "linear" or model_spec.hidden or model_spec.n_outputs != 1:
        raise ConfigError(f"tf1_compat.linear builds the 'linear' model with 1 output, got {model_spec}.")
    return build_graph(model_spec, init, dtype, loss, tf.identity, seed=seed)


def get_weights(model: GraphModel) -> dict[str, np.ndarray]:
    """The variables' values in the canonical layout."""
    return model.get_weights()


def set_weights(model: GraphModel, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights into the variables (same names and layout: nothing to convert)."""
    model.set_weights(weights)
