"""The quadratic-minimisation demo (seeds 000 and 004) and the saddle demo as TF1-style graphs:
a variable with an explicit initial value, a placeholder for the coefficients, a
`tf.compat.v1.train` optimizer's `minimize`, a `Session` and `feed_dict` — the seeds' idiom,
built in a `tf.Graph()` of its own (eager execution stays on for the rest of the process).

Two deliberate departures from the seed's code, both for agreement with Keras and torch:
the variable gets an explicit initializer (TF1's `get_variable` default, glorot_uniform, would
start w at a random value), and the optimizer comes from `tf1_compat.optimizers` (with
`after_init` run after `global_variables_initializer`).

`QuadraticGraph` is built once and can be fed different coefficients (seed 004's quiz feeds
[1, -20, 100] to the same graph that minimises [1, -10, 25]).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from tf1_compat.optimizers import after_init, make_default_optimizer, make_optimizer
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

__all__ = ["QuadraticGraph", "escape_steps", "minimize", "saddle"]

tf1 = tf.compat.v1


class QuadraticGraph:
    """J(w) = x[0][0]*w**2 + x[1][0]*w + x[2][0] with x a [3, 1] placeholder, its optimizer's
    train op, and a Session. `run(coefficients, steps)` re-initialises w (and the optimizer's
    slots) and runs `steps` training steps fed with `coefficients`. defaults=True builds the
    optimizer from TF1's own defaults and skips `after_init` (the untranslated baseline);
    fix_init=False skips only `after_init` (isolates RMSprop's ones-initialised slot)."""

    def __init__(self, w0: float = 0.0, optimizer: OptimizerSpec = SEED_OPTIMIZER,
                 dtype: str = "float32", defaults: bool = False,
                 fix_init: bool | None = None) -> None:
        (w0,) = check_start([w0], 1)
        dt = tf.as_dtype(check_dtype(dtype))
        self.graph = tf.Graph()
        with self.graph.as_default():
            # explicit initializer: the default one draws w0 at random
            self.w = tf1.get_variable("w", initializer=tf.constant(w0, dt))
            self.x = tf1.placeholder(dt, [3, 1], name="coefficients")
            self.cost = self.x[0][0] * self.w**2 + self.x[1][0] * self.w + self.x[2][0]
            self.fix_init = (not defaults) if fix_init is None else fix_init
            self.optimizer = (make_default_optimizer(optimizer.name, optimizer.lr, dtype)
                              if defaults else make_optimizer(optimizer, dtype))
            # One Session.run per step fetches w, J and the update together: the control
            # dependency makes the update wait until w and J have been read.
            self.w_now = tf.identity(self.w)
            with tf.control_dependencies([self.w_now, self.cost]):
                self.train = self.optimizer.minimize(self.cost, var_list=[self.w])
            self.init = tf1.global_variables_initializer()
        self.session = tf1.Session(graph=self.graph)

    def run(self, coefficients: Iterable[float] = SEED_COEFFICIENTS,
            steps: int = 1000) -> dict[str, np.ndarray]:
        """{"w", "cost"}, steps+1 entries each (0 = the start)."""
        coeffs = np.asarray(check_coefficients(coefficients), dtype=np.float64).reshape(3, 1)
        steps = check_steps(steps)
        sess, feed = self.session, {self.x: coeffs}
        sess.run(self.init)
        if self.fix_init:
            after_init(sess, self.optimizer, [self.w])
        ws, costs = [], []
        for _ in range(steps):
            w, c, _ = sess.run([self.w_now, self.cost, self.train], feed_dict=feed)
            ws.append(w)
            costs.append(c)
        w, c = sess.run([self.w_now, self.cost], feed_dict=feed)
        return {"w": np.asarray([*ws, w]), "cost": np.asarray([*costs, c])}

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> QuadraticGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def minimize(coefficients: Iterable[float] = SEED_COEFFICIENTS, w0: float = 0.0,
             optimizer: OptimizerSpec = SEED_OPTIMIZER, steps: int = 1000,
             dtype: str = "float32", defaults: bool = False) -> dict[str, np.ndarray]:
    """Minimise J(w) = a*w**2 + b*w + c; {"w", "cost"} with steps+1 entries (0 = start).

    defaults=True uses TF1's own defaults (and its ones-initialised RMSprop slot)."""
    coefficients = check_coefficients(coefficients)
    with QuadraticGraph(w0, optimizer, dtype, defaults) as g:
        return g.run(coefficients, steps)


def saddle(optimizer: OptimizerSpec = SEED_OPTIMIZER, start: Sequence[float] = SADDLE_START,
           steps: int = 1000, threshold: float | None = SADDLE_THRESHOLD,
           dtype: str = "float32") -> dict[str, np.ndarray]:
    """f(x, y) = x**2 - y**2 from `start`; {"x", "y", "f"}, stopping after the step at which
    |y| >= threshold (None: run all steps)."""
    x0, y0 = check_start(start, 2)
    steps = check_steps(steps)
    dt = tf.as_dtype(check_dtype(dtype))
    limit = np.inf if threshold is None else threshold
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.get_variable("x", initializer=tf.constant(x0, dt))
        y = tf1.get_variable("y", initializer=tf.constant(y0, dt))
        f = x**2 - y**2
        opt = make_optimizer(optimizer, dtype)
        train = opt.minimize(f, var_list=[x, y])
        init = tf1.global_variables_initializer()
    rows = []
    with tf1.Session(graph=graph) as sess:
        sess.run(init)
        after_init(sess, opt, [x, y])
        for k in range(steps + 1):
            rows.append(sess.run([x, y, f]))
            if k == steps or abs(rows[-1][1]) >= limit:
                break
            sess.run(train)
    xs, ys, fs = (np.asarray(c) for c in zip(*rows, strict=True))
    return {"x": xs, "y": ys, "f": fs}


def escape_steps(optimizer: OptimizerSpec, start: Sequence[float] = SADDLE_START,
                 threshold: float = SADDLE_THRESHOLD, max_steps: int = 2000,
                 dtype: str = "float32") -> int | None:
    """Steps until |y| >= threshold on the saddle (None if not within max_steps)."""
    return escape_index(saddle(optimizer, start, max_steps, threshold, dtype)["y"], threshold)
