"""The one TF1-style training loop (`tf.compat.v1` graph + Session + feed_dict) for every zoo
model, plus `predict`, `evaluate` and `step_details`.

The graphs come from `tf1_compat.model.build` (each model in its own `tf.Graph`; eager
execution is never disabled for the process). Training builds a `tf.compat.v1.train` optimizer
with `tf1_compat.optimizers.make_optimizer` and its `minimize` (as `compute_gradients` and
`apply_gradients`, an Embedding's sparse gradient made dense in between: `_dense`), runs
`tf.compat.v1.global_variables_initializer()` in a `tf.compat.v1.Session(graph=g)`, and feeds
one mini-batch per `session.run`. Sequence models take their (N, T, F) sequences or (N, T)
token ids in the same `x` placeholder of shape (None, *input shape).

BatchNorm, the TF1 way: `minimize(var_list=...)` gets the trainable variables only, the train
op is built under `tf.control_dependencies(tf.compat.v1.get_collection(UPDATE_OPS))` so every
step also runs the moving-statistics updates, and training feeds `training=True`;
`predict`, `evaluate` leave it False (the moving statistics).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tf1_compat.model import GraphModel, build, targets, tf_dtype
from tf1_compat.optimizers import after_init, make_optimizer
from zoo import specs
from zoo.checkpoint import start
from zoo.data import batch_order
from zoo.layers import from_native, tensor_specs
from zoo.specs import (
    History,
    ModelSpec,
    SnapshotRing,
    TrainSpec,
    check_inputs,
    dropout_masks,
    output_metrics,
    record_every,
    records,
)

__all__ = ["evaluate", "predict", "step_details", "train"]

#: The largest block of recorded weights fetched at once (`Ring`), in MB.
RING_FETCH_MB = 16

tf1 = tf.compat.v1


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
    `zoo.specs.dropout_masks` into the mask placeholders, "native" turns on
    `tf.compat.v1.nn.dropout` at each Dropout layer's rate (seeded by the graph seed
    `train_spec.seed`), "off" feeds neither. Training stops at the first non-finite loss
    (`History.stopped_at`) and returns the weights that loss was computed with (the last
    finite ones), not the updated ones.

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
    dt = tf_dtype(dtype)
    model = build(model_spec, init, dtype, seed=train_spec.seed)
    var_list = list(model.trainable_variables().values())  # never the moving statistics
    with model.graph.as_default():
        total = _with_l2(model, train_spec.l2, dt)
        optimizer = make_optimizer(train_spec.optimizer, dtype=dtype)
        # Every step first copies the weights it starts from into `backup` (the update waits
        # for the copy): TF1 applies the update in the same run that computes the loss, so
        # when the loss turns non-finite the weights it was computed with, the last finite
        # ones, are kept there (torch stops before the update; the zoo returns those weights).
        # The moving statistics are copied from the very read their update computes from
        # (`state_before`), which their assign cannot overtake.
        backup = {n: tf1.get_variable(f"backup/{n}", shape=v.shape, dtype=v.dtype.base_dtype,
                                      initializer=tf1.zeros_initializer(), trainable=False)
                  for n, v in model.variables.items()}
        keep = tf.group(*[backup[n].assign(model.state_before.get(n, v))
                          for n, v in model.variables.items()])
        # the TF1 idiom: the train op depends on the UPDATE_OPS collection, or the moving
        # statistics never change (tf1_compat.layers)
        with tf.control_dependencies([keep, *tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)]):
            # `minimize` split in two, to hand the optimizer dense gradients (`_dense`)
            grads = optimizer.compute_gradients(total, var_list=var_list)
            train_op = optimizer.apply_gradients([(_dense(g), v) for g, v in grads])
        # the weights after a recorded step's update, copied inside the step's own run (reads
        # ordered after the train op, so after the update and the UPDATE_OPS) into row
        # `record/row` of a ring of `record/` variables, one per variable (raveled); the
        # rings are fetched a block of rows at a time (`Ring`), not every step
        ring = Ring(model, model_spec, train_spec, len(X), every, dtype) if every else None
        if ring is not None:
            with tf.control_dependencies([train_op]):
                record = ring.copy_op()
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
        seconds: list[float] = []
        stopped: int | None = None
        if state is not None:
            losses, seconds = list(state.losses), list(state.epoch_seconds)
        for epoch in range(state.epoch if state is not None else 0, train_spec.epochs):
            t0 = time.perf_counter()
            batches = batch_order(len(Xd), train_spec.batch_size, train_spec.seed, epoch,
                                  shuffle=train_spec.shuffle)
            for step, idx in enumerate(batches):
                feed = {model.x: Xd[idx], model.y: yd[idx], model.training: True}
                if model.masks and train_spec.dropout_mode == "shared":
                    ms = dropout_masks(model_spec, len(idx), train_spec.seed, epoch, step,
                                       dtype=dtype)
                    feed.update(zip(model.masks, ms, strict=True))
                elif model.masks and train_spec.dropout_mode == "native":
                    feed[model.native_dropout] = True
                if records(every, len(losses)):
                    feed[ring.row] = ring.next_row(sess)
                    loss, _, _ = sess.run([total, train_op, record], feed_dict=feed)
                else:
                    loss, _ = sess.run([total, train_op], feed_dict=feed)
                losses.append(float(loss))
                if progress is not None:
                    progress(epoch, step, float(loss))
                if not np.isfinite(loss):
                    stopped = len(losses) - 1
                    break
            if ring is not None:
                ring.flush(sess)
            seconds.append(time.perf_counter() - t0)
            if stopped is not None:
                break
            if opt_state is not None:
                opt_state.save(ckpt, epoch + 1, sess, model.get_weights(), losses, seconds)
        if stopped is None:
            weights = model.get_weights()
        else:  # the weights before the non-finite step's update
            weights = from_native(sess.run(backup), model_spec.resolved, "tf1")
    finally:
        model.close()
    return History(framework="tf1", losses=np.asarray(losses), weights=weights,
                   epoch_seconds=seconds, step_weights=ring.store if every else None,
                   stopped_at=stopped, weights_every=every or 1)


class Ring:
    """The weights after recorded steps, copied inside each recorded step's `Session.run`
    (`copy_op`, under a control dependency on the train op) into row `row` (fed) of one
    `record/<variable>` ring of `slots` rows per variable, raveled; the rows filled are
    fetched a block at a time, when the ring is full and at each epoch's end (`flush`), and
    moved into `store`, the run's canonical `StepWeights`, through `zoo.specs.SnapshotRing`.

    A fetch per step (`Session.run` returning every weight) cost the MLP (52,650 weights)
    ~60 ms an epoch at batch 32; the in-run copy and a fetch per block cost a fraction. A
    block stays under RING_FETCH_MB: a fetched array is fresh memory, and the allocator
    reuses blocks of that size instead of mapping (and faulting in) new pages every time."""

    def __init__(self, model: GraphModel, model_spec: ModelSpec, train_spec: TrainSpec,
                 n: int, every: int, dtype: str) -> None:
        shapes = [tuple(v.shape) for v in model.variables.values()]
        row_bytes = sum(int(np.prod(s)) for s in shapes) * np.dtype(dtype).itemsize
        steps_per_epoch = math.ceil(n / train_spec.batch_size)
        slots = max(1, min(specs.SCRATCH_ROWS, -(-steps_per_epoch // every),
                           int(RING_FETCH_MB * 2**20 // max(row_bytes, 1))))
        self.ring = SnapshotRing(model_spec.resolved, "tf1", list(model.variables), shapes,
                                 every, slots, steps_per_epoch * train_spec.epochs // every,
                                 dtype)
        self.store, self.slots = self.ring.store, self.ring.slots
        self.variables = list(model.variables.values())
        self.recorded = self.taken = 0
        with model.graph.as_default(), tf1.variable_scope("record"):
            self.row = tf1.placeholder(tf.int32, [1], name="row")
            self.buffers = [tf1.get_variable(f"ring_{i}", shape=(self.slots, int(np.prod(s))),
                                             dtype=v.dtype.base_dtype, trainable=False,
                                             initializer=tf1.zeros_initializer())
                            for i, (s, v) in enumerate(zip(shapes, self.variables, strict=True))]

    def copy_op(self) -> tf.Operation:
        """Every variable's value into row `row` of its ring (build under the train op's
        control dependency, so the values are the updated ones)."""
        return tf.group(*[tf1.scatter_update(buf, self.row, tf.reshape(tf.identity(v), [1, -1]))
                          for buf, v in zip(self.buffers, self.variables, strict=True)])

    def next_row(self, sess: tf1.Session) -> list[int]:
        """The ring row of the next recorded step (the rows filled so far fetched first when
        the ring is full)."""
        if self.recorded - self.taken == self.slots:
            self.flush(sess)
        self.recorded += 1
        return [(self.recorded - 1) % self.slots]

    def flush(self, sess: tf1.Session) -> None:
        """Fetch the rows filled since the last flush into `store`."""
        if self.recorded > self.taken:
            values = sess.run(self.buffers)
            self.ring.take(self.taken, self.recorded, lambda: values)
            self.taken = self.recorded


def _dense(grad: tf.Tensor | tf.IndexedSlices) -> tf.Tensor:
    """A gradient as a dense tensor. An Embedding's gradient (`tf.nn.embedding_lookup`) is a
    `tf.IndexedSlices` of the looked-up rows; handed to the optimizer as it is, TF1's
    `RMSPropOptimizer` and `MomentumOptimizer` apply their sparse kernels, which update
    the slots of those rows only: a row that no id of the batch looks up keeps its mean
    square and its velocity instead of decaying them (and, with momentum, does not move),
    where the canonical (dense) update decays every row (`AdamOptimizer`'s sparse path
    decays every row's moments: the same as dense to 1e-14). Converting (rows of repeated
    ids summed) gives every optimizer the dense gradient, zeros for absent rows."""
    return tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices) else grad


def _with_l2(model: GraphModel, l2: float, dt: tf.DType) -> tf.Tensor:
    """The model's loss plus 0.5 * l2 * the sum of the squared penalised tensors of the weight
    tables (Dense and Conv2D kernels, the recurrent layers' kernel and recurrent_kernel;
    biases and embeddings are not penalised)."""
    if not l2:
        return model.loss
    penalty = tf.add_n([tf.reduce_sum(tf.square(k)) for k in model.penalised()])
    return model.loss + tf.constant(0.5 * l2, dt) * penalty


def step_details(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
                 y: np.ndarray, masks: list[np.ndarray] | None = None, l2: float = 0.0) -> dict:
    """One batch at `weights` in training mode, through this framework's own graph, loss and
    `tf.compat.v1.gradients`: {"logits", "loss" (l2 term included), "grads": canonical dict of
    the trainable tensors, "state": canonical dict of the moving statistics after this
    batch's update ({} without state)}.

    What the first-divergence diagnosis (`zoo.diagnose`) compares between frameworks. No
    native dropout; shared `masks`, when given, are fed. Nothing is assigned: "state" is
    fetched from the values the update ops would write (`GraphModel.state_after`)."""
    check_inputs(model_spec, X, y, what="tf1_compat")
    dtype = _weights_dtype(weights)
    model = build(model_spec, weights, dtype)
    trainable = model.trainable_variables()
    names = list(trainable)
    with model.graph.as_default():
        total = _with_l2(model, l2, tf_dtype(dtype))
        grad_ops = [_dense(g) for g in tf1.gradients(total, [trainable[n] for n in names])]
    feed = {model.x: np.asarray(X, dtype), model.y: targets(model_spec, y, dtype),
            model.training: True}
    if masks:  # one keep-mask per Dropout layer
        feed.update(zip(model.masks, [np.asarray(m, dtype) for m in masks], strict=True))
    try:
        logits, loss, g, after = model.session.run(
            [model.logits, total, grad_ops, model.state_after], feed_dict=feed)
    finally:
        model.close()
    # gradients and state have their variables' (tf1 native) names and layouts
    grads = _canonical(dict(zip(names, g, strict=True)), model_spec, trainable=True)
    state = _canonical(after, model_spec, trainable=False)
    return {"logits": np.asarray(logits), "loss": float(loss), "grads": grads, "state": state}


def _canonical(native: dict[str, np.ndarray], model_spec: ModelSpec, *, trainable: bool
               ) -> dict[str, np.ndarray]:
    """Part of the weight table (the trainable rows, or the state rows) from tf1 native names
    to canonical ones, in model order."""
    rows = tensor_specs(model_spec.resolved, trainable=trainable)
    return {t.name: t.layout("tf1").from_native(np.asarray(native[t.native_name("tf1")]),
                                                t.shape) for t in rows}


def predict(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """What the model's output kind gives (`tf1_compat.model.outputs`): class probabilities
    (N, C) for softmax outputs, sigmoid activations (N, C) for sigmoid ones (P(y=1), (N, 1),
    for logistic), values (N, 1) for linear; no dropout (no dropout placeholder is fed).
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
    return {"loss": float(loss), **output_metrics(model_spec.task, out, yd)}
