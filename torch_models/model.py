"""Every zoo model in PyTorch, built from its canonical layer list (`spec.resolved`): an
`nn.Sequential` of the modules of `torch_models.layers`, a loss module per loss kind, and the
canonical-weights edge.

- `build(spec, init, dtype)` -> `Net`: the children are named as the canonical layers
  (`dense_0`, `dropout_0`, `activation_0`, ...), so `state_dict()` keys are the weight tables'
  torch names. Images arrive NHWC (the canonical layout of every numpy array in the zoo) and
  `Net.forward` permutes them to NCHW once, at its edge: the one data-format conversion.
  Only (H, W, C) per-sample inputs are images: sequences (N, T, F) already are what the
  `batch_first=True` recurrent layers take, and token ids (N, T) go to the Embedding as they
  are (it casts them to int64).
- Weights cross the edge only through the weight tables (`zoo.layers.to_native` /
  `from_native`): `Linear.weight` is the kernel transposed, `Conv2d.weight` is HWIO -> OIHW,
  and the first Dense after a Flatten has its rows permuted from H, W, C to C, H, W order.
  A recurrent row may be several torch tensors: an LSTM's canonical bias is torch's
  `bias_ih_l0` + `bias_hh_l0` (loaded as (bias, zeros), read back as their sum), a
  reset_after=True GRU's two bias rows are `bias_ih_l0` and `bias_hh_l0`; gates are
  reordered (GRU z, r, h -> r, z, n) and kernels transposed (`zoo.layers.GateLayout`).
  A state_dict key that no table places, or a table row that finds no key, is an error that
  names it. `set_weights` checks the canonical dict first (`zoo.specs.check_canonical`); a
  *square* kernel passed in torch's layout has the right shape and loads silently: only a
  parity test against `zoo.reference` catches it.
- State: a BatchNorm's buffers `running_mean` / `running_var` are weight-table rows
  (`moving_mean` / `moving_variance`, trainable=False) and cross the edge with the weights.
  Its third buffer, `num_batches_tracked`, is in no table (`UNTABLED`): torch reads it only
  for `momentum=None` (a cumulative average), which no translation uses. `get_weights` skips
  it, `set_weights` leaves it alone, and the `.pt` file keeps it, so that the file is still
  the complete `state_dict` a plain `nn.BatchNorm2d` loads strictly. (Deleting the buffer
  instead would make every zoo `state_dict` one key short of torch's own modules.)
  `named_parameters()` hold the trainable rows: gradients, optimizers and the L2 penalty
  never see a buffer. One parameter is in the table without being trained: an LSTM's
  `bias_hh_l0`, frozen at zero (`requires_grad=False`, `torch_models.layers.LSTM`); the
  optimizers take only parameters that require gradients, and its canonical gradient is
  `bias_ih_l0`'s.
- Dropout, two ways: native `nn.Dropout` (active in train mode only: `torch.no_grad()` does
  NOT turn it off, `model.eval()` does), or shared masks, `forward(x, masks=[...])`, applying
  `h * mask / (1 - p)` with `zoo.specs.dropout_masks` whatever the mode.
- Losses take the raw outputs (logits), mean over the batch: `nn.CrossEntropyLoss` (int64
  labels (N,); int32 raises), the CS231n hinge, `nn.BCEWithLogitsLoss` and `nn.MSELoss` (float
  targets (N, 1): `MSELoss` of (N, 1) against (N,) broadcasts to N x N with only a warning),
  and seed 001's quadratic cost.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from torch_models.layers import translate
from zoo.errors import ConfigError
from zoo.layers import TensorSpec, from_native, tensor_specs, to_native
from zoo.specs import ModelSpec, check_canonical

__all__ = ["DTYPES", "UNTABLED", "MulticlassHingeLoss", "Net", "QuadraticCost", "build",
           "get_weights", "make_loss", "native_grads", "outputs", "penalty", "set_weights",
           "state_weights", "tabled"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
FRAMEWORK = "torch"
#: state_dict entries (by the last part of their key) that no weight table holds: BatchNorm's
#: step counter, only read by torch with momentum=None (see the module docstring)
UNTABLED = ("num_batches_tracked",)


def tabled(native: dict) -> dict:
    """`native` (a state_dict or {key: array}) without the `UNTABLED` entries."""
    return {k: v for k, v in native.items() if k.rsplit(".", 1)[-1] not in UNTABLED}


class Net(nn.Sequential):
    """The layers of `spec.resolved` in order, named as the canonical layers (plus a
    `<conv>_pad` ZeroPad2d before a conv with TF's asymmetric 'same' padding)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(OrderedDict(pair for r in spec.resolved for pair in translate(r)))
        self.spec = spec
        #: NHWC images (permuted to NCHW here); sequences (T, F) and token ids (T,) are not
        self.image = len(spec.input_shape) == 3

    def forward(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Raw outputs (N, outputs) of canonical inputs (N, *spec.input_shape): images NHWC,
        sequences (N, T, F), token ids (N, T) as floats, flat features (N, F).

        With `masks` (one 0/1 tensor per Dropout layer, in the canonical layout of
        `zoo.specs.dropout_masks`: (N, H, W, C) or (N, F)), each dropout is the shared
        `h * mask / (1 - p)` in train and eval mode alike; without them `nn.Dropout` acts as
        usual (random in train mode, identity in eval mode)."""
        if self.image:
            x = x.permute(0, 3, 1, 2)  # NHWC -> NCHW, the one data-format conversion
        if masks is None:
            return super().forward(x)
        drops = [m for m in self if isinstance(m, nn.Dropout)]
        if len(masks) != len(drops):
            raise ValueError(f"expected {len(drops)} dropout masks, one per Dropout layer, "
                             f"got {len(masks)}.")
        left = iter(masks)
        for layer in self:
            if isinstance(layer, nn.Dropout):
                mask = next(left)
                if mask.dim() == 4:
                    mask = mask.permute(0, 3, 1, 2)  # canonical NHWC mask -> NCHW
                x = x * mask / (1.0 - layer.p)
            else:
                x = layer(x)
        return x


def build(spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32") -> Net:
    """The `Net` of `spec`, in `dtype` (`.double()` for float64), in train mode (as every new
    `nn.Module`).

    init: canonical weights (normally `zoo.specs.init_weights`). None keeps torch's own
    initialiser: kaiming-uniform(a=sqrt(5)), i.e. weight ~ U(+-1/sqrt(fan_in)), and a *random*
    bias ~ U(+-1/sqrt(fan_in)) (Keras starts biases at zero).
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    model = Net(spec).to(DTYPES[dtype])
    if init is not None:
        set_weights(model, init)
    return model


def _native_arrays(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in tensors.items()}


def get_weights(model: Net) -> dict[str, np.ndarray]:
    """Canonical weights (numpy copies in the model's dtype, model order) from the
    `state_dict`, through the weight tables, BatchNorm's running statistics included; a key
    no table places is an error naming it (`num_batches_tracked` is skipped, `UNTABLED`)."""
    return from_native(_native_arrays(tabled(model.state_dict())), model.spec.resolved,
                       FRAMEWORK)


def state_weights(model: Net) -> dict[str, np.ndarray]:
    """The canonical state tensors only (BatchNorm's moving statistics; {} without state)."""
    return _canonical(_native_arrays(tabled(model.state_dict())),
                      tensor_specs(model.spec.resolved, trainable=False))


def _canonical(native: dict[str, np.ndarray], specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Canonical arrays of the rows `specs` (a part of the table) from torch-named arrays (a
    row may gather several: an LSTM bias is bias_ih + bias_hh)."""
    return {t.name: t.from_native_arrays(FRAMEWORK, native) for t in specs}


def set_weights(model: Net, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights into `model` in place, through the weight tables, cast to the
    model's dtype. Raises ConfigError naming every missing, unexpected or misshapen tensor
    (a non-square kernel in torch's layout gets a hint) and every state_dict key the table
    does not place (`num_batches_tracked`, in no table, is left as it is)."""
    check_canonical(weights, model.spec)
    native = to_native(weights, model.spec.resolved, FRAMEWORK)
    state = tabled(model.state_dict())  # tensors sharing the parameters' and buffers' storage
    missing, unplaced = sorted(set(native) - set(state)), sorted(set(state) - set(native))
    if missing or unplaced:
        raise ConfigError(f"torch model {model.spec.name!r} does not match its weight table: "
                          f"no module holds {missing or 'nothing'}, no table row places "
                          f"{unplaced or 'nothing'}.")
    with torch.no_grad():
        for key, value in native.items():
            state[key].copy_(torch.as_tensor(value, dtype=state[key].dtype))


def native_grads(model: Net) -> dict[str, np.ndarray]:
    """The gradients of the last backward pass in the canonical layout (through the tables),
    for the trainable rows only: state tensors are buffers and have none.

    A parameter without a gradient counts as zero: the frozen LSTM `bias_hh_l0` (so the
    canonical bias's gradient, through the table's bias_ih + bias_hh, is `bias_ih_l0`'s,
    which is exactly d loss / d bias since torch only ever uses their sum)."""
    grads = _native_arrays({k: p.grad if p.grad is not None else torch.zeros_like(p)
                            for k, p in model.named_parameters()})
    return _canonical(grads, tensor_specs(model.spec.resolved, trainable=True))


def penalty(model: Net, l2: float) -> torch.Tensor | float:
    """0.5 * l2 * sum of squared penalised tensors (Dense, Conv2D and recurrent kernels, never
    biases, embeddings nor a norm layer's gamma and beta), computed on the native weights: a
    permutation (transpose, gate reorder) leaves the sum unchanged. Every penalised row is one
    torch tensor (`native_name` raises otherwise: the squares of a split bias's parts do not
    sum to the square of the bias). Never torch's `weight_decay`, which differs from this
    penalty under momentum and adaptive optimizers."""
    if not l2:
        return 0.0
    params = dict(model.named_parameters())
    return 0.5 * l2 * sum((params[t.native_name(FRAMEWORK)] ** 2).sum()
                          for t in tensor_specs(model.spec.resolved) if t.penalised)


class MulticlassHingeLoss(nn.Module):
    """Mean over the batch of sum_{j != y} max(0, s_j - s_y + margin); targets int64 (N,).

    The CS231n hinge (seed 003): not Keras's `CategoricalHinge` (Crammer-Singer: max over the
    wrong classes) nor torch's `nn.MultiMarginLoss` (which also divides by C)."""

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


class QuadraticCost(nn.Module):
    """Seed 001's cost: 0.5 * ||sigmoid(z) - one_hot(y)||^2 summed over the outputs, averaged
    over the samples; targets int64 labels (N,). (`nn.MSELoss` would also average over the
    outputs: a factor 2 / C away.)"""

    def forward(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        onehot = nn.functional.one_hot(target, z.shape[1]).to(z.dtype)
        return 0.5 * ((torch.sigmoid(z) - onehot) ** 2).sum(dim=1).mean()


_LOSSES: dict[str, type[nn.Module]] = {
    "cross_entropy": nn.CrossEntropyLoss, "hinge": MulticlassHingeLoss,
    "binary_cross_entropy": nn.BCEWithLogitsLoss, "mse": nn.MSELoss, "quadratic": QuadraticCost,
}


def make_loss(spec: ModelSpec) -> nn.Module:
    """The loss module of `spec.loss`: mean over the batch, from the raw outputs."""
    return _LOSSES[spec.loss]()


def outputs(spec: ModelSpec, raw: torch.Tensor) -> torch.Tensor:
    """What `predict` returns from the raw outputs: softmax probabilities (the SVM's too: it
    has none of its own, this ranks as argmax), the sigmoid of every output unit, or the raw
    values (regression)."""
    if spec.output == "softmax":
        return torch.softmax(raw, dim=1)
    if spec.output == "sigmoid":
        return torch.sigmoid(raw)
    return raw
