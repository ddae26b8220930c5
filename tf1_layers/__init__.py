"""The zoo's models as TF1 code was written: `tf.compat.v1.layers` (dense, conv2d,
max_pooling2d, average_pooling2d, flatten, batch_normalization with UPDATE_OPS, dropout),
`tf.compat.v1.nn.rnn_cell.LSTMCell` / `GRUCell` run by `tf.compat.v1.nn.dynamic_rnn`,
`tf.nn.embedding_lookup`, `tf.compat.v1.train` optimizers and a `Session`, each model in its
own `tf.Graph`. The variables carry the names those layer classes give them (`dense/kernel`,
`dense_1/kernel`, `batch_normalization/moving_mean`, `rnn/lstm_cell/kernel`): the
"tf1-layers" column of the weight tables (`zoo.layers`).

Those classes exist only with Keras 2: under Keras 3, `tf.compat.v1.layers` and
`tf.compat.v1.nn.rnn_cell` forward to a Keras that has no TF1 layers. With
`TF_USE_LEGACY_KERAS=1` set before TensorFlow is imported, `tf.keras` is Keras 2 (`tf_keras`)
and they work, in that process only. The zoo runs this package in processes of its own whose
environment the registry gives (`zoo.frameworks`, framework "tf1-layers"); importing it
anywhere else is refused here, before TensorFlow is imported, with one line naming the fix:
without the variable, or in a process that already imported Keras 3 (the `keras` module),
since one process cannot hold both Keras versions.
"""

from __future__ import annotations

import os
import sys

from zoo.errors import ConfigError

__all__ = ["LEGACY_ENV", "check_process"]

#: the variable (and value) that makes `tf.keras` Keras 2 in a process
LEGACY_ENV = ("TF_USE_LEGACY_KERAS", "1")
#: the values TensorFlow itself takes for it (`tensorflow/python/util/lazy_loader.py`)
_ACCEPTED = ("1", "true", "True")


def check_process() -> None:
    """Refuse (ConfigError) a process in which TF1's layer classes cannot work."""
    name, value = LEGACY_ENV
    if "keras" in sys.modules:
        raise ConfigError(
            "tf1_layers needs Keras 2 but Keras 3 (the keras module) is already imported in "
            "this process: mixing both Keras versions in one process does not work; run "
            "tf1_layers in a process of its own with TF_USE_LEGACY_KERAS=1 set before anything "
            "imports tensorflow or keras (the zoo's workers do: `zoo compare MODEL "
            "--frameworks tf1-layers,...`).")
    if os.environ.get(name) not in _ACCEPTED:
        raise ConfigError(
            f"tf1_layers needs Keras 2 (tf_keras), which TensorFlow uses only with "
            f"{name}={value} set before it is imported (it is "
            f"{os.environ.get(name, 'unset')!r} here); start the process with "
            f"{name}={value}, or run the tf1-layers framework through the zoo (`zoo compare "
            "MODEL --frameworks tf1-layers,...` starts such a process).")


check_process()
