"""Compare your own models (`zoo.compare_models`, docs/own-models.md): pairs written the way
users write them, not with the zoo's builders.

- every supported layer kind, Keras against torch (and TF1 where TF1 code can express it):
  one epoch agrees within 1e-6 in float32 and 1e-12 in float64;
- the classic mis-ports, each reported with the right layer and cause: a transposed kernel,
  a missing flatten permutation, BatchNorm momentum in the wrong convention, recurrent gates
  in another order, a dropout rate mismatch, softmax applied twice;
- an unmatched parameter is one clear error naming it.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.own import compare_models
from zoo.testing import assert_models_agree

RNG = np.random.default_rng(0)


def _images(n=96, h=8, w=8, c=1, classes=4, seed=0):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, h, w, c)).astype(np.float32)
    y = r.integers(0, classes, n)
    return X[:64], y[:64], X[64:], y[64:]


def _flat(n=96, f=12, classes=3, seed=0):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, f)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return X[:64], y[:64], X[64:], y[64:]


def _seqs(n=96, t=6, f=5, classes=3, seed=0):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, t, f)).astype(np.float32)
    y = r.integers(0, classes, n)
    return X[:64], y[:64], X[64:], y[64:]


def _tokens(n=96, t=7, vocab=20, classes=3, seed=0):
    r = np.random.default_rng(seed)
    X = r.integers(0, vocab, (n, t))
    y = X[:, 0] % classes
    return X[:64], y[:64], X[64:], y[64:]


def _keras(dtype, *layers, input_shape):
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input(input_shape, dtype=dtype if dtype else None), *layers])


# ----------------------------------------------------------------------------- the pairs
class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class ConvNet(nn.Module):
    def __init__(self, momentum=0.01, eps=1e-3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4, momentum=momentum, eps=eps)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 4)

    def forward(self, x):
        x = self.pool(self.bn(torch.relu(self.conv(x))))
        return self.fc(torch.flatten(x, 1))


class ConvBNNet(nn.Module):
    """Conv2d without bias, then BatchNorm, then ReLU: how convnets are usually written."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4, momentum=0.01, eps=1e-3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 4)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        return self.fc(x.flatten(1))


class LayerNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.norm = nn.LayerNorm(16, eps=1e-3)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.norm(self.fc1(x))))


class RNNNet(nn.Module):
    def __init__(self, kind, features=5, units=8, classes=3):
        super().__init__()
        self.rnn = getattr(nn, kind)(features, units, batch_first=True)
        self.fc = nn.Linear(units, classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class TokenNet(nn.Module):
    def __init__(self, vocab=20, dim=6, units=8, classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.gru = nn.GRU(dim, units, batch_first=True)
        self.fc = nn.Linear(units, classes)

    def forward(self, x):
        out, _ = self.gru(self.emb(x.long()))
        return self.fc(out[:, -1])


def keras_mlp(dtype=None):
    L = keras.layers
    return _keras(dtype, L.Dense(16, activation="relu", dtype=dtype),
                  L.Dense(3, activation="softmax", dtype=dtype), input_shape=(12,))


def keras_convnet(dtype=None, momentum=0.99):
    L = keras.layers
    return _keras(dtype, L.Conv2D(4, 3, padding="same", activation="relu", dtype=dtype),
                  L.BatchNormalization(momentum=momentum, dtype=dtype), L.MaxPooling2D(2, dtype=dtype),
                  L.Flatten(dtype=dtype), L.Dense(4, activation="softmax", dtype=dtype),
                  input_shape=(8, 8, 1))


def keras_conv_bn(dtype=None):
    L = keras.layers
    return _keras(dtype, L.Conv2D(4, 3, padding="same", use_bias=False), L.BatchNormalization(),
                  L.Activation("relu"), L.MaxPooling2D(2), L.Flatten(),
                  L.Dense(4, activation="softmax"), input_shape=(8, 8, 1))


def keras_layernorm(dtype=None):
    L = keras.layers
    return _keras(dtype, L.Dense(16, dtype=dtype), L.LayerNormalization(dtype=dtype),
                  L.Activation("tanh", dtype=dtype), L.Dense(3, activation="softmax", dtype=dtype),
                  input_shape=(12,))


def keras_rnn(kind, dtype=None):
    L = keras.layers
    return _keras(dtype, getattr(L, kind)(8, dtype=dtype),
                  L.Dense(3, activation="softmax", dtype=dtype), input_shape=(6, 5))


def keras_tokens(dtype=None):
    L = keras.layers
    return _keras(None, L.Embedding(20, 6, dtype=dtype), L.GRU(8, dtype=dtype),
                  L.Dense(3, activation="softmax", dtype=dtype), input_shape=(7,))


PAIRS = {
    "dense": (keras_mlp, MLP, _flat),
    "conv2d+batch_norm": (keras_conv_bn, ConvBNNet, _images),
    "layer_norm": (keras_layernorm, LayerNormNet, _flat),
    "lstm": (lambda dtype=None: keras_rnn("LSTM", dtype), lambda: RNNNet("LSTM"), _seqs),
    "gru": (lambda dtype=None: keras_rnn("GRU", dtype), lambda: RNNNet("GRU"), _seqs),
    "embedding+gru": (keras_tokens, TokenNet, _tokens),
}


@pytest.mark.parametrize("kind", list(PAIRS))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_each_layer_kind_agrees_after_one_epoch_float32(kind, optimizer):
    make_keras, make_torch, data = PAIRS[kind]
    lr = 0.05 if optimizer == "sgd" else 1e-3
    comp = compare_models({"keras": make_keras(), "torch": make_torch()}, data(),
                          optimizer=optimizer, lr=lr, epochs=1, batch_size=16)
    r = comp.results["torch"]
    assert len(r.history.losses) == 4
    assert comp.differences == [], [f.message for f in comp.differences]
    assert r.first_divergent_step is None, comp.message()
    assert r.max_loss_diff <= 1e-6 and r.max_weight_diff <= 1e-6, comp.message()


@pytest.mark.parametrize("kind", list(PAIRS))
def test_each_layer_kind_agrees_after_one_epoch_float64(kind):
    make_keras, make_torch, data = PAIRS[kind]
    comp = compare_models({"keras": make_keras("float64"), "torch": make_torch()}, data(),
                          optimizer="adam", lr=1e-3, epochs=1, batch_size=16, dtype="float64")
    r = comp.results["torch"]
    assert r.max_loss_diff <= 1e-12 and r.max_weight_diff <= 1e-12, comp.message()


def test_batchnorm_after_relu_agrees_within_float32_batch_variance_rounding():
    """BatchNorm on ReLU outputs (a mean far from zero): Keras and torch compute the float32
    batch variance with different summation orders, so their normalised outputs part by about
    1e-5 (measured 1.3e-5 on such inputs; 1.5e-5 and 9e-6 from the float64 values) and the
    losses by 2.4e-6 at losses of 2 (one part in a million); the weights after the epoch stay
    within 2.7e-7 and float64 agrees to 1e-14 (test above)."""
    comp = compare_models({"keras": keras_convnet(), "torch": ConvNet()}, _images(),
                          optimizer="sgd", lr=0.05, epochs=1, batch_size=16)
    r = comp.results["torch"]
    assert r.first_divergent_step is None and comp.differences == [], comp.message()
    assert r.max_weight_diff <= 1e-6 and r.max_loss_diff <= 1.5e-6 * np.abs(
        comp.results["keras"].history.losses).max(), comp.message()


# ----------------------------------------------------------------------------- mis-ports
class SquareMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def keras_square_mlp():
    L = keras.layers
    return _keras(None, L.Dense(16, activation="relu"), L.Dense(16, activation="relu"),
                  L.Dense(3, activation="softmax"), input_shape=(12,))


def _copy(param: torch.Tensor, array: np.ndarray) -> None:
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(array, np.float32)))


def _diagnosis(comp, fw="torch"):
    assert fw in comp.diagnoses, comp.message()
    return comp.diagnoses[fw]


def test_a_transposed_kernel_is_named_with_its_layer():
    km, tm = keras_square_mlp(), SquareMLP()
    w = [v.numpy() for v in km.weights]   # kernel, bias per Dense
    _copy(tm.fc1.weight, w[0].T), _copy(tm.fc1.bias, w[1])
    _copy(tm.fc2.weight, w[2]), _copy(tm.fc2.bias, w[3])          # the bug: no transpose
    _copy(tm.fc3.weight, w[4].T), _copy(tm.fc3.bias, w[5])
    comp = compare_models({"keras": km, "torch": tm}, _flat(), init="as_given", epochs=1,
                          batch_size=16)
    d = _diagnosis(comp)
    assert d.init == ["dense_1/kernel (torch): fc2.weight is the reference's dense_1/kernel as "
                      "it is, not transposed (transposed: (in, out) -> (out, in)): the "
                      "transposed kernel"]
    assert d.step == 0 and d.layer == "dense_1", d.summary()
    assert "the initial weights differ" in d.cause
    with pytest.raises(AssertionError, match="fc2.weight is the reference's dense_1/kernel"):
        assert_models_agree({"keras": km, "torch": tm}, _flat(), init="as_given",
                            batch_size=16)


def test_a_missing_flatten_permutation_is_named_with_its_layer():
    km, tm = keras_convnet(), ConvNet()
    (kernel, bias), bn, (dense, dense_bias) = (km.layers[i].get_weights() for i in (0, 1, 4))
    _copy(tm.conv.weight, kernel.transpose(3, 2, 0, 1))
    _copy(tm.conv.bias, bias)
    _copy(tm.fc.weight, dense.T)                   # the bug: rows left in H, W, C order
    _copy(tm.fc.bias, dense_bias)
    comp = compare_models({"keras": km, "torch": tm}, _images(), init="as_given",
                          batch_size=16)
    d = _diagnosis(comp)
    assert len(d.init) == 1 and d.init[0].startswith("dense_0/kernel (torch): fc.weight is the "
                                                     "reference's dense_0/kernel transposed but "
                                                     "with its rows still in H, W, C order")
    assert "flatten permutation" in d.init[0]
    assert d.layer == "dense_0" and d.difference > 1e-3, d.summary()


def test_batchnorm_momentum_in_the_wrong_convention_is_reported_before_training():
    comp = compare_models({"keras": keras_convnet(), "torch": ConvNet(momentum=0.99)},
                          _images(), batch_size=16)
    found = [f for f in comp.differences if f.setting == "momentum"]
    assert len(found) == 1 and found[0].layer == "batch_norm_0" and found[0].native_layer == "bn"
    keras_name = comp.model.layers["keras"][1]["name"]
    assert found[0].message == (
        "BatchNormalization momentum 0.99 against nn.BatchNorm momentum 0.99 in batch_norm_0 "
        f"(keras '{keras_name}', torch 'bn'): torch's momentum is 1 - Keras's, use 0.01.")
    # and the run shows it: the moving statistics part at the first step
    assert comp.results["torch"].first_divergent_step == 0


@pytest.mark.parametrize("kind,order,text", [
    ("LSTM", (0, 3, 1, 2), "order (i, o, f, c) where torch needs (i, f, c, o)"),
    ("GRU", (0, 1, 2), "order (z, r, h) where torch needs (r, z, h)"),
])
def test_recurrent_gates_copied_in_another_order_are_named(kind, order, text):
    km, tm = keras_rnn(kind), RNNNet(kind)
    w = dict(zip(("kernel", "recurrent_kernel", "bias"), km.layers[0].get_weights(),
                 strict=True))
    w["dense/kernel"], w["dense/bias"] = km.layers[1].get_weights()
    units = tm.rnn.hidden_size

    def gates(a):
        lead = a.shape[:-1]
        return a.reshape(*lead, len(order), units)[..., list(order), :].reshape(*lead, -1)
    _copy(tm.rnn.weight_ih_l0, gates(w["kernel"]).T)
    _copy(tm.rnn.weight_hh_l0, gates(w["recurrent_kernel"]).T)
    if kind == "LSTM":
        _copy(tm.rnn.bias_ih_l0, gates(w["bias"]))
        _copy(tm.rnn.bias_hh_l0, np.zeros_like(w["bias"]))
    else:
        _copy(tm.rnn.bias_ih_l0, gates(w["bias"][0]))
        _copy(tm.rnn.bias_hh_l0, gates(w["bias"][1]))
    _copy(tm.fc.weight, w["dense/kernel"].T)
    _copy(tm.fc.bias, w["dense/bias"])
    comp = compare_models({"keras": km, "torch": tm}, _seqs(), init="as_given",
                          batch_size=16)
    d = _diagnosis(comp)
    name = kind.lower()
    assert d.init and all(t.startswith(f"{name}_0/") for t in d.init), d.init
    assert any(text in t for t in d.init), d.init
    assert d.layer == f"{name}_0", d.summary()


def test_a_dropout_rate_mismatch_is_reported_with_its_layer():
    L = keras.layers
    km = _keras(None, L.Dense(16, activation="relu"), L.Dropout(0.5),
                L.Dense(3, activation="softmax"), input_shape=(12,))
    tm = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    comp = compare_models({"keras": km, "torch": tm}, _flat(), batch_size=16)
    found = [f for f in comp.differences if f.setting == "dropout rate"]
    assert len(found) == 1 and found[0].layer == "dense_0", comp.message()
    assert found[0].reference_value == 0.5 and found[0].value == pytest.approx(0.3)
    assert "use rate 0.5" in found[0].message
    assert any("dropout is switched off" in n for n in comp.notes)
    # with dropout off the runs themselves agree: the audit is what catches it
    assert comp.results["torch"].first_divergent_step is None


def test_softmax_applied_twice_is_reported():
    tm = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3), nn.Softmax(dim=1))
    comp = compare_models({"keras": keras_mlp(), "torch": tm}, _flat(), batch_size=16)
    found = [f for f in comp.differences if f.setting == "loss"]
    assert [f.framework for f in found] == ["torch"], comp.message()
    assert found[0].message.startswith("torch: softmax applied twice: the model ends in a "
                                       "softmax and nn.CrossEntropyLoss applies (log-)softmax "
                                       "again")
    d = _diagnosis(comp)
    assert "softmax applied twice" in d.cause
    assert comp.results["torch"].first_divergent_step == 0


def test_keras_softmax_with_crossentropy_against_torch_logits_is_the_same_loss():
    comp = compare_models({"keras": keras_mlp(), "torch": MLP()}, _flat(), batch_size=16)
    relation = [f for f in comp.findings if f.setting == "loss relation"]
    assert len(relation) == 1 and relation[0].severity == "note"
    assert "the same cross-entropy of the same logits" in relation[0].message
    assert comp.results["torch"].max_loss_diff <= 1e-6


# ----------------------------------------------------------------------------- errors
class WithExtraParameter(MLP):
    def __init__(self):
        super().__init__()
        self.temperature = nn.Parameter(torch.ones(1))


def test_an_unmatched_parameter_is_one_clear_error():
    with pytest.raises(ConfigError) as e:
        compare_models({"keras": keras_mlp(), "torch": WithExtraParameter()}, _flat())
    assert str(e.value).startswith("parameter(s) ['temperature'] belong to the model itself "
                                   "(WithExtraParameter), not to a layer"), str(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_an_extra_layer_lists_what_is_left_on_each_side():
    tm = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                       nn.Linear(16, 3))
    with pytest.raises(ConfigError) as e:
        compare_models({"keras": keras_mlp(), "torch": tm}, _flat())
    msg = str(e.value)
    assert "keras has nothing; torch has 4 (dense)" in msg, msg
    assert "Pass mapping=" in msg


def test_the_users_models_are_not_modified():
    km, tm = keras_mlp(), MLP()
    k0 = [v.numpy().copy() for v in km.weights]
    t0 = {k: v.clone() for k, v in tm.state_dict().items()}
    compare_models({"keras": km, "torch": tm}, _flat(), epochs=1, batch_size=16)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(k0, km.weights, strict=True))
    assert all(torch.equal(t0[k], v) for k, v in tm.state_dict().items())


# ----------------------------------------------------------------------------- TF1 graphs
def _tf1():
    import tensorflow as tf

    return tf, tf.compat.v1


def tf1_mlp(x):
    tf, tf1 = _tf1()
    w1 = tf1.get_variable("hidden/kernel", [12, 16])
    b1 = tf1.get_variable("hidden/bias", [16], initializer=tf1.zeros_initializer())
    w2 = tf1.get_variable("out/kernel", [16, 3])
    b2 = tf1.get_variable("out/bias", [3], initializer=tf1.zeros_initializer())
    return tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2) + b2


def tf1_conv_bn(x, training):
    """Conv2D, then batch normalisation with moving statistics updated through UPDATE_OPS
    (momentum 0.99, epsilon 1e-3, Keras's defaults), ReLU, max-pool, flatten, dense."""
    tf, tf1 = _tf1()
    k = tf1.get_variable("conv/kernel", [3, 3, 1, 4])
    h = tf1.nn.conv2d(x, k, [1, 1, 1, 1], "SAME")
    gamma = tf1.get_variable("bn/gamma", [4], initializer=tf1.ones_initializer())
    beta = tf1.get_variable("bn/beta", [4], initializer=tf1.zeros_initializer())
    mm = tf1.get_variable("bn/moving_mean", [4], initializer=tf1.zeros_initializer(),
                          trainable=False)
    mv = tf1.get_variable("bn/moving_variance", [4], initializer=tf1.ones_initializer(),
                          trainable=False)
    mean, var = tf.nn.moments(h, [0, 1, 2])
    for moving, value in ((mm, mean), (mv, var)):
        tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS,
                              tf1.assign(moving, moving * 0.99 + value * (1 - 0.99)))
    m, v = tf.cond(training, lambda: (mean, var), lambda: (tf.identity(mm), tf.identity(mv)))
    h = tf.nn.relu(tf.nn.batch_normalization(h, m, v, beta, gamma, 1e-3))
    h = tf1.nn.max_pool2d(h, 2, 2, "VALID")
    h = tf.reshape(h, [-1, 4 * 4 * 4])
    w = tf1.get_variable("fc/kernel", [64, 4])
    b = tf1.get_variable("fc/bias", [4], initializer=tf1.zeros_initializer())
    return tf.matmul(h, w) + b


def tf1_embedding(x):
    tf, tf1 = _tf1()
    table = tf1.get_variable("emb/embeddings", [20, 6])
    h = tf.reshape(tf.nn.embedding_lookup(table, x), [-1, 7 * 6])
    w = tf1.get_variable("fc/kernel", [42, 3])
    b = tf1.get_variable("fc/bias", [3], initializer=tf1.zeros_initializer())
    return tf.matmul(h, w) + b


class EmbeddingFlat(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 6)
        self.fc = nn.Linear(42, 3)

    def forward(self, x):
        return self.fc(self.emb(x).flatten(1))


def keras_embedding_flat():
    L = keras.layers
    return _keras(None, L.Embedding(20, 6), L.Flatten(), L.Dense(3, activation="softmax"),
                  input_shape=(7,))


TF1_PAIRS = {
    "dense": (keras_mlp, MLP, tf1_mlp, _flat),
    "conv2d+batch_norm": (keras_conv_bn, ConvBNNet, tf1_conv_bn, _images),
    "embedding": (keras_embedding_flat, EmbeddingFlat, tf1_embedding, _tokens),
}


@pytest.mark.parametrize("kind", list(TF1_PAIRS))
@pytest.mark.parametrize("dtype,optimizer,bound", [("float32", "sgd", 1e-6),
                                                   ("float32", "adam", 1e-6),
                                                   ("float64", "adam", 1e-12)])
def test_tf1_graphs_agree_with_keras_and_torch(kind, dtype, optimizer, bound):
    make_keras, make_torch, tf1_fn, data = TF1_PAIRS[kind]
    comp = compare_models({"keras": make_keras(), "tf1": tf1_fn, "torch": make_torch()}, data(),
                          optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3,
                          epochs=1, batch_size=16, dtype=dtype)
    assert comp.differences == [], comp.message()
    for fw in ("tf1", "torch"):
        r = comp.results[fw]
        assert r.max_loss_diff <= bound and r.max_weight_diff <= bound, comp.message()


# ----------------------------------------------------------------------------- the command line
USER_FILE = '''
import keras
import torch
from torch import nn


def keras_mlp():
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])


class TorchMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def not_a_model():
    return 3
'''


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(USER_FILE)
    return path


def test_cli_compares_your_own_models(user_file, tmp_path):
    from tests.cli_run import zoo

    r = zoo("compare", "--model", f"keras={user_file}:keras_mlp", "--model",
            f"torch={user_file}:TorchMLP", "--dataset", "digits", "--epochs", "1",
            "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    assert "keras (ref)" in r.stdout and "torch" in r.stdout
    doc = json.loads((tmp_path / "run" / "report.json").read_text())
    assert doc["frameworks"]["torch"]["first_divergent_step"] is None
    assert doc["frameworks"]["torch"]["max_weight_diff"] <= 1e-6
    assert [row["torch"] for row in doc["weight_table"]] == [["fc1.weight"], ["fc1.bias"],
                                                             ["fc2.weight"], ["fc2.bias"]]


@pytest.mark.parametrize("spec,expected", [
    ("keras={dir}/nope.py:keras_mlp", "no such file {dir}/nope.py; pass the path of the Python "
                                      "file that defines the model."),
    ("keras={file}:missing", "{file} defines no 'missing'; it defines keras_mlp, TorchMLP, "
                             "not_a_model."),
    ("keras={file}:not_a_model", "not_a_model() returned a int, not a keras.Model."),
    ("torch={file}:keras_mlp", "keras_mlp() returned a Sequential, not a torch.nn.Module."),
    ("torch{file}", "--model takes FRAMEWORK=PATH.py:NAME, e.g. --model torch=my_models.py:Net."),
])
def test_cli_model_mistakes_are_one_line_and_exit_2(user_file, capsys, spec, expected):
    from zoo.cli import main

    spec = spec.format(file=user_file, dir=user_file.parent)
    other = f"torch={user_file}:TorchMLP" if spec.startswith("keras") else \
        f"keras={user_file}:keras_mlp"
    code = main(["compare", "--model", spec, "--model", other, "--dataset", "digits",
                 "--epochs", "1", "--json", str(user_file.parent / "r.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0] == f"zoo compare: error: --model {spec!r}: " + expected.format(
        file=user_file, dir=user_file.parent)


# ----------------------------------------------------------------------------- the API's options
def test_native_optimizers_are_audited_with_the_fix():
    comp = compare_models({"keras": keras_mlp(), "torch": MLP()}, _flat(),
                          optimizer={"keras": keras.optimizers.RMSprop(1e-3),
                                     "torch": lambda p: torch.optim.RMSprop(p, lr=1e-3)},
                          batch_size=16)
    found = {f.setting: f for f in comp.differences}
    assert set(found) == {"optimizer rho", "optimizer epsilon"}, comp.message()
    assert found["optimizer rho"].reference_value == 0.9 and found["optimizer rho"].value == 0.99
    assert "use 0.9" in found["optimizer rho"].message
    assert found["optimizer epsilon"].reference_value == "1e-07 inside"
    assert found["optimizer epsilon"].value == "1e-08 outside"
    # and the runs part (torch's alpha 0.99 against Keras's rho 0.9)
    assert comp.results["torch"].first_divergent_step is not None


def test_native_optimizers_that_match_agree():
    comp = compare_models({"keras": keras_mlp(), "torch": MLP()}, _flat(),
                          optimizer={"keras": keras.optimizers.SGD(0.05, momentum=0.9),
                                     "torch": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)},
                          batch_size=16)
    assert comp.agrees(), comp.message()


def test_native_dropout_is_compared_by_metric():
    L = keras.layers
    km = _keras(None, L.Dense(16, activation="relu"), L.Dropout(0.5),
                L.Dense(3, activation="softmax"), input_shape=(12,))
    tm = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    comp = compare_models({"keras": km, "torch": tm}, _flat(), batch_size=16, dropout="native",
                          diagnose=False)
    assert any(n.startswith("native dropout: every framework draws its own masks")
               for n in comp.notes)
    assert comp.results["torch"].max_loss_diff > 1e-3   # different masks, as said
    assert 0.0 <= comp.results["torch"].metrics["accuracy"] <= 1.0


def test_an_explicit_mapping_pairs_layers_by_name():
    class Reordered(nn.Module):   # registers its layers out of forward order
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(16, 3)
            self.hidden = nn.Linear(12, 16)

        def forward(self, x):
            return self.out(torch.relu(self.hidden(x)))

    km = keras_mlp()
    names = [layer.name for layer in km.layers]
    comp = compare_models({"keras": km, "torch": Reordered()}, _flat(), batch_size=16,
                          mapping={"torch": {names[0]: "hidden", names[1]: "out"}})
    assert comp.agrees(), comp.message()
    with pytest.raises(ConfigError, match="mapping\\['torch'\\] has no torch layer"):
        compare_models({"keras": keras_mlp(), "torch": Reordered()}, _flat(),
                       mapping={"torch": {"nope": "hidden"}})
