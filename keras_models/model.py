"""Every model of the zoo in Keras 3, built from its canonical layer list (`spec.resolved`), with
its loss, its outputs and the canonical-weights edge.

One registered model class, `ZooModel` (`zoo>ZooModel`), builds every model: its layers are
`keras_models.layers.keras_layer` of each resolved layer, in order, and its config is the
`ModelSpec` dict (plus Keras's own name and dtype), so a `.keras` file holds the spec and
`keras.models.load_model(path, safe_mode=True)` rebuilds exactly that model from the zoo's
layer table (no lambda, no code deserialised). Why one subclassed `keras.Model` rather than a
`Sequential` for the models without dropout and a subclass for the others:
- `fit` must be able to hand the model a batch's shared dropout masks, so the model takes
  either `x` or `(x, mask_0, mask_1, ...)` (one mask per Dropout layer, shaped (batch, *that
  layer's input)), which a `Sequential` cannot; one class keeps one code path for every model
  in `train`, `predict`, checkpoints, `.keras` files and the MirroredStrategy run;
- the model carries its spec (`model.model_spec`), hence its weight table: `get_weights` and
  `set_weights` translate through the table (`zoo.layers.from_native` / `to_native`) for any
  model, including one just loaded from a file.
It stays idiomatic Keras: `compile`, `fit`, `predict`, `evaluate`, `model.save`, and the
layers are Keras's own (`model.layers` lists them by canonical name).

Two ways of dropping units, as Keras users expect:
- `model(x, training=...)`: `keras.layers.Dropout`, random only when `training` is True. `fit`
  passes True; `predict`/`evaluate` pass False; a direct call passes None, i.e. inference;
- `model((x, mask_0, ...))`: the shared precomputed masks of `zoo.specs.dropout_masks`, applied
  as h * (mask / (1 - rate)) whatever `training` says, so that Keras reproduces the numpy
  reference, TF1 and torch exactly.

`training` also switches BatchNorm (`keras.layers.BatchNormalization`): True (`fit`) normalises
with the batch's mean and biased variance and updates the moving statistics; False or None
(`predict`, `evaluate`, `model(x)`) normalises with the moving statistics and changes nothing.
`model(x, training=True, dropout=False)` trains the BatchNorms with Keras's Dropout off (what
`keras_models.train.step_details` needs when no shared masks are given).

Inputs are float arrays of the spec's per-sample shape, (N, *spec.input_shape): flat
features (N, F), NHWC images (N, H, W, C), sequences (N, T, F) for the recurrent models
(images read row by row: digits (N, 8, 8)), or token ids (N, T) for a model that starts with
an Embedding, whole numbers stored as floats (the layer casts them to int32; `zoo.specs.
check_inputs` has checked they lie in [0, vocab)). Nothing here depends on which: every layer
is built from its resolved input shape, and Keras casts the float inputs to the layers'
dtype (exact for ids).

The weight table includes the BatchNorm state (`moving_mean`, `moving_variance`: Keras's
non-trainable variables), so `get_weights`/`set_weights`, the checkpoints and the `.keras`
files carry it; the optimizer sees only `model.trainable_variables` (Keras's own rule), and the
L2 penalty only the kernels (`penalised_variables`).

Outputs are raw (logits, scores or values): the softmax/sigmoid lives in the loss
(`from_logits=True`) and in `outputs` (prediction only). Feeding probabilities to a Keras
cross-entropy clips them at 1e-7 (docs/porting.md, gotchas "Probability clipping at
1e-7" and "The TF backend's hidden logits shortcut").
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_models.layers import keras_layer, shared_dropout
from zoo.errors import ConfigError
from zoo.layers import Resolved, from_native, tensor_specs, to_native
from zoo.specs import ModelSpec, check_canonical

__all__ = ["MulticlassHinge", "QuadraticCost", "ZooModel", "build", "canonical", "canonical_part",
           "check_dtype", "masked_dropouts", "get_weights", "l2_penalty", "make_loss",
           "native_variables", "outputs", "penalised_variables", "set_weights",
           "state_variables", "trainable_variables", "weight_variables"]

_DTYPES = ("float32", "float64")
FRAMEWORK = "keras"


def check_dtype(dtype: str) -> None:
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")


def masked_dropouts(spec: ModelSpec) -> list[Resolved]:
    """The Dropout layers that drop (rate > 0), in order: each takes one shared mask of
    `zoo.specs.dropout_masks`, shaped (batch, *its input shape)."""
    return [r for r in spec.resolved if r.kind == "dropout" and r.layer.rate > 0]


@keras.saving.register_keras_serializable(package="zoo")
class ZooModel(keras.Model):
    """The model of `spec` (a `ModelSpec.to_dict()`): one Keras layer per canonical layer.

    Called on `x` (N, *spec.input_shape): features, NHWC images, (T, F) sequences or (T,)
    float token ids per sample; or on `(x, mask_0, mask_1, ...)` with the shared dropout
    masks; returns the raw outputs (N, n_outputs)."""

    def __init__(self, spec: dict, dtype: str = "float32", synchronized: bool = False,
                 **kwargs) -> None:
        super().__init__(dtype=dtype, **kwargs)
        self.model_spec = ModelSpec.from_dict(dict(spec))
        dtype_name = self.dtype_policy.variable_dtype
        check_dtype(dtype_name)
        #: BatchNorm statistics over the replicas of a tf.distribute strategy (data-parallel)
        self.synchronized = bool(synchronized)
        # A list attribute: Keras tracks the layers (and their variables) in this order, which
        # is the canonical order of the weight table.
        self.zoo_layers = [keras_layer(r, dtype_name, synchronized=self.synchronized)
                           for r in self.model_spec.resolved]
        self.rates = [float(r.layer.rate) if r.kind == "dropout" else None
                      for r in self.model_spec.resolved]
        # Build every layer here, from the spec's shapes, outside the model's own name scope:
        # the variables exist before any call, are created in canonical order, and their paths
        # are the weight table's keras names (`dense_0/kernel`, not `mlp/dense_0/kernel`).
        for layer, r in zip(self.zoo_layers, self.model_spec.resolved, strict=True):
            layer.build((None, *r.input_shape))

    def get_config(self) -> dict:
        return {**super().get_config(), "spec": self.model_spec.to_dict(),
                "synchronized": self.synchronized}

    def train_step(self, *args, **kwargs):
        """Keras's own training step, then (when `keras_models.train` attached one) the
        recorder's copy of the weights after the update, inside the same compiled step."""
        logs = super().train_step(*args, **kwargs)
        recorder = getattr(self, "_zoo_recorder", None)
        if recorder is not None:
            recorder.record()
        return logs

    def build(self, input_shape=None) -> None:
        # The layers were built in __init__ (`input_shape` may be a tuple of inputs when masks
        # are fed, which says nothing the spec does not).
        self.built = True

    def call(self, inputs, training=None, dropout=None):
        """Raw outputs from `x`, or from `(x, mask_0, ...)` with the shared dropout masks.

        training: BatchNorm's mode (batch statistics and their update when True) and, unless
        `dropout` says otherwise, Keras Dropout's; dropout=False keeps Keras's Dropout off
        whatever `training` is (shared masks, when given, are applied either way)."""
        dropout_training = training if dropout is None else bool(dropout) and training
        if isinstance(inputs, (list, tuple)):
            h, *masks = inputs
            n_drop = len(masked_dropouts(self.model_spec))
            if len(masks) != n_drop:
                raise ConfigError(f"model {self.model_spec.name!r} expects {n_drop} dropout "
                                  f"mask(s), one per Dropout layer, got {len(masks)}.")
        else:
            h, masks = inputs, None
        pending = iter(masks or ())
        for layer, rate in zip(self.zoo_layers, self.rates, strict=True):
            if masks is not None and rate is not None:
                if rate > 0:
                    h = shared_dropout(h, next(pending), rate)
            else:
                h = layer(h, training=dropout_training if rate is not None else training)
        return h


def build(spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32", *, synchronized: bool = False) -> ZooModel:
    """The Keras model of `spec`, built (variables created), outputting raw values.

    init: canonical weights including the BatchNorm state (normally
    `zoo.specs.init_weights`). When None, the layers' initialisers stay (glorot-uniform
    kernels and zero biases, Keras's defaults; N(0, 1) for seed 001's network; the BatchNorm
    ones and zeros). dtype: "float32" or "float64", given to every layer explicitly.
    synchronized: BatchNorm statistics over the replicas of the enclosing tf.distribute
    strategy (`keras_models.distributed`).
    """
    check_dtype(dtype)
    model = ZooModel(spec.to_dict(), dtype=dtype, synchronized=synchronized, name=spec.name)
    model.build((None, *spec.input_shape))
    if init is not None:
        set_weights(model, init)
    return model


# ----------------------------------------------------------------------------- weights edge
def native_variables(model: ZooModel) -> dict[str, keras.Variable]:
    """{keras native name: variable}, in model order: `<layer name>/<variable name>`, e.g.
    `conv2d_0/kernel`, as the weight tables name them (also the variable's `path`, unless the
    model was built inside an enclosing `keras.name_scope`). An LSTM's or GRU's variables
    belong to its cell, whose name is in their path (`lstm_0/lstm_cell/kernel`) but not in
    their name (`kernel`): `layer.weights` lists them, so they come out as `lstm_0/kernel`."""
    return {f"{layer.name}/{v.name}": v for layer in model.zoo_layers for v in layer.weights}


def weight_variables(model: ZooModel) -> dict[str, keras.Variable]:
    """{keras native name: variable} for exactly the weight table's tensors, in table order.
    A variable the table does not know, or a table row without its variable, is an error."""
    found = native_variables(model)
    want = [t.native_name(FRAMEWORK) for t in tensor_specs(model.model_spec.resolved)]
    missing, extra = [n for n in want if n not in found], sorted(set(found) - set(want))
    if missing or extra:
        raise ConfigError(f"Keras model {model.name!r} does not match its weight table: "
                          f"missing {missing or 'nothing'}, unmapped {extra or 'nothing'}.")
    return {n: found[n] for n in want}


def canonical(model: ZooModel, native: dict) -> dict[str, np.ndarray]:
    """{keras native name: array or tensor} of `model`'s table (its weights, their gradients, a
    copy of them) -> canonical dict of numpy arrays, through the weight table."""
    arrays = {n: np.array(ops.convert_to_numpy(v)) for n, v in native.items()}
    return from_native(arrays, model.model_spec.resolved, FRAMEWORK)


def trainable_variables(model: ZooModel) -> dict[str, keras.Variable]:
    """{keras native name: variable} of the trained rows of the weight table (everything but
    the BatchNorm state), in table order: what gradients are taken for."""
    found = weight_variables(model)
    return {n: found[n] for n in (t.native_name(FRAMEWORK) for t in
                                  tensor_specs(model.model_spec.resolved, trainable=True))}


def state_variables(model: ZooModel) -> dict[str, keras.Variable]:
    """{keras native name: variable} of the state rows (BatchNorm moving_mean and
    moving_variance), in table order; empty for a model without state."""
    found = weight_variables(model)
    return {n: found[n] for n in (t.native_name(FRAMEWORK) for t in
                                  tensor_specs(model.model_spec.resolved, trainable=False))}


def canonical_part(model: ZooModel, native: dict, trainable: bool) -> dict[str, np.ndarray]:
    """`canonical` of only the trained (`trainable=True`: gradients) or only the state rows."""
    want = {t.native_name(FRAMEWORK): t for t in
            tensor_specs(model.model_spec.resolved, trainable=trainable)}
    if sorted(native) != sorted(want):
        raise ConfigError(f"expected exactly {list(want)}, got {list(native)}.")
    return {t.name: t.layout(FRAMEWORK).from_native(
        np.array(ops.convert_to_numpy(native[n])), t.shape) for n, t in want.items()}


def get_weights(model: ZooModel) -> dict[str, np.ndarray]:
    """Canonical weights of `model` (numpy copies in the model's dtype, model order), through
    the weight table (`zoo.layers.from_native`), the BatchNorm state included."""
    return canonical(model, weight_variables(model))


def set_weights(model: ZooModel, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights into `model` in place, cast to each variable's dtype.

    Raises ConfigError naming missing, unexpected and misshapen tensors (a kernel in torch's
    layout gets a hint; a square Dense kernel can only be caught by a parity test)."""
    check_canonical(weights, model.model_spec)
    native = to_native(weights, model.model_spec.resolved, FRAMEWORK)
    for name, var in weight_variables(model).items():
        var.assign(np.asarray(native[name]).astype(var.dtype))


def penalised_variables(model: ZooModel) -> list[keras.Variable]:
    """The variables the L2 penalty covers (the table's `penalised` rows: Dense and Conv2D
    kernels, LSTM and GRU kernels and recurrent kernels; never biases or embeddings)."""
    found = weight_variables(model)
    return [found[t.native_name(FRAMEWORK)] for t in tensor_specs(model.model_spec.resolved)
            if t.penalised]


def l2_penalty(variables: list, l2: float):
    """0.5 * l2 * sum of squared `variables` (a tensor).

    A Python float times a tensor takes the tensor's dtype exactly; `ops.cast` of a Python
    float would round it to float32 first (a 1e-9 relative error in float64)."""
    return (0.5 * float(l2)) * ops.sum(ops.stack([ops.sum(ops.square(v)) for v in variables]))


# ----------------------------------------------------------------------------- losses
@keras.saving.register_keras_serializable(package="zoo")
class MulticlassHinge(keras.losses.Loss):
    """The CS231n multiclass hinge loss (seed 003): sum_{j != y} max(0, s_j - s_y + margin) per
    sample; mean over the batch (Keras's default `sum_over_batch_size` reduction). `y_true`
    holds integer labels (N,) or (N, 1).

    Keras ships no such loss: `keras.losses.CategoricalHinge` is the Crammer-Singer loss
    max(0, 1 + max_{j != y} s_j - s_y) (one term per sample), `keras.losses.Hinge` is binary."""

    def __init__(self, margin: float = 1.0, name: str = "multiclass_hinge", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        # Loss.__call__ casts y_true to the loss dtype; labels are small integers, exact in floats.
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        not_true = 1.0 - ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        true_score = ops.sum(y_pred * (1.0 - not_true), axis=-1, keepdims=True)
        # The true class would add max(0, margin) = margin and no gradient: mask it out.
        margins = ops.relu(y_pred - true_score + self.margin) * not_true
        return ops.sum(margins, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="zoo")
class QuadraticCost(keras.losses.Loss):
    """Seed 001's quadratic cost: 0.5 * sum_j (sigmoid(z_j) - onehot(y)_j)^2 per sample, mean
    over the batch. `y_true` holds integer labels (N,); the one-hot target is made here.

    Not `keras.losses.MeanSquaredError` of the sigmoid: that also averages over the C outputs
    (a factor 2/C away)."""

    def __init__(self, name: str = "quadratic_cost", **kwargs) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        target = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return 0.5 * ops.sum(ops.square(ops.sigmoid(y_pred) - target), axis=-1)


def make_loss(spec: ModelSpec) -> keras.losses.Loss:
    """The Keras loss of `spec.loss`, from the model's raw outputs, mean over the batch.

    Targets: int labels (N,) for cross_entropy, hinge and quadratic; float (N, 1) for
    binary_cross_entropy and mse (`keras_models.train` makes them)."""
    if spec.loss == "cross_entropy":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if spec.loss == "hinge":
        return MulticlassHinge()
    if spec.loss == "binary_cross_entropy":
        return keras.losses.BinaryCrossentropy(from_logits=True)
    if spec.loss == "mse":
        # what `compile(loss="mse")` resolves to (seed 002)
        return keras.losses.MeanSquaredError()
    if spec.loss == "quadratic":
        return QuadraticCost()
    raise ConfigError(f"keras_models has no translation of the {spec.loss!r} loss; add one "
                      "to keras_models.model.make_loss.")


def outputs(spec: ModelSpec, raw) -> np.ndarray:
    """What `predict` returns from the raw outputs: softmax probabilities (N, C), sigmoid of
    every output unit, or the values as they are (regression)."""
    if spec.output == "softmax":
        return np.asarray(ops.convert_to_numpy(ops.softmax(raw, axis=-1)))
    if spec.output == "sigmoid":
        return np.asarray(ops.convert_to_numpy(ops.sigmoid(raw)))
    if spec.output == "identity":
        return np.asarray(ops.convert_to_numpy(raw))
    raise ConfigError(f"keras_models has no translation of the {spec.output!r} output; add "
                      "one to keras_models.model.outputs.")
