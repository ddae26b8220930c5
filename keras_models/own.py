"""A user's own Keras 3 model, read and trained for `zoo.compare_models` (the adapter protocol
of `zoo.own_types`; docs/own-models.md).

Idiom: the user's `keras.Sequential` or functional `keras.Model` (nested Sequential models
are walked into), cloned with `keras.models.clone_model` so the user's object is never
touched (in float64 every layer's dtype policy is switched by the clone), trained by the loop
Keras's own `fit` runs in its `train_step`: `model(x, training=True)`, the loss plus the
layers' own `model.losses` (kernel regularizers), the gradients of the trainable variables and
`optimizer.apply_gradients`, in one `tf.function` per step. `fit` itself is not used because
the comparison needs every step's loss and weights, which its callbacks cannot give exactly
(`keras_models.train` explains why).

What the adapter reports, layer by layer (`describe`): Keras's own settings in the zoo's
canonical conventions, which ARE Keras's (BatchNormalization's momentum is the weight of the
old moving value; kernels (in, out) and HWIO; images NHWC; the moving variance from the biased
batch variance). Tensor roles are the variables' own names (`kernel`, `bias`, `gamma`, ...),
native names their paths (`dense_1/kernel`, `lstm/lstm_cell/kernel`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from zoo.errors import ConfigError
from zoo.own_types import (
    Description,
    Found,
    OptimizerSettings,
    OwnHistory,
    TrainPlan,
    UnsupportedLayer,
)

__all__ = ["audit_optimizer", "describe", "freeze", "get_weights", "layer_outputs", "predict",
           "prepare", "set_weights", "train"]

FRAMEWORK = "keras"
#: The training loop hands the optimizer an Embedding's gradient dense: Keras 3's Adam,
#: RMSprop and Adagrad take the sparse gradient of a lookup slice by slice, so a row looked up
#: k times gets the sum of k squares in its second moment instead of the square of the sum
#: (docs/porting.md, "Adam on an embedding's sparse gradient"); the dense gradient is the
#: gradient of the equations and what torch and TF1 train with. `fit` does not do this.
DENSE_GRADIENTS = True
#: layer kinds as Keras calls them, for the audit's messages
CLASS_NAMES = {"dense": "Dense", "conv2d": "Conv2D", "batch_norm": "BatchNormalization",
               "layer_norm": "LayerNormalization", "embedding": "Embedding", "lstm": "LSTM",
               "gru": "GRU", "dropout": "Dropout"}


class OwnLayerError(UnsupportedLayer, ConfigError):
    """A layer of the user's model that the zoo cannot compare, whatever the input."""


@dataclass
class Handle:
    """The adapter's private copy of a user's model."""

    model: keras.Model
    dtype: str
    layers: list = field(default_factory=list)   # leaf layers in order
    frozen: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def _leaves(layers) -> list:
    out = []
    for layer in layers:
        if isinstance(layer, keras.Model) and hasattr(layer, "layers"):
            out.extend(_leaves(layer.layers))
        elif type(layer).__name__ == "InputLayer":
            continue
        else:
            out.append(layer)
    return out


def check_model(model: Any) -> str | None:
    """Why `model` is not a model this adapter reads (None if it is)."""
    if isinstance(model, keras.Model):
        return None
    return f"a {type(model).__name__}, not a keras.Model"


def prepare(model: Any, X: np.ndarray, dtype: str = "float32") -> Handle:
    """A clone of `model` in `dtype`, built on X's per-sample shape, with the user's weights."""
    if not isinstance(model, keras.Model):
        raise ConfigError(f"the keras model must be a keras.Model (a Sequential or functional "
                          f"model), got {type(model).__name__}.")
    if keras.backend.backend() != "tensorflow":
        raise ConfigError("compare_models runs Keras models on the TensorFlow backend; this "
                          f"process has KERAS_BACKEND={keras.backend.backend()}.")
    x = np.asarray(X[:2], dtype)
    if not model.built:
        model(np.asarray(X[:1], "float32"))

    def clone_layer(layer):
        cfg = layer.get_config()
        if dtype != "float32" and "dtype" in cfg:
            cfg["dtype"] = dtype
        return layer.__class__.from_config(cfg)

    try:
        clone = keras.models.clone_model(model, clone_function=clone_layer)
    except Exception as exc:  # subclassed models cannot be cloned
        raise ConfigError(f"the keras model cannot be cloned ({type(exc).__name__}: {exc}); "
                          "compare_models takes Sequential and functional Keras models "
                          "(a subclassed model: rebuild it as a functional model).") from None
    clone(x)
    clone.set_weights([np.asarray(w, dtype) for w in model.get_weights()])
    return Handle(clone, dtype, _leaves(clone.layers))


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _activation(cfg: dict) -> str:
    a = cfg.get("activation", "linear")
    if isinstance(a, dict):  # a serialised activation object
        a = a.get("config", {}).get("name") or a.get("class_name", "linear")
    return {"softmax": "softmax", "log_softmax": "log_softmax", None: "linear"}.get(a, a)


def _found(layer, in_shape, out_shape, _strip) -> Found:
    cls = type(layer).__name__
    cfg = layer.get_config()
    tensors = {v.name: _strip(v.path) for v in layer.weights}
    common = {"name": layer.name, "tensors": tensors, "input_shape": in_shape,
              "output_shape": out_shape}
    if cls == "Dense":
        return Found(kind="dense", config={"units": cfg["units"], "use_bias": cfg["use_bias"],
                                           "activation": _activation(cfg),
                                           "native": {"activation": _activation(cfg)}}, **common)
    if cls == "Conv2D":
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise OwnLayerError(f"layer {layer.name!r}: Conv2D with data_format="
                              f"{cfg['data_format']!r}; compare_models reads channels_last "
                              "(NHWC) Keras models.")
        return Found(kind="conv2d", config={
            "filters": cfg["filters"], "kernel_size": _pair(cfg["kernel_size"]),
            "strides": _pair(cfg["strides"]), "padding": cfg["padding"],
            "dilation": _pair(cfg["dilation_rate"]), "groups": cfg.get("groups", 1),
            "use_bias": cfg["use_bias"], "activation": _activation(cfg),
            "native": {"padding": cfg["padding"], "strides": cfg["strides"]}}, **common)
    if cls == "BatchNormalization":
        return Found(kind="batch_norm", config={
            "momentum": float(cfg["momentum"]), "epsilon": float(cfg["epsilon"]),
            "center": cfg["center"], "scale": cfg["scale"], "moving_variance": "biased",
            "native": {"momentum": cfg["momentum"], "epsilon": cfg["epsilon"]}}, **common)
    if cls == "LayerNormalization":
        return Found(kind="layer_norm", config={
            "epsilon": float(cfg["epsilon"]), "center": cfg["center"], "scale": cfg["scale"],
            "native": {"epsilon": cfg["epsilon"]}}, **common)
    if cls == "Embedding":
        return Found(kind="embedding", config={"vocab": cfg["input_dim"], "dim": cfg["output_dim"],
                                               "native": {}}, **common)
    if cls in ("LSTM", "GRU"):
        c = {"units": cfg["units"], "return_sequences": cfg["return_sequences"],
             "use_bias": cfg["use_bias"], "activation": _activation(cfg),
             "recurrent_activation": cfg.get("recurrent_activation", "sigmoid"),
             "native": {k: cfg.get(k) for k in ("return_sequences", "reset_after",
                                                "go_backwards", "stateful") if k in cfg}}
        if cls == "GRU":
            c["reset_after"] = cfg["reset_after"]
        if cfg.get("go_backwards") or cfg.get("stateful"):
            raise OwnLayerError(f"layer {layer.name!r}: a {cls} with go_backwards or stateful is "
                              "not supported by compare_models.")
        return Found(kind=cls.lower(), config=c, **common)
    if cls in ("Dropout", "SpatialDropout2D"):
        return Found(kind="dropout", config={"rate": float(cfg["rate"]),
                                             "native": {"rate": cfg["rate"]}}, **common)
    if cls in ("Activation", "ReLU", "Softmax"):
        fn = {"ReLU": "relu", "Softmax": "softmax"}.get(cls) or _activation(cfg)
        return Found(kind="activation", config={"function": fn, "native": {}}, **common)
    if cls == "Flatten":
        return Found(kind="flatten", config={"native": {}}, **common)
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        return Found(kind="max_pool2d" if cls.startswith("Max") else "avg_pool2d", config={
            "pool_size": _pair(cfg["pool_size"]),
            "strides": _pair(cfg["strides"] or cfg["pool_size"]), "padding": cfg["padding"],
            "native": {}}, **common)
    if cls in ("Reshape", "Permute"):
        return Found(kind=cls.lower(), config={"native": {}}, **common)
    if layer.weights:
        raise OwnLayerError(f"layer {layer.name!r} ({cls}) has weights the zoo cannot map; "
                          "compare_models maps Dense, Conv2D, BatchNormalization, "
                          "LayerNormalization, Embedding, LSTM and GRU (pass mapping=... for "
                          "others).")
    return Found(kind="other", config={"class": cls, "native": {}}, **common)


def _shape(t) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape[1:])


def describe(handle: Handle, X: np.ndarray) -> Description:
    """Every leaf layer in forward order, with its settings and tensors."""
    x = keras.ops.convert_to_tensor(np.asarray(X[:2], handle.dtype))
    found = []
    outputs = _run_layers(handle, x, [layer.name for layer in handle.layers], training=False)
    prev = _shape(x)
    for layer in handle.layers:
        out = outputs[layer.name]
        found.append(_found(layer, prev, tuple(out.shape[1:]),
                            lambda path: path[len(handle.model.name) + 1:]
                            if path.startswith(handle.model.name + "/") else path))
        prev = tuple(out.shape[1:])
    last = found[-1] if found else None
    act = (last.config.get("activation") if last and last.kind in ("dense", "conv2d")
           else last.config.get("function") if last and last.kind == "activation" else None)
    output = {"softmax": "probabilities", "log_softmax": "log_probabilities",
              "sigmoid": "sigmoid"}.get(act, "logits")
    state = tuple(_name(handle, v) for v in handle.model.non_trainable_weights)
    return Description(FRAMEWORK, found, output, _shape(x),
                       "nhwc" if np.asarray(X).ndim == 4 else None, state)


def _run_layers(handle: Handle, x, names: list[str], training: bool) -> dict[str, np.ndarray]:
    """Outputs of the named leaf layers: a linear chain is run layer by layer (what a
    Sequential model is); any other graph through a functional sub-model."""
    model = handle.model
    chain = all(isinstance(m, keras.Sequential) for m in [model]) or _is_chain(model)
    wanted = set(names)
    out: dict[str, np.ndarray] = {}
    if chain:
        h = x
        for layer in handle.layers:
            h = layer(h, training=training)
            if layer.name in wanted:
                out[layer.name] = np.asarray(keras.ops.convert_to_numpy(h))
        return out
    sub = keras.Model(model.inputs, [_layer(model, n).output for n in names])
    res = sub(x, training=training)
    res = res if isinstance(res, (list, tuple)) else [res]
    return {n: np.asarray(keras.ops.convert_to_numpy(r)) for n, r in zip(names, res, strict=True)}


def _layer(model, name):
    for layer in _leaves(model.layers):
        if layer.name == name:
            return layer
    raise ConfigError(f"no layer named {name!r} in the keras model.")


def _is_chain(model) -> bool:
    """Whether a functional model is a single chain (each layer feeding only the next)."""
    try:
        layers = [lay for lay in model.layers if type(lay).__name__ != "InputLayer"]
        return all(len(lay._inbound_nodes) == 1 for lay in layers) and \
            all(len(lay._inbound_nodes[0].input_tensors) == 1 for lay in layers) and \
            all(not isinstance(lay, keras.Model) or isinstance(lay, keras.Sequential)
                for lay in layers) and len(model.inputs) == 1 and len(model.outputs) == 1 \
            and _chained(layers)
    except Exception:
        return False


def _chained(layers) -> bool:
    for a, b in zip(layers, layers[1:], strict=False):
        src = b._inbound_nodes[0].input_tensors[0]
        if getattr(src, "_keras_history", None) is None or \
                src._keras_history.operation is not a:
            return False
    return True


def _name(handle: Handle, v) -> str:
    """A variable's native name: its path without the (cloned) model's own name, e.g.
    "dense_1/kernel", "lstm/lstm_cell/kernel"."""
    prefix = handle.model.name + "/"
    return v.path[len(prefix):] if v.path.startswith(prefix) else v.path


def _variables(handle: Handle) -> dict[str, Any]:
    return {_name(handle, v): v for v in handle.model.weights}


def get_weights(handle: Handle) -> dict[str, np.ndarray]:
    return {k: np.array(v.numpy()) for k, v in _variables(handle).items()}


def set_weights(handle: Handle, weights: dict[str, np.ndarray]) -> None:
    variables = _variables(handle)
    unknown = sorted(set(weights) - set(variables))
    if unknown:
        raise ConfigError(f"keras model has no weight {', '.join(unknown)}; its weights are "
                          f"{', '.join(variables)}.")
    for k, a in weights.items():
        v = variables[k]
        a = np.asarray(a)
        if tuple(a.shape) != tuple(v.shape):
            raise ConfigError(f"keras weight {k}: shape {tuple(a.shape)} given, the model's is "
                              f"{tuple(v.shape)}.")
        v.assign(a.astype(handle.dtype))


def freeze(handle: Handle, names) -> None:
    handle.frozen |= set(names)


def _loss(plan: TrainPlan, output: str):
    native = plan.loss.native
    if native is not None:
        return keras.losses.get(native) if isinstance(native, str) else native
    kind = plan.loss.kind
    if kind == "crossentropy":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=output == "logits")
    if kind == "binary_crossentropy":
        return keras.losses.BinaryCrossentropy(from_logits=output != "sigmoid")
    if kind == "mse":
        return keras.losses.MeanSquaredError()
    raise ConfigError(f"unknown loss kind {kind!r}.")


def _targets(loss, y: np.ndarray, n_out: int, dtype: str) -> np.ndarray:
    name = getattr(loss, "name", "") or getattr(loss, "__name__", "")
    if "sparse" in name:
        return np.asarray(y).reshape(-1).astype(np.int64)
    if "categorical" in name:
        return np.eye(n_out, dtype=dtype)[np.asarray(y).reshape(-1).astype(np.int64)]
    return np.asarray(y, dtype).reshape(len(y), -1)


def train(handle: Handle, plan: TrainPlan, X: np.ndarray, y: np.ndarray,
          progress=None) -> OwnHistory:
    """See the module docstring. Keras's loss objects take `keras.config.floatx()` when they
    are created and when they compute, so a float64 run trains under floatx float64 (else
    the loss, and with it every gradient, would be rounded to float32)."""
    from keras_models.train import floatx

    with floatx(plan.dtype):
        return _train(handle, plan, X, y, progress)


def _train(handle: Handle, plan: TrainPlan, X: np.ndarray, y: np.ndarray,
           progress=None) -> OwnHistory:
    import tensorflow as tf

    from keras_models.optimizers import make_optimizer
    from zoo.specs import records

    model, dt = handle.model, plan.dtype
    if plan.dropout == "off":
        for layer in handle.layers:
            if hasattr(layer, "rate") and type(layer).__name__ in ("Dropout", "SpatialDropout2D"):
                layer.rate = 0.0
    desc_out = describe(handle, X[:2]).output
    loss_fn = _loss(plan, desc_out)
    n_out = int(model(np.asarray(X[:1], dt)).shape[-1])
    targets = _targets(loss_fn, y, n_out, dt)
    frozen = handle.frozen | set(plan.frozen)
    variables = [v for v in model.trainable_variables if _name(handle, v) not in frozen]
    opt = plan.optimizer.native if plan.optimizer.native is not None else \
        make_optimizer(plan.optimizer.spec, dt)
    Xt = tf.constant(np.asarray(X, dt))
    Yt = tf.constant(targets)

    @tf.function
    def step(idx):
        xb, yb = tf.gather(Xt, idx), tf.gather(Yt, idx)
        with tf.GradientTape() as tape:
            out = model(xb, training=True)
            loss = loss_fn(yb, out)
            if model.losses:
                loss = loss + tf.add_n([tf.cast(v, loss.dtype) for v in model.losses])
        grads = tape.gradient(loss, variables)
        # an Embedding's sparse gradient, made dense (DENSE_GRADIENTS)
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                 for g in grads]
        opt.apply_gradients(zip(grads, variables, strict=True))
        return loss

    losses: list[float] = []
    steps: list[dict[str, np.ndarray]] = []
    seconds: list[float] = []
    stopped = None
    g = 0
    prev = get_weights(handle)   # restored if a step's loss is non-finite
    for e, batches in enumerate(plan.batches):
        t0 = time.perf_counter()
        for idx in batches:
            value = float(step(tf.constant(np.asarray(idx, np.int64))))
            losses.append(value)
            if not np.isfinite(value):
                stopped = g
                set_weights(handle, prev)
                break
            prev = get_weights(handle)
            if records(plan.record_every, g):
                steps.append(prev)
            if progress is not None:
                progress(e, g, value)
            g += 1
        seconds.append(time.perf_counter() - t0)
        if stopped is not None:
            break
    return OwnHistory(np.asarray(losses), steps, get_weights(handle), seconds, stopped)


def predict(handle: Handle, X: np.ndarray) -> np.ndarray:
    out = handle.model(np.asarray(X, handle.dtype), training=False)
    return np.asarray(keras.ops.convert_to_numpy(out))


def layer_outputs(handle: Handle, X: np.ndarray, names: list[str], training: bool
                  ) -> dict[str, np.ndarray]:
    x = keras.ops.convert_to_tensor(np.asarray(X, handle.dtype))
    return _run_layers(handle, x, list(names), training)


_EPS_PLACEMENT = {"Adam": "outside", "AdamW": "outside", "RMSprop": "inside",
                  "Adagrad": "inside", "Nadam": "outside", "Adamax": "outside"}


def audit_optimizer(native: Any) -> OptimizerSettings:
    """A Keras optimizer's settings in canonical terms."""
    if not isinstance(native, keras.optimizers.Optimizer):
        raise ConfigError(f"the keras optimizer must be a keras.optimizers.Optimizer, got "
                          f"{type(native).__name__}.")
    cfg = native.get_config()
    cls = type(native).__name__
    lr = float(keras.ops.convert_to_numpy(native.learning_rate))
    wd = float(cfg.get("weight_decay") or 0.0)
    base = {"lr": lr, "weight_decay": wd, "native": {k: v for k, v in cfg.items()
                                                     if not isinstance(v, dict)}}
    if cls == "SGD":
        m = float(cfg.get("momentum", 0.0))
        nest = bool(cfg.get("nesterov", False))
        return OptimizerSettings("nesterov" if nest and m else "momentum" if m else "sgd",
                                 momentum=m, nesterov=nest, **base)
    if cls == "RMSprop":
        return OptimizerSettings("centered_rmsprop" if cfg.get("centered") else "rmsprop",
                                 rho=float(cfg["rho"]), momentum=float(cfg.get("momentum", 0)),
                                 epsilon=float(cfg["epsilon"]), epsilon_placement="inside",
                                 centered=bool(cfg.get("centered")), **base)
    if cls in ("Adam", "AdamW"):
        return OptimizerSettings("adam" if cls == "Adam" else "adamw",
                                 beta_1=float(cfg["beta_1"]), beta_2=float(cfg["beta_2"]),
                                 epsilon=float(cfg["epsilon"]), epsilon_placement="outside",
                                 **base)
    if cls == "Adagrad":
        return OptimizerSettings("adagrad", epsilon=float(cfg["epsilon"]),
                                 epsilon_placement="inside",
                                 initial_accumulator=float(cfg["initial_accumulator_value"]),
                                 **base)
    return OptimizerSettings(cls, epsilon=cfg.get("epsilon"),
                             epsilon_placement=_EPS_PLACEMENT.get(cls), **base)
