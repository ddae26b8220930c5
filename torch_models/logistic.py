"""Logistic regression in PyTorch: one `nn.Linear(F, 1)` giving a logit and
`nn.BCEWithLogitsLoss` with (N, 1) float targets.

The model outputs the logit, never the probability: `nn.BCELoss` on sigmoid outputs clamps the
log at -100 (a loss of 100 where the true value is 30, porting-facts row 7), and
`BCEWithLogitsLoss` requires targets of the logits' shape (N, 1) and floating dtype.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from torch_models.softmax import SingleLinear, check_spec, finish_build, get_weights, set_weights
from zoo.specs import ModelSpec

__all__ = ["LogisticRegression", "build", "get_weights", "make_loss", "probabilities",
           "set_weights"]


class LogisticRegression(SingleLinear):
    """x -> dense_0 (F -> 1) -> logit (N, 1)."""


def make_loss() -> nn.Module:
    """Mean binary cross-entropy from logits; targets float 0/1 of shape (N, 1)."""
    return nn.BCEWithLogitsLoss()


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """P(y = 1) of shape (N, 1)."""
    return torch.sigmoid(logits)


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32") -> LogisticRegression:
    """A `LogisticRegression` in train mode; init None keeps torch's kaiming-uniform weight and
    random U(+-1/sqrt(in)) bias."""
    check_spec(model_spec, "logistic")
    return finish_build(LogisticRegression(model_spec.n_features, model_spec.n_outputs), init, dtype)
