"""`tf.compat.v1.train` optimizers for the TF1-layers column, from a framework-neutral
`OptimizerSpec`: the translation of `zoo.optimizers.tf1_kwargs` and the two compensations
`tf1_compat.optimizers` applies, the same here (the framework packages do not import each
other, so this module repeats its few lines rather than importing them):

- `AdamOptimizer` keeps beta1^t and beta2^t in variables of its betas' dtype and multiplies
  them every step; as Python floats they are float32 and their rounding accumulates (a float32
  MLP drifted 5e-2 from the float64 reference in 450 steps, docs/porting.md "TF1 Adam's beta
  powers"). The betas are passed as float64 tensors, so the powers accumulate in float64.
- `RMSPropOptimizer` creates its 'rms' slot with a ones initializer (Keras and torch start it
  at zero): `after_init(sess, optimizer, var_list)` zeroes it after the variable initializer.

In float64 every hyperparameter is a float64 constant (TF1 would convert a Python float to a
float32 tensor first: `GradientDescentOptimizer(0.01)` would apply 0.0099999998).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from zoo.errors import ConfigError
from zoo.optimizers import TF1_SLOTS_TO_ZERO, OptimizerSpec, tf1_kwargs

__all__ = ["after_init", "make_optimizer"]

tf1 = tf.compat.v1

_DTYPES = ("float32", "float64")
#: float hyperparameters TF1 converts with convert_to_tensor (float32) and then casts
_TENSOR_ARGS = ("learning_rate", "momentum", "decay", "epsilon", "beta1", "beta2")


def make_optimizer(spec: OptimizerSpec, dtype: str = "float32") -> tf1.train.Optimizer:
    """A `tf.compat.v1.train` optimizer equal to the Keras and torch ones for `spec`. Build it
    inside the graph it is used in; call `after_init` once the variables are initialised."""
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {_DTYPES}, got {dtype!r}.")
    cls_name, kwargs = tf1_kwargs(spec)
    if dtype == "float64":
        kwargs = {k: (tf.constant(v, tf.float64) if k in _TENSOR_ARGS else v)
                  for k, v in kwargs.items()}
    elif cls_name == "AdamOptimizer":  # float64 beta powers of the float32 betas
        kwargs = {k: (tf.constant(float(np.float32(v)), tf.float64)
                      if k in ("beta1", "beta2") else v) for k, v in kwargs.items()}
    return getattr(tf1.train, cls_name)(**kwargs)


def after_init(sess: tf1.Session, optimizer: tf1.train.Optimizer,
               var_list: Sequence[tf.Variable]) -> None:
    """Zero the slots TF1 starts elsewhere than Keras and torch (RMSprop's 'rms'); a no-op for
    the other optimizers."""
    names = TF1_SLOTS_TO_ZERO.get(type(optimizer).__name__, ())
    if not names:
        return
    with sess.graph.as_default():
        ops = [slot.assign(tf.zeros_like(slot)) for var in var_list for name in names
               if (slot := optimizer.get_slot(var, name)) is not None]
        if ops:
            sess.run(ops)
