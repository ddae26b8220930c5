"""Softmax regression in Keras 3 (`Sequential([Input, Dense(C)])`, categorical cross-entropy
from logits), plus the canonical-layout edge that every Keras model in the zoo shares.

The model outputs logits: the `Dense` layer has no softmax activation. The softmax lives in the
loss (`from_logits=True`) and in `probabilities` (prediction only). Feeding probabilities to a
Keras cross-entropy clips them to [1e-7, 1 - 1e-7], which caps the loss at 16.118 and zeroes
the gradient of confident mistakes; on the TensorFlow backend a `Dense(softmax)` output even
switches silently back to logits through its `_keras_logits` attribute (porting-facts rows 3-4).

Layout edge (`get_weights` / `set_weights`, reused by svm.py, linear.py, logistic.py, mlp.py):
a Keras `Dense` kernel already is the canonical (in, out) layout, so weights are copied as they
are; the edge maps the layers named `dense_0`, `dense_1`, ... to canonical names and checks
names and shapes.
"""

from __future__ import annotations

import re

import keras
import numpy as np

from zoo.errors import ConfigError
from zoo.specs import ModelSpec, check_canonical

__all__ = ["build", "check_spec", "dense_layers", "get_weights", "make_loss", "probabilities",
           "set_weights"]

_DTYPES = ("float32", "float64")
_DENSE = re.compile(r"^dense_(\d+)$")


def make_loss() -> keras.losses.Loss:
    """Mean categorical cross-entropy from logits; targets are integer class labels (N,)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def probabilities(logits) -> np.ndarray:
    """Class probabilities (N, C) from the model's logits."""
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32") -> keras.Sequential:
    """`Sequential([Input(shape=(F,)), Dense(C)])` for `model_spec`, outputting logits.

    init: canonical weights (normally `zoo.specs.init_weights`). When None, Keras's own default
    initialiser stays: glorot-uniform kernel U(+-sqrt(6 / (in + out))) and a zero bias.
    dtype: "float32" or "float64", given to the input and the layer explicitly (so the model
    does not depend on `keras.config.floatx()`).
    """
    return single_dense(model_spec, "softmax", init, dtype)


def single_dense(model_spec: ModelSpec, name: str, init: dict[str, np.ndarray] | None,
                 dtype: str) -> keras.Sequential:
    """`Sequential([Input(shape=(F,)), Dense(units, name="dense_0")])`: the one-layer models
    (softmax, svm, logistic) differ only in their loss and output activation."""
    check_spec(model_spec, name)
    check_dtype(dtype)
    model = keras.Sequential(name=name)
    model.add(keras.layers.Input(shape=(model_spec.n_features,), dtype=dtype))
    model.add(keras.layers.Dense(model_spec.n_outputs, name="dense_0", dtype=dtype))
    if init is not None:
        set_weights(model, init)
    return model


# ----------------------------------------------------------------------------- layout edge
def check_spec(model_spec: ModelSpec, name: str) -> None:
    """Refuse a spec meant for another model (each model file builds exactly one model)."""
    if model_spec.name != name:
        raise ConfigError(f"keras_models.{name}.build got a spec for model {model_spec.name!r}; "
                          f"use keras_models.{model_spec.name}.build instead.")


def check_dtype(dtype: str) -> None:
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")


def dense_layers(model: keras.Model) -> dict[str, keras.layers.Dense]:
    """The model's `Dense` layers by canonical name (`dense_0`, `dense_1`, ...), in order."""
    found = {}
    for layer in model.layers:
        m = _DENSE.match(layer.name)
        if m and isinstance(layer, keras.layers.Dense):
            found[layer.name] = layer
    return dict(sorted(found.items(), key=lambda kv: int(kv[0].split("_")[1])))


def get_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """Canonical weights {"dense_i/kernel": (in, out), "dense_i/bias": (out,)}: numpy copies in
    the model's dtype (a Keras kernel already has the canonical layout)."""
    out: dict[str, np.ndarray] = {}
    for name, layer in dense_layers(model).items():
        out[f"{name}/kernel"] = np.array(layer.kernel.numpy())
        out[f"{name}/bias"] = np.array(layer.bias.numpy())
    return out


def set_weights(model: keras.Model, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights into `model` in place, cast to each layer's dtype.

    Raises ConfigError on missing or unexpected names and on any shape mismatch (a torch-layout
    (out, in) kernel of a non-square layer is caught here; a square one only by a parity test).
    """
    layers = dense_layers(model)
    check_canonical(weights, {f"{n}/{k}": tuple(getattr(layer, k).shape)
                              for n, layer in layers.items() for k in ("kernel", "bias")})
    for name, layer in layers.items():
        layer.kernel.assign(np.asarray(weights[f"{name}/kernel"]).astype(layer.kernel.dtype))
        layer.bias.assign(np.asarray(weights[f"{name}/bias"]).astype(layer.bias.dtype))
