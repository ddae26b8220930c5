"""One TF1 translation per canonical layer kind (`zoo.layers`): the ops a TF1 graph builds for
each layer of `spec.resolved`, in order, inside the model's own `tf.Graph`.

- Dense: `tf.matmul(h, kernel) + bias`;
- Conv2D: `tf.compat.v1.nn.conv2d(h, kernel, strides=[1, sh, sw, 1], padding="SAME"|"VALID")`
  + bias; TF's "SAME" (one more row/column after when the total is odd) IS the canonical
  'same', and the kernel is HWIO as canonical;
- MaxPool2D / AvgPool2D: `tf.compat.v1.nn.max_pool2d` / `avg_pool2d`, "VALID";
- Flatten: `tf.reshape(h, [-1, H*W*C])`: NHWC tensors flatten in the canonical H, W, C order;
- Dropout: a keep-mask placeholder for the shared masks and `tf.compat.v1.nn.dropout` for TF's
  own (see `dropout`); both default to "off";
- Activation: `tf.nn.relu`, `tf.sigmoid`, `tf.tanh`, `tf.identity` (linear).

Weights are `tf.compat.v1.get_variable`s in `variable_scope(<layer name>)`, so their TF names
are the weight table's tf1 native names (`conv2d_0/kernel`, `dense_1/bias`), in the canonical
layout: nothing to transpose. (`tf.compat.v1.layers.dense/conv2d` would be the TF1.x spelling,
but they raise AttributeError under Keras 3.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from zoo.errors import ConfigError
from zoo.layers import Resolved, TensorSpec

__all__ = ["TRANSLATIONS", "Context", "translate"]

tf1 = tf.compat.v1


@dataclass
class Context:
    """What the translations share while one graph is built: the dtype, the initial values
    (tf1 native name -> array, or None for TF1's default initializer), and what they create:
    the variables (by TF name), the dropout masks and the tensors around each dropout."""

    dtype: str
    init: dict[str, np.ndarray] | None
    #: True turns TF's own dropout on (`tf.compat.v1.nn.dropout`), default False
    native_dropout: tf.Tensor
    variables: dict[str, tf.Variable] = field(default_factory=dict)
    masks: list[tf.Tensor] = field(default_factory=list)
    pre_dropout: list[tf.Tensor] = field(default_factory=list)
    post_dropout: list[tf.Tensor] = field(default_factory=list)


def _variable(ctx: Context, r: Resolved, t: TensorSpec) -> tf.Variable:
    """`get_variable` for one row of the weight table, inside `variable_scope(r.name)`."""
    native = t.native_name("tf1")
    scope, _, short = native.rpartition("/")
    if scope != r.name:  # the table and the scope must agree on the TF name
        raise ConfigError(f"{t.name}: its tf1 name {native!r} is not in scope {r.name!r}.")
    if ctx.init is None:  # TF1's default: glorot_uniform for EVERY variable, biases too
        var = tf1.get_variable(short, shape=t.native_shape("tf1"), dtype=ctx.dtype)
    else:
        var = tf1.get_variable(short, initializer=tf.constant(
            np.asarray(ctx.init[native], ctx.dtype)))
    ctx.variables[native] = var
    return var


def dense(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    kernel, bias = (_variable(ctx, r, t) for t in r.tensors)
    return tf.matmul(h, kernel) + bias


def conv2d(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    kernel, bias = (_variable(ctx, r, t) for t in r.tensors)
    sh, sw = r.layer.strides
    z = tf1.nn.conv2d(h, kernel, strides=[1, sh, sw, 1], padding=r.layer.padding.upper())
    return z + bias


def max_pool2d(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    (ph, pw), (sh, sw) = r.layer.pool_size, r.layer.strides
    return tf1.nn.max_pool2d(h, ksize=[1, ph, pw, 1], strides=[1, sh, sw, 1], padding="VALID")


def avg_pool2d(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    (ph, pw), (sh, sw) = r.layer.pool_size, r.layer.strides
    return tf1.nn.avg_pool2d(h, ksize=[1, ph, pw, 1], strides=[1, sh, sw, 1], padding="VALID")


def flatten(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    return tf.reshape(h, [-1, int(np.prod(r.output_shape))])


def dropout(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """Inverted dropout, off unless fed. Shared mode feeds the layer's precomputed 0/1
    keep-mask (`zoo.specs.dropout_masks`) into `mask`: h * (mask / (1 - rate)), as the
    reference. The mask's default is the constant 1 - rate, so the unfed layer multiplies by
    (1 - rate) / (1 - rate) = 1 exactly. Native mode feeds `native_dropout=True`:
    `tf.compat.v1.nn.dropout` at the layer's rate (rate 0 when off keeps every unit at scale 1).
    A rate-0 layer is the identity and has no mask (`dropout_masks` makes none for it)."""
    rate = float(r.layer.rate)
    if rate == 0.0:
        return h
    keep = tf.constant(1.0 - rate, ctx.dtype)
    ctx.pre_dropout.append(h)
    mask = tf1.placeholder_with_default(tf.ones_like(h) * keep, (None, *r.input_shape),
                                        name="mask")
    ctx.masks.append(mask)
    h = h * (mask / keep)
    h = tf1.nn.dropout(h, rate=tf.cast(ctx.native_dropout, ctx.dtype) * rate)
    ctx.post_dropout.append(h)
    return h


_ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "relu": tf.nn.relu, "sigmoid": tf.sigmoid, "tanh": tf.tanh, "linear": tf.identity}


def activation(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    return _ACTIVATIONS[r.layer.name](h)


#: canonical layer kind -> its translation
TRANSLATIONS: dict[str, Callable[[Resolved, tf.Tensor, Context], tf.Tensor]] = {
    "dense": dense, "conv2d": conv2d, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d,
    "flatten": flatten, "dropout": dropout, "activation": activation}


def translate(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """Build layer `r` on `h` in its own scope (variables under `variable_scope(r.name)`)."""
    if r.kind not in TRANSLATIONS:
        raise ConfigError(f"{r.name}: no TF1 translation of layer kind {r.kind!r} (known: "
                          f"{', '.join(TRANSLATIONS)}); add one to tf1_compat/layers.py.")
    with tf1.variable_scope(r.name):
        return TRANSLATIONS[r.kind](r, h, ctx)
