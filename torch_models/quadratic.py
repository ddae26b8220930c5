"""The quadratic-minimisation demo (seeds 000 and 004) and the saddle demo in PyTorch: scalar
parameters, autograd and a `torch.optim` optimizer built by `torch_models.optimizers`.

The loop is torch's usual `zero_grad(); cost.backward(); step()`; the cost of step k is the
one computed from w_k before the update, so entry k of {"w", "cost"} is the state at step k.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from torch_models.optimizers import make_default_optimizer, make_optimizer
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

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _descend(loss_fn: Callable[[list[torch.Tensor]], torch.Tensor], start: Sequence[float],
             optimizer: OptimizerSpec | torch.optim.Optimizer, steps: int, dtype: str,
             stop_index: int = 0, threshold: float | None = None, defaults: bool = False,
             ) -> tuple[np.ndarray, np.ndarray]:
    params = [torch.tensor(v, dtype=_DTYPES[dtype], requires_grad=True) for v in start]
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    elif defaults:
        opt = make_default_optimizer(optimizer.name, optimizer.lr, params)
    else:
        opt = make_optimizer(optimizer, params)
    limit = np.inf if threshold is None else threshold
    vals, losses = [], []
    for k in range(steps + 1):
        opt.zero_grad()
        loss = loss_fn(params)
        vals.append([p.item() for p in params])
        losses.append(loss.item())
        if k == steps or abs(vals[-1][stop_index]) >= limit:
            break
        loss.backward()
        opt.step()
    np_dtype = np.dtype(dtype)
    return np.asarray(vals, dtype=np_dtype), np.asarray(losses, dtype=np_dtype)


def minimize(coefficients: Iterable[float] = SEED_COEFFICIENTS, w0: float = 0.0,
             optimizer: OptimizerSpec = SEED_OPTIMIZER, steps: int = 1000,
             dtype: str = "float32", defaults: bool = False) -> dict[str, np.ndarray]:
    """Minimise J(w) = a*w**2 + b*w + c; {"w", "cost"} with steps+1 entries (0 = start).

    defaults=True uses torch's own defaults for everything but the lr."""
    a, b, c = (torch.tensor(v, dtype=_DTYPES[check_dtype(dtype)])
               for v in check_coefficients(coefficients))
    (w0,) = check_start([w0], 1)

    def loss(p: list[torch.Tensor]) -> torch.Tensor:
        return a * p[0] ** 2 + b * p[0] + c

    vals, losses = _descend(loss, [w0], optimizer, check_steps(steps), dtype, defaults=defaults)
    return {"w": vals[:, 0], "cost": losses}


def saddle(optimizer: OptimizerSpec = SEED_OPTIMIZER, start: Sequence[float] = SADDLE_START,
           steps: int = 1000, threshold: float | None = SADDLE_THRESHOLD,
           dtype: str = "float32") -> dict[str, np.ndarray]:
    """f(x, y) = x**2 - y**2 from `start`; {"x", "y", "f"}, stopping after the step at which
    |y| >= threshold (None: run all steps)."""
    start = check_start(start, 2)
    vals, losses = _descend(lambda p: p[0] ** 2 - p[1] ** 2, start, optimizer,
                            check_steps(steps), check_dtype(dtype), 1, threshold)
    return {"x": vals[:, 0], "y": vals[:, 1], "f": losses}


def escape_steps(optimizer: OptimizerSpec, start: Sequence[float] = SADDLE_START,
                 threshold: float = SADDLE_THRESHOLD, max_steps: int = 2000,
                 dtype: str = "float32") -> int | None:
    """Steps until |y| >= threshold on the saddle (None if not within max_steps)."""
    return escape_index(saddle(optimizer, start, max_steps, threshold, dtype)["y"], threshold)
