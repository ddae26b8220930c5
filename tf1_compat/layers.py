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
- BatchNorm and LayerNorm: `tf.nn.moments` and `tf.nn.batch_normalization` (see below);
- Embedding: `tf.nn.embedding_lookup(embeddings, tf.cast(ids, tf.int32))`;
- LSTM and GRU: the cell equations of the `zoo.layers` docstrings written out over
  `tf.scan` along the time axis (see below).

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

Embedding (`embedding`): the ids arrive in the float `x` placeholder (N, T) and are cast to
int32 at the lookup. The lookup's gradient is a `tf.IndexedSlices` (the looked-up rows); the
training loop densifies it, because TF1's sparse RMSprop and momentum kernels update only
those rows' slots (`tf1_compat.train._dense`; measured on embedding_gru, float64, batches
of 2 sequences, one epoch of 320: RMSprop 9.8e-2 and momentum 5.9e-3 away from the
reference with the sparse gradient, 1e-15 with the dense one; at batch 32, where every id
of the vocabulary of 16 occurs in every batch, both agree to 1e-15).

LSTM and GRU (`lstm`, `gru`). TF1's own cells cannot be built here:
`tf.compat.v1.nn.rnn_cell.LSTMCell(4)` raises `AttributeError: `LSTMCell` is not available
with Keras 3.` (the same for `GRUCell` and `BasicLSTMCell`): `tf.compat.v1.nn.rnn_cell`
forwards to Keras, and Keras 3 has no TF1 cells. So the cell is written out with
`get_variable`s in the canonical layout (kernel (F, G*u), recurrent_kernel (u, G*u), bias;
tf1 names = canonical names) and the recurrence runs as `tf.scan` over the time-major input
(the `tf.compat.v1.while_loop` inside it, whose gradient `tf.compat.v1.gradients` builds
in graph mode). x @ kernel + bias is computed for all steps in one matmul before the loop;
each step adds h @ recurrent_kernel and applies the gates, line for line the docstring
equations (LSTM i, f, c, o; GRU z, r, h, reset after or before the recurrent matmul).
The last step's h is returned, or every step's, back to batch-major (N, T, u).

The layout TF1 code used differs. `LSTMCell` (the class still ships inside TensorFlow,
`tensorflow/python/keras/layers/legacy_rnn/rnn_cell_impl.py`, and builds when imported
from there) has ONE `kernel` of (features + u, 4u) over the concatenation [x, h], a `bias`
(4u,) initialised to zeros, gates in the order i, j, f, o (j the candidate, Keras's c), and
adds `forget_bias=1.0` to the forget gate at run time: f = sigmoid(x Wf + h Uf + bf + 1).
Canonical weights loaded naively (kernel stacked over recurrent_kernel, bias as it is) make
the cell use Keras's forget block as the candidate and the candidate block as the forget
gate, with one more added: measured on 160 digits sequences (8 steps of 8, units 16, the
zoo's initial weights) the last h is up to 1.39 away (mean 0.40; |h| <= 0.77) and the
dense layer's argmax agrees on 5% of the samples. Reordered to i, c, f, o the forget bias
still counts twice (0.33 away); reordered with 1 taken off the forget bias (or built with
`forget_bias=0.0`) the cell equals the canonical LSTM to 2.8e-16 in float64. TF1's
`GRUCell` is the reset_after=False GRU: `gates/kernel` (features + u, 2u) with gates r, u
(u = Keras's z) and `gates/bias` initialised to ONES, `candidate/kernel` (features + u, u)
over [x, r * h]; with the blocks moved accordingly it equals the canonical GRU
(reset_after=False) to 4.4e-16 (`tests/test_tf1_rnn.py` checks both cells).
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


def _forget_ones(t: TensorSpec):
    """Keras's LSTM bias (`unit_forget_bias=True`): zeros, ones on the forget gate's block."""
    a = np.zeros(t.shape)
    u = t.shape[-1] // 4
    a[..., u:2 * u] = 1.0
    return tf1.constant_initializer(a)


#: the weight table's initializer names (`TensorSpec.init`) -> a TF1 initializer of the row
_INITIALIZERS: dict[str, Callable[[TensorSpec], object]] = {
    "ones": lambda t: tf1.ones_initializer(), "zeros": lambda t: tf1.zeros_initializer(),
    "glorot_uniform": lambda t: tf1.glorot_uniform_initializer(),
    "uniform": lambda t: tf1.random_uniform_initializer(-0.05, 0.05),
    "orthogonal": lambda t: tf1.orthogonal_initializer(), "forget_ones": _forget_ones}


def _variable(ctx: Context, r: Resolved, t: TensorSpec, *, table_init: bool = False
              ) -> tf.Variable:
    """`get_variable` for one row of the weight table, inside `variable_scope(r.name)`;
    trainable as the row says (state rows are `trainable=False`). Without initial values,
    `table_init` uses the row's own initializer (the normalisations' ones and zeros, as
    TF1's layers do; the recurrent layers' orthogonal recurrent kernels and forget-gate
    ones, the embeddings' U(-0.05, 0.05), as Keras does) instead of get_variable's default."""
    native = t.native_name("tf1")
    scope, _, short = native.rpartition("/")
    if scope != r.name:  # the table and the scope must agree on the TF name
        raise ConfigError(f"{t.name}: its tf1 name {native!r} is not in scope {r.name!r}.")
    if ctx.init is None and table_init:
        var = tf1.get_variable(short, shape=t.native_shape("tf1"), dtype=ctx.dtype,
                               initializer=_INITIALIZERS[t.init](t), trainable=t.trainable)
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


def embedding(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """`zoo.layers.Embedding`: (N, T) token ids, fed as whole-number floats, cast to int32
    here, -> (N, T, dim) rows of `embeddings` (vocab, dim) by `tf.nn.embedding_lookup`. Its
    gradient is a `tf.IndexedSlices` (the looked-up rows only); the training loop makes it
    dense before the optimizer sees it (`tf1_compat.train`)."""
    (embeddings,) = (_variable(ctx, r, t, table_init=True) for t in r.tensors)
    return tf.nn.embedding_lookup(embeddings, tf.cast(h, tf.int32))


def _time_major_inputs(h: tf.Tensor, kernel: tf.Variable, bias: tf.Tensor) -> tf.Tensor:
    """x_t @ kernel + bias for every time step in ONE matmul: (N, T, F) -> (T, N, G*u), the
    time axis first because `tf.scan` walks its input's first axis. Only the recurrent
    product h @ recurrent_kernel is left for the step, where it depends on the last h."""
    xs = tf.transpose(h, [1, 0, 2])                        # (T, N, F)
    shape = tf.shape(xs)
    gates = int(kernel.shape[-1])
    flat = tf.matmul(tf.reshape(xs, [-1, int(kernel.shape[0])]), kernel) + bias
    return tf.reshape(flat, tf.stack([shape[0], shape[1], gates]))


def _zeros_state(h: tf.Tensor, units: int, dtype: str) -> tf.Tensor:
    """The zero state (N, units) for a batch of any size."""
    return tf.zeros(tf.stack([tf.shape(h)[0], units]), dtype)


def _outputs(r: Resolved, hs: tf.Tensor) -> tf.Tensor:
    """Every step's h (T, N, u) -> (N, T, u) with return_sequences, else the last step's."""
    return tf.transpose(hs, [1, 0, 2]) if r.layer.return_sequences else hs[-1]


def lstm(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """`zoo.layers.LSTM` (Keras semantics), gates i, f, c, o in the canonical layout; one
    `tf.scan` step per time step (see the module docstring)."""
    kernel, recurrent_kernel, bias = (_variable(ctx, r, t, table_init=True)
                                      for t in r.tensors)
    xw = _time_major_inputs(h, kernel, bias)              # x Wi + bi, ..., x Wo + bo

    def step(carry, xw_t):
        h_prev, c_prev = carry
        z = xw_t + tf.matmul(h_prev, recurrent_kernel)   # + h Ui, h Uf, h Uc, h Uo
        z_i, z_f, z_c, z_o = tf.split(z, 4, axis=1)
        i, f, o = tf.sigmoid(z_i), tf.sigmoid(z_f), tf.sigmoid(z_o)
        c = f * c_prev + i * tf.tanh(z_c)
        return o * tf.tanh(c), c

    zero = _zeros_state(h, r.layer.units, ctx.dtype)
    hs, _ = tf.scan(step, xw, initializer=(zero, zero), name="steps")
    return _outputs(r, hs)


def gru(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """`zoo.layers.GRU` (Keras semantics), gates z, r, h in the canonical layout, reset_after
    True (bias rows: input, recurrent) or False (one bias); one `tf.scan` step per time
    step (see the module docstring)."""
    kernel, recurrent_kernel, bias = (_variable(ctx, r, t, table_init=True)
                                      for t in r.tensors)
    u = r.layer.units
    if r.layer.reset_after:
        xw = _time_major_inputs(h, kernel, bias[0])      # x Wz + bz, x Wr + br, x Wh + bh
        recurrent_bias = bias[1]                          # b'z, b'r, b'h

        def step(h_prev, xw_t):
            x_z, x_r, x_h = tf.split(xw_t, 3, axis=1)
            hu = tf.matmul(h_prev, recurrent_kernel) + recurrent_bias  # h Uz + b'z, ...
            h_z, h_r, h_h = tf.split(hu, 3, axis=1)
            z, reset = tf.sigmoid(x_z + h_z), tf.sigmoid(x_r + h_r)
            candidate = tf.tanh(x_h + reset * h_h)       # the reset AFTER the matmul
            return z * h_prev + (1.0 - z) * candidate
    else:
        xw = _time_major_inputs(h, kernel, bias)         # x Wz + bz, x Wr + br, x Wh + bh
        u_zr, u_h = recurrent_kernel[:, :2 * u], recurrent_kernel[:, 2 * u:]

        def step(h_prev, xw_t):
            x_z, x_r, x_h = tf.split(xw_t, 3, axis=1)
            h_z, h_r = tf.split(tf.matmul(h_prev, u_zr), 2, axis=1)
            z, reset = tf.sigmoid(x_z + h_z), tf.sigmoid(x_r + h_r)
            candidate = tf.tanh(x_h + tf.matmul(reset * h_prev, u_h))  # reset BEFORE it
            return z * h_prev + (1.0 - z) * candidate

    hs = tf.scan(step, xw, initializer=_zeros_state(h, u, ctx.dtype), name="steps")
    return _outputs(r, hs)


#: canonical layer kind -> its translation
TRANSLATIONS: dict[str, Callable[[Resolved, tf.Tensor, Context], tf.Tensor]] = {
    "dense": dense, "conv2d": conv2d, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d,
    "flatten": flatten, "dropout": dropout, "activation": activation,
    "batch_norm": batch_norm, "layer_norm": layer_norm, "embedding": embedding,
    "lstm": lstm, "gru": gru}


def translate(r: Resolved, h: tf.Tensor, ctx: Context) -> tf.Tensor:
    """Build layer `r` on `h` in its own scope (variables under `variable_scope(r.name)`)."""
    if r.kind not in TRANSLATIONS:
        raise ConfigError(f"{r.name}: no TF1 translation of layer kind {r.kind!r} (known: "
                          f"{', '.join(TRANSLATIONS)}); add one to tf1_compat/layers.py.")
    with tf1.variable_scope(r.name):
        return TRANSLATIONS[r.kind](r, h, ctx)
