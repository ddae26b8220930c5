"""The float64 numpy reference (`zoo.reference`) on every canonical layer and every loss.

The reference is the oracle of every parity test, so it is checked against things that do not
share its code: central finite differences of its own loss (every layer kind, every loss,
'same' padding with an odd total, strides, overlapping pools, dropout masks, the L2 term), a
naive loop convolution and pooling written here, closed forms (seed 001's quadratic cost, the
LSTM and GRU equations of `zoo.layers` written out step by step), and the contract every
framework keeps (stop at the first non-finite loss).

Layer lists that no zoo model has are run through a probe architecture registered for the
test only (`zoo.models.ARCHITECTURES` is the one place a model is declared).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from zoo import reference as ref
from zoo.data import batch_order
from zoo.data import load as load_data
from zoo.errors import ConfigError
from zoo.layers import (
    GRU,
    LSTM,
    Activation,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    LayerNorm,
    MaxPool2D,
    corrected_moving_variance,
    resolve,
    same_padding,
)
from zoo.models import ARCHITECTURES, Architecture
from zoo.optimizers import OptimizerSpec
from zoo.specs import ModelSpec, TrainSpec, dropout_masks, init_weights, model_spec_for

#: Analytic gradients must match central differences (step 1e-6) this closely, relative to
#: the gradient's norm: truncation ~1e-12, rounding ~eps * loss / step ~1e-10.
GRAD_RTOL = 1e-6
TASK_OF = {"cross_entropy": "classification", "hinge": "classification",
           "quadratic": "classification", "binary_cross_entropy": "binary", "mse": "regression"}


@pytest.fixture
def probe(monkeypatch):
    """probe(layers, input_shape, loss, n_outputs, vocab) -> a ModelSpec of that layer list:
    (H, W, C) images, (T, F) sequences, or with a `vocab`, (T,) token ids."""

    def make(layers, input_shape, loss="cross_entropy", n_outputs=3, vocab=0) -> ModelSpec:
        output = {"cross_entropy": "softmax", "hinge": "softmax", "quadratic": "sigmoid",
                  "binary_cross_entropy": "sigmoid", "mse": "identity"}[loss]
        sequence = "tokens" if vocab else "rows" if len(input_shape) == 2 else None
        arch = Architecture("probe", TASK_OF[loss], loss, output, "test layer list",
                            lambda spec: list(layers), image=len(input_shape) == 3,
                            sequence=sequence)
        monkeypatch.setitem(ARCHITECTURES, "probe", arch)
        return ModelSpec("probe", int(np.prod(input_shape)), n_outputs,
                         input_shape=tuple(input_shape), vocab=vocab)

    return make


def targets(spec: ModelSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    if spec.task == "regression":
        return rng.normal(size=(n, 1))
    return rng.integers(0, 2 if spec.task == "binary" else spec.n_outputs, n)


def numeric_grads(spec, weights, X, y, masks=None, l2=0.0, step=1e-6) -> dict[str, np.ndarray]:
    """Central differences of the reference's loss, one weight at a time."""
    w = {k: np.array(v, np.float64) for k, v in weights.items()}
    out = {}
    for name in spec.weight_shapes(trainable=True):   # state tensors are never trained
        a = w[name]
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            keep = a[idx]
            a[idx] = keep + step
            up = ref.loss_and_grads(spec, w, X, y, masks, l2)[0]
            a[idx] = keep - step
            down = ref.loss_and_grads(spec, w, X, y, masks, l2)[0]
            a[idx] = keep
            g[idx] = (up - down) / (2 * step)
        out[name] = g
    return out


def grad_errors(spec, weights, X, y, masks=None, l2=0.0) -> dict[str, float]:
    """Per tensor: |analytic - numeric| / max(|numeric|, 1e-8) (Euclidean norms). The floor
    covers a bias right before a training-mode BatchNorm, whose gradient is exactly zero
    (the batch mean removes it): there both sides are rounding noise of ~1e-15."""
    _, grads = ref.loss_and_grads(spec, weights, X, y, masks, l2)
    num = numeric_grads(spec, weights, X, y, masks, l2)
    assert list(grads) == list(spec.weight_shapes(trainable=True))  # model order
    return {k: float(np.linalg.norm(grads[k] - num[k]) / max(np.linalg.norm(num[k]), 1e-8))
            for k in grads}


def random_weights(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Initial weights plus random biases, gammas, betas and moving statistics (their initial
    zeros and ones would leave those paths untested)."""
    rng = np.random.default_rng(seed)

    def shift(k: str, v: np.ndarray) -> np.ndarray:
        if k.endswith(("/bias", "/beta", "/gamma", "/moving_mean")):
            return v + 0.1 * rng.normal(size=v.shape)
        if k.endswith("/moving_variance"):
            return v + rng.uniform(0.0, 0.5, size=v.shape)
        return v
    return {k: shift(k, v) for k, v in init_weights(spec, seed, "float64").items()}


# Every layer kind, each after a weighted layer so that its input gradient is exercised.
LAYER_CASES = {
    "dense_relu_sigmoid_tanh_linear": (
        (5,), [Dense(4), Activation("relu"), Dense(4), Activation("sigmoid"), Dense(3),
               Activation("tanh"), Dense(4), Activation("linear"), Dense(3)]),
    "conv_valid_stride1": (
        (6, 6, 2), [Conv2D(3, 3), Activation("tanh"), Conv2D(2, 3), Flatten(), Dense(3)]),
    "conv_same_stride2_odd_total_even_input": (   # 8 -> 4: total padding 1, (0, 1)
        (8, 8, 1), [Conv2D(2, 3, padding="same"), Activation("tanh"),
                    Conv2D(3, 3, strides=2, padding="same"), Flatten(), Dense(3)]),
    "conv_same_even_kernel_odd_input": (            # 4x4 kernel on 7x7: total 3, (1, 2)
        (7, 7, 1), [Conv2D(2, (4, 2), padding="same"), Activation("sigmoid"),
                    Conv2D(2, 4, strides=(2, 3), padding="same"), Flatten(), Dense(3)]),
    "conv_valid_stride2_leftover_row": (            # 8 -> 3: the last row is never read
        (8, 8, 2), [Conv2D(2, 3), Activation("tanh"), Conv2D(3, 2, strides=2), Flatten(),
                    Dense(3)]),
    "max_pool": (
        (8, 8, 1), [Conv2D(3, 3, padding="same"), MaxPool2D(2), Conv2D(2, 2), Flatten(),
                    Dense(3)]),
    "max_pool_overlapping_odd": (                   # 3x3 windows, stride 2 on 7x7: overlaps
        (7, 7, 1), [Conv2D(2, 1), MaxPool2D(3, strides=2), Flatten(), Dense(3)]),
    "avg_pool": (
        (8, 8, 1), [Conv2D(3, 3, padding="same"), AvgPool2D(2), Activation("relu"), Flatten(),
                    Dense(3)]),
    "avg_pool_overlapping_odd": (
        (7, 7, 2), [Conv2D(2, 2), AvgPool2D((3, 2), strides=(1, 2)), Flatten(), Dense(3)]),
    "batch_norm_on_images_and_features": (
        (6, 6, 2), [Conv2D(3, 3, padding="same", use_bias=False), BatchNorm(), Activation("relu"),
                    MaxPool2D(2), Flatten(), Dense(4), BatchNorm(momentum=0.9, epsilon=1e-2),
                    Activation("tanh"), Dense(3)]),
    "batch_norm_unbiased_first": (       # a first layer: no input gradient needed
        (4,), [BatchNorm(moving_variance="unbiased"), Dense(3)]),
    "layer_norm": (
        (5,), [Dense(6), LayerNorm(), Activation("relu"), Dense(4), LayerNorm(epsilon=1e-5),
               Dense(3)]),
    "dropout_on_images_and_features": (
        (6, 6, 1), [Conv2D(2, 3, padding="same"), Dropout(0.3), Activation("relu"), Flatten(),
                    Dense(5), Dropout(0.5), Activation("relu"), Dense(3)]),
    # (T, F) sequences: backpropagation through time, 5 steps of 3 features
    "lstm_last_output": ((5, 3), [LSTM(4), Dense(3)]),
    "lstm_sequences_into_lstm": (      # the first LSTM's input gradient, from every step
        (5, 3), [LSTM(4, return_sequences=True), LSTM(3), Dense(3)]),
    "gru_reset_after_sequences_into_gru": (
        (5, 3), [GRU(4, return_sequences=True), GRU(3), Dense(3)]),
    "gru_reset_before_sequences_into_gru": (
        (5, 3), [GRU(4, return_sequences=True, reset_after=False), GRU(3, reset_after=False),
                 Dense(3)]),
    "gru_sequences_flattened_into_dense": (   # Flatten of (T, units): T, units order
        (5, 3), [GRU(4, return_sequences=True), Flatten(), Dense(3)]),
    "lstm_sequences_dropout_tanh_flatten": (  # (T, units) masks and activations
        (4, 3), [LSTM(3, return_sequences=True), Dropout(0.4), Activation("tanh"), Flatten(),
                 Dense(3)]),
    # token ids (T,) of a vocabulary of 7: an Embedding is a first layer
    "embedding_gru_dense": ((6,), [Embedding(7, 3), GRU(4), Dense(3)]),
}


def case_inputs(layers, shape, n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples for a layer list: token ids (whole-number floats) below an Embedding's
    vocabulary when it starts with one, else normal values."""
    if isinstance(layers[0], Embedding):
        return rng.integers(0, layers[0].vocab, (n, *shape)).astype(np.float64)
    return rng.normal(size=(n, *shape))


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_every_layer_gradient_matches_central_differences(probe, case):
    shape, layers = LAYER_CASES[case]
    vocab = layers[0].vocab if isinstance(layers[0], Embedding) else 0
    spec = probe(layers, shape, vocab=vocab)
    rng = np.random.default_rng(1)
    X = case_inputs(layers, shape, 5, rng)
    y = targets(spec, 5, rng)
    masks = dropout_masks(spec, 5, seed=3, epoch=0, step=0, dtype="float64") or None
    errors = grad_errors(spec, random_weights(spec, 2), X, y, masks)
    assert max(errors.values()) < GRAD_RTOL, errors


@pytest.mark.parametrize("loss", list(TASK_OF))
def test_every_loss_gradient_matches_central_differences(probe, loss):
    n_out = 1 if loss in ("binary_cross_entropy", "mse") else 3
    spec = probe([Conv2D(2, 3, strides=2, padding="same"), Activation("relu"), Flatten(),
                  Dense(4), Activation("sigmoid"), Dense(n_out)], (6, 6, 1), loss, n_out)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(6, 6, 6, 1))
    errors = grad_errors(spec, random_weights(spec, 5), X, targets(spec, 6, rng))
    assert max(errors.values()) < GRAD_RTOL, errors


def test_l2_adds_half_l2_squared_kernels_to_the_loss_and_l2_kernel_to_the_gradient(probe):
    spec = probe([Conv2D(2, 3), Activation("relu"), Flatten(), Dense(3)], (5, 5, 1))
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(4, 5, 5, 1)), rng.integers(0, 3, 4)
    w = random_weights(spec, 7)
    l2 = 0.03
    loss0, g0 = ref.loss_and_grads(spec, w, X, y)
    loss, g = ref.loss_and_grads(spec, w, X, y, l2=l2)
    kernels = ["conv2d_0/kernel", "dense_0/kernel"]
    assert loss - loss0 == pytest.approx(
        0.5 * l2 * sum(float(np.sum(w[k] ** 2)) for k in kernels), rel=1e-12)
    for k in g:
        np.testing.assert_allclose(g[k] - g0[k], l2 * w[k] if k in kernels else 0.0,
                                   rtol=1e-10, atol=1e-15)
    assert max(grad_errors(spec, w, X, y, l2=l2).values()) < GRAD_RTOL


# ----------------------------------------------------------------------------- naive loops
def naive_conv(x, kernel, bias, strides, padding):
    """Direct loops: output pixel by pixel, TF padding (the odd one after), in x's dtype."""
    n, h, w, c = x.shape
    kh, kw, _, f = kernel.shape
    sh, sw = strides
    if padding == "same":
        (pt, pb), (pl, pr) = same_padding(h, kh, sh), same_padding(w, kw, sw)
    else:
        pt = pb = pl = pr = 0
    xp = np.zeros((n, h + pt + pb, w + pl + pr, c), x.dtype)
    xp[:, pt:pt + h, pl:pl + w] = x
    ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    out = np.zeros((n, ho, wo, f), x.dtype)
    for s in range(n):
        for i in range(ho):
            for j in range(wo):
                for o in range(f):
                    total = bias[o]
                    for a in range(kh):
                        for b in range(kw):
                            for ch in range(c):
                                total += xp[s, i * sh + a, j * sw + b, ch] * kernel[a, b, ch, o]
                    out[s, i, j, o] = total
    return out


def naive_pool(x, size, strides, reduce):
    n, h, w, c = x.shape
    (ph, pw), (sh, sw) = size, strides
    ho, wo = (h - ph) // sh + 1, (w - pw) // sw + 1
    out = np.zeros((n, ho, wo, c), x.dtype)
    for s in range(n):
        for i in range(ho):
            for j in range(wo):
                for ch in range(c):
                    out[s, i, j, ch] = reduce(x[s, i * sh:i * sh + ph, j * sw:j * sw + pw, ch])
    return out


@pytest.mark.parametrize("shape,kernel,strides,padding", [
    ((6, 6, 2), (3, 3), (1, 1), "valid"),
    ((6, 6, 2), (3, 3), (1, 1), "same"),
    ((8, 8, 1), (3, 3), (2, 2), "same"),     # total padding 1: (0, 1)
    ((7, 6, 2), (4, 2), (2, 3), "same"),
    ((7, 7, 3), (2, 3), (2, 2), "valid"),
])
def test_conv_forward_equals_a_naive_loop(probe, shape, kernel, strides, padding):
    layer = Conv2D(3, kernel, strides=strides, padding=padding)
    spec = probe([layer, Flatten()], shape)
    rng = np.random.default_rng(8)
    X = rng.normal(size=(3, *shape))
    w = random_weights(spec, 9)
    want = naive_conv(X, w["conv2d_0/kernel"], w["conv2d_0/bias"], strides, padding)
    assert spec.resolved[0].output_shape == want.shape[1:]
    np.testing.assert_allclose(ref.forward(spec, w, X), want.reshape(len(X), -1),
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("pool,reduce", [(MaxPool2D, np.max), (AvgPool2D, np.mean)])
@pytest.mark.parametrize("size,strides", [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((3, 2), (1, 2))])
def test_pool_forward_equals_a_naive_loop(probe, pool, reduce, size, strides):
    spec = probe([Conv2D(2, 1), pool(size, strides), Flatten()], (7, 7, 2))
    w = {"conv2d_0/kernel": np.eye(2).reshape(1, 1, 2, 2), "conv2d_0/bias": np.zeros(2)}
    X = np.random.default_rng(10).normal(size=(3, 7, 7, 2))
    np.testing.assert_allclose(ref.forward(spec, w, X),
                               naive_pool(X, size, strides, reduce).reshape(3, -1), rtol=1e-14)


def test_rounding_scale_bounds_a_float32_cnn_forward():
    # The cnn computed in float32 by the naive loops above (a summation order of its own):
    # its distance to the float64 forward stays within the generalised rounding scale.
    spec = model_spec_for("cnn", 64, 10, input_shape=(8, 8, 1))
    rng = np.random.default_rng(16)
    w = {k: (v * 5).astype(np.float32) for k, v in random_weights(spec, 17).items()}
    X = rng.normal(0, 3, (4, 8, 8, 1)).astype(np.float32)
    h = np.maximum(naive_conv(X, w["conv2d_0/kernel"], w["conv2d_0/bias"], (1, 1), "same"), 0)
    h = naive_pool(h, (2, 2), (2, 2), np.max)
    h = np.maximum(naive_conv(h, w["conv2d_1/kernel"], w["conv2d_1/bias"], (2, 2), "same"), 0)
    h = h.reshape(len(X), -1) @ w["dense_0/kernel"] + w["dense_0/bias"]
    assert h.dtype == np.float32
    exact = ref.forward(spec, w, X)
    scale = ref.rounding_scale(spec, w, X)
    assert np.all(np.abs(h - exact) <= scale)
    assert 0 < np.max(np.abs(h - exact)) and np.max(scale) < 1e-3 * np.max(np.abs(exact))


def test_max_pool_ties_send_the_gradient_to_the_first_max_in_window_order(probe):
    # A 1x1 conv summing two channels makes three tied maxima of 2 in one 2x2 window, from
    # different inputs: the kernel gradient, sum over pixels of x * (gradient there), tells
    # which pixel received the gradient. Window order is row by row: (0, 0) comes first.
    spec = probe([Conv2D(1, 1), MaxPool2D(2), Flatten(), Dense(1)], (2, 2, 2), "mse", 1)
    w = {"conv2d_0/kernel": np.ones((1, 1, 2, 1)), "conv2d_0/bias": np.zeros(1),
         "dense_0/kernel": np.ones((1, 1)), "dense_0/bias": np.zeros(1)}
    X = np.array([[[2.0, 0.0], [0.5, 0.5]], [[0.0, 2.0], [1.0, 1.0]]])[None]
    loss, g = ref.loss_and_grads(spec, w, X, np.zeros((1, 1)))
    assert loss == 4.0                      # (2 - 0)^2, d loss / d z = 2 * 2 = 4
    np.testing.assert_array_equal(g["conv2d_0/kernel"].ravel(), [4.0 * 2.0, 4.0 * 0.0])


def test_flatten_is_a_plain_reshape_in_h_w_c_order(probe):
    spec = probe([Conv2D(2, 1), Flatten()], (2, 3, 2))
    w = {"conv2d_0/kernel": np.eye(2).reshape(1, 1, 2, 2), "conv2d_0/bias": np.zeros(2)}
    X = np.arange(12.0).reshape(1, 2, 3, 2)
    np.testing.assert_array_equal(ref.forward(spec, w, X), X.reshape(1, -1))


def test_dropout_applies_the_shared_masks_and_is_the_identity_without_them(probe):
    spec = probe([Dense(4), Dropout(0.25), Dense(2)], (3,), "mse", 2)
    w = random_weights(spec, 11)
    X = np.random.default_rng(12).normal(size=(6, 3))
    mask = dropout_masks(spec, 6, seed=1, epoch=0, step=2, dtype="float64")
    h = X @ w["dense_0/kernel"] + w["dense_0/bias"]
    out = lambda h: h @ w["dense_1/kernel"] + w["dense_1/bias"]  # noqa: E731
    np.testing.assert_allclose(ref.forward(spec, w, X, mask), out(h * mask[0] / 0.75),
                               rtol=1e-14)
    np.testing.assert_allclose(ref.forward(spec, w, X), out(h), rtol=1e-14)
    with pytest.raises(ConfigError, match=r"2 dropout masks for the 1 Dropout layer\(s\) "
                                          r"\['dropout_0'\]"):
        ref.forward(spec, w, X, mask * 2)
    # on images the mask is NHWC, like the images
    spec = probe([Conv2D(2, 1), Dropout(0.5), Flatten()], (3, 4, 2))
    w = {"conv2d_0/kernel": np.eye(2).reshape(1, 1, 2, 2), "conv2d_0/bias": np.zeros(2)}
    X = np.random.default_rng(18).normal(size=(2, 3, 4, 2))
    mask = dropout_masks(spec, 2, seed=0, epoch=1, step=0, dtype="float64")
    assert mask[0].shape == X.shape
    np.testing.assert_array_equal(ref.forward(spec, w, X, mask), (X * mask[0] / 0.5).reshape(2, -1))


# ----------------------------------------------------------------------------- models
def test_cnn_runs_on_digits_images_and_lenet_on_28x28():
    ds = load_data("digits", dtype="float64")
    X = ds.X_train[:50].reshape(-1, 8, 8, 1)
    cnn = model_spec_for("cnn", 64, 10, input_shape=(8, 8, 1))
    w = init_weights(cnn, 0, "float64")
    z = ref.forward(cnn, w, X)
    assert z.shape == (50, 10) and np.all(np.isfinite(z))
    assert [r.output_shape for r in cnn.resolved][:6] == [
        (8, 8, 8), (8, 8, 8), (4, 4, 8), (2, 2, 16), (2, 2, 16), (64,)]
    p = ref.predict(cnn, w, X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-14)
    m = ref.evaluate(cnn, w, X, ds.y_train[:50])
    assert m["loss"] == pytest.approx(ref.cross_entropy_with_logits(z, ds.y_train[:50]), rel=1e-15)
    assert m["accuracy"] == np.mean(z.argmax(axis=1) == ds.y_train[:50])

    lenet = model_spec_for("lenet", 784, 10, input_shape=(28, 28, 1))
    Xl = np.random.default_rng(13).random((3, 28, 28, 1))
    assert ref.forward(lenet, init_weights(lenet, 0, "float64"), Xl).shape == (3, 10)
    assert [r.output_shape for r in lenet.resolved][:7] == [
        (28, 28, 6), (28, 28, 6), (14, 14, 6), (10, 10, 16), (10, 10, 16), (5, 5, 16), (400,)]


def test_forward_in_chunks_equals_forward_in_one_piece(monkeypatch):
    cnn = model_spec_for("cnn", 64, 10, input_shape=(8, 8, 1))
    w = init_weights(cnn, 1, "float64")
    X = np.random.default_rng(14).normal(size=(37, 8, 8, 1))
    whole = ref.forward(cnn, w, X)
    monkeypatch.setattr(ref, "_PATCH_BUDGET", 8 * 8 * 9 * 5)  # 5 samples per chunk
    np.testing.assert_allclose(ref.forward(cnn, w, X), whole, rtol=1e-14, atol=1e-15)


def test_quadratic_loss_is_half_the_summed_squared_error_averaged_over_samples(probe):
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4
    z = np.array([[0.0, math.log(3)], [-math.log(3), 0.0]])
    labels = np.array([1, 0])
    a = np.array([[0.5, 0.75], [0.25, 0.5]])
    y = np.array([[0.0, 1.0], [1.0, 0.0]])
    closed = float(np.sum((y - a) ** 2) / (2 * len(z)))
    assert closed == 0.28125
    assert ref.quadratic_loss(z, labels) == pytest.approx(closed, rel=1e-15)
    # through an identity Dense layer: the loss, and d loss / d z = (a - y) a (1 - a) / n
    spec = probe([Dense(2)], (2,), "quadratic", 2)
    w = {"dense_0/kernel": np.eye(2), "dense_0/bias": np.zeros(2)}
    loss, g = ref.loss_and_grads(spec, w, z, labels)
    assert loss == pytest.approx(closed, rel=1e-15)
    np.testing.assert_allclose(g["dense_0/bias"], ((a - y) * a * (1 - a) / 2).sum(axis=0),
                               rtol=1e-14)


# ----------------------------------------------------------------------------- the contract
def test_train_stops_at_the_first_non_finite_loss_with_the_last_finite_weights():
    rng = np.random.default_rng(15)
    X, y = rng.normal(size=(32, 3)), rng.normal(size=(32, 1))
    spec = model_spec_for("linear", 3, 1)
    ts = TrainSpec(OptimizerSpec("sgd", lr=1e6), epochs=50, batch_size=8, dtype="float64")
    init = init_weights(spec, 0, "float64")
    h = ref.train(spec, ts, X, y, init, record_weights=True)
    k = h.stopped_at
    assert k is not None and 5 < k < 200
    assert len(h.losses) == k + 1 and not np.isfinite(h.losses[-1])
    assert np.all(np.isfinite(h.losses[:-1]))
    assert len(h.step_weights) == k
    for name in init:  # the weights step k started from
        np.testing.assert_array_equal(h.weights[name], h.step_weights[-1][name])
        assert np.all(np.isfinite(h.weights[name]))
    epoch, step = divmod(k, 4)
    idx = batch_order(32, 8, ts.seed, epoch)[step]
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(ref.loss_and_grads(spec, h.weights, X[idx], y[idx])[0])
    assert len(h.epoch_seconds) == epoch + 1


def test_build_get_set_weights_and_predict():
    spec = model_spec_for("logistic", 4, 1)
    model = ref.build(spec)
    for k, v in init_weights(spec, 0, "float64").items():
        np.testing.assert_array_equal(model[k], v)
    w = {k: np.full(s, 0.5, np.float32) for k, s in spec.weight_shapes().items()}
    ref.set_weights(model, w)
    got = ref.get_weights(model)
    assert all(v.dtype == np.float64 for v in got.values())
    got["dense_0/bias"][0] = 7.0   # a copy: the model keeps its own
    assert model["dense_0/bias"][0] == 0.5
    X = np.ones((2, 4))
    np.testing.assert_allclose(ref.predict(spec, ref.get_weights(model), X),
                               1 / (1 + np.exp(-2.5)), rtol=1e-15)
    with pytest.raises(ConfigError, match=r"dense_0/kernel: expected shape \(4, 1\) in the "
                                          r"canonical \(Keras\) layout, got \(1, 4\)"):
        ref.set_weights(model, {"dense_0/kernel": np.zeros((1, 4)), "dense_0/bias": np.zeros(1)})
    with pytest.raises(ConfigError, match="float64 only"):
        ref.build(spec, dtype="float32")


# ----------------------------------------------------------------------------- normalisation
def test_batch_norm_training_inference_and_moving_statistics_in_closed_form(probe):
    """Training mode: the batch's mean and biased variance; the moving statistics after the
    batch: momentum * old + (1 - momentum) * batch value (Keras's convention); inference
    mode: the moving statistics."""
    layer = BatchNorm(momentum=0.9, epsilon=1e-3)
    spec = probe([layer], (3,), n_outputs=3)
    rng = np.random.default_rng(0)
    X = rng.normal(2.0, 3.0, size=(7, 3))
    w = random_weights(spec, 1)
    g, b, mm, mv = (w[f"batch_norm_0/{k}"] for k in ("gamma", "beta", "moving_mean",
                                                      "moving_variance"))
    mean, var = X.mean(axis=0), X.var(axis=0)            # numpy's var is the biased one
    details = ref.step_details(spec, w, X, np.zeros(7, np.int64))
    np.testing.assert_allclose(details["logits"], g * (X - mean) / np.sqrt(var + 1e-3) + b,
                               rtol=1e-14)
    np.testing.assert_allclose(details["state"]["batch_norm_0/moving_mean"],
                               0.9 * mm + 0.1 * mean, rtol=1e-14)
    np.testing.assert_allclose(details["state"]["batch_norm_0/moving_variance"],
                               0.9 * mv + 0.1 * var, rtol=1e-14)
    np.testing.assert_allclose(ref.forward(spec, w, X), g * (X - mm) / np.sqrt(mv + 1e-3) + b,
                               rtol=1e-14)


def test_batch_norm_unbiased_moving_variance_uses_bessels_correction(probe):
    spec = probe([Conv2D(2, 1, use_bias=False), BatchNorm(moving_variance="unbiased")],
                 (3, 3, 1), n_outputs=2)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(4, 3, 3, 1))
    w = random_weights(spec, 3)
    h = X @ w["conv2d_0/kernel"].reshape(1, 2)                   # a 1x1 conv: per pixel
    count = 4 * 3 * 3
    state = ref.step_details(spec, w, X, np.zeros(4, np.int64))["state"]
    unbiased = h.reshape(-1, 2).var(axis=0, ddof=1)
    np.testing.assert_allclose(state["batch_norm_0/moving_variance"],
                               0.99 * w["batch_norm_0/moving_variance"] + 0.01 * unbiased,
                               rtol=1e-13)
    assert count / (count - 1) == pytest.approx(36 / 35)


@pytest.mark.parametrize("has,wants", [("unbiased", "biased"), ("biased", "unbiased")])
def test_the_moving_variance_compensation_is_exact_in_float64(has, wants):
    """`corrected_moving_variance` turns one framework's update into the other's without the
    batch variance: float64 agrees with the direct formula to rounding."""
    rng = np.random.default_rng(4)
    before, x = rng.uniform(0.5, 2.0, 5), rng.normal(size=(33, 5))
    m = 0.99
    var = {"biased": x.var(axis=0), "unbiased": x.var(axis=0, ddof=1)}
    after = m * before + (1 - m) * var[has]
    fixed = corrected_moving_variance(before, after, 33, m, has, wants)
    np.testing.assert_allclose(fixed, m * before + (1 - m) * var[wants], rtol=1e-14)
    assert corrected_moving_variance(before, after, 33, m, has, has) is after
    with pytest.raises(ConfigError, match="one value per channel has no unbiased variance"):
        corrected_moving_variance(before, after, 1, m, has, wants)


def test_layer_norm_normalises_each_sample_over_its_features(probe):
    spec = probe([LayerNorm(epsilon=1e-5)], (4,), n_outputs=4)
    rng = np.random.default_rng(5)
    X = rng.normal(1.0, 2.0, size=(3, 4))
    w = random_weights(spec, 6)
    want = ((X - X.mean(axis=1, keepdims=True)) / np.sqrt(X.var(axis=1, keepdims=True) + 1e-5)
            * w["layer_norm_0/gamma"] + w["layer_norm_0/beta"])
    np.testing.assert_allclose(ref.forward(spec, w, X), want, rtol=1e-14)
    assert ref.step_details(spec, w, X, np.zeros(3, np.int64))["state"] == {}


def test_normalisation_layers_refuse_what_they_cannot_normalise():
    with pytest.raises(ConfigError, match="BatchNorm momentum must be in \\[0, 1\\)"):
        BatchNorm(momentum=1.5)
    with pytest.raises(ConfigError, match="BatchNorm epsilon must be > 0, got 0"):
        BatchNorm(epsilon=0)
    with pytest.raises(ConfigError, match="layer_norm_0: LayerNorm normalises flat features"):
        resolve([LayerNorm()], (4, 4, 1))
    with pytest.raises(ConfigError, match="batch_norm_0: a BatchNorm on the flattened features"):
        resolve([Flatten(), BatchNorm(), Dense(2)], (4, 4, 1))


# ----------------------------------------------------------------------------- sequences
def gate_sigmoid(a):
    """sigmoid as (1 + tanh(a / 2)) / 2: another formula than the reference's, and it never
    overflows (in float32 either)."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def docstring_lstm(x, kernel, rec, bias):
    """`zoo.layers.LSTM`'s equations, one step at a time, one gate at a time, in x's dtype:
    every step's h, (N, T, u)."""
    n, steps, _ = x.shape
    u = rec.shape[0]
    W = {g: kernel[:, k * u:(k + 1) * u] for k, g in enumerate("ifco")}
    U = {g: rec[:, k * u:(k + 1) * u] for k, g in enumerate("ifco")}
    b = {g: bias[k * u:(k + 1) * u] for k, g in enumerate("ifco")}
    h = np.zeros((n, u), x.dtype)
    c = np.zeros((n, u), x.dtype)
    out = []
    for t in range(steps):
        xt = x[:, t]
        i = gate_sigmoid(xt @ W["i"] + h @ U["i"] + b["i"])
        f = gate_sigmoid(xt @ W["f"] + h @ U["f"] + b["f"])
        c = f * c + i * np.tanh(xt @ W["c"] + h @ U["c"] + b["c"])
        o = gate_sigmoid(xt @ W["o"] + h @ U["o"] + b["o"])
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


def docstring_gru(x, kernel, rec, bias, reset_after):
    """`zoo.layers.GRU`'s equations, one step at a time, one gate at a time, in x's dtype:
    every step's h, (N, T, u). reset_after: bias rows (input b, recurrent b')."""
    n, steps, _ = x.shape
    u = rec.shape[0]
    W = {g: kernel[:, k * u:(k + 1) * u] for k, g in enumerate("zrh")}
    U = {g: rec[:, k * u:(k + 1) * u] for k, g in enumerate("zrh")}
    rows = bias if reset_after else (bias, np.zeros_like(bias))
    b = {g: rows[0][k * u:(k + 1) * u] for k, g in enumerate("zrh")}
    b2 = {g: rows[1][k * u:(k + 1) * u] for k, g in enumerate("zrh")}
    h = np.zeros((n, u), x.dtype)
    out = []
    for t in range(steps):
        xt = x[:, t]
        z = gate_sigmoid(xt @ W["z"] + b["z"] + h @ U["z"] + b2["z"])
        r = gate_sigmoid(xt @ W["r"] + b["r"] + h @ U["r"] + b2["r"])
        if reset_after:
            cand = np.tanh(xt @ W["h"] + b["h"] + r * (h @ U["h"] + b2["h"]))
        else:
            cand = np.tanh(xt @ W["h"] + (r * h) @ U["h"] + b["h"])
        h = z * h + (1 - z) * cand
        out.append(h)
    return np.stack(out, axis=1)


def docstring_forward(spec, w, X):
    """The recurrent layer of `spec` (its first), by the docstring equations."""
    r = spec.resolved[0]
    k, rk, b = (w[f"{r.name}/{t}"] for t in ("kernel", "recurrent_kernel", "bias"))
    if r.kind == "lstm":
        return docstring_lstm(X, k, rk, b)
    return docstring_gru(X, k, rk, b, r.layer.reset_after)


RECURRENT = {"lstm": LSTM, "gru_reset_after": GRU,
             "gru_reset_before": lambda u, **kw: GRU(u, reset_after=False, **kw)}


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("kind", list(RECURRENT))
def test_lstm_and_gru_steps_equal_the_docstring_equations(probe, kind, steps):
    """One step (h0 = c0 = 0: the recurrent kernel unused) and four (it is used), every step's
    output (return_sequences) and the last one's."""
    rng = np.random.default_rng(20)
    X = rng.normal(size=(3, steps, 2))
    seq = probe([RECURRENT[kind](5, return_sequences=True)], (steps, 2), n_outputs=5)
    w = random_weights(seq, 21)
    want = docstring_forward(seq, w, X)
    np.testing.assert_allclose(ref.forward(seq, w, X), want, rtol=1e-13, atol=1e-15)
    last = probe([RECURRENT[kind](5)], (steps, 2), n_outputs=5)
    np.testing.assert_allclose(ref.forward(last, w, X), want[:, -1], rtol=1e-13, atol=1e-15)


def test_lstm_closed_form_of_one_step_of_one_unit(probe):
    """One unit, one step, gates i = sigmoid(0) = 1/2, f unused (c0 = 0), c~ = tanh(ln 3) =
    4/5 ((9 - 1) / (9 + 1)), o = sigmoid(ln 3) = 3/4: c = 2/5, h = 3/4 tanh(2/5)."""
    spec = probe([LSTM(1)], (1, 1), "mse", 1)
    ln3 = math.log(3)
    w = {"lstm_0/kernel": np.array([[0.0, 7.0, ln3, ln3]]),
         "lstm_0/recurrent_kernel": np.array([[5.0, 5.0, 5.0, 5.0]]),
         "lstm_0/bias": np.zeros(4)}
    assert ref.forward(spec, w, np.ones((1, 1, 1)))[0, 0] == pytest.approx(
        0.75 * math.tanh(0.4), rel=1e-15)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_closed_form_of_one_step_of_one_unit(probe, reset_after):
    """One unit, one step from h = 0: z = sigmoid(-ln 3) = 1/4, h~ = tanh(ln 3) = 4/5, so
    h = (3/4)(4/5) = 3/5 whatever r is; the recurrent bias row (reset_after) enters h~ times r:
    b'h = 2 ln 3 with r = sigmoid(0) = 1/2 adds ln 3, h~ = tanh(2 ln 3) = 80/82."""
    spec = probe([GRU(1, reset_after=reset_after)], (1, 1), "mse", 1)
    ln3 = math.log(3)
    bias = np.zeros((2, 3) if reset_after else 3)
    w = {"gru_0/kernel": np.array([[-ln3, 0.0, ln3]]),
         "gru_0/recurrent_kernel": np.array([[5.0, 5.0, 5.0]]), "gru_0/bias": bias}
    X = np.ones((1, 1, 1))
    assert ref.forward(spec, w, X)[0, 0] == pytest.approx(0.6, rel=1e-15)
    if reset_after:
        w["gru_0/bias"] = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2 * ln3]])
        assert ref.forward(spec, w, X)[0, 0] == pytest.approx(0.75 * 80 / 82, rel=1e-15)


def test_recurrent_initialisers_are_keras_s(probe):
    """LSTM bias zeros with ones on the forget gate (Keras's unit_forget_bias), GRU biases
    zeros (both layouts), orthogonal recurrent kernels, glorot-uniform kernels, embeddings
    U(-0.05, 0.05)."""
    spec = probe([Embedding(50, 6), LSTM(5, return_sequences=True), GRU(4, return_sequences=True),
                  GRU(3, reset_after=False), Dense(2)], (7,), n_outputs=2, vocab=50)
    w = init_weights(spec, 0, "float64")
    np.testing.assert_array_equal(w["lstm_0/bias"], np.repeat([0.0, 1.0, 0.0, 0.0], 5))
    assert w["gru_0/bias"].shape == (2, 12) and not w["gru_0/bias"].any()
    assert w["gru_1/bias"].shape == (9,) and not w["gru_1/bias"].any()
    for name, u in (("lstm_0", 5), ("gru_0", 4), ("gru_1", 3)):
        rk = w[f"{name}/recurrent_kernel"]      # (u, G*u): orthonormal rows
        np.testing.assert_allclose(rk @ rk.T, np.eye(u), atol=1e-14)
        k = w[f"{name}/kernel"]
        assert np.abs(k).max() <= math.sqrt(6 / (k.shape[0] + k.shape[1]))
    e = w["embedding_0/embeddings"]
    assert e.shape == (50, 6) and np.abs(e).max() <= 0.05 and e.std() > 0.02


def test_embedding_looks_up_rows_and_adds_up_the_gradients_of_repeated_ids(probe):
    spec = probe([Embedding(5, 2), Flatten(), Dense(1)], (3,), "mse", 1, vocab=5)
    rng = np.random.default_rng(22)
    w = random_weights(spec, 23)
    X = np.array([[1.0, 3.0, 1.0], [0.0, 1.0, 4.0]])
    e = w["embedding_0/embeddings"]
    h = e[X.astype(int)].reshape(2, 6)
    np.testing.assert_array_equal(ref.forward(spec, w, X), h @ w["dense_0/kernel"]
                                  + w["dense_0/bias"])
    y = rng.normal(size=(2, 1))
    _, g = ref.loss_and_grads(spec, w, X, y)
    # d loss / d h = 2 (z - y) / n times the kernel; each id's row sums what its positions got
    dz = 2.0 * (h @ w["dense_0/kernel"] + w["dense_0/bias"] - y) / 2
    dh = (dz @ w["dense_0/kernel"].T).reshape(2, 3, 2)
    want = np.zeros((5, 2))
    for s in range(2):
        for t in range(3):
            want[int(X[s, t])] += dh[s, t]
    np.testing.assert_allclose(g["embedding_0/embeddings"], want, rtol=1e-14, atol=1e-17)
    assert not g["embedding_0/embeddings"][2].any()   # id 2 never read: no gradient


def test_l2_penalises_recurrent_kernels_too(probe):
    spec = probe([LSTM(3), Dense(2)], (4, 2), n_outputs=2)
    rng = np.random.default_rng(24)
    X, y = rng.normal(size=(3, 4, 2)), rng.integers(0, 2, 3)
    w = random_weights(spec, 25)
    l2 = 0.05
    (loss0, g0), (loss, g) = ref.loss_and_grads(spec, w, X, y), ref.loss_and_grads(spec, w, X,
                                                                                   y, l2=l2)
    kernels = ["lstm_0/kernel", "lstm_0/recurrent_kernel", "dense_0/kernel"]
    assert loss - loss0 == pytest.approx(
        0.5 * l2 * sum(float(np.sum(w[k] ** 2)) for k in kernels), rel=1e-12)
    for k in g:
        np.testing.assert_allclose(g[k] - g0[k], l2 * w[k] if k in kernels else 0.0,
                                   rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("kind", list(RECURRENT))
def test_rounding_scale_bounds_a_float32_recurrent_forward_of_a_trained_model(probe, kind):
    """The docstring equations in float32 (their own summation order and sigmoid) stay within
    the rounding scale of the float64 reference, for a model trained three epochs on digits
    read row by row (gates far from 1/2, sums far above 1), and the scale stays far below the
    outputs' size (it still tells a different computation apart). Measured: at most 0.1 of
    the scale; with h taken as exactly within 1 (no rounding carried over the steps) the
    distance exceeded that scale (1.06 times it for the LSTM, 1.19 for the GRU)."""
    spec = probe([RECURRENT[kind](16), Dense(10)], (8, 8), n_outputs=10)
    ds = load_data("digits", dtype="float64")
    X, y = ds.X_train[:320].reshape(-1, 8, 8), ds.y_train[:320]
    ts = TrainSpec(OptimizerSpec("adam", lr=3e-2), epochs=3, dtype="float64")
    w = {k: v.astype(np.float32) for k, v in ref.train(spec, ts, X, y).weights.items()}
    X = X.astype(np.float32)
    z = docstring_forward(spec, w, X)[:, -1] @ w["dense_0/kernel"] + w["dense_0/bias"]
    assert z.dtype == np.float32
    exact = ref.forward(spec, w, X)
    assert np.mean(exact.argmax(axis=1) == y) > 0.8      # trained
    scale = ref.rounding_scale(spec, w, X)
    assert np.all(np.abs(z - exact) <= scale), np.max(np.abs(z - exact) / scale)
    assert 0 < np.max(np.abs(z - exact)) and np.max(scale) < 1e-4 * np.max(np.abs(exact))


def test_recurrent_forward_in_chunks_equals_forward_in_one_piece(monkeypatch):
    spec = model_spec_for("gru", 64, 10, input_shape=(8, 8, 1))
    w = random_weights(spec, 28)
    X = np.random.default_rng(29).normal(size=(37, 8, 8))
    whole = ref.forward(spec, w, X)
    assert ref._chunk(spec) > 37
    monkeypatch.setattr(ref, "_PATCH_BUDGET", 8 * (9 * 64 + 8) * 5)  # 5 samples per chunk
    assert ref._chunk(spec) == 5
    np.testing.assert_allclose(ref.forward(spec, w, X), whole, rtol=1e-14, atol=1e-15)
