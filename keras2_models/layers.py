"""One Keras 2 (`tf_keras`) layer per canonical layer kind (`zoo.layers`), written as Keras 2
code writes them: `tf.keras.layers.Dense`, `Conv2D`, `MaxPooling2D`, `AveragePooling2D`,
`Flatten`, `Dropout`, `Activation`, `BatchNormalization`, `LayerNormalization`, `Embedding`,
`LSTM`, `GRU`, each named after its canonical layer (`dense_0`, `conv2d_1`, ...), so that its
variables carry the Keras column's names of the weight tables (`zoo.layers.COLUMN_ALIASES`:
the "keras2" column is the "keras" one).

`tf.keras` is Keras 2 here because the process has TF_USE_LEGACY_KERAS=1 (checked when the
package is imported: `keras2_models.check_process`).

Where Keras 2's defaults would train other numbers than the canonical description, the
argument is passed explicitly, and docs/porting.md has the measured gotcha:
- `BatchNormalization(fused=False)`: on 4-D float32 input Keras 2 runs TF's fused kernel by
  default, which updates the moving variance with the UNBIASED batch variance (Bessel's
  factor m / (m - 1), m values per channel); the canonical BatchNorm (Keras 3, `tf.nn.moments`)
  updates it with the biased one. With `fused=False` Keras 2 computes `tf.nn.moments` too. A
  canonical `BatchNorm(moving_variance="unbiased")` gets `ZooBatchNormalization`, which
  corrects the biased update with `zoo.layers.corrected_moving_variance`, as Keras 3's does.
  In float64 the momentum goes in as `np.float64`: Keras 2 makes its decay 1 - momentum a
  float32 tensor first;
- `GRU(reset_after=...)` always given (tf.keras.layers.GRU defaults to True,
  `tf.compat.v1.keras.layers.GRU` to False);
- `LSTM(unit_forget_bias=True)` with a zero bias initializer: the forget-gate ones come from
  the flag, as in Keras 3 (the zoo loads its own initial weights anyway);
- every initialiser from the weight table (Keras 2's are Keras 3's: glorot-uniform kernels,
  orthogonal recurrent kernels, U(-0.05, 0.05) embeddings).

What needs no translation: an `Embedding`'s gradient reaches Keras 2's optimizers as
`tf.IndexedSlices`, which they deduplicate (one slice per id, repeats summed) before the
update, so Adam's second moment gets the square of each id's summed gradient, as the dense
formula, torch and TF1 compute (Keras 3's optimizers do not: keras_models needs a dense
gradient there; docs/porting.md).

Shared dropout masks: `SharedDropout` multiplies by mask / (1 - rate), the expression of the
numpy reference, in the functional model `keras2_models.model.masked_model` builds around the
Sequential's own layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from zoo import layers as zl
from zoo.errors import ConfigError

__all__ = ["SharedDropout", "ZooBatchNormalization", "keras2_layer"]


def _initializer(name: str):
    if name == "normal":
        return tf.keras.initializers.RandomNormal(mean=0.0, stddev=1.0)
    if name == "uniform":  # Keras's Embedding default, spelled out
        return tf.keras.initializers.RandomUniform(minval=-0.05, maxval=0.05)
    if name in ("glorot_uniform", "zeros", "ones", "orthogonal"):
        return name
    if name == "forget_ones":  # zeros plus `unit_forget_bias=True` (see _lstm)
        return "zeros"
    raise ConfigError(f"no Keras 2 initialiser for {name!r} in keras2_models.layers; add one.")


def _inits(r: zl.Resolved) -> dict:
    """`<variable>_initializer` arguments from the layer's weight table, one per row
    (`recurrent_kernel` -> `recurrent_initializer`)."""
    out = {}
    for t in r.tensors:
        variable = t.name.rsplit("/", 1)[1]
        if variable == "recurrent_kernel":
            variable = "recurrent"
        out[f"{variable}_initializer"] = _initializer(t.init)
    return out


def _dense(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    return tf.keras.layers.Dense(r.layer.units, name=r.name, dtype=dtype, **_inits(r))


def _conv2d(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    layer = r.layer
    return tf.keras.layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides,
                                  padding=layer.padding, data_format="channels_last",
                                  use_bias=layer.use_bias, name=r.name, dtype=dtype, **_inits(r))


def _max_pool2d(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    return tf.keras.layers.MaxPooling2D(r.layer.pool_size, strides=r.layer.strides,
                                        padding="valid", data_format="channels_last",
                                        name=r.name, dtype=dtype)


def _avg_pool2d(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    return tf.keras.layers.AveragePooling2D(r.layer.pool_size, strides=r.layer.strides,
                                            padding="valid", data_format="channels_last",
                                            name=r.name, dtype=dtype)


def _flatten(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    return tf.keras.layers.Flatten(data_format="channels_last", name=r.name, dtype=dtype)


def _dropout(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    return tf.keras.layers.Dropout(r.layer.rate, name=r.name, dtype=dtype)


def _activation(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    return tf.keras.layers.Activation(r.layer.name, name=r.name, dtype=dtype)


class ZooBatchNormalization(tf.keras.layers.BatchNormalization):
    """Keras 2's `BatchNormalization` (non-fused) whose moving variance follows the UNBIASED
    batch variance (canonical `BatchNorm(moving_variance="unbiased")`, torch's convention).

    Keras 2's non-fused layer normalises with the biased batch variance of `tf.nn.moments` and
    updates its moving variance with it. A training-mode call here runs Keras 2's own update
    and then rewrites the moving variance with the zoo's one compensation,
    `zoo.layers.corrected_moving_variance(before, after, count, momentum, "biased",
    "unbiased")`, count the values per channel in the batch (N for features, N*H*W for
    images). Inside `fit` the batch size is a tensor (the last batch may be partial): the same
    expression is then computed in TensorFlow, the factor c in float64 as Python computes it.
    (Keras 2's fused kernel also updates with the unbiased variance, but only on 4-D float32
    input, with a one-pass variance of its own: one path for every input is clearer.)"""

    def __init__(self, moving_variance: str = "unbiased", **kwargs) -> None:
        super().__init__(fused=False, **kwargs)
        if moving_variance not in zl.VARIANCES:
            raise ValueError(f"moving_variance must be one of {', '.join(zl.VARIANCES)}; got "
                             f"{moving_variance!r}.")
        self.moving_variance_kind = moving_variance

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("fused", None)
        return {**config, "moving_variance": self.moving_variance_kind}

    def call(self, inputs, training=None):
        if not training or not self.trainable or self.moving_variance_kind == "biased":
            return super().call(inputs, training=training)
        before = tf.identity(self.moving_variance)
        outputs = super().call(inputs, training=training)
        after = tf.identity(self.moving_variance)
        shape = inputs.shape
        others = [d for i, d in enumerate(shape) if i != len(shape) - 1]
        if None not in others:
            count = math.prod(others)
            value = zl.corrected_moving_variance(before, after, count, self.momentum, "biased",
                                                 "unbiased")
        else:
            n = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float64)
            tf.debugging.assert_greater_equal(
                n, tf.constant(2.0, tf.float64),
                message="a batch with one value per channel has no unbiased variance; use "
                        "batches of at least 2 samples with BatchNorm.")
            c = n / (n - 1.0)
            value = after + (after - float(self.momentum) * before) * tf.cast(c - 1.0,
                                                                              after.dtype)
        self.moving_variance.assign(value)
        return outputs


def _batch_norm(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    layer = r.layer
    # Keras 2 turns 1 - momentum into a tensor with tf.convert_to_tensor, float32 for a Python
    # float (0.01 becomes 0.0099999998), before casting it to the variables' dtype: a float64
    # model needs np.float64 (docs/porting.md)
    momentum = np.float64(layer.momentum) if dtype == "float64" else float(layer.momentum)
    args = dict(axis=-1, momentum=momentum, epsilon=float(layer.epsilon),
                name=r.name, dtype=dtype, **_inits(r))
    if layer.moving_variance == "biased":
        return tf.keras.layers.BatchNormalization(fused=False, **args)
    return ZooBatchNormalization(moving_variance=layer.moving_variance, **args)


def _layer_norm(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    return tf.keras.layers.LayerNormalization(axis=-1, epsilon=float(r.layer.epsilon),
                                              name=r.name, dtype=dtype, **_inits(r))


def _embedding(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    # ids arrive as floats holding whole numbers (checked by zoo.specs.check_tokens); Keras 2's
    # Embedding casts non-integer inputs to int32 itself
    return tf.keras.layers.Embedding(r.layer.vocab, r.layer.dim, name=r.name, dtype=dtype,
                                     **_inits(r))


def _lstm(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    inits = _inits(r)
    inits["bias_initializer"] = "zeros"
    return tf.keras.layers.LSTM(r.layer.units, return_sequences=r.layer.return_sequences,
                                unit_forget_bias=True, name=r.name, dtype=dtype, **inits)


def _gru(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    return tf.keras.layers.GRU(r.layer.units, return_sequences=r.layer.return_sequences,
                               reset_after=r.layer.reset_after, name=r.name, dtype=dtype,
                               **_inits(r))


_TRANSLATIONS: dict[type, Callable[[zl.Resolved, str], tf.keras.layers.Layer]] = {
    zl.Dense: _dense, zl.Conv2D: _conv2d, zl.MaxPool2D: _max_pool2d, zl.AvgPool2D: _avg_pool2d,
    zl.Flatten: _flatten, zl.Dropout: _dropout, zl.Activation: _activation,
    zl.BatchNorm: _batch_norm, zl.LayerNorm: _layer_norm, zl.Embedding: _embedding,
    zl.LSTM: _lstm, zl.GRU: _gru,
}


def keras2_layer(r: zl.Resolved, dtype: str) -> tf.keras.layers.Layer:
    """The Keras 2 layer of canonical layer `r`, named `r.name`, in `dtype`."""
    translate = _TRANSLATIONS.get(type(r.layer))
    if translate is None:
        raise ConfigError(f"{r.name}: keras2_models has no translation of "
                          f"{type(r.layer).__name__} layers; add one to keras2_models/layers.py.")
    return translate(r, dtype)


class SharedDropout(tf.keras.layers.Layer):
    """Inverted dropout with a given 0/1 mask, whatever the training flag: called on
    `[h, mask]`, returns h * (mask / (1 - rate)), the expression of `zoo.reference`, so that
    Keras 2 reproduces the shared masks of `zoo.specs.dropout_masks` bit for bit."""

    def __init__(self, rate: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rate = float(rate)

    def call(self, inputs):
        h, mask = inputs
        return h * (tf.cast(mask, h.dtype) / (1.0 - self.rate))

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate}
