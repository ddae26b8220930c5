"""Every model of the zoo in Keras 2 (`tf_keras`), built from its canonical layer list
(`spec.resolved`) as a `tf.keras.Sequential`, with its loss, its outputs and the
canonical-weights edge.

The model is what Keras 2 code writes: `tf.keras.Sequential([tf.keras.Input(shape), layer,
...])` of Keras 2's own layers (`keras2_models.layers`), named after the canonical layers, so
`model.layers` lists them by canonical name and their variables are the weight table's keras2
column (Keras 3's names: `dense_0/kernel`, `lstm_0/recurrent_kernel`). The spec travels with
the model (`model.model_spec`), so `get_weights` and `set_weights` translate through its
weight table (`zoo.layers.from_native` / `to_native`).

Shared dropout masks: a Sequential takes one input, so the masks of `zoo.specs.dropout_masks`
go in through `masked_model(model)`: a functional `tf.keras.Model` on inputs `[x, mask_0,
mask_1, ...]` that calls the Sequential's own layer objects in order (the same variables) and
puts a `SharedDropout` (h * (mask / (1 - rate))) where each Dropout layer was. `fit` trains
that model; the Sequential predicts, evaluates and saves.

`training` switches BatchNorm as in Keras 3: True (`fit`) normalises with the batch's mean and
biased variance and updates the moving statistics (Keras 2's non-fused layer,
`keras2_models.layers`); False or None (`predict`, `evaluate`, `model(x)`) uses the moving
statistics and changes nothing. The weight table includes the moving statistics (Keras's
non-trainable variables), so they travel with the weights.

Outputs are raw (logits, scores or values): the softmax/sigmoid lives in the loss
(`from_logits=True`) and in `outputs` (prediction only).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras2_models.layers import SharedDropout, keras2_layer
from zoo.errors import ConfigError
from zoo.layers import Resolved, from_native, tensor_specs, to_native
from zoo.specs import ModelSpec, check_canonical

__all__ = ["MulticlassHinge", "QuadraticCost", "build", "canonical", "canonical_part",
           "check_dtype", "get_weights", "l2_penalty", "make_loss", "masked_dropouts",
           "masked_model", "native_variables", "outputs", "penalised_variables", "set_weights",
           "state_variables", "trainable_variables", "weight_variables"]

_DTYPES = ("float32", "float64")
#: the weight-table column of this package (`zoo.layers.COLUMN_ALIASES`: Keras 3's names)
FRAMEWORK = "keras2"


def check_dtype(dtype: str) -> None:
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")


def masked_dropouts(spec: ModelSpec) -> list[Resolved]:
    """The Dropout layers that drop (rate > 0), in order: each takes one shared mask of
    `zoo.specs.dropout_masks`, shaped (batch, *its input shape)."""
    return [r for r in spec.resolved if r.kind == "dropout" and r.layer.rate > 0]


def build(spec: ModelSpec, init: dict[str, np.ndarray] | None = None,
          dtype: str = "float32") -> tf.keras.Sequential:
    """The Keras 2 `Sequential` of `spec`, built (variables created), outputting raw values.

    init: canonical weights including the BatchNorm state (normally
    `zoo.specs.init_weights`); None keeps the layers' initialisers. dtype: "float32" or
    "float64", given to the input and every layer explicitly."""
    check_dtype(dtype)
    layers = [keras2_layer(r, dtype) for r in spec.resolved]
    model = tf.keras.Sequential([tf.keras.Input(shape=spec.input_shape, dtype=dtype), *layers],
                                name=spec.name)
    model.model_spec = spec
    if init is not None:
        set_weights(model, init)
    return model


def masked_model(model: tf.keras.Sequential) -> tf.keras.Model:
    """The functional model that trains `model` with shared dropout masks: inputs `[x, mask_0,
    ...]` (one mask per Dropout layer with rate > 0, shaped like that layer's input), the
    Sequential's own layers in order (the same variables), a `SharedDropout` in place of each
    Dropout. Without such Dropout layers, `model` itself."""
    spec: ModelSpec = model.model_spec
    drops = masked_dropouts(spec)
    if not drops:
        return model
    dtype = model.layers[0].dtype if model.layers else "float32"
    x = tf.keras.Input(shape=spec.input_shape, dtype=dtype, name="x")
    masks = [tf.keras.Input(shape=r.input_shape, dtype=dtype, name=f"{r.name}_mask")
             for r in drops]
    pending = iter(masks)
    h = x
    for layer, r in zip(model.layers, spec.resolved, strict=True):
        if r.kind == "dropout":
            if r.layer.rate > 0:
                h = SharedDropout(r.layer.rate, name=f"{r.name}_shared", dtype=dtype)(
                    [h, next(pending)])
        else:
            h = layer(h)
    trainer = tf.keras.Model([x, *masks], h, name=f"{spec.name}_masked")
    trainer.model_spec = spec
    return trainer


# ----------------------------------------------------------------------------- weights edge
def native_variables(model: tf.keras.Model) -> dict[str, tf.Variable]:
    """{keras2 native name: variable}, in model order: `<layer name>/<variable name>` without
    Keras 2's `:0` and cell scopes (`lstm_0/lstm_cell/kernel:0` -> `lstm_0/kernel`), as the
    weight tables name them."""
    found: dict[str, tf.Variable] = {}
    for layer in model.layers:
        for v in layer.weights:
            found[f"{layer.name}/{v.name.split(':')[0].rsplit('/', 1)[-1]}"] = v
    return found


def weight_variables(model: tf.keras.Model) -> dict[str, tf.Variable]:
    """{keras2 native name: variable} for exactly the weight table's tensors, in table order.
    A variable the table does not know, or a table row without its variable, is an error."""
    found = native_variables(model)
    want = [t.native_name(FRAMEWORK) for t in tensor_specs(model.model_spec.resolved)]
    missing, extra = [n for n in want if n not in found], sorted(set(found) - set(want))
    if missing or extra:
        raise ConfigError(f"Keras 2 model {model.name!r} does not match its weight table: "
                          f"missing {missing or 'nothing'}, unmapped {extra or 'nothing'}.")
    return {n: found[n] for n in want}


def _numpy(v) -> np.ndarray:
    return np.array(v.numpy() if hasattr(v, "numpy") else v)


def canonical(model: tf.keras.Model, native: dict) -> dict[str, np.ndarray]:
    """{keras2 native name: array, tensor or variable} of `model`'s whole table -> canonical
    dict of numpy arrays, through the weight table."""
    return from_native({n: _numpy(v) for n, v in native.items()}, model.model_spec.resolved,
                       FRAMEWORK)


def trainable_variables(model: tf.keras.Model) -> dict[str, tf.Variable]:
    """{keras2 native name: variable} of the trained rows of the weight table (everything but
    the BatchNorm state), in table order: what gradients are taken for."""
    found = weight_variables(model)
    return {n: found[n] for n in (t.native_name(FRAMEWORK) for t in
                                  tensor_specs(model.model_spec.resolved, trainable=True))}


def state_variables(model: tf.keras.Model) -> dict[str, tf.Variable]:
    """{keras2 native name: variable} of the state rows (BatchNorm moving_mean and
    moving_variance), in table order; empty for a model without state."""
    found = weight_variables(model)
    return {n: found[n] for n in (t.native_name(FRAMEWORK) for t in
                                  tensor_specs(model.model_spec.resolved, trainable=False))}


def canonical_part(model: tf.keras.Model, native: dict, trainable: bool
                   ) -> dict[str, np.ndarray]:
    """`canonical` of only the trained (`trainable=True`: gradients) or only the state rows."""
    want = {t.native_name(FRAMEWORK): t for t in
            tensor_specs(model.model_spec.resolved, trainable=trainable)}
    if sorted(native) != sorted(want):
        raise ConfigError(f"expected exactly {list(want)}, got {list(native)}.")
    return {t.name: t.layout(FRAMEWORK).from_native(_numpy(native[n]), t.shape)
            for n, t in want.items()}


def get_weights(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """Canonical weights of `model` (numpy copies in the model's dtype, model order), through
    the weight table, the BatchNorm state included."""
    return canonical(model, weight_variables(model))


def set_weights(model: tf.keras.Model, weights: dict[str, np.ndarray]) -> None:
    """Load canonical weights into `model` in place, cast to each variable's dtype.

    Raises ConfigError naming missing, unexpected and misshapen tensors."""
    check_canonical(weights, model.model_spec)
    native = to_native(weights, model.model_spec.resolved, FRAMEWORK)
    for name, var in weight_variables(model).items():
        var.assign(np.asarray(native[name]).astype(var.dtype.as_numpy_dtype))


def penalised_variables(model: tf.keras.Model) -> list[tf.Variable]:
    """The variables the L2 penalty covers (the table's `penalised` rows: Dense and Conv2D
    kernels, LSTM and GRU kernels and recurrent kernels; never biases or embeddings)."""
    found = weight_variables(model)
    return [found[t.native_name(FRAMEWORK)] for t in tensor_specs(model.model_spec.resolved)
            if t.penalised]


def l2_penalty(variables: list, l2: float):
    """0.5 * l2 * sum of squared `variables` (a tensor). A Python float times a tensor takes
    the tensor's dtype exactly (float64 stays float64)."""
    return (0.5 * float(l2)) * tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])


# ----------------------------------------------------------------------------- losses
class MulticlassHinge(tf.keras.losses.Loss):
    """The CS231n multiclass hinge loss (seed 003): sum_{j != y} max(0, s_j - s_y + margin) per
    sample, mean over the batch (Keras 2's default reduction). `y_true` holds integer labels
    (N,) or (N, 1) (Keras 2's `compile` expands (N,) labels to (N, 1)).

    Not `tf.keras.losses.CategoricalHinge` (Crammer-Singer: one term per sample) nor `Hinge`
    (binary)."""

    def __init__(self, margin: float = 1.0, name: str = "multiclass_hinge", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        labels = tf.cast(tf.reshape(y_true, (-1,)), tf.int32)
        true_mask = tf.one_hot(labels, tf.shape(y_pred)[-1], dtype=y_pred.dtype)
        true_score = tf.reduce_sum(y_pred * true_mask, axis=-1, keepdims=True)
        margins = tf.nn.relu(y_pred - true_score + self.margin) * (1.0 - true_mask)
        return tf.reduce_sum(margins, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "margin": self.margin}


class QuadraticCost(tf.keras.losses.Loss):
    """Seed 001's quadratic cost: 0.5 * sum_j (sigmoid(z_j) - onehot(y)_j)^2 per sample, mean
    over the batch (not `mse` of the sigmoid, which also averages over the outputs)."""

    def __init__(self, name: str = "quadratic_cost", **kwargs) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        labels = tf.cast(tf.reshape(y_true, (-1,)), tf.int32)
        target = tf.one_hot(labels, tf.shape(y_pred)[-1], dtype=y_pred.dtype)
        return 0.5 * tf.reduce_sum(tf.square(tf.sigmoid(y_pred) - target), axis=-1)


def make_loss(spec: ModelSpec) -> tf.keras.losses.Loss:
    """The Keras 2 loss of `spec.loss`, from the model's raw outputs, mean over the batch.

    Targets: int labels (N,) for cross_entropy, hinge and quadratic; float (N, 1) for
    binary_cross_entropy and mse (`keras2_models.train` makes them)."""
    if spec.loss == "cross_entropy":
        return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if spec.loss == "hinge":
        return MulticlassHinge()
    if spec.loss == "binary_cross_entropy":
        return tf.keras.losses.BinaryCrossentropy(from_logits=True)
    if spec.loss == "mse":
        return tf.keras.losses.MeanSquaredError()
    if spec.loss == "quadratic":
        return QuadraticCost()
    raise ConfigError(f"keras2_models has no translation of the {spec.loss!r} loss; add one "
                      "to keras2_models.model.make_loss.")


def outputs(spec: ModelSpec, raw) -> np.ndarray:
    """What `predict` returns from the raw outputs: softmax probabilities (N, C), sigmoid of
    every output unit, or the values as they are (regression)."""
    if spec.output == "softmax":
        return np.asarray(tf.nn.softmax(raw, axis=-1))
    if spec.output == "sigmoid":
        return np.asarray(tf.sigmoid(raw))
    if spec.output == "identity":
        return np.asarray(raw)
    raise ConfigError(f"keras2_models has no translation of the {spec.output!r} output; add "
                      "one to keras2_models.model.outputs.")
