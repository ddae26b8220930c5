"""Linear regression in Keras 3, written as seed 002 writes its ice-cream demand model:
`Sequential`, `Input(shape=(F,))`, `Dense(1)`, `compile(loss="mse", ...)`, `fit`, `predict`.

The input shape follows the data (3 features for the ice-cream data: temperature, humidity,
discount). Targets are float (N, 1); Keras would also accept (N,) (it expands the target),
but the zoo keeps (N, 1) everywhere because torch and raw TF broadcast (N,) against (N, 1)
into an N x N matrix (porting-facts row 6).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_models.softmax import check_dtype, check_spec, get_weights, set_weights
from zoo.specs import ModelSpec

__all__ = ["build", "get_weights", "make_loss", "probabilities", "set_weights"]


def make_loss() -> keras.losses.Loss:
    """Mean squared error (what `compile(loss="mse")` resolves to); targets float (N, 1)."""
    return keras.losses.MeanSquaredError()


def probabilities(values) -> np.ndarray:
    """Regression has no probabilities: the predicted values (N, 1) as they are."""
    return keras.ops.convert_to_numpy(values)


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32") -> keras.Sequential:
    """Seed 002's model: `Sequential()`, `add(Input(shape=(F,)))`, `add(Dense(1))`.

    init None keeps Keras's default initialiser: glorot-uniform kernel, zero bias.
    """
    check_spec(model_spec, "linear")
    check_dtype(dtype)
    model = keras.models.Sequential(name="linear")
    model.add(keras.layers.Input(shape=(model_spec.n_features,), dtype=dtype))
    model.add(keras.layers.Dense(model_spec.n_outputs, name="dense_0", dtype=dtype))
    if init is not None:
        set_weights(model, init)
    return model
