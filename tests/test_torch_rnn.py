"""Embedding, LSTM and GRU in torch (`torch_models`): each translation against a numpy forward
pass of the canonical equations (`zoo.layers` docstrings), both GRU variants included; the
weight table's torch names and the frozen LSTM `bias_hh_l0`; one epoch against the float64
reference (`zoo.reference`) with SGD, Adam and RMSprop; checkpoints, resume and `.pt` files;
and the measured cost of the usual porting mistakes (Keras's GRU kernel loaded without the
z/r swap, torch's default initialisers, `batch_first=False`, both LSTM biases trained).
Small on purpose: 16 units, 160 digits images read row by row (8 steps of 8 features) or 320
`tokens` sequences (10 ids, vocabulary 16), batch 32, one epoch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import TOL, load, max_diff, model_inputs, np_gru, np_lstm, spec_for
from torch import nn

from torch_models import io as torch_io
from torch_models import layers as L
from torch_models import model as M
from torch_models import train as T
from zoo import reference
from zoo.layers import GRU, LSTM, Dense, Embedding, tensor_specs
from zoo.models import ARCHITECTURES, Architecture
from zoo.optimizers import OptimizerSpec
from zoo.specs import ModelSpec, TrainSpec, init_weights

UNITS = 16
LR = {"sgd": 0.1, "adam": 0.01, "rmsprop": 0.01}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors: intra-op threads on the 2 shared cores only slow them down."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(model: str, dtype: str = "float32", test: bool = False):
    """(spec with 16 units, X, y): 160 digits rows-sequences or 320 token sequences."""
    ds = load("tokens" if model == "embedding_gru" else "digits", dtype)
    spec = dataclasses.replace(spec_for(model, ds), hidden=(UNITS,))
    n = 320 if model == "embedding_gru" else 160
    X, y = (ds.X_test, ds.y_test) if test else (ds.X_train, ds.y_train)
    return spec, model_inputs(X[:n], spec), y[:n]


@pytest.fixture
def probe(monkeypatch):
    """probe(layers, input_shape, vocab=0) -> a ModelSpec of that layer list (softmax
    classifier of 3 classes), registered for the test only."""

    def make(layers, input_shape, vocab=0) -> ModelSpec:
        arch = Architecture("probe", "classification", "cross_entropy", "softmax",
                            "test layer list", lambda spec: list(layers),
                            sequence="tokens" if vocab else "rows")
        monkeypatch.setitem(ARCHITECTURES, "probe", arch)
        return ModelSpec("probe", int(np.prod(input_shape)), 3, input_shape=tuple(input_shape),
                         vocab=vocab)

    return make


def _perturbed(spec: ModelSpec, dtype: str = "float64", seed: int = 1) -> dict[str, np.ndarray]:
    """Initial weights plus noise: non-zero biases (both GRU rows) and embeddings of size."""
    rng = np.random.default_rng(seed)
    return {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(dtype)
            for k, v in init_weights(spec, 0, "float64").items()}


# ------------------------------------------------------------------ numpy of the equations
def _np_forward(spec: ModelSpec, w: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    h = np.asarray(X, np.float64)
    for r in spec.resolved:
        p = {k.split("/", 1)[1]: np.asarray(v, np.float64) for k, v in w.items()
             if k.startswith(r.name + "/")}
        if r.kind == "embedding":
            h = p["embeddings"][h.astype(np.int64)]
        elif r.kind == "lstm":
            h = np_lstm(h, p["kernel"], p["recurrent_kernel"], p["bias"],
                        return_sequences=r.layer.return_sequences)
        elif r.kind == "gru":
            h = np_gru(h, p["kernel"], p["recurrent_kernel"], p["bias"],
                       reset_after=r.layer.reset_after,
                       return_sequences=r.layer.return_sequences)
        elif r.kind == "dense":
            h = h @ p["kernel"] + p["bias"]
        else:
            raise AssertionError(r.kind)
    return h


#: layer lists (before the final Dense) and input per sample: (T, F) rows, or (T,) ids
CASES = {
    "lstm": ([LSTM(5)], (6, 4)),
    "lstm_sequences": ([LSTM(5, return_sequences=True), LSTM(3)], (6, 4)),
    "gru_reset_after": ([GRU(5)], (6, 4)),
    "gru_reset_before": ([GRU(5, reset_after=False)], (6, 4)),
    "gru_stacked_both": ([GRU(5, return_sequences=True, reset_after=False), GRU(3)], (6, 4)),
    "embedding_gru": ([Embedding(7, 4), GRU(5)], (6,)),
    "embedding_lstm_sequences": ([Embedding(7, 4), LSTM(5, return_sequences=True),
                                  LSTM(3)], (6,)),
}


def _case(probe, name):
    layers, shape = CASES[name]
    vocab = layers[0].vocab if isinstance(layers[0], Embedding) else 0
    spec = probe([*layers, Dense(3)], shape, vocab)
    rng = np.random.default_rng(2)
    X = rng.integers(0, vocab, (9, *shape)).astype(np.float64) if vocab \
        else rng.normal(size=(9, *shape))
    return spec, X, rng.integers(0, 3, 9)


@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_the_canonical_equations(probe, case) -> None:
    """torch's nn.LSTM / nn.GRU / the reset-before module / the casting Embedding, loaded
    through the weight table, compute the docstring equations in Keras's layout: float64
    within 1e-12 (measured <= 4.4e-16), float32 within 1e-6 (measured <= 1.8e-7, the stacked
    GRUs); the float ids are never permuted."""
    spec, X, _ = _case(probe, case)
    w = _perturbed(spec)
    want = _np_forward(spec, w, X)
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-6)):
        net = M.build(spec, {k: v.astype(dtype) for k, v in w.items()}, dtype)
        with torch.no_grad():
            got = net(torch.from_numpy(X.astype(dtype))).numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= tol, (dtype, np.abs(got - want).max())


@pytest.mark.parametrize("case", ["lstm", "gru_reset_before", "embedding_gru"])
def test_step_details_gradients_are_central_differences(probe, case) -> None:
    """The canonical gradients of `step_details` (an LSTM bias's gradient is its bias_ih's,
    the frozen bias_hh has none) against central differences of the numpy forward's
    cross-entropy, every entry, float64."""
    spec, X, y = _case(probe, case)
    w = _perturbed(spec)
    got = T.step_details(spec, w, X, y)["grads"]
    assert list(got) == list(spec.weight_shapes())

    def loss(ww):
        z = _np_forward(spec, ww, X)
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))

    eps = 1e-6
    for name, a in w.items():
        num = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            keep = a[idx]
            a[idx] = keep + eps
            up = loss(w)
            a[idx] = keep - eps
            down = loss(w)
            a[idx] = keep
            num[idx] = (up - down) / (2 * eps)
        assert np.abs(got[name] - num).max() <= 1e-7, name


# ------------------------------------------------------------------ names and the frozen bias
@pytest.mark.parametrize("model", ["lstm", "gru", "embedding_gru"])
def test_state_dict_keys_are_torch_own_names(model) -> None:
    """The state_dict keys are the weight table's torch names in table order (no wrapper
    prefix), torch's own `nn.LSTM` / `nn.GRU` / `nn.Embedding` load their parts strictly, and
    the only parameter not trained is an LSTM's `bias_hh_l0`."""
    spec, _, _ = _data(model)
    net = M.build(spec, init_weights(spec))
    names = [n for t in tensor_specs(spec.resolved) for n in t.native_names("torch")]
    assert list(net.state_dict()) == names
    frozen = [k for k, p in net.named_parameters() if not p.requires_grad]
    assert frozen == (["lstm_0.bias_hh_l0"] if model == "lstm" else [])
    for r in spec.resolved:
        part = {k.split(".", 1)[1]: v for k, v in net.state_dict().items()
                if k.startswith(r.name + ".")}
        _plain(r.kind, r.input_shape[-1], spec).load_state_dict(part, strict=True)


def _plain(kind: str, features: int, spec: ModelSpec) -> nn.Module:
    """torch's own module of a layer of the 16-unit zoo models."""
    if kind == "lstm":
        return nn.LSTM(features, UNITS, batch_first=True)
    if kind == "gru":
        return nn.GRU(features, UNITS, batch_first=True)
    if kind == "embedding":
        return nn.Embedding(spec.vocab, 16)
    return nn.Linear(UNITS, spec.n_outputs)


def test_reset_before_gru_has_torch_names_in_torch_gate_order(probe) -> None:
    """The reset_after=False module: `weight_ih_l0` (3u, F), `weight_hh_l0` (3u, u), one
    `bias_l0` (3u,), gates r, z, n: the canonical z block lands in torch's second block."""
    spec = probe([GRU(5, reset_after=False), Dense(3)], (6, 4))
    w = _perturbed(spec)
    net = M.build(spec, w, "float64")
    sd = net.state_dict()
    assert [k for k in sd if k.startswith("gru_0")] == [
        "gru_0.weight_ih_l0", "gru_0.weight_hh_l0", "gru_0.bias_l0"]
    assert tuple(sd["gru_0.weight_ih_l0"].shape) == (15, 4)
    k = w["gru_0/kernel"]
    np.testing.assert_array_equal(sd["gru_0.weight_ih_l0"][:5].numpy(), k[:, 5:10].T)  # r
    np.testing.assert_array_equal(sd["gru_0.weight_ih_l0"][5:10].numpy(), k[:, :5].T)  # z
    np.testing.assert_array_equal(sd["gru_0.bias_l0"][10:].numpy(), w["gru_0/bias"][10:])


def test_training_leaves_the_frozen_lstm_bias_at_zero() -> None:
    """Adam (where a zero gradient still moves a parameter with moments) and an L2 penalty:
    `bias_hh_l0` never enters the optimizer, stays exactly zero, and the canonical bias
    (bias_ih + bias_hh) is what trained."""
    spec, X, y = _data("lstm")
    init = init_weights(spec)
    model = M.build(spec, init)
    from torch_models.optimizers import make_optimizer

    opt = make_optimizer(OptimizerSpec("adam", lr=0.01),
                         [p for p in model.parameters() if p.requires_grad])
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model.lstm_0.bias_hh_l0) not in held
    loss_fn = M.make_loss(spec)
    for _ in range(3):
        opt.zero_grad()
        loss = loss_fn(model(torch.from_numpy(X)), torch.from_numpy(y).long()) \
            + M.penalty(model, 0.01)
        loss.backward()
        assert model.lstm_0.bias_hh_l0.grad is None
        opt.step()
    assert torch.count_nonzero(model.lstm_0.bias_hh_l0) == 0
    assert max_diff(M.get_weights(model), init) > 1e-3


def _unfrozen(monkeypatch) -> None:
    """The translation as it would be without the freeze: both LSTM biases trained."""
    plain = L.LSTM.__init__

    def init(self, *args, **kwargs):
        plain(self, *args, **kwargs)
        self.bias_hh_l0.requires_grad_(True)

    monkeypatch.setattr(L.LSTM, "__init__", init)


def test_training_both_lstm_biases_is_a_different_model(monkeypatch) -> None:
    """Without the freeze, bias_hh takes the same gradient as bias_ih and the canonical bias
    (their sum) moves twice as far under SGD: measured after one epoch (160 digits rows, 16
    units, lr 0.1, float64) 1.8e-2 from the reference in `lstm_0/bias` (which itself moved
    2.0e-2), 4.1e-4 in the kernel; Adam (lr 0.01) 4.9e-2, RMSprop 1.4e-1. With it: 5.6e-17."""
    spec, X, y = _data("lstm", "float64")
    init = init_weights(spec, 0, "float64")
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), dtype="float64")
    want = reference.train(spec, ts, X, y, init)
    assert max_diff(T.train(spec, ts, X, y, init).weights, want.weights) <= TOL["float64"]
    _unfrozen(monkeypatch)
    got = T.train(spec, ts, X, y, init)
    bias = np.abs(got.weights["lstm_0/bias"] - want.weights["lstm_0/bias"]).max()
    moved = np.abs(want.weights["lstm_0/bias"] - init["lstm_0/bias"]).max()
    assert 1e-2 < bias and 0.5 * moved < bias < 1.5 * moved


# ------------------------------------------------------------------ against the reference
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("model", ["lstm", "gru", "embedding_gru"])
def test_one_epoch_matches_the_reference(model, optimizer, dtype) -> None:
    """Every weight and step loss after one epoch (float64 within 1e-12, float32 within 1e-6),
    and the predictions of the trained weights on the test set within 1e-6.

    RMSprop's epsilon sits inside the root in the reference (and Keras), outside in torch: at
    the default 1e-20 that is sqrt(v + 1e-20) against sqrt(v), felt by every gradient below
    ~1e-4 at float64 precision, and the LSTM has gate gradients of ~1e-6 (measured: torch
    8.1e-9 from the reference after one float64 epoch). 1e-40 (float64) and 1e-30 (float32,
    a normal float32 where 1e-20 inside the root is 1e-10 outside) make the placement moot."""
    spec, X, y = _data(model, dtype)
    init = init_weights(spec, 0, dtype)
    kw = {}
    if optimizer in ("rmsprop", "adam"):
        kw["epsilon"] = 1e-40 if dtype == "float64" else 1e-30
    ts = TrainSpec(OptimizerSpec(optimizer, lr=LR[optimizer], **kw), epochs=1, batch_size=32,
                   dtype=dtype)
    got = T.train(spec, ts, X, y, init)
    want = reference.train(spec, ts, X.astype(np.float64), y,
                           {k: v.astype(np.float64) for k, v in init.items()})
    assert list(got.weights) == list(spec.weight_shapes())
    assert max_diff(got.weights, want.weights) <= TOL[dtype]
    assert np.abs(got.losses - want.losses).max() <= TOL[dtype]
    assert max_diff(got.weights, init) > 1e-3  # it did train
    _, Xt, _ = _data(model, dtype, test=True)
    pred = T.predict(spec, got.weights, Xt)
    assert np.abs(pred - reference.predict(spec, want.weights, Xt.astype(np.float64))).max() \
        <= 1e-6


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reset_before_gru_matches_the_reference(probe, dtype) -> None:
    """GRU(reset_after=False) in a stack under a reset-after GRU (the module without a torch
    layer, returning sequences), Adam, one epoch on digits rows, and its predictions."""
    ds = load("digits", dtype)
    spec = probe([GRU(UNITS, return_sequences=True, reset_after=False), GRU(8),
                  Dense(ds.n_outputs)], (8, 8))
    spec = dataclasses.replace(spec, n_outputs=ds.n_outputs)
    X, y = ds.X_train[:160].reshape(-1, 8, 8), ds.y_train[:160]
    init = init_weights(spec, 0, dtype)
    ts = TrainSpec(OptimizerSpec("adam", lr=0.01), dtype=dtype)
    got = T.train(spec, ts, X, y, init)
    want = reference.train(spec, ts, X.astype(np.float64), y,
                           {k: v.astype(np.float64) for k, v in init.items()})
    assert max_diff(got.weights, want.weights) <= TOL[dtype]
    Xt = ds.X_test[:160].reshape(-1, 8, 8)
    assert np.abs(T.predict(spec, got.weights, Xt)
                  - reference.predict(spec, want.weights, Xt.astype(np.float64))).max() <= 1e-6


@pytest.mark.parametrize("model", ["lstm", "embedding_gru"])
def test_step_details_match_the_reference(model) -> None:
    """Logits, loss (with an L2 on the kernels, recurrent ones included) and canonical
    gradients of one batch, float64; no state for these layers."""
    spec, X, y = _data(model, "float64")
    w = _perturbed(spec)
    got = T.step_details(spec, w, X[:32], y[:32], l2=0.01)
    want = reference.step_details(spec, w, X[:32], y[:32], l2=0.01)
    assert got["state"] == {} and list(got["grads"]) == list(want["grads"])
    assert np.abs(got["logits"] - want["logits"]).max() <= 1e-12
    assert abs(got["loss"] - want["loss"]) <= 1e-12
    assert max_diff(got["grads"], want["grads"]) <= 1e-12


# ------------------------------------------------------------------ checkpoints and files
@pytest.mark.parametrize("model", ["lstm", "gru", "embedding_gru", "reset_before"])
def test_pt_file_round_trip(tmp_path, probe, model) -> None:
    """Every canonical tensor back bit for bit (float64 too), the same predictions; an LSTM
    file holds bias_hh_l0 as zeros, and a file from a torch LSTM that trained both biases
    loads as their sum."""
    if model == "reset_before":
        spec = probe([GRU(UNITS, reset_after=False), Dense(3)], (8, 8))
        X = np.random.default_rng(0).normal(size=(20, 8, 8))
    else:
        spec, X, _ = _data(model, "float64")
    w = _perturbed(spec)
    path = torch_io.save(spec, w, tmp_path / "m.pt")
    loaded_spec, loaded = torch_io.load(path)
    assert loaded_spec == spec and list(loaded) == list(w)
    for k in w:
        assert loaded[k].dtype == np.float64 and np.array_equal(loaded[k], w[k]), k
    np.testing.assert_array_equal(T.predict(spec, loaded, X), T.predict(spec, w, X))
    if model == "lstm":
        state = torch.load(path, weights_only=True)
        assert torch.count_nonzero(state["lstm_0.bias_hh_l0"]) == 0
        state["lstm_0.bias_hh_l0"] += 0.25
        state["lstm_0.bias_ih_l0"] -= 0.25
        torch.save(state, path)
        again = torch_io.load(path)[1]
        assert np.abs(again["lstm_0/bias"] - w["lstm_0/bias"]).max() <= 1e-15


def test_token_ids_reach_the_embedding_as_integers() -> None:
    """Float ids (the zoo's arrays) pick exactly the embedding rows they name: a one-step
    sequence through Embedding then GRU equals the GRU fed the rows directly."""
    spec, X, _ = _data("embedding_gru", "float64")
    w = _perturbed(spec)
    net = M.build(spec, w, "float64")
    with torch.no_grad():
        rows = net.embedding_0(torch.from_numpy(X[:5]))
    np.testing.assert_array_equal(rows.numpy(), w["embedding_0/embeddings"][X[:5].astype(int)])


# ------------------------------------------------------------------ porting mistakes, measured
def test_gru_kernel_without_the_gate_swap_is_a_different_model() -> None:
    """Keras's GRU tensors copied into nn.GRU with only the transpose (z, r, h taken as torch's
    r, z, n): it loads without complaint (same shapes) and computes another function.
    Measured (16 units, 160 digits rows, float64): on the initial weights 0.91 in the logits
    (their own scale 1.34) and 0.14 in the probabilities, 61% of the argmaxes kept; after 5
    epochs of Adam 2.57 and 0.51, training accuracy 0.74 -> 0.42."""
    spec, X, _ = _data("gru", "float64")
    w = init_weights(spec, 0, "float64")
    net = M.build(spec, w, "float64")
    with torch.no_grad():
        good = torch.softmax(net(torch.from_numpy(X)), 1)
        sd = net.state_dict()
        sd["gru_0.weight_ih_l0"].copy_(torch.from_numpy(w["gru_0/kernel"].T.copy()))
        sd["gru_0.weight_hh_l0"].copy_(torch.from_numpy(w["gru_0/recurrent_kernel"].T.copy()))
        bad = torch.softmax(net(torch.from_numpy(X)), 1)
    assert (bad - good).abs().max() > 1e-2


def test_torch_default_initialisers_are_not_keras() -> None:
    """torch's defaults: every nn.LSTM / nn.GRU tensor, biases included, U(+-1/sqrt(units))
    (Keras: glorot-uniform kernel, orthogonal recurrent kernel, zero bias with ones on the
    LSTM forget gate); nn.Embedding N(0, 1) (Keras U(-0.05, 0.05)). `build(spec, None)`
    keeps them; the zoo always loads the canonical initial weights."""
    spec, _, _ = _data("embedding_gru")
    torch.manual_seed(0)
    net = M.build(spec, None)
    bound = 1.0 / np.sqrt(UNITS)
    for name, p in net.gru_0.named_parameters():
        top = float(p.detach().abs().max())
        assert 0.9 * bound < top <= bound, name
    assert 0.8 < float(net.embedding_0.weight.detach().std()) < 1.2
    forget = slice(UNITS, 2 * UNITS)
    lstm = M.build(_data("lstm")[0], None).lstm_0
    assert float(lstm.bias_ih_l0.detach()[forget].abs().max()) <= bound  # no forget-gate ones
    keras = init_weights(spec)
    assert np.abs(keras["embedding_0/embeddings"]).max() <= 0.05
    assert np.abs(keras["gru_0/bias"]).max() == 0.0


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_batch_first_false_is_silent_and_wrong(model) -> None:
    """torch's recurrent layers default to (T, N, F). Given the zoo's (N, T, F) batch they
    run over the samples as time steps with the T rows as the batch, and the last "step" of
    (N, T, units)[:, -1] is again (N, units): no error, no warning, the right shape.
    Measured (16 units, 160 digits rows, initial weights): 0.81 (lstm) and 0.78 (gru) in the
    logits, whose own scale is 0.58 and 1.34."""
    spec, X, _ = _data(model, "float64")
    net = M.build(spec, init_weights(spec, 0, "float64"), "float64")
    with torch.no_grad():
        good = net(torch.from_numpy(X))
        getattr(net, f"{model}_0").batch_first = False
        bad = net(torch.from_numpy(X))
    assert bad.shape == good.shape
    assert (bad - good).abs().max() > 0.1
