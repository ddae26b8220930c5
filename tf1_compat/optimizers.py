"""TF1 (`tf.compat.v1.train`) optimizers built from a framework-neutral `OptimizerSpec`.

`make_optimizer(spec, dtype)` applies the shared translation (`zoo.optimizers.tf1_kwargs`).
One compensation cannot be made in the constructor: `RMSPropOptimizer` creates its 'rms'
slot with a ones initializer (Keras and torch start from zero), so after running the
variable initializer call `after_init(sess, optimizer, var_list)`, which zeroes it. Build the
optimizer and call `minimize` inside `with graph.as_default():`; `after_init` works on the
session's graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from zoo.errors import ConfigError
from zoo.optimizers import (
    TF1_SLOTS_TO_ZERO,
    OptimizerSpec,
    native_defaults_kwargs,
    tf1_kwargs,
)

__all__ = ["after_init", "make_default_optimizer", "make_optimizer"]

tf1 = tf.compat.v1

_DTYPES = {"float32": tf.float32, "float64": tf.float64}
#: float hyperparameters that TF1 converts with convert_to_tensor (-> float32) and then casts
#: to the variable dtype; for float64 they are passed as float64 constants instead.
_TENSOR_ARGS = ("learning_rate", "momentum", "decay", "epsilon", "beta1", "beta2")


def _build(cls_name: str, kwargs: dict, dtype: str) -> tf1.train.Optimizer:
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {tuple(_DTYPES)}, got {dtype!r}.")
    if dtype == "float64":
        # GradientDescentOptimizer(0.01) would apply float32(0.01) = 0.0099999998 to a float64
        # variable; AdamOptimizer would even create float32 beta-power accumulators.
        kwargs = {k: (tf.constant(v, tf.float64) if k in _TENSOR_ARGS else v)
                  for k, v in kwargs.items()}
    return getattr(tf1.train, cls_name)(**kwargs)


def make_optimizer(spec: OptimizerSpec, dtype: str = "float32") -> tf1.train.Optimizer:
    """A `tf.compat.v1.train` optimizer equivalent to the Keras and torch ones for `spec`.

    Call inside the graph it will be used in (float64 builds constants in the default graph).
    Remember `after_init(sess, optimizer, var_list)` after initialising the variables.
    """
    cls_name, kwargs = tf1_kwargs(spec)
    return _build(cls_name, kwargs, dtype)


def make_default_optimizer(name: str, lr: float, dtype: str = "float32") -> tf1.train.Optimizer:
    """TF1's own defaults (the untranslated baseline; do not call `after_init` to keep the
    ones-initialised RMSprop slot)."""
    cls_name, kwargs = native_defaults_kwargs(name, lr, "tf1")
    return _build(cls_name, kwargs, dtype)


def after_init(sess: tf1.Session, optimizer: tf1.train.Optimizer,
               var_list: Sequence[tf.Variable]) -> None:
    """Fix the state TF1 initialises differently from Keras and torch; run after the
    variable initializer. Currently: zero RMSPropOptimizer's 'rms' slot (TF1 starts it at
    one). A no-op for the other optimizers, so training loops can always call it."""
    names = TF1_SLOTS_TO_ZERO.get(type(optimizer).__name__, ())
    if not names:
        return
    with sess.graph.as_default():
        ops = []
        for var in var_list:
            for name in names:
                slot = optimizer.get_slot(var, name)
                if slot is not None:
                    ops.append(slot.assign(tf.zeros_like(slot)))
        if ops:
            sess.run(ops)
