"""TF1 (`tf.compat.v1.train`) optimizers built from a framework-neutral `OptimizerSpec`.

`make_optimizer(spec, dtype)` applies the shared translation (`zoo.optimizers.tf1_kwargs`).
Two compensations go beyond the shared translation:
- `AdamOptimizer` keeps beta1^t and beta2^t in non-slot variables of the dtype of its beta
  arguments, float32 for Python floats, and multiplies them by beta every step: their
  rounding accumulates (Keras computes pow(beta, t) in float32 afresh each step, torch in
  float64), and a float32 MLP drifts from the float64 reference by 5e-2 in 450 steps where
  Keras and torch stay within 1e-5 (docs/porting.md, "TF1 Adam's beta powers"). So the betas
  are passed as float64 tensors whatever the dtype: the accumulators become float64 and are
  cast to the variables' dtype where they are used (`FLOAT64_BETA_POWERS`).
- `RMSPropOptimizer` creates its 'rms' slot with a ones initializer (Keras and torch start
  from zero), so after running the variable initializer call `after_init(sess, optimizer,
  var_list)`, which zeroes it.
Build the optimizer and call `minimize` inside `with graph.as_default():`; `after_init` works
on the session's graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from zoo.errors import ConfigError
from zoo.optimizers import (
    TF1_SLOTS_TO_ZERO,
    OptimizerSpec,
    native_defaults_kwargs,
    tf1_kwargs,
)

__all__ = ["FLOAT64_BETA_POWERS", "after_init", "make_default_optimizer", "make_optimizer"]

tf1 = tf.compat.v1

_DTYPES = {"float32": tf.float32, "float64": tf.float64}
#: float hyperparameters that TF1 converts with convert_to_tensor (-> float32) and then casts
#: to the variable dtype; for float64 they are passed as float64 constants instead.
_TENSOR_ARGS = ("learning_rate", "momentum", "decay", "epsilon", "beta1", "beta2")
#: Adam's beta powers accumulate in float64 in float32 runs too (see the module docstring);
#: the porting test sets it to False to measure TF1's own behaviour.
FLOAT64_BETA_POWERS = True


def _build(cls_name: str, kwargs: dict, dtype: str, *, translated: bool = True
           ) -> tf1.train.Optimizer:
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {tuple(_DTYPES)}, got {dtype!r}.")
    if dtype == "float64":
        # GradientDescentOptimizer(0.01) would apply float32(0.01) = 0.0099999998 to a float64
        # variable; AdamOptimizer would even create float32 beta-power accumulators.
        kwargs = {k: (tf.constant(v, tf.float64) if k in _TENSOR_ARGS else v)
                  for k, v in kwargs.items()}
    elif translated and FLOAT64_BETA_POWERS and cls_name == "AdamOptimizer":
        # float64 accumulators of beta^t, for the beta TF1 applies to the moments: the float32
        # one (a no-op for the zoo's float32-exact betas; 0.9 would otherwise meet
        # float32(0.9) in the moments, the mix that makes Keras drift, gotcha "adam_betas")
        kwargs = {k: (tf.constant(float(np.float32(v)), tf.float64)
                      if k in ("beta1", "beta2") else v) for k, v in kwargs.items()}
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
    return _build(cls_name, kwargs, dtype, translated=False)


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
