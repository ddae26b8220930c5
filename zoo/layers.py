"""The canonical layer description: what every framework builds, and how each tensor crosses
every framework boundary.

A model is an ordered list of layers (`Dense`, `Conv2D`, `MaxPool2D`, `AvgPool2D`, `Flatten`,
`Dropout`, `Activation`, `BatchNorm`, `LayerNorm`, `Embedding`, `LSTM`, `GRU`), a loss and an output kind (`zoo.models`). `resolve(layers,
input_shape)` walks the list once, names every layer (`dense_0`, `conv2d_0`, `max_pool2d_0`,
... counted per kind, in order), infers every shape, refuses what cannot be built (a kernel
larger than its input, a Dense on an unflattened image), and gives each layer its **weight
table**: every tensor's canonical name, canonical shape, trained or state, initialiser, and per
framework its native name and the permutation that converts it.

The canonical layout is Keras's (and TF1's): Dense kernels (in, out), Conv2D kernels
(kh, kw, in, out) = HWIO, images NHWC, features after a Flatten in H, W, C order. torch
differs, and the permutations below are the only place that says how:

- `Linear.weight` is (out, in): the transpose of the kernel;
- `Conv2d.weight` is (out, in, kh, kw) = OIHW: HWIO permuted (3, 2, 0, 1);
- torch images are NCHW, so `nn.Flatten` yields C, H, W order: the first Dense after a
  Flatten of an (H, W, C) image has its kernel rows permuted from H, W, C to C, H, W order
  before the transpose (`FlattenedDense`).

Nothing is ever skipped silently: `check_weights` names every missing, unexpected or
misshapen tensor, and `to_native` / `from_native` refuse a name they do not know.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from zoo.errors import ConfigError

__all__ = ["ACTIVATIONS", "COLUMN_ALIASES", "GRU", "LSTM", "Activation", "AvgPool2D", "BatchNorm", "Conv2D",
           "Block", "CellBlocks", "Dense", "Dropout", "Embedding", "Flatten", "GateLayout", "Layer", "LayerNorm", "Layout", "MaxPool2D", "Resolved", "TensorSpec",
           "TF1_LAYERS", "check_weights", "corrected_moving_variance", "from_native", "has_state",
           "resolve", "tf1_layers_scope", "FlatNative",
           "same_padding", "to_native", "weight_shapes"]

ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear")


# ----------------------------------------------------------------------------- layouts
@dataclass(frozen=True)
class Layout:
    """How a canonical array becomes a framework's own and back: an axis permutation, after
    an optional reshape of the canonical array (`split`) and followed by a reshape to
    `native_shape` (used for the kernel of a Dense after a Flatten)."""

    perm: tuple[int, ...] | None = None
    split: tuple[int, ...] | None = None   # canonical array viewed as this shape first
    native_shape: tuple[int, ...] | None = None
    what: str = "as is"

    def to_native(self, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        if self.split is not None:
            a = a.reshape(self.split)
        if self.perm is not None:
            a = np.transpose(a, self.perm)
        if self.native_shape is not None:
            a = a.reshape(self.native_shape)
        return np.ascontiguousarray(a)

    def from_native(self, a: np.ndarray, canonical_shape: tuple[int, ...]) -> np.ndarray:
        a = np.asarray(a)
        if self.native_shape is not None:
            inter = tuple(np.array(self.split)[list(self.perm)]) if self.split and self.perm \
                else self.split
            a = a.reshape(inter if inter is not None else a.shape)
        if self.perm is not None:
            a = np.transpose(a, np.argsort(self.perm))
        return np.ascontiguousarray(a.reshape(canonical_shape))


AS_IS = Layout()

#: weight-table columns that are another column under a second name (a framework whose native
#: names and layouts are those of the other): "keras2", Keras 2 (`tf_keras`, keras2_models),
#: names its layers as the Keras 3 column does, and its variables are then Keras 3's
#: (`dense_0/kernel`, `lstm_0/recurrent_kernel`, `batch_norm_0/moving_variance`), in the same
#: layouts. Resolved in one place, `TensorSpec._entry`.
COLUMN_ALIASES: dict[str, str] = {"keras2": "keras"}


@dataclass(frozen=True)
class GateLayout:
    """How a recurrent layer's tensor becomes torch's: its gate blocks reordered, kernels
    transposed, and a bias possibly split over torch's two biases.

    Canonical (Keras) recurrent tensors hold G gates of `units` columns side by side along
    their last axis: LSTM i, f, c, o (G = 4), GRU z, r, h (G = 3). torch stacks the gates along
    its FIRST axis, in its own order: LSTM i, f, g, o (the same order: g is Keras's c), GRU
    r, z, n (z and r swapped). `order[k]` is the canonical gate that becomes torch's gate k.

    - kernels (in, G*u) / recurrent kernels (u, G*u): gates reordered, then transposed to
      (G*u, in) / (G*u, u) (`transpose=True`);
    - `bias="sum"`: one canonical bias (G*u,) is torch's bias_ih + bias_hh. Into torch it
      goes whole into bias_ih with bias_hh zero (and frozen: trained, the two would move
      twice as fast as Keras's one bias under SGD); out of torch the two are summed, so a
      torch-trained pair converts exactly;
    - `bias="rows"`: a canonical (2, G*u) bias (Keras GRU, reset_after=True: input and
      recurrent bias) is torch's (bias_ih, bias_hh), row by row.
    """

    order: tuple[int, ...]
    units: int
    transpose: bool = False
    bias: str | None = None     # None, "sum" or "rows"
    what: str = ""

    def _reorder(self, a: np.ndarray, order) -> np.ndarray:
        g, u = len(self.order), self.units
        lead = a.shape[:-1]
        return a.reshape(*lead, g, u)[..., list(order), :].reshape(*lead, g * u)

    def to_native(self, a: np.ndarray):
        a = self._reorder(np.asarray(a), self.order)
        if self.bias == "sum":
            return np.ascontiguousarray(a), np.zeros_like(a)
        if self.bias == "rows":
            return np.ascontiguousarray(a[0]), np.ascontiguousarray(a[1])
        return np.ascontiguousarray(a.T if self.transpose else a)

    def from_native(self, a, canonical_shape: tuple[int, ...]) -> np.ndarray:
        back = tuple(int(i) for i in np.argsort(self.order))
        if self.bias == "sum":
            a = np.asarray(a[0]) + np.asarray(a[1])
        elif self.bias == "rows":
            a = np.stack([np.asarray(a[0]), np.asarray(a[1])])
        else:
            a = np.asarray(a).T if self.transpose else np.asarray(a)
        return np.ascontiguousarray(self._reorder(a, back).reshape(canonical_shape))


@dataclass(frozen=True)
class Block:
    """Rows [start, stop) of a native tensor of `rows` rows that holds several canonical
    tensors stacked along its first axis (TF1's `rnn_cell` kernels over [x, h]: the input
    kernel's rows, then the recurrent kernel's). `to_native` assembles the blocks of one
    native tensor (`join`); each canonical row's layout slices its own block back out."""

    value: np.ndarray
    start: int
    stop: int
    rows: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the whole native tensor."""
        return (self.rows, *np.shape(self.value)[1:])

    @staticmethod
    def join(name: str, blocks: Sequence[Block]) -> np.ndarray:
        """The native tensor `name` from its blocks, which must tile its rows exactly."""
        blocks = sorted(blocks, key=lambda b: b.start)
        edges = [0, *(e for b in blocks for e in (b.start, b.stop)), blocks[-1].rows]
        if any(edges[i] != edges[i + 1] for i in range(0, len(edges), 2)) \
                or len({b.rows for b in blocks}) != 1:
            raise ConfigError(f"native tensor {name}: its blocks "
                              f"{[(b.start, b.stop) for b in blocks]} do not tile its "
                              f"{blocks[-1].rows} rows.")
        return np.ascontiguousarray(np.concatenate([np.asarray(b.value) for b in blocks]))


@dataclass(frozen=True)
class CellBlocks:
    """How a canonical recurrent tensor becomes the variables of TF1's `rnn_cell`s
    (`LSTMCell`, `GRUCell`): one native tensor may hold several canonical ones, and one
    canonical tensor may go to several native ones.

    The canonical tensor's gate blocks of `units` columns (LSTM i, f, c, o; GRU z, r, h) go to
    native tensor j in the order `gates[j]` (canonical gate indices); `shift[j]` (one number
    per gate of native tensor j) is subtracted on the way in and added back on the way out
    (LSTMCell adds forget_bias=1.0 to its forget gate at run time, so its stored bias is the
    canonical one minus 1). With `rows = (start, stop, total)` the result fills rows
    [start, stop) of a native tensor of `total` rows (a `Block`): the cells' kernels act on
    the concatenation [x, h], so the input kernel fills rows [0, F) and the recurrent kernel
    rows [F, F + units) of the same variable."""

    units: int
    gates: tuple[tuple[int, ...], ...]
    rows: tuple[int, int, int] | None = None
    shift: tuple[tuple[float, ...], ...] | None = None
    what: str = ""

    def to_native(self, a: np.ndarray):
        a = np.asarray(a)
        lead, u = a.shape[:-1], self.units
        blocks = a.reshape(*lead, -1, u)
        out = []
        for j, gs in enumerate(self.gates):
            b = blocks[..., list(gs), :]
            if self.shift is not None:
                b = b - np.asarray(self.shift[j], a.dtype)[:, None]
            b = np.ascontiguousarray(b.reshape(*lead, len(gs) * u))
            out.append(Block(b, *self.rows) if self.rows is not None else b)
        return out[0] if len(out) == 1 else tuple(out)

    def from_native(self, a, canonical_shape: tuple[int, ...]) -> np.ndarray:
        parts = a if isinstance(a, tuple) else (a,)
        lead, u = tuple(canonical_shape[:-1]), self.units
        out = np.zeros((*lead, canonical_shape[-1] // u, u), np.asarray(parts[0]).dtype)
        for j, (gs, p) in enumerate(zip(self.gates, parts, strict=True)):
            p = np.asarray(p)
            if self.rows is not None:
                p = p[self.rows[0]:self.rows[1]]
            p = p.reshape(*lead, len(gs), u)
            if self.shift is not None:
                p = p + np.asarray(self.shift[j], p.dtype)[:, None]
            out[..., list(gs), :] = p
        return np.ascontiguousarray(out.reshape(canonical_shape))


@dataclass(frozen=True)
class TensorSpec:
    """One row of a weight table."""

    name: str                      # canonical, e.g. "conv2d_0/kernel"
    shape: tuple[int, ...]         # canonical shape
    trainable: bool = True         # False: state (moving statistics), never trained
    init: str = "zeros"  # glorot_uniform, zeros, ones, normal, uniform, orthogonal, forget_ones
    fans: tuple[int, int] = (0, 0)  # (fan_in, fan_out) for glorot
    penalised: bool = False        # takes part in the L2 penalty (kernels)
    #: framework -> (native name, layout), or (tuple of native names, layout) when one
    #: canonical tensor is several native ones (torch's two recurrent biases)
    native: dict[str, tuple[Any, Any]] = field(default_factory=dict, compare=False)

    def native_name(self, framework: str) -> str:
        """The one native name of this row (a row split over several native tensors has
        `native_names` instead)."""
        name = self._entry(framework)[0]
        if not isinstance(name, str):
            raise ConfigError(f"{self.name}: {framework} holds it as several tensors "
                              f"{list(name)}; use native_names / native_arrays.")
        return name

    def native_names(self, framework: str) -> tuple[str, ...]:
        name = self._entry(framework)[0]
        return (name,) if isinstance(name, str) else tuple(name)

    def layout(self, framework: str):
        return self._entry(framework)[1]

    def native_arrays(self, framework: str, a: np.ndarray) -> dict[str, np.ndarray]:
        """{native name: native array} of the canonical array `a` (a `Block` where the native
        tensor holds other rows too: `to_native` assembles those)."""
        out = self.layout(framework).to_native(a)
        parts = out if isinstance(out, tuple) else (out,)
        return dict(zip(self.native_names(framework), parts, strict=True))

    def from_native_arrays(self, framework: str, native: dict[str, np.ndarray]) -> np.ndarray:
        """The canonical array from this row's native arrays (`native` holds at least them)."""
        names = self.native_names(framework)
        parts = tuple(np.asarray(native[n]) for n in names)
        return self.layout(framework).from_native(parts if len(names) > 1 else parts[0],
                                                  self.shape)

    def native_shapes(self, framework: str) -> dict[str, tuple[int, ...]]:
        """{native name: the whole native tensor's shape} (a `Block`'s whole tensor)."""
        return {n: tuple(a.shape) for n, a in
                self.native_arrays(framework, np.zeros(self.shape, np.int8)).items()}

    def native_shape(self, framework: str) -> tuple[int, ...]:
        shapes = list(self.native_shapes(framework).values())
        return shapes[0] if len(shapes) == 1 else tuple(shapes)  # type: ignore[return-value]

    def _entry(self, framework: str) -> tuple[Any, Any]:
        column = framework if framework in self.native else COLUMN_ALIASES.get(framework)
        if column not in self.native:
            raise ConfigError(f"{self.name}: no {framework!r} translation in its weight table "
                              f"(known: {', '.join(self.native)}).")
        return self.native[column]


# ----------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class Layer:
    """Base class: a layer without weights that keeps its input shape."""

    kind: ClassVar[str] = "layer"

    def output_shape(self, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape

    def tensors(self, name: str, shape: tuple[int, ...], after_flatten: tuple[int, ...] | None
                ) -> list[TensorSpec]:
        return []

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({args})"


def _native(name: str, keras: str, tf1: str, torch: str, torch_layout: Layout = AS_IS
            ) -> dict[str, tuple[str, Layout]]:
    return {"keras": (keras, AS_IS), "tf1": (tf1, AS_IS), "torch": (torch, torch_layout)}


@dataclass(frozen=True)
class Dense(Layer):
    """y = x @ kernel + bias on (N, in) features; kernel (in, out) canonical."""

    units: int
    init: str = "glorot_uniform"   # kernel initialiser; "normal" draws N(0, 1) kernel AND bias
    kind: ClassVar[str] = "dense"

    def __post_init__(self) -> None:
        _positive("Dense units", self.units)
        _choice("Dense init", self.init, ("glorot_uniform", "normal"))

    def output_shape(self, name, shape):
        if len(shape) != 1:
            raise ConfigError(f"{name}: a Dense layer needs flat (N, features) input but gets "
                              f"{_fmt(shape)} per sample; put a Flatten before it.")
        return (self.units,)

    def tensors(self, name, shape, after_flatten):
        n_in, n_out = shape[0], self.units
        if after_flatten is not None and len(after_flatten) == 3:
            h, w, c = after_flatten
            torch_kernel = Layout(perm=(3, 2, 0, 1), split=(h, w, c, n_out),
                                  native_shape=(n_out, c * h * w),
                                  what="rows from H, W, C to C, H, W order (torch flattens "
                                       "NCHW), then transposed to (out, in)")
        else:
            torch_kernel = Layout(perm=(1, 0), what="transposed: (in, out) -> (out, in)")
        bias_init = "normal" if self.init == "normal" else "zeros"
        return [
            TensorSpec(f"{name}/kernel", (n_in, n_out), init=self.init, fans=(n_in, n_out),
                       penalised=True,
                       native=_native(name, f"{name}/kernel", f"{name}/kernel",
                                      f"{name}.weight", torch_kernel)),
            TensorSpec(f"{name}/bias", (n_out,), init=bias_init,
                       native=_native(name, f"{name}/bias", f"{name}/bias", f"{name}.bias")),
        ]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one spatial axis: (before, after). The output has
    ceil(size / stride) positions; an odd total pads one more AFTER (bottom/right), which
    torch's symmetric `padding=` cannot express (and its `padding='same'` refuses stride > 1)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class Conv2D(Layer):
    """2-D convolution (cross-correlation) on NHWC images; kernel (kh, kw, in, out) = HWIO."""

    filters: int
    kernel_size: tuple[int, int] | int = 3
    strides: tuple[int, int] | int = 1
    padding: str = "valid"
    use_bias: bool = True   # False before a BatchNorm, whose beta makes a bias redundant
    kind: ClassVar[str] = "conv2d"

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel_size", _pair("Conv2D kernel_size", self.kernel_size))
        object.__setattr__(self, "strides", _pair("Conv2D strides", self.strides))
        _positive("Conv2D filters", self.filters)
        _choice("Conv2D padding", self.padding, ("valid", "same"))

    def output_shape(self, name, shape):
        h, w, _ = _image(name, shape)
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        if self.padding == "same":
            return (-(-h // sh), -(-w // sw), self.filters)
        if kh > h or kw > w:
            raise ConfigError(f"{name}: its {kh}x{kw} kernel is larger than its {h}x{w} input "
                              "('valid' padding); use larger images, a smaller kernel or "
                              "'same' padding.")
        return ((h - kh) // sh + 1, (w - kw) // sw + 1, self.filters)

    def padding_of(self, shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
        """((top, bottom), (left, right)) zero padding for an (H, W, C) input."""
        if self.padding == "valid":
            return (0, 0), (0, 0)
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        return same_padding(shape[0], kh, sh), same_padding(shape[1], kw, sw)

    def tensors(self, name, shape, after_flatten):
        kh, kw = self.kernel_size
        c_in = shape[2]
        kernel = TensorSpec(f"{name}/kernel", (kh, kw, c_in, self.filters), init="glorot_uniform",
                            fans=(kh * kw * c_in, kh * kw * self.filters), penalised=True,
                            native=_native(name, f"{name}/kernel", f"{name}/kernel",
                                           f"{name}.weight",
                                           Layout(perm=(3, 2, 0, 1),
                                                  what="HWIO -> OIHW: permuted (3, 2, 0, 1)")))
        if not self.use_bias:
            return [kernel]
        return [kernel, TensorSpec(f"{name}/bias", (self.filters,),
                                   native=_native(name, f"{name}/bias", f"{name}/bias",
                                                  f"{name}.bias"))]


@dataclass(frozen=True)
class _Pool(Layer):
    pool_size: tuple[int, int] | int = 2
    strides: tuple[int, int] | int | None = None   # None: the pool size (Keras's default)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pool_size", _pair(f"{type(self).__name__} pool_size",
                                                    self.pool_size))
        strides = self.pool_size if self.strides is None else self.strides
        object.__setattr__(self, "strides", _pair(f"{type(self).__name__} strides", strides))

    def output_shape(self, name, shape):
        h, w, c = _image(name, shape)
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        if ph > h or pw > w:
            raise ConfigError(f"{name}: its {ph}x{pw} pool is larger than its {h}x{w} input; "
                              "use larger images or a smaller pool.")
        return ((h - ph) // sh + 1, (w - pw) // sw + 1, c)


@dataclass(frozen=True)
class MaxPool2D(_Pool):
    """Max pooling, 'valid' padding (the floor of the windows that fit)."""

    kind: ClassVar[str] = "max_pool2d"


@dataclass(frozen=True)
class AvgPool2D(_Pool):
    """Average pooling, 'valid' padding."""

    kind: ClassVar[str] = "avg_pool2d"


@dataclass(frozen=True)
class Flatten(Layer):
    """(N, H, W, C) -> (N, H*W*C) in H, W, C order (the canonical order)."""

    kind: ClassVar[str] = "flatten"

    def output_shape(self, name, shape):
        return (int(np.prod(shape)),)


@dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout: h * mask / (1 - rate). For step-by-step comparisons every framework
    applies the same precomputed masks (`zoo.specs.dropout_masks`)."""

    rate: float = 0.5
    kind: ClassVar[str] = "dropout"

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.rate) < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {self.rate}.")


@dataclass(frozen=True)
class Activation(Layer):
    """An elementwise activation: relu, sigmoid, tanh or linear."""

    name: str = "relu"
    kind: ClassVar[str] = "activation"

    def __post_init__(self) -> None:
        _choice("activation", self.name, ACTIVATIONS)


# ----------------------------------------------------------------------------- normalisation
VARIANCES = ("biased", "unbiased")


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation over the last (channel or feature) axis: per channel c,

        training:  y = gamma * (x - mean_B) / sqrt(var_B + epsilon) + beta,
                   mean_B, var_B the batch's mean and BIASED variance over every other axis
                   (N for features, N, H, W for NHWC images), and then
                   moving_mean     <- momentum * moving_mean     + (1 - momentum) * mean_B
                   moving_variance <- momentum * moving_variance + (1 - momentum) * v_B
        inference: the same with moving_mean, moving_variance in place of mean_B, var_B.

    This is the one canonical description; every framework translates it:

    - `momentum` is Keras's convention: the weight of the OLD moving value (Keras default
      0.99). torch's `momentum` is the weight of the NEW batch value (default 0.1): the
      translation is 1 - momentum (`torch_momentum`), so torch's default means 0.9 here;
    - `epsilon` is added to the variance inside the square root in every framework (Keras
      default 1e-3, torch 1e-5: always passed explicitly);
    - `moving_variance` says which batch variance v_B feeds the moving variance: "biased"
      (v_B = var_B, what Keras 3 and `tf.nn.moments` give; the default) or "unbiased"
      (v_B = var_B * m / (m - 1) with m the values per channel, Bessel's correction: what
      torch's `BatchNorm` and TF's fused kernel give). Normalisation itself always uses the
      biased var_B, in every framework. A framework that updates with the other variance is
      corrected after its own update by `corrected_moving_variance`, written once below.

    Weights: gamma (ones) and beta (zeros) are trained; moving_mean (zeros) and
    moving_variance (ones) are state: never trained, updated only by training-mode passes,
    and carried with the weights everywhere (canonical `.npz`, `.keras`, torch buffers, TF1
    checkpoints)."""

    momentum: float = 0.99
    epsilon: float = 1e-3
    moving_variance: str = "biased"
    kind: ClassVar[str] = "batch_norm"

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.momentum) < 1.0:
            raise ConfigError(f"BatchNorm momentum must be in [0, 1) (Keras's convention: the "
                              f"weight of the old moving value), got {self.momentum}.")
        if not float(self.epsilon) > 0.0:
            raise ConfigError(f"BatchNorm epsilon must be > 0, got {self.epsilon}.")
        _choice("BatchNorm moving_variance", self.moving_variance, VARIANCES)

    @property
    def torch_momentum(self) -> float:
        """torch's `momentum` argument: the weight of the new batch value, 1 - momentum."""
        return 1.0 - float(self.momentum)

    def output_shape(self, name, shape):
        if len(shape) not in (1, 3):
            raise ConfigError(f"{name}: BatchNorm takes flat features or (H, W, C) images, not "
                              f"{_fmt(shape)}.")
        return shape

    def tensors(self, name, shape, after_flatten):
        c = (shape[-1],)

        def row(short: str, torch_name: str, init: str, trainable: bool) -> TensorSpec:
            return TensorSpec(f"{name}/{short}", c, trainable=trainable, init=init,
                              native=_native(name, f"{name}/{short}", f"{name}/{short}",
                                             f"{name}.{torch_name}"))
        return [row("gamma", "weight", "ones", True), row("beta", "bias", "zeros", True),
                row("moving_mean", "running_mean", "zeros", False),
                row("moving_variance", "running_var", "ones", False)]


def corrected_moving_variance(before, after, count: int, momentum: float, has: str, wants: str):
    """The moving variance `wants` ("biased" or "unbiased") calls for, from a framework's own
    update that used the `has` variance: the one compensation of the zoo, used by every
    framework whose native layer updates with the other variance (torch: unbiased; Keras 3:
    biased).

    A framework's update is after = momentum * before + (1 - momentum) * v_has, with `count`
    values per channel in the batch. The two variances differ by Bessel's factor,
    v_unbiased = v_biased * count / (count - 1), so the wanted update is

        after + (after - momentum * before) * (c - 1),   c = (count - 1) / count  (to biased)
                                                          c = count / (count - 1)  (to unbiased)

    which needs neither the batch variance nor a second pass over the batch. It is exact in
    real arithmetic; in floating point it adds one rounding of the update's size (a test
    states and checks the bound). Works on numpy arrays and framework tensors alike. A batch
    of one value per channel has no unbiased variance (torch raises): refused here."""
    if has == wants:
        return after
    if count < 2:
        raise ConfigError("a batch with one value per channel has no unbiased variance; use "
                          "batches of at least 2 samples with BatchNorm.")
    c = (count - 1) / count if wants == "biased" else count / (count - 1)
    return after + (after - float(momentum) * before) * (c - 1.0)


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer normalisation of flat features, per sample over the feature axis:
    y = gamma * (x - mean) / sqrt(var + epsilon) + beta, mean and the BIASED variance over
    the features of that sample (Keras `LayerNormalization(axis=-1)`, torch
    `nn.LayerNorm(features)`; both use the biased variance). No state: training and inference
    compute the same. epsilon: Keras's default 1e-3 (torch's is 1e-5: always passed)."""

    epsilon: float = 1e-3
    kind: ClassVar[str] = "layer_norm"

    def __post_init__(self) -> None:
        if not float(self.epsilon) > 0.0:
            raise ConfigError(f"LayerNorm epsilon must be > 0, got {self.epsilon}.")

    def output_shape(self, name, shape):
        if len(shape) != 1:
            raise ConfigError(f"{name}: LayerNorm normalises flat features; it gets "
                              f"{_fmt(shape)} per sample (put it after a Flatten or a Dense).")
        return shape

    def tensors(self, name, shape, after_flatten):
        return [TensorSpec(f"{name}/{short}", shape, init=init,
                           native=_native(name, f"{name}/{short}", f"{name}/{short}",
                                          f"{name}.{torch_name}"))
                for short, torch_name, init in (("gamma", "weight", "ones"),
                                                ("beta", "bias", "zeros"))]


# ----------------------------------------------------------------------------- sequences
@dataclass(frozen=True)
class Embedding(Layer):
    """Token ids (N, T) -> vectors (N, T, dim); `embeddings` (vocab, dim) in every framework
    (Keras `Embedding`, torch `nn.Embedding`, TF1 `tf.nn.embedding_lookup`). Ids arrive as the
    zoo's float arrays holding whole numbers and are cast to integers at the layer; an id
    outside [0, vocab) is an error (`zoo.specs.check_inputs`). Initialiser: Keras's uniform
    U(-0.05, 0.05) (torch's default is N(0, 1))."""

    vocab: int
    dim: int
    kind: ClassVar[str] = "embedding"

    def __post_init__(self) -> None:
        _positive("Embedding vocab", self.vocab)
        _positive("Embedding dim", self.dim)

    def output_shape(self, name, shape):
        if len(shape) != 1:
            raise ConfigError(f"{name}: an Embedding takes token-id sequences (N, T) but gets "
                              f"{_fmt(shape)} per sample; use a token dataset (tokens).")
        return (shape[0], self.dim)

    def tensors(self, name, shape, after_flatten):
        return [TensorSpec(f"{name}/embeddings", (self.vocab, self.dim), init="uniform",
                           native=_native(name, f"{name}/embeddings", f"{name}/embeddings",
                                          f"{name}.weight"))]


@dataclass(frozen=True)
class _Recurrent(Layer):
    units: int
    return_sequences: bool = False   # True: (T, units) per sample; False: the last step's

    GATES: ClassVar[int] = 1
    #: torch's gate k is the canonical gate TORCH_ORDER[k]
    TORCH_ORDER: ClassVar[tuple[int, ...]] = (0,)

    def __post_init__(self) -> None:
        _positive(f"{type(self).__name__} units", self.units)

    def output_shape(self, name, shape):
        if len(shape) != 2:
            raise ConfigError(f"{name}: a {type(self).__name__} reads sequences (T, features) "
                              f"per sample but gets {_fmt(shape)}; use images read row by row "
                              "(digits, mnist10k: each row a time step) or an Embedding of "
                              "tokens.")
        return (shape[0], self.units) if self.return_sequences else (self.units,)

    def _bias_rows(self, name: str, g: int) -> list[TensorSpec]:
        u = self.units
        layout = GateLayout(self.TORCH_ORDER, u, bias="sum",
                            what="gates reordered; torch's bias_ih + bias_hh (bias_hh zero "
                                 "and frozen)")
        return [TensorSpec(f"{name}/bias", (g * u,), init=self._bias_init(),
                           native={"keras": (f"{name}/bias", AS_IS),
                                   "tf1": (f"{name}/bias", AS_IS),
                                   "torch": ((f"{name}.bias_ih_l0", f"{name}.bias_hh_l0"),
                                             layout)})]

    def _bias_init(self) -> str:
        return "zeros"

    def tensors(self, name, shape, after_flatten):
        f, u, g = shape[1], self.units, self.GATES
        kernel = GateLayout(self.TORCH_ORDER, u, transpose=True,
                            what="gates reordered, transposed to (gates*units, in)")
        return [
            TensorSpec(f"{name}/kernel", (f, g * u), init="glorot_uniform", fans=(f, g * u),
                       penalised=True,
                       native={"keras": (f"{name}/kernel", AS_IS), "tf1": (f"{name}/kernel", AS_IS),
                               "torch": (f"{name}.weight_ih_l0", kernel)}),
            TensorSpec(f"{name}/recurrent_kernel", (u, g * u), init="orthogonal",
                       penalised=True,
                       native={"keras": (f"{name}/recurrent_kernel", AS_IS),
                               "tf1": (f"{name}/recurrent_kernel", AS_IS),
                               "torch": (f"{name}.weight_hh_l0", kernel)}),
            *self._bias_rows(name, g),
        ]


@dataclass(frozen=True)
class LSTM(_Recurrent):
    """Keras's LSTM (tanh cell and output, sigmoid gates), gates i, f, c, o along the last axis
    of `kernel` (features, 4u), `recurrent_kernel` (u, 4u) and `bias` (4u,):

        i = sigmoid(x Wi + h Ui + bi), f = sigmoid(x Wf + h Uf + bf),
        c' = f * c + i * tanh(x Wc + h Uc + bc), o = sigmoid(x Wo + h Uo + bo),
        h' = o * tanh(c'),  h and c starting at zero.

    torch's `nn.LSTM(batch_first=True)` computes the same with gates i, f, g, o (the same
    order) stacked along its first axis and TWO biases (bias_ih + bias_hh: the weight table
    puts the bias in bias_ih and freezes bias_hh at zero). TF1's `rnn_cell.LSTMCell` orders
    its gates i, j, f, o over one kernel of (features + u, 4u) and adds forget_bias=1.0 at run
    time (docs/porting.md); the zoo's TF1 translation uses the canonical layout instead.
    Initialisers: Keras's glorot-uniform kernel, orthogonal recurrent kernel, and the bias at
    zero except ones for the forget gate (`unit_forget_bias=True`)."""

    GATES: ClassVar[int] = 4
    TORCH_ORDER: ClassVar[tuple[int, ...]] = (0, 1, 2, 3)
    kind: ClassVar[str] = "lstm"

    def _bias_init(self) -> str:
        return "forget_ones"


@dataclass(frozen=True)
class GRU(_Recurrent):
    """Keras's GRU (tanh candidate, sigmoid gates), gates z, r, h along the last axis:

        z = sigmoid(x Wz + bz + h Uz + b'z), r = sigmoid(x Wr + br + h Ur + b'r),
        reset_after=True  (Keras 3's default, cuDNN's and torch's):
            h~ = tanh(x Wh + bh + r * (h Uh + b'h));  bias (2, 3u): input row, recurrent row
        reset_after=False (Keras 2's original GRU):
            h~ = tanh(x Wh + (r * h) Uh + bh);         bias (3u,): one row
        h' = z * h + (1 - z) * h~,  h starting at zero.

    torch's `nn.GRU` is the reset_after=True GRU with gates r, z, n (z and r swapped) stacked
    along its first axis and the two bias rows as bias_ih, bias_hh. reset_after=False has no
    torch layer: the zoo's torch translation is a small module with torch's names and gate
    order (`bias_l0` its one bias)."""

    reset_after: bool = True
    GATES: ClassVar[int] = 3
    TORCH_ORDER: ClassVar[tuple[int, ...]] = (1, 0, 2)
    kind: ClassVar[str] = "gru"

    def _bias_rows(self, name: str, g: int) -> list[TensorSpec]:
        u = self.units
        if not self.reset_after:
            layout = GateLayout(self.TORCH_ORDER, u, what="gates z, r, h -> r, z, n")
            return [TensorSpec(f"{name}/bias", (g * u,),
                               native={"keras": (f"{name}/bias", AS_IS),
                                       "tf1": (f"{name}/bias", AS_IS),
                                       "torch": (f"{name}.bias_l0", layout)})]
        layout = GateLayout(self.TORCH_ORDER, u, bias="rows",
                            what="gates z, r, h -> r, z, n; row 0 -> bias_ih, row 1 -> bias_hh")
        return [TensorSpec(f"{name}/bias", (2, g * u),
                           native={"keras": (f"{name}/bias", AS_IS),
                                   "tf1": (f"{name}/bias", AS_IS),
                                   "torch": ((f"{name}.bias_ih_l0", f"{name}.bias_hh_l0"),
                                             layout)})]


# ----------------------------------------------------------------------------- TF1 layers
#: The weight-table column of TF1 code as it was written (`tf.compat.v1.layers`,
#: `tf.compat.v1.nn.rnn_cell` + `dynamic_rnn`; the registry's "tf1-layers" weight format).
TF1_LAYERS = "tf1-layers"
#: `LSTMCell`'s default forget_bias, added to the forget gate at run time: the column's LSTM
#: bias is the canonical one minus this on the forget block, so a checkpoint of an LSTMCell
#: built with the default converts (to within the rounding of adding 1 back).
LSTM_FORGET_BIAS = 1.0


def tf1_layers_scope(base: str, name: str) -> str:
    """The scope TF1 code gives the zoo layer `name` (kind_i): `base` for the first layer of
    its kind, then `base_1`, `base_2`, ... (`tf.compat.v1.layers` numbers layers of one base
    name per graph; `dynamic_rnn` defaults to scope "rnn", so each further recurrent layer
    needs its own, "rnn_1", ...)."""
    i = int(name.rpartition("_")[2])
    return base if i == 0 else f"{base}_{i}"


def _tf1_layers_column(layer: Layer, name: str, shape: tuple[int, ...],
                       tensors: Sequence[TensorSpec]) -> None:
    """Add the tf1-layers column to a layer's weight table, the one place that says how
    TF1's layer classes name and lay out their variables:

    - dense, conv2d, batch_normalization (gamma, beta, moving_mean, moving_variance): the
      canonical layouts under TF1's layer names (`dense`, `dense_1`, ...);
    - LayerNorm: `tf.contrib.layers.layer_norm`'s names, `LayerNorm/gamma`, `LayerNorm/beta`
      (contrib is gone; `tf1_layers.layers.layer_norm` writes it out);
    - Embedding: `embedding`, the `get_variable` TF1's language models used;
    - LSTM: `LSTMCell`'s ONE kernel over [x, h], (features + units, 4 units), the input
      kernel's rows then the recurrent kernel's, gates i, j, f, o (j the candidate: the
      canonical c), and its bias minus the forget_bias it adds at run time (`CellBlocks`);
    - GRU (reset_after=False): `GRUCell`'s `gates/kernel` (features + units, 2 units) with
      gates r, u (u the canonical z) and `candidate/kernel` (features + units, units) over
      [x, r * h], biases `gates/bias` and `candidate/bias`. A reset_after=True GRU has no
      TF1 cell, hence no column.
    """
    rows = {t.name.rpartition("/")[2]: t for t in tensors}

    def put(short: str, native: Any, layout: Any = AS_IS) -> None:
        rows[short].native[TF1_LAYERS] = (native, layout)

    scopes = {"dense": "dense", "conv2d": "conv2d", "batch_norm": "batch_normalization",
              "layer_norm": "LayerNorm"}
    if layer.kind in scopes:
        scope = tf1_layers_scope(scopes[layer.kind], name)
        for short in rows:
            put(short, f"{scope}/{short}")
    elif isinstance(layer, Embedding):
        put("embeddings", tf1_layers_scope("embedding", name))
    elif isinstance(layer, LSTM):
        f, u = shape[1], layer.units
        cell = f"{tf1_layers_scope('rnn', name)}/lstm_cell"
        order = ((0, 2, 1, 3),)   # LSTMCell's i, j, f, o = the canonical i, c, f, o
        put("kernel", f"{cell}/kernel", CellBlocks(
            u, order, rows=(0, f, f + u), what="gates i, f, c, o -> i, j, f, o; rows 0..F of "
            "the kernel over [x, h]"))
        put("recurrent_kernel", f"{cell}/kernel", CellBlocks(
            u, order, rows=(f, f + u, f + u), what="gates i, f, c, o -> i, j, f, o; rows "
            "F..F+units of the kernel over [x, h]"))
        put("bias", f"{cell}/bias", CellBlocks(
            u, order, shift=((0.0, 0.0, LSTM_FORGET_BIAS, 0.0),),
            what="gates i, f, c, o -> i, j, f, o; the forget block minus LSTMCell's "
                 "forget_bias=1.0"))
    elif isinstance(layer, GRU) and not layer.reset_after:
        f, u = shape[1], layer.units
        cell = f"{tf1_layers_scope('rnn', name)}/gru_cell"
        order = ((1, 0), (2,))    # GRUCell's gates r, u (u = the canonical z); candidate h
        kernels = (f"{cell}/gates/kernel", f"{cell}/candidate/kernel")
        put("kernel", kernels, CellBlocks(
            u, order, rows=(0, f, f + u), what="z, r -> gates/ r, u; h -> candidate/; rows "
            "0..F of the kernels over [x, h]"))
        put("recurrent_kernel", kernels, CellBlocks(
            u, order, rows=(f, f + u, f + u), what="z, r -> gates/ r, u; h -> candidate/; "
            "rows F..F+units of the kernels over [x, h]"))
        put("bias", (f"{cell}/gates/bias", f"{cell}/candidate/bias"), CellBlocks(
            u, order, what="z, r -> gates/bias r, u; h -> candidate/bias"))


# ----------------------------------------------------------------------------- resolution
@dataclass(frozen=True)
class Resolved:
    """A layer in its model: its name, input and output shapes (per sample) and weights."""

    name: str
    layer: Layer
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    tensors: tuple[TensorSpec, ...]
    #: for a Dense right after a Flatten: the (H, W, C) shape that was flattened
    after_flatten: tuple[int, ...] | None = None

    @property
    def kind(self) -> str:
        return self.layer.kind


def resolve(layers: Sequence[Layer], input_shape: Sequence[int]) -> list[Resolved]:
    """Name every layer, infer every shape and build every weight table (see the module
    docstring). Raises ConfigError naming the layer that cannot take its input."""
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(f"input shape must be positive sizes, got {tuple(input_shape)}.")
    counts: dict[str, int] = {}
    out: list[Resolved] = []
    flattened: tuple[int, ...] | None = None
    for layer in layers:
        if not isinstance(layer, Layer):
            raise ConfigError(f"not a zoo layer: {layer!r} (use zoo.layers.Dense, Conv2D, ...).")
        i = counts.get(layer.kind, 0)
        counts[layer.kind] = i + 1
        name = f"{layer.kind}_{i}"
        after = flattened if isinstance(layer, Dense) else None
        if isinstance(layer, (BatchNorm, LayerNorm)) and flattened is not None \
                and len(flattened) == 3:
            # torch flattens NCHW, so these features sit in C, H, W order there: gamma, beta
            # and the moving statistics would need the Dense kernel's row permutation too.
            raise ConfigError(f"{name}: a {type(layer).__name__} on the flattened features of "
                              f"an image is not supported (torch orders them C, H, W); put it "
                              "before the Flatten (BatchNorm) or after the next Dense.")
        new_shape = layer.output_shape(name, shape)
        if any(d < 1 for d in new_shape):
            raise ConfigError(f"{name}: its output would be empty ({_fmt(new_shape)}) for its "
                              f"{_fmt(shape)} input; use larger inputs.")
        tensors = tuple(layer.tensors(name, shape, after))
        _tf1_layers_column(layer, name, shape, tensors)
        out.append(Resolved(name, layer, shape, tuple(new_shape), tensors, after))
        if isinstance(layer, Flatten):
            flattened = shape
        elif not isinstance(layer, (Dropout, Activation, BatchNorm, LayerNorm)):
            flattened = None
        shape = tuple(new_shape)
    return out


def weight_shapes(resolved: Sequence[Resolved], trainable: bool | None = None
                  ) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of every tensor, in model order (only trained ones, or only
    state, when `trainable` is given)."""
    return {t.name: t.shape for r in resolved for t in r.tensors
            if trainable is None or t.trainable == trainable}


def tensor_specs(resolved: Sequence[Resolved], trainable: bool | None = None
                 ) -> list[TensorSpec]:
    """Every row of the model's weight tables, in model order (only trained ones, or only
    state, when `trainable` is given)."""
    return [t for r in resolved for t in r.tensors
            if trainable is None or t.trainable == trainable]


def has_state(resolved: Sequence[Resolved]) -> bool:
    """Whether the model has state tensors (moving statistics): its training-mode and
    inference-mode passes then differ, and training updates more than the trained tensors."""
    return any(not t.trainable for r in resolved for t in r.tensors)


def check_weights(weights: dict[str, Any], resolved: Sequence[Resolved], where: str = "weights"
                  ) -> None:
    """`weights` must hold exactly the canonical tensors of the model, in canonical shapes.
    Every missing, unexpected and misshapen tensor is named (a kernel in torch's layout gets
    a hint)."""
    shapes = weight_shapes(resolved)
    missing, extra = [n for n in shapes if n not in weights], sorted(set(weights) - set(shapes))
    if missing or extra:
        raise ConfigError(f"{where} do not fit this model: missing {missing or 'nothing'}, "
                          f"unexpected {extra or 'nothing'}; expected exactly {list(shapes)}.")
    for t in tensor_specs(resolved):
        got = tuple(np.shape(weights[t.name]))
        if got != t.shape:
            hint = ""
            torch_shapes = list(t.native_shapes("torch").values()) if "torch" in t.native \
                else []
            if len(torch_shapes) == 1 and got == torch_shapes[0] and got != t.shape:
                hint = (f" (that is torch's layout of {t.native_name('torch')}: canonical is "
                        f"{t.layout('torch').what.split(':')[0]} undone)")
            raise ConfigError(f"{t.name}: expected shape {t.shape} in the canonical (Keras) "
                              f"layout, got {got}{hint}.")


def to_native(weights: dict[str, np.ndarray], resolved: Sequence[Resolved], framework: str
              ) -> dict[str, np.ndarray]:
    """Canonical weights -> {native name: native array} of `framework`."""
    check_weights(weights, resolved)
    out: dict[str, Any] = {}
    for t in tensor_specs(resolved):
        for n, a in t.native_arrays(framework, weights[t.name]).items():
            if isinstance(a, Block):  # one of several canonical tensors in one native one
                out.setdefault(n, []).append(a)
            else:
                out[n] = a
    return {n: Block.join(n, a) if isinstance(a, list) else a for n, a in out.items()}


def from_native(native: dict[str, np.ndarray], resolved: Sequence[Resolved], framework: str
                ) -> dict[str, np.ndarray]:
    """{native name: array} of `framework` -> canonical weights. Every native tensor must be
    placed and every canonical one found: the leftovers on either side are named."""
    specs = tensor_specs(resolved)
    want = {n: t for t in specs for n in t.native_names(framework)}
    missing = [n for n in want if n not in native]
    extra = sorted(set(native) - set(want))
    if missing or extra:
        raise ConfigError(f"{framework} tensors do not match the model: missing "
                          f"{missing or 'nothing'}, unplaced {extra or 'nothing'}.")
    for t in specs:
        for n, shape in t.native_shapes(framework).items():
            a = np.asarray(native[n])
            if tuple(a.shape) != shape:
                raise ConfigError(f"{framework} tensor {n}: expected shape {shape}, got "
                                  f"{tuple(a.shape)}.")
    return {t.name: t.from_native_arrays(framework, native) for t in specs}


class FlatNative:
    """Canonical weights of many steps from a framework's flat native rows, vectorised.

    A framework that records its weights after every step copies its native tensors, each
    raveled, into one row of P numbers (`names` in that order, `shapes` their native shapes);
    a block of n such rows, (n, P), becomes {canonical name: (n, *shape)} here with one
    gather per canonical tensor (a view where the layout keeps the tensor as it is) instead
    of `from_native` once per step.

    Every layout of the weight tables is a gather of native elements, at most one from each
    native tensor, plus a constant (torch's two recurrent biases are summed; TF1's LSTMCell
    stores its forget-gate bias less forget_bias): the gather indices and the constant are
    read off by running the row's own `from_native_arrays` on index-coded native arrays once,
    and checked against it on random values; a row whose layout is not of that form is
    converted step by step through its own `from_native_arrays`. A gather that is a
    transpose (a `Layout`'s permutation, a `GateLayout`'s transpose and gate order) runs as
    that reshape and transpose of the whole block instead: a strided copy, about 7x faster
    than numpy's fancy indexing on an MLP's kernels."""

    def __init__(self, resolved: Sequence[Resolved], framework: str, names: Sequence[str],
                 shapes: Sequence[Sequence[int]]) -> None:
        self.framework = framework
        self.names = list(names)
        self.shapes = [tuple(int(d) for d in sh) for sh in shapes]
        sizes = [math.prod(sh) for sh in self.shapes]
        self.offsets = np.cumsum([0, *sizes])
        self.width = int(self.offsets[-1])
        self.specs = tensor_specs(resolved)
        where = {n: (int(a), int(b), sh) for n, a, b, sh in
                 zip(self.names, self.offsets[:-1], self.offsets[1:], self.shapes, strict=True)}
        want = {n for t in self.specs for n in t.native_names(framework)}
        if want != set(where):
            raise ConfigError(f"{framework} tensors do not match the model: missing "
                              f"{sorted(want - set(where)) or 'nothing'}, unplaced "
                              f"{sorted(set(where) - want) or 'nothing'}.")
        self._where = where
        #: {canonical name: shape}, in model order: what `StepWeights.allocate` takes
        self.canonical_shapes = {t.name: tuple(t.shape) for t in self.specs}
        #: canonical name -> ("slice", a, b) | ("gather", [index arrays], constant) | ("loop",)
        self.plans: dict[str, tuple] = {t.name: self._plan(t) for t in self.specs}

    def _native(self, t: TensorSpec, fill) -> dict[str, np.ndarray]:
        return {n: fill(n, *self._where[n]) for n in t.native_names(self.framework)}

    def _plan(self, t: TensorSpec) -> tuple:
        names = t.native_names(self.framework)
        const = t.from_native_arrays(
            self.framework, self._native(t, lambda n, a, b, sh: np.zeros(sh)))
        terms = []
        for own in names:   # index + 1 in `own`'s elements, zeros in the row's other tensors
            coded = self._native(t, lambda n, a, b, sh, own=own: (np.arange(a, b, dtype=np.float64)
                                                         + 1).reshape(sh) if n == own
                                 else np.zeros(sh))
            idx = np.rint(t.from_native_arrays(self.framework, coded) - const).astype(np.int64)
            terms.append(idx - 1)
        rng = np.random.default_rng(0)
        vals = rng.standard_normal(self.width)
        try:
            expect = t.from_native_arrays(
                self.framework, self._native(t, lambda n, a, b, sh: vals[a:b].reshape(sh)))
            got = const + sum(np.where(i >= 0, vals[np.maximum(i, 0)], 0.0) for i in terms)
            ok = got.shape == expect.shape and np.allclose(got, expect, rtol=0, atol=1e-12)
        except (ValueError, IndexError):
            ok = False
        if not ok:
            return ("loop",)
        if len(terms) == 1 and not np.any(const) and np.all(terms[0] >= 0):
            flat = terms[0].ravel()
            if len(flat) and np.array_equal(flat, np.arange(flat[0], flat[0] + len(flat))):
                return ("slice", int(flat[0]), int(flat[0]) + len(flat))
            (name,) = names
            a, b, shape = self._where[name]
            block = rng.standard_normal((2, b - a))
            moved = self._moved(t.layout(self.framework), block, shape, t.shape)
            if moved is not None and np.array_equal(moved, block[:, terms[0] - a]):
                return ("layout", a, b, t.layout(self.framework), shape)
        return ("gather", terms, const)

    @staticmethod
    def _moved(layout, block: np.ndarray, native_shape: tuple[int, ...],
               shape: tuple[int, ...], copy: bool = True) -> np.ndarray | None:
        """`layout.from_native` of every row of `block` (n, size) at once, as a reshape and
        transpose of the whole block (a view where one suffices and `copy` is False); None for
        a layout that is not one."""
        n = len(block)
        if isinstance(layout, Layout):
            a = block.reshape(n, *native_shape)
            if layout.native_shape is not None:
                inter = tuple(np.array(layout.split)[list(layout.perm)]) \
                    if layout.split and layout.perm else layout.split
                a = a.reshape(n, *(inter if inter is not None else native_shape))
            if layout.perm is not None:
                a = a.transpose(0, *(int(i) + 1 for i in np.argsort(layout.perm)))
            if a.shape == (n, *shape) and not copy:
                return a              # a strided view: the caller's write is the one copy
            return np.ascontiguousarray(a).reshape(n, *shape)
        if isinstance(layout, GateLayout) and layout.bias is None and len(native_shape) <= 2:
            a = block.reshape(n, *native_shape)
            if layout.transpose:
                a = a.swapaxes(-1, -2)
            back = tuple(int(i) for i in np.argsort(layout.order))
            return np.ascontiguousarray(layout._reorder(a, back)).reshape(n, *shape)
        return None

    def from_parts(self, parts: Sequence[np.ndarray], out: dict[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
        """As `__call__(rows, out)`, the rows given as one (n, size) block per native tensor
        (in `names` order): a tensor whose layout is its native tensor as it is is copied
        straight from its block, without joining the blocks first."""
        starts = {int(a): i for i, a in enumerate(self.offsets[:-1])}
        direct = {}
        for t in self.specs:
            plan = self.plans[t.name]
            i = starts.get(plan[1]) if plan[0] == "slice" else None
            if i is None or int(self.offsets[i + 1]) != plan[2]:
                return self(np.concatenate([np.asarray(q) for q in parts], axis=1), out=out)
            direct[t.name] = i
        for name, i in direct.items():
            part = np.asarray(parts[i])
            out[name][...] = part.reshape(out[name].shape)
        return out

    def __call__(self, rows: np.ndarray, out: dict[str, np.ndarray] | None = None
                 ) -> dict[str, np.ndarray]:
        """{canonical name: (n, *shape)} of native rows (n, P), in the rows' dtype. Without
        `out` the tensors that the layout keeps as they are are views of `rows`; with `out`
        ({name: (n, *shape)}, e.g. `StepWeights.reserve`) everything is written there."""
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ConfigError(f"internal: {self.framework} rows of shape {rows.shape}, expected "
                              f"(n, {self.width}).")
        n = len(rows)
        result = {}
        for t in self.specs:
            plan = self.plans[t.name]
            if plan[0] == "slice":
                value = rows[:, plan[1]:plan[2]].reshape(n, *t.shape)
            elif plan[0] == "layout":
                _, a, b, layout, shape = plan
                value = self._moved(layout, rows[:, a:b], shape, t.shape, copy=out is None)
            elif plan[0] == "gather":
                _, terms, const = plan
                if len(terms) == 1 and not np.any(const) and np.all(terms[0] >= 0):
                    value = rows[:, terms[0]]     # one copy, in canonical order
                else:
                    value = np.broadcast_to(np.asarray(const, rows.dtype), (n, *t.shape)).copy()
                    for idx in terms:
                        has = idx >= 0
                        if has.all():
                            value += rows[:, idx]
                        else:
                            value[:, has] += rows[:, idx[has]]
            else:
                value = np.stack([
                    t.from_native_arrays(self.framework, self._native(
                        t, lambda nm, a, b, sh, r=r: r[a:b].reshape(sh))) for r in rows]) \
                    if n else np.zeros((0, *t.shape), rows.dtype)
            if out is not None:
                out[t.name][...] = value
            else:
                result[t.name] = value
        return out if out is not None else result


def init_weights(resolved: Sequence[Resolved], seed: int = 0, dtype: str = "float32"
                 ) -> dict[str, np.ndarray]:
    """Initial weights from the tables, drawn once in seeded numpy, in model order:
    glorot-uniform U(+-sqrt(6 / (fan_in + fan_out))) (Keras's default for Dense, Conv2D and
    recurrent input kernels), zeros, ones, N(0, 1) (seed 001's network), U(-0.05, 0.05)
    (embeddings), orthogonal (recurrent kernels), zeros with ones for the LSTM forget gate."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for t in tensor_specs(resolved):
        if t.init == "glorot_uniform":
            limit = math.sqrt(6.0 / (t.fans[0] + t.fans[1]))
            a = rng.uniform(-limit, limit, t.shape)
        elif t.init == "normal":
            a = rng.standard_normal(t.shape)
        elif t.init == "uniform":          # Keras's Embedding default
            a = rng.uniform(-0.05, 0.05, t.shape)
        elif t.init == "orthogonal":       # Keras's recurrent-kernel default
            a = _orthogonal(rng, t.shape)
        elif t.init == "forget_ones":      # Keras's LSTM bias: unit_forget_bias=True
            a = np.zeros(t.shape)
            u = t.shape[-1] // 4
            a[..., u:2 * u] = 1.0
        elif t.init == "ones":
            a = np.ones(t.shape)
        else:
            a = np.zeros(t.shape)
        out[t.name] = a.astype(dtype)
    return out


# ----------------------------------------------------------------------------- helpers
def _orthogonal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """An orthogonal matrix of `shape` (rows, cols) as Keras's `Orthogonal` draws one: the Q of
    a normal matrix's QR decomposition, signs fixed by R's diagonal (orthonormal rows or
    columns, whichever are fewer)."""
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q.T if rows < cols else q


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _image(name: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ConfigError(f"{name}: needs images (H, W, C) per sample but gets "
                          f"{_fmt(shape) or 'scalars'}; use an image dataset (mnist, mnist10k, "
                          "digits) or an NPZ of (N, H, W) or (N, H, W, C) images.")
    return shape  # type: ignore[return-value]


def _pair(what: str, v) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(pair) != 2 or any(isinstance(d, bool) or int(d) != d or d < 1 for d in pair):
        raise ConfigError(f"{what} must be a positive integer or a pair of them, got {v!r}.")
    return int(pair[0]), int(pair[1])


def _positive(what: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ConfigError(f"{what} must be an integer >= 1, got {v!r}.")


def _choice(what: str, v, known: Sequence[str]) -> None:
    if v not in known:
        raise ConfigError(f"{what} must be one of {', '.join(known)}; got {v!r}.")
