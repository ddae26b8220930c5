"""Data-parallel training in Keras 3: `tf.distribute.MirroredStrategy` over N logical CPU
devices, equal to one process (`keras_models.train.train`) with the same global batch.

`train(..., workers=N)` runs the job in a subprocess (`python -m keras_models.distributed
JOB.json`): logical devices must be configured before TensorFlow initialises its devices,
which a process that already used TensorFlow cannot undo. The subprocess splits its one CPU
into N logical devices, builds, compiles and fits the model under the strategy's scope, and
writes the History as an .npz (no pickles). It is bounded by `timeout`; if it raises, exits or
is killed, `train` raises `zoo.distributed.DistributedError` with its error.

What keeps it equal to one process (docs/distributed.md, "How gradients are averaged"):
- the input is `strategy.distribute_datasets_from_function` over a dataset whose elements are
  the replicas' shards in turn (MirroredStrategy hands consecutive elements of one worker's
  dataset to its replicas round-robin, measured): element W*k + r is rank r's rows
  `zoo.distributed.shard_bounds(n, W)[r]` of the single-process batch k of
  `zoo.data.batch_order`, with the same rows of the step's shared dropout masks. (Keras's own
  split of a global batch, `experimental_distribute_dataset`, is not used: it is not the
  contiguous split, and we also need each step's global size on every replica.)
- Keras 3 on TensorFlow divides a mean-reduced loss by the number of replicas
  (`keras.src.losses.loss.scale_loss_for_distribution`) and then *sums* the replicas'
  gradients: sum_r mean_r / W, the global mean only when every shard has the same size. So
  the compiled loss here, `ShardLoss`, does not use that reduction: each replica's loss is
  sum(per-sample losses of its shard) / n with n the *global* batch size (carried as the
  sample weight 1/n of every row), plus the L2 penalty / W. Summed over replicas this is the
  single-process batch loss exactly, for unequal shards of a partial last batch too, and
  Keras's own rescaling never applies (the inner loss uses reduction "sum").
- BatchNorm layers are built with `synchronized=True` (`keras_models.layers`): each replica
  normalises with the mean and variance of the whole global batch, all-reduced across the
  replicas, and every replica makes the same moving-statistics update, as one process does.
  With Keras's default (each replica its own shard's statistics) 2 workers were measured
  2.4e-2 away from one process after one epoch of cnn_bn (320 digits images, batch 32, SGD
  lr 0.1; moving variance 6.1e-3, moving mean 2.6e-3, losses 3.5e-2); synchronised, 1.2e-7.
  The global mean is a true mean over unequal shards (sums and counts are all-reduced), and
  the variance is computed in two passes there (`ZooBatchNormalization._moments`: Keras's
  one-pass E[x^2] - E[x]^2 cancels in float32).
- the recorded loss of a step is written into an on-read, sum-aggregated variable: every
  replica writes its part, reading sums them. A non-finite loss stops the run after that step
  (Keras has applied its update by then) and the weights the step started from are returned.
MultiWorkerMirroredStrategy (several processes or machines with TF_CONFIG) is not wired in
(measured here: Keras 3.15 `fit` fails under it, and its gRPC servers listen on every
interface; docs/distributed.md).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from zoo.data import batch_order
from zoo.distributed import (
    DEFAULT_TIMEOUT,
    check_workers,
    inject_fault,
    run_module,
    shard,
    write_error,
)
from zoo.specs import (
    History,
    ModelSpec,
    TrainSpec,
    check_inputs,
    dropout_masks,
    record_every,
    records,
)

__all__ = ["shard_elements", "train", "train_mirrored"]

FRAMEWORK = "keras"


def shard_elements(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
                   world: int, *, masks: bool):
    """Yield the dataset elements of a whole run: for every step of every epoch, for every
    replica r in order, ((x_r, *masks_r) or x_r, y_r, sample_weight_r) where sample_weight_r
    is 1/n for each of its rows (n: the global batch size)."""
    dtype = np.dtype(train_spec.dtype)
    for epoch in range(train_spec.epochs):
        batches = batch_order(len(X), train_spec.batch_size, train_spec.seed, epoch,
                              shuffle=train_spec.shuffle)
        for step, idx in enumerate(batches):
            n = len(idx)
            step_masks = dropout_masks(model_spec, n, train_spec.seed, epoch, step,
                                       train_spec.dtype) if masks else []
            for r in range(world):
                mine, lo, hi = shard(idx, r, world)
                x = X[mine]
                if masks:
                    x = (x, *[m[lo:hi] for m in step_masks])
                yield x, y[mine], np.full(len(mine), 1.0 / n, dtype=dtype)


def _fault_callback(fault: dict | None):
    import keras

    class Fault(keras.callbacks.Callback):
        """Test hook: fail at global step fault["step"] ("raise", "exit" or "hang")."""

        def __init__(self) -> None:
            super().__init__()
            self.k = 0

        def on_train_batch_begin(self, batch, logs=None) -> None:
            inject_fault(fault, self.k)  # zoo.distributed's test hook
            self.k += 1

    return Fault()


def _every_step_tracker(recorder, get_weights, progress, steps_per_epoch: int, every: int):
    """`keras_models.train._Progress` for one step per execution, taking each recorded step's
    weights from the (mirrored) model after the step (the replicas' variables are the same)."""
    from keras_models.train import _Progress

    class EveryStep(_Progress):
        def __init__(self, recorder, get_weights, progress, steps_per_epoch, every) -> None:
            super().__init__(recorder, None, progress, steps_per_epoch)
            self.get_weights, self.every = get_weights, every

        def on_train_batch_end(self, batch, logs=None) -> None:
            super().on_train_batch_end(batch, logs)
            if self.get_weights is not None and records(self.every, self.global_step - 1):
                self.snapshots.append(self.get_weights(self.model))

    return EveryStep(recorder, get_weights, progress, steps_per_epoch, every)


def _start_weights(get_weights):
    """A callback that keeps the weights every step starts from (the last finite weights when
    the run stops at a non-finite loss)."""
    import keras

    class StartWeights(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.weights = None

        def on_train_batch_begin(self, batch, logs=None) -> None:
            self.weights = get_weights(self.model)

    return StartWeights()


def train_mirrored(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
                   init: dict[str, np.ndarray] | None, strategy, *,
                   record_weights: bool | int = False, progress=None,
                   fault: dict | None = None) -> History:
    """Train under `strategy` (a MirroredStrategy, already created) with the shards of
    `shard_elements`; returns the History of the whole run (global-batch losses).
    `progress(epoch, step, loss)` is called after every step."""
    import keras
    import tensorflow as tf
    from keras import ops

    from keras_models.model import (
        build,
        get_weights,
        l2_penalty,
        make_loss,
        masked_dropouts,
        penalised_variables,
    )
    from keras_models.optimizers import make_optimizer
    from keras_models.train import _targets, dropout_plan, floatx

    check_inputs(model_spec, X, y, what="keras_models")
    world = strategy.num_replicas_in_sync
    dtype = train_spec.dtype
    built_spec, use_masks = dropout_plan(model_spec, train_spec)
    Xd = np.asarray(X, dtype=np.dtype(dtype))
    yd = _targets(model_spec, y, dtype)
    steps_per_epoch = -(-len(Xd) // train_spec.batch_size)
    n_steps = steps_per_epoch * train_spec.epochs

    x_spec = tf.TensorSpec((None, *Xd.shape[1:]), dtype)
    if use_masks:  # one mask per Dropout layer, shaped like that layer's input
        x_spec = (x_spec, *[tf.TensorSpec((None, *r.input_shape), dtype)
                            for r in masked_dropouts(model_spec)])
    signature = (x_spec, tf.TensorSpec((None, *yd.shape[1:]), tf.as_dtype(yd.dtype)),
                 tf.TensorSpec((None,), dtype))

    def make_dataset(ctx: tf.distribute.InputContext | None = None):
        # MirroredStrategy: one input pipeline (this process) feeding all its replicas.
        return tf.data.Dataset.from_generator(
            lambda: shard_elements(model_spec, train_spec, Xd, yd, world, masks=use_masks),
            output_signature=signature)

    distributed = strategy.distribute_datasets_from_function(make_dataset)

    class ShardLoss(keras.losses.Loss):
        """sum(per-sample loss * sample_weight) + 0.5 * l2 * sum(kernel**2) / W per replica
        (sample_weight = 1/n), recorded into an on-read, sum-aggregated variable."""

        def __init__(self, inner, kernels, step) -> None:
            super().__init__(name=inner.name, dtype=dtype)
            inner.reduction = "sum"  # never Keras's divide-by-replicas mean
            self.inner, self.kernels, self.step = inner, list(kernels), step
            self.batch_losses = keras.Variable(
                np.zeros(n_steps, dtype=dtype), trainable=False, dtype=dtype,
                aggregation="sum", synchronization="on_read", name="batch_losses")

        def __call__(self, y_true, y_pred, sample_weight=None):
            loss = ops.sum(self.inner(y_true, y_pred, sample_weight=sample_weight))
            if train_spec.l2:
                loss = loss + l2_penalty(self.kernels, train_spec.l2 / world)
            step = ops.cast(self.step, "int32")
            self.batch_losses.assign(ops.slice_update(self.batch_losses, (step,),
                                                      ops.reshape(loss, (1,))))
            return loss

    with floatx(dtype), strategy.scope():
        model = build(built_spec, init, dtype, synchronized=True)
        optimizer = make_optimizer(train_spec.optimizer, dtype)
        loss = ShardLoss(make_loss(model_spec), penalised_variables(model), optimizer.iterations)
        model.compile(loss=loss, optimizer=optimizer, steps_per_execution=1)
        every = record_every(record_weights)
        tracker = _every_step_tracker(loss, get_weights if every else None, progress,
                                      steps_per_epoch, every)
        keeper = _start_weights(get_weights)
        callbacks = [keeper, tracker] + ([_fault_callback(fault)] if fault else [])
        # Before training, Keras's TF trainer builds the optimizer and metrics from a first
        # batch it gets by MEAN-reducing the replicas' first shards
        # (`_maybe_symbolic_build`), which fails when the shards differ in size (12 and 11
        # rows). Build from replica 0's first shard instead: only its structure and dtypes
        # matter there; the iterator is reset before training either way.
        first = next(iter(make_dataset().take(1)))

        def symbolic_build(iterator=None, data_batch=None):
            with strategy.scope():
                model._symbolic_build(data_batch=first)

        model._maybe_symbolic_build = symbolic_build
        model.fit(distributed, epochs=train_spec.epochs, steps_per_epoch=steps_per_epoch,
                  shuffle=False, verbose=0, callbacks=callbacks)
        done = int(ops.convert_to_numpy(optimizer.iterations))
        losses = np.asarray(ops.convert_to_numpy(loss.batch_losses.value),
                            dtype=np.float64)[:done]
        weights = get_weights(model)
    bad = np.flatnonzero(~np.isfinite(losses))
    stopped_at = int(bad[0]) if len(bad) else None
    if stopped_at is not None:
        losses = losses[:stopped_at + 1]
        # Keras applied the non-finite step's update before the run stopped: return the
        # weights that step started from, as keras_models.train, torch and TF1 do.
        weights = keeper.weights
    return History(framework=FRAMEWORK, losses=losses, weights=weights,
                   epoch_seconds=tracker.epoch_seconds,
                   step_weights=tracker.snapshots[:len(losses) // every] if every else None,
                   stopped_at=stopped_at, extra={"workers": world}, weights_every=every or 1)


def train(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
          init: dict[str, np.ndarray] | None = None, *, workers: int = 2,
          record_weights: bool | int = False, progress=None, timeout: float = DEFAULT_TIMEOUT,
          fault: dict | None = None) -> History:
    """Train like `keras_models.train.train` on `workers` mirrored replicas (logical CPU
    devices of one process, started here as a subprocess). `progress(epoch, step, loss)` is
    called for every step the subprocess reports on its stdout (from a reader thread).
    `fault` is a test hook (see `_fault_callback`).
    Imports no TensorFlow in this process."""
    check_inputs(model_spec, X, y, what="keras_models")
    world = check_workers(workers, train_spec.batch_size)
    with tempfile.TemporaryDirectory(prefix="zoo-mirrored-") as tmp:
        d = Path(tmp)
        np.savez(d / "data.npz", X=np.asarray(X), y=np.asarray(y))
        np.savez(d / "init.npz", **(init or {}))
        job = {"model": model_spec.to_dict(), "train": train_spec.to_dict(), "workers": world,
               "data": str(d / "data.npz"), "init": str(d / "init.npz") if init else None,
               "out": str(d / "out.npz"), "record_weights": record_weights, "fault": fault,
               "progress": progress is not None}
        on_event = None
        if progress is not None:
            def on_event(ev: dict) -> None:
                progress(ev["epoch"], ev["step"], ev["loss"])
        run_module("keras_models.distributed", job, d / "job.json", timeout, on_event)
        with np.load(d / "out.npz", allow_pickle=False) as z:
            hist = History.from_npz_dict(FRAMEWORK, {k: z[k] for k in z.files})
    hist.extra["workers"] = world
    return hist


def _print_progress(epoch: int, step: int, loss: float) -> None:
    sys.stdout.write(json.dumps({"epoch": epoch, "step": step, "loss": float(loss)}) + "\n")
    sys.stdout.flush()


def _main(job_path: str) -> int:
    """The subprocess: N logical CPU devices, a MirroredStrategy over them, train, write."""
    job = json.loads(Path(job_path).read_text())
    try:
        import tensorflow as tf

        world = int(job["workers"])
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(world)])
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:world]
        strategy = tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
        with np.load(job["data"], allow_pickle=False) as z:
            X, y = z["X"], z["y"]
        init = None
        if job["init"]:
            with np.load(job["init"], allow_pickle=False) as z:
                init = {k: z[k] for k in z.files}
        hist = train_mirrored(ModelSpec.from_dict(job["model"]),
                              TrainSpec.from_dict(job["train"]), X, y, init, strategy,
                              record_weights=job["record_weights"],
                              progress=_print_progress if job.get("progress") else None,
                              fault=job["fault"])
        np.savez(job["out"], **hist.to_npz_dict())
    except Exception as exc:  # one line for the parent; the traceback goes to stderr
        import traceback

        traceback.print_exc()
        write_error(job_path, exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
