"""Checkpoints of a TF1 training run (`zoo.checkpoint` holds the file format and the checks).

The state saved at the end of every epoch: the model's weights (canonical layout, BatchNorm's
moving statistics included: they are model variables, `trainable=False`, so a resumed run
continues from the moving statistics the first epochs left, bit for bit) and every other
global variable of the model's graph that training updates, by its TF name: the
optimizer's slots (`dense_0/kernel/Momentum`, `.../Adam`, `.../Adam_1`, RMSprop's `rms`, ...)
and non-slot variables (Adam's `beta1_power`, `beta2_power`). The training loop builds the
graph from the saved weights; `OptimizerState.restore` assigns the rest after the variable
initializer (and after `after_init`, whose zeroed RMSprop slot it overwrites with the saved
one). Nothing is pickled; no `Saver` is used (its two files could not be replaced atomically
as one).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from zoo.checkpoint import Checkpoint, State

__all__ = ["OptimizerState"]

tf1 = tf.compat.v1


class OptimizerState:
    """Reads and assigns the graph's variables other than the model's weights (moving
    statistics included: they travel with the weights) and the training loop's own `backup/`
    copies of them and `record/` rings of recorded steps. Create it after `minimize`."""

    def __init__(self, graph: tf.Graph, model_variables: dict[str, tf.Variable]) -> None:
        with graph.as_default():
            self.variables = {
                v.name.split(":")[0]: v for v in tf1.global_variables()
                if v.name.split(":")[0] not in model_variables
                and not v.name.startswith(("backup/", "record/"))}
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
        """Write the state after `epoch` completed epochs (atomically, see `zoo.checkpoint`)."""
        ckpt.save(State(epoch=epoch, weights=weights, optimizer=self.values(sess),
                        losses=list(losses), epoch_seconds=list(epoch_seconds)))

    def restore(self, sess: tf1.Session, state: State) -> None:
        """Assign `state.optimizer` to the graph's optimizer variables (names must match)."""
        missing = sorted(set(self.variables) ^ set(state.optimizer))
        if missing:
            from zoo.errors import DataError

            raise DataError(f"the checkpoint's optimizer state does not fit this graph: "
                            f"{missing} differ; start over with --force.")
        ops, feed = [], {}
        for name, (ph, op) in self._assign.items():
            feed[ph] = state.optimizer[name]
            ops.append(op)
        if ops:
            sess.run(ops, feed_dict=feed)
