"""The MLP of seed 004 in PyTorch: Flatten -> Linear(in, 64) -> Dropout(0.5) -> ReLU ->
Linear(64, 32) -> Dropout(0.5) -> ReLU -> Linear(32, C), trained with `nn.CrossEntropyLoss`.

The seed's `nn.Sequential` is kept, with named children (`dense_0`, `dropout_0`, `relu_0`, ...)
so that the canonical names map onto the layers. The input size follows the data (784 for MNIST,
64 for sklearn digits) and the hidden sizes follow `ModelSpec.hidden`.

Dropout, two ways:
- native: `nn.Dropout` layers, active only in train mode (a new module starts in train mode;
  `torch.no_grad()` does NOT disable dropout, only `model.eval()` does);
- shared: `forward(x, masks=[m0, m1])` replaces each `nn.Dropout` by `h * mask / (1 - p)` with
  the precomputed 0/1 masks of `zoo.specs.dropout_masks`, so torch reproduces the numpy
  reference and the other frameworks exactly.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from torch_models.softmax import check_spec, finish_build, get_weights, set_weights
from zoo.specs import ModelSpec, layer_sizes

__all__ = ["MLP", "build", "get_weights", "make_loss", "probabilities", "set_weights"]


class MLP(nn.Module):
    """Seed 004's model: hidden layers Linear -> Dropout(p) -> ReLU, then a Linear to C logits."""

    def __init__(self, n_features: int, n_classes: int, hidden: tuple[int, ...] = (64, 32),
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.p = float(dropout)
        sizes = [n_features, *hidden, n_classes]
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers[f"dense_{i}"] = nn.Linear(n_in, n_out)
            if i < len(hidden):
                layers[f"dropout_{i}"] = nn.Dropout(p=self.p)
                layers[f"relu_{i}"] = nn.ReLU()
        self.layers = nn.Sequential(layers)

    def forward(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits (N, C). With `masks` (one (N, hidden_i) 0/1 tensor per hidden layer), each
        dropout is the shared `h * mask / (1 - p)` whatever the train/eval mode; without them
        `nn.Dropout` acts as usual (random in train mode, identity in eval mode)."""
        if masks is None:
            return self.layers(x)
        n_dropouts = sum(isinstance(m, nn.Dropout) for m in self.layers)
        if len(masks) != n_dropouts:
            raise ValueError(f"expected {n_dropouts} dropout masks, one per hidden layer, "
                             f"got {len(masks)}.")
        k = 0
        for layer in self.layers:
            if isinstance(layer, nn.Dropout):
                x = x * masks[k] / (1.0 - self.p)
                k += 1
            else:
                x = layer(x)
        return x


def make_loss() -> nn.Module:
    """Mean categorical cross-entropy from logits; targets are int64 class indices (N,)."""
    return nn.CrossEntropyLoss()


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, C) from the logits."""
    return torch.softmax(logits, dim=1)


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32") -> MLP:
    """An `MLP` for `model_spec` (sizes from `layer_sizes(model_spec)`), in train mode.

    init None keeps torch's own initialiser: kaiming-uniform weight U(+-1/sqrt(in)) and random
    bias U(+-1/sqrt(in)) in every layer.
    """
    check_spec(model_spec, "mlp")
    model = MLP(model_spec.n_features, model_spec.n_outputs, tuple(model_spec.hidden),
                model_spec.dropout)
    assert [(lin.in_features, lin.out_features) for lin in model.layers
            if isinstance(lin, nn.Linear)] == layer_sizes(model_spec)
    return finish_build(model, init, dtype)
