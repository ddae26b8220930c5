"""Logistic regression as a TF1 graph: Dense(1) logit and the mean binary cross-entropy from
logits (`tf.nn.sigmoid_cross_entropy_with_logits` + `reduce_mean`, targets fed as (N, 1))."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf1_compat.train import GraphModel, build_graph
from zoo.errors import ConfigError
from zoo.specs import ModelSpec

__all__ = ["build", "get_weights", "loss", "set_weights"]


def loss(logits: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean binary cross-entropy of 0/1 targets (N, 1) given logits (N, 1); from logits, so
    no probability is ever clipped."""
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits))


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32", *, seed: int | None = None) -> GraphModel:
    """The graph of `dense_0` (kernel (F, 1), bias (1,)); `output` is sigmoid(logit), (N, 1).

    Without `init`, TF1's default `get_variable` initializer applies: glorot_uniform for the
    kernel AND the bias.
    """
    if model_spec.name != "logistic" or model_spec.hidden or model_spec.n_outputs != 1:
        raise ConfigError(f"tf1_compat.logistic builds the 'logistic' model with 1 output, got {model_spec}.")
    return build_graph(model_spec, init, dtype, loss, tf.sigmoid, seed=seed)


def get_weights(model: GraphModel) -> dict[str, np.ndarray]:
    """The variables' values in the canonical layout."""
    return model.get_weights()


def set_weights(model: GraphModel, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights into the variables (same names and layout: nothing to convert)."""
    model.set_weights(weights)
