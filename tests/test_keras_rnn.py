"""Keras 3 Embedding, LSTM and GRU (`keras_models.layers`): the translation of the canonical
layers (variable names, the generic kernel, float64 kept in float64), the forward pass against
numpy written from the equations of `zoo.layers.LSTM` / `GRU` / `Embedding`, the dense
gradient of the embedding table (Keras 3's Adam and RMSprop mistreat the sparse one), the
models lstm, gru and embedding_gru against the float64 reference (one epoch with sgd, adam
and rmsprop in float32 and float64; predict; step_details), a GRU with reset_after=False
through a probe architecture, checkpoints and `.keras` files, and two measurements for
porting: Keras 3's GRU (reset_after=True) against Keras 2's (False), and Keras's default
recurrent initialisers.

Toy sizes: 16 units, 160 digits images read row by row (8 steps of 8 pixels) or 320 token
sequences (10 ids of a 16-word vocabulary)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import image_shape, load, max_diff, np_gru, np_lstm
from keras import ops

from keras_models import io as kio
from keras_models import layers as KL
from keras_models import model as M
from keras_models import train as K
from zoo import layers as zl
from zoo import reference
from zoo.models import ARCHITECTURES, Architecture
from zoo.optimizers import OptimizerSpec
from zoo.specs import ModelSpec, TrainSpec, init_weights, model_spec_for

MODELS = ("lstm", "gru", "embedding_gru")
LR = {"sgd": 0.1, "adam": 0.01, "rmsprop": 0.01}
TOL = {"float32": 1e-6, "float64": 1e-12}


def _data(model: str, dtype: str = "float32"):
    """(spec with 16 units, X, y): 160 digits images as (8, 8) sequences, or 320 token
    sequences (N, 10) of float ids."""
    if model == "embedding_gru":
        ds = load("tokens", dtype)
        spec = model_spec_for(model, ds.n_features, ds.n_outputs, hidden=(16,), vocab=ds.vocab)
        n = 320
    else:
        ds = load("digits", dtype)
        spec = model_spec_for(model, ds.n_features, ds.n_outputs, input_shape=image_shape(ds),
                              hidden=(16,))
        n = 160
    X = np.asarray(ds.X_train[:n]).reshape(n, *spec.input_shape)
    return spec, X, ds.y_train[:n]


def _ts(optimizer: str = "sgd", dtype: str = "float32", epochs: int = 1) -> TrainSpec:
    return TrainSpec(OptimizerSpec(optimizer, lr=LR[optimizer]), epochs=epochs, batch_size=32,
                     seed=0, dtype=dtype)


@pytest.fixture
def probe(monkeypatch):
    """probe(layers, input_shape) -> the ModelSpec of a classifier with that layer list on
    (T, F) sequences, registered for this test only."""

    def make(layers, input_shape=(8, 8), n_outputs=10) -> ModelSpec:
        arch = Architecture("probe", "classification", "cross_entropy", "softmax",
                            "test layer list", lambda spec: list(layers), sequence="rows")
        monkeypatch.setitem(ARCHITECTURES, "probe", arch)
        return ModelSpec("probe", int(np.prod(input_shape)), n_outputs,
                         input_shape=tuple(input_shape))

    return make


# ----------------------------------------------------------------------------- numpy
def _layer(canonical: zl.Layer, shape: tuple[int, ...], dtype: str, seed: int = 0):
    """(built Keras layer, its canonical weights): random weights with nonzero biases, loaded
    through the layer's keras native names."""
    (r,) = zl.resolve([canonical], shape)
    layer = KL.keras_layer(r, dtype)
    layer.build((None, *shape))
    rng = np.random.default_rng(seed)
    w = {t.name: rng.uniform(-0.6, 0.6, t.shape) for t in r.tensors}
    found = {f"{layer.name}/{v.name}": v for v in layer.weights}
    assert list(found) == [t.native_name("keras") for t in r.tensors]
    for t in r.tensors:
        found[t.native_name("keras")].assign(w[t.name].astype(dtype))
    return layer, {k.rsplit("/", 1)[1]: v.astype(dtype).astype(np.float64) for k, v in w.items()}


# ----------------------------------------------------------------------------- translation
def test_variables_are_the_weight_table_and_the_kernel_is_the_generic_one():
    """Keras keeps an RNN's variables in its cell (paths `lstm_0/lstm_cell/kernel`), but
    their names are the table's rows: `native_variables` gives `lstm_0/kernel`, ...; the
    layers never take cuDNN (use_cudnn=False), so every device runs the same generic kernel."""
    for model in MODELS:
        spec, _, _ = _data(model)
        net = M.build(spec, init_weights(spec, 0))
        table = zl.tensor_specs(spec.resolved)
        assert list(M.native_variables(net)) == [t.name for t in table]
        assert [v.shape for v in net.trainable_variables] == [t.shape for t in table]
        names = {id(v): n for n, v in M.native_variables(net).items()}
        assert [names[id(v)] for v in M.penalised_variables(net)] == \
            [t.name for t in table if t.penalised]  # kernels and recurrent kernels
        for layer in net.zoo_layers:
            if isinstance(layer, keras.layers.RNN):
                assert layer.use_cudnn is False
                assert layer.cell.kernel.path == f"{layer.name}/{layer.cell.name}/kernel"
    spec, _, _ = _data("embedding_gru")
    net = M.build(spec)
    assert type(net.get_layer("embedding_0")) is KL.ZooEmbedding
    assert net.get_layer("gru_0").reset_after is True
    # the initialisers of the table, used when no canonical weights are given
    w = M.get_weights(net)
    assert np.abs(w["embedding_0/embeddings"]).max() <= 0.05
    assert np.all(w["gru_0/bias"] == 0)
    rec = w["gru_0/recurrent_kernel"].astype(np.float64)  # (16, 48): orthonormal rows
    assert np.abs(rec @ rec.T - np.eye(16)).max() < 1e-5
    spec, _, _ = _data("lstm")
    b = M.get_weights(M.build(spec))["lstm_0/bias"]
    assert np.array_equal(b, np.r_[np.zeros(16), np.ones(16), np.zeros(32)].astype(b.dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_lstm_and_gru_forward_against_the_numpy_equations(dtype, return_sequences):
    """float64 layers compute in float64 (variables, state and outputs): 1e-14 from numpy."""
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (5, 6, 3)).astype(dtype)
    tol = 2e-6 if dtype == "float32" else 1e-14
    cases = [(zl.LSTM(4, return_sequences=return_sequences), np_lstm, {}),
             (zl.GRU(4, return_sequences=return_sequences), np_gru, {"reset_after": True}),
             (zl.GRU(4, return_sequences=return_sequences, reset_after=False), np_gru,
              {"reset_after": False})]
    for canonical, fn, kw in cases:
        layer, w = _layer(canonical, (6, 3), dtype)
        assert all(v.dtype == dtype for v in layer.weights)
        got = layer(x)
        assert got.dtype == dtype and tuple(got.shape) == ((5, 6, 4) if return_sequences
                                                           else (5, 4))
        want = fn(x.astype(np.float64), w["kernel"], w["recurrent_kernel"], w["bias"],
                  return_sequences=return_sequences, **kw)
        assert np.abs(np.asarray(got, np.float64) - want).max() <= tol, canonical


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_looks_up_float_ids_exactly(dtype):
    """Ids arrive as float arrays of whole numbers: the layer casts them to int32 and the rows
    come out bit for bit, in the layer's dtype."""
    layer, w = _layer(zl.Embedding(16, 5), (10,), dtype)
    ids = np.random.default_rng(0).integers(0, 16, (4, 10))
    got = layer(ids.astype(dtype))
    assert got.dtype == dtype
    assert np.array_equal(np.asarray(got, np.float64), w["embeddings"][ids])
    assert np.array_equal(np.asarray(layer(ids.astype(np.int64))), np.asarray(got))


def test_embedding_gradient_is_dense_with_repeated_ids_summed_once():
    """The gradient of a lookup is a `tf.IndexedSlices` with one slice per looked-up id, and
    Keras 3's Adam (and RMSprop) square it slice by slice: Keras's own Embedding gives a row
    looked up twice the second moment (1 - beta_2) * (g1^2 + g2^2) instead of
    (1 - beta_2) * (g1 + g2)^2. `ZooEmbedding` hands the optimizer the dense gradient."""
    ids = np.array([[1.0, 1.0, 2.0]], np.float32)
    weight = np.array([1.0, 2.0], np.float32)
    dense = np.zeros((4, 2))
    dense[1], dense[2] = 2 * weight, weight  # id 1 twice, id 2 once
    velocities = {}
    for cls in (KL.ZooEmbedding, keras.layers.Embedding):
        emb = cls(4, 2)
        emb.build((None, 3))
        with tf.GradientTape() as tape:
            loss = ops.sum(emb(ids) * weight)
        (grad,) = tape.gradient(loss, emb.trainable_variables)
        opt = keras.optimizers.Adam(learning_rate=0.1)
        opt.apply_gradients([(grad, emb.embeddings)])
        velocities[cls.__name__] = np.asarray(opt.variables[-1], np.float64)
        if cls is KL.ZooEmbedding:
            assert not isinstance(grad, tf.IndexedSlices)
            assert np.array_equal(np.asarray(grad), dense)
        else:
            assert isinstance(grad, tf.IndexedSlices)
    beta_2 = 0.999
    assert np.abs(velocities["ZooEmbedding"] - (1 - beta_2) * dense ** 2).max() < 1e-9
    # Keras's own layer: the sum of the squared slices, [2, 8] * 0.001 for row 1, half of it
    assert np.abs(velocities["Embedding"][1] - (1 - beta_2) * np.array([2.0, 8.0])).max() \
        < 1e-9


def test_sparse_embedding_gradient_would_train_another_model(monkeypatch):
    """The consequence on a whole epoch (embedding_gru, adam, float64, 320 sequences of 10
    ids from a vocabulary of 16: every id repeats in every batch): Keras's sparse gradient is
    4.7e-2 away from the reference (RMSprop: 1.4e-1, Adagrad 9.4e-5, SGD and momentum
    unaffected), the dense one 1e-16."""
    spec, X, y = _data("embedding_gru", "float64")
    ts, init = _ts("adam", "float64"), init_weights(spec, 0, "float64")
    want = reference.train(spec, ts, X, y, init)
    monkeypatch.setattr(KL, "_dense_gradient", lambda table: table)
    sparse = K.train(spec, ts, X, y, init)
    assert max_diff(sparse.weights, want.weights) > 1e-2


# ----------------------------------------------------------------------------- the models
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", MODELS)
def test_one_epoch_equals_the_reference(model, dtype, optimizer):
    """Measured largest weight differences (160 digits / 320 tokens, 16 units): float32 up
    to 1.8e-7 (lstm, gru) and 8.6e-7 (embedding_gru, rmsprop), float64 up to 1.1e-15."""
    spec, X, y = _data(model, dtype)
    ts = _ts(optimizer, dtype)
    init = init_weights(spec, 0, dtype)
    got = K.train(spec, ts, X, y, init)
    want = reference.train(spec, ts, X, y, init)
    assert list(got.weights) == list(want.weights)
    assert max_diff(got.weights, want.weights) <= TOL[dtype]
    assert np.abs(got.losses - want.losses).max() <= TOL[dtype]
    assert max_diff(got.weights, init) > 1e-2
    p = K.predict(spec, got.weights, X)
    assert np.abs(p - reference.predict(spec, want.weights, X)).max() <= 1e-6


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gru_reset_after_false_and_stacked_layers_against_the_reference(probe, dtype):
    """Keras 2's GRU (one bias row, r applied before U_h) under a stacked GRU and LSTM that
    return their sequences."""
    spec = probe([zl.LSTM(8, return_sequences=True), zl.GRU(8, reset_after=False),
                  zl.Dense(10)])
    ds = load("digits", dtype)
    X, y = np.asarray(ds.X_train[:160]).reshape(160, 8, 8), ds.y_train[:160]
    ts, init = _ts("adam", dtype), init_weights(spec, 0, dtype)
    assert init["gru_0/bias"].shape == (24,)
    got = K.train(spec, ts, X, y, init)
    want = reference.train(spec, ts, X, y, init)
    assert max_diff(got.weights, want.weights) <= TOL[dtype]
    assert max_diff(got.weights, init) > 1e-2
    assert np.abs(K.predict(spec, got.weights, X) - reference.predict(spec, want.weights, X)
                  ).max() <= 1e-6


@pytest.mark.parametrize("model", MODELS)
def test_step_details_against_the_reference(model):
    spec, X, y = _data(model, "float64")
    w = init_weights(spec, 1, "float64")
    got = K.step_details(spec, w, X[:32], y[:32], l2=0.01)
    want = reference.step_details(spec, w, X[:32], y[:32], l2=0.01)
    assert list(got["grads"]) == list(spec.weight_shapes(trainable=True))
    assert got["state"] == {}
    assert np.abs(got["logits"] - want["logits"]).max() <= 1e-12
    assert abs(got["loss"] - want["loss"]) <= 1e-12
    assert max_diff(got["grads"], want["grads"]) <= 1e-12


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize(("model", "dtype"), [("gru", "float64"), ("embedding_gru", "float32")])
def test_keras_file_round_trip(model, dtype, tmp_path):
    """`model.save` / `load_model(safe_mode=True)`: the registered ZooModel and ZooEmbedding
    come back with every tensor bit for bit (the GRU's (2, 3u) bias included)."""
    spec, X, _ = _data(model, dtype)
    w = init_weights(spec, 3, dtype)
    path = kio.save(spec, w, tmp_path / "m.keras")
    spec2, back = kio.load(path)
    assert spec2 == spec and list(back) == list(w)
    assert all(np.array_equal(back[k], w[k]) and back[k].dtype == w[k].dtype for k in w)
    assert np.array_equal(K.predict(spec, back, X[:50]), K.predict(spec, w, X[:50]))


# ----------------------------------------------------------------------------- porting
def test_measure_keras3_gru_against_keras2_gru():
    """Keras 3's GRU defaults to reset_after=True (cuDNN's and torch's GRU: r multiplies
    h U_h + b'_h); Keras 2's original GRU is reset_after=False (r multiplies h before U_h, one
    bias). The same kernel and recurrent kernel, the (2, 3u) bias summed into one row, on 500
    digits read row by row, float64: measured output difference 0.28 with zero biases (16
    units; 0.073 with 64) and 0.62 with biases U(-0.5, 0.5) (0.41 with 64). Weights do not
    carry over between the two variants: a Keras 2 GRU is ported with reset_after=False."""
    ds = load("digits")
    X = np.asarray(ds.X_train[:500], np.float64).reshape(-1, 8, 8)
    (after,) = zl.resolve([zl.GRU(16, reset_after=True)], (8, 8))
    (before,) = zl.resolve([zl.GRU(16, reset_after=False)], (8, 8))
    w = zl.init_weights([after], 0, "float64")
    diffs = []
    for bias in (w["gru_0/bias"], np.random.default_rng(1).uniform(-0.5, 0.5, (2, 48))):
        out = []
        for r, b in ((after, bias), (before, bias.sum(0))):
            layer = KL.keras_layer(r, "float64")
            layer.build((None, 8, 8))
            layer.cell.kernel.assign(w["gru_0/kernel"])
            layer.cell.recurrent_kernel.assign(w["gru_0/recurrent_kernel"])
            layer.cell.bias.assign(b)
            out.append(np.asarray(layer(X)))
        diffs.append(np.abs(out[0] - out[1]).max())
    assert diffs[0] > 0.2 and diffs[1] > 0.5, diffs
    assert keras.layers.GRU(4).reset_after is True  # Keras 3's default


def test_measure_keras_recurrent_defaults():
    """What a port that relies on Keras's defaults gets: LSTM bias zeros with ones on the
    forget gate (unit_forget_bias=True), orthogonal recurrent kernels (u, G*u) with
    orthonormal ROWS (U U^T = I to 8e-7 in float32; the columns are not: U^T U is 0.84 from
    I for an LSTM(64)), glorot-uniform input kernels (limit sqrt(6 / (F + G*u))), GRU biases
    zero, embeddings U(-0.05, 0.05). The canonical initialisers (`zoo.layers`) are these."""
    lstm = keras.layers.LSTM(64)
    lstm.build((None, 8, 8))
    bias = np.asarray(lstm.cell.bias)
    assert lstm.cell.unit_forget_bias is True
    assert np.array_equal(bias, np.r_[np.zeros(64), np.ones(64), np.zeros(128)])
    rec = np.asarray(lstm.cell.recurrent_kernel, np.float64)
    assert rec.shape == (64, 256)
    assert np.abs(rec @ rec.T - np.eye(64)).max() < 1e-5
    assert np.abs(rec.T @ rec - np.eye(256)).max() > 0.5
    assert np.abs(np.asarray(lstm.cell.kernel)).max() <= np.sqrt(6 / (8 + 256))
    gru = keras.layers.GRU(64)
    gru.build((None, 8, 8))
    assert gru.cell.bias.shape == (2, 192) and not np.asarray(gru.cell.bias).any()
    emb = keras.layers.Embedding(16, 8)
    emb.build((None, 10))
    assert np.abs(np.asarray(emb.embeddings)).max() <= 0.05
    # the zoo's numpy draws have the same structure
    spec, _, _ = _data("lstm")
    w = init_weights(spec, 0, "float64")
    u = w["lstm_0/recurrent_kernel"]
    assert np.abs(u @ u.T - np.eye(16)).max() < 1e-12


def test_token_ids_outside_the_vocabulary_are_refused_before_keras_sees_them():
    """Keras's lookup (`tf.gather` on a CPU) would raise on id 16 but silently truncate 2.5
    to 2: the zoo's input check refuses both first."""
    from zoo.errors import ConfigError

    spec, X, y = _data("embedding_gru")
    w = init_weights(spec, 0)
    for bad, what in ((16.0, "token id 16"), (2.5, "token id 2.5")):
        Xb = X[:4].copy()
        Xb[1, 3] = bad
        with pytest.raises(ConfigError, match=what):
            K.predict(spec, w, Xb)
