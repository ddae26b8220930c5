"""Tests of keras_models: parity with the float64 numpy reference (forward pass, one step, one
epoch with every optimizer, in float32 and float64, per-step losses), the canonical layout edge,
Keras's traps (`fit` shuffling, running-mean `logs["loss"]`, float32 lr and losses under a
float32 floatx, dropout's `training` flag), dropout semantics, and accuracy floors; then the
layer-list models (cnn, lenet, nielsen) staged against the reference: names and shapes, forward,
one step's loss and gradients, one epoch with every optimizer."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import TOL, load, max_diff, model_inputs, optimizer_params, scaled_tol, spec_for

from keras_models import model as M
from keras_models import train as K
from keras_models.optimizers import make_optimizer
from zoo import data, reference
from zoo.errors import ConfigError
from zoo.optimizers import OPTIMIZERS, OptimizerSpec
from zoo.specs import ModelSpec, TrainSpec, dropout_masks, init_weights, model_spec_for

#: the dataset each dense model is trained on in these tests
DATASET = {"softmax": "digits", "svm": "digits", "mlp": "digits", "logistic": "breast_cancer",
           "linear": "icecream"}
#: parametrisation ids carry the framework: test_forward[keras-softmax-float32]
MODEL_IDS = [pytest.param(m, id=f"keras-{m}") for m in DATASET]
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
    net = M.build(spec, w, dtype)
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
    net = M.build(spec, w)
    got = M.get_weights(net)
    assert list(got) == list(w)  # dense_0/kernel, dense_0/bias, dense_1/kernel, ...
    assert max_diff(got, w) == 0.0
    # get_weights follows model.weights order (what Keras's own get_weights returns)
    assert [v.shape for v in got.values()] == [tuple(v.shape) for v in net.weights]
    # a torch-layout (out, in) kernel is refused with a hint (the MLP's dense_0 is 64x64 on
    # digits: a square kernel has the same shape in both layouts, so take a non-square one)
    name = next(k for k, v in w.items() if k.endswith("kernel") and v.shape[0] != v.shape[1])
    bad = dict(w, **{name: w[name].T})
    with pytest.raises(ConfigError, match="torch's"):
        M.set_weights(net, bad)
    with pytest.raises(ConfigError, match="missing"):
        M.set_weights(net, {"dense_0/kernel": w["dense_0/kernel"]})


@pytest.mark.parametrize("model", MODEL_IDS)
def test_default_initialiser_is_keras_glorot(model: str) -> None:
    """Without init, Keras's own default stays: glorot-uniform kernels, zero biases."""
    spec = spec_for(model, load(DATASET[model]))
    w = M.get_weights(M.build(spec))
    for (n_in, n_out), i in zip([(k.shape) for n, k in w.items() if n.endswith("kernel")],
                                range(len(spec.hidden) + 1), strict=True):
        limit = np.sqrt(6.0 / (n_in + n_out))
        assert np.abs(w[f"dense_{i}/kernel"]).max() <= limit
        if n_in * n_out >= 30:  # enough draws to come near the limit
            assert np.abs(w[f"dense_{i}/kernel"]).max() > 0.8 * limit
        assert not w[f"dense_{i}/bias"].any()


def test_build_refuses_wrong_dtype() -> None:
    spec = model_spec_for("svm", 4, 3)
    with pytest.raises(ConfigError, match="dtype must be 'float32' or 'float64', got 'float16'"):
        M.build(spec, dtype="float16")


def test_linear_is_seed_002_model() -> None:
    """Seed 002 builds Sequential + Input(shape=(3,)) + Dense(1) and compiles with loss="mse":
    the zoo's model is that one Dense layer, named dense_0, and its loss is Keras's mse."""
    spec = model_spec_for("linear", 3, 1)
    net = M.build(spec)
    assert [layer.name for layer in net.layers] == ["dense_0"]
    assert isinstance(net.layers[0], keras.layers.Dense) and net.layers[0].units == 1
    assert net(np.zeros((5, 3), np.float32)).shape == (5, 1)
    assert [v.path for v in net.weights] == ["dense_0/kernel", "dense_0/bias"]
    y, p = np.array([[1.0], [2.0], [3.0]]), np.array([[1.5], [2.0], [1.0]], np.float32)
    assert isinstance(M.make_loss(spec), keras.losses.MeanSquaredError)
    assert float(M.make_loss(spec)(y, p)) == pytest.approx(float(np.mean(
        keras.losses.get("mse")(y, p))))


def test_multiclass_hinge_is_cs231n_loss_not_categorical_hinge() -> None:
    """Seed 003: scores [-2.85, 0.86, 0.28] with class 2 correct give hinge loss 1.58.
    Keras's CategoricalHinge (Crammer-Singer) is a different loss."""
    scores = np.array([[-2.85, 0.86, 0.28]], np.float32)
    labels = np.array([2])
    hinge = M.make_loss(model_spec_for("svm", 4, 3))
    got = float(hinge(labels, scores))
    assert got == pytest.approx(1.58, abs=1e-6)  # seed 003's CS231n example
    assert got == pytest.approx(reference.hinge_loss(scores, labels), abs=1e-6)
    s2 = np.array([[1.0, 1.0, 0.0]], np.float32)  # two violating classes: 2 + 2 vs max = 2
    assert float(hinge(labels, s2)) == pytest.approx(4.0)
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
    # 1437 samples: batch 60 gives 24 steps per epoch (8 divides it), batch 100 gives 15 (5
    # per execution, `train._divisor_at_most`) and batch 63 gives 23, a prime (an iterator per
    # epoch, 8 per execution, the last of each epoch running the 7 left: `_plan_executions`)
    for batch_size in (60, 63, 100):
        ts = TrainSpec(OptimizerSpec("adam", lr=0.01), epochs=3, batch_size=batch_size, seed=2)
        one = K.train(spec, ts, ds.X_train, ds.y_train, init, steps_per_execution=1)
        many = K.train(spec, ts, ds.X_train, ds.y_train, init, steps_per_execution=8)
        assert len(many.losses) == 3 * -(-len(ds.X_train) // batch_size)
        assert np.array_equal(one.losses, many.losses)
        assert max_diff(one.weights, many.weights) == 0.0
    assert K._divisor_at_most(15, 8) == 5 and K._divisor_at_most(23, 8) == 1
    assert K._plan_executions(15, 8) == (5, False) and K._plan_executions(23, 8) == (8, True)
    assert K._plan_executions(250, 256) == (250, False) and K._plan_executions(271, 256) == (
        256, True)
    # every step's weights are recorded inside the compiled step and every step's progress
    # is reported, whatever the steps per execution (the default picks several)
    # (batch 63, 7 per execution: an iterator per epoch, three executions of 7 and one of 2)
    calls = {1: [], 5: [], 7: []}
    rec = {spe: K.train(spec, ts, ds.X_train, ds.y_train, init, steps_per_execution=spe,
                        record_weights=True, progress=lambda e, s, v, c=calls[spe]: c.append(
                            (e, s, v))) for spe in (1, 5)}
    ts63 = dataclasses.replace(ts, batch_size=63)
    rec63 = {spe: K.train(spec, ts63, ds.X_train, ds.y_train, init, steps_per_execution=spe,
                          record_weights=True, progress=lambda e, s, v, c=calls[spe]: c.append(
                              (e, s, v))) for spe in (1, 7)}
    assert calls[1][45:] == calls[7] and len(calls[7]) == 69 and calls[7][23][:2] == (1, 0)
    assert calls[1][:45] == calls[5] and len(calls[5]) == 45 and calls[5][15][:2] == (1, 0)
    assert len(rec[5].step_weights) == 45 and len(rec63[7].step_weights) == 69
    for one, many in ((rec[1], rec[5]), (rec63[1], rec63[7])):
        assert all(max_diff(a, b) == 0.0 for a, b in zip(one.step_weights, many.step_weights,
                                                          strict=True))
        assert np.array_equal(one.losses, many.losses)
    strided = K.train(spec, ts, ds.X_train, ds.y_train, init, steps_per_execution=5,
                      record_weights=4)
    assert [max_diff(w, rec[1].step_weights[4 * j + 3]) for j, w in
            enumerate(strided.step_weights)] == [0.0] * 11
    with pytest.raises(ConfigError, match="steps_per_execution"):
        K.train(spec, ts, ds.X_train, ds.y_train, init, steps_per_execution=0)


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
    for start, per_epoch in ((0, False), (2, False), (0, True), (2, True)):  # resumed: from start
        dataset, epoch = K.order_dataset(ts, ds.X_train, ds.y_train, start, per_epoch=per_epoch)
        if per_epoch:
            assert int(dataset.cardinality()) == 4
            served = []
            for e in range(4 - start):   # an iterator per epoch, pointed at it as fit does
                epoch.assign(e)
                served += [(x.numpy(), y.numpy()) for x, y in dataset]
        else:
            assert epoch is None
            served = [(x.numpy(), y.numpy()) for x, y in dataset]
        want = K.ZooBatches(spec, ts, ds.X_train, ds.y_train, masks=False, start_epoch=start)
        assert len(served) == len(want) == 4 * (4 - start)
        assert [len(y) for _, y in served[:4]] == [32, 32, 32, 24]
        for (x, y), k in zip(served, range(len(want)), strict=True):
            wx, wy = want[k]
            assert np.array_equal(x, wx) and np.array_equal(y, wy)


def test_plain_fit_shuffles_and_logs_a_running_mean() -> None:
    """Why train.py uses a PyDataset and records losses itself: `fit(X, y)` shuffles by
    default, and `logs["loss"]` is the epoch's batch-size-weighted running mean."""
    ds = load("iris")
    spec = spec_for("softmax", ds)
    init = init_weights(spec, seed=1)
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=1, batch_size=50, shuffle=False)
    want = reference.train(spec, ts, ds.X_train, ds.y_train, init)  # batches 50, 50, 20

    def plain_fit(**kw) -> tuple[dict, list[float]]:
        net = M.build(spec, init)
        net.compile(loss=M.make_loss(spec), optimizer=keras.optimizers.SGD(learning_rate=0.1))
        logged: list[float] = []
        cb = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda b, logs: logged.append(float(logs["loss"])))
        keras.utils.set_random_seed(0)
        net.fit(ds.X_train, ds.y_train, batch_size=50, epochs=1, verbose=0, callbacks=[cb], **kw)
        return M.get_weights(net), logged

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
    net = M.build(spec, w)
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
    net = M.build(spec)
    layer = net.get_layer("dropout_0")
    assert isinstance(layer, keras.layers.Dropout) and layer.rate == 0.3
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
    code = ("import sys; import keras_models.train, keras_models.model, keras_models.layers, "
            "keras_models.io, keras_models.checkpoint, keras_models.distributed; "
            "bad = [m for m in ('torch', 'tf1_compat', 'torch_models') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- layer-list models
#: the layer-list models, the data they are staged on (digits as 8x8x1 images, digits upsampled
#: to 28x28x1 for LeNet, digits flat for seed 001's 64-30-10 network) and how many samples
LAYER_MODELS = {"cnn": ("digits", 300), "lenet": ("digits28", 160), "nielsen": ("digits", 300)}
LAYER_IDS = [pytest.param(m, id=f"keras-{m}") for m in LAYER_MODELS]
#: the optimizers of the one-epoch stage
STAGE_OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adagrad")


def layer_case(model: str, dtype: str) -> tuple[ModelSpec, np.ndarray, np.ndarray]:
    """(spec, X in the model's input shape, y) of a layer-list model's staged tests."""
    name, n = LAYER_MODELS[model]
    ds = load(name, dtype)
    spec = spec_for(model, ds)
    return spec, model_inputs(ds.X_train[:n], spec), ds.y_train[:n]


@pytest.mark.parametrize("model", LAYER_IDS)
def test_layer_model_names_and_shapes(model: str) -> None:
    """Stage 1: one Keras layer per canonical layer, named as it; every variable's path and
    shape is the weight table's (`spec.weight_shapes()`), in model order; weights round-trip."""
    spec, X, _ = layer_case(model, "float32")
    w = init_weights(spec, seed=2)
    net = M.build(spec, w)
    assert [layer.name for layer in net.layers] == [r.name for r in spec.resolved]
    kinds = {"dense": keras.layers.Dense, "conv2d": keras.layers.Conv2D,
             "max_pool2d": keras.layers.MaxPooling2D, "flatten": keras.layers.Flatten,
             "activation": keras.layers.Activation}
    for layer, r in zip(net.layers, spec.resolved, strict=True):
        assert isinstance(layer, kinds[r.kind]), (layer, r)
        if r.kind == "conv2d":
            assert (layer.filters, layer.kernel_size, layer.strides, layer.padding) == \
                (r.layer.filters, r.layer.kernel_size, r.layer.strides, r.layer.padding)
            assert layer.data_format == "channels_last"
    assert {v.path: tuple(v.shape) for v in net.weights} == spec.weight_shapes()
    assert [v.path for v in net.weights] == list(spec.weight_shapes())
    got = M.get_weights(net)
    assert list(got) == list(spec.weight_shapes()) and max_diff(got, w) == 0.0
    assert net(X[:3]).shape == (3, spec.n_outputs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", LAYER_IDS)
def test_layer_model_forward(model: str, dtype: str) -> None:
    """Stage 2: identical weights give the reference's raw outputs (float64 within 1e-12) and
    `predict` gives its output kind (softmax, or every unit's sigmoid for nielsen)."""
    spec, X, _ = layer_case(model, dtype)
    w = init_weights(spec, seed=3, dtype=dtype)
    got = np.asarray(M.build(spec, w, dtype)(X))
    want = reference.forward(spec, w, X)
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape == (len(X), spec.n_outputs)
    assert np.abs(got - want).max() <= scaled_tol(dtype, want)
    probs = K.predict(spec, w, X)
    assert np.abs(probs - reference.predict(spec, w, X)).max() <= TOL[dtype]
    if model == "nielsen":
        assert np.abs(probs - reference.sigmoid(want)).max() <= TOL[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", LAYER_IDS)
def test_layer_model_loss_and_gradients(model: str, dtype: str) -> None:
    """Stage 3: one batch's loss (L2 on the Dense and Conv2D kernels included) and the gradient
    of every canonical tensor, from Keras's own loss and autodiff, equal the reference's
    hand-derived ones (float64 within 1e-12)."""
    spec, X, y = layer_case(model, dtype)
    w = init_weights(spec, seed=4, dtype=dtype)
    got = K.step_details(spec, w, X[:32], y[:32], l2=0.01)
    want = reference.step_details(spec, w, X[:32], y[:32], l2=0.01)
    assert list(got["grads"]) == list(spec.weight_shapes())
    assert abs(got["loss"] - want["loss"]) <= scaled_tol(dtype, want["loss"])
    assert np.abs(got["logits"] - want["logits"]).max() <= scaled_tol(dtype, want["logits"])
    assert max_diff(got["grads"], want["grads"]) <= scaled_tol(dtype, want["grads"])
    assert all(g.dtype == np.dtype(dtype) for g in got["grads"].values())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", optimizer_params(STAGE_OPTIMIZERS))
@pytest.mark.parametrize("model", LAYER_IDS)
def test_layer_model_epoch(model: str, opt: str, dtype: str) -> None:
    """Stage 4: one shuffled epoch (batch 32, partial last batch, L2 1e-3) with each optimizer
    at half the dense models' learning rate: every per-step loss and the final weights agree
    with the reference (float64 within 1e-12, float32 within 1e-6 times the weights' magnitude
    when it exceeds 1: nielsen's N(0, 1) weights reach 3.75).

    Float32 holds here because no ReLU input of these runs comes within rounding of zero.
    Elsewhere it may, and then one float32 step differs by a whole gradient term (measured):
    cnn on the first 300 digits with SGD lr 0.05, seed 3, put a conv2d_1 pre-activation of
    8.8e-9 on the other side of zero at step 3 (the float32 and float64 weights 3.5e-8 apart
    then) and its float32 weights left the reference by 1.5e-4; LeNet at the full rates left it
    by 3.4e-5 (momentum) and 1.2e-6 (RMSprop, whose first step is ~3 lr per weight). Float64
    runs stay within 1e-15 in every case."""
    spec, X, y = layer_case(model, dtype)
    init = init_weights(spec, seed=1, dtype=dtype)
    ts = TrainSpec(OptimizerSpec(opt, lr=LR[opt] / 2), epochs=1, batch_size=32, seed=5,
                   dtype=dtype, l2=1e-3)
    got = K.train(spec, ts, X, y, init)
    want = reference.train(spec, ts, X, y, init)
    assert len(got.losses) == len(want.losses) == -(-len(X) // 32)
    assert np.abs(got.losses - want.losses).max() <= scaled_tol(dtype, want.losses)
    assert max_diff(got.weights, want.weights) <= scaled_tol(dtype, want.weights)
    assert all(v.dtype == np.dtype(dtype) for v in got.weights.values())


def test_image_model_refuses_flat_input_and_the_reverse() -> None:
    """An image model given flat features (or a flat model given images) fails before any
    Keras work with `zoo.specs.check_inputs`'s message, which says how to reshape."""
    ds = load("digits")
    cnn, mlp = spec_for("cnn", ds), spec_for("mlp", ds)
    X, y = ds.X_train[:40], ds.y_train[:40]
    flat = ("keras_models: model 'cnn' takes images (8, 8, 1) per sample, got flat features "
            "(64); reshape with X.reshape(-1, 8, 8, 1).")
    images = ("keras_models: model 'mlp' takes flat features (64) per sample, got images "
              "(8, 8, 1); flatten with X.reshape(len(X), -1).")
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=1, batch_size=32)
    for call in (lambda: K.train(cnn, ts, X, y, init_weights(cnn)),
                 lambda: K.predict(cnn, init_weights(cnn), X),
                 lambda: K.evaluate(cnn, init_weights(cnn), X, y),
                 lambda: K.step_details(cnn, init_weights(cnn), X, y)):
        with pytest.raises(ConfigError) as err:
            call()
        assert str(err.value) == flat
    with pytest.raises(ConfigError) as err:
        K.train(mlp, ts, X.reshape(-1, 8, 8, 1), y, init_weights(mlp))
    assert str(err.value) == images


def test_keras_file_holds_the_spec(tmp_path) -> None:
    """A `.keras` file of any model is one registered `ZooModel` whose config is the spec:
    `load_model(safe_mode=True)` rebuilds the right model (layers, shapes, weights) from the
    zoo's layer table, and a sidecar recording another model is refused."""
    import json
    import zipfile

    from keras_models import io as kio
    from zoo import interchange as ic
    from zoo.errors import DataError

    spec, X, _ = layer_case("cnn", "float32")
    w = init_weights(spec, seed=6)
    path = tmp_path / "cnn.keras"
    kio.save(spec, w, path)
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
    assert config["registered_name"] == "zoo>ZooModel"
    assert config["config"]["spec"] == spec.to_dict()
    net = keras.models.load_model(path, safe_mode=True, compile=False)
    assert isinstance(net, M.ZooModel) and net.model_spec == spec
    assert [layer.name for layer in net.layers] == [r.name for r in spec.resolved]
    assert max_diff(M.get_weights(net), w) == 0.0
    assert np.array_equal(np.asarray(net(X)), np.asarray(M.build(spec, w)(X)))
    spec2, w2 = kio.load(path)
    assert spec2 == spec and max_diff(w2, w) == 0.0
    # an MLP file whose sidecar records the MLP without dropout: the same tensors, another
    # model; the spec inside the file tells them apart
    mlp = model_spec_for("mlp", 64, 10)
    mpath = tmp_path / "mlp.keras"
    kio.save(mlp, init_weights(mlp), mpath)
    nodrop = dataclasses.replace(mlp, dropout=0.0)
    ic.write_sidecar("keras", nodrop, init_weights(nodrop), mpath)
    with pytest.raises(DataError, match="does not fit its sidecar"):
        kio.load(mpath)


@pytest.mark.slow
def test_mirrored_cnn_equals_one_process() -> None:
    """The MirroredStrategy path feeds NHWC image shards: the cnn on 2 replicas (shards of 16
    rows, the last batch of 22 split 11/11) equals one process, float64 within 1e-12 (slow: a
    TensorFlow subprocess; tests/test_distributed.py covers the path with the MLP)."""
    from keras_models import distributed

    spec, X, y = layer_case("cnn", "float64")
    X, y = X[:150], y[:150]
    init = init_weights(spec, seed=1, dtype="float64")
    ts = TrainSpec(OptimizerSpec("adam", lr=0.01), epochs=1, batch_size=32, dtype="float64",
                   l2=1e-3)
    two = distributed.train(spec, ts, X, y, init, workers=2)
    one = K.train(spec, ts, X, y, init)
    assert two.extra["workers"] == 2 and len(two.losses) == len(one.losses) == 5
    assert np.abs(two.losses - one.losses).max() <= TOL["float64"]
    assert max_diff(two.weights, one.weights) <= TOL["float64"]
    assert max_diff(one.weights, init) > 1e-2


def test_accuracy_digits_images_cnn() -> None:
    """The cnn on digits as 8x8x1 images, Adam lr 1e-2, 5 epochs: held-out accuracy >= 0.95
    (measured 0.975, ~5 s)."""
    ds = load("digits")
    spec = spec_for("cnn", ds)
    ts = TrainSpec(OptimizerSpec("adam", lr=1e-2), epochs=5, batch_size=32)
    hist = K.train(spec, ts, model_inputs(ds.X_train, spec), ds.y_train,
                   init_weights(spec, seed=0), steps_per_execution=16)
    result = K.evaluate(spec, hist.weights, model_inputs(ds.X_test, spec), ds.y_test)
    assert result["accuracy"] >= 0.95
