"""The tf1-layers column: the zoo's models written as TF1 code was (`tf.compat.v1.layers`,
`rnn_cell` + `dynamic_rnn`, `tf.compat.v1.train`, a Session; package tf1_layers), run in
processes of their own with TF_USE_LEGACY_KERAS=1, and TF1 checkpoints of such code read by
their variable names (`zoo convert`, `zoo inspect`, `zoo predict`).

Nothing here imports tf1_layers in the test process (it refuses to share a process with
Keras 3): its code runs in the zoo's worker processes (`zoo.compare.compare`) and in
subprocesses with the registry's environment for it.

- the weight table's tf1-layers column: TF1's names, LSTMCell's one kernel over [x, h] with
  gates i, j, f, o and the forget_bias folded into the bias, GRUCell's split kernels; exact
  round trips; the other columns untouched (numpy only);
- the package refuses a process without Keras 2 or with Keras 3, before TensorFlow loads;
  importing the zoo never sets TF_USE_LEGACY_KERAS;
- agreement: after one epoch at toy size, through `zoo.compare.compare`, every model the
  column expresses, with every optimizer the TF1 optimizers offer across the cases, against
  keras, tf1, torch and the float64 numpy reference: within 1e-6 in float32 and 1e-12 in
  float64 (the default run: two cases against all five, the other models against the
  reference, which keras, tf1 and torch meet within the same bounds in tests/test_parity.py;
  `-m slow`: every model x optimizer x dtype against all five);
- TF1 checkpoints written by a tf.compat.v1.layers MLP, convnet and LSTM in a process of their
  own (Adam slots, global_step and all) convert to .keras and .pt with predictions equal to the
  TF1 script's within 1e-6; another architecture (a GRUCell) is refused with the variables no
  model can place.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TOL, load, magnitude, spec_for

from zoo import frameworks as F
from zoo import interchange as ic
from zoo.errors import ConfigError, DataError
from zoo.layers import GRU, LSTM, Block, Dense, from_native, resolve, to_native
from zoo.optimizers import OPTIMIZERS, OptimizerSpec
from zoo.specs import TrainSpec, init_weights

ROOT = Path(__file__).resolve().parent.parent
FW = "tf1-layers"
ENV = F.get(FW).environ()


def _run(code: str, *args: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env=ENV if env is None else env)


# ----------------------------------------------------------------------------- the column
def _gates(a: np.ndarray, order) -> np.ndarray:
    blocks = np.split(a, a.shape[-1] // (a.shape[-1] // len(order)), axis=-1)
    return np.concatenate([blocks[i] for i in order], axis=-1)


def test_the_lstm_column_is_lstm_cells_concatenated_kernel():
    """rnn/lstm_cell/kernel = [kernel; recurrent_kernel] with the gates i, f, c, o moved to
    i, j, f, o, the bias likewise with LSTMCell's forget_bias=1.0 taken off its forget
    block; a second LSTM in scope rnn_1; every tensor back bit for bit, the forget blocks
    within the rounding of taking 1 off and adding it back."""
    r = resolve([LSTM(5, return_sequences=True), LSTM(3), Dense(2)], (6, 4))
    rng = np.random.default_rng(0)
    w = {t.name: rng.normal(size=t.shape) for x in r for t in x.tensors}
    native = to_native(w, r, FW)
    assert {k: v.shape for k, v in native.items()} == {
        "rnn/lstm_cell/kernel": (9, 20), "rnn/lstm_cell/bias": (20,),
        "rnn_1/lstm_cell/kernel": (8, 12), "rnn_1/lstm_cell/bias": (12,),
        "dense/kernel": (3, 2), "dense/bias": (2,)}
    icfo = (0, 2, 1, 3)
    np.testing.assert_array_equal(native["rnn/lstm_cell/kernel"], _gates(
        np.concatenate([w["lstm_0/kernel"], w["lstm_0/recurrent_kernel"]]), icfo))
    bias = _gates(w["lstm_0/bias"], icfo)
    bias[10:15] -= 1.0
    np.testing.assert_array_equal(native["rnn/lstm_cell/bias"], bias)
    back = from_native(native, r, FW)
    biases = ("lstm_0/bias", "lstm_1/bias")
    assert all(np.array_equal(back[k], w[k]) for k in w if k not in biases)
    for k in biases:
        assert np.max(np.abs(back[k] - w[k])) <= 4.5e-16    # one rounding of |b| < 4
    # the other columns are what they were
    assert set(to_native(w, r, "tf1")) == set(w)
    assert "lstm_0.weight_ih_l0" in to_native(w, r, "torch")


def test_the_gru_column_is_gru_cells_two_kernels():
    """A reset_after=False GRU: gates/kernel [x; h] with gates r, u (u = z), candidate/kernel
    with h; a reset_after=True GRU has no TF1 cell and no column (named when asked)."""
    r = resolve([GRU(3, reset_after=False)], (4, 2))
    rng = np.random.default_rng(1)
    w = {t.name: rng.normal(size=t.shape) for x in r for t in x.tensors}
    native = to_native(w, r, FW)
    k, rk, b = w["gru_0/kernel"], w["gru_0/recurrent_kernel"], w["gru_0/bias"]
    np.testing.assert_array_equal(native["rnn/gru_cell/gates/kernel"],
                                  np.concatenate([k[:, [3, 4, 5, 0, 1, 2]],
                                                  rk[:, [3, 4, 5, 0, 1, 2]]]))
    np.testing.assert_array_equal(native["rnn/gru_cell/candidate/kernel"],
                                  np.concatenate([k[:, 6:], rk[:, 6:]]))
    np.testing.assert_array_equal(native["rnn/gru_cell/gates/bias"], b[[3, 4, 5, 0, 1, 2]])
    np.testing.assert_array_equal(native["rnn/gru_cell/candidate/bias"], b[6:])
    back = from_native(native, r, FW)
    assert all(np.array_equal(back[k], w[k]) for k in w)
    with pytest.raises(ConfigError, match=r"gru_0/kernel: no 'tf1-layers' translation"):
        to_native(init_weights_of(resolve([GRU(3)], (4, 2))), resolve([GRU(3)], (4, 2)), FW)


def init_weights_of(r) -> dict:
    return {t.name: np.zeros(t.shape) for x in r for t in x.tensors}


def test_blocks_must_tile_their_tensor():
    with pytest.raises(ConfigError, match=r"native tensor k: its blocks \[\(0, 2\), \(1, 3\)\] "
                       r"do not tile its 3 rows"):
        Block.join("k", [Block(np.zeros((2, 1)), 0, 2, 3), Block(np.zeros((2, 1)), 1, 3, 3)])


def test_every_model_but_the_reset_after_grus_has_the_column():
    """TF1's layer names per model (from the tables: the graphs check they are what the
    layers create, in `tf1_layers.model.build`)."""
    names = {}
    for model, ds in DATASETS.items():
        spec = spec_for(model, load(ds))
        names[model] = sorted(to_native(init_weights(spec), spec.resolved, FW))
    assert names["mlp_ln"] == sorted(["dense/kernel", "dense/bias", "LayerNorm/gamma",
                                      "LayerNorm/beta", "dense_1/kernel", "dense_1/bias",
                                      "LayerNorm_1/gamma", "LayerNorm_1/beta", "dense_2/kernel",
                                      "dense_2/bias"])
    assert "batch_normalization_1/moving_variance" in names["cnn_bn"]
    assert names["lenet"][:4] == ["conv2d/bias", "conv2d/kernel", "conv2d_1/bias",
                                  "conv2d_1/kernel"]
    for model in ("gru", "embedding_gru"):
        ds = load("tokens" if model == "embedding_gru" else "digits")
        spec = spec_for(model, ds)
        with pytest.raises(ConfigError, match="no 'tf1-layers' translation"):
            to_native(init_weights(spec), spec.resolved, FW)


# ----------------------------------------------------------------------------- the process
def test_the_registry_entry():
    fw = F.get(FW)
    assert (fw.package, fw.weight_format, fw.suffix, fw.cli_train, fw.compared_by_default) == \
        ("tf1_layers", "tf1-layers", None, True, False)
    assert dict(fw.env)["TF_USE_LEGACY_KERAS"] == "1"
    assert FW not in ic.FORMATS.values()           # .ckpt stays tf1's suffix
    assert F.for_format("tf1-layers") is fw


REFUSE = """
import sys, types
if sys.argv[1] == "keras3":
    sys.modules["keras"] = types.ModuleType("keras")   # as if Keras 3 had been imported
from zoo.errors import ConfigError
try:
    import tf1_layers
except ConfigError as exc:
    print(str(exc))
print("tensorflow" in sys.modules)
"""


def test_the_package_refuses_a_process_without_keras_2():
    without = {k: v for k, v in ENV.items() if k != "TF_USE_LEGACY_KERAS"}
    r = _run(REFUSE, "plain", env=without)
    assert r.returncode == 0, r.stderr
    msg, tf_loaded = r.stdout.strip().splitlines()
    assert msg.startswith("tf1_layers needs Keras 2 (tf_keras), which TensorFlow uses only "
                          "with TF_USE_LEGACY_KERAS=1 set before it is imported (it is 'unset' "
                          "here); start the process with TF_USE_LEGACY_KERAS=1")
    assert tf_loaded == "False"
    r = _run(REFUSE, "keras3")
    msg, tf_loaded = r.stdout.strip().splitlines()
    assert "mixing both Keras versions in one process does not work" in msg
    assert msg.startswith("tf1_layers needs Keras 2 but Keras 3 (the keras module) is already "
                          "imported in this process")
    assert tf_loaded == "False"


def test_importing_the_zoo_never_sets_the_variable():
    code = ("import os, sys, zoo, zoo.cli, zoo.compare, zoo.interchange, zoo.frameworks as F; "
            "zoo.cli.build_parser(); F.get('tf1-layers').environ(); "
            "print(os.environ.get('TF_USE_LEGACY_KERAS'), 'tensorflow' in sys.modules)")
    env = {k: v for k, v in ENV.items() if k != "TF_USE_LEGACY_KERAS"}
    r = _run(code, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["None", "False"]


# ----------------------------------------------------------------------------- agreement
#: model -> the dataset it trains on
DATASETS = {"softmax": "iris", "svm": "digits", "linear": "icecream", "logistic": "breast_cancer",
            "mlp": "digits", "cnn": "digits", "cnn_bn": "digits", "mlp_ln": "digits",
            "lstm": "digits", "lenet": "digits28", "nielsen": "digits"}
ALL = (FW, "keras", "tf1", "torch", "numpy")
REFERENCE = (FW, "numpy")
#: the default run: the LSTM (one kernel over [x, h], forget_bias) against keras, torch and
#: the reference in float32, cnn_bn (UPDATE_OPS, moving statistics) against tf1, torch and
#: the reference in float64, one case per other model against the reference; every
#: optimizer and both dtypes among them (each worker process costs a TensorFlow or torch
#: import: the whole matrix against all five is the slow test below)
DEFAULT = [("lstm", "adam", "float32", (FW, "keras", "torch", "numpy")),
           ("cnn_bn", "momentum", "float64", (FW, "tf1", "torch", "numpy")),
           ("softmax", "sgd", "float64", REFERENCE), ("svm", "nesterov", "float32", REFERENCE),
           ("linear", "rmsprop", "float64", REFERENCE),
           ("logistic", "centered_rmsprop", "float32", REFERENCE),
           ("mlp", "adagrad", "float64", REFERENCE), ("cnn", "adam", "float64", REFERENCE),
           ("mlp_ln", "rmsprop", "float32", REFERENCE), ("lenet", "sgd", "float32", REFERENCE),
           ("nielsen", "momentum", "float32", REFERENCE)]
LR = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "rmsprop": 0.005,
      "centered_rmsprop": 0.005, "adam": 0.005, "adagrad": 0.05}


def _compare(model: str, opt: str, dtype: str, frameworks):
    from zoo.compare import compare

    ds = load(DATASETS[model], dtype)
    ds = dataclasses.replace(ds, X_train=ds.X_train[:48], y_train=ds.y_train[:48],
                             X_test=ds.X_test[:30], y_test=ds.y_test[:30])
    spec = spec_for(model, ds)
    if model == "lstm":
        spec = dataclasses.replace(spec, hidden=(16,))
    lr = LR[opt] * (0.1 if model == "linear" else 1.0)
    if model == "lenet" and "rmsprop" in opt:
        # RMSprop turns LeNet's float32 rounding of tiny gradients into steps: 2.4e-6 apart
        # at lr 5e-3 in 3 steps (tests/test_parity.py uses 1e-3 for the same reason)
        lr = 1e-3
    kw = {}
    if opt in ("rmsprop", "centered_rmsprop", "adam"):
        # epsilon inside the root (Keras, TF1) or outside (torch): negligible only while
        # gradients exceed it (tests/test_parity.py measures why)
        kw["epsilon"] = 1e-40 if dtype == "float64" else 1e-30
    ts = TrainSpec(OptimizerSpec(opt, lr=lr, **kw), epochs=1, batch_size=16, dtype=dtype)
    return compare(spec, ts, ds, frameworks=list(frameworks), init=init_weights(spec, 2, dtype))


def _assert_agree(model: str, dtype: str, comp) -> None:
    ref = comp.results[FW].history
    assert len(ref.losses) == 3 and comp.reference == FW
    moved = max(float(np.max(np.abs(ref.weights[k] - comp.init[k]))) for k in comp.init)
    assert moved > 1e-4, "training did not move the weights"
    scale = magnitude(ref.weights) if model in ("linear", "nielsen") else 1.0
    for fw, r in comp.results.items():
        if fw == FW:
            continue
        if r.max_weight_diff / scale > TOL[dtype] and "keras" in comp.results and fw != "keras":
            # a framework that leaves the TF paths as a whole (torch's float32 centered
            # RMSprop on the toy MLP: 2.9e-6 from tf1-layers, keras and tf1 alike, which agree
            # within 1.4e-7): the column must be no further from it than Keras 3 is
            from zoo.agreement import differences

            d = differences(r.history, comp.results["keras"].history, comp.tolerance)
            assert abs(r.max_weight_diff - d.max_weight_diff) / scale <= TOL[dtype], \
                (fw, r.max_weight_diff, d.max_weight_diff)
            assert comp.results["keras"].max_weight_diff / scale <= TOL[dtype]
            continue
        assert r.max_weight_diff / scale <= TOL[dtype], (fw, r.max_weight_diff)
        assert r.first_divergent_step is None, (fw, r.first_divergent_step)


@pytest.mark.parametrize("model,opt,dtype,frameworks", DEFAULT,
                         ids=[f"{m}-{o}-{d}-{len(f)}" for m, o, d, f in DEFAULT])
def test_one_epoch_agrees(model, opt, dtype, frameworks):
    _assert_agree(model, dtype, _compare(model, opt, dtype, frameworks))


SLOW = [pytest.param(m, o, d, marks=pytest.mark.slow, id=f"{m}-{o}-{d}")
        for m in DATASETS for o in OPTIMIZERS for d in ("float32", "float64")]


@pytest.mark.parametrize("model,opt,dtype", SLOW)
def test_one_epoch_agrees_with_every_framework(model, opt, dtype):
    _assert_agree(model, dtype, _compare(model, opt, dtype, ALL))


# ----------------------------------------------------------------------------- old checkpoints
#: TF1 code as it was written: three models of the zoo and one the zoo does not have, each
#: trained 5 Adam steps and saved with a default Saver (slots and global_step included); the
#: softmax outputs on the probe inputs go to predictions.npz.
USER_TF1 = '''
import sys
import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
out = sys.argv[1]
data = np.load(f"{out}/data.npz")
X, y, P = data["X"], data["y"], data["probe"]
preds = {}


def fit(name, build, shape):
    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(1)
        x = tf1.placeholder(tf.float32, (None, *shape))
        labels = tf1.placeholder(tf.int64, (None,))
        training = tf1.placeholder_with_default(False, ())
        logits = build(x, training)
        loss = tf1.losses.sparse_softmax_cross_entropy(labels, logits)
        step = tf1.train.get_or_create_global_step()
        with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
            train_op = tf1.train.AdamOptimizer(0.01).minimize(loss, global_step=step)
        probs = tf.nn.softmax(logits)
        saver = tf1.train.Saver()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for i in range(5):
                batch = slice(16 * i, 16 * i + 16)
                sess.run(train_op, {x: X[batch].reshape(-1, *shape), labels: y[batch],
                                    training: True})
            saver.save(sess, f"{out}/{name}.ckpt")
            preds[name] = sess.run(probs, {x: P.reshape(-1, *shape)})


def mlp(x, training):
    h = tf1.layers.dense(x, 64, activation=tf.nn.relu)
    h = tf1.layers.dropout(h, 0.5, training=training)
    h = tf1.layers.dense(h, 32, activation=tf.nn.relu)
    h = tf1.layers.dropout(h, 0.5, training=training)
    return tf1.layers.dense(h, 10)


def convnet(x, training):
    h = tf1.layers.conv2d(x, 8, 3, padding="same", use_bias=False)
    h = tf.nn.relu(tf1.layers.batch_normalization(h, training=training))
    h = tf1.layers.max_pooling2d(h, 2, 2)
    h = tf1.layers.conv2d(h, 16, 3, strides=2, padding="same", use_bias=False)
    h = tf.nn.relu(tf1.layers.batch_normalization(h, training=training))
    return tf1.layers.dense(tf1.layers.flatten(h), 10)


def lstm(x, training):
    outputs, state = tf1.nn.dynamic_rnn(tf1.nn.rnn_cell.LSTMCell(16), x, dtype=tf.float32)
    return tf1.layers.dense(state.h, 10)


def gru(x, training):
    outputs, state = tf1.nn.dynamic_rnn(tf1.nn.rnn_cell.GRUCell(16), x, dtype=tf.float32)
    return tf1.layers.dense(state, 10)


fit("mlp", mlp, (64,))
fit("convnet", convnet, (8, 8, 1))
fit("lstm", lstm, (8, 8))
fit("gru", gru, (8, 8))
np.savez(f"{out}/predictions.npz", **preds)
'''


#: The package itself, in the same process after USER_TF1 (a second TensorFlow import
#: would double the cost): saved and loaded with TF1's names, built from TF1's own
#: initializers when no weights are given (and trained), a reset_after=True GRU refused.
PACKAGE = """
import json
from zoo.errors import ConfigError
from zoo.specs import init_weights, model_spec_for, TrainSpec
from zoo.optimizers import OptimizerSpec
import tf1_layers.io as io, tf1_layers.model as M, tf1_layers.train as T
result = {}
spec = model_spec_for("lstm", 64, 10, input_shape=(8, 8, 1), hidden=(8,))
w = init_weights(spec, 5)
io.save(spec, w, f"{out}/package.ckpt")
spec2, w2 = io.load(f"{out}/package.ckpt")
result["io"] = [spec2 == spec, max(float(np.abs(w2[k] - w[k]).max()) for k in w)]
m = M.build(spec, None, seed=3)   # TF1's own initializers
native = m.native_weights()
m.close()
result["default_bias"] = float(np.abs(native["rnn/lstm_cell/bias"]).max())
result["default_kernel"] = float(np.abs(native["rnn/lstm_cell/kernel"]).max())
h = T.train(spec, TrainSpec(OptimizerSpec("adam", lr=0.01), batch_size=16),
            X[:48].reshape(-1, 8, 8), y[:48])
result["default_losses"] = [float(v) for v in h.losses]
try:
    M.build(model_spec_for("gru", 64, 10, input_shape=(8, 8, 1)))
except ConfigError as exc:
    result["gru"] = str(exc)
with open(f"{out}/package.json", "w") as f:
    json.dump(result, f)
"""


def test_the_package_in_its_own_process(user_checkpoints):
    """Saved and loaded in TF1's checkpoint format with TF1's names; built from TF1's own
    initializers when no weights are given (and trains); a reset_after=True GRU refused."""
    d, _ = user_checkpoints
    out = json.loads((d / "package.json").read_text())
    assert out["io"] == [True, 0.0]
    assert json.loads((d / "package.ckpt.json").read_text())["format"] == "tf1-layers"
    assert out["default_bias"] == 0.0
    assert 0.9 * np.sqrt(6 / (16 + 32)) < out["default_kernel"] <= np.sqrt(6 / (16 + 32))
    assert len(out["default_losses"]) == 3 and np.isfinite(out["default_losses"]).all()
    assert out["gru"].startswith("gru_0: TF1's rnn_cell.GRUCell is the reset_after=False GRU")
    # the checkpoint, read here by its names (no legacy Keras in this process)
    spec, w = ic.load(d / "package.ckpt")
    assert spec.name == "lstm" and spec.hidden == (8,)


@pytest.fixture(scope="module")
def user_checkpoints(tmp_path_factory):
    """The checkpoints and predictions of USER_TF1, then PACKAGE's checks, in one process
    with the tf1-layers environment; the probe inputs are the first 96 digits of the test
    split."""
    d = tmp_path_factory.mktemp("user_tf1")
    ds = load("digits")
    np.savez(d / "data.npz", X=ds.X_train[:80], y=ds.y_train[:80], probe=ds.X_test[:96])
    r = _run(USER_TF1 + PACKAGE, str(d))
    assert r.returncode == 0, r.stderr[-3000:]
    with np.load(d / "predictions.npz") as z:
        return d, {k: z[k] for k in z.files}


def test_tf1_layer_checkpoints_convert_to_keras_and_torch(user_checkpoints, capsys):
    """`zoo convert OLD.ckpt NEW.keras` / `NEW.pt` on a TF1 script's own checkpoints (no
    sidecar): each becomes the zoo model its names and shapes fit, and Keras 3 and torch
    predict what the TF1 script computed, within 1e-6."""
    from zoo.cli import main

    d, preds = user_checkpoints
    probe = load("digits").X_test[:96]
    expect = {"mlp": "mlp", "convnet": "cnn_bn", "lstm": "lstm"}
    for name, model in expect.items():
        for suffix in (".keras", ".pt"):
            dst = d / f"{name}{suffix}"
            assert main(["convert", str(d / f"{name}.ckpt"), str(dst)]) == 0
            out = capsys.readouterr().out
            assert f"as model {model}, " in out and "of optimizer state skipped" in out
            spec, weights = ic.load(dst)
            assert spec.name == model
            fw = F.for_format(ic.stored_format(dst))
            got = fw.predict(spec, weights, probe.reshape(len(probe), *spec.input_shape))
            diff = float(np.max(np.abs(got - preds[name])))
            print(f"{name} -> {suffix}: max prediction difference {diff:.2g}")
            assert diff <= 1e-6, (name, suffix, diff)


def test_zoo_predict_and_inspect_read_an_old_checkpoint(user_checkpoints, tmp_path, capsys):
    from zoo.cli import main

    d, preds = user_checkpoints
    out = tmp_path / "p.json"
    assert main(["predict", str(d / "convnet.ckpt"), "--dataset", "digits", "--json",
                 str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["model"] == "cnn_bn" and doc["format"] == "tf1"
    assert float(np.max(np.abs(np.array(doc["predictions"])[:96] - preds["convnet"]))) <= 1e-6
    capsys.readouterr()
    assert main(["inspect", str(d / "lstm.ckpt")]) == 0
    text = capsys.readouterr().out
    assert "rnn/lstm_cell/kernel" in text and "lstm_0/kernel, lstm_0/recurrent_kernel" in text
    assert "rnn/lstm_cell/kernel/Adam" in text and "optimizer state (skipped)" in text
    assert "lstm_0/bias [64] <- rnn/lstm_cell/bias: gates i, f, c, o -> i, j, f, o; the " \
           "forget block minus LSTMCell's forget_bias=1.0" in text
    assert main(["inspect", str(d / "mlp.ckpt"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"]["name"] == "mlp" and doc["also"] == ["nielsen"]
    assert {v["name"]: v["canonical"] for v in doc["variables"]}["dense_1/kernel"] == \
        ["dense_1/kernel"]
    # a checkpoint of the zoo's own tf1 framework: its sidecar names the model
    spec = spec_for("softmax", load("iris"))
    ic.save("tf1", spec, init_weights(spec), tmp_path / "zoo.ckpt")
    assert main(["inspect", str(tmp_path / "zoo.ckpt")]) == 0
    assert "2 variables of the zoo's tf1 framework (model softmax" in capsys.readouterr().out


def test_a_checkpoint_of_another_architecture_is_refused(user_checkpoints, tmp_path, capsys):
    """A GRUCell classifier: no zoo model has its variables; convert and inspect name every
    one that cannot be placed, and write nothing. --model of another model is refused too."""
    from zoo.cli import main

    d, _ = user_checkpoints
    unplaced = ("rnn/gru_cell/candidate/bias [16], rnn/gru_cell/candidate/kernel [24, 16], "
                "rnn/gru_cell/gates/bias [32], rnn/gru_cell/gates/kernel [24, 32]")
    with pytest.raises(DataError, match="does not fit any zoo model: it cannot place 4 of its "
                       "variables: " + re.escape(unplaced) + "; "):
        ic.read_tf1_checkpoint(d / "gru.ckpt")
    assert main(["convert", str(d / "gru.ckpt"), str(tmp_path / "gru.keras")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and unplaced in err
    assert "TF1's GRUCell is the reset_after=False GRU" in err
    assert not (tmp_path / "gru.keras").exists()
    assert main(["inspect", str(d / "gru.ckpt")]) == 1
    assert "UNPLACED" in capsys.readouterr().out
    assert main(["convert", str(d / "mlp.ckpt"), str(tmp_path / "m.npz"), "--model",
                 "cnn"]) == 2
    err = capsys.readouterr().err
    assert "does not fit model 'cnn': it cannot place 6 of its variables: dense/bias [64]" in err


# ----------------------------------------------------------------------------- matching
def test_matching_by_names_and_shapes():
    """The mapping without TensorFlow: ties resolved (one sigmoid unit is logistic), a scope
    over every name taken off, optimizer state skipped, --model honoured."""
    rng = np.random.default_rng(3)
    one = {"dense/kernel": rng.normal(size=(30, 1)), "dense/bias": rng.normal(size=1),
           "dense/kernel/Momentum": np.zeros((30, 1)), "global_step": np.array(7)}
    m = ic.map_checkpoint(one)
    assert (m.spec.name, m.also, m.skipped) == ("logistic", ["linear", "softmax", "svm"],
                                                ["dense/kernel/Momentum", "global_step"])
    assert ic.map_checkpoint(one, model="svm").spec.name == "svm"
    scoped = {f"model/{k}": v for k, v in one.items() if "/" in k}
    m = ic.map_checkpoint(scoped)
    assert m.scope == "model/" and m.spec.n_features == 30
    np.testing.assert_array_equal(m.weights["dense_0/kernel"], one["dense/kernel"])
    assert "every variable is under the scope 'model/': read without it" in m.notes
