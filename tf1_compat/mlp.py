"""The MLP as a TF1 graph: in -> 64 -> dropout -> ReLU -> 32 -> dropout -> ReLU -> C logits
(seed 004's PyTorch model), mean cross-entropy from logits.

Dropout is driven by placeholders (see `tf1_compat.train.GraphModel`): shared precomputed
masks (`h * mask / (1 - rate)`) or TF's own `tf.compat.v1.nn.dropout(rate=...)`; both default
to "off", so prediction needs no feed and never drops units.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf1_compat.train import GraphModel, build_graph
from zoo.errors import ConfigError
from zoo.specs import ModelSpec

__all__ = ["build", "get_weights", "loss", "set_weights"]


def loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy of int64 labels (N,) given logits (N, C)."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32", *, seed: int | None = None) -> GraphModel:
    """The graph of `dense_0` .. `dense_{len(hidden)}`; `output` is softmax(logits).

    Without `init`, TF1's default `get_variable` initializer applies: glorot_uniform for every
    kernel AND every bias. `seed` (graph-level) also seeds native dropout.
    """
    if model_spec.name != "mlp" or not model_spec.hidden:
        raise ConfigError(f"tf1_compat.mlp builds the 'mlp' model with hidden layers, got {model_spec}.")
    return build_graph(model_spec, init, dtype, loss, tf.nn.softmax, seed=seed)


def get_weights(model: GraphModel) -> dict[str, np.ndarray]:
    """The variables' values in the canonical layout."""
    return model.get_weights()


def set_weights(model: GraphModel, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights into the variables (same names and layout: nothing to convert)."""
    model.set_weights(weights)
