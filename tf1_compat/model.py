"""Every zoo model as a TF1 graph, built from its canonical layer list (`spec.resolved`) by the
per-kind translations of `tf1_compat.layers`: no per-model code.

Idiom: each model lives in its own `tf.Graph` (`with graph.as_default():`); eager execution is
never disabled for the process (that breaks Keras 3 in the same process). X (None, *input
shape: flat features, NHWC images, (T, F) sequences or (T,) token ids as whole-number
floats), y and the dropout controls are placeholders; weights are
`tf.compat.v1.get_variable`s in `variable_scope(<layer name>)`, so their TF names and layouts
are the weight table's tf1 native ones, which are the canonical ones. The Session opens on
first use and runs `tf.compat.v1.global_variables_initializer()`.

Models with BatchNorm have state: moving statistics that are variables (`trainable=False`)
like the others, so `variables`, `get_weights`, `set_weights` and every file carry them, but
optimizers get `trainable_variables()` only, and they change only through the assign ops in
`tf.compat.v1.GraphKeys.UPDATE_OPS` (`update_ops`), run by a train op that depends on them
with `training` fed True.

`make_loss(spec)` translates the architecture's loss kind, `outputs(spec, raw)` its output
kind (`zoo.models`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tf1_compat.layers import Context, translate
from zoo.errors import ConfigError
from zoo.layers import from_native, tensor_specs, to_native
from zoo.specs import ModelSpec, check_canonical

__all__ = ["GraphModel", "build", "get_weights", "make_loss", "outputs", "set_weights",
           "targets"]

tf1 = tf.compat.v1

_TF_DTYPES = {"float32": tf.float32, "float64": tf.float64}

#: (raw outputs, targets) -> the batch's mean data loss (a scalar)
LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


@dataclass
class GraphModel:
    """A zoo model as a TF1 graph: its placeholders, tensors and variables, and a Session.

    Placeholders: `x` (None, *spec.input_shape); `y` int64 (None,) labels for classification or
    (None, 1) floats for binary/regression targets; `masks[i]` the 0/1 keep-mask of the i-th
    Dropout layer (rate > 0) for the shared masks (h * mask / (1 - rate)); `native_dropout`
    (bool) turns on TF's own `tf.compat.v1.nn.dropout`; `training` (bool) selects training
    mode (BatchNorm's batch statistics and its moving-statistics update). Unfed, all are off:
    prediction never drops units and normalises with the moving statistics. `variables` maps
    TF names (the weight table's tf1 native names) to variables, state included;
    `trainable_variables()` is what optimizers may change.
    """

    spec: ModelSpec
    dtype: str
    graph: tf.Graph
    x: tf.Tensor
    y: tf.Tensor
    logits: tf.Tensor
    output: tf.Tensor
    loss: tf.Tensor
    variables: dict[str, tf.Variable]
    masks: list[tf.Tensor]
    native_dropout: tf.Tensor
    training: tf.Tensor
    #: per Dropout layer with a mask: its input and its output
    pre_dropout: list[tf.Tensor]
    post_dropout: list[tf.Tensor]
    #: the moving-statistics assign ops (the graph's UPDATE_OPS collection), [] without state
    update_ops: list[tf.Tensor | tf.Operation]
    #: state variable's TF name -> its value before this run's update / the value the update
    #: writes (with training=True): see `tf1_compat.layers.batch_norm`
    state_before: dict[str, tf.Tensor]
    state_after: dict[str, tf.Tensor]
    _assign: dict[str, tuple[tf.Tensor, tf.Operation]] = field(default_factory=dict)
    _session: tf1.Session | None = None

    @property
    def session(self) -> tf1.Session:
        """The model's Session; opened (and every variable initialised) on first use."""
        if self._session is None:
            self.open_session()
        assert self._session is not None
        return self._session

    def open_session(self) -> tf1.Session:
        """Open `Session(graph=self.graph)` and run `global_variables_initializer()`.

        Call it after every variable (optimizer slots included) has been created: the
        initializer covers exactly the variables that exist when it is built.
        """
        if self._session is not None:
            raise RuntimeError("the session of this model is already open.")
        with self.graph.as_default():
            init = tf1.global_variables_initializer()
        self._session = tf1.Session(graph=self.graph)
        self._session.run(init)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def trainable_variables(self) -> dict[str, tf.Variable]:
        """The variables optimizers update (every weight but the state), by TF name."""
        return {t.native_name("tf1"): self.variables[t.native_name("tf1")]
                for t in tensor_specs(self.spec.resolved, trainable=True)}

    def penalised(self) -> list[tf.Variable]:
        """The variables the L2 penalty covers (the weight table's kernels)."""
        return [self.variables[t.native_name("tf1")] for t in tensor_specs(self.spec.resolved)
                if t.penalised]

    def get_weights(self) -> dict[str, np.ndarray]:
        """Current weights, canonical names and layout, model order (via the weight table)."""
        values = self.session.run(self.variables)
        return from_native({k: np.asarray(v) for k, v in values.items()}, self.spec.resolved,
                           "tf1")

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load canonical weights (every tensor, exact shapes) into the variables."""
        check_canonical(weights, self.spec)
        feed, ops = {}, []
        for name, value in to_native(weights, self.spec.resolved, "tf1").items():
            ph, op = self._assign[name]
            feed[ph] = np.asarray(value).astype(self.dtype)
            ops.append(op)
        self.session.run(ops, feed_dict=feed)


def tf_dtype(dtype: str) -> tf.DType:
    if dtype not in _TF_DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    return _TF_DTYPES[dtype]


# ----------------------------------------------------------------------------- losses
def _cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy of int64 labels (N,) given logits (N, C): never from probabilities,
    which would need clipping and lose the gradient of confident mistakes."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                         logits=logits))


def _hinge(scores: tf.Tensor, labels: tf.Tensor, margin: float = 1.0) -> tf.Tensor:
    """Mean multiclass hinge loss (CS231n) of int64 labels (N,) given scores (N, C): the mean
    over the batch of sum_{j != y} max(0, s_j - s_y + 1). (Keras's CategoricalHinge is the
    Crammer-Singer loss, a different one.)"""
    onehot = tf.one_hot(labels, tf.shape(scores)[1], dtype=scores.dtype)
    correct = tf.reduce_sum(scores * onehot, axis=1, keepdims=True)
    # relu's gradient is 0 at exactly 0 (a margin of exactly zero is inactive), as in the
    # numpy reference; the j == y term (always 1) is masked out.
    margins = tf.nn.relu(scores - correct + margin) * (1.0 - onehot)
    return tf.reduce_mean(tf.reduce_sum(margins, axis=1))


def _binary_cross_entropy(logits: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean binary cross-entropy of 0/1 targets (N, 1) given logits (N, 1), from logits."""
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits))


def _mse(pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean squared error of (N, 1) predictions and targets (never `tf.nn.l2_loss`, which is
    sum / 2, and never (N,) targets, which would broadcast to N x N silently)."""
    return tf.reduce_mean(tf.square(pred - target))


def _quadratic(z: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Seed 001's cost: the mean over samples of 0.5 * sum_j (sigmoid(z_j) - onehot(y)_j)^2
    (summed over the outputs, unlike an mse that also averages over them)."""
    onehot = tf.one_hot(labels, tf.shape(z)[1], dtype=z.dtype)
    return tf.reduce_mean(0.5 * tf.reduce_sum(tf.square(tf.sigmoid(z) - onehot), axis=1))


_LOSSES: dict[str, LossFn] = {"cross_entropy": _cross_entropy, "hinge": _hinge,
                              "binary_cross_entropy": _binary_cross_entropy, "mse": _mse,
                              "quadratic": _quadratic}
_OUTPUTS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "softmax": tf.nn.softmax, "sigmoid": tf.sigmoid, "identity": tf.identity}


def make_loss(spec: ModelSpec) -> LossFn:
    """The TF1 ops of `spec`'s loss kind: (raw outputs, targets as `targets` makes them) ->
    the mean over the batch."""
    return _LOSSES[spec.loss]


def outputs(spec: ModelSpec, raw: tf.Tensor) -> tf.Tensor:
    """What `predict` returns from the raw outputs: softmax probabilities, sigmoid of every
    unit, or the values themselves."""
    return _OUTPUTS[spec.output](raw)


def targets(spec: ModelSpec, y: np.ndarray, dtype: str) -> np.ndarray:
    """y as the graph's `y` placeholder wants it: int64 (N,) labels for classification,
    float (N, 1) for binary and regression targets."""
    y = np.asarray(y)
    if spec.task == "classification":
        return y.reshape(-1).astype(np.int64)
    return y.reshape(-1, 1).astype(dtype)


# ----------------------------------------------------------------------------- building
def build(spec: ModelSpec, init: dict[str, np.ndarray] | None = None, dtype: str = "float32",
          *, seed: int | None = None) -> GraphModel:
    """Build `spec`'s layers in a fresh `tf.Graph`, with its loss and output.

    `init` (canonical, checked against the weight tables) becomes
    `get_variable(name, initializer=tf.constant(W))`. With `init=None` TF1's own default is
    used: `get_variable`'s glorot_uniform initializer, which TF1 applies to EVERY float
    variable, biases included (a bias of 64 units starts in U(+-sqrt(3/64)) = +-0.2165, not at
    zero as in Keras). The exceptions are the layers whose TF1 classes cannot be built
    under Keras 3 and are written out here: the normalisations start at ones and zeros as
    TF1's layers did, Embedding, LSTM and GRU with the weight table's (Keras's) initializers
    (U(-0.05, 0.05) embeddings, orthogonal recurrent kernels, the LSTM forget-gate bias at
    one). `seed` is the graph-level seed (`tf.compat.v1.set_random_seed`) that seeds the
    random initializers and native dropout. The Session opens on first use.
    """
    dt = tf_dtype(dtype)
    native = None
    if init is not None:
        check_canonical(init, spec)
        native = to_native(init, spec.resolved, "tf1")
    graph = tf.Graph()
    with graph.as_default():
        if seed is not None:
            tf1.set_random_seed(int(seed))
        x = tf1.placeholder(dt, (None, *spec.input_shape), name="x")
        if spec.task == "classification":
            y = tf1.placeholder(tf.int64, (None,), name="y")
        else:  # binary and regression targets are (N, 1) so nothing broadcasts to N x N
            y = tf1.placeholder(dt, (None, 1), name="y")
        ctx = Context(dtype, native, tf1.placeholder_with_default(False, (), "native_dropout"),
                      tf1.placeholder_with_default(False, (), "training"))
        h = x
        for r in spec.resolved:
            h = translate(r, h, ctx)
        logits = tf.identity(h, name="logits")
        loss = tf.identity(make_loss(spec)(logits, y), name="loss")
        output = tf.identity(outputs(spec, logits), name="output")
        assign = {}
        with tf1.name_scope("assign"):
            for name, var in ctx.variables.items():
                ph = tf1.placeholder(dt, var.shape, name=name.replace("/", "_"))
                assign[name] = (ph, var.assign(ph))
    return GraphModel(spec=spec, dtype=dtype, graph=graph, x=x, y=y, logits=logits, output=output,
                      loss=loss, variables=ctx.variables, masks=ctx.masks,
                      native_dropout=ctx.native_dropout, training=ctx.training,
                      pre_dropout=ctx.pre_dropout, post_dropout=ctx.post_dropout,
                      update_ops=graph.get_collection(tf1.GraphKeys.UPDATE_OPS),
                      state_before=ctx.state_before, state_after=ctx.state_after,
                      _assign=assign)


def get_weights(model: GraphModel) -> dict[str, np.ndarray]:
    """The variables' values as canonical weights (numpy copies, model order)."""
    return model.get_weights()


def set_weights(model: GraphModel, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights into the variables (checked by `zoo.specs.check_canonical`)."""
    model.set_weights(weights)
