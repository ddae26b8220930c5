"""Linear regression in PyTorch (seed 002's ice-cream model): one `nn.Linear(F, 1)` and
`nn.MSELoss` with (N, 1) targets.

The target shape matters: `nn.MSELoss()(pred (N, 1), target (N,))` broadcasts to N x N and
returns a wrong loss with only a UserWarning (porting-facts row 6), so the training loop always
passes (N, 1) float targets.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from torch_models.softmax import SingleLinear, check_spec, finish_build, get_weights, set_weights
from zoo.specs import ModelSpec

__all__ = ["LinearRegression", "build", "get_weights", "make_loss", "probabilities",
           "set_weights"]


class LinearRegression(SingleLinear):
    """x -> dense_0 (F -> 1) -> predicted value (N, 1)."""


def make_loss() -> nn.Module:
    """Mean squared error; targets float (N, 1), the model's output shape."""
    return nn.MSELoss()


def probabilities(values: torch.Tensor) -> torch.Tensor:
    """Regression has no probabilities: the prediction is the raw value (N, 1)."""
    return values


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32") -> LinearRegression:
    """A `LinearRegression` in train mode; init None keeps torch's kaiming-uniform weight and
    random U(+-1/sqrt(in)) bias."""
    check_spec(model_spec, "linear")
    return finish_build(LinearRegression(model_spec.n_features, model_spec.n_outputs), init, dtype)
