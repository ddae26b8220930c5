"""Tests of keras_models: parity with the float64 numpy reference (forward pass, one step, one
epoch with every optimizer, in float32 and float64, per-step losses), the canonical layout edge,
Keras's traps (`fit` shuffling, running-mean `logs["loss"]`, float32 lr and losses under a
float32 floatx, dropout's `training` flag), dropout semantics, and accuracy floors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import TOL, load, max_diff, scaled_tol, spec_for

from keras_models import linear, logistic, mlp, softmax, svm
from keras_models import train as K
from keras_models.optimizers import make_optimizer
from zoo import data, reference
from zoo.errors import ConfigError
from zoo.optimizers import OPTIMIZERS, OptimizerSpec
from zoo.specs import ModelSpec, TrainSpec, dropout_masks, init_weights, model_spec_for

MODULES = {"softmax": softmax, "svm": svm, "linear": linear, "logistic": logistic, "mlp": mlp}
#: the dataset each model is trained on in these tests
DATASET = {"softmax": "digits", "svm": "digits", "mlp": "digits", "logistic": "breast_cancer",
           "linear": "icecream"}
#: parametrisation ids carry the framework: test_forward[keras-softmax-float32]
MODEL_IDS = [pytest.param(m, id=f"keras-{m}") for m in MODULES]
#: largest absolute difference vs the float64 reference, by dtype
#: a moderate learning rate per optimizer for one-epoch parity runs
LR = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "rmsprop": 0.005,
      "centered_rmsprop": 0.005, "adam": 0.005, "adagrad": 0.05}


def run_both(model: str, ts: TrainSpec, dataset: str | None = None, *, n: int | None = None,
             record_weights: bool = False):
    """Train `model` with Keras and with the float64 reference from the same initial weights."""
    ds = load(dataset or DATASET[model], ts.dtype)
    spec = spec_for(model, ds)
    X, y = ds.X_train[:n], ds.y_train[:n]
    init = init_weights(spec, seed=1, dtype=ts.dtype)
    got = K.train(spec, ts, X, y, init, record_weights=record_weights)
    want = reference.train(spec, ts, X, y, init, record_weights=record_weights)
    return got, want


# ----------------------------------------------------------------------------- model files
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", MODEL_IDS)
def test_forward(model: str, dtype: str) -> None:
    """Identical weights give the reference's outputs (logits, or values) with no dropout."""
    ds = load(DATASET[model], dtype)
    spec = spec_for(model, ds)
    w = init_weights(spec, seed=3, dtype=dtype)
    net = MODULES[model].build(spec, w, dtype)
    X = ds.X_test
    got = np.asarray(net(X))
    want = reference.forward(spec, w, X)
    assert got.dtype == np.dtype(dtype)
    assert got.shape == want.shape == (len(X), spec.n_outputs)
    assert np.abs(got - want).max() <= scaled_tol(dtype, want)


@pytest.mark.parametrize("model", MODEL_IDS)
def test_weights_round_trip_and_layout(model: str) -> None:
    ds = load(DATASET[model])
    spec = spec_for(model, ds)
    w = init_weights(spec, seed=2)
    net = MODULES[model].build(spec, w)
    got = MODULES[model].get_weights(net)
    assert list(got) == list(w)  # dense_0/kernel, dense_0/bias, dense_1/kernel, ...
    assert max_diff(got, w) == 0.0
    # get_weights follows model.weights order (what Keras's own get_weights returns)
    assert [v.shape for v in got.values()] == [tuple(v.shape) for v in net.weights]
    # a torch-layout (out, in) kernel is refused with a hint (the MLP's dense_0 is 64x64 on
    # digits: a square kernel has the same shape in both layouts, so take a non-square one)
    name = next(k for k, v in w.items() if k.endswith("kernel") and v.shape[0] != v.shape[1])
    bad = dict(w, **{name: w[name].T})
    with pytest.raises(ConfigError, match="torch's"):
        MODULES[model].set_weights(net, bad)
    with pytest.raises(ConfigError, match="missing"):
        MODULES[model].set_weights(net, {"dense_0/kernel": w["dense_0/kernel"]})


@pytest.mark.parametrize("model", MODEL_IDS)
def test_default_initialiser_is_keras_glorot(model: str) -> None:
    """Without init, Keras's own default stays: glorot-uniform kernels, zero biases."""
    spec = spec_for(model, load(DATASET[model]))
    w = MODULES[model].get_weights(MODULES[model].build(spec))
    for (n_in, n_out), i in zip([(k.shape) for n, k in w.items() if n.endswith("kernel")],
                                range(len(spec.hidden) + 1), strict=True):
        limit = np.sqrt(6.0 / (n_in + n_out))
        assert np.abs(w[f"dense_{i}/kernel"]).max() <= limit
        if n_in * n_out >= 30:  # enough draws to come near the limit
            assert np.abs(w[f"dense_{i}/kernel"]).max() > 0.8 * limit
        assert not w[f"dense_{i}/bias"].any()


def test_build_refuses_wrong_spec_and_dtype() -> None:
    spec = model_spec_for("svm", 4, 3)
    with pytest.raises(ConfigError, match="keras_models.svm.build"):
        softmax.build(spec)
    with pytest.raises(ConfigError, match="dtype"):
        svm.build(spec, dtype="float16")


def test_linear_is_seed_002_model() -> None:
    """Seed 002 builds Sequential + Input(shape=(3,)) + Dense(1) and compiles with loss="mse"."""
    spec = model_spec_for("linear", 3, 1)
    net = linear.build(spec)
    assert isinstance(net, keras.Sequential)
    assert net.input_shape == (None, 3) and net.output_shape == (None, 1)
    assert [layer.name for layer in net.layers] == ["dense_0"]
    y, p = np.array([[1.0], [2.0], [3.0]]), np.array([[1.5], [2.0], [1.0]], np.float32)
    assert float(linear.make_loss()(y, p)) == pytest.approx(float(np.mean(
        keras.losses.get("mse")(y, p))))


def test_multiclass_hinge_is_cs231n_loss_not_categorical_hinge() -> None:
    """Seed 003: scores [-2.85, 0.86, 0.28] with class 2 correct give hinge loss 1.58.
    Keras's CategoricalHinge (Crammer-Singer) is a different loss."""
    scores = np.array([[-2.85, 0.86, 0.28]], np.float32)
    labels = np.array([2])
    got = float(svm.make_loss()(labels, scores))
    assert got == pytest.approx(1.58, abs=1e-6)  # seed 003's CS231n example
    assert got == pytest.approx(reference.hinge_loss(scores, labels), abs=1e-6)
    s2 = np.array([[1.0, 1.0, 0.0]], np.float32)  # two violating classes: 2 + 2 vs max = 2
    assert float(svm.make_loss()(labels, s2)) == pytest.approx(4.0)
    assert float(keras.losses.CategoricalHinge()(np.eye(3)[labels], s2)) == pytest.approx(2.0)


# ----------------------------------------------------------------------------- training parity
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", MODEL_IDS)
def test_one_step(model: str, dtype: str) -> None:
    """One SGD step on one batch of 32, with L2: loss before the step and the new weights."""
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=1, batch_size=32, dtype=dtype, l2=0.01)
    got, want = run_both(model, ts, n=32)
    assert len(got.losses) == 1
    assert abs(got.losses[0] - want.losses[0]) <= scaled_tol(dtype, want.losses)
    assert max_diff(got.weights, want.weights) <= scaled_tol(dtype, want.weights)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dataset", ["iris", "digits"])
@pytest.mark.parametrize("model", [pytest.param(m, id=f"keras-{m}") for m in ("softmax", "svm", "mlp")])
def test_epoch_sgd(model: str, dataset: str, dtype: str) -> None:
    """One shuffled epoch of SGD (batch 32, partial last batch, shared dropout masks for the MLP):
    every per-step loss and the final weights agree with the reference."""
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.05), epochs=1, batch_size=32, dtype=dtype, seed=5)
    got, want = run_both(model, ts, dataset)
    assert len(got.losses) == len(want.losses) == -(-len(load(dataset).X_train) // 32)
    assert np.abs(got.losses - want.losses).max() <= TOL[dtype]
    assert max_diff(got.weights, want.weights) <= TOL[dtype]
    assert got.framework == "keras" and len(got.epoch_seconds) == 1
    assert all(v.dtype == np.dtype(dtype) for v in got.weights.values())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", [pytest.param(m, id=f"keras-{m}") for m in ("linear", "logistic")])
def test_epoch_sgd_regression_and_binary(model: str, dtype: str) -> None:
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.01), epochs=1, batch_size=32, dtype=dtype, seed=2,
                   l2=0.001)
    got, want = run_both(model, ts)
    assert np.abs(got.losses - want.losses).max() <= scaled_tol(dtype, want.losses)
    assert max_diff(got.weights, want.weights) <= scaled_tol(dtype, want.weights)


@pytest.mark.parametrize("opt", [pytest.param(o, id=f"keras-{o}") for o in OPTIMIZERS])
def test_epoch_every_optimizer_float32(opt: str) -> None:
    """softmax on digits, one epoch, float32: within 1e-6 of the reference for every optimizer."""
    ts = TrainSpec(OptimizerSpec(opt, lr=LR[opt]), epochs=1, batch_size=32, seed=3)
    got, want = run_both("softmax", ts, "digits")
    assert np.abs(got.losses - want.losses).max() <= TOL["float32"]
    assert max_diff(got.weights, want.weights) <= TOL["float32"]


@pytest.mark.parametrize("opt", [pytest.param(o, id=f"keras-{o}") for o in OPTIMIZERS])
def test_epoch_every_optimizer_mlp_float64(opt: str) -> None:
    """The MLP with shared dropout and L2 on digits, one epoch, float64: within 1e-12."""
    ts = TrainSpec(OptimizerSpec(opt, lr=LR[opt]), epochs=1, batch_size=64,
                   seed=4, dtype="float64", l2=1e-3)
    got, want = run_both("mlp", ts, "digits")
    assert np.abs(got.losses - want.losses).max() <= TOL["float64"]
    assert max_diff(got.weights, want.weights) <= TOL["float64"]


def test_float64_momentum_is_exact(monkeypatch) -> None:
    """Keras's SGD does `ops.cast(self.momentum, variable.dtype)`, which turns a Python float
    into a float32 tensor first: given 0.9 a float64 run would use 0.899999976 and leave the
    float64 reference by ~1e-9 per epoch (Adagrad's `Constant(initial_accumulator_value)` does
    the same to 0.1). `keras_models.optimizers` passes np.float64 values, so it agrees."""
    import keras_models.optimizers

    ts = TrainSpec(OptimizerSpec("momentum", lr=0.02, momentum=0.9), epochs=1, batch_size=32,
                   dtype="float64")
    got, want = run_both("softmax", ts, "iris")
    assert max_diff(got.weights, want.weights) <= TOL["float64"]
    monkeypatch.setattr(keras_models.optimizers, "_FLOAT_ARGS", ())  # Python floats, as given
    got, want = run_both("softmax", ts, "iris")
    assert 1e-11 < max_diff(got.weights, want.weights) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("model", MODEL_IDS)
def test_epoch_full_matrix(model: str, opt: str, dtype: str) -> None:
    ts = TrainSpec(OptimizerSpec(opt, lr=LR[opt] / 5), epochs=1, batch_size=32,
                   dtype=dtype, l2=1e-3)
    got, want = run_both(model, ts)
    assert np.abs(got.losses - want.losses).max() <= scaled_tol(dtype, want.losses)
    assert max_diff(got.weights, want.weights) <= scaled_tol(dtype, want.weights)


def test_step_weights_and_progress_follow_every_step() -> None:
    ts = TrainSpec(OptimizerSpec("momentum", lr=0.02), epochs=2, batch_size=50, seed=1)
    ds = load("iris")
    spec = spec_for("softmax", ds)
    init = init_weights(spec, seed=1)
    calls: list[tuple[int, int, float]] = []
    got = K.train(spec, ts, ds.X_train, ds.y_train, init, record_weights=True,
                  progress=lambda e, s, loss: calls.append((e, s, loss)))
    want = reference.train(spec, ts, ds.X_train, ds.y_train, init, record_weights=True)
    assert [(e, s) for e, s, _ in calls] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert np.array_equal([c[2] for c in calls], got.losses)
    assert len(got.step_weights) == 6 and len(got.epoch_seconds) == 2
    for g, w in zip(got.step_weights, want.step_weights, strict=True):
        assert max_diff(g, w) <= TOL["float32"]


def test_steps_per_execution_gives_identical_results() -> None:
    """Several steps per tf.function call: same losses and weights, bit for bit."""
    ds = load("digits")
    spec = spec_for("mlp", ds)
    init = init_weights(spec, seed=1)
    # 1437 samples: batch 60 gives 24 steps per epoch (8 divides it), batch 100 gives 15
    # (8 does not: 5 per execution are used, see train._divisor_at_most)
    for batch_size in (60, 100):
        ts = TrainSpec(OptimizerSpec("adam", lr=0.01), epochs=3, batch_size=batch_size, seed=2)
        one = K.train(spec, ts, ds.X_train, ds.y_train, init)
        many = K.train(spec, ts, ds.X_train, ds.y_train, init, steps_per_execution=8)
        assert len(many.losses) == 3 * -(-len(ds.X_train) // batch_size)
        assert np.array_equal(one.losses, many.losses)
        assert max_diff(one.weights, many.weights) == 0.0
    assert K._divisor_at_most(15, 8) == 5 and K._divisor_at_most(23, 8) == 1
    with pytest.raises(ConfigError, match="steps_per_execution"):
        K.train(spec, ts, ds.X_train, ds.y_train, init, steps_per_execution=4,
                record_weights=True)


def test_non_finite_loss_stops_training() -> None:
    ds = load("icecream")
    spec = spec_for("linear", ds)
    ts = TrainSpec(OptimizerSpec("sgd", lr=50.0), epochs=5, batch_size=32)
    got = K.train(spec, ts, ds.X_train, ds.y_train, init_weights(spec))
    assert got.stopped_at is not None
    assert len(got.losses) == got.stopped_at + 1
    assert not np.isfinite(got.losses[-1]) and np.isfinite(got.losses[:-1]).all()
    assert len(got.losses) < 5 * -(-len(ds.X_train) // 32)


def test_floatx_is_restored_and_float64_lr_is_exact() -> None:
    assert keras.config.floatx() == "float32"
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=1, batch_size=500, dtype="float64")
    run_both("softmax", ts, "iris")
    assert keras.config.floatx() == "float32"
    # the fact the floatx switch is for: under float32 floatx the lr variable is float32
    assert float(keras.optimizers.SGD(learning_rate=0.1).learning_rate.numpy()) != 0.1
    assert float(make_optimizer(OptimizerSpec("sgd", lr=0.1), "float64")
                 .learning_rate.numpy()) == 0.1


# ----------------------------------------------------------------------------- Keras's traps
def test_batches_are_the_shared_batch_order() -> None:
    ds = load("iris")
    spec = spec_for("mlp", ds)
    ts = TrainSpec(OptimizerSpec(), epochs=3, batch_size=32, seed=9)
    batches = K.ZooBatches(spec, ts, ds.X_train, ds.y_train, masks=True)
    assert len(batches) == 3 * 4
    for k in (0, 3, 4, 11):
        epoch, step = divmod(k, 4)
        idx = data.batch_order(len(ds.X_train), 32, 9, epoch)[step]
        (x, *masks), y = batches[k]
        assert np.array_equal(x, ds.X_train[idx]) and np.array_equal(y, ds.y_train[idx])
        for m, want in zip(masks, dropout_masks(spec, len(idx), 9, epoch, step), strict=True):
            assert np.array_equal(m, want)


@pytest.mark.parametrize("shuffle", [True, False])
def test_tf_data_batches_equal_the_pydataset(shuffle) -> None:
    ds = load("iris")  # 120 rows, batch 32: three full batches and one of 24 per epoch
    ts = TrainSpec(OptimizerSpec(), epochs=4, batch_size=32, seed=9, shuffle=shuffle)
    spec = spec_for("softmax", ds)
    for start in (0, 2):  # a resumed run starts at its epoch
        served = [(x.numpy(), y.numpy()) for x, y in K.order_dataset(ts, ds.X_train, ds.y_train, start)]
        want = K.ZooBatches(spec, ts, ds.X_train, ds.y_train, masks=False, start_epoch=start)
        assert len(served) == len(want) == 4 * (4 - start)
        assert [len(y) for _, y in served[:4]] == [32, 32, 32, 24]
        for (x, y), k in zip(served, range(len(want)), strict=True):
            wx, wy = want[k]
            assert np.array_equal(x, wx) and np.array_equal(y, wy)
    assert len(list(K.order_dataset(ts, ds.X_train, ds.y_train, start_epoch=4))) == 0  # finished


def test_plain_fit_shuffles_and_logs_a_running_mean() -> None:
    """Why train.py uses a PyDataset and records losses itself: `fit(X, y)` shuffles by
    default, and `logs["loss"]` is the epoch's batch-size-weighted running mean."""
    ds = load("iris")
    spec = spec_for("softmax", ds)
    init = init_weights(spec, seed=1)
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=1, batch_size=50, shuffle=False)
    want = reference.train(spec, ts, ds.X_train, ds.y_train, init)  # batches 50, 50, 20

    def plain_fit(**kw) -> tuple[dict, list[float]]:
        net = softmax.build(spec, init)
        net.compile(loss=softmax.make_loss(), optimizer=keras.optimizers.SGD(learning_rate=0.1))
        logged: list[float] = []
        cb = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda b, logs: logged.append(float(logs["loss"])))
        keras.utils.set_random_seed(0)
        net.fit(ds.X_train, ds.y_train, batch_size=50, epochs=1, verbose=0, callbacks=[cb], **kw)
        return softmax.get_weights(net), logged

    shuffled, _ = plain_fit()
    ordered, logged = plain_fit(shuffle=False)
    assert max_diff(shuffled, want.weights) > 1e-3
    assert max_diff(ordered, want.weights) <= TOL["float32"]
    running = np.cumsum(want.losses * [50, 50, 20]) / np.cumsum([50, 50, 20])
    assert np.abs(np.array(logged) - running).max() <= 1e-6
    assert np.abs(np.array(logged)[1:] - want.losses[1:]).max() > 1e-3
    got = K.train(spec, ts, ds.X_train, ds.y_train, init)
    assert np.abs(got.losses - want.losses).max() <= 1e-6


# ----------------------------------------------------------------------------- dropout
def test_dropout_training_flag_and_predict_is_identity() -> None:
    """Keras Dropout is random only with training=True; predict/evaluate and direct calls
    (training=None) never drop; the shared masks apply whatever the flag."""
    ds = load("digits")
    spec = spec_for("mlp", ds)
    w = init_weights(spec, seed=1)
    net = mlp.build(spec, w)
    X = ds.X_test[:200]
    clean = reference.forward(spec, w, X)
    # logits reach ~12 on digits (some standardised pixels reach 53): float32 rounding alone
    # is then a few 1e-6 absolute, hence the tolerance relative to the logits' magnitude
    tol = scaled_tol("float32", clean)
    assert np.abs(net.predict(X, verbose=0) - clean).max() <= tol
    assert np.abs(np.asarray(net(X)) - clean).max() <= tol
    assert np.abs(np.asarray(net(X, training=False)) - clean).max() <= tol
    assert np.abs(np.asarray(net(X, training=True)) - clean).max() > 0.1
    assert np.abs(K.predict(spec, w, X) - reference.softmax(clean)).max() <= TOL["float32"]
    masks = dropout_masks(spec, len(X), 0, 0, 0)
    shared = reference.forward(spec, w, X, masks)
    for flag in (True, False, None):
        got = np.asarray(net((X, *masks), training=flag))
        assert np.abs(got - shared).max() <= scaled_tol("float32", shared)


def test_native_dropout_keeps_one_minus_p_and_scales() -> None:
    spec = model_spec_for("mlp", 64, 10, dropout=0.3)
    net = mlp.build(spec)
    layer = net.dropout_layers[0]
    out = np.asarray(layer(np.ones((400, 64), np.float32), training=True))
    kept = out != 0
    assert kept.mean() == pytest.approx(0.7, abs=0.02)
    assert np.allclose(out[kept], 1 / 0.7)
    assert np.array_equal(np.asarray(layer(np.ones((4, 64), np.float32), training=False)),
                          np.ones((4, 64), np.float32))


def test_dropout_modes_in_training() -> None:
    """shared == reference with masks; off == reference without dropout; native trains with
    Keras's own masks (different from both, still learning)."""
    ds = load("digits")
    spec = spec_for("mlp", ds)
    init = init_weights(spec, seed=1)
    base = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=2, batch_size=64, seed=1)
    off = dataclasses.replace(base, dropout_mode="off")
    got_off = K.train(spec, off, ds.X_train, ds.y_train, init)
    want_off = reference.train(dataclasses.replace(spec, dropout=0.0), off, ds.X_train,
                               ds.y_train, init)
    assert max_diff(got_off.weights, want_off.weights) <= TOL["float32"]
    shared = K.train(spec, base, ds.X_train, ds.y_train, init)
    native = K.train(spec, dataclasses.replace(base, dropout_mode="native"), ds.X_train,
                     ds.y_train, init)
    assert max_diff(native.weights, shared.weights) > 1e-3
    assert max_diff(native.weights, got_off.weights) > 1e-3
    assert np.isfinite(native.losses).all() and native.losses[-5:].mean() < native.losses[:5].mean()


# ----------------------------------------------------------------------------- predict / evaluate
@pytest.mark.parametrize("model", MODEL_IDS)
def test_predict_and_evaluate_match_reference(model: str) -> None:
    ds = load(DATASET[model])
    spec = spec_for(model, ds)
    w = init_weights(spec, seed=4)
    z = reference.forward(spec, w, ds.X_test)
    probs = K.predict(spec, w, ds.X_test)
    result = K.evaluate(spec, w, ds.X_test, ds.y_test)
    if spec.task == "regression":
        assert np.abs(probs - z).max() <= scaled_tol("float32", z)
        want = reference.mse(z, ds.y_test)
        assert result.keys() == {"loss", "mse"}
        assert result["loss"] == pytest.approx(want, rel=1e-5)
        assert result["mse"] == pytest.approx(want, rel=1e-5)
        return
    if spec.task == "binary":
        assert probs.shape == (len(z), 1)
        assert np.abs(probs - reference.sigmoid(z)).max() <= TOL["float32"]
        want = reference.binary_cross_entropy_with_logits(z, ds.y_test)
        acc = np.mean((z.ravel() > 0) == ds.y_test)
    else:
        assert np.abs(probs - reference.softmax(z)).max() <= TOL["float32"]
        assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        want = (reference.hinge_loss(z, ds.y_test) if model == "svm"
                else reference.cross_entropy_with_logits(z, ds.y_test))
        acc = np.mean(z.argmax(axis=1) == ds.y_test)
    assert result.keys() == {"loss", "accuracy"}
    assert result["loss"] == pytest.approx(want, rel=1e-5)
    assert result["accuracy"] == pytest.approx(acc, abs=1e-6)  # a float32 metric, < 1/N


def test_predict_float64_weights_stay_float64() -> None:
    ds = load("iris", "float64")
    spec = spec_for("softmax", ds)
    w = init_weights(spec, seed=4, dtype="float64")
    probs = K.predict(spec, w, ds.X_test)
    assert probs.dtype == np.float64
    assert np.abs(probs - reference.softmax(reference.forward(spec, w, ds.X_test))).max() <= 1e-12


# ----------------------------------------------------------------------------- accuracy floors
def _fit(model: str, dataset: str, ts: TrainSpec) -> tuple[ModelSpec, dict, data.Dataset]:
    ds = load(dataset)
    spec = spec_for(model, ds)
    hist = K.train(spec, ts, ds.X_train, ds.y_train, init_weights(spec, seed=0),
                   steps_per_execution=16)
    return spec, hist.weights, ds


def test_accuracy_iris_softmax() -> None:
    spec, w, ds = _fit("softmax", "iris", TrainSpec(OptimizerSpec("sgd", lr=0.2), epochs=40,
                                                    batch_size=16))
    acc = K.evaluate(spec, w, ds.X_test, ds.y_test)["accuracy"]
    assert acc >= 0.93


def test_accuracy_digits_softmax() -> None:
    spec, w, ds = _fit("softmax", "digits", TrainSpec(OptimizerSpec("sgd", lr=0.1),
                                                      epochs=20, batch_size=32))
    assert K.evaluate(spec, w, ds.X_test, ds.y_test)["accuracy"] >= 0.95


def test_accuracy_breast_cancer_logistic() -> None:
    spec, w, ds = _fit("logistic", "breast_cancer",
                       TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=30, batch_size=64))
    assert K.evaluate(spec, w, ds.X_test, ds.y_test)["accuracy"] >= 0.95


def test_icecream_linear_recovers_seed_002_coefficients() -> None:
    """sales = 10*temperature - 2*humidity + 20*discount + 4, within 2% after undoing the
    standardisation (fitted here on the raw train split, as zoo.data does)."""
    raw = load("icecream", "float64", "none")
    mean, std = raw.X_train.mean(axis=0), raw.X_train.std(axis=0)
    X = ((raw.X_train - mean) / std).astype(np.float32)
    spec = spec_for("linear", raw)
    # full-batch gradient descent: with standardised features MSE's Hessian is about 2 I, so
    # lr 0.4 contracts the error by ~0.2 per step
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.4), epochs=60, batch_size=len(X))
    w = K.train(spec, ts, X, raw.y_train.astype(np.float32), init_weights(spec)).weights
    coef = w["dense_0/kernel"].ravel().astype(np.float64) / std
    intercept = float(w["dense_0/bias"][0]) - float(coef @ mean)
    got = np.r_[coef, intercept]
    want = np.r_[data.ICECREAM_COEFFICIENTS, data.ICECREAM_INTERCEPT]
    assert np.all(np.abs(got - want) <= 0.02 * np.abs(want)), got


# ----------------------------------------------------------------------------- architecture
def test_keras_models_import_neither_torch_nor_tf1_compat() -> None:
    code = ("import sys; import keras_models.train, keras_models.softmax, keras_models.svm, "
            "keras_models.linear, keras_models.logistic, keras_models.mlp; "
            "bad = [m for m in ('torch', 'tf1_compat', 'torch_models') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
