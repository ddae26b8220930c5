"""The TF1 training loop as scripts wrote it, for every model of `tf1_layers.model`: a
`tf.compat.v1.train` optimizer whose `minimize` (as `compute_gradients` + `apply_gradients`)
is built under `tf.control_dependencies(tf.compat.v1.get_collection(UPDATE_OPS))`, a
`Session`, one `session.run([loss, train_op], feed_dict)` per mini-batch with `training`
fed True; plus `predict`, `evaluate` and `step_details`.

As in `tf1_compat.train`: the batches are `zoo.data.batch_order`'s, the loss of a step is the
batch mean (plus 0.5 * l2 * the squared kernels) before its update, an Embedding's sparse
gradient is handed to the optimizer dense (TF1's sparse RMSprop and momentum kernels would
leave the absent rows' slots alone), and training stops at the first non-finite loss with the
weights that loss was computed with. Those are copied into `backup/` variables by a run of
their own before each step: the moving statistics are updated by the layers' own UPDATE_OPS in
the step's run, and a copy in the same run could read them before or after.

Recorded weights (`record_weights`) are fetched in the step's run by reads made with
`read_value()` under a control dependency on the train op. `tf.identity(variable)` would not
do: `dynamic_rnn` gives the cell's variables a caching device, and converting such a variable
returns the read made when it was created, which no control dependency orders (measured: the
recorded LSTM weights one Adam step behind, 0.005 at lr 0.005, while the final weights were
right). As in `tf1_compat.train`, a recorded step fetches them as one in-graph concatenation of
the raveled variables (`model.variables` order) when the model has at most CONCAT_BELOW
weights, one by one otherwise, and copies them into one flat row of a `zoo.specs.RowRecorder`,
whose scratch rows are converted to the canonical layout a block at a time (when full and at
each epoch's end) into the run's `zoo.specs.StepWeights`: no `from_native` per step.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tf1_layers.model import FRAMEWORK, LegacyModel, build, native_names, targets, tf_dtype
from tf1_layers.optimizers import after_init, make_optimizer
from zoo.checkpoint import start
from zoo.data import batch_order
from zoo.layers import from_native, tensor_specs
from zoo.specs import (
    History,
    ModelSpec,
    RowRecorder,
    TrainSpec,
    check_inputs,
    dropout_masks,
    output_metrics,
    record_every,
    records,
)

__all__ = ["evaluate", "predict", "step_details", "train"]

#: Up to this many weights, a recorded step fetches them as one in-graph concatenation; above
#: it, each variable (tf1_compat.train's rule and threshold: the fixed cost of a fetch against
#: the cost of the concatenation).
CONCAT_BELOW = 16384

tf1 = tf.compat.v1


def _weights_dtype(weights: dict[str, np.ndarray]) -> str:
    return "float64" if any(np.asarray(v).dtype == np.float64 for v in weights.values()) \
        else "float32"


def train(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
          init: dict[str, np.ndarray] | None = None, *, record_weights: bool | int = False,
          progress: Callable[[int, int, float], None] | None = None,
          checkpoint_dir: str | None = None, resume: bool = False,
          force: bool = False) -> History:
    """Train `model_spec` on (X, y), one `session.run` per batch (see the module docstring).

    Dropout: "shared" feeds `zoo.specs.dropout_masks`, "native" turns on
    `tf.compat.v1.layers.dropout` (seeded by the graph seed `train_spec.seed`), "off" neither.
    checkpoint_dir / resume / force: a checkpoint after every epoch (`zoo.checkpoint`,
    `tf1_layers.checkpoint`)."""
    check_inputs(model_spec, X, y, what="tf1_layers")
    every = record_every(record_weights)
    ckpt, state, init = start(checkpoint_dir, FRAMEWORK, model_spec, train_spec, X, y, init,
                              resume=resume, force=force)
    dtype = train_spec.dtype
    model = build(model_spec, init, dtype, seed=train_spec.seed)
    var_list = list(model.trainable_variables().values())
    with model.graph.as_default():
        total = _with_l2(model, train_spec.l2, tf_dtype(dtype))
        optimizer = make_optimizer(train_spec.optimizer, dtype=dtype)
        # the TF1 idiom: without this dependency the moving statistics never move
        with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
            grads = optimizer.compute_gradients(total, var_list=var_list)
            train_op = optimizer.apply_gradients([(_dense(g), v) for g, v in grads])
        backup = {n: tf1.get_variable(f"backup/{n}", shape=v.shape, dtype=v.dtype.base_dtype,
                                      initializer=tf1.zeros_initializer(), trainable=False)
                  for n, v in model.variables.items()}
        keep = tf.group(*[backup[n].assign(v.read_value()) for n, v in model.variables.items()])
        # the weights after the update, fetched in the step's own run when it is recorded:
        # fresh reads ordered after the train op (`read_value`: `dynamic_rnn` gives the cell's
        # variables a caching device, and converting such a variable returns the read made
        # when it was created, which no control dependency orders), copied into one flat row
        # (every variable raveled, in `model.variables` order; fetched concatenated or one by
        # one, see CONCAT_BELOW): a `RowRecorder` row
        concatenated = sum(int(np.prod(v.shape)) for v in model.variables.values()) <= CONCAT_BELOW
        with tf.control_dependencies([train_op]):
            after = [v.read_value() for v in model.variables.values()]
            if concatenated:
                after = [tf.concat([tf.reshape(v, [-1]) for v in after], 0)]
    opt_state = None
    if ckpt is not None:
        from tf1_layers.checkpoint import OptimizerState

        opt_state = OptimizerState(model.graph, model.variables)
    try:
        sess = model.open_session()  # after minimize: the initializer covers the slots
        after_init(sess, optimizer, var_list)
        if state is not None:
            opt_state.restore(sess, state)
        Xd = np.asarray(X, dtype=dtype)
        yd = targets(model_spec, y, dtype)
        losses: list[float] = []
        # scratch rows and the whole run's storage, both written before the first step
        recorder = RowRecorder(model_spec.resolved, FRAMEWORK, list(model.variables),
                               [tuple(v.shape) for v in model.variables.values()],
                               math.ceil(len(Xd) / train_spec.batch_size), train_spec.epochs,
                               every, dtype) if every else None
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
                sess.run(keep)
                if records(every, len(losses)):
                    loss, _, native = sess.run([total, train_op, after], feed_dict=feed)
                    recorder.put(native)
                else:
                    loss, _ = sess.run([total, train_op], feed_dict=feed)
                losses.append(float(loss))
                if progress is not None:
                    progress(epoch, step, float(loss))
                if not np.isfinite(loss):
                    stopped = len(losses) - 1
                    break
            if recorder is not None:
                recorder.flush()
            seconds.append(time.perf_counter() - t0)
            if stopped is not None:
                break
            if opt_state is not None:
                opt_state.save(ckpt, epoch + 1, sess, model.get_weights(), losses, seconds)
        if stopped is None:
            weights = model.get_weights()
        else:  # the weights before the non-finite step's update
            kept = sess.run(backup)
            weights = from_native({n: np.asarray(v) for n, v in kept.items()},
                                  model_spec.resolved, FRAMEWORK)
    finally:
        model.close()
    return History(framework=FRAMEWORK, losses=np.asarray(losses), weights=weights,
                   epoch_seconds=seconds, step_weights=recorder.store if every else None,
                   stopped_at=stopped, weights_every=every or 1)


def _dense(grad: tf.Tensor | tf.IndexedSlices) -> tf.Tensor:
    """A gradient as a dense tensor (an Embedding's `tf.IndexedSlices`: see the module
    docstring)."""
    return tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices) else grad


def _with_l2(model: LegacyModel, l2: float, dt: tf.DType) -> tf.Tensor:
    """The loss plus 0.5 * l2 * the sum of the squares of the variables holding kernels."""
    if not l2:
        return model.loss
    penalty = tf.add_n([tf.reduce_sum(tf.square(k)) for k in model.penalised()])
    return model.loss + tf.constant(0.5 * l2, dt) * penalty


def _gradients(native: dict[str, np.ndarray], model_spec: ModelSpec) -> dict[str, np.ndarray]:
    """Gradients of the native variables -> gradients of the canonical trained tensors.
    The table's layouts are linear except LSTMCell's forget_bias shift, which moves values
    and not their gradients: it is dropped here."""
    out = {}
    for t in tensor_specs(model_spec.resolved, trainable=True):
        layout = t.layout(FRAMEWORK)
        if getattr(layout, "shift", None) is not None:
            layout = dataclasses.replace(layout, shift=None)
        names = t.native_names(FRAMEWORK)
        parts = tuple(np.asarray(native[n]) for n in names)
        out[t.name] = layout.from_native(parts if len(parts) > 1 else parts[0], t.shape)
    return out


def step_details(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
                 y: np.ndarray, masks: list[np.ndarray] | None = None, l2: float = 0.0) -> dict:
    """One batch at `weights` in training mode through this graph, its loss and
    `tf.compat.v1.gradients`: {"logits", "loss" (l2 included), "grads" (canonical trained
    tensors), "state" (canonical moving statistics after the batch's update, {} without)}.
    The graph is this call's own: its UPDATE_OPS run with the gradients (training-mode
    normalisation uses the batch's statistics, so the gradients do not depend on them)."""
    check_inputs(model_spec, X, y, what="tf1_layers")
    dtype = _weights_dtype(weights)
    model = build(model_spec, weights, dtype)
    trainable = model.trainable_variables()
    names = list(trainable)
    with model.graph.as_default():
        total = _with_l2(model, l2, tf_dtype(dtype))
        grad_ops = [_dense(g) for g in tf1.gradients(total, [trainable[n] for n in names])]
    feed = {model.x: np.asarray(X, dtype), model.y: targets(model_spec, y, dtype),
            model.training: True}
    if masks:
        feed.update(zip(model.masks, [np.asarray(m, dtype) for m in masks], strict=True))
    state_names = native_names(model_spec, trainable=False)
    try:
        logits, loss, g, _ = model.session.run(
            [model.logits, total, grad_ops, model.update_ops], feed_dict=feed)
        after = model.session.run({n: model.variables[n] for n in state_names})
    finally:
        model.close()
    grads = _gradients(dict(zip(names, g, strict=True)), model_spec)
    state = {t.name: t.from_native_arrays(FRAMEWORK, after)
             for t in tensor_specs(model_spec.resolved, trainable=False)}
    return {"logits": np.asarray(logits), "loss": float(loss), "grads": grads, "state": state}


def predict(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Probabilities (N, C), sigmoids, or values (N, 1), in inference mode (no dropout,
    BatchNorm's moving statistics); float64 if any weight is float64, else float32."""
    check_inputs(model_spec, X, what="tf1_layers")
    dtype = _weights_dtype(weights)
    model = build(model_spec, weights, dtype)
    try:
        return model.session.run(model.output, feed_dict={model.x: np.asarray(X, dtype)})
    finally:
        model.close()


def evaluate(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
             y: np.ndarray) -> dict[str, float]:
    """The mean loss (without any l2 term) and the accuracy, or the MSE for regression."""
    check_inputs(model_spec, X, y, what="tf1_layers")
    dtype = _weights_dtype(weights)
    model = build(model_spec, weights, dtype)
    yd = targets(model_spec, y, dtype)
    try:
        loss, out = model.session.run([model.loss, model.output],
                                      feed_dict={model.x: np.asarray(X, dtype), model.y: yd})
    finally:
        model.close()
    return {"loss": float(loss), **output_metrics(model_spec.task, out, yd)}
