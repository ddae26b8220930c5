"""The quadratic-minimisation demo (seeds 000 and 004) and the saddle demo in TF2 / Keras 3:
`tf.Variable`, `tf.GradientTape` and a Keras 3 optimizer's `apply_gradients`, eagerly or with
the whole loop compiled into one `tf.function` (`compiled=True`).

Seed 004's TF2 code calls `tf.optimizers.SGD(learning_rate=0.01).minimize(cost, var_list=[w])`.
Since TensorFlow 2.16 `tf.optimizers` *is* Keras 3, whose optimizers have no `minimize`, so
that line raises ``AttributeError: 'SGD' object has no attribute 'minimize'``. The working
replacement, which `minimize` below runs 1000 times::

    w = tf.Variable(0.0)
    opt = keras.optimizers.SGD(learning_rate=0.01)
    with tf.GradientTape() as tape:
        cost = w**2 - 10 * w + 25
    opt.apply_gradients([(tape.gradient(cost, w), w)])

The coefficients are arguments (seed 004 keeps them in a `tf.Variable`; a tensor argument of a
`tf.function` plays the placeholder's role without retracing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_models.optimizers import make_default_optimizer, make_optimizer
from zoo.optimizers import OptimizerSpec
from zoo.quadratic import (
    SADDLE_START,
    SADDLE_THRESHOLD,
    SEED_COEFFICIENTS,
    SEED_OPTIMIZER,
    check_coefficients,
    check_dtype,
    check_start,
    check_steps,
    escape_index,
)

__all__ = ["escape_steps", "minimize", "saddle"]

LossFn = Callable[[list[tf.Variable], tf.Tensor], tf.Tensor]


def _descend(loss_fn: LossFn, start: Sequence[float], data: np.ndarray,
             optimizer: keras.optimizers.Optimizer | OptimizerSpec, steps: int, dtype: str,
             compiled: bool, stop_index: int | None = None,
             threshold: float | None = None,
             defaults: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Run up to `steps` optimizer steps on scalar variables; return (values (n+1, k), loss
    (n+1,)), row 0 = the start. With a threshold, stop after the first step at which
    |variable[stop_index]| >= threshold."""
    tf_dtype = tf.as_dtype(dtype)
    variables = [tf.Variable(v, dtype=tf_dtype) for v in start]
    if isinstance(optimizer, keras.optimizers.Optimizer):
        opt = optimizer
    elif defaults:
        opt = make_default_optimizer(optimizer.name, optimizer.lr, dtype)
    else:
        opt = make_optimizer(optimizer, dtype)
    # Build the slots eagerly: a tf.function must not create variables on later traces.
    opt.build(variables)
    data_t = tf.constant(data, tf_dtype)
    limit = np.inf if threshold is None else threshold

    def step(k_data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = loss_fn(variables, k_data)
        grads = tape.gradient(loss, variables)
        values = tf.stack([v.read_value() for v in variables])  # before the update
        opt.apply_gradients(zip(grads, variables, strict=True))
        return values, loss

    def final(k_data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.stack([v.read_value() for v in variables]), loss_fn(variables, k_data)

    if not compiled:
        vals, losses = [], []
        for _ in range(steps):
            if abs(float(variables[stop_index or 0].numpy())) >= limit:
                break
            v, loss = step(data_t)
            vals.append(v.numpy())
            losses.append(loss.numpy())
        v, loss = final(data_t)
        vals.append(v.numpy())
        losses.append(loss.numpy())
        return np.stack(vals), np.asarray(losses)

    @tf.function
    def loop(k_data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        vals = tf.TensorArray(tf_dtype, size=0, dynamic_size=True)
        losses = tf.TensorArray(tf_dtype, size=0, dynamic_size=True)
        n = tf.constant(0)
        for _ in tf.range(steps):
            if tf.abs(variables[stop_index or 0]) >= limit:
                break
            v, loss = step(k_data)
            vals = vals.write(n, v)
            losses = losses.write(n, loss)
            n += 1
        v, loss = final(k_data)
        return vals.write(n, v).stack(), losses.write(n, loss).stack()

    vals, losses = loop(data_t)
    return vals.numpy(), losses.numpy()


def _quadratic_loss(variables: list[tf.Variable], x: tf.Tensor) -> tf.Tensor:
    w = variables[0]
    return x[0][0] * w**2 + x[1][0] * w + x[2][0]  # seed 004's cost__, coefficients in x


def minimize(coefficients: Iterable[float] = SEED_COEFFICIENTS, w0: float = 0.0,
             optimizer: OptimizerSpec = SEED_OPTIMIZER, steps: int = 1000,
             dtype: str = "float32", compiled: bool = False,
             defaults: bool = False) -> dict[str, np.ndarray]:
    """Minimise J(w) = a*w**2 + b*w + c; {"w", "cost"} with steps+1 entries (0 = start).

    compiled=True runs the whole loop inside one `tf.function` (same numbers as eager).
    defaults=True uses Keras's own defaults for everything but the lr instead of the shared
    translation (to measure what the translation is for)."""
    coeffs = np.asarray(check_coefficients(coefficients), dtype=np.float64).reshape(3, 1)
    (w0,) = check_start([w0], 1)
    vals, losses = _descend(_quadratic_loss, [w0], coeffs, optimizer, check_steps(steps),
                            check_dtype(dtype), compiled, defaults=defaults)
    return {"w": vals[:, 0], "cost": losses}


def _saddle_loss(variables: list[tf.Variable], _: tf.Tensor) -> tf.Tensor:
    x, y = variables
    return x**2 - y**2


def saddle(optimizer: OptimizerSpec = SEED_OPTIMIZER, start: Sequence[float] = SADDLE_START,
           steps: int = 1000, threshold: float | None = SADDLE_THRESHOLD,
           dtype: str = "float32", compiled: bool = False) -> dict[str, np.ndarray]:
    """f(x, y) = x**2 - y**2 from `start`; {"x", "y", "f"}, stopping after the step at which
    |y| >= threshold (None: run all steps)."""
    start = check_start(start, 2)
    vals, losses = _descend(_saddle_loss, start, np.zeros(1), optimizer, check_steps(steps),
                            check_dtype(dtype), compiled, stop_index=1, threshold=threshold)
    return {"x": vals[:, 0], "y": vals[:, 1], "f": losses}


def escape_steps(optimizer: OptimizerSpec, start: Sequence[float] = SADDLE_START,
                 threshold: float = SADDLE_THRESHOLD, max_steps: int = 2000,
                 dtype: str = "float32") -> int | None:
    """Steps until |y| >= threshold on the saddle (None if not within max_steps)."""
    run = saddle(optimizer, start, max_steps, threshold, dtype, compiled=True)
    return escape_index(run["y"], threshold)
