"""Keras 2 (`tf_keras`) optimizers built from a framework-neutral `OptimizerSpec`.

`tf.keras.optimizers.SGD`, `RMSprop`, `Adam`, `Adagrad` under TF_USE_LEGACY_KERAS=1 are
tf_keras's optimizers of Keras 2.11 and later: the same arguments and defaults as Keras 3's,
so `make_optimizer` applies the Keras translation itself (`zoo.optimizers.keras_kwargs`: a tiny
epsilon, float32-exact Adam betas, the lr always passed as `learning_rate`; the registry of
compensations, `zoo.optimizers.translation_notes`, has the keras2 rows). Two Keras 2 details
matter:

- `lr=` is not an error there: the optimizer pops it, logs a warning and trains with its
  DEFAULT learning rate (`SGD(lr=0.5)` takes steps of 0.01; docs/porting.md). The legacy
  optimizers (`tf.keras.optimizers.legacy.*`, Keras 2's classes before 2.11) still honour it.
  The zoo only ever passes `learning_rate`.
- float64: the optimizers turn a Python-float momentum or beta (the legacy ones: the learning
  rate too) into a tensor with `tf.cast(value, variable.dtype)`, which goes through float32
  (0.9 becomes 0.8999999762), so float64 runs pass the float hyperparameters as `np.float64`;
  the v2.11+ learning rate is a variable of `tf.keras.backend.floatx()`, so floatx is float64
  while a float64 optimizer is built.

`legacy=True` builds the same translation with `tf.keras.optimizers.legacy.<class>` (Keras 2's
OptimizerV2: TF's fused training ops), which Keras 2 code written before 2.11 trains with;
the tests check that both agree with Keras 3, TF1 and torch once translated.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from zoo.errors import ConfigError
from zoo.optimizers import OptimizerSpec, keras_kwargs, native_defaults_kwargs

__all__ = ["make_default_optimizer", "make_optimizer"]

_DTYPES = ("float32", "float64")
#: float hyperparameters that reach the update through `tf.cast(value, dtype)` (the legacy
#: optimizers' learning rate too)
_FLOAT_ARGS = ("learning_rate", "momentum", "rho", "epsilon", "beta_1", "beta_2",
               "initial_accumulator_value")


def _build(cls_name: str, kwargs: dict, dtype: str, *, legacy: bool = False,
           translated: bool = True):
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {_DTYPES}, got {dtype!r}.")
    namespace = tf.keras.optimizers.legacy if legacy else tf.keras.optimizers
    cls = getattr(namespace, cls_name)
    if dtype == "float64" and translated:
        kwargs = {k: (np.float64(v) if k in _FLOAT_ARGS else v) for k, v in kwargs.items()}
    old = tf.keras.backend.floatx()
    tf.keras.backend.set_floatx(dtype)
    try:
        return cls(**kwargs)
    finally:
        tf.keras.backend.set_floatx(old)


def make_optimizer(spec: OptimizerSpec, dtype: str = "float32", *, legacy: bool = False):
    """A Keras 2 optimizer equivalent to the Keras 3, TF1 and torch ones built from `spec`
    (`legacy=True`: the pre-2.11 `tf.keras.optimizers.legacy` class). `dtype` is the dtype
    of the variables it will train (its learning rate gets the same dtype)."""
    cls_name, kwargs = keras_kwargs(spec)
    return _build(cls_name, kwargs, dtype, legacy=legacy)


def make_default_optimizer(name: str, lr: float, dtype: str = "float32", *,
                           legacy: bool = False):
    """The optimizer a port passing only `lr` gets (Keras 2's own defaults, Keras 3's): the
    baseline that shows what the translation in `make_optimizer` is for."""
    cls_name, kwargs = native_defaults_kwargs(name, lr, "keras2")
    return _build(cls_name, kwargs, dtype, legacy=legacy, translated=False)
