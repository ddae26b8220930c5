"""The one Keras 3 training loop of the zoo (every model), plus `predict` and `evaluate`.

Idiom: the model of `keras_models.model.build` (every model, from its canonical layer list),
`compile(loss=..., optimizer=...)` with the optimizer of
`keras_models.optimizers.make_optimizer`, `fit` on a `keras.utils.PyDataset`, `predict` and
`evaluate`. There is no hand-written gradient loop: Keras's own `train_step` computes every
gradient and update.

What makes it agree with TF1, torch and the float64 reference step by step:
- batches: exactly the index arrays of `zoo.data.batch_order(...)` of every epoch, in order,
  served by `order_dataset`, a `tf.data.Dataset` that gathers them from the arrays held as
  tensors (on the TensorFlow backend, without shared dropout masks), or else by `ZooBatches`,
  a `PyDataset` (`fit`'s own `shuffle`, on by default for arrays, is ignored for both;
  docs/porting.md, gotcha "`fit` shuffles by default"). The same batches either way (a test checks it); the tf.data pipeline
  runs inside TensorFlow and halves an epoch at batch 256 (docs/benchmarks.md). The partial
  last batch is kept and its loss is the mean over its own size, as in the other frameworks.
- losses from logits (`from_logits=True`), mean reduction, targets int labels (N,) for
  cross-entropy, hinge and the quadratic cost, float (N, 1) for binary cross-entropy and MSE;
  inputs X of shape (N, *spec.input_shape): flat features, NHWC images, (N, T, F) sequences
  (images read row by row) or (N, T) token ids stored as whole-number floats (cast to int32
  at the Embedding); all of them travel as floats of the run's dtype;
- the L2 penalty 0.5 * l2 * sum(kernel**2) over the weight table's penalised tensors (Dense,
  Conv2D, LSTM and GRU kernels and recurrent kernels; never biases or embeddings) is added to the compiled loss (Keras's `weight_decay` would be
  decoupled decay, a different update under momentum);
- per-step losses: `logs["loss"]` in Keras 3 callbacks is the running, batch-size-weighted mean
  over the epoch, not the batch loss, and recovering batch losses from it by differencing
  accumulates rounding error. So the compiled loss is wrapped in `RecordedLoss`, which writes the
  very scalar that is differentiated into slot `optimizer.iterations` of a preallocated
  variable: exact, and it also works with `steps_per_execution > 1`.
- dropout: "shared" makes the PyDataset yield `((x, mask_0, mask_1), y)` with the masks of
  `zoo.specs.dropout_masks` (the model applies them as h * (mask / (1 - rate))); "native"
  yields `(x, y)` and `keras.layers.Dropout` draws its own masks (`fit` calls the model with
  training=True); "off" builds the model with rate 0 (no Dropout layer).
- BatchNorm: `fit` calls the model with training=True, so each step normalises with its
  batch's statistics and updates the moving ones in the forward pass; `predict` and
  `evaluate` use the moving statistics. The moving statistics are Keras non-trainable
  variables: never given to the optimizer, but part of the weights everywhere (`History.weights`,
  the per-step snapshots, checkpoints, the copy kept against a non-finite loss, which for them
  is taken after the forward pass, see `RecordedLoss`).
- float64: Keras keeps its loss, metrics and the optimizer's learning rate in
  `keras.config.floatx()` (float32 by default, so lr 0.1 would run as 0.10000000149), so a
  float64 run sets floatx to float64 while it builds, compiles, fits, predicts and evaluates,
  and restores it afterwards (docs/porting.md). The layers also get their dtype explicitly
  (an LSTM's or GRU's cell computes its gates and states in it: float64 stays float64).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import keras
import numpy as np
from keras import ops

from keras_models.model import (
    build,
    canonical,
    canonical_part,
    get_weights,
    l2_penalty,
    make_loss,
    masked_dropouts,
    outputs,
    penalised_variables,
    state_variables,
    trainable_variables,
    weight_variables,
)
from zoo.checkpoint import start
from zoo.data import batch_order
from zoo.errors import ConfigError
from zoo.layers import has_state
from zoo.specs import (
    History,
    ModelSpec,
    SnapshotRing,
    StepWeights,
    TrainSpec,
    check_inputs,
    dropout_masks,
    record_every,
)

__all__ = ["RecordedLoss", "ZooBatches", "dropout_plan", "evaluate", "floatx", "order_dataset",
           "predict", "step_details", "train"]

FRAMEWORK = "keras"
#: Batch size of `predict` and `evaluate` (any size gives the same mean; this bounds memory).
EVAL_BATCH = 8192


@contextmanager
def floatx(dtype: str) -> Iterator[None]:
    """Run a block with `keras.config.floatx()` set to `dtype`, restoring it afterwards.

    Loss objects, metrics and the optimizer's learning-rate variable take floatx when they are
    created; under float32 a float64 model would be trained with float32 losses and lr."""
    old = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(old)


def _check(model_spec: ModelSpec, X: np.ndarray, y: np.ndarray | None = None) -> None:
    check_inputs(model_spec, X, y, what="keras_models")


def dropout_plan(model_spec: ModelSpec, train_spec: TrainSpec) -> tuple[ModelSpec, bool]:
    """(the spec to build, whether batches carry the shared masks) for a run's dropout mode:
    "off" builds the model without dropout (rate 0: no Dropout layer), "shared" feeds the
    masks of `zoo.specs.dropout_masks` when the model has a Dropout layer, "native" neither."""
    built = model_spec
    if train_spec.dropout_mode == "off" and model_spec.dropout:
        built = dataclasses.replace(model_spec, dropout=0.0)
    return built, train_spec.dropout_mode == "shared" and bool(masked_dropouts(model_spec))


def _targets(model_spec: ModelSpec, y: np.ndarray, dtype: str) -> np.ndarray:
    """Targets as the Keras losses take them: int64 labels (N,) for cross-entropy, hinge and
    the quadratic cost, float (N, 1) in the model's dtype for binary cross-entropy and MSE."""
    if model_spec.task == "classification":
        return np.asarray(y).reshape(-1).astype(np.int64)
    return np.asarray(y, dtype=np.dtype(dtype)).reshape(-1, 1)


class ZooBatches(keras.utils.PyDataset):
    """The shared mini-batches of a whole run, for `fit(..., steps_per_epoch=...)`.

    Item k is step `k % steps_per_epoch` of epoch `k // steps_per_epoch`:
    `X[batch_order(N, batch_size, seed, epoch)[step]]`, with that step's dropout masks appended
    to the inputs when `masks` is True. Every item is a pure function of k, on purpose: Keras
    creates the next iterator and tf.data prefetches from it before `on_epoch_end` hooks run,
    so a PyDataset that counted epochs in `on_epoch_end` would serve a prefetched batch from the
    wrong epoch. With `steps_per_epoch` given, `fit` reads this one sequence from start to end
    (the TF adapter also reads items 0 and 1 once beforehand to infer the tensor specs).
    """

    def __init__(self, model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray,
                 y: np.ndarray, *, masks: bool, start_epoch: int = 0) -> None:
        # One worker, no multiprocessing: the batches are made in order, in this process.
        super().__init__(workers=1, use_multiprocessing=False)
        self.model_spec, self.train_spec = model_spec, train_spec
        self.X, self.y, self.masks = X, y, masks
        self.start_epoch = start_epoch  # resuming: item 0 is step 0 of this epoch
        self.steps_per_epoch = math.ceil(len(X) / train_spec.batch_size)
        self._orders: dict[int, list[np.ndarray]] = {}

    def order(self, epoch: int) -> list[np.ndarray]:
        """The index arrays of `epoch` (the last two epochs are cached)."""
        if epoch not in self._orders:
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = batch_order(len(self.X), self.train_spec.batch_size,
                                              self.train_spec.seed, epoch,
                                              shuffle=self.train_spec.shuffle)
        return self._orders[epoch]

    def __len__(self) -> int:
        return self.steps_per_epoch * (self.train_spec.epochs - self.start_epoch)

    def __getitem__(self, k: int):
        epoch, step = divmod(int(k), self.steps_per_epoch)
        epoch += self.start_epoch
        idx = self.order(epoch)[step]
        x = self.X[idx]
        if self.masks:
            x = (x, *dropout_masks(self.model_spec, len(idx), self.train_spec.seed, epoch, step,
                                   self.train_spec.dtype))
        return x, self.y[idx]


def order_dataset(train_spec: TrainSpec, X: np.ndarray, y: np.ndarray, start_epoch: int = 0,
                  *, per_epoch: bool = False):
    """The shared batches of epochs `start_epoch`..`epochs - 1` as a `tf.data.Dataset` of
    `(X[idx], y[idx])` (TensorFlow backend only): `(dataset, epoch)`.

    Each epoch's `batch_order` arrays are consecutive chunks of one permutation, so the epoch
    is that permutation `.batch(batch_size)`-ed (the partial last batch kept). The index
    arrays of every epoch are computed here, up front (epochs x N int64), and the gathers run
    in TensorFlow, with no Python call per batch.

    per_epoch False: one dataset over all epochs, for `fit(..., steps_per_epoch=...)`
    (`flat_map` keeps the epochs apart; `epoch` is None). Its one iterator runs across the
    epochs, so an execution of several steps must not straddle two: the steps per execution
    must divide the steps per epoch (`_divisor_at_most`).

    per_epoch True: every iterator made over `dataset` serves the batches of epoch
    `start_epoch + epoch` (a `tf.Variable` read when the iterator starts; `_EpochSwitch` sets
    it at each epoch's beginning, before `fit` makes that epoch's iterator), its cardinality
    (the steps per epoch) declared, for `fit` without `steps_per_epoch`. An execution that
    reaches the epoch's end stops there (Keras's multi-step loop stops when its iterator is
    exhausted), so any number of steps per execution keeps the epochs aligned, at the cost
    of a new iterator every epoch (~17 ms on this project's machine; `_plan_executions`
    chooses)."""
    import tensorflow as tf

    n, bs = len(X), train_spec.batch_size
    orders = [np.concatenate(batch_order(n, bs, train_spec.seed, e, shuffle=train_spec.shuffle))
              for e in range(start_epoch, train_spec.epochs)]
    orders_t = tf.constant(np.stack(orders) if orders else np.zeros((0, n), np.int64))
    Xt, yt = tf.constant(X), tf.constant(y)
    epoch = None
    if per_epoch:
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        epochs = tf.data.Dataset.range(1).map(lambda _: tf.gather(orders_t, epoch.read_value()))
    else:
        epochs = tf.data.Dataset.from_tensor_slices(orders_t)
    batches = epochs.flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(bs))
    batches = batches.map(lambda idx: (tf.gather(Xt, idx), tf.gather(yt, idx))).prefetch(2)
    if per_epoch:
        batches = batches.apply(tf.data.experimental.assert_cardinality(math.ceil(n / bs)))
    return batches, epoch


class _EpochSwitch(keras.callbacks.Callback):
    """Points a per-epoch `order_dataset`'s iterators at the epoch about to begin."""

    def __init__(self, epoch, start_epoch: int) -> None:
        super().__init__()
        self.epoch_variable, self.start_epoch = epoch, start_epoch

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.epoch_variable.assign(epoch - self.start_epoch)


class RecordedLoss(keras.losses.Loss):
    """The compiled training loss: `loss(y_true, y_pred)` (mean over the batch) plus
    0.5 * l2 * sum of squared kernels, recorded exactly for every step.

    The value is written into `self.batch_losses[optimizer.iterations]` inside the training
    step, before the update (so with the pre-update kernels), and it is the same tensor that
    Keras differentiates. `batch_losses` holds `n_steps` slots.

    `guard` ({keras native name: weight variable}): while every loss so far is finite, each step
    copies the weights it starts from into `self.backup` (before the update, which Keras
    applies even when the loss is non-finite); from the first non-finite loss on the copy is
    frozen, so it holds the last finite weights, also with steps_per_execution > 1.

    `state` ({keras native name: variable}, the BatchNorm moving statistics): these change in
    the forward pass, before the loss is computed, so here they already hold this step's
    update. They are copied when this step's loss is finite too (the state the next step
    starts from) and start as a copy of the initial state: at the first non-finite loss the
    copy holds the state that step started from, as `backup` holds its weights.
    """

    def __init__(self, loss: keras.losses.Loss, kernels: list, l2: float, n_steps: int,
                 step: keras.Variable, dtype: str, guard: dict | None = None,
                 state: dict | None = None) -> None:
        super().__init__(name=loss.name, dtype=dtype)
        self.loss, self.kernels, self.l2, self.step = loss, list(kernels), float(l2), step
        self.batch_losses = keras.Variable(np.zeros(n_steps, dtype=dtype), trainable=False,
                                           dtype=dtype, name="batch_losses")
        self.state = dict(state or {})
        self.guard = {n: v for n, v in (guard or {}).items() if n not in self.state}
        self.backup = {n: keras.Variable(np.zeros(v.shape, dtype=dtype), trainable=False,
                                         dtype=dtype, name="backup") for n, v in self.guard.items()}
        self.backup.update({n: keras.Variable(np.array(ops.convert_to_numpy(v), dtype=dtype),
                                              trainable=False, dtype=dtype, name="backup")
                            for n, v in self.state.items()})
        self.all_finite = keras.Variable(True, trainable=False, dtype="bool", name="all_finite")

    def __call__(self, y_true, y_pred, sample_weight=None):
        loss = self.loss(y_true, y_pred, sample_weight)
        if self.l2:
            loss = loss + l2_penalty(self.kernels, self.l2)
        step = ops.cast(self.step, "int32")
        self.batch_losses.assign(ops.slice_update(self.batch_losses, (step,),
                                                  ops.reshape(loss, (1,))))
        if self.guard or self.state:
            keep = ops.convert_to_tensor(self.all_finite)
            for name, var in self.guard.items():
                self.backup[name].assign(ops.where(keep, var, self.backup[name]))
            still = ops.logical_and(keep, ops.all(ops.isfinite(loss)))
            for name, var in self.state.items():
                self.backup[name].assign(ops.where(still, var, self.backup[name]))
            self.all_finite.assign(still)
        return loss


class StepRecorder:
    """The weights after every `every`-th step, copied inside the compiled training step
    (`ZooModel.train_step` calls `record` after Keras applied the update), so recording every
    step costs one in-graph copy instead of a round trip to numpy per step, and several steps
    can run in one execution (`steps_per_execution`).

    Every variable, raveled, goes into one row of its own buffer of `slots` rows (the
    snapshots of at most one execution) plus one scratch row that the steps not recorded
    write to: a row scatter (`tf.Variable.scatter_update`) on the TensorFlow backend, which
    measured ~30 ms an epoch faster for the MLP at batch 32 than writing strided slices of
    one shared buffer, and faster still than an in-graph concatenation.
    `take(first, last)` moves the snapshots of recorded ordinals first..last-1 (ordinal r is
    the weights after global step (r + 1) * every - 1) into `store`, the run's canonical
    `StepWeights` (allocated before the first step, `capacity` rows), through
    `zoo.layers.FlatNative`; call it after every execution (`_Progress` does)."""

    def __init__(self, model, variables: dict, every: int, slots: int, step, dtype: str,
                 capacity: int) -> None:
        self.model, self.variables, self.every, self.step = model, variables, every, step
        self.ring = SnapshotRing(model.model_spec.resolved, FRAMEWORK, list(variables),
                                 [tuple(v.shape) for v in variables.values()], every, slots,
                                 capacity, dtype)
        self.slots, self.store = self.ring.slots, self.ring.store
        self.buffers = [keras.Variable(np.zeros((self.slots + 1, int(np.prod(v.shape))),
                                                dtype=dtype),
                                       trainable=False, dtype=dtype, name="snapshots")
                        for v in variables.values()]

    def record(self) -> None:
        done = ops.cast(self.step, "int32")           # steps done, this one included
        if self.every == 1:
            row = ops.mod(done - 1, self.slots)
        else:
            recorded = ops.equal(ops.mod(done, self.every), 0)
            row = ops.where(recorded, ops.mod(done // self.every - 1, self.slots), self.slots)
        tensorflow = keras.backend.backend() == "tensorflow"
        if tensorflow:
            import tensorflow as tf

            rows = ops.reshape(row, (1,))
        for buf, var in zip(self.buffers, self.variables.values(), strict=True):
            value = ops.reshape(ops.convert_to_tensor(var), (1, -1))
            if tensorflow:   # writes that one row in place, nothing else
                buf.value.scatter_update(tf.IndexedSlices(value, rows))
            else:
                buf.assign(ops.slice_update(buf, (row, 0), value))

    def take(self, first: int, last: int) -> None:
        self.ring.take(first, last, self._read)

    def _read(self) -> list[np.ndarray]:
        if keras.backend.backend() == "tensorflow":
            # a read-only view of each value read (`.numpy()` and `convert_to_numpy` copy the
            # whole buffer into fresh memory), dropped before the next execution writes to the
            # buffer again
            return [np.asarray(buf.value.read_value()) for buf in self.buffers]
        return [np.asarray(ops.convert_to_numpy(buf)) for buf in self.buffers]


class _Progress(keras.callbacks.Callback):
    """Epoch wall times, the recorder's weight snapshots, `progress(epoch, step, loss)` calls
    and the stop at the first non-finite loss, once per execution of `steps_per_execution`
    steps (the losses and snapshots of each of its steps are read then)."""

    def __init__(self, recorder: RecordedLoss, snapshots: StepRecorder | None,
                 progress: Callable[[int, int, float], None] | None,
                 steps_per_epoch: int) -> None:
        super().__init__()
        self.recorder, self.snapshots_of, self.progress = recorder, snapshots, progress
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0
        self.global_step = 0
        self.epoch_seconds: list[float] = []
        self.snapshots = snapshots.store if snapshots is not None else StepWeights()
        self._start = 0.0
        self._read = 0      # snapshot ordinals read so far

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.epoch = epoch
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._start)
        self._take()

    def _take(self) -> None:
        if self.snapshots_of is not None:
            upto = self.global_step // self.snapshots_of.every
            self.snapshots_of.take(self._read, upto)
            self._read = upto

    def on_train_batch_end(self, batch, logs=None) -> None:
        done = int(ops.convert_to_numpy(self.recorder.step))
        if done <= self.global_step:
            return
        values = self.recorder.batch_losses
        losses = np.asarray(ops.convert_to_numpy(values.value))[self.global_step:done]
        if not np.all(np.isfinite(losses)):
            self.model.stop_training = True
        if self.progress is not None:
            for k, value in zip(range(self.global_step, done), losses, strict=True):
                self.progress(self.epoch, k % self.steps_per_epoch, float(value))
        self.global_step = done
        self._take()

    def on_train_end(self, logs=None) -> None:
        if len(self.epoch_seconds) < self.epoch + 1 and self._start:
            self.epoch_seconds.append(time.perf_counter() - self._start)  # stopped mid-epoch
        self._take()


#: Steps per execution when `train` picks them (see `_plan_executions`): many steps per
#: compiled call (an execution costs ~3 ms of Python and callbacks: mnist's softmax epoch at
#: batch 32, 250 steps, took 63 ms in 5 executions and 48 ms in one), while progress still
#: arrives about once a second on larger work (LeNet on 60,000 images: 1,875 steps an epoch,
#: 256 an execution). Losses, weights and snapshots are the same for any value
#: (tests/test_keras_models.py).
AUTO_STEPS_PER_EXECUTION = 256

#: When recording, the automatic steps per execution are also capped so that one execution's
#: snapshots (`StepRecorder`'s buffers, one row of every weight per recorded step) take at
#: most this many MB: 256 steps for the zoo's models (LeNet-5: 61,706 weights, 60 MB), 16
#: for a model of a million float32 weights, whose steps cost far more than an execution.
RING_BUDGET_MB = 64


def train(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
          init: dict[str, np.ndarray] | None = None, *, record_weights: bool | int = False,
          progress: Callable[[int, int, float], None] | None = None,
          steps_per_execution: int | None = None, checkpoint_dir: str | None = None,
          resume: bool = False, force: bool = False) -> History:
    """Train `model_spec` on (X, y) with `compile` + `fit` as `train_spec` says.

    X (N, *model_spec.input_shape) float: (N, F) features, (N, H, W, C) images, (N, T, F)
    sequences or (N, T) token ids (whole numbers in [0, vocab), checked); y int64 (N,)
    labels (classification, binary) or float (N, 1) values (regression). init: canonical
    initial weights (default: the layers' own initialisers, `keras_models.model.build`).
    `History.losses[k]` is step k's mini-batch loss before its update, l2 term included.
    Training stops at the first non-finite loss (`History.stopped_at`; with
    steps_per_execution > 1 the run goes on to its end and the losses are cut there). Keras
    has already applied that step's update then, so the weights returned are the last finite
    ones (as torch and TF1 return): the copy `RecordedLoss` keeps, or, recording every step,
    the record's entry before that step (no copy is made then).

    steps_per_execution: up to that many steps per `tf.function` call (faster for small
    models; the largest divisor of the steps per epoch that is not larger, `_divisor_at_most`,
    or on the TensorFlow backend without shared masks, when that divisor is much smaller,
    this many with each epoch's last execution running what is left of it,
    `_plan_executions`); None picks AUTO_STEPS_PER_EXECUTION on the TensorFlow backend (one
    step on torch's). Losses, weights and snapshots are exact for any value: the weights are
    recorded inside the compiled step (`StepRecorder`), and `progress` is called for every
    step once its execution ends.

    checkpoint_dir: save weights, optimizer variables and the History so far there after
    every epoch (`zoo.checkpoint`, `keras_models.checkpoint`; an existing checkpoint is
    overwritten only with `force`); `resume` continues from it with `fit(initial_epoch=...)`.
    Native dropout is not resumed bit for bit (its seed generator state is not saved).
    """
    from keras_models.optimizers import make_optimizer

    _check(model_spec, X, y)
    every = record_every(record_weights)
    ckpt, state, init = start(checkpoint_dir, FRAMEWORK, model_spec, train_spec, X, y, init,
                              resume=resume, force=force)
    start_epoch = state.epoch if state is not None else 0
    if steps_per_execution is None:
        steps_per_execution = AUTO_STEPS_PER_EXECUTION \
            if keras.backend.backend() == "tensorflow" else 1
        if every:   # the snapshots of one execution stay within RING_BUDGET_MB
            row = sum(int(np.prod(s)) for s in model_spec.weight_shapes().values()) \
                * np.dtype(train_spec.dtype).itemsize
            steps_per_execution = max(1, min(steps_per_execution,
                                             int(RING_BUDGET_MB * 2**20 // max(row, 1)) * every))
    if steps_per_execution < 1:
        raise ConfigError(f"steps_per_execution must be >= 1, got {steps_per_execution}.")
    dtype = train_spec.dtype
    built_spec, use_masks = dropout_plan(model_spec, train_spec)
    Xd, yd = np.asarray(X, dtype=np.dtype(dtype)), _targets(model_spec, y, dtype)
    steps_per_epoch = math.ceil(len(Xd) / train_spec.batch_size)
    n_steps = steps_per_epoch * train_spec.epochs
    n_items = steps_per_epoch * (train_spec.epochs - start_epoch)
    switch: list[keras.callbacks.Callback] = []
    if use_masks or keras.backend.backend() != "tensorflow":
        # one sequence over all epochs: an execution must not straddle two of them
        data = ZooBatches(model_spec, train_spec, Xd, yd, masks=use_masks, start_epoch=start_epoch)
        spe, fit_steps = _divisor_at_most(steps_per_epoch, steps_per_execution), steps_per_epoch
    else:
        spe, per_epoch = _plan_executions(steps_per_epoch, steps_per_execution)
        data, epoch_variable = order_dataset(train_spec, Xd, yd, start_epoch, per_epoch=per_epoch)
        fit_steps = None if per_epoch else steps_per_epoch
        if per_epoch:   # an iterator per epoch: its last execution stops at the epoch's end
            switch = [_EpochSwitch(epoch_variable, start_epoch)]

    with floatx(dtype):
        model = build(built_spec, init, dtype)
        optimizer = make_optimizer(train_spec.optimizer, dtype)
        # Recording every step, the record already holds the weights each step starts from
        # (the step before's, after its update): the copy `RecordedLoss` otherwise makes in
        # every step, to return the last finite weights, is left out (it cost the MLP's
        # epoch at batch 32 ~25%)
        from_record = every == 1 and state is None
        start_weights = get_weights(model) if from_record else None
        loss = RecordedLoss(make_loss(model_spec), penalised_variables(model), train_spec.l2,
                            n_steps, optimizer.iterations, dtype,
                            guard=None if from_record else weight_variables(model),
                            state=None if from_record else state_variables(model))
        recorder = None
        if every:
            # the ring holds one execution's snapshots: `_Progress` moves them into the
            # canonical storage after every execution (the automatic choice: at most 256 steps)
            recorder = StepRecorder(model, weight_variables(model), every,
                                    -(-spe // every) + 1, optimizer.iterations,
                                    dtype, n_steps // every)
            object.__setattr__(model, "_zoo_recorder", recorder)   # not a tracked weight
        model.compile(loss=loss, optimizer=optimizer, steps_per_execution=spe)
        tracker = _Progress(loss, recorder, progress, steps_per_epoch)
        callbacks: list[keras.callbacks.Callback] = [*switch, tracker]
        if ckpt is not None:
            from keras_models import checkpoint

            if state is not None:
                checkpoint.restore(state, model, optimizer, loss.batch_losses)
                tracker.epoch_seconds = list(state.epoch_seconds)
                tracker.global_step = start_epoch * steps_per_epoch
                tracker._read = tracker.global_step // every if every else 0
            callbacks.append(checkpoint.CheckpointCallback(
                ckpt, get_weights, loss.batch_losses, tracker.epoch_seconds))
        if n_items:
            model.fit(data, epochs=train_spec.epochs, steps_per_epoch=fit_steps,
                      shuffle=False, verbose=0, callbacks=callbacks, initial_epoch=start_epoch)
        done = int(ops.convert_to_numpy(optimizer.iterations))
        losses = np.asarray(ops.convert_to_numpy(loss.batch_losses), dtype=np.float64)[:done]
        weights = get_weights(model)
        if not np.all(np.isfinite(losses)):  # the weights before the non-finite step's update
            first = int(np.flatnonzero(~np.isfinite(losses))[0])
            if not from_record:
                weights = canonical(model, loss.backup)
            elif first == 0:
                weights = start_weights
            else:
                weights = {k: np.array(v) for k, v in tracker.snapshots[first - 1].items()}

    bad = np.flatnonzero(~np.isfinite(losses))
    stopped_at = int(bad[0]) if len(bad) else None
    if stopped_at is not None:
        losses = losses[:stopped_at + 1]
    snapshots = tracker.snapshots[:len(losses) // every] if every else None
    return History(framework=FRAMEWORK, losses=losses, weights=weights,
                   epoch_seconds=tracker.epoch_seconds, step_weights=snapshots,
                   stopped_at=stopped_at, weights_every=every or 1)


#: What a new iterator every epoch costs, in executions (~17 ms against ~3 ms an execution,
#: measured on this project's machine: `order_dataset`).
ITERATOR_EXECUTIONS = 6


def _plan_executions(steps_per_epoch: int, requested: int) -> tuple[int, bool]:
    """(steps per execution, whether each epoch gets its own iterator) for the `tf.data`
    path: a divisor of the steps per epoch and one iterator over all epochs when that costs
    at most ITERATOR_EXECUTIONS more executions an epoch than `requested` steps per
    execution with an iterator per epoch (whose last execution runs what is left of the
    epoch); else the latter. A prime number of steps (271) thus runs in 2 executions an
    epoch, not 271."""
    divisor = _divisor_at_most(steps_per_epoch, requested)
    wanted = min(requested, steps_per_epoch)
    if steps_per_epoch // divisor <= -(-steps_per_epoch // wanted) + ITERATOR_EXECUTIONS:
        return divisor, False
    return wanted, True


def _divisor_at_most(steps_per_epoch: int, requested: int) -> int:
    """The largest divisor of `steps_per_epoch` that is <= `requested`.

    `fit` runs `range(0, steps_per_epoch, steps_per_execution)` executions per epoch, each
    pulling `steps_per_execution` batches from an iterator that (with `steps_per_epoch` given)
    spans all epochs. When the two do not divide, the executions straddle epoch boundaries
    and the last steps of the run were measured to train on the wrong batches (iris, 4 steps
    per epoch, 3 per execution: the last loss off by 0.025); a divisor keeps them aligned."""
    return max(d for d in range(1, min(requested, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def _weights_dtype(weights: dict[str, np.ndarray]) -> str:
    """float64 when the canonical weights are float64, else float32."""
    first = np.asarray(next(iter(weights.values()), np.zeros(0, np.float32)))
    return "float64" if first.dtype == np.float64 else "float32"


def predict(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """What the model predicts (`keras_models.model.outputs`): probabilities (N, C) for the
    softmax outputs (softmax, svm: softmax of the scores, mlp, cnn, lenet), sigmoids (P(y=1)
    (N, 1) for logistic, every unit for nielsen), values (N, 1) for linear. `model.predict`
    calls the model with training=False, so there is never any dropout. Computed in the
    weights' dtype."""
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
    if model_spec.task == "regression":
        metric = keras.metrics.MeanSquaredError(name="mse")
    elif model_spec.task == "binary":
        # The model outputs a logit: logit > 0 <=> sigmoid > 0.5.
        metric = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
    else:  # the largest raw output is the largest probability (softmax or sigmoid)
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    with floatx(dtype):
        model = build(model_spec, weights, dtype)
        model.compile(loss=make_loss(model_spec), metrics=[metric])
        result = model.evaluate(np.asarray(X, dtype=np.dtype(dtype)),
                                _targets(model_spec, y, dtype), batch_size=EVAL_BATCH,
                                verbose=0, return_dict=True)
    return {k: float(v) for k, v in result.items()}


def step_details(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
                 y: np.ndarray, masks: list[np.ndarray] | None = None, l2: float = 0.0) -> dict:
    """One batch at `weights`, through this framework's own model, loss and autodiff:
    {"logits": raw outputs (N, C) or (N, 1), "loss": float (l2 term included), "grads":
    canonical dict of the trained tensors of the weight table, "state": canonical dict of the
    BatchNorm state after this batch's moving-statistics update ({} without state)}.

    What the first-divergence diagnosis (`zoo.diagnose`) compares between frameworks. The model
    is built afresh from `weights` (state included), so nothing is left over from an earlier
    call. A model with state runs as in training (`model(x, training=True, dropout=False)`:
    batch statistics and their update) with Keras's Dropout off; one without runs with
    training=False. Shared `masks`, when given, are applied either way. Works on the
    TensorFlow backend (GradientTape) and the torch backend (autograd)."""
    _check(model_spec, X, y)
    dtype = _weights_dtype(weights)
    with floatx(dtype):
        model = build(model_spec, weights, dtype)
        x = np.asarray(X, dtype=np.dtype(dtype))
        inputs = (x, *[np.asarray(m, dtype=np.dtype(dtype)) for m in masks]) if masks else x
        targets = _targets(model_spec, y, dtype)
        loss_fn = make_loss(model_spec)
        variables = trainable_variables(model)
        kernels = penalised_variables(model)
        training = has_state(model_spec.resolved)

        def objective():
            logits = model(inputs, training=training, dropout=False)
            loss = loss_fn(targets, logits)
            if l2:
                loss = loss + l2_penalty(kernels, l2)
            return logits, loss

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                logits, loss = objective()
            grads = tape.gradient(loss, list(variables.values()))
        elif keras.backend.backend() == "torch":
            import torch

            logits, loss = objective()
            grads = torch.autograd.grad(loss, [v.value for v in variables.values()])
        else:
            raise ConfigError(f"step_details supports the tensorflow and torch backends, not "
                              f"{keras.backend.backend()!r}.")
        return {"logits": np.asarray(ops.convert_to_numpy(logits)),
                "loss": float(ops.convert_to_numpy(loss)),
                "grads": canonical_part(model, dict(zip(variables, grads, strict=True)), True),
                "state": canonical_part(model, state_variables(model), False)}
