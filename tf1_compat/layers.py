"""One TF1 translation per canonical layer kind (`zoo.layers`): the ops a TF1 graph builds for
each layer of `spec.resolved`, in order, inside the model's own `tf.Graph`.

- Dense: `tf.matmul(h, kernel) + bias`;
- Conv2D: `tf.compat.v1.nn.conv2d(h, kernel, strides=[1, sh, sw, 1], padding="SAME"|"VALID")`
  + bias (no bias variable with `use_bias=False`); TF's "SAME" (one more row/column after
  when the total is odd) IS the canonical 'same', and the kernel is HWIO as canonical;
- MaxPool2D / AvgPool2D: `tf.compat.v1.nn.max_pool2d` / `avg_pool2d`, "VALID";
- Flatten: `tf.reshape(h, [-1, H*W*C])`: NHWC tensors flatten in the canonical H, W, C order;
- Dropout: a keep-mask placeholder for the shared masks and `tf.compat.v1.nn.dropout` for TF's
  own (see `dropout`); both default to "off";
- Activation: `tf.nn.relu`, `tf.sigmoid`, `tf.tanh`, `tf.identity` (linear);
- BatchNorm and LayerNorm: `tf.nn.moments` and `tf.nn.batch_normalization` (see below).

Weights are `tf.compat.v1.get_variable`s in `variable_scope(<layer name>)`, so their TF names
are the weight table's tf1 native names (`conv2d_0/kernel`, `dense_1/bias`,
`batch_norm_0/moving_mean`), in the canonical layout: nothing to transpose.
(`tf.compat.v1.layers.dense/conv2d/batch_normalization` would be the TF1.x spelling, but they
raise AttributeError under Keras 3, which `tf.compat.v1.layers` forwards to.)

BatchNorm, the TF1 way written out (`batch_norm`). gamma and beta are trainable variables;
moving_mean and moving_variance are `get_variable(..., trainable=False)`: in the graph's
global variables (so the Session initialises them, `Saver` writes them and the weights carry
them) but not in `trainable_variables()`, so `minimize` never touches them. Which statistics
normalise is chosen by the graph's `training` placeholder (default False: inference, the
moving statistics). In training mode the layer normalises with `tf.nn.moments` over every
axis but the last (the biased variance) and builds the moving-statistics update,
moving = momentum * moving + (1 - momentum) * batch value, as assign ops inside a
`tf.cond(training, ...)` that it adds to `tf.compat.v1.GraphKeys.UPDATE_OPS`.

Nothing runs those assign ops unless something asks for them: in TF1 the train op must be
built under `tf.control_dependencies(tf.compat.v1.get_collection(UPDATE_OPS))` (as
`tf1_compat.train` does) and training must feed `training=True`. A TF1 script that forgets
the dependency trains exactly the same kernels, gamma and beta (training mode normalises
with batch statistics, which the moving ones never enter), but its moving statistics stay at
their initial zeros and ones, and its predictions (inference mode) normalise with those.
Measured on cnn_bn, digits (1437 training images, 360 test), batch 32, one epoch (45 steps):
without the dependency every moving_mean is still exactly 0 and every moving_variance
exactly 1, the trained tensors equal the zoo's bit for bit, and the test accuracy is 0.847
instead of 0.889 (Adam lr 0.01) and 0.708 instead of 0.814 (SGD lr 0.1); training accuracy
0.852 instead of 0.928 (Adam). (`tests/test_tf1_norm.py` checks both halves.)

`tf.compat.v1.nn.fused_batch_norm` (what TF1's layers used for 4-D NHWC input) is not used.
In training mode it normalises with the biased batch variance but RETURNS the unbiased one
for the moving update (measured ratios to the biased variance 1.0078740 = 128/127 for 4
8x4 images, 1.032258 = 32/31 for 32 values, 2 = 2/1 for 2 values per channel), while the
canonical default updates with the biased one; it is float32-only (float64 input raises a
TypeError: float16, bfloat16, float32 allowed); and it takes 4-D input only. Older TF
versions' Python wrapper also raised every epsilon below 1.001e-5 to that value (a cuDNN
minimum of its time); the TF 2.21 installed here does not: on CPU, epsilon 1e-8 normalises
with 1e-8 (4.8e-7 from the exact float64 formula, 0.022 from the formula with 1.001e-5 on
a channel of variance 7.3e-4; 0.43 in inference mode with a moving variance of 1e-3). The
canonical `BatchNorm` refuses epsilons below 1.001e-5, so the difference never shows.
`moving_variance="unbiased"` is built here by multiplying the batch variance by
count / (count - 1), count from the dynamic shape (a run-time assertion refuses count 1).

LayerNorm (`layer_norm`): `tf.nn.moments` over the last axis of each sample (keepdims), the
same in both modes, gamma and beta trainable.
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
    the variables (by TF name), the dropout masks and the tensors around each dropout, and
    per state variable (BatchNorm's moving statistics) its value read before the update and
    the value the update writes."""

    dtype: str
    init: dict[str, np.ndarray] | None
    #: True turns TF's own dropout on (`tf.compat.v1.nn.dropout`), default False
    native_dropout: tf.Tensor
    #: True: training mode (BatchNorm normalises with the batch statistics and its update ops
    #: may run), default False: inference (the moving statistics)
    training: tf.Tensor
    variables: dict[str, tf.Variable] = field(default_factory=dict)
    #: state variable's TF name -> its value read before this run's update
    state_before: dict[str, tf.Tensor] = field(default_factory=dict)
    #: state variable's TF name -> the value its update op assigns (valid with training=True)
    state_after: dict[str, tf.Tensor] = field(default_factory=dict)
    masks: list[tf.Tensor] = field(default_factory=list)
    pre_dropout: list[tf.Tensor] = field(default_factory=list)
    post_dropout: list[tf.Tensor] = field(default_factory=list)


_INITIALIZERS = {"ones": tf1.ones_initializer, "zeros": tf1.zeros_initializer}


def _variable(ctx: Context, r: Resolved, t: TensorSpec, *, table_init: bool = False
              ) -> tf.Variable:
    """`get_variable` for one row of the weight table, inside `variable_scope(r.name)`;
    trainable as the row says (state rows are `trainable=False`). Without initial values,
    `table_init` uses the row's own initializer (the normalisations' ones and zeros, as
    TF1's layers do) instead of get_variable's default."""
    native = t.native_name("tf1")
    scope, _, short = native.rpartition("/")
    if scope != r.name:  # the table and the scope must agree on the TF name
        raise ConfigError(f"{t.name}: its tf1 name {native!r} is not in scope {r.name!r}.")
    if ctx.init is None and table_init:
        var = tf1.get_variable(short, shape=t.native_shape("tf1"), dtype=ctx.dtype,
                               initializer=_INITIALIZERS[t.init](), trainable=t.trainable)
    elif ctx.init is None:  # TF1's default: glorot_uniform for EVERY variable, biases too
        var = tf1.get_variable(short, shape=t.native_shape("tf1"), dtype=ctx.dtype,
                               trainable=t.trainable)
    else:
        var = tf1.get_variable(short, initializer=tf.constant(
            np.asarray(ctx.init[native], ctx.dtype)), trainable=t.trainable)
    ctx.variables[native] = var
    return var


def dense(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    kernel, bias = (_variable(ctx, r, t) for t in r.tensors)
    return tf.matmul(h, kernel) + bias


def conv2d(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    kernel, *bias = (_variable(ctx, r, t) for t in r.tensors)  # no bias: use_bias=False
    sh, sw = r.layer.strides
    z = tf1.nn.conv2d(h, kernel, strides=[1, sh, sw, 1], padding=r.layer.padding.upper())
    return z + bias[0] if bias else z


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


def batch_norm(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """`zoo.layers.BatchNorm` over the last axis (see the module docstring).

    The moving statistics are read once, outside every branch (`state_before`): the update
    computes from that read, the inference branch normalises with it, and the training
    loop's backup copies it (a read that the update's assign cannot overtake). The new
    values (`state_after`) are plain tensors, so `step_details` can fetch them without
    running the assign ops."""
    gamma, beta, moving_mean, moving_variance = (_variable(ctx, r, t, table_init=True)
                                                 for t in r.tensors)
    layer, dt = r.layer, ctx.dtype
    axes = list(range(len(r.input_shape)))  # every axis of (N, *input_shape) but the last
    batch_mean, batch_var = tf.nn.moments(h, axes)  # the biased variance
    old_mean, old_var = moving_mean.read_value(), moving_variance.read_value()
    mean, var = tf1.cond(ctx.training, lambda: (batch_mean, batch_var),
                         lambda: (old_mean, old_var))
    out = tf.nn.batch_normalization(h, mean, var, beta, gamma, float(layer.epsilon))

    update_var = batch_var
    if layer.moving_variance == "unbiased":  # Bessel: count values per channel in the batch
        count = tf.cast(tf.reduce_prod(tf.shape(h)[:-1]), dt)
        check = tf.debugging.assert_greater(
            count, tf.constant(1.0, dt), message=f"{r.name}: a batch with one value per "
            "channel has no unbiased variance; use batches of at least 2 samples with "
            "BatchNorm.")
        with tf.control_dependencies([check]):
            update_var = batch_var * (count / (count - 1.0))
    momentum = tf.constant(float(layer.momentum), dt)
    rest = tf.constant(1.0 - float(layer.momentum), dt)
    new_mean = old_mean * momentum + batch_mean * rest
    new_var = old_var * momentum + update_var * rest
    update = tf1.cond(ctx.training,
                      lambda: tf.group(moving_mean.assign(new_mean),
                                       moving_variance.assign(new_var)),
                      tf.no_op, name="update_moving_statistics")
    tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, update)
    for t, before, after in ((r.tensors[2], old_mean, new_mean),
                             (r.tensors[3], old_var, new_var)):
        ctx.state_before[t.native_name("tf1")] = before
        ctx.state_after[t.native_name("tf1")] = after
    return out


def layer_norm(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """`zoo.layers.LayerNorm`: each sample normalised over its features with their mean and
    biased variance (`tf.nn.moments(h, [-1], keepdims=True)`), the same in both modes."""
    gamma, beta = (_variable(ctx, r, t, table_init=True) for t in r.tensors)
    mean, var = tf.nn.moments(h, [-1], keepdims=True)
    return tf.nn.batch_normalization(h, mean, var, beta, gamma, float(r.layer.epsilon))


#: canonical layer kind -> its translation
TRANSLATIONS: dict[str, Callable[[Resolved, tf.Tensor, Context], tf.Tensor]] = {
    "dense": dense, "conv2d": conv2d, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d,
    "flatten": flatten, "dropout": dropout, "activation": activation,
    "batch_norm": batch_norm, "layer_norm": layer_norm}


def translate(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """Build layer `r` on `h` in its own scope (variables under `variable_scope(r.name)`)."""
    if r.kind not in TRANSLATIONS:
        raise ConfigError(f"{r.name}: no TF1 translation of layer kind {r.kind!r} (known: "
                          f"{', '.join(TRANSLATIONS)}); add one to tf1_compat/layers.py.")
    with tf1.variable_scope(r.name):
        return TRANSLATIONS[r.kind](r, h, ctx)
