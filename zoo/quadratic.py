"""The quadratic-minimisation demo of seeds 000 and 004, framework-free: checks, the closed
form, float64 numpy reference optimizers, the saddle demo's shared definitions, and a runner
that calls the Keras, TF1 and torch implementations.

J(w) = a*w**2 + b*w + c with a > 0 has its minimum at w* = -b/(2a). Plain gradient descent
with step lr gives w_{k+1} = w_k - lr*(2a*w_k + b), i.e. the closed form

    w_k = w* + (w0 - w*) * (1 - 2*a*lr)**k,

which for the seeds' setting (a, b, c) = (1, -10, 25), w0 = 0, lr = 0.01 is 5*(1 - 0.98**k).

The saddle demo (seed 000: near a saddle or on a plateau the gradient is tiny, and momentum,
RMSprop and Adam get away faster than plain gradient descent) minimises f(x, y) = x**2 - y**2
from (1, 1e-3): x rolls into the valley, y sits on the ridge with gradient -2y ~ 0. A run has
"escaped" once |y| >= 1.

Each framework package has a `quadratic` module with the same public functions `minimize`,
`saddle` and `escape_steps`. This module never imports a framework at module level:
`run_frameworks` imports each framework's module lazily (torch first: importing torch after
tensorflow has crashed on some builds).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from zoo.errors import ConfigError, unknown_name
from zoo.frameworks import FRAMEWORKS as REGISTRY
from zoo.optimizers import OptimizerSpec
from zoo.reference import NumpyOptimizer

__all__ = [
    "FRAMEWORKS",
    "SADDLE_START",
    "SADDLE_THRESHOLD",
    "SEED_COEFFICIENTS",
    "SEED_OPTIMIZER",
    "NumpyOptimizer",
    "check_coefficients",
    "check_dtype",
    "check_steps",
    "closed_form",
    "cost",
    "escape_index",
    "framework_module",
    "minimizer",
    "parse_frameworks",
    "reference_escape_steps",
    "reference_minimize",
    "reference_saddle",
    "run_frameworks",
    "run_saddle_frameworks",
]

#: framework name -> module with minimize/saddle/escape_steps: `<package>/quadratic.py` of
#: each framework package (`zoo.frameworks`; Keras on its default backend, in this process).
#: Order = import order (torch before tensorflow).
FRAMEWORKS: dict[str, str] = {
    fw.name: fw.module_name("quadratic")
    for fw in sorted({fw.package: fw for fw in reversed(REGISTRY.values())
                      if not fw.single_module and not fw.legacy_keras}.values(),
                     key=lambda fw: ("torch" not in fw.imports, list(REGISTRY).index(fw.name)))}
DTYPES = ("float32", "float64")
#: seeds 000 and 004: J(w) = w**2 - 10w + 25, w0 = 0, GradientDescentOptimizer(0.01), 1000 steps
SEED_COEFFICIENTS = (1.0, -10.0, 25.0)
#: the seeds' GradientDescentOptimizer(0.01) (frozen, so safe as a default argument)
SEED_OPTIMIZER = OptimizerSpec("sgd", lr=0.01)
SADDLE_START = (1.0, 1e-3)
SADDLE_THRESHOLD = 1.0


# --------------------------------------------------------------------------- input checks

def check_coefficients(coefficients: Iterable[float] | str) -> tuple[float, float, float]:
    """(a, b, c) as floats; ConfigError unless there are three finite numbers with a > 0
    (a <= 0 has no minimum, so gradient descent would run away)."""
    if isinstance(coefficients, str):
        parts = [p for p in coefficients.replace(" ", "").split(",") if p]
    else:
        parts = list(np.asarray(coefficients, dtype=object).reshape(-1))
    try:
        a, b, c = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"coefficients must be three numbers a,b,c of J(w) = a*w^2 + b*w + c, "
                          f"got {coefficients!r}; e.g. --coefficients 1,-10,25.") from None
    if not all(math.isfinite(v) for v in (a, b, c)):
        raise ConfigError(f"coefficients must be finite, got {(a, b, c)!r}.")
    if a <= 0:
        raise ConfigError(f"J(w) = {a:g}*w^2 + {b:g}*w + {c:g} has no minimum: the leading "
                          "coefficient a must be > 0.")
    return a, b, c


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ConfigError(f"steps must be an integer >= 0, got {steps!r}.")
    return int(steps)


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}.")
    return dtype


def check_start(point: Sequence[float], n: int = 1) -> tuple[float, ...]:
    vals = tuple(float(v) for v in np.asarray(point, dtype=float).reshape(-1))
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"starting point must be {n} finite number(s), got {point!r}.")
    return vals


def parse_frameworks(frameworks: str | Iterable[str]) -> list[str]:
    """Validated framework names, in the order given (duplicates dropped)."""
    names = frameworks.split(",") if isinstance(frameworks, str) else list(frameworks)
    out: list[str] = []
    for n in (n.strip() for n in names):
        if n not in FRAMEWORKS:
            raise unknown_name("framework", n, list(FRAMEWORKS))
        if n not in out:
            out.append(n)
    if not out:
        raise ConfigError("no framework given; choose from " + ", ".join(FRAMEWORKS) + ".")
    return out


# --------------------------------------------------------------------------- closed form

def minimizer(coefficients: Iterable[float]) -> float:
    """w* = -b / (2a)."""
    a, b, _ = check_coefficients(coefficients)
    return -b / (2 * a)


def cost(coefficients: Iterable[float], w: np.ndarray | float) -> np.ndarray:
    a, b, c = check_coefficients(coefficients)
    w = np.asarray(w, dtype=np.float64)
    return a * w**2 + b * w + c


def closed_form(coefficients: Iterable[float] = SEED_COEFFICIENTS, w0: float = 0.0,
                lr: float = 0.01, steps: int = 1000) -> np.ndarray:
    """Plain gradient descent's w_0..w_steps in float64: w* + (w0 - w*)(1 - 2a*lr)^k."""
    a, _, _ = check_coefficients(coefficients)
    w_star = minimizer(coefficients)
    k = np.arange(check_steps(steps) + 1, dtype=np.float64)
    return w_star + (float(w0) - w_star) * (1.0 - 2.0 * a * lr) ** k


# --------------------------------------------------------------------------- numpy reference
# The float64 optimizers (Keras 3 formulas) are zoo.reference.NumpyOptimizer, shared with
# the models' reference training loop.

def reference_minimize(coefficients: Iterable[float] = SEED_COEFFICIENTS, w0: float = 0.0,
                       optimizer: OptimizerSpec = SEED_OPTIMIZER,
                       steps: int = 1000) -> dict[str, np.ndarray]:
    """The float64 numpy trajectory {w, cost} (steps+1 entries each, entry 0 = the start)."""
    a, b, c = check_coefficients(coefficients)
    steps = check_steps(steps)
    w = np.array([float(w0)])
    opt = NumpyOptimizer(optimizer)
    ws = np.empty(steps + 1)
    ws[0] = w[0]
    for k in range(steps):
        opt.step([w], [2 * a * w + b])
        ws[k + 1] = w[0]
    return {"w": ws, "cost": a * ws**2 + b * ws + c}


def saddle_value(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """f(x, y) = x**2 - y**2."""
    return np.asarray(x) ** 2 - np.asarray(y) ** 2


def escape_index(y: np.ndarray, threshold: float = SADDLE_THRESHOLD) -> int | None:
    """The first step k with |y_k| >= threshold (None if none)."""
    hit = np.flatnonzero(np.abs(np.asarray(y, dtype=np.float64)) >= threshold)
    return int(hit[0]) if hit.size else None


def reference_saddle(optimizer: OptimizerSpec = SEED_OPTIMIZER,
                     start: Sequence[float] = SADDLE_START, steps: int = 1000,
                     threshold: float | None = SADDLE_THRESHOLD) -> dict[str, np.ndarray]:
    """float64 trajectory {x, y, f} on the saddle, stopping after the escaping step if a
    threshold is given."""
    x0, y0 = check_start(start, 2)
    p = [np.array([x0]), np.array([y0])]
    opt = NumpyOptimizer(optimizer)
    xs, ys = [x0], [y0]
    for _ in range(check_steps(steps)):
        if threshold is not None and abs(ys[-1]) >= threshold:
            break
        opt.step(p, [2 * p[0], -2 * p[1]])
        xs.append(p[0][0])
        ys.append(p[1][0])
    x, y = np.array(xs), np.array(ys)
    return {"x": x, "y": y, "f": saddle_value(x, y)}


def reference_escape_steps(optimizer: OptimizerSpec, start: Sequence[float] = SADDLE_START,
                           threshold: float = SADDLE_THRESHOLD,
                           max_steps: int = 2000) -> int | None:
    return escape_index(reference_saddle(optimizer, start, max_steps, threshold)["y"], threshold)


# --------------------------------------------------------------------------- runners

def framework_module(name: str) -> Any:
    """Import `<framework package>.quadratic` lazily."""
    if name not in FRAMEWORKS:
        raise unknown_name("framework", name, list(FRAMEWORKS))
    return importlib.import_module(FRAMEWORKS[name])


def _import_in_safe_order(names: Sequence[str]) -> dict[str, Any]:
    # torch before tensorflow (see tests/conftest.py); FRAMEWORKS is in that order.
    return {n: framework_module(n) for n in FRAMEWORKS if n in names}


def run_frameworks(frameworks: str | Iterable[str] = tuple(FRAMEWORKS),
                   coefficients: Iterable[float] = SEED_COEFFICIENTS, w0: float = 0.0,
                   optimizer: OptimizerSpec = SEED_OPTIMIZER,
                   steps: int = 1000, dtype: str = "float32") -> dict[str, dict[str, np.ndarray]]:
    """{framework: {"w": ..., "cost": ...}} for each requested framework, in the order given.

    Keras runs its fast path, the whole loop inside one `tf.function` (the same numbers as the
    eager loop, which is ~10x slower: docs/benchmarks.md)."""
    names = parse_frameworks(frameworks)
    coefficients = check_coefficients(coefficients)
    check_steps(steps)
    check_dtype(dtype)
    mods = _import_in_safe_order(names)
    return {n: mods[n].minimize(coefficients=coefficients, w0=w0, optimizer=optimizer,
                                steps=steps, dtype=dtype,
                                **({"compiled": True} if n == "keras" else {}))
            for n in names}


def run_saddle_frameworks(frameworks: str | Iterable[str], optimizers: Iterable[OptimizerSpec],
                          start: Sequence[float] = SADDLE_START,
                          threshold: float = SADDLE_THRESHOLD, max_steps: int = 2000,
                          dtype: str = "float32") -> dict[str, dict[str, int | None]]:
    """{optimizer name: {framework: escape step or None, "numpy": reference}}."""
    names = parse_frameworks(frameworks)
    mods = _import_in_safe_order(names)
    out: dict[str, dict[str, int | None]] = {}
    for spec in optimizers:
        row: dict[str, int | None] = {n: mods[n].escape_steps(spec, start=start,
                                                              threshold=threshold,
                                                              max_steps=max_steps, dtype=dtype)
                                      for n in names}
        row["numpy"] = reference_escape_steps(spec, start, threshold, max_steps)
        out[spec.name] = row
    return out
