"""One translation per canonical layer kind (`zoo.layers`), written as TF1 code was: the layer
functions of `tf.compat.v1.layers`, the cells of `tf.compat.v1.nn.rnn_cell` run by
`tf.compat.v1.nn.dynamic_rnn`, `tf.nn.embedding_lookup`, inside the model's own `tf.Graph`.

The layers name their own variables, as they did in TF1 scripts: `dense/kernel`,
`dense_1/kernel`, `conv2d/bias`, `batch_normalization/moving_mean`, `rnn/lstm_cell/kernel`
(`tf1_layers.model.build` checks that they are exactly the "tf1-layers" column of the weight
tables, `zoo.layers`). What each translation passes, and why:

- Dense: `tf.compat.v1.layers.dense(h, units)`; its defaults are Keras's (glorot-uniform
  kernel, zero bias). seed 001's N(0, 1) layers pass `random_normal_initializer()` for both.
- Conv2D: `tf.compat.v1.layers.conv2d(h, filters, kernel_size, strides, padding, use_bias)`:
  TF's 'same' padding is the canonical one, the kernel HWIO as canonical.
- MaxPool2D / AvgPool2D: `max_pooling2d` / `average_pooling2d`, 'valid'; Flatten: `flatten`
  (NHWC flattens in the canonical H, W, C order).
- Dropout: the shared keep-mask placeholder (as `tf1_compat`), then
  `tf.compat.v1.layers.dropout(h, rate, training=native_dropout)` for TF's own masks.
- BatchNorm: `tf.compat.v1.layers.batch_normalization(h, momentum=, epsilon=,
  training=training, fused=False)`. Its momentum (0.99) and epsilon (1e-3) defaults are the
  canonical ones, passed anyway. `fused=False` because the default (`fused=None`) takes the
  fused kernel for 4-D float32 input, whose moving-variance update uses the UNBIASED batch
  variance (measured: 48/47 = 1.0213 times the biased one for 3 images of 4x4), where the
  canonical BatchNorm, the non-fused path and every float64 run use the biased one. Its
  moving-statistics updates go to `tf.compat.v1.GraphKeys.UPDATE_OPS`, which the training
  loop's train op depends on (forgotten, the moving statistics never move: docs/porting.md).
- LayerNorm: `tf.contrib.layers.layer_norm` was TF1's; contrib is gone, and
  `tf.compat.v1.keras.layers.LayerNormalization` is a Keras 2 layer (its fused float32 path
  differs in rounding). So `layer_norm` writes contrib's function out: variables `beta` and
  `gamma` in `variable_scope(None, default_name="LayerNorm")` (LayerNorm, LayerNorm_1, ...:
  the names contrib checkpoints hold), `tf.nn.moments` over the last axis and
  `tf.nn.batch_normalization`, with the canonical epsilon (contrib's default was 1e-12).
- Embedding: `tf.compat.v1.get_variable("embedding", [vocab, dim])` and
  `tf.nn.embedding_lookup` (the ids come as whole-number floats, cast to int32).
- LSTM: `rnn_cell.LSTMCell(units)` with its defaults (forget_bias=1.0, added to the forget
  gate at run time) run by `dynamic_rnn(cell, h, dtype=..., scope="rnn")` (then "rnn_1", ...:
  a second `dynamic_rnn` in the default scope would create `rnn/lstm_cell/kernel` again). Its
  one kernel over [x, h] (features + units, 4 units), gates i, j, f, o, is mapped by the weight
  table, which also takes the forget_bias off the stored bias (`zoo.layers.CellBlocks`).
- GRU: `rnn_cell.GRUCell(units)` is the reset_after=False GRU (Keras 2's original): a zoo
  GRU with reset_after=True (the `gru` and `embedding_gru` models) has no TF1 cell and is
  refused with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from zoo.errors import ConfigError
from zoo.layers import TF1_LAYERS, Resolved, tf1_layers_scope

__all__ = ["TRANSLATIONS", "Context", "check_expressible", "translate"]

tf1 = tf.compat.v1


@dataclass
class Context:
    """What the translations share while one graph is built: the dtype, the dropout and
    training switches, and what they create besides variables: the dropout masks and the
    tensors around each dropout. (Initial weights are assigned after the Session starts:
    the layers are built with TF1's own initializers, as a script restoring a checkpoint.)"""

    dtype: str
    #: True turns TF's own dropout on (`tf.compat.v1.layers.dropout`), default False
    native_dropout: tf.Tensor
    #: True: training mode (BatchNorm's batch statistics and its updates), default False
    training: tf.Tensor
    masks: list[tf.Tensor] = field(default_factory=list)
    pre_dropout: list[tf.Tensor] = field(default_factory=list)
    post_dropout: list[tf.Tensor] = field(default_factory=list)


def check_expressible(resolved: list[Resolved]) -> None:
    """Refuse a model with a layer TF1's layer API cannot write (one line naming it)."""
    for r in resolved:
        if r.kind == "gru" and r.layer.reset_after:
            raise ConfigError(
                f"{r.name}: TF1's rnn_cell.GRUCell is the reset_after=False GRU (the reset gate "
                "applied before the recurrent matmul) and TF1 has no reset_after=True cell, so "
                "this model cannot be written with tf.compat.v1 layers; compare it in keras, "
                "tf1 or torch.")
        if r.kind == "batch_norm" and r.layer.moving_variance != "biased":
            raise ConfigError(
                f"{r.name}: tf.compat.v1.layers.batch_normalization(fused=False) updates the "
                "moving variance with the biased batch variance only; use "
                "moving_variance='biased'.")
        if r.kind not in TRANSLATIONS:
            raise ConfigError(f"{r.name}: no tf1-layers translation of layer kind {r.kind!r} "
                              f"(known: {', '.join(TRANSLATIONS)}).")
        for t in r.tensors:
            if TF1_LAYERS not in t.native:
                raise ConfigError(f"{t.name}: no tf1-layers column in its weight table.")


def dense(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    if r.layer.init == "normal":  # seed 001's network: N(0, 1) kernel AND bias
        return tf1.layers.dense(h, r.layer.units,
                                kernel_initializer=tf1.random_normal_initializer(),
                                bias_initializer=tf1.random_normal_initializer())
    return tf1.layers.dense(h, r.layer.units)


def conv2d(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    layer = r.layer
    return tf1.layers.conv2d(h, layer.filters, layer.kernel_size, strides=layer.strides,
                             padding=layer.padding, use_bias=layer.use_bias)


def max_pool2d(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    return tf1.layers.max_pooling2d(h, r.layer.pool_size, r.layer.strides, padding="valid")


def avg_pool2d(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    return tf1.layers.average_pooling2d(h, r.layer.pool_size, r.layer.strides, padding="valid")


def flatten(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    return tf1.layers.flatten(h)


def dropout(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """Inverted dropout, off unless fed: the shared keep-mask (`zoo.specs.dropout_masks`) fed
    into `mask` gives h * mask / (1 - rate), the default mask (1 - rate everywhere) keeps h
    exactly; `native_dropout=True` turns on `tf.compat.v1.layers.dropout`'s own masks."""
    rate = float(r.layer.rate)
    if rate == 0.0:
        return h
    keep = tf.constant(1.0 - rate, ctx.dtype)
    ctx.pre_dropout.append(h)
    mask = tf1.placeholder_with_default(tf.ones_like(h) * keep, (None, *r.input_shape),
                                        name="mask")
    ctx.masks.append(mask)
    h = tf1.layers.dropout(h * (mask / keep), rate=rate, training=ctx.native_dropout)
    ctx.post_dropout.append(h)
    return h


_ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "relu": tf.nn.relu, "sigmoid": tf.sigmoid, "tanh": tf.tanh, "linear": tf.identity}


def activation(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    return _ACTIVATIONS[r.layer.name](h)


def batch_norm(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """`tf.compat.v1.layers.batch_normalization` over the last axis, non-fused (see the
    module docstring), its updates in UPDATE_OPS. The momentum is passed as np.float64: the
    layer computes its decay as `convert_to_tensor(1.0 - momentum)`, a float32 tensor for a
    Python float (0.0099999998 for 0.01), cast to a float64 model's dtype."""
    return tf1.layers.batch_normalization(h, axis=-1, momentum=np.float64(r.layer.momentum),
                                          epsilon=float(r.layer.epsilon),
                                          training=ctx.training, fused=False)


def layer_norm(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """`tf.contrib.layers.layer_norm(h, begin_norm_axis=-1, begin_params_axis=-1)` written
    out (contrib is not in TF 2): its scope and variable names, its arithmetic, and the
    canonical epsilon in place of contrib's 1e-12."""
    features = int(h.shape[-1])
    with tf1.variable_scope(None, default_name="LayerNorm"):
        beta = tf1.get_variable("beta", shape=[features], dtype=ctx.dtype,
                                initializer=tf1.zeros_initializer())
        gamma = tf1.get_variable("gamma", shape=[features], dtype=ctx.dtype,
                                 initializer=tf1.ones_initializer())
        mean, variance = tf.nn.moments(h, [-1], keepdims=True)
        return tf.nn.batch_normalization(h, mean, variance, offset=beta, scale=gamma,
                                         variance_epsilon=float(r.layer.epsilon))


def embedding(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """`get_variable("embedding", [vocab, dim])` (U(-0.05, 0.05) as Keras's default) and
    `tf.nn.embedding_lookup`; the training loop makes its sparse gradient dense."""
    table = tf1.get_variable(tf1_layers_scope("embedding", r.name),
                             shape=[r.layer.vocab, r.layer.dim], dtype=ctx.dtype,
                             initializer=tf1.random_uniform_initializer(-0.05, 0.05))
    return tf.nn.embedding_lookup(table, tf.cast(h, tf.int32))


def _run_cell(r: Resolved, cell, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """`dynamic_rnn` (batch-major, zero initial state) in the layer's scope: every step's
    output with return_sequences, else the last one."""
    outputs, _ = tf1.nn.dynamic_rnn(cell, h, dtype=ctx.dtype,
                                    scope=tf1_layers_scope("rnn", r.name))
    return outputs if r.layer.return_sequences else outputs[:, -1, :]


def lstm(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """`LSTMCell(units)` as TF1 scripts built it (forget_bias=1.0, its default initializers:
    glorot-uniform over the whole (features + units, 4 units) kernel, zero bias)."""
    return _run_cell(r, tf1.nn.rnn_cell.LSTMCell(r.layer.units), h, ctx)


def gru(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """`GRUCell(units)`: the reset_after=False GRU (its gates bias starts at ONES)."""
    return _run_cell(r, tf1.nn.rnn_cell.GRUCell(r.layer.units), h, ctx)


#: canonical layer kind -> its translation
TRANSLATIONS: dict[str, Callable[[Resolved, tf.Tensor, Context], tf.Tensor]] = {
    "dense": dense, "conv2d": conv2d, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d,
    "flatten": flatten, "dropout": dropout, "activation": activation,
    "batch_norm": batch_norm, "layer_norm": layer_norm, "embedding": embedding,
    "lstm": lstm, "gru": gru}


def translate(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """Build layer `r` on `h`; the layer names its own variables."""
    return TRANSLATIONS[r.kind](r, h, ctx)
