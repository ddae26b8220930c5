"""The one TF1-style training loop (`tf.compat.v1` graph + Session + feed_dict) for every zoo
model, plus `predict`, `evaluate` and the graph building blocks the model files share.

Idiom: each model lives in its own `tf.Graph` (`with graph.as_default():`); eager execution
is never disabled for the process (that breaks Keras 3 in the same process). X, y and the
dropout controls are placeholders; weights are `tf.compat.v1.get_variable`s in variable
scopes `dense_0`, `dense_1`, ... named `kernel` and `bias`, so their TF names
(`dense_0/kernel:0`) and layouts ((in, out) and (out,)) are the canonical ones. Training builds
a `tf.compat.v1.train` optimizer with `tf1_compat.optimizers.make_optimizer` and its
`minimize`, runs `tf.compat.v1.global_variables_initializer()` in a
`tf.compat.v1.Session(graph=g)`, and feeds one mini-batch per `session.run`.

(The shared graph helpers live here because the model files may hold only their model; a
model file imports `GraphModel` and `build_graph` from this module, and this module imports
the model files lazily, by name, so there is no import cycle.)
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tf1_compat.optimizers import after_init, make_optimizer
from zoo.checkpoint import start
from zoo.data import batch_order
from zoo.errors import ConfigError
from zoo.specs import (
    History,
    ModelSpec,
    TrainSpec,
    check_canonical,
    check_inputs,
    dropout_masks,
    layer_sizes,
    record_every,
    records,
)

__all__ = ["GraphModel", "build_graph", "evaluate", "predict", "targets", "train"]

tf1 = tf.compat.v1

_TF_DTYPES = {"float32": tf.float32, "float64": tf.float64}

#: Builds the per-batch data loss (a scalar, mean over the batch) from (logits, targets).
LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
#: Turns logits into what `predict` returns (softmax / sigmoid / identity).
OutputFn = Callable[[tf.Tensor], tf.Tensor]


@dataclass
class GraphModel:
    """A zoo model as a TF1 graph: its placeholders, tensors and variables, and a Session.

    Placeholders: `x` (None, F); `y` int64 (None,) labels for classification or (None, 1)
    floats for binary/regression targets; `masks[i]` the keep-mask (0/1) of hidden layer i and
    `shared_rate` the rate it is divided by (h * mask / (1 - rate)), both defaulting to "no
    dropout"; `native_rate` the rate of TF's own `tf.compat.v1.nn.dropout` (default 0.0 = off).
    Prediction feeds none of them, so it never applies dropout.
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
    shared_rate: tf.Tensor
    native_rate: tf.Tensor
    #: per hidden layer: the dense output before dropout and after dropout (before ReLU)
    pre_dropout: list[tf.Tensor]
    post_dropout: list[tf.Tensor]
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

    def get_weights(self) -> dict[str, np.ndarray]:
        """Current weights, canonical layout and names (TF1 already uses Keras's layout)."""
        values = self.session.run(self.variables)
        return {k: np.asarray(values[k]) for k in self.variables}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load canonical weights (every name, exact shapes) into the variables."""
        check_canonical(weights, {name: tuple(var.shape.as_list())
                                  for name, var in self.variables.items()})
        feed = {}
        ops = []
        for name in self.variables:
            ph, op = self._assign[name]
            feed[ph] = np.asarray(weights[name]).astype(self.dtype)
            ops.append(op)
        self.session.run(ops, feed_dict=feed)


def _tf_dtype(dtype: str) -> tf.DType:
    if dtype not in _TF_DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    return _TF_DTYPES[dtype]


def _check_init(spec: ModelSpec, init: dict[str, np.ndarray]) -> None:
    for i, (n_in, n_out) in enumerate(layer_sizes(spec)):
        for name, shape in ((f"dense_{i}/kernel", (n_in, n_out)), (f"dense_{i}/bias", (n_out,))):
            if name not in init:
                raise ConfigError(f"initial weights lack {name!r}; pass zoo.specs.init_weights(spec).")
            if np.shape(init[name]) != shape:
                raise ConfigError(f"{name}: expected shape {shape} (canonical (in, out) layout), "
                                  f"got {np.shape(init[name])}.")


def build_graph(spec: ModelSpec, init: dict[str, np.ndarray] | None, dtype: str,
                loss_fn: LossFn, output_fn: OutputFn, *, seed: int | None = None) -> GraphModel:
    """Build `spec`'s dense stack in a fresh `tf.Graph` with the model's loss and output.

    `init` (canonical layout) becomes `get_variable(name, initializer=tf.constant(W))`. With
    `init=None` TF1's own default is used: `get_variable`'s glorot_uniform initializer, which
    TF1 applies to EVERY float variable, biases included (a bias of 64 units starts in
    U(+-sqrt(3/64)) = +-0.2165, not at zero as in Keras). `seed` is the graph-level seed
    (`tf.compat.v1.set_random_seed`) that seeds that default initializer and native dropout.

    Hidden layers are dense -> dropout -> ReLU (dropout before ReLU is equivalent because the
    scaled masks are >= 0). The returned model has no Session yet; it opens on first use.
    """
    tf_dtype = _tf_dtype(dtype)
    if init is not None:
        _check_init(spec, init)
    graph = tf.Graph()
    with graph.as_default():
        if seed is not None:
            tf1.set_random_seed(int(seed))
        x = tf1.placeholder(tf_dtype, (None, spec.n_features), name="x")
        if spec.task == "classification":
            y = tf1.placeholder(tf.int64, (None,), name="y")
        else:  # binary and regression targets are (N, 1) so nothing broadcasts to N x N
            y = tf1.placeholder(tf_dtype, (None, 1), name="y")
        shared_rate = tf1.placeholder_with_default(tf.constant(0.0, tf_dtype), (), name="shared_rate")
        native_rate = tf1.placeholder_with_default(tf.constant(0.0, tf_dtype), (), name="native_rate")
        variables: dict[str, tf.Variable] = {}
        masks: list[tf.Tensor] = []
        pre: list[tf.Tensor] = []
        post: list[tf.Tensor] = []
        sizes = layer_sizes(spec)
        h = x
        for i, (n_in, n_out) in enumerate(sizes):
            with tf1.variable_scope(f"dense_{i}"):
                if init is None:
                    kernel = tf1.get_variable("kernel", shape=(n_in, n_out), dtype=tf_dtype)
                    bias = tf1.get_variable("bias", shape=(n_out,), dtype=tf_dtype)
                else:
                    kernel = tf1.get_variable(
                        "kernel", initializer=tf.constant(np.asarray(init[f"dense_{i}/kernel"], dtype)))
                    bias = tf1.get_variable(
                        "bias", initializer=tf.constant(np.asarray(init[f"dense_{i}/bias"], dtype)))
                z = tf.matmul(h, kernel) + bias
            variables[f"dense_{i}/kernel"] = kernel
            variables[f"dense_{i}/bias"] = bias
            if i == len(sizes) - 1:
                h = z
                break
            with tf1.name_scope(f"dropout_{i}"):
                pre.append(z)
                # Shared mode: the precomputed numpy keep-mask, scaled like the reference
                # (z * (mask / (1 - rate))); the defaults (ones, rate 0) make it the identity.
                mask = tf1.placeholder_with_default(tf.ones_like(z), (None, n_out), name="mask")
                masks.append(mask)
                z = z * (mask / (1.0 - shared_rate))
                # Native mode: TF's own dropout; rate 0.0 (the default) keeps every unit at
                # scale 1, so prediction is unaffected.
                z = tf1.nn.dropout(z, rate=native_rate)
                post.append(z)
            h = tf.nn.relu(z)
        logits = tf.identity(h, name="logits")
        loss = tf.identity(loss_fn(logits, y), name="loss")
        output = tf.identity(output_fn(logits), name="output")
        assign = {}
        with tf1.name_scope("assign"):
            for name, var in variables.items():
                ph = tf1.placeholder(tf_dtype, var.shape, name=name.replace("/", "_"))
                assign[name] = (ph, var.assign(ph))
    return GraphModel(spec=spec, dtype=dtype, graph=graph, x=x, y=y, logits=logits, output=output,
                      loss=loss, variables=variables, masks=masks, shared_rate=shared_rate,
                      native_rate=native_rate, pre_dropout=pre, post_dropout=post, _assign=assign)


def _model_module(spec: ModelSpec):
    return importlib.import_module(f"tf1_compat.{spec.name}")


def build(spec: ModelSpec, init: dict[str, np.ndarray] | None = None, dtype: str = "float32",
          *, seed: int | None = None) -> GraphModel:
    """Build any zoo model by its spec's name (dispatches to `tf1_compat.<name>.build`)."""
    return _model_module(spec).build(spec, init, dtype, seed=seed)


def targets(spec: ModelSpec, y: np.ndarray, dtype: str) -> np.ndarray:
    """y as the graph's `y` placeholder wants it: int64 (N,) labels for classification,
    float (N, 1) for binary and regression targets."""
    y = np.asarray(y)
    if spec.task == "classification":
        return y.reshape(-1).astype(np.int64)
    return y.reshape(-1, 1).astype(dtype)


def _weights_dtype(weights: dict[str, np.ndarray]) -> str:
    return "float64" if any(np.asarray(v).dtype == np.float64 for v in weights.values()) else "float32"


def train(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
          init: dict[str, np.ndarray] | None = None, *, record_weights: bool | int = False,
          progress: Callable[[int, int, float], None] | None = None,
          checkpoint_dir: str | None = None, resume: bool = False,
          force: bool = False) -> History:
    """Train `model_spec` on (X, y) with one `session.run([loss, train_op], feed_dict)` per batch.

    Batches come from `zoo.data.batch_order` (every framework sees the same ones). The loss
    reported per step is the batch mean (plus 0.5 * l2 * sum of squared kernels) computed in
    the same run as the update, i.e. before it. Dropout: "shared" feeds
    `zoo.specs.dropout_masks` into the mask placeholders, "native" feeds the model's rate to
    `tf.compat.v1.nn.dropout` (seeded by the graph seed `train_spec.seed`), "off" feeds
    neither. Training stops at the first non-finite loss (`History.stopped_at`) and returns
    the weights that loss was computed with (the last finite ones), not the updated ones.

    checkpoint_dir: save weights, optimizer slots and the History so far there after every
    epoch (`zoo.checkpoint`, `tf1_compat.checkpoint`; an existing checkpoint is overwritten
    only with `force`); `resume` continues from it. Native dropout is not resumed bit for bit
    (TF's op seeds advance per run and cannot be restored).
    """
    check_inputs(model_spec, X, y, what="tf1_compat")
    every = record_every(record_weights)
    ckpt, state, init = start(checkpoint_dir, "tf1", model_spec, train_spec, X, y, init,
                              resume=resume, force=force)
    dtype = train_spec.dtype
    tf_dtype = _tf_dtype(dtype)
    model = build(model_spec, init, dtype, seed=train_spec.seed)
    var_list = list(model.variables.values())
    with model.graph.as_default():
        total = _with_l2(model, train_spec.l2, tf_dtype)
        optimizer = make_optimizer(train_spec.optimizer, dtype=dtype)
        # Every step first copies the weights it starts from into `backup` (the update waits
        # for the copy): TF1 applies the update in the same run that computes the loss, so
        # when the loss turns non-finite the weights it was computed with, the last finite
        # ones, are kept there (torch stops before the update; the zoo returns those weights).
        backup = {n: tf1.get_variable(f"backup/{n}", shape=v.shape, dtype=v.dtype.base_dtype,
                                      initializer=tf1.zeros_initializer(), trainable=False)
                  for n, v in model.variables.items()}
        keep = tf.group(*[backup[n].assign(v) for n, v in model.variables.items()])
        with tf.control_dependencies([keep]):
            train_op = optimizer.minimize(total, var_list=var_list)
    opt_state = None
    if ckpt is not None:
        from tf1_compat.checkpoint import OptimizerState

        opt_state = OptimizerState(model.graph, model.variables)
    try:
        sess = model.open_session()  # after minimize: the initializer must cover the slots too
        after_init(sess, optimizer, var_list)
        if state is not None:
            opt_state.restore(sess, state)
        Xd = np.asarray(X, dtype=dtype)
        yd = targets(model_spec, y, dtype)
        losses: list[float] = []
        snaps: list[dict[str, np.ndarray]] = []
        seconds: list[float] = []
        stopped: int | None = None
        if state is not None:
            losses, seconds = list(state.losses), list(state.epoch_seconds)
        for epoch in range(state.epoch if state is not None else 0, train_spec.epochs):
            t0 = time.perf_counter()
            batches = batch_order(len(Xd), train_spec.batch_size, train_spec.seed, epoch,
                                  shuffle=train_spec.shuffle)
            for step, idx in enumerate(batches):
                feed = {model.x: Xd[idx], model.y: yd[idx]}
                if model.masks and train_spec.dropout_mode == "shared":
                    ms = dropout_masks(model_spec, len(idx), train_spec.seed, epoch, step, dtype=dtype)
                    _feed_masks(model, feed, ms)
                elif model.masks and train_spec.dropout_mode == "native":
                    feed[model.native_rate] = model_spec.dropout
                loss, _ = sess.run([total, train_op], feed_dict=feed)
                losses.append(float(loss))
                if records(every, len(losses) - 1):
                    snaps.append(model.get_weights())
                if progress is not None:
                    progress(epoch, step, float(loss))
                if not np.isfinite(loss):
                    stopped = len(losses) - 1
                    break
            seconds.append(time.perf_counter() - t0)
            if stopped is not None:
                break
            if opt_state is not None:
                opt_state.save(ckpt, epoch + 1, sess, model.get_weights(), losses, seconds)
        if stopped is None:
            weights = model.get_weights()
        else:  # the weights before the non-finite step's update
            weights = {n: np.asarray(v) for n, v in sess.run(backup).items()}
    finally:
        model.close()
    return History(framework="tf1", losses=np.asarray(losses), weights=weights,
                   epoch_seconds=seconds, step_weights=snaps if every else None,
                   stopped_at=stopped, weights_every=every or 1)


def _with_l2(model: GraphModel, l2: float, tf_dtype: tf.DType) -> tf.Tensor:
    """The model's loss plus 0.5 * l2 * sum of squared kernels (biases are not penalised)."""
    if not l2:
        return model.loss
    kernels = [v for k, v in model.variables.items() if k.endswith("/kernel")]
    penalty = tf.add_n([tf.reduce_sum(tf.square(k)) for k in kernels])
    return model.loss + tf.constant(0.5 * l2, tf_dtype) * penalty


def _feed_masks(model: GraphModel, feed: dict, masks: list[np.ndarray]) -> None:
    """Feed the shared keep-masks and the rate they are divided by."""
    feed.update(zip(model.masks, masks, strict=True))
    feed[model.shared_rate] = model.spec.dropout


def step_details(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
                 y: np.ndarray, masks: list[np.ndarray] | None = None, l2: float = 0.0) -> dict:
    """One batch at `weights`, through this framework's own graph, loss and
    `tf.compat.v1.gradients`: {"logits", "loss" (l2 term included), "grads": canonical dict}.

    What the first-divergence diagnosis (`zoo.diagnose`) compares between frameworks. No
    native dropout; shared `masks`, when given, are fed."""
    check_inputs(model_spec, X, y, what="tf1_compat")
    dtype = _weights_dtype(weights)
    model = build(model_spec, weights, dtype)
    names = list(model.variables)
    with model.graph.as_default():
        total = _with_l2(model, l2, _tf_dtype(dtype))
        grads = tf1.gradients(total, [model.variables[n] for n in names])
    feed = {model.x: np.asarray(X, dtype), model.y: targets(model_spec, y, dtype)}
    if masks:
        _feed_masks(model, feed, [np.asarray(m, dtype) for m in masks])
    try:
        logits, loss, g = model.session.run([model.logits, total, grads], feed_dict=feed)
    finally:
        model.close()
    return {"logits": np.asarray(logits), "loss": float(loss),
            "grads": {n: np.asarray(v) for n, v in zip(names, g, strict=True)}}


def predict(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Class probabilities (N, C) for softmax/svm/mlp, sigmoid probabilities (N, 1) for
    logistic, values (N, 1) for linear; no dropout (no dropout placeholder is fed).
    Computed in float64 if any weight is float64, else float32."""
    check_inputs(model_spec, X, what="tf1_compat")
    dtype = _weights_dtype(weights)
    model = build(model_spec, weights, dtype)
    try:
        return model.session.run(model.output, feed_dict={model.x: np.asarray(X, dtype)})
    finally:
        model.close()


def evaluate(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
             y: np.ndarray) -> dict[str, float]:
    """The model's mean loss (without any l2 term) and accuracy, or MSE for regression."""
    check_inputs(model_spec, X, y, what="tf1_compat")
    dtype = _weights_dtype(weights)
    model = build(model_spec, weights, dtype)
    yd = targets(model_spec, y, dtype)
    try:
        loss, out = model.session.run([model.loss, model.output],
                                      feed_dict={model.x: np.asarray(X, dtype), model.y: yd})
    finally:
        model.close()
    if model_spec.task == "regression":
        return {"loss": float(loss), "mse": float(np.mean((out - yd) ** 2))}
    if model_spec.task == "binary":
        pred = (out.reshape(-1) >= 0.5).astype(np.int64)
        return {"loss": float(loss), "accuracy": float(np.mean(pred == yd.reshape(-1)))}
    return {"loss": float(loss), "accuracy": float(np.mean(np.argmax(out, axis=1) == yd))}
