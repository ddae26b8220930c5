"""The adapter for a user's own `torch.nn.Module` (the protocol of `zoo.own_types`).

`zoo.compare_models` compares models the zoo did not write. This module reads a user's
`nn.Module` into the framework-free records of `zoo.own_types` and trains, predicts and reads
layer outputs of it, the way torch users train their modules: `zero_grad / forward / loss /
backward / step` on exactly the shared batches, in training mode.

Why it works the way it does:

- **A private copy.** `prepare` deep-copies the module and casts it (`.float()` /
  `.double()`): the user's object is never trained, cast or hooked. Every other function
  takes the returned `TorchHandle`.
- **What runs, in the order it runs.** A module's `named_modules()` order is the order of its
  `__init__`, not of its `forward`; `describe` runs one forward pass on two samples with a
  forward hook on every leaf module (no children, or an `nn.LSTM` / `nn.GRU` / BatchNorm /
  `nn.LayerNorm` / `nn.Embedding`) and records the calls and their shapes. It also traces the
  module with `torch.fx` (the leaves kept whole), which sees what hooks cannot: functional
  calls (`F.relu`, `torch.flatten`, `x.view(...)`, `F.softmax`, `F.dropout`, ...) and how an
  LSTM's output is used (`out, _ = self.lstm(x); x = out[:, -1]` means return_sequences
  False). A forward with Python control flow on tensor values cannot be traced: then the
  hooks alone describe it (module layers only; an RNN's return_sequences from the shape the
  next layer consumes), and the reason is kept in `TorchHandle.notes`. describe leaves no
  trace: BatchNorm buffers and torch's RNG state are restored afterwards.
- **What the zoo cannot map is refused, naming it.** A leaf with parameters of an unknown
  class, a parameter owned directly by a container (its forward uses it functionally), and
  a module with weights (or state) called twice in one forward (weights shared across calls)
  raise `OwnLayerError`, a `zoo.errors.ConfigError` that is also a
  `zoo.own_types.UnsupportedLayer`. A parameter-free module called twice (one `self.relu`
  after every layer, as users write) is fine: its second call is the layer `"<name>:2"`.
- **Canonical conventions in `Found.config`** (see `zoo.own_types.Found`), torch's own
  spelling under `config["native"]`: BatchNorm's momentum m is reported as 1 - m (Keras's
  convention) with `moving_variance="unbiased"` (torch updates `running_var` with the
  unbiased batch variance); a Conv2d's symmetric padding is "same" when it is what 'same'
  means (stride 1, odd kernels, padding = dilation * (k - 1) / 2), else explicit.
- **Weights are the `state_dict`**, torch names and layouts, without BatchNorm's
  `num_batches_tracked` (a step counter torch reads only for `momentum=None`: not a weight).
- **The training loop is torch's own** (`torch_models.train` without the zoo's model): the
  loss the user gives (`OwnLoss.native`) or the idiomatic one (`nn.CrossEntropyLoss` on int64
  labels (N,), `nn.BCEWithLogitsLoss` / `nn.MSELoss` on float targets shaped like the
  output), the user's optimizer factory or `torch_models.optimizers.make_optimizer`, over the
  parameters that require gradients and are not frozen. Dropout "off" sets every dropout
  module's p to 0 for the run (restored afterwards); a functional `F.dropout` cannot be
  switched and is an error then. The loss before each update is recorded; at the first
  non-finite loss training stops with the weights (and BatchNorm statistics) the step started
  from. With `TrainPlan.moving_variance="biased"` (`CORRECTS_MOVING_VARIANCE`) every
  BatchNorm's `running_var` is kept in Keras's convention during the run (torch updates it
  with the unbiased batch variance; `zoo.layers.corrected_moving_variance` after each
  training-mode pass), so that inference compares too.
- **RNN outputs**: an LSTM's or GRU's `Found.output_shape` and `layer_outputs` are its output
  sequence (never the state tuple), batch first ((N, T, units * directions) whatever
  `batch_first`); `config["return_sequences"]` says whether the model uses the sequence or
  one step of it.
"""

from __future__ import annotations

import copy
import functools
import operator
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError, ZooError
from zoo.layers import corrected_moving_variance
from zoo.own_types import (
    Description,
    Found,
    OptimizerSettings,
    OwnHistory,
    Progress,
    TrainPlan,
    UnsupportedLayer,
)

__all__ = ["CLASS_NAMES", "CORRECTS_MOVING_VARIANCE", "FRAMEWORK", "LEAF_TYPES", "OwnLayerError",
           "TorchHandle", "audit_optimizer", "check_model", "describe", "freeze", "get_weights",
           "layer_outputs", "predict", "prepare", "set_weights", "train"]

FRAMEWORK = "torch"
#: `train` keeps BatchNorm moving variances in Keras's (biased) convention on request
#: (`TrainPlan.moving_variance`)
CORRECTS_MOVING_VARIANCE = True
#: layer kinds as torch users write them, for the core's messages
CLASS_NAMES = {"dense": "nn.Linear", "conv2d": "nn.Conv2d", "batch_norm": "nn.BatchNorm",
               "layer_norm": "nn.LayerNorm", "embedding": "nn.Embedding", "lstm": "nn.LSTM",
               "gru": "nn.GRU", "dropout": "nn.Dropout"}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: modules described whole even if a subclass adds children
LEAF_TYPES: tuple[type[nn.Module], ...] = (nn.LSTM, nn.GRU, nn.modules.batchnorm._BatchNorm,
                                           nn.LayerNorm, nn.Embedding)
#: state_dict entries that are not weights (BatchNorm's step counter)
NOT_WEIGHTS = ("num_batches_tracked",)
_MAPPED = ("nn.Linear, nn.Conv2d, nn.BatchNorm1d/2d, nn.LayerNorm, nn.Embedding, nn.LSTM or "
           "nn.GRU")


class OwnLayerError(UnsupportedLayer, ConfigError):
    """A layer of the user's module that the zoo cannot map (a `ConfigError` naming it, and an
    `UnsupportedLayer` for `zoo.own`)."""


@dataclass
class TorchHandle:
    """A user's module as the adapter holds it: a private copy, its dtype, and what
    `describe` learned."""

    module: nn.Module
    dtype: str
    #: the model takes token ids: inputs become int64 tensors (integer X, or an nn.Embedding
    #: model given whole-numbered float ids)
    index_inputs: bool = False
    #: native tensor names never trained (`freeze`)
    frozen: set[str] = field(default_factory=set)
    description: Description | None = None
    #: the torch.fx trace of the module (leaf modules kept whole), None if it cannot be traced
    graph: torch.fx.GraphModule | None = None
    #: fx node name -> the functional layer it is (activation, flatten, dropout, ...)
    functional: dict[str, Found] = field(default_factory=dict)
    #: what the adapter could not see or had to assume, for the report
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- prepare
def check_model(model: Any) -> str | None:
    """Why `model` is not a model this adapter reads (None if it is)."""
    if isinstance(model, nn.Module):
        return None
    return f"a {type(model).__name__}, not a torch.nn.Module"


def prepare(model: Any, X: np.ndarray, dtype: str = "float32") -> TorchHandle:
    """A private copy of `model` in `dtype`, in training mode. X: a small batch in the layout
    the model takes (images NCHW; integer token ids for an nn.Embedding model)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"the torch adapter takes a torch.nn.Module, got "
                          f"{type(model).__module__}.{type(model).__qualname__}; pass the "
                          "module itself (not its state_dict, a class or a function).")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    module = copy.deepcopy(model)
    module = module.double() if dtype == "float64" else module.float()
    module.train()
    X = np.asarray(X)
    has_embedding = any(isinstance(m, nn.Embedding) for m in module.modules())
    index = bool(np.issubdtype(X.dtype, np.integer)) or (
        has_embedding and X.ndim == 2 and X.size > 0 and bool(np.all(X == np.round(X))))
    return TorchHandle(module=module, dtype=dtype, index_inputs=index)


def _inputs(handle: TorchHandle, X: np.ndarray) -> torch.Tensor:
    if handle.index_inputs:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(X).astype(np.int64)))
    return torch.from_numpy(np.ascontiguousarray(X, dtype=np.dtype(handle.dtype)))


# ----------------------------------------------------------------------------- module walk
def _is_leaf(m: nn.Module) -> bool:
    return isinstance(m, LEAF_TYPES) or next(m.children(), None) is None


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    """name -> leaf module, in module order; a parameter owned by a container is refused."""
    out: dict[str, nn.Module] = {}
    seen: set[int] = set()

    def walk(prefix: str, m: nn.Module) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        if _is_leaf(m):
            out[prefix] = m
            return
        own = [n for n, _ in m.named_parameters(recurse=False)]
        if own:
            where = f"module {prefix!r}" if prefix else "the model itself"
            full = [f"{prefix}.{n}" if prefix else n for n in own]
            raise OwnLayerError(
                f"parameter(s) {full} belong to {where} ({type(m).__name__}), not to a layer: "
                "its forward uses them directly, which the zoo cannot map; move them into a "
                f"layer ({_MAPPED}).")
        for name, child in m.named_children():
            walk(f"{prefix}.{name}" if prefix else name, child)

    walk("", model)
    return out


def _not_weight(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in NOT_WEIGHTS


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not _not_weight(k)}


class _Untouched:
    """Run forward passes that leave no trace: buffers (BatchNorm statistics and counters),
    training flags and torch's RNG state are restored on exit."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> _Untouched:
        self.buffers = {k: b.detach().clone() for k, b in self.model.named_buffers()}
        self.modes = {id(m): m.training for m in self.model.modules()}
        self.rng = torch.get_rng_state()
        return self

    def __exit__(self, *exc: Any) -> None:
        with torch.no_grad():
            for k, b in self.model.named_buffers():
                if k in self.buffers:
                    b.copy_(self.buffers[k])
        for m in self.model.modules():
            m.training = self.modes.get(id(m), m.training)
        torch.set_rng_state(self.rng)


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)) and obj:
        return _first_tensor(obj[0])
    return None


def _batch_axis(m: nn.Module) -> int:
    return 1 if isinstance(m, (nn.LSTM, nn.GRU)) and not m.batch_first else 0


def _per_sample(t: torch.Tensor | None, axis: int = 0) -> tuple[int, ...]:
    if t is None or t.dim() <= axis:
        return ()
    shape = list(t.shape)
    del shape[axis]
    return tuple(int(d) for d in shape)


def _batch_first(t: torch.Tensor, m: nn.Module) -> torch.Tensor:
    """An RNN's output sequence batch first (time-major for batch_first=False)."""
    return t.transpose(0, 1) if _batch_axis(m) == 1 and t.dim() == 3 else t


def _call_name(name: str, k: int) -> str:
    """The layer name of the k-th call (1-based) of a parameter-free module."""
    return name if k == 1 else f"{name}:{k}"


@dataclass
class _Call:
    name: str           # layer name ("relu:2" for a second call)
    module: str         # module name
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def _has_tensors(m: nn.Module) -> bool:
    return next(m.parameters(), None) is not None or next(m.buffers(), None) is not None


def _hooked_forward(handle: TorchHandle, X: np.ndarray) -> tuple[list[_Call], torch.Tensor]:
    """One forward pass with a hook on every leaf: the calls in order, and the output."""
    model = handle.module
    leaves = _leaves(model)
    calls: list[_Call] = []
    counts: dict[str, int] = {}

    def hook(name: str, m: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
        counts[name] = counts.get(name, 0) + 1
        k = counts[name]
        if k > 1 and _has_tensors(m):
            raise OwnLayerError(
                f"layer {name!r} ({type(m).__name__}) runs {k} times in one forward pass: "
                "weights shared across calls are not supported; give each call its own "
                "module.")
        axis = _batch_axis(m)
        x = _first_tensor(args) if args else _first_tensor(list(kwargs.values()))
        calls.append(_Call(_call_name(name, k), name, _per_sample(x, axis),
                           _per_sample(_first_tensor(out), axis)))

    handles = [m.register_forward_hook(functools.partial(hook, name), with_kwargs=True)
               for name, m in leaves.items()]
    x = _inputs(handle, X)
    try:
        with _Untouched(model), torch.no_grad():
            model.train()
            out = model(x)
    except ZooError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's forward, whatever it raises
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"the model's forward pass fails on a batch of shape "
                          f"{tuple(x.shape)} ({x.dtype}): {first}; pass X in the layout the "
                          "model takes (images NCHW, token ids as integers).") from exc
    finally:
        for h in handles:
            h.remove()
    return calls, out


# ----------------------------------------------------------------------------- fx trace
class _LeafTracer(torch.fx.Tracer):
    """Keeps every leaf module (`_is_leaf`) whole, whatever module it comes from."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_leaf(m)


def _trace(model: nn.Module) -> torch.fx.GraphModule:
    import inspect

    concrete: dict[str, Any] = {}
    params = list(inspect.signature(model.forward).parameters.values())
    for p in params[1:]:  # only the input is traced: extra arguments keep their defaults
        if p.default is not inspect.Parameter.empty:
            concrete[p.name] = p.default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = _LeafTracer().trace(model, concrete_args=concrete or None)
    return torch.fx.GraphModule(model, graph)


def _shape_prop(gm: torch.fx.GraphModule, x: torch.Tensor) -> None:
    from torch.fx.passes.shape_prop import ShapeProp

    with _Untouched(gm), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.train()
        ShapeProp(gm).propagate(x)


def _node_shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta") if isinstance(node, torch.fx.Node) \
        else None
    shape = getattr(meta, "shape", None)
    return None if shape is None else tuple(int(d) for d in shape[1:])


#: functional calls described as layers: target -> (kind, function)
_ACTIVATIONS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "tanh": "tanh",
                "softmax": "softmax", "log_softmax": "log_softmax", "gelu": "gelu",
                "silu": "silu", "elu": "elu", "leaky_relu": "leaky_relu"}
_FUNCTIONS: dict[Any, tuple[str, str | None]] = {
    F.relu: ("activation", "relu"), torch.relu: ("activation", "relu"),
    torch.relu_: ("activation", "relu"), F.relu_: ("activation", "relu"),
    torch.sigmoid: ("activation", "sigmoid"), F.sigmoid: ("activation", "sigmoid"),
    torch.tanh: ("activation", "tanh"), F.tanh: ("activation", "tanh"),
    F.softmax: ("activation", "softmax"), torch.softmax: ("activation", "softmax"),
    F.log_softmax: ("activation", "log_softmax"),
    torch.log_softmax: ("activation", "log_softmax"),
    F.gelu: ("activation", "gelu"), F.silu: ("activation", "silu"),
    F.elu: ("activation", "elu"), F.leaky_relu: ("activation", "leaky_relu"),
    torch.flatten: ("flatten", None), torch.reshape: ("reshape", None),
    torch.permute: ("permute", None), torch.transpose: ("permute", None),
    F.dropout: ("dropout", None),
}
_METHODS: dict[str, tuple[str, str | None]] = {
    **{m: ("activation", f) for m, f in _ACTIVATIONS.items()},
    "view": ("reshape", None), "reshape": ("reshape", None), "flatten": ("flatten", None),
    "permute": ("permute", None), "transpose": ("permute", None),
}


def _arg(node: torch.fx.Node, pos: int, name: str, default: Any = None) -> Any:
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[pos] if len(node.args) > pos else default


def _functional(node: torch.fx.Node) -> Found | None:
    """The layer a functional fx node is, or None (arithmetic, indexing, ...)."""
    if node.op == "call_function":
        try:
            kind, function = _FUNCTIONS.get(node.target, (None, None))
        except TypeError:  # an unhashable target
            return None
        native_name = getattr(node.target, "__name__", str(node.target))
    elif node.op == "call_method":
        kind, function = _METHODS.get(node.target, (None, None))
        native_name = f"Tensor.{node.target}"
    else:
        return None
    if kind is None:
        return None
    src = node.args[0] if node.args else None
    shape_in, shape_out = _node_shape(src), _node_shape(node)
    config: dict[str, Any] = {}
    native: dict[str, Any] = {"call": native_name}
    if kind == "activation":
        config["function"] = function
        if function in ("softmax", "log_softmax"):
            native["dim"] = _arg(node, 1, "dim")
    elif kind == "dropout":
        p = float(_arg(node, 1, "p", 0.5))
        training = bool(_arg(node, 2, "training", True))
        native.update(p=p, training=training)
        config["rate"] = p if training else 0.0
    elif kind in ("reshape", "flatten") and shape_in is not None and shape_out is not None:
        if shape_in == shape_out:
            return None  # x.view(x.size(0), -1) of flat features: nothing happens
        if len(shape_out) == 1:
            kind = "flatten"
    config["native"] = native
    return Found(name=node.name, kind=kind, config=config, input_shape=shape_in or (),
                 output_shape=shape_out or ())


def _selects_one_step(node: torch.fx.Node, time_axis: int) -> bool:
    """node is `seq[...]` taking a single time step (`out[:, -1]`, `out[-1]`)."""
    if not (node.op == "call_function" and node.target is operator.getitem):
        return False
    index = node.args[1]
    if isinstance(index, int):
        return time_axis == 0
    if isinstance(index, tuple) and len(index) > time_axis:
        return isinstance(index[time_axis], int)
    return False


def _rnn_sequences_from_graph(node: torch.fx.Node, m: nn.Module) -> bool | None:
    """Whether the model uses the RNN's whole output sequence (True), one step of it or its
    final state (False); None when the graph does not tell."""
    sequences, state_used = [], False
    for user in node.users:
        if user.op == "call_function" and user.target is operator.getitem:
            if user.args[1] == 0:
                sequences.append(user)
            elif user.args[1] == 1:
                state_used = state_used or bool(user.users)
            continue
        return None  # the (output, state) pair goes on whole
    used = [u for s in sequences for u in s.users]
    if not used:
        return False if state_used else None
    time_axis = 1 - _batch_axis(m)
    return not all(_selects_one_step(u, time_axis) for u in used)


# ----------------------------------------------------------------------------- modules
def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _tensors(prefix: str, m: nn.Module, roles: Iterable[str]) -> dict[str, str]:
    own = dict(m.named_parameters(recurse=False)) | dict(m.named_buffers(recurse=False))
    return {r: f"{prefix}{r}" for r in roles if r in own and own[r] is not None
            and r not in NOT_WEIGHTS}


def _conv_padding(m: nn.Conv2d) -> Any:
    if isinstance(m.padding, str):
        return m.padding  # "same" or "valid"
    pad, k, s, d = _pair(m.padding), _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
    if pad == (0, 0):
        return "valid"
    if s == (1, 1) and all(ki % 2 == 1 and pi == di * (ki - 1) // 2
                           for pi, ki, di in zip(pad, k, d, strict=True)):
        return "same"
    return [[pad[0], pad[0]], [pad[1], pad[1]]]


def _pool_padding(m: nn.Module) -> Any:
    pad = _pair(m.padding)
    return "valid" if pad == (0, 0) else [[pad[0], pad[0]], [pad[1], pad[1]]]


_ACTIVATION_MODULES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Softmax: "softmax",
    nn.LogSoftmax: "log_softmax", nn.Identity: "linear", nn.GELU: "gelu", nn.SiLU: "silu",
    nn.ELU: "elu", nn.SELU: "selu", nn.Softplus: "softplus", nn.LeakyReLU: "leaky_relu",
}


def _module_found(name: str, m: nn.Module) -> Found:
    """The Found of one leaf module (shapes filled in by the caller)."""
    p = f"{name}." if name else ""
    cls = type(m).__name__
    if isinstance(m, nn.Linear):
        native = {"in_features": m.in_features, "out_features": m.out_features,
                  "bias": m.bias is not None}
        return Found(name, "dense", {"units": m.out_features, "use_bias": m.bias is not None,
                                     "activation": "linear", "native": native},
                     _tensors(p, m, ("weight", "bias")))
    if isinstance(m, nn.Conv2d):
        native = {"in_channels": m.in_channels, "out_channels": m.out_channels,
                  "kernel_size": tuple(m.kernel_size), "stride": tuple(m.stride),
                  "padding": m.padding if isinstance(m.padding, str) else tuple(m.padding),
                  "dilation": tuple(m.dilation), "groups": m.groups,
                  "bias": m.bias is not None, "padding_mode": m.padding_mode}
        config = {"filters": m.out_channels, "kernel_size": _pair(m.kernel_size),
                  "strides": _pair(m.stride), "padding": _conv_padding(m),
                  "dilation": _pair(m.dilation), "groups": m.groups,
                  "use_bias": m.bias is not None, "activation": "linear", "native": native}
        return Found(name, "conv2d", config, _tensors(p, m, ("weight", "bias")))
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        native = {"momentum": m.momentum, "eps": m.eps, "affine": m.affine,
                  "track_running_stats": m.track_running_stats}
        config = {"momentum": None if m.momentum is None else 1.0 - float(m.momentum),
                  "epsilon": float(m.eps), "center": m.affine, "scale": m.affine,
                  "moving_variance": "unbiased",
                  "track_running_stats": m.track_running_stats, "native": native}
        return Found(name, "batch_norm", config,
                     _tensors(p, m, ("weight", "bias", "running_mean", "running_var")))
    if isinstance(m, nn.LayerNorm):
        has_bias = m.elementwise_affine and getattr(m, "bias", None) is not None
        native = {"normalized_shape": tuple(m.normalized_shape), "eps": m.eps,
                  "elementwise_affine": m.elementwise_affine, "bias": has_bias}
        config = {"epsilon": float(m.eps), "center": has_bias, "scale": m.elementwise_affine,
                  "native": native}
        return Found(name, "layer_norm", config, _tensors(p, m, ("weight", "bias")))
    if isinstance(m, nn.Embedding):
        native = {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim,
                  "padding_idx": m.padding_idx, "max_norm": m.max_norm}
        return Found(name, "embedding", {"vocab": m.num_embeddings, "dim": m.embedding_dim,
                                         "native": native}, _tensors(p, m, ("weight",)))
    if isinstance(m, (nn.LSTM, nn.GRU)):
        kind = "lstm" if isinstance(m, nn.LSTM) else "gru"
        native = {"input_size": m.input_size, "hidden_size": m.hidden_size,
                  "num_layers": m.num_layers, "bias": m.bias, "batch_first": m.batch_first,
                  "dropout": m.dropout, "bidirectional": m.bidirectional}
        if kind == "lstm":
            native["proj_size"] = m.proj_size
        config: dict[str, Any] = {
            "units": m.hidden_size, "return_sequences": True, "use_bias": m.bias,
            "batch_first": m.batch_first, "num_layers": m.num_layers,
            "bidirectional": m.bidirectional, "activation": "tanh",
            "recurrent_activation": "sigmoid", "native": native}
        if kind == "gru":
            config["reset_after"] = True
        roles = [n for n, _ in m.named_parameters(recurse=False)]
        return Found(name, kind, config, _tensors(p, m, roles))
    if isinstance(m, nn.modules.dropout._DropoutNd):
        native = {"p": m.p} if isinstance(m, nn.Dropout) else {"p": m.p, "class": cls}
        return Found(name, "dropout", {"rate": float(m.p), "native": native})
    for act_cls, function in _ACTIVATION_MODULES.items():
        if isinstance(m, act_cls):
            native = {"dim": m.dim} if isinstance(m, (nn.Softmax, nn.LogSoftmax)) else {}
            if isinstance(m, nn.LeakyReLU):
                native["negative_slope"] = m.negative_slope
            return Found(name, "activation", {"function": function, "native": native})
    if isinstance(m, nn.Flatten):
        return Found(name, "flatten", {"native": {"start_dim": m.start_dim,
                                                  "end_dim": m.end_dim}})
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        kind = "max_pool2d" if isinstance(m, nn.MaxPool2d) else "avg_pool2d"
        stride = m.stride if m.stride is not None else m.kernel_size
        native = {"kernel_size": m.kernel_size, "stride": stride, "padding": m.padding,
                  "ceil_mode": m.ceil_mode}
        if isinstance(m, nn.MaxPool2d):
            native["dilation"] = m.dilation
        else:
            native["count_include_pad"] = m.count_include_pad
        return Found(name, kind, {"pool_size": _pair(m.kernel_size), "strides": _pair(stride),
                                  "padding": _pool_padding(m), "native": native})
    if next(m.parameters(), None) is not None:
        raise OwnLayerError(f"layer {name!r} ({cls}) has parameters the zoo cannot map; pass "
                            f"mapping=... or use {_MAPPED}.")
    return Found(name, "other", {"class": cls, "native": {"class": cls}})


def _with_shapes(found: Found, call: _Call) -> Found:
    found.name = call.name
    found.input_shape, found.output_shape = call.input_shape, call.output_shape
    return found


def _infer_sequences(layers: list[Found], output_shape: tuple[int, ...]) -> None:
    """return_sequences of every RNN the graph did not settle: True when the next layer (or
    the model's output) takes a sequence (2-D or more per sample)."""
    for i, f in enumerate(layers):
        if f.kind in ("lstm", "gru") and f.config.get("return_sequences") is None:
            nxt = layers[i + 1].input_shape if i + 1 < len(layers) else output_shape
            f.config["return_sequences"] = len(nxt) >= 2


def _output_kind(layers: list[Found]) -> str:
    for f in reversed(layers):
        if f.kind in ("dropout", "flatten", "reshape") or (
                f.kind == "activation" and f.config.get("function") == "linear"):
            continue
        if f.kind == "activation":
            return {"softmax": "probabilities", "log_softmax": "log_probabilities",
                    "sigmoid": "sigmoid"}.get(f.config["function"], "logits")
        return "logits"
    return "logits"


# ----------------------------------------------------------------------------- describe
def describe(handle: TorchHandle, X: np.ndarray) -> Description:
    """Every layer in the order the forward pass runs it, with canonical settings, the role
    of each native tensor and per-sample shapes (one forward of X[:2]; see the module
    docstring). Raises `OwnLayerError` for what the zoo cannot map."""
    X = np.asarray(X)
    model = handle.module
    leaves = _leaves(model)
    calls, out = _hooked_forward(handle, X[:2])
    modules = {c.name: _with_shapes(_module_found(c.module, leaves[c.module]), c)
               for c in calls}
    for f in modules.values():
        if f.kind in ("lstm", "gru"):
            f.config["return_sequences"] = None  # settled below
    notes: list[str] = []
    layers: list[Found] = []
    functional: dict[str, Found] = {}
    graph: torch.fx.GraphModule | None = None
    if model in leaves.values():
        layers = list(modules.values())
    else:
        try:
            graph = _trace(model)
        except Exception as exc:  # noqa: BLE001 - any trace failure: the hooks alone
            notes.append(f"torch.fx cannot trace the forward ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); described by "
                         "forward hooks only: functional calls (F.relu, x.view, F.dropout, "
                         "...) are not seen.")
        if graph is not None:
            layers, functional = _merge(graph, modules, calls, leaves, handle, X[:2], notes)
            if not layers:
                graph = None
        if graph is None:
            layers, functional = list(modules.values()), {}
    out_t = _first_tensor(out)
    _infer_sequences(layers, _per_sample(out_t))
    for name in leaves:
        if name not in {c.module for c in calls} and next(
                leaves[name].parameters(), None) is not None:
            notes.append(f"module {name!r} ({type(leaves[name]).__name__}) has parameters but "
                         "does not run in the forward pass: its tensors are not compared.")
    state = [k for k, _ in model.named_buffers() if not _not_weight(k)]
    state += [k for k, p in model.named_parameters()
              if (not p.requires_grad or k in handle.frozen) and k not in state]
    desc = Description(framework=FRAMEWORK, layers=layers, output=_output_kind(layers),
                       input_shape=tuple(int(d) for d in X.shape[1:]),
                       image_layout="nchw" if X.ndim == 4 else None, state=tuple(state))
    handle.description, handle.graph, handle.functional = desc, graph, functional
    handle.notes = notes
    return desc


def _merge(graph: torch.fx.GraphModule, modules: dict[str, Found], calls: list[_Call],
           leaves: dict[str, nn.Module], handle: TorchHandle, X: np.ndarray,
           notes: list[str]) -> tuple[list[Found], dict[str, Found]]:
    """The layers in fx order: the module calls (with the hooks' shapes) and the functional
    calls between them. ([], {}) when the trace disagrees with the forward pass."""
    nodes = list(graph.graph.nodes)
    traced = [n.target for n in nodes if n.op == "call_module"]
    if traced != [c.module for c in calls]:
        notes.append("the torch.fx trace runs other modules than the forward pass (control "
                     "flow the trace fixed?); described by forward hooks only.")
        return [], {}
    try:
        _shape_prop(graph, _inputs(handle, X))
    except Exception as exc:  # noqa: BLE001 - shapes of functional calls are then unknown
        notes.append(f"shapes of functional calls unknown ({type(exc).__name__}).")
    layers: list[Found] = []
    functional: dict[str, Found] = {}
    it = iter(calls)
    for node in nodes:
        if node.op == "call_module":
            f = modules[next(it).name]
            if f.kind in ("lstm", "gru"):
                f.config["return_sequences"] = _rnn_sequences_from_graph(node,
                                                                         leaves[node.target])
            layers.append(f)
        elif node.op == "get_attr":
            continue
        else:
            f = _functional(node)
            if f is not None:
                layers.append(f)
                functional[f.name] = f
    return layers, functional


# ----------------------------------------------------------------------------- weights
def get_weights(handle: TorchHandle) -> dict[str, np.ndarray]:
    """Every tensor of the state_dict (parameters and buffers, `num_batches_tracked`
    excluded), torch names and layouts, numpy copies, module order."""
    return {k: v.detach().cpu().numpy().copy() for k, v in _state(handle.module).items()}


def set_weights(handle: TorchHandle, weights: dict[str, np.ndarray]) -> None:
    """Load exactly the given tensors (a partial dict is fine), cast to the model's dtype.
    An unknown name or a wrong shape raises ConfigError before anything is loaded."""
    state = _state(handle.module)
    unknown = [k for k in weights if k not in state]
    if unknown:
        raise ConfigError(f"unknown torch tensor(s) {unknown}; the model's tensors are "
                          f"{list(state)}.")
    for k, v in weights.items():
        if tuple(np.shape(v)) != tuple(state[k].shape):
            raise ConfigError(f"torch tensor {k!r}: expected shape {tuple(state[k].shape)}, got "
                              f"{tuple(np.shape(v))}; pass it in torch's layout (Linear.weight "
                              "is (out, in), Conv2d.weight (out, in, kh, kw)).")
    with torch.no_grad():
        for k, v in weights.items():
            state[k].copy_(torch.as_tensor(np.asarray(v), dtype=state[k].dtype))


def freeze(handle: TorchHandle, names: Iterable[str]) -> None:
    """Stop training these tensors (`requires_grad_(False)`; buffers are never trained)."""
    names = list(names)
    params = dict(handle.module.named_parameters())
    state = _state(handle.module)
    unknown = [n for n in names if n not in state]
    if unknown:
        raise ConfigError(f"cannot freeze unknown torch tensor(s) {unknown}; the model's "
                          f"tensors are {list(state)}.")
    for n in names:
        if n in params:
            params[n].requires_grad_(False)
        handle.frozen.add(n)


# ----------------------------------------------------------------------------- training
LOSS_KINDS = ("crossentropy", "binary_crossentropy", "mse")


def _loss_fn(plan: TrainPlan) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if plan.loss.kind not in LOSS_KINDS:
        raise ConfigError(f"unknown loss kind {plan.loss.kind!r}; use one of "
                          f"{', '.join(LOSS_KINDS)}.")
    if plan.loss.native is not None:
        if not callable(plan.loss.native):
            raise ConfigError(f"the torch loss must be a loss module or a callable (output, "
                              f"target) -> loss, got {type(plan.loss.native).__name__}.")
        return plan.loss.native
    return {"crossentropy": nn.CrossEntropyLoss, "binary_crossentropy": nn.BCEWithLogitsLoss,
            "mse": nn.MSELoss}[plan.loss.kind]()


def _targets(kind: str, y: np.ndarray, dtype: str) -> torch.Tensor:
    """int64 labels (N,) for cross-entropy, float (N, k) otherwise (reshaped like the output
    at each step)."""
    y = np.asarray(y)
    if kind == "crossentropy":
        return torch.from_numpy(np.ascontiguousarray(y.reshape(-1).astype(np.int64)))
    return torch.from_numpy(np.ascontiguousarray(y.reshape(len(y), -1), dtype=np.dtype(dtype)))


def _like_output(target: torch.Tensor, out: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "crossentropy":
        return target
    if target.numel() != out.numel():
        raise ConfigError(f"the model outputs {tuple(out.shape[1:])} per sample but the "
                          f"{kind} targets hold {target.shape[1]} value(s) per sample; give the "
                          "model one output per target value.")
    return target.reshape(out.shape)


def _dropouts(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


def _check_functional_dropout(handle: TorchHandle, X: np.ndarray) -> None:
    """Dropout must be off: refuse a functional F.dropout that no p = 0 can switch off."""
    live = [f for f in handle.functional.values()
            if f.kind == "dropout" and f.config["native"]["training"]
            and f.config["native"]["p"] > 0]
    if live:
        f = live[0]
        raise ConfigError(f"dropout must be off, but {f.name!r} is a functional "
                          f"F.dropout(p={f.config['native']['p']}) that cannot be switched off; "
                          "use an nn.Dropout module instead (its p is set to 0), or compare "
                          "with dropout='native'.")
    if handle.graph is None:  # hooks only: is the forward pass still random?
        x = _inputs(handle, X[:8])
        with _Untouched(handle.module), torch.no_grad():
            handle.module.train()
            a, b = _first_tensor(handle.module(x)), _first_tensor(handle.module(x))
        if a is not None and b is not None and not torch.equal(a, b):
            raise ConfigError("dropout must be off, but the model's forward pass is still "
                              "random in training mode with every dropout module's p set to 0 "
                              "(a functional F.dropout?); use nn.Dropout modules, or compare "
                              "with dropout='native'.")


class _BiasedMovingVariance:
    """For one training run: every BatchNorm's `running_var` follows the biased batch variance
    (Keras's convention) although torch's kernel updates it with the unbiased one. As
    `torch_models.layers.MovingVarianceCorrection` does for the zoo's own modules: a forward
    pre-hook hands torch a copy of `running_var` to update, a forward hook writes
    `zoo.layers.corrected_moving_variance` into the original buffer and puts it back (an
    in-place fix of torch's updated tensor would break the backward pass, which saved it).
    Training mode only; the hooks are removed when the run ends. A BatchNorm with
    momentum=None (a cumulative average) is left as it is (the audit names it)."""

    def __init__(self, model: nn.Module) -> None:
        self.handles: list[Any] = []
        self.stashed: dict[int, torch.Tensor] = {}
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats \
                    and m.momentum is not None:
                self.handles += [m.register_forward_pre_hook(self._stash),
                                 m.register_forward_hook(self._correct)]

    def _stash(self, m: nn.Module, args: tuple) -> None:
        if m.training:
            self.stashed[id(m)] = m.running_var
            m.running_var = m.running_var.detach().clone()  # what torch will update

    def _correct(self, m: nn.Module, args: tuple, output: Any) -> None:
        buffer = self.stashed.pop(id(m), None)
        if buffer is None:
            return
        x = args[0]
        count = x.numel() // x.shape[1]  # values per channel in this batch
        with torch.no_grad():
            buffer.copy_(corrected_moving_variance(buffer, m.running_var, count,
                                                   1.0 - float(m.momentum), "unbiased",
                                                   "biased"))
        m.running_var = buffer

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _optimizer(handle: TorchHandle, plan: TrainPlan) -> torch.optim.Optimizer:
    params = [p for n, p in handle.module.named_parameters()
              if p.requires_grad and n not in handle.frozen]
    if plan.optimizer.native is not None:
        opt = plan.optimizer.native(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise ConfigError(f"the torch optimizer must be a callable params -> "
                              f"torch.optim.Optimizer, but it returned {type(opt).__name__}.")
        return opt
    if plan.optimizer.spec is None:
        raise ConfigError("the train plan has no optimizer: give OwnOptimizer(spec=...) or "
                          "OwnOptimizer(native=lambda params: torch.optim.SGD(params, lr=...)).")
    from torch_models.optimizers import make_optimizer

    return make_optimizer(plan.optimizer.spec, params)


def train(handle: TorchHandle, plan: TrainPlan, X: np.ndarray, y: np.ndarray,
          progress: Progress | None = None) -> OwnHistory:
    """Train the module as torch users do, on exactly `plan.batches` (see the module
    docstring). Losses are before each update; the weights are recorded after global steps
    record_every - 1, 2 * record_every - 1, ...; training stops at the first non-finite loss
    with the weights that step started from."""
    if plan.dtype not in DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {plan.dtype!r}.")
    if plan.dropout not in ("off", "native"):
        raise ConfigError(f"dropout must be 'off' or 'native', got {plan.dropout!r}.")
    if plan.record_every < 0:
        raise ConfigError(f"record_every must be >= 0, got {plan.record_every!r}.")
    moving_variance = getattr(plan, "moving_variance", None)
    if moving_variance not in (None, "biased", "unbiased"):
        raise ConfigError(f"moving_variance must be 'biased', 'unbiased' or None, got "
                          f"{moving_variance!r}.")
    model = handle.module
    if plan.dtype != handle.dtype:
        model.to(DTYPES[plan.dtype])
        handle.dtype = plan.dtype
    X = np.asarray(X)
    if plan.frozen:
        freeze(handle, plan.frozen)
    if plan.dropout == "off" and handle.description is None:
        describe(handle, X)  # before any p is set to 0: the description keeps the user's rates
    loss_fn = _loss_fn(plan)
    saved_p = [(m, m.p) for m in _dropouts(model)]
    if plan.dropout == "off":
        for m, _ in saved_p:
            m.p = 0.0  # the identity, in train mode too
    correction: _BiasedMovingVariance | None = None
    try:
        if plan.dropout == "off":
            _check_functional_dropout(handle, X)
        optimizer = _optimizer(handle, plan)
        Xt, yt = _inputs(handle, X), _targets(plan.loss.kind, y, plan.dtype)
        if moving_variance == "biased":
            correction = _BiasedMovingVariance(model)
        return _loop(handle, plan, optimizer, loss_fn, Xt, yt, progress)
    finally:
        for m, p in saved_p:
            m.p = p
        if correction is not None:
            correction.remove()


def _loop(handle: TorchHandle, plan: TrainPlan, optimizer: torch.optim.Optimizer,
          loss_fn: Callable, Xt: torch.Tensor, yt: torch.Tensor,
          progress: Progress | None) -> OwnHistory:
    model = handle.module
    every = int(plan.record_every)
    buffers = [b for _, b in model.named_buffers()]
    losses: list[float] = []
    snapshots: list[dict[str, np.ndarray]] = []
    epoch_seconds: list[float] = []
    stopped_at: int | None = None
    model.train()
    for epoch, batches in enumerate(plan.batches):
        start = time.perf_counter()
        for step, idx in enumerate(batches):
            index = torch.from_numpy(np.asarray(idx, dtype=np.int64))
            before = [b.detach().clone() for b in buffers]  # BatchNorm statistics
            optimizer.zero_grad()
            out = model(Xt[index])
            if not isinstance(out, torch.Tensor):
                raise ConfigError(f"the model's forward returns {type(out).__name__}, not one "
                                  "tensor; wrap it so that it returns the outputs the loss "
                                  "takes.")
            loss = loss_fn(out, _like_output(yt[index], out, plan.loss.kind))
            value = float(loss.item())
            losses.append(value)
            if not np.isfinite(value):
                stopped_at = len(losses) - 1
                with torch.no_grad():
                    for b, old in zip(buffers, before, strict=True):
                        b.copy_(old)
                break
            loss.backward()
            optimizer.step()
            if every and (len(losses)) % every == 0:
                snapshots.append(get_weights(handle))
            if progress is not None:
                progress(epoch, step, value)
        epoch_seconds.append(time.perf_counter() - start)
        if stopped_at is not None:
            break
    return OwnHistory(losses=np.asarray(losses, dtype=np.float64), step_weights=snapshots,
                      weights=get_weights(handle), epoch_seconds=epoch_seconds,
                      stopped_at=stopped_at)


# ----------------------------------------------------------------------------- inference
def predict(handle: TorchHandle, X: np.ndarray) -> np.ndarray:
    """The model's outputs in inference mode (`eval()`: BatchNorm's running statistics, no
    dropout) under `no_grad`; the module's modes are restored afterwards."""
    model = handle.module
    modes = {id(m): m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            out = model(_inputs(handle, np.asarray(X)))
    finally:
        for m in model.modules():
            m.training = modes[id(m)]
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"the model's forward returns {type(out).__name__}, not one tensor; "
                          "wrap it so that it returns its outputs.")
    return out.detach().cpu().numpy()


class _Recorder(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule, wanted: set[str]) -> None:
        super().__init__(gm)
        self.wanted, self.got = wanted, {}

    def run_node(self, n: torch.fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.wanted:
            self.got[n.name] = out
        return out


def layer_outputs(handle: TorchHandle, X: np.ndarray, names: Sequence[str], training: bool,
                  dropout: str = "off") -> dict[str, np.ndarray]:
    """The output of each named layer (`Found.name`: a module, "<module>:k" for its k-th call,
    or a functional fx node) on X, in torch's layout (images NCHW; RNNs: the output sequence,
    batch first). training: BatchNorm with the batch's statistics (its running statistics
    are left as they were) or inference mode. Dropout stays off unless dropout="native": a
    layer-by-layer comparison needs the same outputs from every framework."""
    if dropout not in ("off", "native"):
        raise ConfigError(f"dropout must be 'off' or 'native', got {dropout!r}.")
    if handle.description is None:
        describe(handle, X)
    known = [f.name for f in handle.description.layers]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown layer name(s) {unknown}; the model's layers are {known}.")
    model = handle.module
    leaves = _leaves(model)
    by_module: dict[str, list[str]] = {}
    for n in names:
        if n not in handle.functional:
            by_module.setdefault(n.rsplit(":", 1)[0] if n not in leaves else n, []).append(n)
    got: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name: str, m: nn.Module, args: tuple, out: Any) -> None:
        counts[name] = counts.get(name, 0) + 1
        layer = _call_name(name, counts[name])
        if layer in by_module[name]:
            t = _first_tensor(out)
            got[layer] = _batch_first(t, m) if t is not None else t

    hooks = [leaves[m].register_forward_hook(functools.partial(hook, m)) for m in by_module]
    saved_p = [(m, m.p) for m in _dropouts(model)]
    try:
        with _Untouched(model), torch.no_grad():
            model.train(training)
            if dropout == "off":
                for m, _ in saved_p:
                    m.p = 0.0
            x = _inputs(handle, np.asarray(X))
            wanted = {n for n in names if n in handle.functional}
            if wanted:
                recorder = _Recorder(handle.graph, wanted)
                recorder.run(x)
                got.update(recorder.got)
            else:
                model(x)
    finally:
        for h in hooks:
            h.remove()
        for m, p in saved_p:
            m.p = p
    missing = [n for n in names if not isinstance(got.get(n), torch.Tensor)]
    if missing:
        raise ConfigError(f"layer(s) {missing} produced no tensor on this input.")
    return {n: got[n].detach().cpu().numpy().copy() for n in names}


# ----------------------------------------------------------------------------- optimizer
def _build_optimizer(native: Any) -> torch.optim.Optimizer:
    if isinstance(native, torch.optim.Optimizer):
        return native
    dummy = nn.Parameter(torch.zeros(1))
    if not callable(native):
        raise ConfigError(f"a torch optimizer is given as a callable params -> optimizer "
                          f"(e.g. functools.partial(torch.optim.Adam, lr=1e-3)), got "
                          f"{type(native).__name__}.")
    opt = native([dummy])
    if not isinstance(opt, torch.optim.Optimizer):
        raise ConfigError(f"the optimizer factory returned {type(opt).__name__}, not a "
                          "torch.optim.Optimizer.")
    return opt


def _num(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return float(v.item())
    if isinstance(v, tuple):
        return tuple(_num(x) for x in v)
    return v


#: the settings each optimizer's native dict shows (with the class and lr)
_NATIVE_KEYS = {
    "SGD": ("momentum", "dampening", "nesterov", "weight_decay", "maximize"),
    "RMSprop": ("alpha", "eps", "momentum", "centered", "weight_decay"),
    "Adam": ("betas", "eps", "weight_decay", "amsgrad", "decoupled_weight_decay"),
    "AdamW": ("betas", "eps", "weight_decay", "amsgrad"),
    "Adagrad": ("lr_decay", "initial_accumulator_value", "eps", "weight_decay"),
}


def audit_optimizer(native: Any) -> OptimizerSettings:
    """A torch optimizer factory (params -> optimizer, such as
    `functools.partial(torch.optim.Adam, lr=1e-3)` or a lambda; an optimizer object is read
    as it is) built on one dummy parameter, its `param_groups[0]` read into canonical
    settings."""
    opt = _build_optimizer(native)
    g = {k: _num(v) for k, v in opt.param_groups[0].items() if k != "params"}
    cls = type(opt).__name__
    base = next((c.__name__ for c in type(opt).__mro__ if c.__name__ in _NATIVE_KEYS), cls)
    keys = _NATIVE_KEYS.get(cls, _NATIVE_KEYS.get(base, tuple(g)))
    nat = {"class": cls, "lr": g.get("lr"), **{k: g[k] for k in keys if k in g}}
    lr = float(g.get("lr", 0.0))
    wd = float(g.get("weight_decay", 0.0) or 0.0)
    if isinstance(opt, torch.optim.SGD):
        m = float(g.get("momentum", 0.0))
        name = "sgd" if m == 0 else ("nesterov" if g.get("nesterov") else "momentum")
        return OptimizerSettings(name=name, lr=lr, momentum=m, nesterov=bool(g.get("nesterov")),
                                 weight_decay=wd, native=nat)
    if isinstance(opt, torch.optim.RMSprop):
        centered = bool(g.get("centered"))
        return OptimizerSettings(name="centered_rmsprop" if centered else "rmsprop", lr=lr,
                                 momentum=float(g.get("momentum", 0.0)),
                                 rho=float(g["alpha"]), epsilon=float(g["eps"]),
                                 epsilon_placement="outside", initial_accumulator=0.0,
                                 weight_decay=wd, centered=centered, native=nat)
    if isinstance(opt, (torch.optim.Adam, torch.optim.AdamW)):
        decoupled = isinstance(opt, torch.optim.AdamW) or bool(g.get("decoupled_weight_decay"))
        b1, b2 = g["betas"]
        return OptimizerSettings(name="adamw" if decoupled else "adam", lr=lr,
                                 beta_1=float(b1), beta_2=float(b2), epsilon=float(g["eps"]),
                                 epsilon_placement="outside_hat", weight_decay=wd, native=nat)
    if isinstance(opt, torch.optim.Adagrad):
        return OptimizerSettings(name="adagrad", lr=lr, epsilon=float(g["eps"]),
                                 epsilon_placement="outside",
                                 initial_accumulator=float(g["initial_accumulator_value"]),
                                 weight_decay=wd, native=nat)
    return OptimizerSettings(name=cls, lr=lr, weight_decay=wd, native=nat)
