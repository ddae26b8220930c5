"""Keras 3 BatchNorm and LayerNorm (`keras_models.layers`): the translation of the canonical
layers (names, trainable and state variables, both modes against numpy formulas, float64 kept
in float64, the unbiased moving variance), the models cnn_bn and mlp_ln against the float64
reference (one epoch with sgd, momentum and adam; predict; step_details), the moving
statistics through divergence, checkpoints and `.keras` files, the data-parallel path
(synchronised statistics: two workers equal one process), and three measured traps: calling
the model instead of `predict`, Keras's epsilon against torch's, torch's momentum written in
Keras's convention."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from helpers import TOL, load, max_diff, model_inputs, spec_for
from keras import ops

from keras_models import io as kio
from keras_models import layers as KL
from keras_models import model as M
from keras_models import train as K
from zoo import layers as zl
from zoo import reference
from zoo.errors import ConfigError
from zoo.optimizers import OptimizerSpec
from zoo.specs import TrainSpec, init_weights

N = 320  # digits images per run: 10 steps of 32
LR = {"sgd": 0.1, "momentum": 0.05, "adam": 0.01}
MODELS = ("cnn_bn", "mlp_ln")


def _data(model: str, dtype: str = "float32", n: int = N):
    ds = load("digits", dtype)
    spec = spec_for(model, ds)
    return spec, model_inputs(ds.X_train[:n], spec), ds.y_train[:n]


def _ts(optimizer: str = "sgd", dtype: str = "float32", epochs: int = 1, batch: int = 32):
    return TrainSpec(OptimizerSpec(optimizer, lr=LR[optimizer]), epochs=epochs,
                     batch_size=batch, seed=0, dtype=dtype)


def _state(w: dict) -> dict:
    return {k: v for k, v in w.items() if "moving" in k}


def _varied(spec, dtype: str, seed: int = 5) -> dict:
    """init weights with gamma, beta and the moving statistics away from 1, 0, 0, 1, so that a
    test sees a mix-up of any of them."""
    rng = np.random.default_rng(seed)
    w = init_weights(spec, 0, dtype)
    for k in w:
        if k.endswith(("/gamma", "/moving_variance")):
            w[k] = rng.uniform(0.5, 2.0, w[k].shape).astype(dtype)
        elif k.endswith(("/beta", "/moving_mean")):
            w[k] = rng.uniform(-0.5, 0.5, w[k].shape).astype(dtype)
    return w


def _bn_layer(dtype: str, channels: int = 4, **kw):
    """The Keras layer of a lone canonical BatchNorm on (8, 8, channels) images, built."""
    (r,) = zl.resolve([zl.BatchNorm(**kw)], (8, 8, channels))
    layer = KL.keras_layer(r, dtype)
    layer.build((None, 8, 8, channels))
    return layer


# ----------------------------------------------------------------------------- translation
def test_variables_are_the_weight_table_with_its_trainable_flags():
    for model in MODELS:
        spec, _, _ = _data(model)
        net = M.build(spec, init_weights(spec, 0))
        table = zl.tensor_specs(spec.resolved)
        assert [v.path for v in net.weights] == [t.name for t in table]
        assert [v.trainable for v in net.weights] == [t.trainable for t in table]
        # the optimizer gets Keras's trainable variables: never the moving statistics
        assert [v.path for v in net.trainable_variables] == \
            list(spec.weight_shapes(trainable=True))
        assert [v.path for v in M.penalised_variables(net)] == \
            [t.name for t in table if t.penalised]  # kernels only: never gamma or beta
    spec, _, _ = _data("cnn_bn")
    net = M.build(spec)
    assert not any(layer.use_bias for layer in net.zoo_layers
                   if isinstance(layer, keras.layers.Conv2D))
    bn = net.get_layer("batch_norm_0")
    assert type(bn) is keras.layers.BatchNormalization and (bn.momentum, bn.epsilon) == \
        (0.99, 1e-3)
    # the initialisers of the table (only used without canonical weights)
    w = M.get_weights(net)
    assert np.all(w["batch_norm_0/gamma"] == 1) and np.all(w["batch_norm_0/moving_variance"] == 1)
    assert np.all(w["batch_norm_0/beta"] == 0) and np.all(w["batch_norm_0/moving_mean"] == 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_both_modes_against_the_numpy_formulas(dtype):
    """Inference normalises with the moving statistics and changes nothing; training
    normalises with the batch mean and BIASED variance and then moves the statistics by
    Keras's convention, moving = momentum * moving + (1 - momentum) * batch value."""
    layer = _bn_layer(dtype, momentum=0.9, epsilon=1e-3)
    rng = np.random.default_rng(0)
    gamma, beta = rng.uniform(0.5, 2, 4), rng.uniform(-1, 1, 4)
    mm, mv = rng.uniform(-1, 1, 4), rng.uniform(0.5, 2, 4)
    for v, a in zip(layer.weights, (gamma, beta, mm, mv), strict=True):
        v.assign(a.astype(dtype))
    x = (3.0 + 2.0 * rng.standard_normal((6, 8, 8, 4))).astype(dtype)
    x64 = x.astype(np.float64)
    tol = 1e-5 if dtype == "float32" else 1e-13

    got = np.asarray(layer(x, training=False))
    want = gamma * (x64 - mm) / np.sqrt(mv + 1e-3) + beta
    assert got.dtype == np.dtype(dtype) and np.abs(got - want).max() <= tol
    assert np.array_equal(np.asarray(layer.moving_mean), mm.astype(dtype))  # untouched

    got = np.asarray(layer(x, training=True))
    mean, var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))  # biased: / N*H*W
    want = gamma * (x64 - mean) / np.sqrt(var + 1e-3) + beta
    assert np.abs(got - want).max() <= tol
    assert np.abs(np.asarray(layer.moving_mean) - (0.9 * mm + 0.1 * mean)).max() <= tol
    assert np.abs(np.asarray(layer.moving_variance) - (0.9 * mv + 0.1 * var)).max() <= tol


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layer_norm_against_the_numpy_formula(dtype):
    (r,) = zl.resolve([zl.LayerNorm(epsilon=1e-3)], (16,))
    layer = KL.keras_layer(r, dtype)
    layer.build((None, 16))
    rng = np.random.default_rng(1)
    gamma, beta = rng.uniform(0.5, 2, 16), rng.uniform(-1, 1, 16)
    layer.gamma.assign(gamma.astype(dtype))
    layer.beta.assign(beta.astype(dtype))
    x = (2.0 + rng.standard_normal((5, 16))).astype(dtype)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(1, keepdims=True), x64.var(1, keepdims=True)  # per sample, biased
    want = gamma * (x64 - mean) / np.sqrt(var + 1e-3) + beta
    tol = 1e-5 if dtype == "float32" else 1e-13
    for training in (False, True):  # no state: the same in both modes
        got = np.asarray(layer(x, training=training))
        assert got.dtype == np.dtype(dtype) and np.abs(got - want).max() <= tol


def test_float64_momentum_and_epsilon_are_not_rounded_to_float32():
    """Keras keeps momentum and epsilon as Python floats, which TensorFlow multiplies into a
    float64 tensor exactly: the moving mean after one update equals numpy's float64 formula to
    the last bits, while float32(0.99) would be 9.5e-9 away relatively (here ~1e-8)."""
    layer = _bn_layer("float64", momentum=0.99)
    rng = np.random.default_rng(2)
    mm = rng.uniform(1, 2, 4)
    layer.moving_mean.assign(mm)
    x = 5.0 + rng.standard_normal((6, 8, 8, 4))
    layer(x, training=True)
    mean = x.mean(axis=(0, 1, 2))
    got = np.asarray(layer.moving_mean)
    assert got.dtype == np.float64
    assert np.abs(got - (0.99 * mm + (1 - 0.99) * mean)).max() <= 1e-15 * 5
    m32 = float(np.float32(0.99))
    rounded = m32 * mm + (1 - m32) * mean
    assert np.abs(rounded - got).max() > 1e-8  # what a float32 momentum would have done
    # epsilon: the output in inference mode is float64-exact too
    out = np.asarray(layer(x, training=False))
    want = (x - got) / np.sqrt(np.asarray(layer.moving_variance) + 1e-3)
    assert np.abs(out - want).max() <= 1e-14


# ----------------------------------------------------------------------------- unbiased
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unbiased_moving_variance_eager_and_in_a_graph_with_a_dynamic_batch(dtype):
    """moving_variance="unbiased": Keras's biased update, corrected by the zoo's one
    compensation, gives momentum * before + (1 - momentum) * var * m / (m - 1); in a
    tf.function with an unknown batch size too (the count is a tensor there)."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    x = (1.0 + 2.0 * rng.standard_normal((6, 8, 8, 4))).astype(dtype)
    x64 = x.astype(np.float64)
    m = 6 * 8 * 8
    want = 0.9 * 1.0 + 0.1 * x64.var(axis=(0, 1, 2)) * m / (m - 1)
    tol = 1e-6 if dtype == "float32" else 1e-15
    eager = _bn_layer(dtype, momentum=0.9, moving_variance="unbiased")
    assert type(eager) is KL.ZooBatchNormalization
    eager(x, training=True)
    assert np.abs(np.asarray(eager.moving_variance) - want).max() <= tol

    graph = _bn_layer(dtype, momentum=0.9, moving_variance="unbiased")
    step = tf.function(lambda t: graph(t, training=True),
                       input_signature=[tf.TensorSpec((None, 8, 8, 4), dtype)])
    step(x)
    assert np.array_equal(np.asarray(graph.moving_variance), np.asarray(eager.moving_variance))
    # the biased layer for comparison: the correction is what differs
    biased = _bn_layer(dtype, momentum=0.9)
    biased(x, training=True)
    assert np.abs(np.asarray(biased.moving_variance) - want).max() > 1e-4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tensor_count_gives_corrected_moving_variance_to_the_last_bit(dtype):
    rng = np.random.default_rng(4)
    before = rng.uniform(0.5, 2, 7).astype(dtype)
    after = rng.uniform(0.5, 2, 7).astype(dtype)
    for count in (2, 3, 64, 2048, 100003):
        want = zl.corrected_moving_variance(before, after, count, 0.99, "biased", "unbiased")
        got = KL._unbiased(ops.convert_to_tensor(before), ops.convert_to_tensor(after),
                           ops.convert_to_tensor(np.int32(count)), 0.99)
        assert np.asarray(want).dtype == np.dtype(dtype)
        assert np.array_equal(np.asarray(got), want), count


def test_unbiased_refuses_a_batch_of_one_value_per_channel():
    (r,) = zl.resolve([zl.BatchNorm(moving_variance="unbiased")], (3,))
    layer = KL.keras_layer(r, "float32")
    layer.build((None, 3))
    with pytest.raises(ConfigError, match="one value per channel has no unbiased variance"):
        layer(np.ones((1, 3), np.float32), training=True)
    layer(np.ones((1, 3), np.float32), training=False)  # inference needs no batch variance


def test_zoo_batch_normalization_saves_and_loads_with_safe_mode(tmp_path):
    layer = KL.ZooBatchNormalization(moving_variance="unbiased", momentum=0.9, name="bn")
    net = keras.Sequential([keras.Input((4,)), layer])
    net(np.random.default_rng(0).standard_normal((8, 4)).astype("float32"), training=True)
    net.save(tmp_path / "bn.keras")
    back = keras.models.load_model(tmp_path / "bn.keras", safe_mode=True)
    (bn,) = back.layers
    assert type(bn) is KL.ZooBatchNormalization and bn.moving_variance_kind == "unbiased"
    assert bn.momentum == 0.9
    for a, b in zip(net.weights, back.weights, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="moving_variance must be one of biased, unbiased"):
        KL.ZooBatchNormalization(moving_variance="bessel")


# ----------------------------------------------------------------------------- the models
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", MODELS)
def test_forward_in_both_modes_against_the_reference(model, dtype):
    spec, X, y = _data(model, dtype)
    w = _varied(spec, dtype)
    net = M.build(spec, w, dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12
    want = reference.forward(spec, w, X[:64])  # inference: the moving statistics
    assert np.abs(np.asarray(net(X[:64])) - want).max() <= tol
    train_mode = reference.step_details(spec, w, X[:64], y[:64])["logits"]
    assert np.abs(np.asarray(net(X[:64], training=True)) - train_mode).max() <= tol
    if model == "cnn_bn":
        assert np.abs(train_mode - want).max() > 0.1  # the modes do differ


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", MODELS)
def test_one_epoch_equals_the_reference_weights_and_moving_statistics(model, dtype, optimizer):
    spec, X, y = _data(model, dtype)
    ts = _ts(optimizer, dtype)
    init = init_weights(spec, 0, dtype)
    got = K.train(spec, ts, X, y, init)
    want = reference.train(spec, ts, X, y, init)
    tol = 1e-6 if dtype == "float32" else 1e-12
    assert list(got.weights) == list(want.weights)
    assert max_diff(got.weights, want.weights) <= tol
    assert np.abs(got.losses - want.losses).max() <= tol
    if model == "cnn_bn":
        assert max_diff(_state(got.weights), _state(init)) > 1e-3  # the statistics moved
    assert max_diff(got.weights, init) > 1e-2
    p = K.predict(spec, got.weights, X)
    assert np.abs(p - reference.predict(spec, want.weights, X)).max() <= 1e-6


def test_step_details_trains_the_statistics_and_grads_only_the_trained_tensors():
    spec, X, y = _data("cnn_bn", "float64")
    w = _varied(spec, "float64")
    got = K.step_details(spec, w, X[:32], y[:32], l2=0.01)
    want = reference.step_details(spec, w, X[:32], y[:32], l2=0.01)
    assert list(got["grads"]) == list(spec.weight_shapes(trainable=True))
    assert list(got["state"]) == list(spec.weight_shapes(trainable=False))
    assert np.abs(got["logits"] - want["logits"]).max() <= 1e-12
    assert abs(got["loss"] - want["loss"]) <= 1e-12
    assert max_diff(got["grads"], want["grads"]) <= 1e-12
    assert max_diff(got["state"], want["state"]) <= 1e-12
    assert max_diff(got["state"], _state(w)) > 1e-3  # this batch's update
    again = K.step_details(spec, w, X[:32], y[:32], l2=0.01)  # a fresh model: no leftovers
    assert max_diff(again["state"], got["state"]) == 0.0
    # no state: {} and inference mode (mlp_ln)
    spec, X, y = _data("mlp_ln", "float64")
    w = init_weights(spec, 0, "float64")
    got = K.step_details(spec, w, X[:32], y[:32])
    assert got["state"] == {}
    assert max_diff(got["grads"], reference.step_details(spec, w, X[:32], y[:32])["grads"]) \
        <= 1e-12


def test_dropout_false_keeps_keras_dropout_off_while_training_is_true():
    """What step_details uses for a model with state and Dropout but no shared masks."""
    ds = load("digits")
    spec = dataclasses.replace(spec_for("mlp_ln", ds), dropout=0.5)
    net = M.build(spec, init_weights(spec, 0))
    x = ds.X_train[:16]
    off = np.asarray(net(x, training=False))
    assert np.array_equal(np.asarray(net(x, training=True, dropout=False)), off)
    assert not np.array_equal(np.asarray(net(x, training=True)), off)  # Keras's own masks


def test_divergence_returns_the_weights_and_state_the_nonfinite_step_started_from():
    """The moving statistics change in the forward pass, before the loss: `RecordedLoss`
    copies them only after a finite loss, so the state the non-finite step started from
    comes back with the weights it started from (here some of those are already non-finite:
    in float32 step 2's update overflowed although its loss, computed before it, was finite;
    `step_weights` has them too)."""
    spec, X, y = _data("cnn_bn")
    ts = dataclasses.replace(_ts("sgd"), optimizer=OptimizerSpec("sgd", lr=1e6))
    init = init_weights(spec, 0)
    h = K.train(spec, ts, X, y, init, record_weights=True)
    assert h.stopped_at == 3, h.losses  # float32 overflows: step 2's update already did
    before = h.step_weights[h.stopped_at - 1]  # after the last step with a finite loss
    assert all(np.array_equal(h.weights[k], before[k], equal_nan=True) for k in before)
    assert all(np.all(np.isfinite(h.weights[k])) for k in before if k.endswith("moving_mean"))


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_keras_file_round_trip_carries_the_moving_statistics(dtype, tmp_path):
    spec, X, _ = _data("cnn_bn", dtype)
    w = _varied(spec, dtype)
    path = kio.save(spec, w, tmp_path / "m.keras")
    spec2, back = kio.load(path)
    assert spec2 == spec and list(back) == list(w)
    assert all(np.array_equal(back[k], w[k]) and back[k].dtype == w[k].dtype for k in w)
    assert np.array_equal(K.predict(spec, back, X[:50]), K.predict(spec, w, X[:50]))


# ----------------------------------------------------------------------------- data-parallel
def test_two_workers_with_synchronised_statistics_equal_one_process():
    """331 images at batch 32: a partial last batch of 11 rows, shards of 6 and 5. Measured:
    1.2e-7 synchronised; Keras's default per-replica statistics were 2.4e-2 away (moving
    variance 6.1e-3) after this epoch (320 images)."""
    from keras_models import distributed

    spec, X, y = _data("cnn_bn", n=331)
    ts = _ts("sgd")
    init = init_weights(spec, 0)
    one = K.train(spec, ts, X, y, init)
    two = distributed.train(spec, ts, X, y, init, workers=2, timeout=300.0)
    assert len(two.losses) == len(one.losses) == 11
    assert max_diff(two.weights, one.weights) <= TOL["float32"]
    assert max_diff(_state(two.weights), _state(one.weights)) <= TOL["float32"]
    assert np.abs(two.losses - one.losses).max() <= TOL["float32"]
    assert max_diff(_state(one.weights), _state(init)) > 1e-3


_SYNC_MOMENTS = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf, keras
    from keras_models.layers import ZooBatchNormalization
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(2)])
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    x = (100.0 + np.random.default_rng(0).standard_normal((11, 8, 8, 4))).astype("float32")
    shards = [x[:6], x[6:]]  # unequal shards
    out = {}
    for name, cls, kw in (("keras", keras.layers.BatchNormalization, {}),
                          ("zoo", ZooBatchNormalization, {}),
                          ("unbiased", ZooBatchNormalization, {"moving_variance": "unbiased"})):
        with strategy.scope():
            layer = cls(momentum=0.0, synchronized=True, **kw)
            layer.build((None, 8, 8, 4))
        data = strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(shards[ctx.replica_id_in_sync_group]))
        strategy.run(tf.function(lambda t: layer(t, training=True)), args=(data,))
        out[name] = [np.asarray(layer.moving_mean).tolist(),
                     np.asarray(layer.moving_variance).tolist()]
    print(json.dumps(out))
""")


def test_synchronised_moments_are_two_pass_over_unequal_shards():
    """Momentum 0 makes the moving statistics the batch's. Keras's synchronised moments give
    the true global mean over shards of 6 and 5 images (3e-5 off in float32 at 100; a mean of
    the shards' means would be 5.7e-3 off), but a one-pass E[x^2] - E[x]^2 variance that
    cancels for a channel mean of 100 (measured 6.8e-3 relative); `ZooBatchNormalization` is
    two-pass, as `tf.nn.moments` in one process (measured 2.9e-7), and its unbiased update
    counts the values of the global batch."""
    import json

    proc = subprocess.run([sys.executable, "-c", _SYNC_MOMENTS], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    x = (100.0 + np.random.default_rng(0).standard_normal((11, 8, 8, 4))).astype("float32")
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))
    for name in ("keras", "zoo", "unbiased"):
        assert np.abs(np.asarray(out[name][0]) - mean).max() <= 1e-4  # 100 * float32 eps
    keras_rel = np.abs(np.asarray(out["keras"][1]) - var).max() / var.min()
    zoo_rel = np.abs(np.asarray(out["zoo"][1]) - var).max() / var.min()
    assert zoo_rel <= 2e-6
    assert keras_rel > 1e-3, keras_rel
    # the unbiased update counts the global batch: 11 images of 8x8, not one shard's
    m = 11 * 8 * 8
    assert np.abs(np.asarray(out["unbiased"][1]) - var * m / (m - 1)).max() / var.min() <= 2e-6


# ----------------------------------------------------------------------------- measured traps
@pytest.fixture(scope="module")
def trained():
    """cnn_bn after one epoch on 320 images (SGD 0.1), and the test split."""
    spec, X, y = _data("cnn_bn")
    init = init_weights(spec, 0)
    h = K.train(spec, _ts("sgd"), X, y, init)
    ds = load("digits")
    return spec, init, h.weights, model_inputs(ds.X_test, spec), ds.y_test


def _acc(p, y) -> float:
    return float(np.mean(np.argmax(p, 1) == y))


def test_calling_the_model_in_training_mode_is_not_predict(trained):
    """`model(x)` is inference, like `predict`; `model(x, training=True)` normalises with the
    batch's statistics (measured: probabilities 0.63 away, accuracy 0.686 against predict's
    0.528 after this short run, whose moving statistics have barely moved with momentum
    0.99) AND moves the moving statistics (measured 8.4e-3)."""
    spec, _, w, Xt, yt = trained
    pred = K.predict(spec, w, Xt)
    net = M.build(spec, w)
    assert np.abs(np.asarray(ops.softmax(net(Xt), axis=-1)) - pred).max() <= 1e-6
    p_train = np.asarray(ops.softmax(net(Xt, training=True), axis=-1))
    assert np.abs(p_train - pred).max() > 0.3
    assert _acc(p_train, yt) != _acc(pred, yt)
    assert max_diff(_state(M.get_weights(net)), _state(w)) > 1e-3


def test_keras_epsilon_against_torch_epsilon(trained):
    """The same weights with epsilon 1e-5 (torch's default) instead of 1e-3 (Keras's, the
    canonical): measured 6.2e-4 in the inference probabilities here (moving variances near
    0.92), the same predicted classes; the gap grows as the variances shrink (1.9e-3 after
    10 epochs on all 1437 images, variances 0.23 to 0.72)."""
    spec, _, w, Xt, _ = trained
    net = M.build(spec, w)
    base = np.asarray(ops.softmax(net(Xt), axis=-1))
    for layer in net.zoo_layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.epsilon = 1e-5
    other = np.asarray(ops.softmax(net(Xt), axis=-1))
    assert 1e-4 < np.abs(other - base).max() < 1e-2


def test_torch_momentum_written_in_keras_convention(trained, monkeypatch):
    """momentum=0.1 (torch's default number, meaning 0.9 there) given to Keras keeps 10% of
    the old moving value instead of 99%: the trained tensors are identical (training
    normalises with batch statistics), the moving means end 0.92 away after this epoch
    (variances 0.76), and predict's accuracy moves (0.528 -> 0.703 here, as the short run's
    0.99 statistics lag)."""
    spec, init, w, Xt, yt = trained
    original = KL._batch_norm

    def torch_number(r, dtype, synchronized=False):
        return original(dataclasses.replace(r, layer=dataclasses.replace(r.layer, momentum=0.1)),
                        dtype, synchronized)

    monkeypatch.setattr(KL, "_batch_norm", torch_number)
    X, y = _data("cnn_bn")[1:]
    w01 = K.train(spec, _ts("sgd"), X, y, init).weights
    monkeypatch.undo()
    trained_only = [k for k in w if "moving" not in k]
    assert max_diff({k: w01[k] for k in trained_only}, {k: w[k] for k in trained_only}) == 0.0
    moving_means = [k for k in w if k.endswith("moving_mean")]
    assert max_diff({k: w01[k] for k in moving_means}, {k: w[k] for k in moving_means}) > 0.5
    assert _acc(K.predict(spec, w01, Xt), yt) != _acc(K.predict(spec, w, Xt), yt)
