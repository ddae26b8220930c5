"""The one Keras 2 (`tf_keras`) training loop of the zoo (every model), plus `predict`,
`evaluate` and `step_details`.

Idiom: the `tf.keras.Sequential` of `keras2_models.model.build`, `compile(loss=...,
optimizer=...)` with the optimizer of `keras2_models.optimizers.make_optimizer`, `fit` on a
`tf.data.Dataset` with callbacks, `predict`, `evaluate`: Keras 2's own `train_step` computes
every gradient and update (there is no hand-written loop).

What makes it agree with Keras 3, TF1, torch and the float64 reference step by step (the same
recipe as keras_models.train, in Keras 2's API):
- batches: exactly the index arrays of `zoo.data.batch_order(...)`, epoch after epoch, as a
  `tf.data.Dataset` (`batches`) whose iterator `fit(..., steps_per_epoch=...)` reads from start
  to end (`fit`'s own `shuffle` is off and would not apply to a dataset anyway). The partial
  last batch is kept; its loss is the mean over its own size.
- dropout "shared": the dataset also yields that step's masks of `zoo.specs.dropout_masks`
  (made in numpy for batch k of the run: a pure function of k) and `fit` trains
  `keras2_models.model.masked_model`, whose `SharedDropout` layers apply them as
  h * (mask / (1 - rate)); "native": Keras 2's own Dropout draws its masks; "off": no Dropout.
- losses from logits, mean reduction, int labels (N,) for cross-entropy, hinge and the
  quadratic cost, float (N, 1) targets for binary cross-entropy and MSE; the L2 penalty
  0.5 * l2 * sum(kernel**2) over the weight table's penalised tensors added to the compiled
  loss.
- per-step losses: `logs["loss"]` in Keras 2's callbacks is the running mean of the epoch, not
  the batch loss; the compiled loss is wrapped in `RecordedLoss`, which writes the very scalar
  that is differentiated into slot `optimizer.iterations` of a preallocated variable.
- BatchNorm: `fit` calls the model with training=True (batch statistics, moving statistics
  updated); `predict` and `evaluate` use the moving statistics.
- float64: `tf.keras.backend.floatx()` is float64 while the model is built, compiled, fitted,
  used to predict and evaluate (Keras 2's losses, metrics and the optimizer's learning rate
  take floatx), and restored afterwards; every layer also gets its dtype explicitly.
- recorded weights (`record_weights`): copied inside the compiled training step, after Keras 2
  applied the update (`StepCopies`: `fit`'s model gets its `train_step` wrapped), into a few
  rows of in-graph buffers that are moved into the run's canonical `zoo.specs.StepWeights`
  through `zoo.layers.FlatNative` a block at a time (when full and at each epoch's end): no
  round trip to numpy nor layout conversion per step.
- `jit_compile=False` is passed to `compile` explicitly: Keras 2's `compile` leaves XLA off
  (None), its optimizers ask for it but turn it off without a GPU, and Keras 3's "auto" turns
  it on where a GPU exists; off, every machine runs the same kernels' path (on a CPU, XLA
  moved the digits MLP's float32 weights by 7e-8 in 30 Adam steps: rounding, not a
  different computation).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import tensorflow as tf

from keras2_models.layers import SharedDropout
from keras2_models.model import (
    build,
    canonical,
    canonical_part,
    get_weights,
    l2_penalty,
    make_loss,
    masked_dropouts,
    masked_model,
    outputs,
    penalised_variables,
    state_variables,
    trainable_variables,
    weight_variables,
)
from zoo import specs
from zoo.checkpoint import start
from zoo.data import batch_order
from zoo.layers import has_state
from zoo.specs import (
    History,
    ModelSpec,
    SnapshotRing,
    TrainSpec,
    check_inputs,
    dropout_masks,
    record_every,
)

__all__ = ["RecordedLoss", "batches", "dropout_plan", "evaluate", "floatx", "predict",
           "step_details", "train"]

FRAMEWORK = "keras2"
#: Batch size of `predict` and `evaluate` (any size gives the same mean; this bounds memory).
EVAL_BATCH = 8192


@contextmanager
def floatx(dtype: str) -> Iterator[None]:
    """Run a block with `tf.keras.backend.floatx()` set to `dtype`, restoring it afterwards."""
    old = tf.keras.backend.floatx()
    tf.keras.backend.set_floatx(dtype)
    try:
        yield
    finally:
        tf.keras.backend.set_floatx(old)


def _check(model_spec: ModelSpec, X: np.ndarray, y: np.ndarray | None = None) -> None:
    check_inputs(model_spec, X, y, what="keras2_models")


def dropout_plan(model_spec: ModelSpec, train_spec: TrainSpec) -> tuple[ModelSpec, bool]:
    """(the spec to build, whether batches carry the shared masks) for a run's dropout mode:
    "off" builds the model without dropout, "shared" feeds the masks of
    `zoo.specs.dropout_masks` when the model has a Dropout layer, "native" neither."""
    built = model_spec
    if train_spec.dropout_mode == "off" and model_spec.dropout:
        built = dataclasses.replace(model_spec, dropout=0.0)
    return built, train_spec.dropout_mode == "shared" and bool(masked_dropouts(model_spec))


def _targets(model_spec: ModelSpec, y: np.ndarray, dtype: str) -> np.ndarray:
    """int64 labels (N,) for cross-entropy, hinge and the quadratic cost; float (N, 1) in the
    model's dtype for binary cross-entropy and MSE."""
    if model_spec.task == "classification":
        return np.asarray(y).reshape(-1).astype(np.int64)
    return np.asarray(y, dtype=np.dtype(dtype)).reshape(-1, 1)


def batches(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray, *,
            masks: bool, start_epoch: int = 0) -> tf.data.Dataset:
    """The shared batches of epochs `start_epoch`..`epochs - 1`, in order, as one
    `tf.data.Dataset` of `(X[idx], y[idx])`, or `((X[idx], mask_0, ...), y[idx])` with
    `masks`, for `fit(..., steps_per_epoch=...)`.

    Each epoch's `batch_order` arrays are consecutive chunks of one permutation, so the epoch
    is that permutation batched (the partial last batch kept) and the gathers run in
    TensorFlow. The masks of batch k of the run come from `zoo.specs.dropout_masks` in numpy
    (`tf.numpy_function`), a pure function of k: prefetching never shifts them. Keras 2 keeps
    one iterator across epochs when the dataset's length is not `steps_per_epoch` (here: it
    is unknown), and recreates it each epoch otherwise, which only happens for one epoch."""
    n, bs = len(X), train_spec.batch_size
    steps = math.ceil(n / bs)
    orders = [np.concatenate(batch_order(n, bs, train_spec.seed, e, shuffle=train_spec.shuffle))
              for e in range(start_epoch, train_spec.epochs)]
    orders_t = tf.constant(np.stack(orders) if orders else np.zeros((0, n), np.int64))
    Xt, yt = tf.constant(X), tf.constant(y)
    data = tf.data.Dataset.from_tensor_slices(orders_t).flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices(order).batch(bs))
    data = data.map(lambda idx: (tf.gather(Xt, idx), tf.gather(yt, idx)))
    if not masks:
        return data.prefetch(2)
    drops = masked_dropouts(model_spec)
    dtype = np.dtype(train_spec.dtype)

    def masks_of(k):
        epoch, step = divmod(int(k), steps)
        size = min(bs, n - step * bs)  # batch_order's chunks: the last one partial
        return tuple(dropout_masks(model_spec, size, train_spec.seed, start_epoch + epoch, step,
                                   train_spec.dtype))

    def mask_tensors(k):
        out = tf.numpy_function(masks_of, [k], [tf.as_dtype(dtype)] * len(drops))
        return tuple(tf.ensure_shape(m, (None, *r.input_shape))
                     for m, r in zip(out, drops, strict=True))

    items = steps * (train_spec.epochs - start_epoch)
    mask_data = tf.data.Dataset.range(items).map(mask_tensors)
    return tf.data.Dataset.zip((data, mask_data)).map(
        lambda xy, ms: ((xy[0], *ms), xy[1])).prefetch(2)


class RecordedLoss(tf.keras.losses.Loss):
    """The compiled training loss: `loss(y_true, y_pred)` (mean over the batch) plus
    0.5 * l2 * sum of squared kernels, recorded exactly for every step.

    The value is written into `self.batch_losses[optimizer.iterations]` inside the training
    step, before the update, and it is the tensor Keras 2 differentiates.

    `guard` ({name: weight variable}): while every loss so far is finite, each step copies the
    weights it starts from into `self.backup` (Keras applies the update even when the loss is
    non-finite); from the first non-finite loss on, the copy is frozen, so it holds the last
    finite weights. `state` (the BatchNorm moving statistics) changes in the forward pass,
    before the loss: it is copied when this step's loss is finite, starting from the initial
    state, so at the first non-finite loss the copy holds the state that step started from."""

    def __init__(self, loss: tf.keras.losses.Loss, kernels: list, l2: float, n_steps: int,
                 step: tf.Variable, dtype: str, guard: dict | None = None,
                 state: dict | None = None) -> None:
        super().__init__(name=loss.name)
        self.loss, self.kernels, self.l2, self.step = loss, list(kernels), float(l2), step
        self.batch_losses = tf.Variable(np.zeros(n_steps, dtype=dtype), trainable=False,
                                        name="batch_losses")
        self.state = dict(state or {})
        self.guard = {n: v for n, v in (guard or {}).items() if n not in self.state}
        self.backup = {n: tf.Variable(np.zeros(v.shape, dtype=dtype), trainable=False,
                                      name="backup") for n, v in self.guard.items()}
        self.backup.update({n: tf.Variable(np.array(v.numpy(), dtype=dtype), trainable=False,
                                           name="backup") for n, v in self.state.items()})
        self.all_finite = tf.Variable(True, trainable=False, name="all_finite")

    def __call__(self, y_true, y_pred, sample_weight=None):
        loss = self.loss(y_true, y_pred, sample_weight)
        if self.l2:
            loss = loss + l2_penalty(self.kernels, self.l2)
        step = tf.cast(self.step, tf.int32)
        self.batch_losses.scatter_nd_update(tf.reshape(step, (1, 1)),
                                            tf.reshape(tf.cast(loss, self.batch_losses.dtype),
                                                       (1,)))
        if self.guard or self.state:
            keep = tf.convert_to_tensor(self.all_finite)
            for name, var in self.guard.items():
                self.backup[name].assign(tf.where(keep, var, self.backup[name]))
            still = tf.logical_and(keep, tf.reduce_all(tf.math.is_finite(loss)))
            for name, var in self.state.items():
                self.backup[name].assign(tf.where(still, var, self.backup[name]))
            self.all_finite.assign(still)
        return loss


class StepCopies:
    """The weights after every `every`-th step, copied inside the compiled training step (the
    `train_step` of the model `fit` trains, wrapped by `record_in`, calls `record` after Keras 2
    applied the update), so a recorded step costs in-graph copies instead of a round trip to
    numpy and a layout conversion.

    Every variable, raveled, goes into one row of its own buffer of `slots` rows plus one
    scratch row that the steps not recorded write to (a row scatter,
    `tf.Variable.scatter_update`): recorded ordinal r (the weights after global step
    (r + 1) * every - 1) goes to row r % slots. `take(first, last)` moves ordinals
    first..last-1 into `store`, the run's canonical `StepWeights` (allocated before the first
    step, `capacity` rows), through `zoo.layers.FlatNative`; `_Progress` calls it when the
    buffers are full and at each epoch's end."""

    def __init__(self, model: tf.keras.Model, variables: dict, every: int, slots: int, step,
                 dtype: str, capacity: int) -> None:
        self.variables, self.every, self.step = variables, every, step
        self.ring = SnapshotRing(model.model_spec.resolved, FRAMEWORK, list(variables),
                                 [tuple(v.shape) for v in variables.values()], every, slots,
                                 capacity, dtype)
        self.slots, self.store = self.ring.slots, self.ring.store
        self.buffers = [tf.Variable(np.zeros((self.slots + 1, int(np.prod(v.shape))), dtype),
                                    trainable=False, name="snapshots")
                        for v in variables.values()]

    def record(self) -> None:
        """In the training step, after the update: this step's row of every buffer."""
        done = tf.cast(self.step, tf.int32)           # steps done, this one included
        if self.every == 1:
            row = tf.math.floormod(done - 1, self.slots)
        else:
            row = tf.where(tf.equal(tf.math.floormod(done, self.every), 0),
                           tf.math.floormod(done // self.every - 1, self.slots), self.slots)
        rows = tf.reshape(row, (1,))
        for buf, var in zip(self.buffers, self.variables.values(), strict=True):
            buf.scatter_update(tf.IndexedSlices(tf.reshape(var, (1, -1)), rows))

    def record_in(self, trainer: tf.keras.Model) -> None:
        """Make `trainer.fit` record: its `train_step` followed by `record` (set on the instance
        and untracked, before `fit` builds its training function)."""
        step = trainer.train_step

        def train_step(data):
            out = step(data)
            self.record()   # reads ordered after the update (tf.function's control edges)
            return out

        object.__setattr__(trainer, "train_step", train_step)

    def take(self, first: int, last: int) -> None:
        # a view of each value read, used right away
        self.ring.take(first, last, lambda: [np.asarray(b.read_value()) for b in self.buffers])


class _Progress(tf.keras.callbacks.Callback):
    """Epoch wall times, moving the recorded weights into their storage (`StepCopies.take`,
    when its buffers are full and at each epoch's end), `progress(epoch, step, loss)` calls and
    the stop at the first non-finite loss."""

    def __init__(self, recorder: RecordedLoss, snapshots: StepCopies | None,
                 progress: Callable[[int, int, float], None] | None) -> None:
        super().__init__()
        self.recorder, self.snapshots_of, self.progress = recorder, snapshots, progress
        self.epoch = 0
        self.global_step = 0
        self.epoch_seconds: list[float] = []
        self.snapshots = snapshots.store if snapshots is not None else None
        self._start = 0.0
        self._read = 0      # snapshot ordinals moved into the storage so far

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.epoch = epoch
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._start)
        self._take()

    def _take(self, when_full: bool = False) -> None:
        if self.snapshots_of is not None:
            upto = self.global_step // self.snapshots_of.every
            if not when_full or upto - self._read >= self.snapshots_of.slots:
                self.snapshots_of.take(self._read, upto)
                self._read = upto

    def on_train_batch_end(self, batch, logs=None) -> None:
        k = self.global_step
        self.global_step += 1
        # logs["loss"] is the running mean of the epoch: it turns non-finite exactly at the
        # first non-finite batch loss, which is all it is used for here.
        if logs is not None and "loss" in logs and not np.isfinite(float(logs["loss"])):
            self.model.stop_training = True
        self._take(when_full=True)
        if self.progress is not None:
            self.progress(self.epoch, batch, float(self.recorder.batch_losses[k].numpy()))

    def on_train_end(self, logs=None) -> None:
        if len(self.epoch_seconds) < self.epoch + 1 and self._start:
            self.epoch_seconds.append(time.perf_counter() - self._start)  # stopped mid-epoch
        self._take()


def train(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
          init: dict[str, np.ndarray] | None = None, *, record_weights: bool | int = False,
          progress: Callable[[int, int, float], None] | None = None,
          checkpoint_dir: str | None = None, resume: bool = False,
          force: bool = False) -> History:
    """Train `model_spec` on (X, y) with Keras 2's `compile` + `fit` as `train_spec` says.

    X (N, *model_spec.input_shape) float; y int labels (N,) (classification, binary) or float
    (N, 1) values (regression). init: canonical initial weights (default: the layers' own
    initialisers). `History.losses[k]` is step k's mini-batch loss before its update, l2 term
    included. Training stops at the first non-finite loss (`History.stopped_at`) and returns
    the weights that step started from (the copy `RecordedLoss` kept). record_weights: True
    or a stride k records the weights after every (k-th) step into `History.step_weights`, a
    `StepWeights` (copied inside the training step, see `StepCopies`).

    checkpoint_dir: save weights, optimizer variables and the History so far there after
    every epoch (`zoo.checkpoint`, `keras2_models.checkpoint`); `resume` continues from it with
    `fit(initial_epoch=...)`. Native dropout is not resumed bit for bit."""
    from keras2_models.optimizers import make_optimizer

    _check(model_spec, X, y)
    every = record_every(record_weights)
    ckpt, state, init = start(checkpoint_dir, FRAMEWORK, model_spec, train_spec, X, y, init,
                              resume=resume, force=force)
    start_epoch = state.epoch if state is not None else 0
    dtype = train_spec.dtype
    built_spec, use_masks = dropout_plan(model_spec, train_spec)
    Xd, yd = np.asarray(X, dtype=np.dtype(dtype)), _targets(model_spec, y, dtype)
    steps_per_epoch = math.ceil(len(Xd) / train_spec.batch_size)
    n_steps = steps_per_epoch * train_spec.epochs
    n_items = steps_per_epoch * (train_spec.epochs - start_epoch)

    with floatx(dtype):
        data = batches(model_spec, train_spec, Xd, yd, masks=use_masks, start_epoch=start_epoch)
        model = build(built_spec, init, dtype)
        trainer = masked_model(model) if use_masks else model
        optimizer = make_optimizer(train_spec.optimizer, dtype)
        loss = RecordedLoss(make_loss(model_spec), penalised_variables(model), train_spec.l2,
                            n_steps, optimizer.iterations, dtype, guard=weight_variables(model),
                            state=state_variables(model))
        trainer.compile(loss=loss, optimizer=optimizer, jit_compile=False)
        copies = None
        if every:
            # the buffers hold at most an epoch's snapshots (zoo.specs.SCRATCH_ROWS at most);
            # `_Progress` moves them into the canonical storage when full and at epoch ends
            copies = StepCopies(model, weight_variables(model), every,
                                min(specs.SCRATCH_ROWS, -(-steps_per_epoch // every)),
                                optimizer.iterations, dtype, n_steps // every)
            copies.record_in(trainer)
        tracker = _Progress(loss, copies, progress)
        callbacks: list[tf.keras.callbacks.Callback] = [tracker]
        if ckpt is not None:
            from keras2_models import checkpoint

            if state is not None:
                checkpoint.restore(state, trainer, optimizer, loss.batch_losses)
                tracker.epoch_seconds = list(state.epoch_seconds)
                tracker.global_step = start_epoch * steps_per_epoch
                tracker._read = tracker.global_step // every if every else 0
            callbacks.append(checkpoint.CheckpointCallback(
                ckpt, model, get_weights, loss.batch_losses, tracker.epoch_seconds))
        if n_items:
            trainer.fit(data, epochs=train_spec.epochs, steps_per_epoch=steps_per_epoch,
                        shuffle=False, verbose=0, callbacks=callbacks, initial_epoch=start_epoch)
        done = int(optimizer.iterations.numpy())
        losses = np.asarray(loss.batch_losses.numpy(), dtype=np.float64)[:done]
        weights = get_weights(model)
        if not np.all(np.isfinite(losses)):  # the weights before the non-finite step's update
            weights = canonical(model, loss.backup)

    bad = np.flatnonzero(~np.isfinite(losses))
    stopped_at = int(bad[0]) if len(bad) else None
    if stopped_at is not None:
        losses = losses[:stopped_at + 1]
    snapshots = tracker.snapshots
    if snapshots is not None and len(snapshots) > len(losses) // every:
        snapshots = snapshots[:len(losses) // every]
    return History(framework=FRAMEWORK, losses=losses, weights=weights,
                   epoch_seconds=tracker.epoch_seconds, step_weights=snapshots,
                   stopped_at=stopped_at, weights_every=every or 1)


def _weights_dtype(weights: dict[str, np.ndarray]) -> str:
    """float64 when the canonical weights are float64, else float32."""
    first = np.asarray(next(iter(weights.values()), np.zeros(0, np.float32)))
    return "float64" if first.dtype == np.float64 else "float32"


def predict(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """What the model predicts (`keras2_models.model.outputs`): probabilities (N, C),
    sigmoids, or values (N, 1); `model.predict` runs in inference mode (no dropout, BatchNorm
    with the moving statistics). Computed in the weights' dtype."""
    _check(model_spec, X)
    dtype = _weights_dtype(weights)
    with floatx(dtype):
        model = build(model_spec, weights, dtype)
        out = model.predict(np.asarray(X, dtype=np.dtype(dtype)), batch_size=EVAL_BATCH,
                            verbose=0)
        return outputs(model_spec, out)


def evaluate(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
             y: np.ndarray) -> dict[str, float]:
    """{"loss", "accuracy"} (classification, binary) or {"loss", "mse"} (regression) from
    `model.evaluate`: the model's data loss (mean over X, no L2 term), without dropout."""
    _check(model_spec, X, y)
    dtype = _weights_dtype(weights)
    with floatx(dtype):
        if model_spec.task == "regression":
            metric = tf.keras.metrics.MeanSquaredError(name="mse")
        elif model_spec.task == "binary":
            # the model outputs a logit: logit > 0 <=> sigmoid > 0.5
            metric = tf.keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
        else:
            metric = tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        model = build(model_spec, weights, dtype)
        model.compile(loss=make_loss(model_spec), metrics=[metric], jit_compile=False)
        result = model.evaluate(np.asarray(X, dtype=np.dtype(dtype)),
                                _targets(model_spec, y, dtype), batch_size=EVAL_BATCH,
                                verbose=0, return_dict=True)
    return {k: float(v) for k, v in result.items()}


def _forward(model: tf.keras.Sequential, x, masks: list | None, training: bool):
    """The model's layers called one by one: a Dropout takes its shared mask when `masks` are
    given (h * (mask / (1 - rate))) and is skipped otherwise (Keras's Dropout off); every other
    layer gets `training` (BatchNorm's mode)."""
    pending = iter(masks or ())
    h = x
    for layer, r in zip(model.layers, model.model_spec.resolved, strict=True):
        if r.kind == "dropout":
            if masks is not None and r.layer.rate > 0:
                h = SharedDropout(r.layer.rate, dtype=layer.dtype)([h, next(pending)])
            continue
        h = layer(h, training=training)
    return h


def step_details(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
                 y: np.ndarray, masks: list[np.ndarray] | None = None, l2: float = 0.0) -> dict:
    """One batch at `weights`, through Keras 2's own model, loss and autodiff: {"logits",
    "loss" (l2 term included), "grads" (canonical, trained tensors), "state" (canonical
    BatchNorm state after this batch's update; {} without state)}: what `zoo.diagnose`
    compares. The layers are called one by one (`_forward`): a model with state runs in
    training mode, one without in inference mode; Keras's Dropout is off, and shared `masks`,
    when given, are applied either way."""
    _check(model_spec, X, y)
    dtype = _weights_dtype(weights)
    with floatx(dtype):
        model = build(model_spec, weights, dtype)
        x = tf.constant(np.asarray(X, dtype=np.dtype(dtype)))
        shared = [tf.constant(np.asarray(m, dtype=np.dtype(dtype))) for m in masks or ()]
        targets = _targets(model_spec, y, dtype)
        loss_fn = make_loss(model_spec)
        variables = trainable_variables(model)
        kernels = penalised_variables(model)
        training = has_state(model_spec.resolved)
        with tf.GradientTape() as tape:
            logits = _forward(model, x, shared if masks else None, training)
            loss = loss_fn(targets, logits)
            if l2:
                loss = loss + l2_penalty(kernels, l2)
        grads = tape.gradient(loss, list(variables.values()))
        grads = [tf.convert_to_tensor(g) for g in grads]  # an embedding's IndexedSlices
        return {"logits": np.asarray(logits), "loss": float(loss),
                "grads": canonical_part(model, dict(zip(variables, grads, strict=True)), True),
                "state": canonical_part(model, state_variables(model), False)}
