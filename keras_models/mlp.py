"""The MLP of seed 004 in Keras 3: Dense(in -> 64) -> Dropout -> ReLU -> Dense(64 -> 32) ->
Dropout -> ReLU -> Dense(32 -> C) logits, trained with sparse categorical cross-entropy from
logits. The input size follows the data (784 for MNIST, 64 for sklearn digits); the hidden sizes
follow `ModelSpec.hidden`.

It is a small subclassed `keras.Model` rather than a `Sequential`, because it has two ways of
dropping units and `fit` must be able to hand it a batch's masks:
- `model(x, training=...)`: `keras.layers.Dropout` (named `dropout_i`), which is random only
  when `training` is True. `fit` passes True; `predict`/`evaluate` pass False; a direct call
  passes None, which means inference (porting-facts row 15).
- `model((x, mask_0, mask_1))`: the shared precomputed 0/1 masks of `zoo.specs.dropout_masks`,
  applied as `h * (mask / (1 - rate))` whatever `training` says, so that Keras reproduces the
  numpy reference, TF1 and torch exactly. `keras_models.train` feeds these tuples from its
  `PyDataset`.
Dropout off is a model built with rate 0 (`Dropout(0.0)` is the identity even inside `fit`).

Dropout before ReLU equals ReLU before dropout, since mask / (1 - rate) >= 0. The layers are
created in the order dense_0, dropout_0, dense_1, dropout_1, dense_2, so `model.weights` is
[dense_0 kernel, dense_0 bias, dense_1 kernel, ...] and the canonical names map one to one.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_models.softmax import check_dtype, check_spec, get_weights, set_weights
from zoo.specs import ModelSpec, layer_sizes

__all__ = ["MLP", "build", "get_weights", "make_loss", "probabilities", "set_weights"]


@keras.saving.register_keras_serializable(package="zoo")
class MLP(keras.Model):
    """Hidden layers Dense -> Dropout(rate) -> ReLU, then a Dense to C logits. Registered
    (`zoo>MLP`) and configurable, so `.keras` files of it load with `safe_mode=True`."""

    def __init__(self, n_features: int, n_classes: int, hidden: tuple[int, ...] = (64, 32),
                 dropout: float = 0.5, dtype: str = "float32", **kwargs) -> None:
        super().__init__(dtype=dtype, **kwargs)
        hidden = tuple(int(h) for h in hidden)
        self._config = {"n_features": int(n_features), "n_classes": int(n_classes),
                        "hidden": list(hidden), "dropout": float(dropout)}
        self.n_features = int(n_features)
        self.rate = float(dropout)
        sizes = [self.n_features, *hidden, int(n_classes)]
        self.dense_layers: list[keras.layers.Dense] = []
        self.dropout_layers: list[keras.layers.Dropout] = []
        for i, n_out in enumerate(sizes[1:]):
            self.dense_layers.append(keras.layers.Dense(n_out, name=f"dense_{i}", dtype=dtype))
            if i < len(hidden):
                self.dropout_layers.append(
                    keras.layers.Dropout(self.rate, name=f"dropout_{i}", dtype=dtype))

    def get_config(self) -> dict:
        return {**super().get_config(), **self._config}

    def build(self, input_shape=None) -> None:
        # Build the layers explicitly so the variables exist before any call (set_weights
        # right after construction) and are created in canonical order.
        width = self.n_features
        for dense in self.dense_layers:
            dense.build((None, width))
            width = dense.units
        self.built = True

    def call(self, inputs, training=None):
        """Logits (N, C) from `x`, or from `(x, mask_0, mask_1, ...)` with shared masks."""
        if isinstance(inputs, (list, tuple)):
            x, *masks = inputs
            if len(masks) != len(self.dropout_layers):
                raise ValueError(f"expected {len(self.dropout_layers)} dropout masks, one per "
                                 f"hidden layer, got {len(masks)}.")
        else:
            x, masks = inputs, None
        h = x
        last = len(self.dense_layers) - 1
        for i, dense in enumerate(self.dense_layers):
            h = dense(h)
            if i == last:
                break
            if masks is not None:
                # Same expression as zoo.reference: z * (mask / (1 - rate)).
                h = h * (ops.cast(masks[i], h.dtype) / (1.0 - self.rate))
            else:
                h = self.dropout_layers[i](h, training=training)
            h = ops.relu(h)
        return h


def make_loss() -> keras.losses.Loss:
    """Mean categorical cross-entropy from logits; targets are integer class labels (N,)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def probabilities(logits) -> np.ndarray:
    """Class probabilities (N, C) from the logits."""
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32") -> MLP:
    """An `MLP` for `model_spec` (sizes from `layer_sizes(model_spec)`, rate `model_spec.dropout`).

    init None keeps Keras's default initialiser: glorot-uniform kernels, zero biases.
    """
    check_spec(model_spec, "mlp")
    check_dtype(dtype)
    sizes = layer_sizes(model_spec)
    model = MLP(model_spec.n_features, model_spec.n_outputs,
                hidden=tuple(n_out for _, n_out in sizes[:-1]), dropout=model_spec.dropout,
                dtype=dtype, name="mlp")
    model.build((None, model_spec.n_features))
    if init is not None:
        set_weights(model, init)
    return model
