"""One translation per canonical layer kind (`zoo.layers`) into torch modules.

`translate(resolved_layer)` gives the named `nn.Module`s of one layer, which
`torch_models.model.build` puts in an `nn.Sequential` under the canonical names (`dense_0`,
`conv2d_1`, `max_pool2d_0`, ...), so that the `state_dict` keys are the weight tables' torch
names (`dense_0.weight`, `conv2d_0.bias`, ...):

- Dense -> `nn.Linear(in, units)`; its `weight` is (out, in), the transpose of the canonical
  kernel (the weight table converts; the first Dense after a Flatten of an image also has its
  rows permuted, see Flatten);
- Conv2D -> `nn.Conv2d(in, filters, kernel, stride, bias=use_bias)` on NCHW; `weight` is
  OIHW (no `bias` parameter at all for `use_bias=False`: the weight table has no bias row
  then). TF's 'same' padding is reproduced exactly: a symmetric `padding=` when TF pads as
  much before as after on both axes, otherwise an explicit
  `nn.ZeroPad2d((left, right, top, bottom))` child named `<conv name>_pad` before a
  padding-0 conv. (TF pads the extra row/column of an odd total AFTER, i.e. bottom/right;
  torch's symmetric `padding=1` puts it on both sides, which changes the output's values or
  its shape; and torch's own `padding='same'` refuses stride > 1.)
- MaxPool2D / AvgPool2D -> `nn.MaxPool2d` / `nn.AvgPool2d(kernel, stride)`: 'valid' windows
  (floor), as Keras;
- Flatten -> `nn.Flatten()`: on NCHW it yields C, H, W order, not the canonical H, W, C; the
  following Dense's torch layout permutes its kernel rows instead (`zoo.layers`), so the
  activations are never permuted;
- Dropout -> `nn.Dropout(rate)`; the shared masks of `zoo.specs.dropout_masks` are applied by
  the model's forward (`torch_models.model.Net`), not here;
- Activation -> `nn.ReLU` / `nn.Sigmoid` / `nn.Tanh` / `nn.Identity`;
- BatchNorm -> `nn.BatchNorm1d(C)` on flat (N, C) features, `nn.BatchNorm2d(C)` on images
  (NCHW: its channel axis 1 is the canonical last axis), with `eps=layer.epsilon` (torch's
  default 1e-5 is not Keras's 1e-3) and `momentum=layer.torch_momentum`: torch's momentum is
  the weight of the NEW batch value, 1 - the canonical (Keras) one; torch's default 0.1 would
  mean 0.9. Its buffers `running_mean` / `running_var` are the state rows `moving_mean` /
  `moving_variance`; `num_batches_tracked` is in no weight table (see
  `torch_models.model.UNTABLED`). torch feeds the UNBIASED batch variance into `running_var`;
  for the canonical default `moving_variance="biased"` the module carries a
  `MovingVarianceCorrection` (a forward pre-hook and a forward hook) that turns torch's update
  into the biased one after every training-mode pass. Normalisation itself uses the biased
  batch variance in training mode and the running statistics in eval mode, as canonical;
- LayerNorm -> `nn.LayerNorm(F, eps=layer.epsilon)`: per sample over the features, biased
  variance, as canonical (again torch's default eps 1e-5 is not Keras's 1e-3).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from zoo.layers import Resolved, corrected_moving_variance

__all__ = ["ACTIVATIONS", "PAD_SUFFIX", "MovingVarianceCorrection", "translate"]

#: canonical activation name -> torch module class
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid,
                                           "tanh": nn.Tanh, "linear": nn.Identity}
#: the name of the explicit padding module of a conv with asymmetric 'same' padding
PAD_SUFFIX = "_pad"

Named = list[tuple[str, nn.Module]]


def translate(r: Resolved) -> Named:
    """The (name, module) pairs of one resolved canonical layer, in order."""
    return _TRANSLATIONS[r.kind](r)


def _dense(r: Resolved) -> Named:
    return [(r.name, nn.Linear(r.input_shape[0], r.layer.units))]


def _conv2d(r: Resolved) -> Named:
    """TF's padding from `Conv2D.padding_of`: symmetric -> `padding=(top, left)`; asymmetric
    (stride 2 on an even input pads one more after) -> ZeroPad2d + padding 0. Not torch's
    `padding='same'`: it raises for stride > 1."""
    layer = r.layer
    (top, bottom), (left, right) = layer.padding_of(r.input_shape)

    def conv(padding: tuple[int, int]) -> nn.Conv2d:
        return nn.Conv2d(r.input_shape[2], layer.filters, layer.kernel_size, layer.strides,
                         padding=padding, bias=layer.use_bias)

    if top == bottom and left == right:
        return [(r.name, conv((top, left)))]
    return [(r.name + PAD_SUFFIX, nn.ZeroPad2d((left, right, top, bottom))),
            (r.name, conv((0, 0)))]


def _max_pool2d(r: Resolved) -> Named:
    return [(r.name, nn.MaxPool2d(r.layer.pool_size, r.layer.strides))]


def _avg_pool2d(r: Resolved) -> Named:
    return [(r.name, nn.AvgPool2d(r.layer.pool_size, r.layer.strides))]


def _flatten(r: Resolved) -> Named:
    return [(r.name, nn.Flatten())]


def _dropout(r: Resolved) -> Named:
    return [(r.name, nn.Dropout(p=float(r.layer.rate)))]


def _activation(r: Resolved) -> Named:
    return [(r.name, ACTIVATIONS[r.layer.name]())]


class MovingVarianceCorrection:
    """Makes a torch BatchNorm module's `running_var` follow the canonical `wants` variance
    ("biased": Keras 3's and the canonical default) although torch's kernel updates it with the
    UNBIASED batch variance (Bessel's correction over the m values per channel).

    torch's update happens inside its C++ kernel and exposes neither the batch variance nor a
    switch, so the correction is applied after it: a forward pre-hook sets a copy of
    `running_var` in its place for torch to update, a forward hook writes
    `zoo.layers.corrected_moving_variance(before, after, m, momentum, "unbiased", wants)` into
    the original buffer and puts it back, m = N for (N, C) features and N * H * W for
    (N, C, H, W) images. (Correcting torch's updated tensor in place would break the backward
    pass: autograd saves `running_var` with the batch-norm node and refuses a saved tensor
    modified since. The buffer object itself never changes, so the `state_dict`, DDP's buffer
    list and anything else holding it stay valid.) Only in training mode: eval passes leave
    the statistics alone. `running_mean` needs nothing (a mean has no Bessel factor). Exact in
    real arithmetic; the rounding it adds is bounded in tests/test_torch_norm.py. Without it
    the moving variance takes in m / (m - 1) times the batch variance: 32 / 31 at batch 32 on
    features, which the moving average carries into every inference-mode prediction."""

    def __init__(self, module: nn.modules.batchnorm._BatchNorm, momentum: float, wants: str
                 ) -> None:
        self.momentum, self.wants = float(momentum), wants
        self.buffer: torch.Tensor | None = None
        module.register_forward_pre_hook(self.stash)
        module.register_forward_hook(self.correct)

    def stash(self, module: nn.Module, args: tuple) -> None:
        if module.training:
            self.buffer = module.running_var
            module.running_var = self.buffer.detach().clone()  # what torch will update

    def correct(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if self.buffer is None:
            return
        x, buffer, updated = args[0], self.buffer, module.running_var
        self.buffer = None
        count = x.numel() // x.shape[1]  # values per channel in this batch
        with torch.no_grad():
            buffer.copy_(corrected_moving_variance(buffer, updated, count, self.momentum,
                                                   "unbiased", self.wants))
        module.running_var = buffer


def _batch_norm(r: Resolved) -> Named:
    """BatchNorm1d (features) or BatchNorm2d (NCHW images) with the canonical epsilon, the
    momentum translated to torch's convention and, unless the layer asks for torch's own
    unbiased moving variance, the `MovingVarianceCorrection` hooks."""
    layer = r.layer
    cls = nn.BatchNorm2d if len(r.input_shape) == 3 else nn.BatchNorm1d
    module = cls(r.input_shape[-1], eps=float(layer.epsilon), momentum=layer.torch_momentum)
    if layer.moving_variance != "unbiased":
        MovingVarianceCorrection(module, layer.momentum, layer.moving_variance)
    return [(r.name, module)]


def _layer_norm(r: Resolved) -> Named:
    return [(r.name, nn.LayerNorm(r.input_shape[0], eps=float(r.layer.epsilon)))]


_TRANSLATIONS: dict[str, Callable[[Resolved], Named]] = {
    "dense": _dense, "conv2d": _conv2d, "max_pool2d": _max_pool2d, "avg_pool2d": _avg_pool2d,
    "flatten": _flatten, "dropout": _dropout, "activation": _activation,
    "batch_norm": _batch_norm, "layer_norm": _layer_norm,
}
