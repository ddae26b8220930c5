"""Tests of the TF1 adapter for users' own models (`tf1_compat.own`): what `describe` reads
from realistic get_variable-based functions (MLP, convnet, batch norm by moments and by the
fused kernel with moving averages through UPDATE_OPS, layer norm, embedding), training
against the zoo's own TF1 loop from the same canonical weights and batches, the intercepted
and switchable dropout, the weights in and out, freezing, the non-finite stop, native
optimizers and losses, the optimizer audit and the errors that name their fix."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tf1_compat import own
from tf1_compat import train as T
from zoo.data import batch_order
from zoo.errors import ConfigError, DataError
from zoo.optimizers import OptimizerSpec
from zoo.own_types import OwnLoss, OwnOptimizer, TrainPlan
from zoo.specs import TrainSpec, init_weights, model_spec_for

tf1 = tf.compat.v1
ROOT = Path(__file__).resolve().parent.parent
#: per-step loss and weight agreement with the zoo's TF1 loop (measured: 0.0 in both)
AGREE = {"float32": 1e-6, "float64": 1e-12}


# ----------------------------------------------------------------------------- user models
def _dense(h, units, name, bias=True):
    with tf1.variable_scope(name):
        kernel = tf1.get_variable("kernel", [int(h.shape[-1]), units])
        if not bias:
            return tf.matmul(h, kernel)
        b = tf1.get_variable("bias", [units], initializer=tf1.zeros_initializer())
    return tf.matmul(h, kernel) + b


def mlp(x, training):
    """The zoo's mlp written as a TF1 user would: 64 -> dropout -> relu -> 32 -> dropout ->
    relu -> 10 (both dropout spellings)."""
    h = tf.nn.relu(tf.nn.dropout(_dense(x, 64, "dense_0"), rate=0.5))
    h = tf.nn.relu(tf1.nn.dropout(_dense(h, 32, "dense_1"), keep_prob=0.75))
    return _dense(h, 10, "dense_2")


def convnet(x):
    with tf1.variable_scope("conv1"):
        k = tf1.get_variable("kernel", [3, 3, 1, 4])
        b = tf1.get_variable("bias", [4], initializer=tf1.zeros_initializer())
    h = tf.nn.relu(tf.nn.bias_add(tf1.nn.conv2d(x, k, [1, 1, 1, 1], "SAME"), b))
    h = tf1.nn.max_pool2d(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    with tf1.variable_scope("conv2"):
        k2 = tf1.get_variable("kernel", [3, 3, 4, 8])
    h = tf.nn.relu(tf1.nn.conv2d(h, k2, [1, 2, 2, 1], "VALID"))   # 4x4 -> 1x1
    h = tf.reshape(h, [-1, 8])
    return tf.nn.softmax(_dense(h, 3, "dense"))


def _bn_variables(channels):
    gamma = tf1.get_variable("gamma", [channels], initializer=tf1.ones_initializer())
    beta = tf1.get_variable("beta", [channels], initializer=tf1.zeros_initializer())
    mean = tf1.get_variable("moving_mean", [channels], initializer=tf1.zeros_initializer(),
                            trainable=False)
    var = tf1.get_variable("moving_variance", [channels], initializer=tf1.ones_initializer(),
                           trainable=False)
    return gamma, beta, mean, var


def bn_net(x, training, decay=0.9):
    """Conv, batch norm written with tf.nn.moments (moving averages assigned through
    UPDATE_OPS, the statistics chosen by tf.cond on training), relu, flatten, dense."""
    with tf1.variable_scope("conv1"):
        k = tf1.get_variable("kernel", [3, 3, 1, 4])
    h = tf1.nn.conv2d(x, k, [1, 1, 1, 1], "SAME")
    with tf1.variable_scope("bn1"):
        gamma, beta, moving_mean, moving_var = _bn_variables(4)
        mean, var = tf.nn.moments(h, [0, 1, 2])
        for moving, batch in ((moving_mean, mean), (moving_var, var)):
            tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS,
                                  tf1.assign(moving, moving * decay + batch * (1 - decay)))
        m, v = tf1.cond(training, lambda: (mean, var),
                        lambda: (tf.identity(moving_mean), tf.identity(moving_var)))
        h = tf.nn.batch_normalization(h, m, v, beta, gamma, 1e-3)
    h = tf.reshape(tf.nn.relu(h), [-1, 8 * 8 * 4])
    return _dense(h, 3, "dense")


def fused_net(x, training):
    """Batch norm by the fused kernel: batch statistics in training, moving ones in
    inference, the moving mean by assign_sub (momentum 0.99), the variance by assign."""
    with tf1.variable_scope("conv1"):
        k = tf1.get_variable("kernel", [3, 3, 1, 4])
    h = tf1.nn.conv2d(x, k, [1, 1, 1, 1], "SAME")
    with tf1.variable_scope("bn"):
        gamma, beta, moving_mean, moving_var = _bn_variables(4)
        y_train, mean, var = tf1.nn.fused_batch_norm(h, gamma, beta, epsilon=1e-3,
                                                     is_training=True)
        y_infer, _, _ = tf1.nn.fused_batch_norm(h, gamma, beta, mean=moving_mean,
                                                variance=moving_var, epsilon=1e-3,
                                                is_training=False)
        tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS,
                              tf1.assign_sub(moving_mean, (moving_mean - mean) * 0.01))
        tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS,
                              tf1.assign(moving_var, 0.99 * moving_var + 0.01 * var))
        h = tf1.cond(training, lambda: y_train, lambda: y_infer)
    return _dense(tf.reshape(tf.nn.relu(h), [-1, 8 * 8 * 4]), 3, "dense")


def ln_net(x):
    h = _dense(x, 8, "d0")
    with tf1.variable_scope("ln"):
        gamma = tf1.get_variable("gamma", [8], initializer=tf1.ones_initializer())
        beta = tf1.get_variable("beta", [8], initializer=tf1.zeros_initializer())
    mean, var = tf.nn.moments(h, [-1], keepdims=True)
    h = tf.nn.batch_normalization(h, mean, var, beta, gamma, 1e-5)
    return tf.nn.log_softmax(_dense(tf.nn.relu(h), 3, "d1"))


def embedding_net(x):
    with tf1.variable_scope("embedding"):
        table = tf1.get_variable("embeddings", [10, 4])
    h = tf.nn.embedding_lookup(table, tf.cast(x, tf.int32))
    return tf.sigmoid(_dense(tf.reshape(h, [-1, 5 * 4]), 1, "out"))


def linear(x):
    return _dense(x, 1, "dense_0")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _images(n=12):
    return _rng(3).normal(size=(n, 8, 8, 1))


def _plan(spec, batches, dtype="float64", loss="crossentropy", **kw) -> TrainPlan:
    return TrainPlan(OwnLoss(loss), OwnOptimizer(spec=spec), batches, dtype=dtype, **kw)


def _kinds(d):
    return [f.kind for f in d.layers]


# ----------------------------------------------------------------------------- structure
def test_imports_tensorflow_and_zoo_only() -> None:
    tree = ast.parse((ROOT / "tf1_compat" / "own.py").read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
            for a in n.names}
    mods |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom)}
    assert mods - {"__future__", "copy", "heapq", "inspect", "math", "time", "collections",
                   "dataclasses", "typing"} == {"numpy", "tensorflow", "tf1_compat", "zoo"}


# ----------------------------------------------------------------------------- describe
def test_describe_mlp() -> None:
    X = _rng().normal(size=(6, 64))
    h = own.prepare(mlp, X, "float32")
    d = own.describe(h, X)
    assert d.framework == "tf1" and d.output == "logits" and d.image_layout is None
    assert _kinds(d) == ["dense", "dropout", "activation"] * 2 + ["dense"]
    dense = [f for f in d.layers if f.kind == "dense"]
    assert [f.name for f in dense] == ["dense_0", "dense_1", "dense_2"]
    assert [f.config["units"] for f in dense] == [64, 32, 10]
    assert all(f.config["use_bias"] and f.config["activation"] == "linear" for f in dense)
    assert dense[1].tensors == {"kernel": "dense_1/kernel", "bias": "dense_1/bias"}
    assert [f.config["rate"] for f in d.layers if f.kind == "dropout"] == [0.5, 0.25]
    assert [f.config["function"] for f in d.layers if f.kind == "activation"] == ["relu"] * 2
    assert [(f.input_shape, f.output_shape) for f in dense] == [((64,), (64,)), ((64,), (32,)),
                                                                 ((32,), (10,))]
    assert d.state == () and d.input_shape == (64,)


def test_describe_convnet() -> None:
    X = _images(4)
    h = own.prepare(convnet, X, "float32")
    d = own.describe(h, X)
    assert _kinds(d) == ["conv2d", "activation", "max_pool2d", "conv2d", "activation",
                         "flatten", "dense", "activation"]
    conv1, _, pool, conv2, _, flat, dense, soft = d.layers
    assert conv1.name == "conv1" and conv1.tensors == {"kernel": "conv1/kernel",
                                                       "bias": "conv1/bias"}
    assert {k: conv1.config[k] for k in ("filters", "kernel_size", "strides", "padding",
                                         "dilation", "groups", "use_bias")} == {
        "filters": 4, "kernel_size": (3, 3), "strides": (1, 1), "padding": "same",
        "dilation": (1, 1), "groups": 1, "use_bias": True}
    assert (conv2.config["strides"], conv2.config["padding"], conv2.config["use_bias"]) == \
        ((2, 2), "valid", False)
    assert (pool.config["pool_size"], pool.config["strides"], pool.config["padding"]) == \
        ((2, 2), (2, 2), "valid")
    assert (conv1.output_shape, pool.output_shape, conv2.output_shape) == \
        ((8, 8, 4), (4, 4, 4), (1, 1, 8))
    assert (flat.input_shape, flat.output_shape) == ((1, 1, 8), (8,))
    assert dense.config["units"] == 3 and soft.config["function"] == "softmax"
    assert d.output == "probabilities" and d.image_layout == "nhwc"


def test_batch_norm_by_moments_describe_and_update_ops() -> None:
    """Read: momentum 0.9 from the assign, epsilon 1e-3, the biased variance, every role;
    measured: one training step moves the moving statistics to 0.9 * old + 0.1 * the
    batch's (float64, within 1e-12), and both modes normalise as the formula says."""
    X = _images()
    y = _rng(1).integers(0, 3, len(X))
    h = own.prepare(bn_net, X, "float64")
    d = own.describe(h, X)
    assert _kinds(d) == ["conv2d", "batch_norm", "activation", "flatten", "dense"]
    bn = d.layers[1]
    assert bn.name == "bn1"
    assert bn.tensors == {"gamma": "bn1/gamma", "beta": "bn1/beta",
                          "moving_mean": "bn1/moving_mean",
                          "moving_variance": "bn1/moving_variance"}
    assert {k: bn.config[k] for k in ("momentum", "epsilon", "center", "scale",
                                      "moving_variance")} == {
        "momentum": 0.9, "epsilon": 1e-3, "center": True, "scale": True,
        "moving_variance": "biased"}
    assert [u["run"] for u in bn.config["native"]["updates"].values()] == ["UPDATE_OPS"] * 2
    assert d.state == ("bn1/moving_mean", "bn1/moving_variance")

    gamma, beta = _rng(2).uniform(0.5, 1.5, 4), _rng(3).normal(size=4)
    own.set_weights(h, {"bn1/gamma": gamma, "bn1/beta": beta,
                        "bn1/moving_mean": np.full(4, 0.2), "bn1/moving_variance": np.full(4, 2.0)})
    out = own.layer_outputs(h, X, ["conv1", "bn1"], training=True)
    z = out["conv1"]
    mean, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))
    assert np.abs(out["bn1"] - ((z - mean) / np.sqrt(var + 1e-3) * gamma + beta)).max() < 1e-12
    infer = own.layer_outputs(h, X, ["bn1"], training=False)["bn1"]
    assert np.abs(infer - ((z - 0.2) / np.sqrt(2.0 + 1e-3) * gamma + beta)).max() < 1e-12

    own.train(h, _plan(OptimizerSpec("sgd", lr=0.1), [[np.arange(len(X))]]), X, y)
    w = own.get_weights(h)
    assert np.abs(w["bn1/moving_mean"] - (0.9 * 0.2 + 0.1 * mean)).max() < 1e-12
    assert np.abs(w["bn1/moving_variance"] - (0.9 * 2.0 + 0.1 * var)).max() < 1e-12


def test_fused_batch_norm() -> None:
    """The fused kernel: roles from its inputs (scale/offset -> gamma/beta), momentum 0.99
    from an assign_sub, the unbiased moving variance; float32 only (float64 is refused with
    the reason). Measured: the moving variance after one step is 0.99 + 0.01 * the batch
    variance * m / (m - 1), m = 12 * 8 * 8 values per channel."""
    X = _images()
    h = own.prepare(fused_net, X, "float32")
    d = own.describe(h, X)
    assert _kinds(d) == ["conv2d", "batch_norm", "activation", "flatten", "dense"]
    bn = d.layers[1]
    assert bn.tensors == {"gamma": "bn/gamma", "beta": "bn/beta",
                          "moving_mean": "bn/moving_mean",
                          "moving_variance": "bn/moving_variance"}
    assert (bn.config["momentum"], bn.config["epsilon"], bn.config["moving_variance"]) == \
        (0.99, 1e-3, "unbiased")
    z = own.layer_outputs(h, X, ["conv1"], training=True)["conv1"].astype(np.float64)
    own.train(h, _plan(OptimizerSpec("sgd", lr=0.1), [[np.arange(len(X))]], "float32"), X,
              _rng(1).integers(0, 3, len(X)))
    m = len(X) * 64
    want = 0.99 + 0.01 * z.var(axis=(0, 1, 2)) * m / (m - 1)
    assert np.abs(own.get_weights(h)["bn/moving_variance"] - want).max() < 1e-6
    with pytest.raises(ConfigError, match="float64"):
        own.prepare(fused_net, X, "float64")


def hand_written_norms(x, training, collect=False):
    """A batch norm whose moving averages are assign_subs run inside the training branch
    of its tf.cond (or, with `collect`, assigns that a user forgot to put in UPDATE_OPS),
    then a layer norm written out, its gamma and beta applied after the division."""
    with tf1.variable_scope("bn"):
        gamma, beta, moving_mean, moving_var = _bn_variables(3)
    mean, var = tf.nn.moments(x, [0])
    if collect:  # assigns that nothing runs
        tf1.assign(moving_mean, moving_mean * 0.9 + mean * 0.1)
        tf1.assign(moving_var, moving_var * 0.9 + var * 0.1)
        m, v = tf1.cond(training, lambda: (mean, var), lambda: (tf.identity(moving_mean),
                                                                tf.identity(moving_var)))
    else:
        def batch():
            with tf.control_dependencies([
                    tf1.assign_sub(moving_mean, (moving_mean - mean) * (1 - 0.97)),
                    tf1.assign_sub(moving_var, (moving_var - var) * (1 - 0.97))]):
                return tf.identity(mean), tf.identity(var)
        m, v = tf1.cond(training, batch, lambda: (tf.identity(moving_mean),
                                                  tf.identity(moving_var)))
    h = tf.nn.batch_normalization(x, m, v, beta, gamma, 1e-3)
    with tf1.variable_scope("ln"):
        g = tf1.get_variable("gamma", [3], initializer=tf1.ones_initializer())
        b = tf1.get_variable("beta", [3], initializer=tf1.zeros_initializer())
    mu = tf.reduce_mean(h, -1, keepdims=True)
    sigma2 = tf.reduce_mean(tf.square(h - mu), -1, keepdims=True)
    return _dense((h - mu) / tf.sqrt(sigma2 + 1e-6) * g + b, 2, "dense")


@pytest.mark.parametrize("collect", [False, True], ids=["in_forward_pass", "never_run"])
def test_hand_written_norms(collect: bool) -> None:
    """Momentum 0.97 read from assign_sub(moving, (moving - batch) * (1 - 0.97)); where the
    update runs ("forward pass": a control dependency of the training branch, or "never":
    assigns nothing runs, whose moving mean stays at zero, measured after one step); a layer
    norm written out, named by its variables' scope, epsilon 1e-6."""
    X, y = _rng().normal(size=(10, 3)), _rng(1).integers(0, 2, 10)
    h = own.prepare(lambda x, training: hand_written_norms(x, training, collect), X, "float64")
    d = own.describe(h, X)
    assert _kinds(d) == ["batch_norm", "layer_norm", "dense"]
    bn, ln, _ = d.layers
    assert bn.tensors == {"gamma": "bn/gamma", "beta": "bn/beta",
                          "moving_mean": "bn/moving_mean",
                          "moving_variance": "bn/moving_variance"}
    assert bn.config["momentum"] == (0.9 if collect else 0.97)
    runs = {u["run"] for u in bn.config["native"]["updates"].values()}
    assert runs == ({"never"} if collect else {"forward pass"})
    assert (ln.name, ln.config["epsilon"], ln.tensors) == (
        "ln", 1e-6, {"gamma": "ln/gamma", "beta": "ln/beta"})
    own.train(h, _plan(OptimizerSpec("sgd", lr=0.1), [[np.arange(10)]]), X, y)
    moving = own.get_weights(h)["bn/moving_mean"]
    want = np.zeros(3) if collect else 0.03 * X.mean(axis=0)
    assert np.abs(moving - want).max() < 1e-12


def test_describe_layer_norm_and_embedding() -> None:
    X = _rng().normal(size=(5, 6))
    d = own.describe(own.prepare(ln_net, X, "float64"), X)
    assert _kinds(d) == ["dense", "layer_norm", "activation", "dense", "activation"]
    ln = d.layers[1]
    assert (ln.name, ln.config["epsilon"], ln.tensors) == (
        "ln", 1e-5, {"gamma": "ln/gamma", "beta": "ln/beta"})
    assert d.output == "log_probabilities" and d.state == ()

    ids = _rng().integers(0, 10, (7, 5)).astype(np.float64)
    h = own.prepare(embedding_net, ids, "float32")
    d = own.describe(h, ids)
    assert _kinds(d) == ["embedding", "flatten", "dense", "activation"]
    emb = d.layers[0]
    assert (emb.config["vocab"], emb.config["dim"], emb.tensors) == (
        10, 4, {"embeddings": "embedding/embeddings"})
    assert (emb.input_shape, emb.output_shape) == ((5,), (5, 4)) and d.output == "sigmoid"
    table = own.get_weights(h)["embedding/embeddings"]
    got = own.layer_outputs(h, ids, ["embedding"], training=False)["embedding"]
    assert np.array_equal(got, table[ids.astype(int)])


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", [OptimizerSpec("sgd", lr=0.1),
                                       OptimizerSpec("adam", lr=0.01)], ids=["sgd", "adam"])
def test_training_matches_the_zoo_tf1_loop(dtype: str, optimizer: OptimizerSpec) -> None:
    """The user's mlp, loaded with the zoo's canonical initial weights (TF1's layout IS the
    canonical one), trains step for step as `tf1_compat.train` trains the zoo's mlp on the
    same batches: losses and every step's weights within 1e-6 (float32) / 1e-12 (float64);
    measured 0.0 in all four cases."""
    spec = model_spec_for("mlp", 64, 10)
    rng = _rng(1)
    X, y = rng.normal(size=(48, 64)), rng.integers(0, 10, 48)
    init = init_weights(spec, dtype=dtype)
    zoo = T.train(spec, TrainSpec(optimizer, epochs=3, batch_size=8, seed=0, dtype=dtype,
                                  dropout_mode="off"),
                  X.astype(dtype), y, init, record_weights=True)
    h = own.prepare(mlp, X, dtype)
    own.set_weights(h, init)
    hist = own.train(h, _plan(optimizer, [batch_order(48, 8, 0, e) for e in range(3)], dtype),
                     X, y)
    assert len(hist.losses) == len(zoo.losses) == 18 and hist.stopped_at is None
    assert np.abs(hist.losses - zoo.losses).max() <= AGREE[dtype]
    assert len(hist.step_weights) == 18
    pairs = zip(zoo.step_weights, hist.step_weights, strict=True)
    worst = max(np.abs(a[k] - b[k]).max() for a, b in pairs for k in init)
    assert worst <= AGREE[dtype]
    assert zoo.losses[-1] < zoo.losses[0]  # it learned something


def test_dropout_intercepted_and_switchable() -> None:
    """Both spellings' rates are recorded (keep_prob 0.75 -> 0.25), tf.nn.dropout and
    control flow v2 are restored after the call; "off" trains the same losses twice and
    predictions ignore dropout; "native" drops about `rate` of the units (measured on 20x64
    units: within 0.05 of 0.5) and scales the kept ones by 1 / (1 - rate)."""
    original = tf.nn.dropout, tf1.nn.dropout
    X = _rng().normal(size=(20, 64))
    y = _rng(1).integers(0, 10, 20)
    h = own.prepare(mlp, X, "float64")
    assert (tf.nn.dropout, tf1.nn.dropout) == original and tf1.control_flow_v2_enabled()
    assert [d.rate for d in h.dropouts] == [0.5, 0.25]
    w0 = own.get_weights(h)
    p0 = own.predict(h, X)
    losses = {}
    for mode in ("off", "native", "off"):
        own.set_weights(h, w0)
        losses.setdefault(mode, []).append(
            own.train(h, _plan(OptimizerSpec("sgd", lr=0.1), [[np.arange(20)]] * 2,
                               dropout=mode), X, y).losses)
    assert np.array_equal(losses["off"][0], losses["off"][1])
    assert abs(losses["native"][0][0] - losses["off"][0][0]) > 1e-3
    own.set_weights(h, w0)
    assert np.array_equal(own.predict(h, X), p0)
    first = h.dropouts[0]
    pre, post = h.session.run([first.input, first.output],
                              {h.x: X, h.training: True, h.native_dropout: True})
    dropped = np.mean(post == 0)
    assert abs(dropped - 0.5) < 0.05
    kept = post != 0
    assert np.abs(post[kept] - pre[kept] / 0.5).max() < 1e-12
    off = h.session.run(first.output, {h.x: X, h.training: True})
    assert np.array_equal(off, pre)


def test_weights_round_trip_and_unknown_names() -> None:
    X = _rng().normal(size=(4, 64))
    h = own.prepare(mlp, X, "float32")
    w = {k: _rng(7).normal(size=v.shape).astype(np.float32)
         for k, v in own.get_weights(h).items()}
    own.set_weights(h, w)
    got = own.get_weights(h)
    assert list(got) == list(w) and all(np.array_equal(got[k], w[k]) for k in w)
    own.set_weights(h, {"dense_2/bias": np.ones(10)})  # partial
    assert np.array_equal(own.get_weights(h)["dense_2/bias"], np.ones(10, np.float32))
    assert np.array_equal(own.get_weights(h)["dense_2/kernel"], w["dense_2/kernel"])
    with pytest.raises(ConfigError, match="dense_9/kernel"):
        own.set_weights(h, {"dense_9/kernel": np.zeros((64, 64))})
    with pytest.raises(ConfigError, match=r"\(64, 64\)"):
        own.set_weights(h, {"dense_0/kernel": np.zeros((64, 32))})
    with pytest.raises(ConfigError, match="unknown layer"):
        own.layer_outputs(h, X, ["dense_7"], training=False)
    with pytest.raises(ConfigError, match="dense_5"):
        own.freeze(h, ["dense_5/bias"])


def test_freeze() -> None:
    X = _rng().normal(size=(16, 64))
    y = _rng(1).integers(0, 10, 16)
    h = own.prepare(mlp, X, "float64")
    w0 = own.get_weights(h)
    own.freeze(h, ["dense_0/kernel"])
    own.train(h, _plan(OptimizerSpec("sgd", lr=0.1), [[np.arange(16)]]), X, y)
    w1 = own.get_weights(h)
    assert np.array_equal(w1["dense_0/kernel"], w0["dense_0/kernel"])
    assert np.abs(w1["dense_1/kernel"] - w0["dense_1/kernel"]).max() > 1e-4
    assert own.describe(h, X).state == ("dense_0/kernel",)


def test_non_finite_loss_stops_with_the_last_finite_weights() -> None:
    """A linear model with lr 1e3 on mse overflows float32 within a few steps: training stops
    at the first non-finite loss, and the weights are the ones that step started from (the
    ones recorded after the step before)."""
    rng = _rng()
    X, y = rng.normal(size=(32, 4)) * 10, rng.normal(size=(32, 1))
    h = own.prepare(linear, X, "float32")
    hist = own.train(h, _plan(OptimizerSpec("sgd", lr=1e3), [[np.arange(i, i + 4) for i in
                                                               range(0, 32, 4)]] * 4,
                              "float32", loss="mse"), X, y)
    k = hist.stopped_at
    assert k is not None and 1 <= k < 32 and len(hist.losses) == k + 1
    assert np.all(np.isfinite(hist.losses[:k])) and not np.isfinite(hist.losses[k])
    assert len(hist.step_weights) == k
    assert all(np.array_equal(hist.weights[n], hist.step_weights[-1][n]) for n in hist.weights)
    assert all(np.isfinite(v).all() for v in hist.weights.values())
    assert np.array_equal(own.get_weights(h)["dense_0/kernel"], hist.weights["dense_0/kernel"])


def test_losses_by_kind_and_native() -> None:
    """The first step's loss is the formula's on the initial weights (float64, 1e-12): binary
    cross-entropy from logits and mse; a native loss callable (TF1's own
    `tf.compat.v1.losses.sparse_softmax_cross_entropy`) trains the same losses as the
    idiomatic one (float32: within 1e-6; measured 0)."""
    rng = _rng()
    X = rng.normal(size=(16, 4))
    h = own.prepare(linear, X, "float64")
    z = own.predict(h, X)
    t = rng.integers(0, 2, (16, 1)).astype(float)
    bce = own.train(h, _plan(OptimizerSpec("sgd", lr=1e-9), [[np.arange(16)]],
                             loss="binary_crossentropy"), X, t.ravel()).losses[0]
    want = np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))
    assert abs(bce - want) < 1e-12
    z = own.predict(h, X)  # after that step
    mse = own.train(h, _plan(OptimizerSpec("sgd", lr=1e-9), [[np.arange(16)]], loss="mse"),
                    X, t).losses[0]
    assert abs(mse - np.mean((z - t) ** 2)) < 1e-12

    Xc, yc = _rng(1).normal(size=(24, 64)), _rng(2).integers(0, 10, 24)
    batches = [batch_order(24, 8, 0, e) for e in range(2)]
    runs = []
    for native in (None, lambda labels, out: tf1.losses.sparse_softmax_cross_entropy(labels,
                                                                                      out)):
        hc = own.prepare(mlp, Xc, "float32")
        own.set_weights(hc, init_weights(model_spec_for("mlp", 64, 10)))
        plan = TrainPlan(OwnLoss("crossentropy", native), OwnOptimizer(
            spec=OptimizerSpec("adam", lr=0.01)), batches, dtype="float32")
        runs.append(own.train(hc, plan, Xc, yc).losses)
    assert np.abs(runs[0] - runs[1]).max() < 1e-6


def test_native_optimizers() -> None:
    """A tf.compat.v1.train optimizer built with Python numbers, and a zero-argument factory,
    train the same losses (float64: within 1e-12); TF1's RMSProp (mean square started at one)
    is not the zoo's translated one (started at zero); an optimizer holding a tensor of
    another graph is refused with the fix."""
    X, y = _rng().normal(size=(16, 64)), _rng(1).integers(0, 10, 16)
    batches = [[np.arange(0, 8), np.arange(8, 16)]] * 2
    init = init_weights(model_spec_for("mlp", 64, 10), dtype="float64")

    def run(optimizer):
        h = own.prepare(mlp, X, "float64")
        own.set_weights(h, init)
        return own.train(h, TrainPlan(OwnLoss(), optimizer, batches, dtype="float64"),
                         X, y).losses

    instance = run(OwnOptimizer(native=tf1.train.AdamOptimizer(0.01)))
    factory = run(OwnOptimizer(native=lambda: tf1.train.AdamOptimizer(0.01)))
    assert np.abs(instance - factory).max() < 1e-12 and instance[-1] < instance[0]
    rms_native = run(OwnOptimizer(native=lambda: tf1.train.RMSPropOptimizer(0.01, epsilon=1e-20)))
    rms_spec = run(OwnOptimizer(spec=OptimizerSpec("rmsprop", lr=0.01)))
    assert rms_native[0] == rms_spec[0] and abs(rms_native[1] - rms_spec[1]) > 1e-3
    with tf.Graph().as_default():
        foreign = tf1.train.GradientDescentOptimizer(tf.constant(0.1, tf.float64))
    with pytest.raises(ConfigError, match="factory"):
        run(OwnOptimizer(native=foreign))


def test_audit_optimizer() -> None:
    a = own.audit_optimizer(tf1.train.MomentumOptimizer(0.05, 0.9, use_nesterov=True))
    assert (a.name, a.lr, a.momentum, a.nesterov) == ("nesterov", 0.05, 0.9, True)
    a = own.audit_optimizer(tf1.train.RMSPropOptimizer(0.01, decay=0.95, momentum=0.5,
                                                       epsilon=1e-6))
    assert (a.name, a.rho, a.momentum, a.epsilon, a.epsilon_placement,
            a.initial_accumulator) == ("rmsprop", 0.95, 0.5, 1e-6, "inside", 1.0)
    a = own.audit_optimizer(lambda: tf1.train.AdamOptimizer(1e-3, 0.8, 0.99, 1e-7))
    assert (a.name, a.lr, a.beta_1, a.beta_2, a.epsilon, a.epsilon_placement) == \
        ("adam", 1e-3, 0.8, 0.99, 1e-7, "outside")
    a = own.audit_optimizer(tf1.train.AdagradOptimizer(0.1, initial_accumulator_value=0.2))
    assert (a.name, a.initial_accumulator) == ("adagrad", 0.2)
    assert own.audit_optimizer(tf1.train.GradientDescentOptimizer(0.3)).name == "sgd"
    with tf.Graph().as_default():  # the zoo's own float64 translation: tensors, read back
        from tf1_compat.optimizers import make_optimizer
        a = own.audit_optimizer(make_optimizer(OptimizerSpec("adam", lr=0.002), "float64"))
    assert (a.name, a.lr) == ("adam", 0.002)
    assert own.audit_optimizer(tf1.train.AdadeltaOptimizer(1.0)).name == "AdadeltaOptimizer"
    with pytest.raises(ConfigError, match="factory"):
        own.audit_optimizer(0.1)


def test_control_flow_v1_trains_as_the_plain_graph() -> None:
    """prepare builds the user's tf.cond with TF1's control flow; the same function built
    the plain TF 2 way (one If op per cond) trains bit for bit the same: three SGD steps of
    the batch-norm net, losses, weights and moving statistics within 1e-12 (measured 0)."""
    X, y = _images(), _rng(1).integers(0, 3, 12)
    h = own.prepare(bn_net, X, "float64")
    w0 = own.get_weights(h)
    hist = own.train(h, _plan(OptimizerSpec("sgd", lr=0.1), [[np.arange(12)]] * 3), X, y)
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float64, (None, 8, 8, 1))
        training = tf1.placeholder_with_default(False, ())
        labels = tf1.placeholder(tf.int64, (None,))
        with tf1.variable_scope(tf1.get_variable_scope(), dtype=tf.float64):
            out = bn_net(x, training)
        assert "If" in {op.type for op in g.get_operations()}
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                             logits=out))
        with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
            step = tf1.train.GradientDescentOptimizer(tf.constant(0.1, tf.float64)).minimize(loss)
        variables = {v.name[:-2]: v for v in tf1.global_variables()}
        sess = tf1.Session(graph=g)
        sess.run(tf1.global_variables_initializer())
        sess.run([v.assign(w0[n]) for n, v in variables.items()])
        losses = [sess.run([loss, step], {x: X, labels: y, training: True})[0] for _ in range(3)]
        w = sess.run(variables)
        sess.close()
    assert np.abs(np.array(losses) - hist.losses).max() < 1e-12
    assert max(np.abs(w[n] - hist.weights[n]).max() for n in w0) < 1e-12


# ----------------------------------------------------------------------------- errors
def _unplaced(x):
    h = tf.nn.relu(_dense(x, 4, "dense"))
    with tf1.variable_scope("gate"):
        s = tf1.get_variable("scale", [4])
    return h * s


def _nchw(x):
    with tf1.variable_scope("conv"):
        k = tf1.get_variable("kernel", [3, 3, 1, 2])
    return tf.reshape(tf1.nn.conv2d(x, k, [1, 1, 1, 1], "SAME", data_format="NCHW"), [-1, 8])


def _recurrent(x):
    with tf1.variable_scope("rnn"):
        w = tf1.get_variable("kernel", [3, 4])
        u = tf1.get_variable("recurrent_kernel", [4, 4])
    hs = tf.scan(lambda hp, xt: tf.tanh(tf.matmul(xt, w) + tf.matmul(hp, u)),
                 tf.transpose(x, [1, 0, 2]),
                 initializer=tf.zeros(tf.stack([tf.shape(x)[0], 4]), x.dtype))
    return _dense(hs[-1], 2, "out")


def _tensor_rate(x, training):
    h = _dense(x, 4, "dense")
    return tf.nn.dropout(h, rate=tf.where(training, 0.5, 0.0))


@pytest.mark.parametrize("fn, X, match", [
    (_unplaced, np.zeros((2, 3)), "gate/scale"),
    (_nchw, np.zeros((2, 1, 2, 2)), "NHWC"),
    (_recurrent, np.zeros((2, 5, 3)), "recurrent TF1 graphs"),
], ids=["unplaced", "nchw", "recurrent"])
def test_describe_refuses(fn, X, match) -> None:
    h = own.prepare(fn, X, "float32")
    with pytest.raises(ConfigError, match=match):
        own.describe(h, X)


def test_prepare_refuses() -> None:
    X = np.zeros((2, 3))
    with pytest.raises(ConfigError, match="not callable"):
        own.prepare("model.ckpt", X)
    with pytest.raises(ConfigError, match="constant number"):
        own.prepare(_tensor_rate, X)
    with pytest.raises(ConfigError, match="output tensor"):
        own.prepare(lambda x: {"out": _dense(x, 2, "d")}, X)
    with pytest.raises(ConfigError, match="dtype"):
        own.prepare(linear, X, "float16")
    assert tf.nn.dropout.__name__ == "dropout_v2" and tf1.control_flow_v2_enabled()
    h = own.prepare(linear, X, "float32")
    with pytest.raises(DataError, match=r"\(5,\)"):
        own.predict(h, np.zeros((2, 5)))
    with pytest.raises(ConfigError, match="float64"):
        own.train(h, _plan(OptimizerSpec(), [[np.arange(2)]], "float64", loss="mse"), X,
                  np.zeros(2))
