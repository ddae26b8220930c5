"""Golden values from the seeds, in every framework and in the float64 numpy reference.

Each framework is reached through its own model modules' losses (the code the zoo trains
with) and its own softmax; the numpy reference in `zoo.reference` is the fourth column.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import torch

from zoo import reference as ref
from zoo.optimizers import OptimizerSpec
from zoo.specs import ModelSpec, TrainSpec, init_weights, model_spec_for

FRAMEWORKS = ["numpy", "keras", "tf1", "torch"]
#: Keras losses compute in floatx (float32) even for float64 inputs; the others keep float64.
TOL = {"numpy": 1e-12, "keras": 1e-6, "tf1": 1e-12, "torch": 1e-12}


# ----------------------------------------------------------------------------- adapters
def softmax(fw: str, z: list[float]) -> np.ndarray:
    z2 = np.asarray([z], np.float64)
    if fw == "numpy":
        return ref.softmax(z2)[0]
    if fw == "keras":
        import keras

        return keras.ops.convert_to_numpy(keras.ops.softmax(z2, axis=-1))[0]
    if fw == "tf1":
        g = tf.Graph()
        with g.as_default():
            x = tf.compat.v1.placeholder(tf.float64, [None, len(z)])
            out = tf.nn.softmax(x)
        with tf.compat.v1.Session(graph=g) as sess:
            return sess.run(out, {x: z2})[0]
    return torch.softmax(torch.from_numpy(z2), dim=-1).numpy()[0]


def _spec(model: str, logits) -> ModelSpec:
    """A one-layer spec whose loss is `model`'s (softmax or svm) for len(logits) classes."""
    return ModelSpec(model, len(logits), len(logits))


def loss_and_logit_grad(fw: str, model: str, logits: list[float], label: int
                        ) -> tuple[float, np.ndarray]:
    """The model's own loss of one sample (mean over a batch of one) and d loss / d logits."""
    z = np.asarray([logits], np.float64)
    y = np.asarray([label], np.int64)
    if fw == "numpy":
        spec = ModelSpec(model, len(logits), len(logits))
        w = {"dense_0/kernel": np.eye(len(logits)), "dense_0/bias": np.zeros(len(logits))}
        loss, grads = ref.loss_and_grads(spec, w, z, y)
        return loss, grads["dense_0/bias"]  # with an identity layer, d/d bias = d/d logits
    if fw == "keras":
        import importlib

        mod = importlib.import_module("keras_models.model")
        zt = tf.Variable(z)
        with tf.GradientTape() as tape:
            loss = mod.make_loss(_spec(model, logits))(y, zt)
        return float(loss), tape.gradient(loss, zt).numpy()[0]
    if fw == "tf1":
        import importlib

        mod = importlib.import_module("tf1_compat.model")
        g = tf.Graph()
        with g.as_default():
            zp = tf.compat.v1.placeholder(tf.float64, [None, len(logits)])
            yp = tf.compat.v1.placeholder(tf.int64, [None])
            loss = mod.make_loss(_spec(model, logits))(zp, yp)
            grad = tf.compat.v1.gradients(loss, zp)[0]
        with tf.compat.v1.Session(graph=g) as sess:
            lv, gv = sess.run([loss, grad], {zp: z, yp: y})
        return float(lv), gv[0]
    import importlib

    mod = importlib.import_module("torch_models.model")
    zt = torch.tensor(z, requires_grad=True)
    loss = mod.make_loss(_spec(model, logits))(zt, torch.from_numpy(y))
    loss.backward()
    return loss.item(), zt.grad.numpy()[0]


# ----------------------------------------------------------------------------- softmax
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_softmax_seed_004(fw):
    # seed 004: softmax([5, 2, -1, 3]) = [0.842, 0.042, 0.002, 0.114] (printed to 3 decimals)
    p = softmax(fw, [5, 2, -1, 3])
    np.testing.assert_allclose(p, [0.842, 0.042, 0.002, 0.114], atol=5e-4)
    e = np.exp([5, 2, -1, 3])
    np.testing.assert_allclose(p, e / e.sum(), rtol=1e-12)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_softmax_seed_002(fw):
    # seed 002 prints softmax([0.4, 0.6, 0.2]) = [0.32893292 0.40175958 0.2693075]
    p = softmax(fw, [0.4, 0.6, 0.2])
    np.testing.assert_allclose(p, [0.32893292, 0.40175958, 0.2693075], atol=5e-9)
    np.testing.assert_allclose(p.round(4), [0.3289, 0.4018, 0.2693])


# ----------------------------------------------------------------------------- losses
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_cross_entropy_seed_004(fw):
    # seed 004: y = [0, 1, 0, 0], y_hat = [0.3, 0.2, 0.1, 0.4] -> L = -log(0.2). Logits log(y_hat)
    # have softmax y_hat exactly, so the logits-based loss must give the same number.
    y_hat = np.array([0.3, 0.2, 0.1, 0.4])
    loss, grad = loss_and_logit_grad(fw, "softmax", list(np.log(y_hat)), 1)
    assert loss == pytest.approx(-math.log(0.2), abs=TOL[fw])
    assert ref.cross_entropy([0, 1, 0, 0], y_hat) == pytest.approx(-math.log(0.2), abs=1e-15)
    # seeds 000 and 004: dL/dz = y_hat - y, by autodiff against the formula
    np.testing.assert_allclose(grad, y_hat - np.array([0, 1, 0, 0]), atol=TOL[fw])


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_cs231n_scores_seed_003(fw):
    # seed 003 (CS231n): scores [-2.85, 0.86, 0.28], third class correct.
    scores = [-2.85, 0.86, 0.28]
    hinge, _ = loss_and_logit_grad(fw, "svm", scores, 2)
    # max(0, -2.85 - 0.28 + 1) + max(0, 0.86 - 0.28 + 1) = 0 + 1.58
    assert hinge == pytest.approx(1.58, abs=TOL[fw])
    ce, grad = loss_and_logit_grad(fw, "softmax", scores, 2)
    assert ce == pytest.approx(1.04, abs=5e-3)  # natural log: 1.04 nats
    assert ce / math.log(10) == pytest.approx(0.452, abs=5e-4)  # what the seed printed (log10)
    p = ref.softmax(np.array(scores))
    assert ref.cross_entropy([0, 0, 1], p, base=10) == pytest.approx(0.452, abs=5e-4)
    assert p[2] == pytest.approx(0.353, abs=5e-4)  # seed 003: "ground truth class 0.353"
    np.testing.assert_allclose(grad, p - np.array([0, 0, 1]), atol=TOL[fw])


@pytest.mark.parametrize("fw", ["numpy", "keras", "tf1", "torch"])
def test_hinge_gradient(fw):
    # d/ds_j = 1 for every active margin j != y, and d/ds_y = -(number of active margins)
    _, grad = loss_and_logit_grad(fw, "svm", [-2.85, 0.86, 0.28], 2)
    np.testing.assert_allclose(grad, [0.0, 1.0, -1.0], atol=TOL[fw])


# ----------------------------------------------------------------------------- models
def _train_module(fw: str):
    import importlib

    if fw == "numpy":
        return ref
    pkg = {"keras": "keras_models", "tf1": "tf1_compat", "torch": "torch_models"}[fw]
    return importlib.import_module(f"{pkg}.train")


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_initial_loss_is_log_c_for_small_weights(fw):
    # seed 003: with small random weights the first softmax loss is about ln C
    from zoo import data

    ds = data.load("digits")
    spec = model_spec_for("softmax", ds.n_features, ds.n_outputs)
    init = {k: (v * 1e-4).astype(np.float32) for k, v in init_weights(spec, 0).items()}
    hist = _train_module(fw).train(spec, TrainSpec(OptimizerSpec("sgd", lr=0.01), batch_size=256),
                                   ds.X_train[:256], ds.y_train[:256], init)
    assert hist.losses[0] == pytest.approx(math.log(10), abs=2e-3)


@pytest.mark.parametrize("fw", ["keras", "tf1", "torch"])
def test_softmax_with_two_classes_is_logistic_regression(fw):
    # seed 004: softmax regression with C = 2 gives the same predictions as logistic regression
    from zoo import data

    ds = data.load("breast_cancer")
    soft = model_spec_for("softmax", ds.n_features, 2)
    logi = model_spec_for("logistic", ds.n_features, 1)
    w = init_weights(soft, 3)
    # p(class 1) = softmax(z)[1] = sigmoid(z1 - z0): logistic weights are the difference
    wl = {"dense_0/kernel": (w["dense_0/kernel"][:, 1:] - w["dense_0/kernel"][:, :1]),
          "dense_0/bias": np.array([0.5], np.float32)}
    w["dense_0/bias"] = np.array([0.0, 0.5], np.float32)
    mod = _train_module(fw)
    ps = mod.predict(soft, w, ds.X_test)
    pl = mod.predict(logi, wl, ds.X_test)
    assert ps.shape == (len(ds.X_test), 2) and pl.shape == (len(ds.X_test), 1)
    np.testing.assert_allclose(ps[:, 1], pl[:, 0], atol=1e-6)
    np.testing.assert_array_equal(ps.argmax(1), (pl[:, 0] > 0.5).astype(int))
