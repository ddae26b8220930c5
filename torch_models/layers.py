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
  variance, as canonical (again torch's default eps 1e-5 is not Keras's 1e-3);
- Embedding -> `TokenEmbedding(vocab, dim)`, an `nn.Embedding` that casts the zoo's float id
  arrays (N, T) to int64 first (`nn.Embedding` refuses float indices); its `weight` is the
  canonical `embeddings` as is. Token ids are never treated as an image: nothing permutes them;
- LSTM -> `LSTM(F, units, return_sequences)`, an `nn.LSTM(batch_first=True)` whose forward
  returns only the last step's output (N, units) or the whole sequence (N, T, units) instead of
  torch's (output, (h, c)) pair, so that it can sit in the `nn.Sequential`. It is a subclass,
  not a wrapper, so that its parameters keep torch's own names under the layer's
  (`lstm_0.weight_ih_l0`, ...; a wrapper would add a level to every `state_dict` key). Its
  `bias_hh_l0` is frozen at zero (`requires_grad=False`, see `LSTM`): Keras trains ONE bias,
  torch's two would each take the full gradient;
- GRU, reset_after=True (Keras 3's default) -> `GRU(F, units, return_sequences)`, the same
  kind of `nn.GRU(batch_first=True)` subclass; both biases trained (they are the canonical
  bias's two rows). GRU, reset_after=False (the original GRU, which torch has no layer for) ->
  `ResetBeforeGRU`: a small loop over the steps with torch's names and gate order r, z, n
  (`weight_ih_l0`, `weight_hh_l0`, `bias_l0`).

`batch_first=True` matters: torch's recurrent layers default to (T, N, F), and given a
(N, T, F) batch they run without complaint over the wrong axis (tests/test_torch_rnn.py
measures what that gives). torch's default initialisers (U(+-1/sqrt(units)) for every
recurrent tensor, N(0, 1) for embeddings) are never used when canonical weights are loaded.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from zoo.layers import Resolved, corrected_moving_variance

__all__ = ["ACTIVATIONS", "GRU", "LSTM", "PAD_SUFFIX", "MovingVarianceCorrection",
           "ResetBeforeGRU", "TokenEmbedding", "translate"]

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


class TokenEmbedding(nn.Embedding):
    """`nn.Embedding` that takes the zoo's float token ids: every zoo input is a float array,
    and `nn.Embedding` raises for float indices, so the ids (whole numbers, checked against
    the vocabulary by `zoo.specs.check_inputs`) are cast to int64 here, right before the
    lookup. Its `weight` (vocab, dim) is the canonical `embeddings` as is."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return super().forward(ids.long())


class LSTM(nn.LSTM):
    """`nn.LSTM(features, units, batch_first=True)` returning the last step's output (N, units)
    (`return_sequences=False`) or every step's (N, T, units), not torch's (output, (h, c)).

    torch's cell computes i, f, g, o = sigmoid/tanh(x W_ih^T + b_ih + h W_hh^T + b_hh): its
    two biases only ever appear summed, and the canonical (Keras) LSTM has one. The weight
    table loads the canonical bias into `bias_ih_l0` and zeros into `bias_hh_l0`, and this
    module freezes `bias_hh_l0` (`requires_grad=False`) so that exactly one bias is trained.
    Trained, `bias_hh_l0` would receive the same gradient as `bias_ih_l0`, so under SGD their
    sum (the canonical bias) would move twice as far as Keras's bias each step, and under Adam
    and RMSprop (moments per tensor) it would take two normalised steps instead of one.
    Frozen, it has no gradient and is left out of the optimizer (`torch_models.train`), so
    every optimizer sees exactly Keras's parameters; the L2 penalty covers kernels only and
    never sees either bias (tests/test_torch_rnn.py measures the unfrozen difference). Frozen, not deleted: torch has
    no single-bias LSTM (`bias=False` drops both), and the `state_dict` keeps torch's four
    names so that a plain `nn.LSTM` loads it."""

    def __init__(self, features: int, units: int, return_sequences: bool = False) -> None:
        super().__init__(features, units, batch_first=True)
        self.return_sequences = bool(return_sequences)
        self.bias_hh_l0.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out, _ = super().forward(x)
        return out if self.return_sequences else out[:, -1]


class GRU(nn.GRU):
    """`nn.GRU(features, units, batch_first=True)`: the reset_after=True GRU (Keras 3's
    default), returning the last step's output (N, units) or every step's (N, T, units).

    torch: r, z = sigmoid(x W_i^T + b_i + h W_h^T + b_h), n = tanh(x W_in^T + b_in +
    r * (h W_hn^T + b_hn)), h' = (1 - z) * n + z * h: Keras's equations with the gates in the
    order r, z, n (the weight table swaps z and r) and the canonical bias's input row as
    `bias_ih_l0`, its recurrent row as `bias_hh_l0`, both trained (b_hn sits inside r * (...),
    so the two are NOT interchangeable, unlike the LSTM's)."""

    def __init__(self, features: int, units: int, return_sequences: bool = False) -> None:
        super().__init__(features, units, batch_first=True)
        self.return_sequences = bool(return_sequences)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out, _ = super().forward(x)
        return out if self.return_sequences else out[:, -1]


class ResetBeforeGRU(nn.Module):
    """The reset_after=False GRU (Keras 2's original), which torch has no layer for, in
    torch's naming and gate order so that the weight table treats it like `nn.GRU`:
    `weight_ih_l0` (3u, F), `weight_hh_l0` (3u, u), gates r, z, n stacked along the first
    axis, and ONE bias `bias_l0` (3u,) added to the input projection:

        r = sigmoid(x W_ir^T + b_r + h W_hr^T),  z = sigmoid(x W_iz^T + b_z + h W_hz^T),
        n = tanh(x W_in^T + b_n + (r * h) W_hn^T),  h' = z * h + (1 - z) * n.

    The reset gate multiplies h BEFORE the recurrent matrix here, which is why it cannot be
    an `nn.GRU` with other weights. The input projections of all steps are one matmul; the
    steps are a Python loop (sequences in the zoo are short: 8 to 28 steps)."""

    def __init__(self, features: int, units: int, return_sequences: bool = False) -> None:
        super().__init__()
        self.units, self.return_sequences = int(units), bool(return_sequences)
        bound = 1.0 / units ** 0.5  # nn.GRU's own default initialiser
        self.weight_ih_l0 = nn.Parameter(torch.empty(3 * units, features).uniform_(-bound, bound))
        self.weight_hh_l0 = nn.Parameter(torch.empty(3 * units, units).uniform_(-bound, bound))
        self.bias_l0 = nn.Parameter(torch.empty(3 * units).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.units
        gates_x = torch.matmul(x, self.weight_ih_l0.t()) + self.bias_l0  # (N, T, 3u)
        w_rz, w_n = self.weight_hh_l0[:2 * u], self.weight_hh_l0[2 * u:]
        h = x.new_zeros(x.shape[0], u)
        outs = []
        for t in range(x.shape[1]):
            gx = gates_x[:, t]
            rz = torch.sigmoid(gx[:, :2 * u] + torch.matmul(h, w_rz.t()))
            r, z = rz[:, :u], rz[:, u:]
            n = torch.tanh(gx[:, 2 * u:] + torch.matmul(r * h, w_n.t()))
            h = z * h + (1.0 - z) * n
            outs.append(h)
        return torch.stack(outs, dim=1) if self.return_sequences else h


def _embedding(r: Resolved) -> Named:
    return [(r.name, TokenEmbedding(r.layer.vocab, r.layer.dim))]


def _lstm(r: Resolved) -> Named:
    return [(r.name, LSTM(r.input_shape[1], r.layer.units, r.layer.return_sequences))]


def _gru(r: Resolved) -> Named:
    cls = GRU if r.layer.reset_after else ResetBeforeGRU
    return [(r.name, cls(r.input_shape[1], r.layer.units, r.layer.return_sequences))]


_TRANSLATIONS: dict[str, Callable[[Resolved], Named]] = {
    "dense": _dense, "conv2d": _conv2d, "max_pool2d": _max_pool2d, "avg_pool2d": _avg_pool2d,
    "flatten": _flatten, "dropout": _dropout, "activation": _activation,
    "batch_norm": _batch_norm, "layer_norm": _layer_norm, "embedding": _embedding,
    "lstm": _lstm, "gru": _gru,
}
