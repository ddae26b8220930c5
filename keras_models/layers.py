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
- `Activation(name)` -> `keras.layers.Activation(name)` (relu, sigmoid, tanh, linear);
- `BatchNorm(momentum, epsilon, moving_variance)` -> `keras.layers.BatchNormalization(axis=-1,
  momentum=momentum, epsilon=epsilon)`: variables gamma, beta, moving_mean, moving_variance,
  the weight table's names. Keras's momentum IS the canonical convention (the weight of the
  old moving value), so it passes through unchanged, and Keras 3 updates the moving variance
  with the biased batch variance, the canonical default. Both arguments are always passed:
  Keras's defaults (0.99, 1e-3) are the canonical ones, torch's are not (0.1 meaning 0.9
  here, 1e-5). `training=True` (`fit`) normalises with the batch statistics and updates the
  moving ones; `training=False`/None (`predict`, `evaluate`, a direct call) uses the moving
  statistics (docs/porting.md). Data-parallel runs build it with `synchronized=True`, so that
  the batch statistics are those of the global batch, as in one process
  (`keras_models.distributed`). `moving_variance="unbiased"` and `synchronized=True` get
  `ZooBatchNormalization`, Keras's class with the unbiased update and two-pass synchronised
  moments (see there);
- `LayerNorm(epsilon)` -> `keras.layers.LayerNormalization(axis=-1, epsilon=epsilon)`: biased
  variance over the features of each sample, the same in training and inference;
- `Embedding(vocab, dim)` -> `ZooEmbedding(vocab, dim)`: Keras's `Embedding` (variable
  `embeddings` (vocab, dim), the canonical layout) whose table gets a DENSE gradient. The
  gradient of a lookup is a `tf.IndexedSlices` with one slice per looked-up id, and Keras 3's
  Adam and RMSprop square it slice by slice, so a row looked up k times gets the sum of k
  squared partial gradients as its second moment instead of the square of their sum
  (measured on embedding_gru, one float64 epoch of token sequences: 4.7e-2 from the
  reference with Adam, 1.4e-1 with RMSprop, 9.4e-5 with Adagrad; SGD and momentum are
  linear and unaffected). Ids arrive as float arrays of whole numbers and are cast to int32
  at the lookup (Keras's own `call` would cast them too);
- `LSTM(units, return_sequences)` -> `keras.layers.LSTM(units, return_sequences=...,
  unit_forget_bias=True, use_cudnn=False)` and `GRU(units, return_sequences, reset_after)` ->
  `keras.layers.GRU(..., reset_after=..., use_cudnn=False)`: Keras's tanh/sigmoid cells,
  the equations of `zoo.layers.LSTM` / `GRU`, h (and c) starting at zero, (N, T, F) in and
  (N, units) or (N, T, units) out. Keras keeps the variables in the layer's cell (paths
  `lstm_0/lstm_cell/kernel`), but their names are `kernel`, `recurrent_kernel` and `bias`,
  so `<layer>/<variable>` is the weight table's `lstm_0/kernel`, ... with the canonical
  layouts: kernel (F, G*u), recurrent kernel (u, G*u), bias (G*u,) or, for a GRU with
  reset_after=True, (2, 3u) (input row, recurrent row). `use_cudnn="auto"` (Keras's default)
  switches to the fused cuDNN kernel when a GPU is visible and the arguments allow it (its
  rounding is cuDNN's, and it has no reset_after=False GRU); on a CPU it always falls back to
  the generic kernel. False keeps that generic kernel (`keras.src.backend.tensorflow.rnn` /
  the cell's `call`, one `tf.while_loop` step per time step) on every device, so the numbers
  do not depend on the machine; every result of the zoo is the generic kernel's. The cells
  compute in the layer's dtype: a float64 layer keeps its weights, states and outputs in
  float64 (1e-14 from numpy's equations).

Initialisers follow the weight table (`TensorSpec.init`): glorot-uniform kernels and zero
biases (Keras's defaults), N(0, 1) for seed 001's network, ones for gamma and the moving
variance, zeros for beta and the moving mean, U(-0.05, 0.05) for embeddings, orthogonal
recurrent kernels, and the LSTM bias at zero with ones on the forget gate (Keras's
`unit_forget_bias=True`), all Keras's defaults. They only matter when a model is built
without canonical weights; the zoo's runs load `zoo.specs.init_weights`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
from keras import ops

from zoo import layers as zl
from zoo.errors import ConfigError

__all__ = ["ZooBatchNormalization", "ZooEmbedding", "keras_layer", "shared_dropout"]


def _initializer(name: str):
    if name == "normal":
        return keras.initializers.RandomNormal(mean=0.0, stddev=1.0)
    if name == "uniform":  # Keras's Embedding default, spelled out
        return keras.initializers.RandomUniform(minval=-0.05, maxval=0.05)
    if name in ("glorot_uniform", "zeros", "ones", "orthogonal"):
        return name
    if name == "forget_ones":  # the LSTM's zeros, plus `unit_forget_bias=True` (see _lstm)
        return "zeros"
    raise ConfigError(f"no Keras initialiser for {name!r} in keras_models.layers; add one.")


def _inits(r: zl.Resolved) -> dict:
    """`<variable>_initializer` arguments from the layer's weight table (kernel_initializer,
    bias_initializer, gamma_initializer, moving_mean_initializer, embeddings_initializer,
    recurrent_initializer (from `recurrent_kernel`), ...): one per row."""
    out = {}
    for t in r.tensors:
        variable = t.name.rsplit("/", 1)[1]
        if variable == "recurrent_kernel":
            variable = "recurrent"
        out[f"{variable}_initializer"] = _initializer(t.init)
    return out


def _dense(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    return keras.layers.Dense(r.layer.units, name=r.name, dtype=dtype, **_inits(r))


def _conv2d(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    layer = r.layer
    return keras.layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides,
                               padding=layer.padding, data_format="channels_last",
                               use_bias=layer.use_bias, name=r.name, dtype=dtype, **_inits(r))


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


@keras.saving.register_keras_serializable(package="zoo")
class ZooBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with the two things the canonical `BatchNorm` needs
    that Keras 3 does not do; a BatchNorm that needs neither is Keras's own class.

    1. `moving_variance="unbiased"`: Keras normalises with the biased batch variance (as every
       framework does) and also updates its moving variance with it, with no option for the
       unbiased one (Bessel's correction: what torch's `BatchNorm` and TF's fused kernel use).
       So the training-mode call runs Keras's own update and then rewrites the moving
       variance with the zoo's one compensation, `zoo.layers.corrected_moving_variance(
       before, after, count, momentum, "biased", "unbiased")`, count = the values per channel
       in the batch (N for features, N*H*W for images; the global batch's when synchronized).
       Inside `fit` the batch size is a tensor (the partial last batch makes it dynamic),
       which that function's Python check of the count cannot take: `_unbiased` then computes
       the same expression in the same order (a test checks they agree to the last bit), with
       the check as a graph assertion.
    2. `synchronized=True` under a `tf.distribute` strategy (the data-parallel path): Keras's
       synchronised moments (`keras.src.backend.tensorflow.nn._compute_moments_sync`)
       all-reduce the sums, the sums of squares and the counts, so the global mean is a true
       mean over unequal shards too (not a mean of the shards' means: measured equal to one
       process with shards of 6 + 5 rows), but the variance is E[x^2] - E[x]^2 in one pass,
       which cancels in float32 when a channel's mean is large against its spread (measured
       relative error of the variance: 2.5e-6 at mean/std 1, 2.2e-4 at 10, 2.1e-2 at 100,
       against 4e-7 to 1e-6 for the two-pass `tf.nn.moments` of one process). `_moments`
       here is two-pass across replicas: the global mean from all-reduced sums and counts,
       then the all-reduced sum of squared deviations from it, as `tf.nn.moments` computes
       in one process (the mean's gradient path stopped, as there: the deviations sum to
       zero over the global batch).

    Registered as `zoo>ZooBatchNormalization` (its config is Keras's plus `moving_variance`),
    so a model holding one saves to and loads from a `.keras` file with `safe_mode=True`.
    Masks (`mask=`) are refused by both: their counts are per sample, and no zoo model makes
    them."""

    def __init__(self, moving_variance: str = "biased", **kwargs) -> None:
        super().__init__(**kwargs)
        if moving_variance not in zl.VARIANCES:
            raise ValueError(f"moving_variance must be one of {', '.join(zl.VARIANCES)}; got "
                             f"{moving_variance!r}.")
        self.moving_variance_kind = moving_variance

    def get_config(self) -> dict:
        return {**super().get_config(), "moving_variance": self.moving_variance_kind}

    def call(self, inputs, training=None, mask=None):
        if mask is not None:
            raise ValueError(f"{self.name}: ZooBatchNormalization takes no mask.")
        if not (training and self.trainable) or self.renorm \
                or self.moving_variance_kind == "biased":
            return super().call(inputs, training=training)
        before = ops.copy(self.moving_variance)  # a value, not the variable Keras reassigns
        outputs = super().call(inputs, training=training)
        self.moving_variance.assign(_unbiased(before, ops.copy(self.moving_variance),
                                              self._count(inputs), self.momentum))
        return outputs

    def _moments(self, inputs, mask):
        if not self.synchronized:
            return super()._moments(inputs, mask)
        import tensorflow as tf

        ctx = tf.distribute.get_replica_context()
        if ctx is None:  # cross-replica context: nothing to synchronise
            return tf.nn.moments(inputs, self._reduction_axes)
        axes = self._reduction_axes
        count = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                               tf.cast(tf.size(inputs) // tf.shape(inputs)[self.axis],
                                       inputs.dtype))
        mean = tf.math.divide_no_nan(
            ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                           tf.reduce_sum(inputs, axis=axes, keepdims=True)), count)
        squares = tf.reduce_sum(tf.math.squared_difference(inputs, tf.stop_gradient(mean)),
                                axis=axes, keepdims=True)
        variance = tf.math.divide_no_nan(ctx.all_reduce(tf.distribute.ReduceOp.SUM, squares),
                                         count)
        return tf.squeeze(mean, axes), tf.squeeze(variance, axes)

    def _count(self, inputs):
        """Values per channel in the batch: a Python int when the shape is known here (eager
        calls), else a tensor; summed over the replicas when synchronized under a strategy."""
        axis = self.axis % len(inputs.shape)
        others = [d for i, d in enumerate(inputs.shape) if i != axis]
        count = math.prod(others) if None not in others \
            else ops.size(inputs) // inputs.shape[axis]
        if self.synchronized:
            import tensorflow as tf

            if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
                count = tf.distribute.get_replica_context().all_reduce(
                    tf.distribute.ReduceOp.SUM, tf.cast(count, tf.int64))
        return count


def _unbiased(before, after, count, momentum: float):
    """`corrected_moving_variance(before, after, count, momentum, "biased", "unbiased")` for a
    `count` that may be a tensor: c = count / (count - 1) in float64 (as Python computes it
    there), then after + (after - momentum * before) * (c - 1) in the variables' dtype."""
    if isinstance(count, int):  # known now: the function itself, with its ConfigError
        return zl.corrected_moving_variance(before, after, count, momentum, "biased",
                                            "unbiased")
    count = ops.cast(count, "float64")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.debugging.assert_greater_equal(
            count, tf.constant(2.0, tf.float64),
            message="a batch with one value per channel has no unbiased variance; use "
                    "batches of at least 2 samples with BatchNorm.")
    c = count / (count - 1.0)
    return after + (after - float(momentum) * before) * ops.cast(c - 1.0, after.dtype)


def _batch_norm(r: zl.Resolved, dtype: str, synchronized: bool = False) -> keras.layers.Layer:
    layer = r.layer
    args = dict(axis=-1, momentum=float(layer.momentum), epsilon=float(layer.epsilon),
                name=r.name, dtype=dtype, **_inits(r))
    if layer.moving_variance == "biased" and not synchronized:
        return keras.layers.BatchNormalization(**args)
    return ZooBatchNormalization(moving_variance=layer.moving_variance,
                                 synchronized=synchronized, **args)


def _layer_norm(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    return keras.layers.LayerNormalization(axis=-1, epsilon=float(r.layer.epsilon), name=r.name,
                                           dtype=dtype, **_inits(r))


def _dense_gradient(table):
    """`table` itself, whose gradient is made dense (TensorFlow backend).

    The gradient of a lookup (`ops.take` = `tf.gather`) is a `tf.IndexedSlices` holding one
    slice per looked-up id, duplicates included, and Keras 3's optimizers take it as it is:
    Adam's and RMSprop's `ops.square(gradient)` squares every slice and the duplicates are
    summed afterwards, so a row looked up k times gets the sum of its k squared partial
    gradients instead of the square of their sum (measured: an id looked up twice with
    partial gradient [1, 2] gives Adam a second moment of 0.001 * [2, 8] instead of
    0.001 * [4, 16]). The dense gradient, duplicates summed once
    (`tf.convert_to_tensor`, an unsorted segment sum), is the gradient of the equations and
    what torch, TF1 and the numpy reference train with. torch's own gradients are dense."""
    if keras.backend.backend() != "tensorflow":
        return table
    import tensorflow as tf

    @tf.custom_gradient
    def identity(t):
        return tf.identity(t), lambda dy: tf.convert_to_tensor(dy)

    # The variable is read out here: `tf.custom_gradient` refuses a function that reads a
    # variable itself unless its gradient function also returns the variables' gradients.
    return identity(tf.convert_to_tensor(table))


@keras.saving.register_keras_serializable(package="zoo")
class ZooEmbedding(keras.layers.Embedding):
    """`keras.layers.Embedding` with a dense gradient for its table (`_dense_gradient`: Keras
    3's Adam and RMSprop mistreat the sparse gradient of repeated ids). The lookup itself is
    Keras's: ids cast to int32, then `ops.take(embeddings, ids, axis=0)`; the zoo's ids are
    float arrays of whole numbers checked to lie in [0, vocab) (`zoo.specs.check_tokens`),
    so the cast is exact (Keras's own `call` would cast them the same way, truncating).
    Registered as `zoo>ZooEmbedding` (Keras's config unchanged), so a `.keras` file holding
    one loads with `safe_mode=True`."""

    def call(self, inputs):
        ids = ops.cast(inputs, "int32")
        table = _dense_gradient(self.embeddings.value)
        return ops.cast(ops.take(table, ids, axis=0), self.compute_dtype)


def _embedding(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    return ZooEmbedding(r.layer.vocab, r.layer.dim, name=r.name, dtype=dtype, **_inits(r))


def _lstm(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    inits = _inits(r)
    inits["bias_initializer"] = "zeros"
    return keras.layers.LSTM(r.layer.units, return_sequences=r.layer.return_sequences,
                             unit_forget_bias=True, use_cudnn=False, name=r.name, dtype=dtype,
                             **inits)


def _gru(r: zl.Resolved, dtype: str) -> keras.layers.Layer:
    return keras.layers.GRU(r.layer.units, return_sequences=r.layer.return_sequences,
                            reset_after=r.layer.reset_after, use_cudnn=False, name=r.name,
                            dtype=dtype, **_inits(r))


_TRANSLATIONS: dict[type, Callable[[zl.Resolved, str], keras.layers.Layer]] = {
    zl.Dense: _dense, zl.Conv2D: _conv2d, zl.MaxPool2D: _max_pool2d, zl.AvgPool2D: _avg_pool2d,
    zl.Flatten: _flatten, zl.Dropout: _dropout, zl.Activation: _activation,
    zl.BatchNorm: _batch_norm, zl.LayerNorm: _layer_norm, zl.Embedding: _embedding,
    zl.LSTM: _lstm, zl.GRU: _gru,
}


def keras_layer(r: zl.Resolved, dtype: str, *, synchronized: bool = False
                ) -> keras.layers.Layer:
    """The Keras layer of canonical layer `r`, named `r.name`, in `dtype`.

    synchronized: BatchNorm layers compute their batch statistics over the replicas of the
    current `tf.distribute` strategy (`ZooBatchNormalization(synchronized=True)`: Keras's
    synchronised layer with two-pass moments), for the data-parallel path; outside a strategy
    it computes what one process does."""
    translate = _TRANSLATIONS.get(type(r.layer))
    if translate is None:
        raise ConfigError(f"{r.name}: keras_models has no translation of "
                          f"{type(r.layer).__name__} layers; add one to keras_models/layers.py.")
    if isinstance(r.layer, zl.BatchNorm):
        return _batch_norm(r, dtype, synchronized)
    return translate(r, dtype)


def shared_dropout(h, mask, rate: float):
    """Inverted dropout with a given 0/1 mask, whatever the training flag: the expression of
    `zoo.reference`, h * (mask / (1 - rate)), so that Keras reproduces it bit for bit."""
    return h * (ops.cast(mask, h.dtype) / (1.0 - rate))
