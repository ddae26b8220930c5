"""Embedding, LSTM and GRU in the TF1 graphs (`tf1_compat`): each translation against a numpy
transcription of the equations in the `zoo.layers` docstrings, one epoch, one step and
`predict` against the float64 reference (`zoo.reference`), the dense embedding gradient, the
weights through checkpoints and `.ckpt` files, and what TF1's own cells would have done
(`tf.compat.v1.nn.rnn_cell.LSTMCell` raises under Keras 3; the class still ships inside
TensorFlow, and loading canonical weights into it naively is measured here). Small on
purpose: 160 digits images read as 8 rows of 8, or 320 `tokens` sequences; units 16."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tensorflow as tf
from helpers import load, max_diff, model_inputs, np_gru, np_lstm

from tf1_compat import io as tf1_io
from tf1_compat import train as T
from tf1_compat.layers import Context, translate
from zoo import reference
from zoo.layers import GRU, LSTM, Dense, Embedding, init_weights, resolve
from zoo.models import ARCHITECTURES, Architecture
from zoo.optimizers import OptimizerSpec
from zoo.specs import ModelSpec, TrainSpec, model_spec_for
from zoo.specs import init_weights as spec_init

tf1 = tf.compat.v1

#: the largest weight difference after one epoch against the float64 reference
TOL = {"float64": 1e-12, "float32": 1e-6}
LR = {"sgd": 0.1, "adam": 0.01, "rmsprop": 0.01}
SAMPLES = {"digits": 160, "tokens": 320}


def _data(model: str, hidden=(16,)):
    """(spec, X, y): digits read as 8 rows of 8 for lstm/gru, token ids for embedding_gru."""
    ds = load("tokens" if model == "embedding_gru" else "digits")
    spec = model_spec_for(model, ds.n_features, ds.n_outputs, hidden=hidden, vocab=ds.vocab,
                          input_shape=None if ds.vocab else (8, 8, 1))
    n = SAMPLES["tokens" if ds.vocab else "digits"]
    return spec, model_inputs(ds.X_train[:n], spec), ds.y_train[:n]


@pytest.fixture
def probe(monkeypatch):
    """probe(layers) -> a ModelSpec of that layer list on digits rows (8 steps of 8): the
    variants no zoo model has (GRU reset_after=False, stacked return_sequences)."""

    def make(layers) -> ModelSpec:
        arch = Architecture("probe", "classification", "cross_entropy", "softmax",
                            "test layer list", lambda spec: list(layers), sequence="rows")
        monkeypatch.setitem(ARCHITECTURES, "probe", arch)
        return ModelSpec("probe", 64, 10, input_shape=(8, 8))

    return make


# ----------------------------------------------------------------------------- numpy
def _layer_run(layer, input_shape, x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """One layer alone in a TF1 graph, fed x."""
    (r,) = resolve([layer], input_shape)
    g = tf.Graph()
    with g.as_default():
        ctx = Context(str(x.dtype), w, tf1.placeholder_with_default(False, ()),
                      tf1.placeholder_with_default(False, ()))
        ph = tf1.placeholder(str(x.dtype), (None, *input_shape))
        out = translate(r, ph, ctx)
        with tf1.Session(graph=g) as sess:
            sess.run(tf1.global_variables_initializer())
            return sess.run(out, {ph: x})


def _random_weights(layer, input_shape, dtype: str, seed: int = 3) -> dict[str, np.ndarray]:
    """The layer's initial weights with every bias away from its initial value."""
    resolved = resolve([layer], input_shape)
    w = init_weights(resolved, 0, "float64")
    rng = np.random.default_rng(seed)
    for name in w:
        if name.endswith("/bias"):
            w[name] = w[name] + rng.normal(0.0, 0.5, w[name].shape)
    return {k: v.astype(dtype) for k, v in w.items()}


LAYERS = {
    "lstm": LSTM(16), "lstm_sequences": LSTM(16, return_sequences=True),
    "gru": GRU(16), "gru_sequences": GRU(16, return_sequences=True),
    "gru_reset_before": GRU(16, reset_after=False),
    "gru_reset_before_sequences": GRU(16, reset_after=False, return_sequences=True)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_recurrent_layer_is_the_docstring_equations(kind, dtype) -> None:
    layer = LAYERS[kind]
    x = np.random.default_rng(1).normal(size=(5, 7, 6)).astype(dtype)
    w = _random_weights(layer, (7, 6), dtype)
    k, rk, b = (w[f"{kind.split('_')[0]}_0/{n}"]
                for n in ("kernel", "recurrent_kernel", "bias"))
    x64, (k, rk, b) = x.astype(np.float64), (a.astype(np.float64) for a in (k, rk, b))
    if isinstance(layer, LSTM):
        want = np_lstm(x64, k, rk, b, layer.return_sequences)
    else:
        want = np_gru(x64, k, rk, b, layer.reset_after, layer.return_sequences)
    got = _layer_run(layer, (7, 6), x, w)
    assert got.shape == want.shape == ((5, 7, 16) if layer.return_sequences else (5, 16))
    assert np.max(np.abs(got - want)) <= {"float64": 1e-14, "float32": 1e-6}[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_looks_up_rows_of_float_ids(dtype) -> None:
    ids = np.random.default_rng(2).integers(0, 11, size=(4, 9)).astype(dtype)
    w = _random_weights(Embedding(11, 5), (9,), dtype)
    got = _layer_run(Embedding(11, 5), (9,), ids, w)
    assert got.shape == (4, 9, 5)
    assert np.array_equal(got, w["embedding_0/embeddings"][ids.astype(np.int64)])


def test_default_initializers_follow_the_weight_table() -> None:
    """Built without initial values, the recurrent layers start as Keras does: orthogonal
    recurrent kernels, the LSTM bias zero but ones on the forget gate, GRU biases zero,
    embeddings in U(-0.05, 0.05)."""
    from tf1_compat.model import build

    for model in ("lstm", "embedding_gru"):
        spec, _, _ = _data(model)
        m = build(spec, None, "float64", seed=0)
        try:
            w = m.get_weights()
        finally:
            m.close()
        rnn = "lstm_0" if model == "lstm" else "gru_0"
        rk = w[f"{rnn}/recurrent_kernel"]
        assert np.allclose(rk @ rk.T, np.eye(rk.shape[0]), atol=1e-12)  # (u, G*u): rows
        b = w[f"{rnn}/bias"]
        want = np.zeros_like(b)
        if model == "lstm":
            want[16:32] = 1.0
        assert np.array_equal(b, want)
    assert np.abs(w["embedding_0/embeddings"]).max() <= 0.05


# ----------------------------------------------------------------------------- reference
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("model", ["lstm", "gru", "embedding_gru"])
def test_one_epoch_matches_the_reference(model, optimizer, dtype) -> None:
    spec, X, y = _data(model)
    ts = TrainSpec(OptimizerSpec(optimizer, lr=LR[optimizer]), batch_size=32, dtype=dtype)
    want = reference.train(spec, ts, X, y, spec_init(spec, 0, "float64"))
    got = T.train(spec, ts, X, y, spec_init(spec, 0, dtype))
    assert max_diff(got.weights, want.weights) <= TOL[dtype]
    assert np.max(np.abs(got.losses - want.losses)) <= 10 * TOL[dtype]
    if optimizer == "adam":  # predictions of the trained weights
        p = T.predict(spec, got.weights, X[:64])
        assert np.max(np.abs(p - reference.predict(spec, got.weights, X[:64]))) <= 1e-6


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layers", ["reset_before", "stacked"])
def test_probe_layers_match_the_reference(probe, layers, dtype) -> None:
    """GRU reset_after=False, and a return_sequences LSTM feeding a GRU (the sequence back
    to batch-major between them)."""
    spec = probe([GRU(16, reset_after=False), Dense(10)] if layers == "reset_before" else
                 [LSTM(8, return_sequences=True), GRU(8, reset_after=False), Dense(10)])
    _, X, y = _data("lstm")
    ts = TrainSpec(OptimizerSpec("adam", lr=0.01), batch_size=32, dtype=dtype)
    want = reference.train(spec, ts, X, y, spec_init(spec, 0, "float64"))
    got = T.train(spec, ts, X, y, spec_init(spec, 0, dtype))
    assert max_diff(got.weights, want.weights) <= TOL[dtype]
    p = T.predict(spec, got.weights, X[:64])
    assert np.max(np.abs(p - reference.predict(spec, got.weights, X[:64]))) <= 1e-6


@pytest.mark.parametrize("model", ["lstm", "embedding_gru"])
def test_step_details_match_the_reference(model) -> None:
    spec, X, y = _data(model)
    w = spec_init(spec, 0, "float64")
    got = T.step_details(spec, w, X[:32], y[:32], l2=1e-3)
    want = reference.step_details(spec, w, X[:32], y[:32], l2=1e-3)
    assert got["state"] == {} and list(got["grads"]) == list(want["grads"])
    assert abs(got["loss"] - want["loss"]) <= 1e-13
    assert np.max(np.abs(got["logits"] - want["logits"])) <= 1e-13
    assert max_diff(got["grads"], want["grads"]) <= 1e-13


def test_embedding_gradients_reach_the_optimizer_dense(monkeypatch) -> None:
    """Batches of 2 sequences (20 ids of 16) leave some rows of the embeddings unused. With
    `minimize`'s sparse gradient, RMSprop would skip their mean-square decay; the dense
    gradient decays every row as the reference does (measured 4.4e-13 from it; the sparse
    one 8.5e-3). The allowance is wider than the one-epoch tests' 1e-12 because batches of 2
    give recurrent-kernel gradients below RMSprop's epsilon (down to 2.5e-10), where the
    update's sensitivity to its gradient is up to lr / epsilon = 1e5: a 1e-18 rounding
    difference of the gradient moves the weight by 1e-13."""
    spec, X, y = _data("embedding_gru")
    ts = TrainSpec(OptimizerSpec("rmsprop", lr=0.01), batch_size=2, dtype="float64")
    X, y = X[:40], y[:40]
    want = reference.train(spec, ts, X, y, spec_init(spec, 0, "float64"))
    dense = T.train(spec, ts, X, y, spec_init(spec, 0, "float64"))
    assert max_diff(dense.weights, want.weights) <= 1e-10
    monkeypatch.setattr(T, "_dense", lambda g: g)  # the IndexedSlices, as `minimize` has them
    sparse = T.train(spec, ts, X, y, spec_init(spec, 0, "float64"))
    assert max_diff(sparse.weights, want.weights) > 1e-4


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize("model", ["lstm", "embedding_gru"])
def test_ckpt_file_round_trip(tmp_path, model) -> None:
    spec, X, _ = _data(model)
    w = _trained_like(spec)
    path = tf1_io.save(spec, w, tmp_path / "m.ckpt")
    reader = tf1.train.load_checkpoint(str(path))
    assert sorted(reader.get_variable_to_shape_map().items()) == \
        sorted((k, list(v)) for k, v in spec.weight_shapes().items())
    spec2, back = tf1_io.load(path)
    assert spec2 == spec and list(back) == list(w)
    assert all(np.array_equal(back[k], w[k]) for k in w)
    assert np.array_equal(T.predict(spec, back, X), T.predict(spec, w, X))


def _trained_like(spec) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    return {k: (v + rng.normal(0, 0.1, v.shape)).astype("float32")
            for k, v in spec_init(spec).items()}


# ----------------------------------------------------------------------------- TF1's cells
def test_tf1_rnn_cells_raise_under_keras_3() -> None:
    for name in ("LSTMCell", "GRUCell", "BasicLSTMCell"):
        with pytest.raises(AttributeError, match=f"`{name}` is not available with Keras 3."):
            getattr(tf1.nn.rnn_cell, name)(4)


def _legacy_cells():
    """TF1's cell classes as they still ship inside TensorFlow (a private module: the test
    is skipped where it is gone)."""
    try:
        from tensorflow.python.keras.layers.legacy_rnn import rnn_cell_impl
    except ImportError as exc:  # pragma: no cover - depends on the TF build
        pytest.skip(f"TF1's rnn_cell_impl is not importable: {exc}")
    return rnn_cell_impl


def _cell_run(cell, x: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
    """The last step's output of `cell` over x by `tf.compat.v1.nn.dynamic_rnn`, with the
    cell's variables (by their names in the scope) loaded from `values`."""
    g = tf.Graph()
    with g.as_default(), warnings.catch_warnings():
        # the legacy classes warn that they are deprecated (and `add_variable` too)
        warnings.simplefilter("ignore", UserWarning)
        ph = tf1.placeholder(tf.float64, (None, *x.shape[1:]))
        out, _ = tf1.nn.dynamic_rnn(cell(), ph, dtype=tf.float64)
        variables = {v.op.name.removeprefix("rnn/"): v for v in tf1.global_variables()}
        assert sorted(variables) == sorted(values)
        with tf1.Session(graph=g) as sess:
            sess.run([v.assign(values[k]) for k, v in variables.items()])
            return sess.run(out, {ph: x})[:, -1]


def _blocks(a: np.ndarray, order, u: int) -> np.ndarray:
    """The gate blocks of u columns along the last axis, in `order`."""
    g = a.shape[-1] // u
    return a.reshape(*a.shape[:-1], g, u)[..., list(order), :].reshape(*a.shape[:-1], -1)


def test_tf1_lstm_cell_gates_are_i_j_f_o_with_forget_bias_one() -> None:
    """TF1's LSTMCell: ONE kernel (features + units, 4u) over [x, h], gates i, j, f, o (j the
    candidate), and forget_bias=1.0 added to f at run time. Canonical (Keras) weights loaded
    naively (kernel stacked over recurrent_kernel, the bias as it is) compute another
    function; reordered to i, c, f, o with 1 taken off the forget bias they compute the same."""
    cells = _legacy_cells()
    spec, X, _ = _data("lstm")
    w = spec_init(spec, 0, "float64")
    k, rk, b = (w[f"lstm_0/{n}"] for n in ("kernel", "recurrent_kernel", "bias"))
    u = 16
    want = np_lstm(X, k, rk, b)

    def cell(forget_bias=1.0):
        return lambda: cells.LSTMCell(u, forget_bias=forget_bias, dtype=tf.float64)

    naive = _cell_run(cell(), X, {"lstm_cell/kernel": np.concatenate([k, rk]),
                                  "lstm_cell/bias": b})
    assert np.max(np.abs(naive - want)) > 0.5     # measured 1.39 (|h| <= 0.77)
    order = (0, 2, 1, 3)                          # TF1's gate k is canonical gate order[k]
    kernel = np.concatenate([_blocks(k, order, u), _blocks(rk, order, u)])
    reordered = _blocks(b, order, u)
    twice = _cell_run(cell(), X, {"lstm_cell/kernel": kernel, "lstm_cell/bias": reordered})
    assert np.max(np.abs(twice - want)) > 0.1     # the forget bias counted twice: 0.33
    converted = reordered.copy()
    converted[2 * u:3 * u] -= 1.0
    same = _cell_run(cell(), X, {"lstm_cell/kernel": kernel, "lstm_cell/bias": converted})
    assert np.max(np.abs(same - want)) <= 1e-14
    same = _cell_run(cell(0.0), X, {"lstm_cell/kernel": kernel, "lstm_cell/bias": reordered})
    assert np.max(np.abs(same - want)) <= 1e-14


def test_tf1_gru_cell_is_the_reset_before_gru() -> None:
    """TF1's GRUCell is the canonical GRU with reset_after=False: gates r, u (u = Keras's z)
    over [x, h] in `gates/kernel` (features + units, 2u), the candidate over [x, r * h] in
    `candidate/kernel` (features + units, u)."""
    cells = _legacy_cells()
    layer = GRU(16, reset_after=False)
    _, X, _ = _data("lstm")
    w = _random_weights(layer, (8, 8), "float64")
    k, rk, b = (w[f"gru_0/{n}"] for n in ("kernel", "recurrent_kernel", "bias"))
    u = 16
    values = {"gru_cell/gates/kernel": np.concatenate([_blocks(k, (1, 0), u),
                                                        _blocks(rk, (1, 0), u)]),
              "gru_cell/gates/bias": _blocks(b, (1, 0), u),
              "gru_cell/candidate/kernel": np.concatenate([k[:, 2 * u:], rk[:, 2 * u:]]),
              "gru_cell/candidate/bias": b[2 * u:]}
    got = _cell_run(lambda: cells.GRUCell(u, dtype=tf.float64), X, values)
    assert np.max(np.abs(got - np_gru(X, k, rk, b, reset_after=False))) <= 1e-14
