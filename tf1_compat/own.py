"""The TF1 adapter of "compare your own models" (`zoo.own_types`): a user's TF1-style
graph-building function read, trained and run as TF1 runs it.

The user's model is a Python function `build(x)` or `build(x, training)` that builds the
forward graph from an input placeholder with `tf.compat.v1.get_variable` and
`tf.compat.v1.nn` / `tf.nn` ops (matmul, conv2d, bias_add, relu, max_pool2d, moments or
fused batch norm with moving variables updated through `UPDATE_OPS`, embedding_lookup,
reshape, softmax, dropout) and returns the output tensor. (`tf.compat.v1.layers.*` and
`tf.compat.v1.nn.rnn_cell.*` raise under Keras 3, so TF1 code that runs here is
get_variable-based; see `tf1_compat.layers`.)

`prepare(fn, X, dtype)` calls it once in a new `tf.Graph` on a placeholder
(None, *X.shape[1:]) and keeps the graph, its Session, the placeholders, the output and the
user's variables (creation order) in an `OwnGraph`. Three things happen around the call:

- every float variable is created in the requested dtype: the call runs inside
  `variable_scope(<root>, dtype=..., custom_getter=...)`, and the getter also overrides an
  explicit `dtype=tf.float32` and casts a float initializer tensor or array (so the same
  function builds a float32 and a float64 model; constants the function makes itself must
  follow `x.dtype`);
- `tf.nn.dropout` and `tf.compat.v1.nn.dropout` are replaced (and restored in `finally`) by
  a wrapper that records each call's rate and builds TF's own op with the rate
  `rate * (training and native_dropout)`: with the switch off the rate is a zero tensor and
  TF's dropout computes `x * 1` where every unit is kept, x exactly, so one graph serves both
  `TrainPlan.dropout` modes ("off": the identity; "native": TF's masks, in training only).
  A function that imported `dropout` by name before the call is not seen: call it as
  `tf.nn.dropout`;
- control flow v1 (`tf.compat.v1.disable_control_flow_v2`, restored afterwards): TF1's own
  `tf.cond` / `tf.while_loop`, whose Switch/Merge ops stay in the graph where `describe`
  reads them; under control flow v2 a cond is one opaque `If` op whose branches (a batch
  norm's choice of statistics, its guarded moving-average assigns) live in separate
  function graphs. The numbers are the same either way (measured: a conv + batch-norm
  function built both ways trains three SGD steps to the same losses, weights and moving
  statistics bit for bit, `tests/test_tf1_own.py`).

`describe` walks the ops between the input placeholder and the output in topological order.
The graph is cut at the ops that every path from the input to the output passes through; an
op alone between two cuts is classified by its type (MatMul on a 2-D variable: dense,
Conv2D: conv2d, a BiasAdd/Add of a 1-D variable right after either: its bias,
Relu/Sigmoid/Tanh/Softmax/LogSoftmax: activation, MaxPool/AvgPool, Reshape to 2-D: flatten,
ResourceGather/GatherV2 of a 2-D variable: embedding); a block of several ops between two
cuts that computes moments (a Mean of the block's input and an Rsqrt/Sqrt) or runs a
FusedBatchNorm is one normalisation layer (over the last axis only: layer_norm; over every
other axis: batch_norm), and the roles of its variables come from how they are used (a 1-D
variable multiplied: gamma, added: beta; a non-trainable one on the variance side of the
Rsqrt: moving_variance, else moving_mean; the name when use does not tell). Moving variables
and the momentum are read from the user's assign ops
(`assign(moving, moving * decay + batch * (1 - decay))` or
`assign_sub(moving, (moving - batch) * (1 - decay))`: momentum = decay, Keras's convention),
and so is whether training runs them
(`config["native"]["updates"][role]["run"]`: "UPDATE_OPS", "forward pass" for a control
dependency of the training branch, or "never": the moving statistics would keep their
initial values); the moving variance is "biased" for `tf.nn.moments`, "unbiased" for the
fused kernel in training mode (it returns the Bessel-corrected variance,
`tf1_compat.layers`). Every trainable variable must end up in a layer, or `describe` raises
a ConfigError naming it. A variable read inside a while loop (a recurrent layer written with
`tf.scan` / `tf.while_loop`) is refused: those graphs are not read yet.

`train` adds the loss, the optimizer and the train op (under
`tf.control_dependencies(UPDATE_OPS)`, with `training` fed True) to the graph once per
(loss, optimizer, frozen) and feeds exactly `plan.batches`. The idiomatic losses take the
function's output as it is (a final softmax is not undone, as a TF1 user calling
`tf.compat.v1.losses.sparse_softmax_cross_entropy` on it would not). A native optimizer must
live in the model's graph: pass a `tf.compat.v1.train.Optimizer` whose hyperparameters are
Python numbers (TF1 turns them into tensors in the graph `minimize` runs in) or a
zero-argument factory, which is called inside the graph; it runs `minimize` as its user
would, so its RMSProp accumulator keeps TF1's ones and an embedding's gradient stays sparse;
a `plan.optimizer.spec` gets the zoo's translation (`tf1_compat.optimizers.make_optimizer`,
`after_init`) and dense embedding gradients, as the zoo's own TF1 loop (`tf1_compat.train`).
Each `train` call starts the optimizer's slots afresh.
"""

from __future__ import annotations

import copy
import heapq
import inspect
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tf1_compat.model import tf_dtype
from tf1_compat.optimizers import after_init, make_optimizer
from zoo.errors import ConfigError, DataError
from zoo.own_types import (
    Description,
    Found,
    OptimizerSettings,
    OwnHistory,
    Progress,
    TrainPlan,
)
from zoo.specs import records

__all__ = ["DropoutCall", "OwnGraph", "audit_optimizer", "close", "describe", "freeze",
           "get_weights", "layer_outputs", "predict", "prepare", "set_weights", "train"]

tf1 = tf.compat.v1

#: ops that pass their (first) input on unchanged as far as layers are concerned
_PASS = frozenset({"Identity", "IdentityN", "Switch", "Merge", "Cast", "StopGradient",
                   "Squeeze", "ExpandDims", "Snapshot", "EnsureShape", "CheckNumerics",
                   "PreventGradient", "RefIdentity", "Enter", "Exit"})
#: ops whose outputs describe a tensor rather than carry its values: not followed
_METADATA = frozenset({"Shape", "ShapeN", "Size", "Rank", "ZerosLike", "OnesLike"})
_LOOP = frozenset({"Enter", "Exit", "NextIteration", "LoopCond"})
_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax",
                "LogSoftmax": "log_softmax", "Elu": "elu", "Selu": "selu",
                "Softplus": "softplus", "Softsign": "softsign", "Relu6": "relu6",
                "LeakyRelu": "leaky_relu"}
_OUTPUT_OF = {"softmax": "probabilities", "log_softmax": "log_probabilities",
              "sigmoid": "sigmoid"}
_ADDS = frozenset({"Add", "AddV2", "BiasAdd"})
_ASSIGNS = frozenset({"AssignVariableOp", "AssignSubVariableOp", "AssignAddVariableOp",
                      "Assign", "AssignSub", "AssignAdd"})
_LOSS_KINDS = ("crossentropy", "binary_crossentropy", "mse")
#: role names by the last part of a variable's name, when its use does not tell
_NAME_ROLES = {"gamma": "gamma", "scale": "gamma", "beta": "beta", "offset": "beta",
               "center": "beta", "moving_mean": "moving_mean", "running_mean": "moving_mean",
               "mean": "moving_mean", "moving_variance": "moving_variance",
               "moving_var": "moving_variance", "running_var": "moving_variance",
               "variance": "moving_variance"}


@dataclass(frozen=True)
class DropoutCall:
    """One `tf.nn.dropout` / `tf.compat.v1.nn.dropout` call of the user's function: its rate
    (1 - keep_prob for the v1 spelling), input and output tensors and the ops it built."""

    rate: float
    input: tf.Tensor
    output: tf.Tensor
    ops: frozenset[str]


@dataclass
class _TrainOps:
    y: tf.Tensor
    loss: tf.Tensor
    train_op: tf.Operation
    optimizer: Any
    var_list: list[tf.Variable]
    init: tf.Operation
    translated: bool


@dataclass
class OwnGraph:
    """The handle `prepare` returns: the user's graph and everything the other functions need.

    `x` the input placeholder (None, *input_shape); `training` a bool
    `placeholder_with_default(False, ())` handed to the function when it takes it (and
    gating every dropout); `native_dropout` a second bool switch (default False) that turns
    TF's dropout on in training mode; `output` what the function returned; `variables` the
    user's variables by TF name without ":0", in creation order (moving statistics
    included); `trainable` the names in `TRAINABLE_VARIABLES`; `dropouts` every dropout call
    in build order; `update_ops` the graph's `UPDATE_OPS` after the call; `assigns` the
    user's own assign ops (not the variables' initializers). The Session stays open until
    `close`.
    """

    fn: Callable[..., Any]
    dtype: str
    graph: tf.Graph
    session: tf1.Session
    x: tf.Tensor
    training: tf.Tensor
    native_dropout: tf.Tensor
    output: tf.Tensor
    input_shape: tuple[int, ...]
    takes_training: bool
    variables: dict[str, tf.Variable]
    trainable: tuple[str, ...]
    dropouts: list[DropoutCall]
    update_ops: list[tf.Operation]
    assigns: list[tf.Operation]
    frozen: set[str] = field(default_factory=set)
    _assign: dict[str, tuple[tf.Tensor, tf.Operation]] = field(default_factory=dict)
    _train: dict[Any, _TrainOps] = field(default_factory=dict)
    _backup: tuple[tf.Operation, tf.Operation, dict[str, tf.Variable]] | None = None
    _reading: _Reading | None = None


# ----------------------------------------------------------------------------- prepare
def prepare(fn: Callable[..., Any], X: np.ndarray, dtype: str = "float32") -> OwnGraph:
    """Build the user's function `fn(x)` or `fn(x, training)` in a new graph on a placeholder
    (None, *X.shape[1:]) of `dtype` (integer X: an int32 placeholder, for token ids), every
    float variable in `dtype`, the dropout calls recorded and switchable (module docstring);
    open a Session and initialise the variables."""
    if not callable(fn):
        raise ConfigError(f"a TF1 model is a function build(x) or build(x, training) that "
                          f"returns the output tensor; got {type(fn).__name__}, which is not "
                          "callable.")
    dt = tf_dtype(dtype)
    X = np.asarray(X)
    if X.ndim < 2 or len(X) < 1:
        raise DataError(f"X must be a batch of at least one sample, (N, ...), got shape "
                        f"{X.shape}.")
    takes_training = _takes_training(fn)
    graph = tf.Graph()
    x_dt = tf.int32 if np.issubdtype(X.dtype, np.integer) else dt
    dropouts: list[DropoutCall] = []
    with graph.as_default():
        x = tf1.placeholder(x_dt, (None, *X.shape[1:]), name="x")
        training = tf1.placeholder_with_default(False, (), name="training")
        native = tf1.placeholder_with_default(False, (), name="native_dropout")
        output = _call(fn, x, training, takes_training, dt, dtype, graph, native, dropouts)
        variables = {_name(v): v for v in tf1.global_variables()}
        if not variables:
            raise ConfigError("the function created no variables: create the weights with "
                              "tf.compat.v1.get_variable inside it.")
        trainable = tuple(_name(v) for v in tf1.trainable_variables())
        inits = {v.initializer.name for v in variables.values()}
        assigns = [op for op in graph.get_operations()
                   if op.type in _ASSIGNS and op.name not in inits]
        update_ops = [_as_op(u) for u in graph.get_collection(tf1.GraphKeys.UPDATE_OPS)]
        assign = {}
        with tf1.name_scope("own_assign"):
            for name, var in variables.items():
                ph = tf1.placeholder(var.dtype.base_dtype, var.shape,
                                     name=name.replace("/", "_"))
                assign[name] = (ph, var.assign(ph))
        init = tf1.variables_initializer(list(variables.values()))
    session = tf1.Session(graph=graph)
    session.run(init)
    return OwnGraph(fn=fn, dtype=dtype, graph=graph, session=session, x=x, training=training,
                    native_dropout=native, output=output, input_shape=tuple(X.shape[1:]),
                    takes_training=takes_training, variables=variables, trainable=trainable,
                    dropouts=dropouts, update_ops=update_ops, assigns=assigns,
                    _assign=assign)


def close(handle: OwnGraph) -> None:
    """Close the handle's Session (the handle is unusable afterwards)."""
    handle.session.close()


def _closure(ops: Iterable[tf.Operation]) -> set[tf.Operation]:
    """Every op that running `ops` runs: their data and control inputs, transitively."""
    seen: set[tf.Operation] = set()
    stack = list(ops)
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return seen


def _tidy(v: float) -> float:
    """A setting read from a constant: a value float32 represents exactly is reported as that
    float32's shortest decimal (decay 0.99 written in float32, or cast from it, is 0.99, not
    0.9900000095367432)."""
    if math.isfinite(v) and float(np.float32(v)) == v:
        return float(str(np.float32(v)))
    return v


def _as_op(item: Any) -> tf.Operation:
    """An UPDATE_OPS entry as an operation (entries may be ops, tensors or the unread
    variable `tf.compat.v1.assign` returns for a resource variable)."""
    return item if isinstance(item, tf.Operation) else item.op


def _name(v: tf.Variable) -> str:
    return v.name[:-2] if v.name.endswith(":0") else v.name


def _takes_training(fn: Callable[..., Any]) -> bool:
    """Whether `fn` takes a second argument (or one named `training`)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.name == "training" for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _call(fn, x, training, takes_training, dt, dtype, graph, native, dropouts) -> tf.Tensor:
    """Call the user's function with the dtype getter, the dropout wrappers and control flow
    v1 in place (all restored in `finally`), and check what it returns."""

    def force_dtype(getter, *args, **kwargs):  # TF passes `getter` by keyword
        want = kwargs.get("dtype")
        if want is None or tf.as_dtype(want).is_floating:
            kwargs["dtype"] = dt
            init = kwargs.get("initializer")
            if isinstance(init, tf.Tensor) and init.dtype.is_floating and init.dtype != dt:
                kwargs["initializer"] = tf.cast(init, dt)
            elif isinstance(init, np.ndarray) and init.dtype.kind == "f":
                kwargs["initializer"] = init.astype(dtype)
        return getter(*args, **kwargs)

    patches = _dropout_patches(graph, training, native, dt, dropouts)
    v2 = tf1.control_flow_v2_enabled()
    saved = [(module, module.dropout) for module, _ in patches]
    try:
        tf1.disable_control_flow_v2()
        for module, wrapper in patches:
            module.dropout = wrapper
        with tf1.variable_scope(tf1.get_variable_scope(), dtype=dt,
                                custom_getter=force_dtype):
            out = fn(x, training) if takes_training else fn(x)
    except ConfigError:
        raise
    except Exception as e:  # the user's code: one message, the original chained
        raise ConfigError(f"building the TF1 graph with {_fn_name(fn)} in {dtype} failed: "
                          f"{type(e).__name__}: {e}. Build it from x with "
                          "tf.compat.v1.get_variable and tf.nn ops (constants in x.dtype; "
                          "tf.cond on `training`, not Python `if`).") from e
    finally:
        for module, original in saved:
            module.dropout = original
        if v2:
            tf1.enable_control_flow_v2()
    if isinstance(out, (list, tuple)) and len(out) == 1:
        out = out[0]
    if not isinstance(out, tf.Tensor) or out.graph is not graph:
        raise ConfigError(f"{_fn_name(fn)} must return the output tensor it built from x; "
                          f"got {type(out).__name__}.")
    if not out.dtype.is_floating:
        raise ConfigError(f"{_fn_name(fn)} returned a {out.dtype.name} tensor; return the "
                          "float outputs (logits, probabilities or values).")
    return out


def _fn_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _dropout_patches(graph, training, native, dt, dropouts):
    """(module, wrapper) for `tf.nn`, `tf.compat.v1.nn` and `tf.compat.v2.nn`: each wrapper
    records the call and builds TF's own dropout at rate `rate * (training and native)`."""
    original_v2 = tf.nn.dropout

    def gated(x, rate, noise_shape, seed, name):
        static = rate if isinstance(rate, (int, float, np.floating, np.integer)) else \
            tf.get_static_value(rate)
        if static is None or np.ndim(static) != 0:
            raise ConfigError("a dropout's rate must be a constant number (the adapter "
                              "switches dropout off and on itself); pass e.g. rate=0.5 to "
                              "tf.nn.dropout, not a tensor.")
        static = float(static)
        if not 0.0 <= static < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {static}.")
        first = len(graph.get_operations())
        x = tf.convert_to_tensor(x)
        on = tf.cast(tf.logical_and(training, native), x.dtype)
        out = original_v2(x, rate=on * tf.constant(static, x.dtype),
                          noise_shape=noise_shape, seed=seed, name=name)
        ops = frozenset(op.name for op in graph.get_operations()[first:])
        dropouts.append(DropoutCall(static, x, out, ops))
        return out

    def dropout_v2(x, rate, noise_shape=None, seed=None, name=None):
        return gated(x, rate, noise_shape, seed, name)

    def dropout_v1(x, keep_prob=None, noise_shape=None, seed=None, name=None, rate=None):
        if rate is None:
            if keep_prob is None:
                raise ConfigError("tf.compat.v1.nn.dropout needs rate= (or keep_prob=).")
            keep = keep_prob if isinstance(keep_prob, (int, float)) else \
                tf.get_static_value(keep_prob)
            if keep is None:
                raise ConfigError("a dropout's keep_prob must be a constant number; pass "
                                  "e.g. rate=0.5, not a tensor.")
            rate = 1.0 - float(keep)
        return gated(x, rate, noise_shape, seed, name)

    modules = [(tf.nn, dropout_v2), (tf1.nn, dropout_v1)]
    v2_nn = getattr(getattr(tf.compat, "v2", None), "nn", None)
    if v2_nn is not None and all(v2_nn is not m for m, _ in modules):
        modules.append((v2_nn, dropout_v2))
    return modules


# ----------------------------------------------------------------------------- weights
def get_weights(handle: OwnGraph) -> dict[str, np.ndarray]:
    """Every variable of the user's function (moving statistics included) by TF name, in
    creation order, as numpy copies."""
    values = handle.session.run(handle.variables)
    return {k: np.array(values[k]) for k in handle.variables}


def set_weights(handle: OwnGraph, weights: dict[str, np.ndarray]) -> None:
    """Assign exactly the given variables (a partial dict is allowed); an unknown name or a
    wrong shape raises a ConfigError before anything is assigned."""
    feed, ops = {}, []
    for name, value in weights.items():
        if name not in handle.variables:
            raise ConfigError(f"unknown TF1 variable {name!r}; the model's variables are: "
                              f"{', '.join(handle.variables)}.")
        var = handle.variables[name]
        value = np.asarray(value)
        want = tuple(var.shape.as_list())
        if value.shape != want:
            raise ConfigError(f"{name}: shape {value.shape} does not fit the variable's "
                              f"{want}; give the weights in TF1's layout (dense kernels "
                              "(in, out), conv kernels (kh, kw, in, out)).")
        ph, op = handle._assign[name]
        feed[ph] = value.astype(var.dtype.base_dtype.as_numpy_dtype)
        ops.append(op)
    if ops:
        handle.session.run(ops, feed_dict=feed)


def freeze(handle: OwnGraph, names: Iterable[str]) -> None:
    """Leave these variables out of every optimizer's var_list from now on."""
    names = list(names)
    unknown = [n for n in names if n not in handle.variables]
    if unknown:
        raise ConfigError(f"cannot freeze unknown TF1 variable(s) {', '.join(unknown)}; the "
                          f"model's variables are: {', '.join(handle.variables)}.")
    handle.frozen.update(names)


# ----------------------------------------------------------------------------- describe
@dataclass
class _Layer:
    found: Found
    input: tf.Tensor | None
    output: tf.Tensor
    #: normalisation only: the op the batch statistics come from, for the assign analysis
    stats: dict[str, tf.Tensor] = field(default_factory=dict)
    #: named after an op (no variables yet): renamed by the first variable attached to it
    named_by_op: bool = False


@dataclass
class _Reading:
    layers: list[_Layer]
    output: str


def describe(handle: OwnGraph, X: np.ndarray) -> Description:
    """Every layer of the user's graph in forward order (module docstring), with per-sample
    input and output shapes measured on X (inference mode)."""
    X = _check_X(handle, X)
    reading = _read(handle)
    fetch = {}
    for i, layer in enumerate(reading.layers):
        for which, t in (("in", layer.input), ("out", layer.output)):
            if t is not None and _fetchable(t):
                fetch[(i, which)] = t
    values = handle.session.run(fetch, feed_dict={handle.x: X}) if fetch else {}
    layers = []
    for i, layer in enumerate(reading.layers):
        f = copy.deepcopy(layer.found)
        f.input_shape = _shape(values.get((i, "in")), layer.input)
        f.output_shape = _shape(values.get((i, "out")), layer.output)
        layers.append(f)
    state = [n for n in handle.variables if n not in handle.trainable]
    state += [n for n in handle.variables if n in handle.frozen and n not in state]
    return Description(framework="tf1", layers=layers, output=reading.output,
                       input_shape=tuple(X.shape[1:]),
                       image_layout="nhwc" if X.ndim == 4 else None, state=tuple(state))


def _fetchable(t: tf.Tensor) -> bool:
    return getattr(t.op, "_control_flow_context", None) is None


def _shape(value: np.ndarray | None, t: tf.Tensor | None) -> tuple[int, ...]:
    if value is not None:
        return tuple(int(d) for d in np.shape(value)[1:])
    if t is None or t.shape.rank is None:
        return ()
    return tuple(-1 if d is None else int(d) for d in t.shape.as_list()[1:])


def _read(handle: OwnGraph) -> _Reading:
    if handle._reading is None:
        handle._reading = _GraphReader(handle).read()
    return handle._reading


class _GraphReader:
    """One pass over the forward graph: the path, its cuts, then the layers (module
    docstring)."""

    def __init__(self, handle: OwnGraph):
        self.h = handle
        self.graph = handle.graph
        self.index = {op: i for i, op in enumerate(self.graph.get_operations())}
        self.by_op = {}
        for name, v in handle.variables.items():
            self.by_op[v.op.name] = name
            handle_op = getattr(getattr(v, "handle", None), "op", None)
            if handle_op is not None:
                self.by_op[handle_op.name] = name
        self.dropout_of = {}
        for d in handle.dropouts:
            for n in d.ops:
                self.dropout_of[n] = d
        self.layers: list[_Layer] = []
        self.used: dict[str, str] = {}
        self.names: set[str] = set()
        self.done: set[tf.Operation] = set()

    # -- graph helpers
    def var_of(self, t: tf.Tensor) -> str | None:
        """The user variable a tensor reads (through reads, identities, cond switches)."""
        for _ in range(32):
            op = t.op
            if op.name in self.by_op and op.type in ("VarHandleOp", "VariableV2", "Variable"):
                return self.by_op[op.name]
            if op.type in ("ReadVariableOp", "Identity", "Switch", "Enter", "RefIdentity") \
                    and op.inputs:
                t = op.inputs[0]
                continue
            return None
        return None

    def source(self, t: tf.Tensor) -> tf.Tensor:
        """`t` with pass-through ops (identities, casts, cond plumbing) stepped over."""
        while t.op.type in ("Identity", "Switch", "Merge", "Cast", "Snapshot", "EnsureShape") \
                and t.op.inputs and t.op not in self.x_ops:
            if t.op.type == "Merge":
                on = [i for i in t.op.inputs if i.op in self.path]
                if len(on) != 1:
                    break
                t = on[0]
            else:
                t = t.op.inputs[0]
        return t

    def const(self, t: tf.Tensor) -> float | None:
        value = tf.get_static_value(t)
        if value is None and t.op.type == "Identity":
            value = tf.get_static_value(t.op.inputs[0])
        if value is None or np.size(value) != 1:
            return None
        return _tidy(float(np.asarray(value).reshape(())))

    def ancestors(self, tensors: Iterable[tf.Tensor], limit: int = 100000) -> set[tf.Tensor]:
        seen: set[tf.Tensor] = set()
        stack = list(tensors)
        while stack and len(seen) < limit:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            stack.extend(t.op.inputs)
        return seen

    # -- the path and its cuts
    def _path(self) -> list[tf.Operation]:
        x_op, out_op = self.h.x.op, self.h.output.op
        fwd, stack = {x_op}, [x_op]
        while stack:
            for t in stack.pop().outputs:
                for c in t.consumers():
                    if c not in fwd and c.type not in _METADATA:
                        fwd.add(c)
                        stack.append(c)
        if out_op not in fwd:
            raise ConfigError("the function's output does not depend on its input x; return "
                              "the tensor computed from x.")
        bwd, stack = {out_op}, [out_op]
        while stack:
            for t in stack.pop().inputs:
                if t.op not in bwd:
                    bwd.add(t.op)
                    stack.append(t.op)
        path = fwd & bwd
        loops = sorted(op.name for op in path if op.type in _LOOP)
        if loops:
            raise ConfigError(f"the forward graph runs a while loop ({loops[0]}); loops "
                              "(tf.scan, tf.while_loop) are not read by the TF1 adapter yet.")
        preds = {op: [t.op for t in op.inputs if t.op in path] for op in path}
        succs: dict[tf.Operation, list[tf.Operation]] = {op: [] for op in path}
        for op, ps in preds.items():
            for p in ps:
                succs[p].append(op)
        waiting = {op: len(ps) for op, ps in preds.items()}
        heap = [(self.index[op], op.name) for op, n in waiting.items() if n == 0]
        by_name = {op.name: op for op in path}
        heapq.heapify(heap)
        order = []
        while heap:
            op = by_name[heapq.heappop(heap)[1]]
            order.append(op)
            for s in succs[op]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    heapq.heappush(heap, (self.index[s], s.name))
        if len(order) != len(path):  # pragma: no cover (loops are refused above)
            raise ConfigError("the forward graph has a cycle; it cannot be read.")
        # cuts: ops every path from x to the output passes through
        n_from = {x_op: 1}
        for op in order[1:]:
            n_from[op] = sum(n_from[p] for p in preds[op])
        n_to = {out_op: 1}
        for op in reversed(order[:-1]):
            n_to[op] = sum(n_to[s] * sum(1 for t in s.inputs if t.op is op) for s in
                           set(succs[op]))
        total = n_from[out_op]
        self.cuts = {op for op in order if n_from[op] * n_to[op] == total}
        self.preds = preds
        self.path = path
        return order

    def _check_loops(self) -> None:
        """Refuse variables read inside a while loop (recurrent layers by hand)."""
        for op in self.graph.get_operations():
            ctx = getattr(op, "_control_flow_context", None)
            in_loop = False
            while ctx is not None:
                if ctx.IsWhileContext():
                    in_loop = True
                    break
                ctx = ctx.outer_context
            reads_in_loop = in_loop and any(self.var_of(t) for t in op.inputs)
            captured = op.type == "Enter" and self.var_of(op.inputs[0]) is not None
            functional = op.type in ("While", "StatelessWhile") and any(
                self.var_of(t) for t in op.inputs)
            if reads_in_loop or captured or functional:
                names = sorted({self.var_of(t) for t in op.inputs if self.var_of(t)})
                raise ConfigError(f"variable {names[0]!r} is read inside a while loop "
                                  f"({op.name}): recurrent TF1 graphs (tf.scan, "
                                  "tf.while_loop) are not read yet; compare the recurrent "
                                  "model in Keras or torch instead.")

    # -- reading
    def read(self) -> _Reading:
        self._check_loops()
        self.x_ops = {self.h.x.op}
        order = self._path()
        segments, current = [], []
        for op in order:
            current.append(op)
            if op in self.cuts:
                segments.append(current)
                current = []
        for seg in segments:
            todo = [op for op in seg if op not in self.done and op is not self.h.x.op]
            if not todo:
                continue
            if self._normalisation(seg):
                continue
            for op in todo:
                if op not in self.done:
                    self._op(op)
        self._check_placed()
        self._moving_statistics()
        return _Reading(self.layers, self._output_kind())

    def _output_kind(self) -> str:
        last = self.layers[-1].found if self.layers else None
        if last is not None and last.kind == "activation":
            return _OUTPUT_OF.get(last.config.get("function"), "logits")
        return "logits"

    def _check_placed(self) -> None:
        missing = [n for n in self.h.trainable if n not in self.used]
        if missing:
            raise ConfigError(
                f"TF1 variable {missing[0]!r} is not used the way any layer the adapter reads "
                "uses its weights (dense: tf.matmul(h, kernel) + bias; conv: "
                "tf.nn.conv2d(h, kernel, ...) + bias; batch/layer norm with tf.nn.moments or "
                "fused_batch_norm; tf.nn.embedding_lookup); build that layer from those ops "
                "or leave it out of the comparison.")

    def _unique(self, name: str) -> str:
        base, k = name or "layer", 1
        while name in self.names or not name:
            name = f"{base}_{k}"
            k += 1
        self.names.add(name)
        return name

    def _scope_name(self, variables: list[str]) -> str:
        scope = variables[0].rpartition("/")[0]
        if not scope or scope in self.names:
            return self._unique(variables[0])
        return self._unique(scope)

    def _add(self, kind: str, name: str, config: dict, tensors: dict[str, str],
             inp: tf.Tensor | None, out: tf.Tensor) -> _Layer:
        for role, var in tensors.items():
            self.used[var] = role
        layer = _Layer(Found(name=name, kind=kind, config=config, tensors=dict(tensors)),
                       inp, out)
        self.layers.append(layer)
        return layer

    def _on_path(self, op: tf.Operation) -> list[tf.Tensor]:
        return [t for t in op.inputs if t.op in self.path]

    def _op(self, op: tf.Operation) -> None:
        self.done.add(op)
        d = self.dropout_of.get(op.name)
        if d is not None:
            self.done.update(o for o in self.path if o.name in d.ops)
            name = self._unique(d.output.op.name.rpartition("/")[0] or d.output.op.name)
            self._add("dropout", name, {"rate": d.rate, "native": {"op": "tf.nn.dropout",
                                                                   "rate": d.rate}},
                      {}, d.input, d.output)
            return
        t = op.type
        if t in _PASS:
            return
        if t in ("MatMul", "BatchMatMulV2", "BatchMatMul"):
            return self._dense(op)
        if t in ("Conv2D",):
            return self._conv(op)
        if t in ("ResourceGather", "GatherV2", "Gather") and self.var_of(op.inputs[0]):
            return self._embedding(op)
        if t in _ADDS or t == "Mul":
            if self._attach(op):
                return
        if t in _ACTIVATIONS:
            fn = _ACTIVATIONS[t]
            self._add("activation", self._unique(op.name),
                      {"function": fn, "native": {"op": t}}, {}, op.inputs[0], op.outputs[0])
            return
        if t in ("MaxPool", "MaxPoolV2", "AvgPool"):
            return self._pool(op)
        if t == "Reshape":
            rank_in, rank_out = op.inputs[0].shape.rank, op.outputs[0].shape.rank
            kind = "flatten" if rank_in is not None and rank_in >= 3 and rank_out == 2 \
                else "reshape"
            config = {"native": {"op": "Reshape"}}
            if kind == "reshape" and op.outputs[0].shape.rank is not None:
                config["target_shape"] = tuple(-1 if d is None else int(d)
                                               for d in op.outputs[0].shape.as_list()[1:])
            self._add(kind, self._unique(op.name), config, {}, op.inputs[0], op.outputs[0])
            return
        if t == "Transpose":
            perm = tf.get_static_value(op.inputs[1])
            if perm is not None and int(perm[0]) == 0:
                self._add("permute", self._unique(op.name),
                          {"dims": tuple(int(p) for p in perm[1:]),
                           "native": {"op": "Transpose", "perm": [int(p) for p in perm]}},
                          {}, op.inputs[0], op.outputs[0])
                return
        if not op.outputs or not op.outputs[0].dtype.is_floating:
            return
        inputs = self._on_path(op)
        self._add("other", self._unique(op.name), {"class": t, "native": {"op": t}}, {},
                  inputs[0] if inputs else None, op.outputs[0])

    # -- weighted layers
    def _dense(self, op: tf.Operation) -> None:
        a, b = op.inputs[0], op.inputs[1]
        ka, kb = self.var_of(a), self.var_of(b)
        if ka is not None and kb is None:
            raise ConfigError(f"{op.name}: the variable {ka!r} is the FIRST operand of "
                              "tf.matmul; write tf.matmul(h, kernel) with the kernel "
                              "(in, out) second, as TF1's dense layers did.")
        if kb is None:
            inputs = self._on_path(op)
            self._add("other", self._unique(op.name), {"class": op.type,
                                                       "native": {"op": op.type}}, {},
                      inputs[0] if inputs else None, op.outputs[0])
            return
        var = self.h.variables[kb]
        if var.shape.rank != 2:
            raise ConfigError(f"{op.name}: the kernel {kb!r} has shape "
                              f"{tuple(var.shape.as_list())}; a dense kernel is 2-D (in, out).")
        for attr in ("transpose_a", "transpose_b", "adj_x", "adj_y"):
            try:
                flag = op.get_attr(attr)
            except ValueError:
                continue
            if flag:
                raise ConfigError(f"{op.name}: tf.matmul(..., {attr}=True) on {kb!r}; the "
                                  "adapter reads kernels (in, out), used untransposed: store "
                                  "the kernel as (in, out) and drop the transpose.")
        units = int(var.shape[1])
        self._add("dense", self._scope_name([kb]),
                  {"units": units, "use_bias": False, "activation": "linear",
                   "native": {"op": op.type}}, {"kernel": kb}, a, op.outputs[0])

    def _conv(self, op: tf.Operation) -> None:
        kernel = self.var_of(op.inputs[1])
        if kernel is None:
            inputs = self._on_path(op)
            self._add("other", self._unique(op.name), {"class": "Conv2D",
                                                       "native": {"op": "Conv2D"}}, {},
                      inputs[0] if inputs else None, op.outputs[0])
            return
        fmt = op.get_attr("data_format").decode()
        if fmt != "NHWC":
            raise ConfigError(f"{op.name}: data_format {fmt!r}; the TF1 adapter reads NHWC "
                              "convolutions (TF's default, and its only CPU layout): build "
                              "the graph with data_format='NHWC'.")
        var = self.h.variables[kernel]
        kh, kw, cin, cout = (int(d) for d in var.shape.as_list())
        strides = [int(s) for s in op.get_attr("strides")]
        dil = [int(s) for s in op.get_attr("dilations")]
        padding = op.get_attr("padding").decode()
        if padding == "EXPLICIT":
            p = [int(v) for v in op.get_attr("explicit_paddings")]
            pad: Any = [[p[2], p[3]], [p[4], p[5]]]
        else:
            pad = padding.lower()
        channels = op.inputs[0].shape[-1]
        groups = int(channels) // cin if channels is not None and cin else 1
        self._add("conv2d", self._scope_name([kernel]),
                  {"filters": cout, "kernel_size": (kh, kw), "strides": (strides[1], strides[2]),
                   "padding": pad, "dilation": (dil[1], dil[2]), "groups": groups,
                   "use_bias": False, "activation": "linear",
                   "native": {"op": "Conv2D", "padding": padding, "strides": strides,
                              "dilations": dil, "data_format": fmt}},
                  {"kernel": kernel}, op.inputs[0], op.outputs[0])

    def _embedding(self, op: tf.Operation) -> None:
        table = self.var_of(op.inputs[0])
        var = self.h.variables[table]
        if var.shape.rank != 2:
            raise ConfigError(f"{op.name}: the looked-up variable {table!r} has shape "
                              f"{tuple(var.shape.as_list())}; an embedding table is 2-D "
                              "(vocab, dim).")
        out = op.outputs[0]
        for c in out.consumers():  # embedding_lookup's own Identity
            if c.type == "Identity" and c in self.path:
                out = c.outputs[0]
                self.done.add(c)
        vocab, dim = (int(d) for d in var.shape.as_list())
        self._add("embedding", self._scope_name([table]),
                  {"vocab": vocab, "dim": dim, "native": {"op": op.type}},
                  {"embeddings": table}, op.inputs[1], out)

    def _pool(self, op: tf.Operation) -> None:
        if op.type == "MaxPoolV2":
            ksize = [int(v) for v in tf.get_static_value(op.inputs[1])]
            strides = [int(v) for v in tf.get_static_value(op.inputs[2])]
        else:
            ksize = [int(v) for v in op.get_attr("ksize")]
            strides = [int(v) for v in op.get_attr("strides")]
        fmt = op.get_attr("data_format").decode()
        if fmt != "NHWC":
            raise ConfigError(f"{op.name}: data_format {fmt!r}; the TF1 adapter reads NHWC "
                              "pooling: build the graph with data_format='NHWC'.")
        padding = op.get_attr("padding").decode()
        kind = "avg_pool2d" if op.type == "AvgPool" else "max_pool2d"
        self._add(kind, self._unique(op.name),
                  {"pool_size": (ksize[1], ksize[2]), "strides": (strides[1], strides[2]),
                   "padding": padding.lower(),
                   "native": {"op": op.type, "ksize": ksize, "strides": strides,
                              "padding": padding}},
                  {}, op.inputs[0], op.outputs[0])

    def _attach(self, op: tf.Operation) -> bool:
        """A bias after a dense or conv layer, or a gamma (Mul) / beta (Add) after a
        normalisation that left them out, when the other operand IS that layer's output."""
        if not self.layers:
            return False
        last = self.layers[-1]
        f = last.found
        for i, j in ((0, 1), (1, 0)):
            var = self.var_of(op.inputs[j])
            if var is None or self.h.variables[var].shape.rank != 1:
                continue
            if self.source(op.inputs[i]) is not self.source(last.output):
                continue
            if op.type == "BiasAdd":
                fmt = op.get_attr("data_format").decode()
                if fmt != "NHWC":
                    raise ConfigError(f"{op.name}: bias_add with data_format {fmt!r}; the "
                                      "TF1 adapter reads NHWC graphs.")
            if op.type in _ADDS and f.kind in ("dense", "conv2d") and not f.config["use_bias"]:
                f.tensors["bias"] = var
                f.config["use_bias"] = True
                f.config["native"]["bias"] = op.type
            elif op.type in _ADDS and f.kind in ("batch_norm", "layer_norm") \
                    and not f.config["center"]:
                f.tensors["beta"] = var
                f.config["center"] = True
            elif op.type == "Mul" and f.kind in ("batch_norm", "layer_norm") \
                    and not f.config["scale"] and not f.config["center"]:
                f.tensors["gamma"] = var
                f.config["scale"] = True
            else:
                continue
            if f.kind in ("batch_norm", "layer_norm") and last.named_by_op:
                # a hand-written norm whose gamma and beta come after it: their scope names it
                self.names.discard(f.name)
                f.name = self._scope_name([var])
                last.named_by_op = False
            self.used[var] = "attached"
            last.output = op.outputs[0]
            return True
        return False

    # -- normalisation
    def _normalisation(self, seg: list[tf.Operation]) -> bool:
        """One batch or layer norm between two cuts: moments (a Mean of the block's input
        and an Rsqrt/Sqrt) or FusedBatchNorm ops. False if the block is neither."""
        fused = [op for op in seg if op.type.startswith("FusedBatchNorm")]
        roots = [op for op in seg if op.type in ("Rsqrt", "Sqrt")]
        inp = self._block_input(seg)
        means = [op for op in seg if op.type == "Mean"
                 and inp is not None and self.source(op.inputs[0]) is self.source(inp)]
        if not fused and not (roots and means):
            return False
        block = set(seg)
        uses: list[tuple[str, tf.Operation]] = []
        for op in seg:
            for t in op.inputs:
                var = self.var_of(t)
                if var is not None:
                    uses.append((var, op))
        tensors: dict[str, str] = {}
        stats: dict[str, tf.Tensor] = {}
        native: dict[str, Any] = {}
        if fused:
            kind, epsilon, config_extra = self._fused(fused, tensors, stats, native)
        else:
            kind, epsilon, config_extra = self._moments(seg, block, roots, means, inp,
                                                        uses, tensors, stats, native)
        # what use did not place: by name
        for var, _op in uses:
            if var in tensors.values():
                continue
            role = _NAME_ROLES.get(var.rpartition("/")[2])
            if role is not None and role not in tensors:
                tensors[role] = var
        config = {"epsilon": epsilon, "center": "beta" in tensors, "scale": "gamma" in tensors,
                  **config_extra, "native": native}
        variables = [tensors[r] for r in ("gamma", "beta", "moving_mean", "moving_variance")
                     if r in tensors]
        name = self._scope_name(variables) if variables else self._unique(seg[-1].name)
        order = ("gamma", "beta", "moving_mean", "moving_variance")
        ordered = {r: tensors[r] for r in order if r in tensors}
        layer = self._add(kind, name, config, ordered, inp, seg[-1].outputs[0])
        layer.stats = stats
        layer.named_by_op = not variables
        self.done.update(seg)
        return True

    def _block_input(self, seg: list[tf.Operation]) -> tf.Tensor | None:
        block = set(seg)
        for op in seg:
            for t in op.inputs:
                if t.op in self.path and t.op not in block:
                    return t
        return None

    def _fused(self, fused, tensors, stats, native):
        eps = {_tidy(float(op.get_attr("epsilon"))) for op in fused}
        native.update(op=fused[0].type, epsilon=sorted(eps))
        training_ops = []
        for op in fused:
            fmt = op.get_attr("data_format").decode()
            if fmt != "NHWC":
                raise ConfigError(f"{op.name}: fused_batch_norm with data_format {fmt!r}; "
                                  "the TF1 adapter reads NHWC graphs.")
            for role, i in (("gamma", 1), ("beta", 2)):
                var = self.var_of(op.inputs[i])
                if var is not None:
                    tensors.setdefault(role, var)
            factor = float(op.get_attr("exponential_avg_factor")) \
                if "exponential_avg_factor" in [a.name for a in op.op_def.attr] else 1.0
            if op.get_attr("is_training"):
                training_ops.append(op)
                if factor != 1.0:
                    native["exponential_avg_factor"] = factor
            if not op.get_attr("is_training") or factor != 1.0:
                for role, i in (("moving_mean", 3), ("moving_variance", 4)):
                    var = self.var_of(op.inputs[i])
                    if var is not None:
                        tensors.setdefault(role, var)
        if training_ops:
            stats["mean"] = [op.outputs[1] for op in training_ops]
            stats["variance"] = [op.outputs[2] for op in training_ops]
            if "exponential_avg_factor" in native:
                stats["momentum"] = 1.0 - native["exponential_avg_factor"]
        extra = {"moving_variance": "unbiased" if training_ops else "biased",
                 "momentum": None}
        native["is_training"] = sorted({bool(op.get_attr("is_training")) for op in fused})
        return "batch_norm", (min(eps) if eps else None), extra

    def _moments(self, seg, block, roots, means, inp, uses, tensors, stats, native):
        rank = inp.shape.rank
        mean_op = means[0]
        axes = tf.get_static_value(mean_op.inputs[1])
        if axes is None or rank is None:
            raise ConfigError(f"{mean_op.name}: the moments' axes or the input's rank are not "
                              "static; give tf.nn.moments constant axes.")
        axes = sorted({int(a) % rank for a in np.atleast_1d(axes)})
        if axes == [rank - 1]:
            kind = "layer_norm"
        elif axes == list(range(rank - 1)):
            kind = "batch_norm"
        else:
            raise ConfigError(f"{mean_op.name}: normalisation over axes {axes} of a rank-{rank} "
                              "tensor; the adapter reads batch norm (every axis but the "
                              f"last: {list(range(rank - 1))}) and layer norm (the last "
                              f"axis: [{rank - 1}]).")
        root = roots[0]
        # the variance side: the block's ops that feed the Rsqrt/Sqrt
        var_side, stack = set(), [root]
        while stack:
            op = stack.pop()
            if op in var_side:
                continue
            var_side.add(op)
            stack.extend(t.op for t in op.inputs if t.op in block)
        epsilon = None
        src = root.inputs[0].op
        if src.type in ("Add", "AddV2"):
            for t in src.inputs:
                c = self.const(t)
                if c is not None:
                    epsilon = c
        variance = [op for op in seg if op.type == "Mean" and op is not mean_op
                    and op in var_side]
        stats["mean"] = [mean_op.outputs[0]]
        if variance:
            stats["variance"] = [variance[0].outputs[0]]
        for var, op in uses:
            if var in tensors.values():
                continue
            if var in self.h.trainable:
                role = "gamma" if op.type == "Mul" else \
                    "beta" if op.type in ("Add", "AddV2", "Sub", "BiasAdd") else None
            else:
                role = "moving_variance" if op in var_side else "moving_mean"
            if role is not None and role not in tensors:
                tensors[role] = var
        native.update(op="tf.nn.moments", axes=axes, root=root.type)
        extra = {"moving_variance": "biased", "momentum": None} if kind == "batch_norm" else {}
        return kind, epsilon, extra

    def _moving_statistics(self) -> None:
        """Moving variables and the momentum from the user's assign ops (module docstring)."""
        norms = [layer for layer in self.layers
                 if layer.found.kind == "batch_norm" and layer.stats]
        if not norms:
            return
        in_updates = _closure(self.h.update_ops)       # what running UPDATE_OPS runs
        in_forward = _closure([self.h.output.op])      # what computing the output runs
        for op in self.h.assigns:
            target = self.var_of(op.inputs[0])
            if target is None or target in self.h.trainable:
                continue
            value_anc = self.ancestors([op.inputs[1]])
            for layer in norms:
                f = layer.found
                if any(t in value_anc for t in layer.stats.get("variance", ())):
                    role = "moving_variance"
                elif any(t in value_anc for t in layer.stats.get("mean", ())):
                    role = "moving_mean"
                else:
                    continue
                if f.tensors.get(role, target) != target:
                    continue
                f.tensors[role] = target
                self.used[target] = role
                momentum = layer.stats.get("momentum")
                if momentum is None:
                    momentum = self._momentum(op, target)
                if momentum is not None and f.config.get("momentum") is None:
                    f.config["momentum"] = momentum
                # "never": training will not move it (neither in UPDATE_OPS nor a control
                # dependency of the forward pass), the TF1 bug tf1_compat.layers measures
                run = "UPDATE_OPS" if op in in_updates else \
                    "forward pass" if op in in_forward else "never"
                f.config["native"].setdefault("updates", {})[role] = {"op": op.name,
                                                                     "run": run}
                if role == "moving_variance" and f.config["native"]["op"] == "tf.nn.moments":
                    batch_anc = self.ancestors(layer.stats.get("variance", ()))
                    if any(t.op.type in ("Shape", "Size", "ShapeN")
                           for t in value_anc - batch_anc):
                        f.config["moving_variance"] = "unbiased"
        for layer in norms:
            layer.found.tensors = {r: layer.found.tensors[r] for r in
                                   ("gamma", "beta", "moving_mean", "moving_variance")
                                   if r in layer.found.tensors}

    def _momentum(self, assign: tf.Operation, target: str) -> float | None:
        """decay of `moving * decay + batch * (1 - decay)` or 1 - c of
        `assign_sub(moving, (moving - batch) * c)`."""
        sub = assign.type in ("AssignSubVariableOp", "AssignSub")
        frontier, seen = [assign.inputs[1]], set()
        for _ in range(6):
            nxt = []
            for t in frontier:
                if t in seen:
                    continue
                seen.add(t)
                op = t.op
                if op.type == "Mul":
                    for i, j in ((0, 1), (1, 0)):
                        c = self.const(op.inputs[j])
                        if c is None:
                            continue
                        a = op.inputs[i]
                        if not sub and self.var_of(a) == target:
                            return c
                        if sub and a.op.type == "Sub" and self.var_of(a.op.inputs[0]) == target:
                            return _tidy(1.0 - c)
                nxt.extend(op.inputs)
            frontier = nxt
        return None


# ----------------------------------------------------------------------------- running
def _check_X(handle: OwnGraph, X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim < 1 or tuple(X.shape[1:]) != handle.input_shape:
        raise DataError(f"X has samples of shape {tuple(X.shape[1:])}; the model was prepared "
                        f"for {handle.input_shape}.")
    if handle.x.dtype.is_integer:
        return X.astype(np.int32)
    return X.astype(handle.dtype)


def predict(handle: OwnGraph, X: np.ndarray) -> np.ndarray:
    """The output on X in inference mode (training False: moving statistics, no dropout)."""
    return np.asarray(handle.session.run(handle.output, feed_dict={handle.x: _check_X(handle, X)}))


def layer_outputs(handle: OwnGraph, X: np.ndarray, names: Iterable[str], training: bool
                  ) -> dict[str, np.ndarray]:
    """The output of each named layer (`Found.name` of `describe`) on X: a dense or conv
    layer's after its bias add, a normalisation's after its beta. Dropout stays off (the
    identity) in both modes, so training mode differs from inference only in the
    normalisations' statistics."""
    reading = _read(handle)
    by_name = {layer.found.name: layer.output for layer in reading.layers}
    names = list(names)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"unknown layer {unknown[0]!r}; the TF1 graph's layers are: "
                          f"{', '.join(by_name)}.")
    fetch = {n: by_name[n] for n in names}
    feed = {handle.x: _check_X(handle, X), handle.training: bool(training)}
    try:
        values = handle.session.run(fetch, feed_dict=feed)
    except tf.errors.InvalidArgumentError as e:
        raise ConfigError(f"a layer's output is not computed with training={bool(training)} "
                          f"(it sits in a tf.cond branch): {e.message.splitlines()[0]}") from e
    return {n: np.asarray(values[n]) for n in names}


# ----------------------------------------------------------------------------- training
def _labels(handle: OwnGraph, kind: str, y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y)
    if len(y) != n:
        raise DataError(f"y has {len(y)} rows but X has {n}; give one target per sample.")
    if kind == "crossentropy":
        flat = y.reshape(n, -1)
        if flat.shape[1] != 1 or not np.all(np.isfinite(flat)) or \
                not np.all(flat == np.round(flat)):
            raise DataError("crossentropy needs one integer class label per sample (N,); "
                            "give class indices, not one-hot rows.")
        return flat.reshape(-1).astype(np.int64)
    if handle.output.shape.rank is None:
        return y.astype(handle.dtype)
    dims = handle.output.shape.as_list()[1:]
    if any(d is None for d in dims):
        return y.astype(handle.dtype)
    size = int(np.prod(dims)) if dims else 1
    if y.size != n * size:
        raise DataError(f"y has {y.size // max(n, 1)} value(s) per sample; the model outputs "
                        f"{size}.")
    return y.reshape((n, *dims)).astype(handle.dtype)


def _loss(handle: OwnGraph, kind: str, native: Any, out: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(labels placeholder, mean loss). The idiomatic losses are the means
    `tf.compat.v1.losses.*` computes with their default weights (the zoo's own TF1 ops,
    `tf1_compat.model`, which keep nothing in the LOSSES collection)."""
    if kind not in _LOSS_KINDS:
        raise ConfigError(f"unknown loss kind {kind!r}; use one of {', '.join(_LOSS_KINDS)}.")
    if kind == "crossentropy":
        y = tf1.placeholder(tf.int64, (None,), name="labels")
    else:
        y = tf1.placeholder(out.dtype, out.shape, name="targets")
    if native is not None:
        if not callable(native):
            raise ConfigError("a native TF1 loss is a callable (labels, outputs) -> scalar "
                              f"tensor; got {type(native).__name__}.")
        loss = tf.convert_to_tensor(native(y, out))
    elif kind == "crossentropy":
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=out))
    elif kind == "binary_crossentropy":
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=out))
    else:
        loss = tf.reduce_mean(tf.square(out - y))
    if loss.shape.rank not in (0, None) or not loss.dtype.is_floating:
        raise ConfigError(f"the loss must be a float scalar; got a {loss.dtype.name} tensor of "
                          f"shape {loss.shape}.")
    return y, loss


def _native_optimizer(handle: OwnGraph, opt: Any) -> tf1.train.Optimizer:
    if not isinstance(opt, tf1.train.Optimizer):
        if not callable(opt):
            raise ConfigError("a native TF1 optimizer is a tf.compat.v1.train.Optimizer or a "
                              f"zero-argument factory of one; got {type(opt).__name__}.")
        opt = opt()  # inside the handle's graph (the caller's `with graph.as_default()`)
        if not isinstance(opt, tf1.train.Optimizer):
            raise ConfigError("the optimizer factory must return a "
                              f"tf.compat.v1.train.Optimizer; it returned {type(opt).__name__}.")
    for key, value in vars(opt).items():
        foreign = isinstance(value, (tf.Tensor, tf.Variable)) \
            and getattr(value, "graph", handle.graph) is not handle.graph
        # (the `_t` / `_tensor` attributes are TF1's per-minimize copies, made afresh)
        if foreign and not key.endswith(("_tensor", "_t")):
            raise ConfigError(f"the TF1 optimizer's {key.lstrip('_')} is a tensor of another "
                              "graph; pass Python numbers, or a zero-argument factory "
                              "(lambda: tf.compat.v1.train.AdamOptimizer(...)) that the "
                              "adapter calls inside the model's graph.")
    return opt


def _densify(grad):
    """An embedding's IndexedSlices gradient as a dense tensor (`tf1_compat.train._dense`)."""
    return tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices) else grad


def _train_ops(handle: OwnGraph, plan: TrainPlan) -> _TrainOps:
    frozen = tuple(sorted(handle.frozen | set(plan.frozen)))
    opt = plan.optimizer
    key = (plan.loss.kind, id(plan.loss.native) if plan.loss.native is not None else None,
           ("native", id(opt.native)) if opt.native is not None else ("spec", repr(opt.spec)),
           frozen)
    if key in handle._train:
        return handle._train[key]
    graph = handle.graph
    with graph.as_default():
        before = {v.name for v in tf1.global_variables() + tf1.local_variables()}
        with tf1.name_scope("own_train"):
            y, loss = _loss(handle, plan.loss.kind, plan.loss.native, handle.output)
            if opt.native is not None:
                optimizer = _native_optimizer(handle, opt.native)
                translated = False
            elif opt.spec is not None:
                optimizer = make_optimizer(opt.spec, dtype=handle.dtype)
                translated = True
            else:
                raise ConfigError("the plan has no optimizer: give OwnOptimizer(spec=...) or "
                                  "OwnOptimizer(native=...).")
        var_list = [handle.variables[n] for n in handle.variables
                    if n in handle.trainable and n not in frozen]
        if not var_list:
            raise ConfigError("every trainable variable is frozen; nothing to train.")
        updates = [_as_op(u) for u in graph.get_collection(tf1.GraphKeys.UPDATE_OPS)]
        try:
            with tf.control_dependencies(updates):
                if translated:
                    grads = optimizer.compute_gradients(loss, var_list=var_list)
                    train_op = optimizer.apply_gradients([(_densify(g), v) for g, v in grads
                                                          if g is not None])
                else:
                    train_op = optimizer.minimize(loss, var_list=var_list)
        except ValueError as e:
            raise ConfigError(f"the TF1 optimizer could not be applied to the model's graph: "
                              f"{e}. Create it inside the graph: pass a zero-argument factory "
                              "(lambda: tf.compat.v1.train.AdamOptimizer(...)).") from e
        new = [v for v in tf1.global_variables() + tf1.local_variables()
               if v.name not in before]
        init = tf1.variables_initializer(new)
    ops = _TrainOps(y=y, loss=loss, train_op=train_op, optimizer=optimizer, var_list=var_list,
                    init=init, translated=translated)
    handle._train[key] = ops
    return ops


def _backup(handle: OwnGraph):
    """(keep, restore, backups): copies of every variable taken before each step, because
    TF1 applies the update in the run that computes the loss; after a non-finite loss the
    variables go back to the copy (the weights that step started from), as the zoo's loops
    return them."""
    if handle._backup is None:
        with handle.graph.as_default(), tf1.name_scope("own_backup"):
            backups = {n: tf1.Variable(tf.zeros(v.shape, v.dtype.base_dtype), trainable=False,
                                       collections=[], name=n.replace("/", "_"))
                       for n, v in handle.variables.items()}
            keep = tf.group(*[backups[n].assign(v.read_value())
                              for n, v in handle.variables.items()])
            restore = tf.group(*[v.assign(backups[n].read_value())
                                 for n, v in handle.variables.items()])
            init = tf.group(*[b.initializer for b in backups.values()])
        handle.session.run(init)
        handle._backup = (keep, restore, backups)
    return handle._backup


def train(handle: OwnGraph, plan: TrainPlan, X: np.ndarray, y: np.ndarray,
          progress: Progress | None = None) -> OwnHistory:
    """Train the user's graph on exactly `plan.batches` (module docstring): one
    `session.run([loss, train_op])` per batch with `training` fed True (and the native
    dropout switch with `plan.dropout == "native"`), the loss fetched in the run that
    updates (its value before the update); the weights recorded after every
    `plan.record_every`-th global step; stops at the first non-finite loss with the weights
    that step started from."""
    if plan.dtype != handle.dtype:
        raise ConfigError(f"the plan trains in {plan.dtype} but the model was prepared in "
                          f"{handle.dtype}; prepare it with dtype={plan.dtype!r}.")
    if plan.dropout not in ("off", "native"):
        raise ConfigError(f"plan.dropout must be 'off' or 'native', got {plan.dropout!r}.")
    every = plan.record_every
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 0:
        raise ConfigError(f"record_every must be an integer >= 0, got {every!r}.")
    unknown = [n for n in plan.frozen if n not in handle.variables]
    if unknown:
        raise ConfigError(f"cannot freeze unknown TF1 variable(s) {', '.join(unknown)}.")
    Xd = _check_X(handle, X)
    yd = _labels(handle, plan.loss.kind, y, len(Xd))
    for e, epoch in enumerate(plan.batches):
        for idx in epoch:
            idx = np.asarray(idx)
            if idx.size and (idx.min() < 0 or idx.max() >= len(Xd)):
                raise DataError(f"epoch {e}: batch indices outside [0, {len(Xd)}).")
    ops = _train_ops(handle, plan)
    keep, restore, _ = _backup(handle)
    sess = handle.session
    sess.run(ops.init)  # the optimizer's slots start afresh for every train call
    if ops.translated:
        after_init(sess, ops.optimizer, ops.var_list)
    native = plan.dropout == "native"
    losses: list[float] = []
    snaps: list[dict[str, np.ndarray]] = []
    seconds: list[float] = []
    stopped: int | None = None
    for epoch, batches in enumerate(plan.batches):
        t0 = time.perf_counter()
        for step, idx in enumerate(batches):
            idx = np.asarray(idx, dtype=np.int64)
            feed = {handle.x: Xd[idx], ops.y: yd[idx], handle.training: True,
                    handle.native_dropout: native}
            sess.run(keep)
            loss, _ = sess.run([ops.loss, ops.train_op], feed_dict=feed)
            loss = float(loss)
            losses.append(loss)
            if progress is not None:
                progress(epoch, step, loss)
            if not math.isfinite(loss):
                stopped = len(losses) - 1
                break
            if records(every, len(losses) - 1):
                snaps.append(get_weights(handle))
        seconds.append(time.perf_counter() - t0)
        if stopped is not None:
            break
    if stopped is not None:
        sess.run(restore)
    return OwnHistory(losses=np.asarray(losses, dtype=np.float64), step_weights=snaps,
                      weights=get_weights(handle), epoch_seconds=seconds, stopped_at=stopped)


# ----------------------------------------------------------------------------- audit
def _value(v: Any) -> float | None:
    if v is None:
        return None
    if callable(v) and not isinstance(v, (tf.Tensor, tf.Variable)):
        v = v()
    if isinstance(v, (tf.Tensor, tf.Variable)):
        v = tf.get_static_value(v)
        if v is None:
            return None
    return float(np.asarray(v).reshape(()))


def audit_optimizer(optimizer: Any) -> OptimizerSettings:
    """A `tf.compat.v1.train` optimizer (or a zero-argument factory, called in a scratch
    graph) in canonical terms. RMSProp: TF1 adds epsilon to the mean square inside the square
    root and starts the mean square at ONE (`initial_accumulator` 1.0; Keras and torch start
    at zero); Adam adds it to sqrt(v) outside, with TF1's bias correction folded into the
    learning rate, as Keras does ("outside"); Adagrad has no epsilon."""
    if not isinstance(optimizer, tf1.train.Optimizer):
        if not callable(optimizer):
            raise ConfigError("audit a tf.compat.v1.train.Optimizer or a zero-argument factory "
                              f"of one; got {type(optimizer).__name__}.")
        with tf.Graph().as_default():
            optimizer = optimizer()
        if not isinstance(optimizer, tf1.train.Optimizer):
            raise ConfigError("the optimizer factory must return a "
                              "tf.compat.v1.train.Optimizer; it returned "
                              f"{type(optimizer).__name__}.")
    cls = type(optimizer).__name__
    a = vars(optimizer)
    native = {k.lstrip("_"): (_value(v) if not isinstance(v, (bool, str)) else v)
              for k, v in a.items()
              if k.lstrip("_") in ("learning_rate", "lr", "momentum", "use_nesterov", "decay",
                                   "epsilon", "centered", "beta1", "beta2",
                                   "initial_accumulator_value")}
    native["class"] = cls
    lr = _value(a.get("_learning_rate", a.get("_lr")))
    if cls == "GradientDescentOptimizer":
        return OptimizerSettings("sgd", lr, native=native)
    if cls == "MomentumOptimizer":
        nesterov = bool(a["_use_nesterov"])
        return OptimizerSettings("nesterov" if nesterov else "momentum", lr,
                                 momentum=_value(a["_momentum"]), nesterov=nesterov,
                                 native=native)
    if cls == "RMSPropOptimizer":
        centered = bool(a["_centered"])
        return OptimizerSettings("centered_rmsprop" if centered else "rmsprop", lr,
                                 momentum=_value(a["_momentum"]), rho=_value(a["_decay"]),
                                 epsilon=_value(a["_epsilon"]), epsilon_placement="inside",
                                 initial_accumulator=1.0, centered=centered, native=native)
    if cls == "AdamOptimizer":
        return OptimizerSettings("adam", lr, beta_1=_value(a["_beta1"]),
                                 beta_2=_value(a["_beta2"]), epsilon=_value(a["_epsilon"]),
                                 epsilon_placement="outside", native=native)
    if cls == "AdagradOptimizer":
        return OptimizerSettings("adagrad", lr,
                                 initial_accumulator=_value(a["_initial_accumulator_value"]),
                                 native=native)
    return OptimizerSettings(cls, lr if lr is not None else float("nan"), native=native)
