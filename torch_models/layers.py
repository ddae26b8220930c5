"""One translation per canonical layer kind (`zoo.layers`) into torch modules.

`translate(resolved_layer)` gives the named `nn.Module`s of one layer, which
`torch_models.model.build` puts in an `nn.Sequential` under the canonical names (`dense_0`,
`conv2d_1`, `max_pool2d_0`, ...), so that the `state_dict` keys are the weight tables' torch
names (`dense_0.weight`, `conv2d_0.bias`, ...):

- Dense -> `nn.Linear(in, units)`; its `weight` is (out, in), the transpose of the canonical
  kernel (the weight table converts; the first Dense after a Flatten of an image also has its
  rows permuted, see Flatten);
- Conv2D -> `nn.Conv2d(in, filters, kernel, stride)` on NCHW; `weight` is OIHW. TF's 'same'
  padding is reproduced exactly: a symmetric `padding=` when TF pads as much before as after
  on both axes, otherwise an explicit `nn.ZeroPad2d((left, right, top, bottom))` child named
  `<conv name>_pad` before a padding-0 conv. (TF pads the extra row/column of an odd total
  AFTER, i.e. bottom/right; torch's symmetric `padding=1` puts it on both sides, which changes
  the output's values or its shape; and torch's own `padding='same'` refuses stride > 1.)
- MaxPool2D / AvgPool2D -> `nn.MaxPool2d` / `nn.AvgPool2d(kernel, stride)`: 'valid' windows
  (floor), as Keras;
- Flatten -> `nn.Flatten()`: on NCHW it yields C, H, W order, not the canonical H, W, C; the
  following Dense's torch layout permutes its kernel rows instead (`zoo.layers`), so the
  activations are never permuted;
- Dropout -> `nn.Dropout(rate)`; the shared masks of `zoo.specs.dropout_masks` are applied by
  the model's forward (`torch_models.model.Net`), not here;
- Activation -> `nn.ReLU` / `nn.Sigmoid` / `nn.Tanh` / `nn.Identity`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from zoo.layers import Resolved

__all__ = ["ACTIVATIONS", "PAD_SUFFIX", "translate"]

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
                         padding=padding)

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


_TRANSLATIONS: dict[str, Callable[[Resolved], Named]] = {
    "dense": _dense, "conv2d": _conv2d, "max_pool2d": _max_pool2d, "avg_pool2d": _avg_pool2d,
    "flatten": _flatten, "dropout": _dropout, "activation": _activation,
}
