"""Keras 3 optimizers built from a framework-neutral `OptimizerSpec`.

`make_optimizer(spec)` applies the shared translation (`zoo.optimizers.keras_kwargs`: tiny
epsilon, float32-exact Adam betas, explicit lr) so that a Keras run agrees step by step with
the TF1 and PyTorch runs built from the same spec; in float64 runs the float hyperparameters
are passed as `np.float64` (a Python float would reach the float64 update through float32).
Keras 3 optimizers have no `minimize`;
train with `tf.GradientTape` and `optimizer.apply_gradients(zip(grads, variables))`.
"""

from __future__ import annotations

import keras
import numpy as np

from zoo.errors import ConfigError
from zoo.optimizers import OptimizerSpec, keras_kwargs, native_defaults_kwargs

__all__ = ["make_optimizer", "make_default_optimizer"]

_DTYPES = ("float32", "float64")


#: float hyperparameters that Keras turns into tensors with `ops.cast(value, variable.dtype)`
#: (or a Constant initializer): a Python float goes through float32 on the way, so a float64
#: run would use float32(0.9) = 0.8999999762 for the momentum; an np.float64 stays exact.
_FLOAT_ARGS = ("momentum", "rho", "epsilon", "beta_1", "beta_2", "initial_accumulator_value")


def _build(cls_name: str, kwargs: dict, dtype: str, *, translated: bool = True
           ) -> keras.optimizers.Optimizer:
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {_DTYPES}, got {dtype!r}.")
    cls = getattr(keras.optimizers, cls_name)
    if dtype == "float64" and translated:
        kwargs = {k: (np.float64(v) if k in _FLOAT_ARGS else v) for k, v in kwargs.items()}
    # The optimizer's lr variable takes keras.config.floatx() at construction, and every update
    # casts it to the variable's dtype: a float64 run would silently use float32(lr)
    # (0.0099999998 for 0.01). So floatx is switched for the construction only.
    old = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        return cls(**kwargs)
    finally:
        keras.config.set_floatx(old)


def make_optimizer(spec: OptimizerSpec, dtype: str = "float32") -> keras.optimizers.Optimizer:
    """A Keras 3 optimizer equivalent to the TF1 and torch ones built from `spec`.

    `dtype` is the dtype of the variables it will train (its lr variable gets the same
    dtype). Works for any list of `tf.Variable`/`keras.Variable` via `apply_gradients`.
    """
    cls_name, kwargs = keras_kwargs(spec)
    return _build(cls_name, kwargs, dtype)


def make_default_optimizer(name: str, lr: float,
                           dtype: str = "float32") -> keras.optimizers.Optimizer:
    """The optimizer a port passing only `lr` gets (Keras's own defaults): the baseline that
    shows what the translation in `make_optimizer` is for."""
    cls_name, kwargs = native_defaults_kwargs(name, lr, "keras")
    return _build(cls_name, kwargs, dtype, translated=False)
