"""Every zoo model TF1's layer API can express, as a TF1 script built it: placeholders, the
layer functions of `tf.compat.v1.layers` and the `rnn_cell`s (`tf1_layers.layers`), a loss
(`make_loss`), in the model's own `tf.Graph`, run by a `Session`.

The layers create and name their variables (`dense/kernel`, `rnn/lstm_cell/kernel`, ...);
`build` checks that the graph's variables are exactly the "tf1-layers" column of the model's
weight tables (`zoo.layers`), so the canonical weights cross this boundary through the table
(`zoo.layers.to_native` / `from_native`: LSTMCell's concatenated kernel and forget_bias
included) and nowhere else. Initial weights are assigned after the Session's variable
initializer has run, the way a TF1 script restores a checkpoint, so the graph itself is what
an untouched TF1 script builds (its own initializers included: `build(spec)` without `init`
trains from TF1's defaults).

The models that cannot be written this way are refused by `build` with the reason: `gru` and
`embedding_gru` (reset_after=True GRUs; TF1's `GRUCell` is the reset_after=False GRU).

Losses (`make_loss`): the other TF1 idiom, `tf.reduce_mean` of
`tf.nn.sparse_softmax_cross_entropy_with_logits` / `sigmoid_cross_entropy_with_logits` / the
squared error, not `tf.compat.v1.losses.*`: those cast logits, labels and weights to float32
whatever the graph's dtype (`losses_impl.compute_weighted_loss`), so a float64 graph trains on
a float32 loss (measured on cnn_bn, 96 digits in batches of 16, float64, momentum: per-step
losses 2.3e-7 from keras', tf1's and torch's; docs/porting.md, "`tf.compat.v1.losses`
compute in float32"). The multiclass hinge of CS231n and seed 001's quadratic cost are
written out as in `tf1_compat`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tf1_layers.layers import Context, check_expressible, translate
from zoo.errors import ConfigError
from zoo.layers import TF1_LAYERS, from_native, tensor_specs, to_native
from zoo.specs import ModelSpec, check_canonical

__all__ = ["FRAMEWORK", "LegacyModel", "build", "get_weights", "make_loss", "native_names",
           "outputs", "set_weights", "targets", "tf_dtype"]

tf1 = tf.compat.v1
#: this framework's name in the registry and its column in the weight tables
FRAMEWORK = TF1_LAYERS

_TF_DTYPES = {"float32": tf.float32, "float64": tf.float64}

#: (raw outputs, targets) -> the batch's mean data loss (a scalar)
LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


@dataclass
class LegacyModel:
    """A zoo model as a TF1 script's graph: its placeholders, tensors and variables (by their
    TF names, the tf1-layers column), and a Session opened on first use.

    Placeholders as `tf1_compat.model.GraphModel`'s: `x`, `y`, a keep-mask per Dropout layer
    (`masks`), `native_dropout` and `training` (both off unless fed: prediction never drops
    units and normalises with the moving statistics)."""

    spec: ModelSpec
    dtype: str
    graph: tf.Graph
    x: tf.Tensor
    y: tf.Tensor
    logits: tf.Tensor
    output: tf.Tensor
    loss: tf.Tensor
    #: TF name (without ":0") -> variable, every model variable (moving statistics included)
    variables: dict[str, tf.Variable]
    masks: list[tf.Tensor]
    native_dropout: tf.Tensor
    training: tf.Tensor
    pre_dropout: list[tf.Tensor]
    post_dropout: list[tf.Tensor]
    #: the graph's UPDATE_OPS collection (BatchNorm's moving-statistics updates)
    update_ops: list[tf.Operation | tf.Tensor]
    #: native values assigned when the Session opens (None: TF1's initializers stand)
    init_native: dict[str, np.ndarray] | None = None
    _assign: dict[str, tuple[tf.Tensor, tf.Operation]] = field(default_factory=dict)
    _session: tf1.Session | None = None

    @property
    def session(self) -> tf1.Session:
        if self._session is None:
            self.open_session()
        assert self._session is not None
        return self._session

    def open_session(self) -> tf1.Session:
        """Open the Session, run the variable initializer, then assign `init_native`. Call
        after every variable (optimizer slots too) exists."""
        if self._session is not None:
            raise RuntimeError("the session of this model is already open.")
        with self.graph.as_default():
            init = tf1.global_variables_initializer()
        self._session = tf1.Session(graph=self.graph)
        self._session.run(init)
        if self.init_native is not None:
            self.assign(self.init_native)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def assign(self, native: dict[str, np.ndarray]) -> None:
        """Assign native values (TF names, native layouts) to the model's variables."""
        feed, ops = {}, []
        for name, value in native.items():
            ph, op = self._assign[name]
            feed[ph] = np.asarray(value).astype(self.dtype)
            ops.append(op)
        self.session.run(ops, feed_dict=feed)

    def native_weights(self) -> dict[str, np.ndarray]:
        """Every variable's value by its TF name."""
        return {k: np.asarray(v) for k, v in self.session.run(self.variables).items()}

    def trainable_variables(self) -> dict[str, tf.Variable]:
        """The variables optimizers update (every one but the moving statistics)."""
        return {n: self.variables[n] for n in native_names(self.spec, trainable=True)}

    def penalised(self) -> list[tf.Variable]:
        """The variables the L2 penalty covers: those holding the kernels (LSTMCell's one
        kernel holds the input and the recurrent kernel: its squares are theirs)."""
        names = dict.fromkeys(n for t in tensor_specs(self.spec.resolved) if t.penalised
                              for n in t.native_names(FRAMEWORK))
        return [self.variables[n] for n in names]

    def get_weights(self) -> dict[str, np.ndarray]:
        return from_native(self.native_weights(), self.spec.resolved, FRAMEWORK)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        check_canonical(weights, self.spec)
        self.assign(to_native(weights, self.spec.resolved, FRAMEWORK))


def native_names(spec: ModelSpec, trainable: bool | None = None) -> list[str]:
    """The TF names of the model's variables in model order (each once: rows sharing a
    variable name it once), only the trained ones or only the state when `trainable` is
    given."""
    return list(dict.fromkeys(n for t in tensor_specs(spec.resolved, trainable)
                              for n in t.native_names(FRAMEWORK)))


def tf_dtype(dtype: str) -> tf.DType:
    if dtype not in _TF_DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    return _TF_DTYPES[dtype]


# ----------------------------------------------------------------------------- losses
def _cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                         logits=logits))


def _hinge(scores: tf.Tensor, labels: tf.Tensor, margin: float = 1.0) -> tf.Tensor:
    """The mean over the batch of sum_{j != y} max(0, s_j - s_y + 1) (CS231n's multiclass
    hinge; `tf.compat.v1.losses.hinge_loss` is the binary one)."""
    onehot = tf.one_hot(labels, tf.shape(scores)[1], dtype=scores.dtype)
    correct = tf.reduce_sum(scores * onehot, axis=1, keepdims=True)
    margins = tf.nn.relu(scores - correct + margin) * (1.0 - onehot)
    return tf.reduce_mean(tf.reduce_sum(margins, axis=1))


def _binary_cross_entropy(logits: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits))


def _mse(pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(pred - target))


def _quadratic(z: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Seed 001's cost: the mean over samples of 0.5 * sum_j (sigmoid(z_j) - onehot(y)_j)^2."""
    onehot = tf.one_hot(labels, tf.shape(z)[1], dtype=z.dtype)
    return tf.reduce_mean(0.5 * tf.reduce_sum(tf.square(tf.sigmoid(z) - onehot), axis=1))


_LOSSES: dict[str, LossFn] = {"cross_entropy": _cross_entropy, "hinge": _hinge,
                              "binary_cross_entropy": _binary_cross_entropy, "mse": _mse,
                              "quadratic": _quadratic}
_OUTPUTS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "softmax": tf.nn.softmax, "sigmoid": tf.sigmoid, "identity": tf.identity}


def make_loss(spec: ModelSpec) -> LossFn:
    """The TF1 ops of `spec`'s loss kind: (raw outputs, targets) -> the batch mean."""
    return _LOSSES[spec.loss]


def outputs(spec: ModelSpec, raw: tf.Tensor) -> tf.Tensor:
    """What `predict` returns: softmax probabilities, sigmoids, or the values."""
    return _OUTPUTS[spec.output](raw)


def targets(spec: ModelSpec, y: np.ndarray, dtype: str) -> np.ndarray:
    """int64 (N,) labels for classification, float (N, 1) binary and regression targets."""
    y = np.asarray(y)
    if spec.task == "classification":
        return y.reshape(-1).astype(np.int64)
    return y.reshape(-1, 1).astype(dtype)


# ----------------------------------------------------------------------------- building
def build(spec: ModelSpec, init: dict[str, np.ndarray] | None = None, dtype: str = "float32",
          *, seed: int | None = None) -> LegacyModel:
    """Build `spec` as a TF1 script would, in a fresh `tf.Graph`.

    `init` (canonical weights) is converted through the tf1-layers column and assigned when
    the Session opens; without it the layers' own TF1 initializers stand (Dense and Conv2D
    glorot-uniform kernels and zero biases as Keras; LSTMCell glorot-uniform over its whole
    concatenated kernel and a zero bias plus forget_bias=1.0 at run time; GRUCell's gates bias
    at one; BatchNorm ones and zeros). `seed` is the graph-level seed
    (`tf.compat.v1.set_random_seed`): TF1's initializers and native dropout."""
    check_expressible(spec.resolved)
    dt = tf_dtype(dtype)
    native = None
    if init is not None:
        check_canonical(init, spec)
        native = to_native(init, spec.resolved, FRAMEWORK)
    graph = tf.Graph()
    with graph.as_default():
        if seed is not None:
            tf1.set_random_seed(int(seed))
        x = tf1.placeholder(dt, (None, *spec.input_shape), name="x")
        if spec.task == "classification":
            y = tf1.placeholder(tf.int64, (None,), name="y")
        else:
            y = tf1.placeholder(dt, (None, 1), name="y")
        ctx = Context(dtype, tf1.placeholder_with_default(False, (), "native_dropout"),
                      tf1.placeholder_with_default(False, (), "training"))
        h = x
        for r in spec.resolved:
            h = translate(r, h, ctx)
        logits = tf.identity(h, name="logits")
        loss = tf.identity(make_loss(spec)(logits, y), name="loss")
        output = tf.identity(outputs(spec, logits), name="output")
        variables = {v.op.name: v for v in tf1.global_variables()}
        _check_names(spec, variables)
        assign = {}
        with tf1.name_scope("assign"):
            for name, var in variables.items():
                ph = tf1.placeholder(dt, var.shape, name=name.replace("/", "_"))
                assign[name] = (ph, var.assign(ph))
    return LegacyModel(spec=spec, dtype=dtype, graph=graph, x=x, y=y, logits=logits,
                       output=output, loss=loss,
                       variables={n: variables[n] for n in native_names(spec)},
                       masks=ctx.masks, native_dropout=ctx.native_dropout,
                       training=ctx.training, pre_dropout=ctx.pre_dropout,
                       post_dropout=ctx.post_dropout,
                       update_ops=graph.get_collection(tf1.GraphKeys.UPDATE_OPS),
                       init_native=native, _assign=assign)


def _check_names(spec: ModelSpec, variables: dict[str, tf.Variable]) -> None:
    """The variables TF1's layers created must be exactly the weight table's tf1-layers
    column, in name, shape, dtype and trainability (a mismatch is a bug of the column)."""
    want = {n: s for t in tensor_specs(spec.resolved)
            for n, s in t.native_shapes(FRAMEWORK).items()}
    got = {n: tuple(v.shape.as_list()) for n, v in variables.items()}
    if want != got:
        raise ConfigError(f"tf1-layers: the graph's variables {got} are not the weight "
                          f"table's tf1-layers column {want}; fix zoo.layers.")
    trained = set(native_names(spec, trainable=True))
    bad = [n for n, v in variables.items() if v.trainable != (n in trained)]
    if bad:
        raise ConfigError(f"tf1-layers: variables {bad} are trainable where the weight table "
                          "says state, or the reverse.")


def get_weights(model: LegacyModel) -> dict[str, np.ndarray]:
    """The variables' values as canonical weights (numpy copies, model order)."""
    return model.get_weights()


def set_weights(model: LegacyModel, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights (checked by `zoo.specs.check_canonical`)."""
    model.set_weights(weights)
