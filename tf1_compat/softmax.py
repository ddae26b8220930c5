"""Softmax regression as a TF1 graph: one dense layer of C units, logits out, mean categorical
cross-entropy from logits (`tf.nn.sparse_softmax_cross_entropy_with_logits` + `reduce_mean`)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf1_compat.train import GraphModel, build_graph
from zoo.errors import ConfigError
from zoo.specs import ModelSpec

__all__ = ["build", "get_weights", "loss", "set_weights"]


def loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy of int64 labels (N,) given logits (N, C): never from probabilities,
    which would need clipping and lose the gradient of confident mistakes."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32", *, seed: int | None = None) -> GraphModel:
    """The graph of `dense_0` (kernel (F, C), bias (C,)); `output` is softmax(logits).

    `init` in canonical layout (from `zoo.specs.init_weights`); without it TF1's default
    `get_variable` initializer applies: glorot_uniform for the kernel AND the bias.
    """
    if model_spec.name != "softmax" or model_spec.hidden:
        raise ConfigError(f"tf1_compat.softmax builds the 'softmax' model, got {model_spec}.")
    return build_graph(model_spec, init, dtype, loss, tf.nn.softmax, seed=seed)


def get_weights(model: GraphModel) -> dict[str, np.ndarray]:
    """The variables' values in the canonical layout."""
    return model.get_weights()


def set_weights(model: GraphModel, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights into the variables (same names and layout: nothing to convert)."""
    model.set_weights(weights)
