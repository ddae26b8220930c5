"""Checkpoints of a tf1-layers training run (`zoo.checkpoint` holds the file format and the
checks): after every epoch, the model's canonical weights (BatchNorm's moving statistics
included) and every other global variable of the graph that training updates, by its TF
name: the optimizer's slots (`dense/kernel/Adam`, `rnn/lstm_cell/kernel/Momentum`, RMSprop's
`rms`, ...) and non-slot variables (Adam's `beta1_power`, `beta2_power`). The training loop
builds the graph from the saved weights; `OptimizerState.restore` assigns the rest after the
variable initializer and `after_init`. Nothing is pickled.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from zoo.checkpoint import Checkpoint, State
from zoo.errors import DataError

__all__ = ["OptimizerState"]

tf1 = tf.compat.v1


class OptimizerState:
    """Reads and assigns the graph's variables other than the model's and the training
    loop's `backup/` copies. Create it after `minimize`."""

    def __init__(self, graph: tf.Graph, model_variables: dict[str, tf.Variable]) -> None:
        with graph.as_default():
            self.variables = {v.op.name: v for v in tf1.global_variables()
                              if v.op.name not in model_variables
                              and not v.op.name.startswith("backup/")}
            self._assign = {}
            with tf1.name_scope("restore"):
                for name, v in self.variables.items():
                    ph = tf1.placeholder(v.dtype.base_dtype, v.shape)
                    self._assign[name] = (ph, v.assign(ph))

    def values(self, sess: tf1.Session) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in sess.run(self.variables).items()}

    def save(self, ckpt: Checkpoint, epoch: int, sess: tf1.Session,
             weights: dict[str, np.ndarray], losses: list[float],
             epoch_seconds: list[float]) -> None:
        """Write the state after `epoch` completed epochs (atomically, `zoo.checkpoint`)."""
        ckpt.save(State(epoch=epoch, weights=weights, optimizer=self.values(sess),
                        losses=list(losses), epoch_seconds=list(epoch_seconds)))

    def restore(self, sess: tf1.Session, state: State) -> None:
        """Assign `state.optimizer` to the graph's optimizer variables (names must match)."""
        differ = sorted(set(self.variables) ^ set(state.optimizer))
        if differ:
            raise DataError(f"the checkpoint's optimizer state does not fit this graph: "
                            f"{differ} differ; start over with --force.")
        feed, ops = {}, []
        for name, (ph, op) in self._assign.items():
            feed[ph] = state.optimizer[name]
            ops.append(op)
        if ops:
            sess.run(ops, feed_dict=feed)
