"""Linear multiclass SVM in PyTorch: one `nn.Linear` of C scores and the CS231n multiclass
hinge loss (seed 003) as a custom loss module.

The hinge is mean over the batch of sum_{j != y} max(0, s_j - s_y + margin). It is not Keras's
`CategoricalHinge` (Crammer-Singer: max over wrong classes) nor torch's `nn.MultiMarginLoss`
(which also divides each sample's sum by C), so it is written here.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from torch_models.softmax import SingleLinear, check_spec, finish_build, get_weights, set_weights
from zoo.specs import ModelSpec

__all__ = ["LinearSVM", "MulticlassHingeLoss", "build", "get_weights", "make_loss",
           "probabilities", "set_weights"]


class LinearSVM(SingleLinear):
    """x -> dense_0 (F -> C) -> class scores."""


class MulticlassHingeLoss(nn.Module):
    """Mean over the batch of sum_{j != y} max(0, s_j - s_y + margin); targets int64 (N,)."""

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        correct = scores.gather(1, target.view(-1, 1))
        margins = torch.clamp(scores - correct + self.margin, min=0.0)
        # The correct class would contribute max(0, margin) = margin: drop it, as the j != y
        # sum requires (masking keeps the autograd subgradient of the reference: 0 there).
        margins = margins.masked_fill(nn.functional.one_hot(target, scores.shape[1]).bool(), 0.0)
        return margins.sum(dim=1).mean()


def make_loss() -> nn.Module:
    return MulticlassHingeLoss()


def probabilities(scores: torch.Tensor) -> torch.Tensor:
    """The softmax of the scores (the SVM itself has no probabilities; this ranks as argmax)."""
    return torch.softmax(scores, dim=1)


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32") -> LinearSVM:
    """A `LinearSVM` in train mode; init None keeps torch's kaiming-uniform weight and random
    U(+-1/sqrt(in)) bias."""
    check_spec(model_spec, "svm")
    return finish_build(LinearSVM(model_spec.n_features, model_spec.n_outputs), init, dtype)
