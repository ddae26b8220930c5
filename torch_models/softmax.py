"""Softmax regression in PyTorch (one `nn.Linear` of C units, `nn.CrossEntropyLoss` on logits),
plus the canonical-layout edge that every torch model in the zoo shares.

The model outputs logits; `probabilities` applies the softmax (prediction only, never before
the loss: `nn.CrossEntropyLoss` takes logits, porting-facts row 3).

Layout edge (`get_weights` / `set_weights`, reused by svm.py, linear.py, logistic.py, mlp.py):
torch's `Linear.weight` is (out, in) while the canonical layout is Keras's kernel (in, out),
so the kernel is transposed here and nowhere else (`weight.copy_(kernel.T)`). The bias is
copied as is. `set_weights` checks names and shapes, which catches an untransposed kernel of
a non-square layer. A *square* layer (in == out) accepts the wrong layout silently, since both
orientations have the same shape: no shape check can catch that, only a forward-pass parity
test against `zoo.reference` does (tests/test_torch_models.py demonstrates both cases).
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.specs import ModelSpec, check_canonical

__all__ = ["SoftmaxRegression", "build", "get_weights", "make_loss", "probabilities",
           "set_weights"]

_DENSE = re.compile(r"(?:^|\.)(dense_\d+)$")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class SingleLinear(nn.Module):
    """x -> dense_0 (F -> units): the one-layer models (softmax, svm, logistic, linear) differ
    only in their loss and output activation."""

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.dense_0 = nn.Linear(n_features, n_outputs)

    def forward(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        # `masks` is accepted (and unused: no hidden layer) so the training loop can call
        # every zoo model the same way.
        return self.dense_0(x)


class SoftmaxRegression(SingleLinear):
    """x -> dense_0 (F -> C) -> logits. The softmax lives in the loss and in `probabilities`."""


def make_loss() -> nn.Module:
    """Mean categorical cross-entropy from logits; targets are int64 class indices (N,)."""
    return nn.CrossEntropyLoss()


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, C) from the model's logits."""
    return torch.softmax(logits, dim=1)


def build(model_spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32") -> SoftmaxRegression:
    """A `SoftmaxRegression` for `model_spec`, in train mode (as every new `nn.Module`).

    init: canonical weights (normally `zoo.specs.init_weights`). When None, torch's own default
    initialiser stays: kaiming-uniform(a=sqrt(5)), i.e. weight ~ U(+-1/sqrt(in)), and a *random*
    bias ~ U(+-1/sqrt(in)) (Keras would start the bias at zero).
    """
    check_spec(model_spec, "softmax")
    return finish_build(SoftmaxRegression(model_spec.n_features, model_spec.n_outputs),
                        init, dtype)


# ----------------------------------------------------------------------------- layout edge
def check_spec(model_spec: ModelSpec, name: str) -> None:
    """Refuse a spec meant for another model (each model file builds exactly one model)."""
    if model_spec.name != name:
        raise ConfigError(f"torch_models.{name}.build got a spec for model {model_spec.name!r}; "
                          f"use torch_models.{model_spec.name}.build instead.")


def finish_build(model: nn.Module, init: dict[str, np.ndarray] | None, dtype: str) -> nn.Module:
    """Cast `model` to `dtype` (`.double()` for float64) and load `init` if given."""
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    model = model.to(_DTYPES[dtype])
    if init is not None:
        set_weights(model, init)
    return model


def dense_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """The model's `nn.Linear` layers by canonical name (`dense_0`, `dense_1`, ...), in order."""
    found = {}
    for qualname, module in model.named_modules():
        m = _DENSE.search(qualname)
        if m and isinstance(module, nn.Linear):
            found[m.group(1)] = module
    return dict(sorted(found.items(), key=lambda kv: int(kv[0].split("_")[1])))


def get_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """Canonical weights: {"dense_i/kernel": (in, out), "dense_i/bias": (out,)}, numpy copies
    in the model's dtype (the kernel is `weight.T`)."""
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name, lin in dense_layers(model).items():
            out[f"{name}/kernel"] = lin.weight.detach().cpu().numpy().T.copy()
            out[f"{name}/bias"] = lin.bias.detach().cpu().numpy().copy()
    return out


def set_weights(model: nn.Module, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights into `model` in place (`weight.copy_(kernel.T)`, bias as is).

    Values are cast to the model's dtype. Raises ConfigError on missing or unexpected names
    and on any shape mismatch; that catches a torch-layout (out, in) kernel for every
    non-square layer. A square layer's transposed kernel has the right shape and is accepted
    silently (see the module docstring).
    """
    layers = dense_layers(model)
    shapes = {}
    for name, lin in layers.items():
        shapes[f"{name}/kernel"] = (lin.in_features, lin.out_features)
        shapes[f"{name}/bias"] = (lin.out_features,)
    check_canonical(weights, shapes)
    with torch.no_grad():
        for name, lin in layers.items():
            kernel = np.asarray(weights[f"{name}/kernel"])
            lin.weight.copy_(torch.as_tensor(kernel.T, dtype=lin.weight.dtype))
            lin.bias.copy_(torch.as_tensor(np.asarray(weights[f"{name}/bias"]),
                                           dtype=lin.bias.dtype))
