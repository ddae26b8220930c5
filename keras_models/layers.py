"""One Keras 3 translation per canonical layer kind (`zoo.layers`).

Every model of the zoo is a list of canonical layers; `keras_layer(resolved, dtype)` turns one
resolved layer into the Keras layer that computes it, named as the canonical layer (`dense_0`,
`conv2d_1`, `max_pool2d_0`, ...), so that each variable is `<layer>/<variable>`, e.g.
`dense_0/kernel`, `conv2d_1/bias`: the weight table's keras native names. Every layer gets its
dtype explicitly (float32 or float64), so a model never depends on `keras.config.floatx()`.

- `Dense(units)` -> `keras.layers.Dense`: kernel (in, out), the canonical layout;
- `Conv2D` -> `keras.layers.Conv2D(filters, kernel_size, strides, padding)` on NHWC images
  (`data_format="channels_last"`): kernel (kh, kw, in, out) = HWIO, the canonical layout, and
  TensorFlow's 'same' padding (the extra row/column of an odd total goes after) is Keras's own;
- `MaxPool2D` / `AvgPool2D` -> `MaxPooling2D` / `AveragePooling2D(pool_size, strides,
  padding="valid")`;
- `Flatten` -> `keras.layers.Flatten`: (N, H, W, C) -> (N, H*W*C) in H, W, C order, the
  canonical order;
- `Dropout(rate)` -> `keras.layers.Dropout(rate)`: Keras's own masks, random only when called
  with `training=True` (`fit`). The zoo's shared masks (`zoo.specs.dropout_masks`) are applied
  instead by `shared_dropout`, the reference's expression h * (mask / (1 - rate));
- `Activation(name)` -> `keras.layers.Activation(name)` (relu, sigmoid, tanh, linear).

Initialisers follow the weight table (`TensorSpec.init`): glorot-uniform kernels and zero
biases (Keras's defaults), N(0, 1) for seed 001's network. They only matter when a model is
built without canonical weights; the zoo's runs load `zoo.specs.init_weights`.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import ops

from zoo import layers as zl
from zoo.errors import ConfigError

__all__ = ["keras_layer", "shared_dropout"]


def _initializer(name: str):
    if name == "normal":
        return keras.initializers.RandomNormal(mean=0.0, stddev=1.0)
    if name in ("glorot_uniform", "zeros", "ones"):
        return name
    raise ConfigError(f"no Keras initialiser for {name!r} in keras_models.layers; add one.")


def _inits(r: zl.Resolved) -> dict:
    """kernel_initializer / bias_initializer from the layer's weight table."""
    by_kind = {t.name.rsplit("/", 1)[1]: t.init for t in r.tensors}
    return {"kernel_initializer": _initializer(by_kind["kernel"]),
            "bias_initializer": _initializer(by_kind["bias"])}


def _dense(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    return keras.layers.Dense(r.layer.units, name=r.name, dtype=dtype, **_inits(r))


def _conv2d(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    layer = r.layer
    return keras.layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides,
                               padding=layer.padding, data_format="channels_last",
                               name=r.name, dtype=dtype, **_inits(r))


def _max_pool2d(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    return keras.layers.MaxPooling2D(r.layer.pool_size, strides=r.layer.strides, padding="valid",
                                     data_format="channels_last", name=r.name, dtype=dtype)


def _avg_pool2d(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    return keras.layers.AveragePooling2D(r.layer.pool_size, strides=r.layer.strides,
                                         padding="valid", data_format="channels_last",
                                         name=r.name, dtype=dtype)


def _flatten(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    return keras.layers.Flatten(data_format="channels_last", name=r.name, dtype=dtype)


def _dropout(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    return keras.layers.Dropout(r.layer.rate, name=r.name, dtype=dtype)


def _activation(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    return keras.layers.Activation(r.layer.name, name=r.name, dtype=dtype)


_TRANSLATIONS: dict[type, Callable[[zl.Resolved, str], keras.layers.Layer]] = {
    zl.Dense: _dense, zl.Conv2D: _conv2d, zl.MaxPool2D: _max_pool2d, zl.AvgPool2D: _avg_pool2d,
    zl.Flatten: _flatten, zl.Dropout: _dropout, zl.Activation: _activation,
}


def keras_layer(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    """The Keras layer of canonical layer `r`, named `r.name`, in `dtype`."""
    translate = _TRANSLATIONS.get(type(r.layer))
    if translate is None:
        raise ConfigError(f"{r.name}: keras_models has no translation of "
                          f"{type(r.layer).__name__} layers; add one to keras_models/layers.py.")
    return translate(r, dtype)


def shared_dropout(h, mask, rate: float):
    """Inverted dropout with a given 0/1 mask, whatever the training flag: the expression of
    `zoo.reference`, h * (mask / (1 - rate)), so that Keras reproduces it bit for bit."""
    return h * (ops.cast(mask, h.dtype) / (1.0 - rate))
