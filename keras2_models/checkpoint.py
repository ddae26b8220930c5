"""Checkpoints of a Keras 2 training run (`zoo.checkpoint` holds the file format and the
checks).

`CheckpointCallback` saves at the end of every epoch (a `tf.keras.callbacks.Callback`, as
`fit`'s own checkpointing does): the model's weights (canonical layout, the BatchNorm moving
statistics included), every variable of the optimizer in `optimizer.variables` order (the
iteration counter, momentums, Adam's moments, ...) and the History so far. To resume, the
training loop builds the model from the saved weights, calls `restore` (which builds the
optimizer for the trained model's variables and assigns the saved values, the counter
included, so Adam's bias correction and the per-step loss slots continue) and runs
`fit(..., initial_epoch=epoch)` on the batches of the shared order from that epoch. Nothing
is pickled.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from zoo.checkpoint import Checkpoint, State
from zoo.errors import DataError

__all__ = ["CheckpointCallback", "restore"]


def _optimizer_arrays(optimizer) -> dict[str, np.ndarray]:
    return {f"{i:03d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}


def restore(state: State, model: tf.keras.Model, optimizer, batch_losses: tf.Variable) -> None:
    """Build `optimizer` for `model`'s trained variables (the order `fit` builds it in) and
    assign the saved optimizer variables; write the saved per-step losses into the first
    slots of `batch_losses`."""
    optimizer.build(model.trainable_variables)
    saved = state.optimizer
    variables = list(optimizer.variables)
    if sorted(saved) != [f"{i:03d}" for i in range(len(variables))]:
        raise DataError(f"the checkpoint holds {len(saved)} optimizer variables but this "
                        f"optimizer has {len(variables)}; start over with --force.")
    for i, var in enumerate(variables):
        value = saved[f"{i:03d}"]
        if tuple(value.shape) != tuple(var.shape):
            raise DataError(f"optimizer variable {var.name}: the checkpoint holds shape "
                            f"{value.shape}, the optimizer needs {tuple(var.shape)}; start "
                            "over with --force.")
        var.assign(value)
    if state.losses:
        values = np.asarray(batch_losses.numpy()).copy()
        values[:len(state.losses)] = state.losses
        batch_losses.assign(values)


class CheckpointCallback(tf.keras.callbacks.Callback):
    """Save a checkpoint at the end of every epoch whose losses were all finite.

    `model` is the zoo's Sequential (`fit` may train its masked model); put this callback
    after the one that appends the epoch's wall time to `epoch_seconds`."""

    def __init__(self, ckpt: Checkpoint, model: tf.keras.Model, get_weights: Callable,
                 batch_losses: tf.Variable, epoch_seconds: list[float]) -> None:
        super().__init__()
        self.ckpt, self.zoo_model, self.get_weights = ckpt, model, get_weights
        self.batch_losses, self.epoch_seconds = batch_losses, epoch_seconds

    def on_epoch_end(self, epoch, logs=None) -> None:
        optimizer = self.model.optimizer
        done = int(optimizer.iterations.numpy())
        losses = np.asarray(self.batch_losses.numpy(), dtype=np.float64)[:done]
        if self.model.stop_training or not np.all(np.isfinite(losses)):
            return  # diverged: keep the last good checkpoint
        self.ckpt.save(State(epoch=epoch + 1, weights=self.get_weights(self.zoo_model),
                             optimizer=_optimizer_arrays(optimizer), losses=list(losses),
                             epoch_seconds=list(self.epoch_seconds)))
