"""What a framework adapter reports about a user's own model (`zoo.own`, docs/own-models.md).

`zoo.compare_models` compares models the zoo did not write: a user's `keras.Model`, their
`nn.Module`, their TF1 graph-building function. Each framework package has an `own.py`
adapter (`keras_models.own`, `torch_models.own`, `tf1_compat.own`) that reads such a model
into the framework-free records below, and trains, predicts and reads layer outputs of it.
`zoo.own` matches the records across frameworks, audits their settings, maps the weights
through the zoo's weight tables (`zoo.layers`) and builds the report. This module imports
no framework, so every adapter and the core share it.

## The adapter protocol (the same functions in every `<package>/own.py`)

    prepare(model, X, dtype) -> handle
        A private copy of the user's model in `dtype` that the other functions take
        (torch: a deep copy, `.double()` for float64; Keras: `clone_model`; TF1: the graph
        built by calling the user's function on a placeholder). `X` is a small batch in the
        layout the model takes. The user's object is never modified.
    describe(handle, X) -> Description
        Every layer in the order the forward pass runs them (torch: forward hooks on leaf
        modules; Keras: `model.layers` of the built model; TF1: the ops that read each
        variable), with canonical-convention settings (`Found.config`) and the role of each
        native tensor (`Found.tensors`).
    get_weights(handle) -> {native name: array}
        Every tensor (parameters and state such as BatchNorm moving statistics), native
        names and layouts, numpy copies.
    set_weights(handle, {native name: array}) -> None
        Exactly the given tensors (a partial dict is allowed; unknown names raise).
    freeze(handle, names) -> None
        Stop training these native tensors (torch LSTM's bias_hh, see `zoo.own`).
    train(handle, plan: TrainPlan, X, y, progress=None) -> OwnHistory
        The user's model trained as its own framework trains it, on exactly `plan.batches`,
        with `plan.loss` and `plan.optimizer` (`OwnLoss`, `OwnOptimizer`), in training mode;
        per-step losses (before each update) and, every `plan.record_every` steps, the
        native weights.
    predict(handle, X) -> array
        Outputs in inference mode (BatchNorm moving statistics, no dropout).
    layer_outputs(handle, X, names, training) -> {layer name: array}
        The output of each named layer (`Found.name`) on X, in the framework's own layout
        (torch images NCHW: the core transposes), training mode or not.
    audit_optimizer(optimizer) -> OptimizerSettings
        A native optimizer object (or torch: a factory) read into canonical settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["KINDS", "OUTPUTS", "Description", "Found", "OptimizerSettings", "OwnHistory",
           "OwnLoss", "OwnOptimizer", "TrainPlan"]

#: Layer kinds an adapter reports. Weighted kinds carry tensors; the others are read for the
#: audit and the layer-by-layer comparison. "other" is a parameter-free layer the zoo does not
#: know (reported by its class name in `config["class"]`); a weighted layer of an unknown kind
#: is an error in the adapter (`UnsupportedLayer`).
KINDS = ("dense", "conv2d", "batch_norm", "layer_norm", "embedding", "lstm", "gru",
         "dropout", "activation", "flatten", "max_pool2d", "avg_pool2d", "reshape", "permute",
         "other")
WEIGHTED = ("dense", "conv2d", "batch_norm", "layer_norm", "embedding", "lstm", "gru")
#: What a model's final values are: "logits" (no final activation), "probabilities" (a final
#: softmax), "log_probabilities" (a final log-softmax), "sigmoid" (a final sigmoid) or
#: "values" (regression).
OUTPUTS = ("logits", "probabilities", "log_probabilities", "sigmoid", "values")


@dataclass
class Found:
    """One layer of a user's model, in the order the forward pass runs it.

    name: the native layer or module name ("dense_1", "features.0", "fc1"), for messages
    and `layer_outputs`.
    kind: one of KINDS.
    config: settings in the zoo's canonical conventions, plus `native` (the same settings as
    the framework spells them, for messages). Keys by kind (only those that apply):
      dense: units, use_bias, activation ("linear" unless the layer fuses one, as Keras does)
      conv2d: filters, kernel_size (kh, kw), strides (sh, sw), padding ("valid", "same" or
        [[top, bottom], [left, right]]), dilation (dh, dw), groups, use_bias, activation
      batch_norm: momentum (Keras convention: the weight of the OLD moving value; torch's
        momentum m is reported as 1 - m), epsilon, center, scale, moving_variance ("biased"
        Keras 3, "unbiased" torch)
      layer_norm: epsilon, center, scale
      embedding: vocab, dim
      lstm / gru: units, return_sequences, use_bias, activation, recurrent_activation;
        gru: reset_after; torch: batch_first, num_layers, bidirectional
      dropout: rate
      activation: function ("relu", "sigmoid", "tanh", "softmax", "log_softmax", "linear",
        or the native name of another)
      max_pool2d / avg_pool2d: pool_size, strides, padding
      other: class
    tensors: role -> native tensor name (the key in `get_weights`). Roles are the zoo's
    native suffixes for that framework (`zoo.layers` weight tables): Keras and TF1 "kernel",
    "bias", "gamma", "beta", "moving_mean", "moving_variance", "embeddings",
    "recurrent_kernel"; torch "weight", "bias", "running_mean", "running_var",
    "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0".
    input_shape / output_shape: per sample, as the layer sees them (torch images C, H, W).
    """

    name: str
    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, str] = field(default_factory=dict)
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()

    @property
    def weighted(self) -> bool:
        return self.kind in WEIGHTED


@dataclass
class Description:
    """A user's model as its adapter read it."""

    framework: str
    layers: list[Found]
    #: what the model's final values are (one of OUTPUTS)
    output: str
    #: per-sample input shape the model was described with (torch images: C, H, W)
    input_shape: tuple[int, ...]
    #: "nhwc" or "nchw" for image inputs, None otherwise
    image_layout: str | None = None
    #: native names of tensors that are not trained (moving statistics, frozen tensors)
    state: tuple[str, ...] = ()

    def weighted(self) -> list[Found]:
        return [f for f in self.layers if f.weighted]


@dataclass(frozen=True)
class OwnLoss:
    """The loss each framework trains with, as its users write it.

    kind: "crossentropy" (classes; integer labels), "binary_crossentropy" (one output,
    labels 0/1) or "mse" (regression).
    native: the user's own loss object for this framework, or None for the idiomatic one:
      keras: `sparse_categorical_crossentropy` with from_logits = (output == "logits"),
             `binary_crossentropy`, `mean_squared_error`;
      torch: `nn.CrossEntropyLoss` (on whatever the model outputs, as torch users write it),
             `nn.BCEWithLogitsLoss`, `nn.MSELoss`;
      tf1:   `tf.compat.v1.losses.sparse_softmax_cross_entropy` on the output, `sigmoid_
             cross_entropy`, `mean_squared_error`.
    """

    kind: str = "crossentropy"
    native: Any = None


@dataclass(frozen=True)
class OptimizerSettings:
    """An optimizer's settings in canonical terms, for the audit: name (one of
    `zoo.optimizers.OPTIMIZERS`, or the native class name when it is none of them), lr,
    momentum, nesterov, rho (RMSprop decay), beta_1, beta_2, epsilon, epsilon_placement
    ("inside" the square root, "outside", "outside_hat": added to sqrt(v_hat)), initial
    accumulator, weight_decay, centered; `native` the settings as the framework spells them."""

    name: str
    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    rho: float | None = None
    beta_1: float | None = None
    beta_2: float | None = None
    epsilon: float | None = None
    epsilon_placement: str | None = None
    initial_accumulator: float | None = None
    weight_decay: float = 0.0
    centered: bool = False
    native: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OwnOptimizer:
    """The optimizer a framework trains with: `spec` (a `zoo.optimizers.OptimizerSpec`, built
    by the framework's `optimizers.make_optimizer`, translated so that the frameworks agree)
    or `native` (the user's own: a Keras optimizer, a TF1 `tf.compat.v1.train.Optimizer`, or
    for torch a callable params -> torch.optim.Optimizer)."""

    spec: Any = None
    native: Any = None


@dataclass(frozen=True)
class TrainPlan:
    """Everything an adapter's `train` needs besides the data."""

    loss: OwnLoss
    optimizer: OwnOptimizer
    #: per epoch, the index arrays of its batches, in order (`zoo.data.batch_order`)
    batches: list[list[np.ndarray]]
    dtype: str = "float32"
    #: record the native weights after every k-th global step (0: only the final weights)
    record_every: int = 1
    #: "off": every dropout layer is the identity; "native": the framework's own masks
    dropout: str = "off"
    #: native tensor names never to train (`freeze`)
    frozen: tuple[str, ...] = ()
    #: "biased": keep every BatchNorm's moving variance in Keras's convention (an adapter
    #: with CORRECTS_MOVING_VARIANCE = True corrects its framework's unbiased update after
    #: each training step, `zoo.layers.corrected_moving_variance`); None: as the framework does
    moving_variance: str | None = None


@dataclass
class OwnHistory:
    """What an adapter's `train` returns: native names and layouts throughout."""

    losses: np.ndarray
    #: the native weights after global steps record_every-1, 2*record_every-1, ...
    step_weights: list[dict[str, np.ndarray]]
    weights: dict[str, np.ndarray]
    epoch_seconds: list[float]
    #: the global step whose loss was non-finite (training stopped there), or None
    stopped_at: int | None = None


#: progress(epoch, step, loss) as in the zoo's own training loops
Progress = Callable[[int, int, float], None]


class UnsupportedLayer(Exception):
    """An adapter met a layer with weights that the zoo cannot map (raised as a
    `zoo.errors.ConfigError` by the core, naming the layer)."""
