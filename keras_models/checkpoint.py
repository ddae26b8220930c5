"""Checkpoints of a Keras training run (`zoo.checkpoint` holds the file format and the checks).

`CheckpointCallback` saves at the end of every epoch (a `keras.callbacks.Callback`, as
`fit`'s own checkpointing does): the model's weights (canonical layout, the BatchNorm moving
statistics included: they are rows of the weight table, restored with the weights), every
variable of the optimizer in `optimizer.variables` order (`iterations`, the learning rate,
momentums, Adam's moments, ...) and the History so far. To resume, the training loop builds the model
from the saved weights, calls `restore` (which builds the optimizer and assigns its
variables, `iterations` included, so Adam's bias correction and the per-step loss slots
continue), and runs `fit(..., initial_epoch=epoch)` on a `ZooBatches` that starts at that
epoch of the shared batch order. Nothing is pickled; no `.keras` file is written (it could not
hold the History, and its optimizer state would need the same care).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import ops

from zoo.checkpoint import Checkpoint, State
from zoo.errors import DataError

__all__ = ["CheckpointCallback", "restore"]


def _optimizer_arrays(optimizer: keras.optimizers.Optimizer) -> dict[str, np.ndarray]:
    return {f"{i:03d}": np.asarray(ops.convert_to_numpy(v))
            for i, v in enumerate(optimizer.variables)}


def restore(state: State, model: keras.Model, optimizer: keras.optimizers.Optimizer,
            batch_losses: keras.Variable) -> None:
    """Build `optimizer` for `model` and assign the saved optimizer variables; write the saved
    per-step losses into the first slots of `batch_losses`."""
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    saved = state.optimizer
    if sorted(saved) != [f"{i:03d}" for i in range(len(optimizer.variables))]:
        raise DataError(f"the checkpoint holds {len(saved)} optimizer variables but this "
                        f"optimizer has {len(optimizer.variables)}; start over with --force.")
    for i, var in enumerate(optimizer.variables):
        value = saved[f"{i:03d}"]
        if tuple(value.shape) != tuple(var.shape):
            raise DataError(f"optimizer variable {var.path}: the checkpoint holds shape "
                            f"{value.shape}, the optimizer needs {tuple(var.shape)}; start "
                            "over with --force.")
        var.assign(value)
    if state.losses:
        values = np.asarray(ops.convert_to_numpy(batch_losses)).copy()
        values[:len(state.losses)] = state.losses
        batch_losses.assign(values)


class CheckpointCallback(keras.callbacks.Callback):
    """Save a checkpoint at the end of every epoch whose losses were all finite.

    Put it after the callback that appends the epoch's wall time to `epoch_seconds`."""

    def __init__(self, ckpt: Checkpoint, get_weights: Callable, batch_losses: keras.Variable,
                 epoch_seconds: list[float]) -> None:
        super().__init__()
        self.ckpt, self.get_weights = ckpt, get_weights
        self.batch_losses, self.epoch_seconds = batch_losses, epoch_seconds

    def on_epoch_end(self, epoch, logs=None) -> None:
        optimizer = self.model.optimizer
        done = int(ops.convert_to_numpy(optimizer.iterations))
        losses = np.asarray(ops.convert_to_numpy(self.batch_losses), dtype=np.float64)[:done]
        if self.model.stop_training or not np.all(np.isfinite(losses)):
            return  # diverged: keep the last good checkpoint
        self.ckpt.save(State(epoch=epoch + 1, weights=self.get_weights(self.model),
                             optimizer=_optimizer_arrays(optimizer), losses=list(losses),
                             epoch_seconds=list(self.epoch_seconds)))
