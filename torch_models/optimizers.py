"""PyTorch optimizers built from a framework-neutral `OptimizerSpec`.

`make_optimizer(spec, params)` applies the shared translation (`zoo.optimizers.torch_kwargs`:
tiny eps, alpha = rho, dampening 0, float32-exact Adam betas, Adagrad's accumulator starting at
0.1 like Keras and TF1). The parameters' dtype decides the arithmetic; no dtype argument.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from zoo.optimizers import OptimizerSpec, native_defaults_kwargs, torch_kwargs

__all__ = ["make_default_optimizer", "make_optimizer"]


def make_optimizer(spec: OptimizerSpec,
                   params: Iterable[torch.nn.Parameter | torch.Tensor]) -> torch.optim.Optimizer:
    """A `torch.optim` optimizer equivalent to the Keras and TF1 ones built from `spec`."""
    cls_name, kwargs = torch_kwargs(spec)
    return getattr(torch.optim, cls_name)(list(params), **kwargs)


def make_default_optimizer(name: str, lr: float,
                           params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """torch's own defaults (the untranslated baseline)."""
    cls_name, kwargs = native_defaults_kwargs(name, lr, "torch")
    return getattr(torch.optim, cls_name)(list(params), **kwargs)
