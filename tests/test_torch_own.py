"""Tests of torch_models.own, the adapter that reads a user's own `nn.Module`: what `describe`
finds in realistic user modules (Sequential MLP, a convnet class with functional calls, LSTM
and GRU classifiers, Embedding + GRU, LayerNorm; torch.fx and the hooks-only fallback), the
errors for what the zoo cannot map, training that agrees with the zoo's own torch loop step by
step, weights in and out, freezing, the non-finite stop, dropout, prediction, layer outputs
and the optimizer audit."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import load
from torch import nn

from torch_models import own
from torch_models import train as T
from zoo.data import batch_order
from zoo.errors import ConfigError
from zoo.layers import from_native, to_native
from zoo.optimizers import BETA_1, BETA_2, OptimizerSpec
from zoo.own_types import OwnLoss, OwnOptimizer, TrainPlan, UnsupportedLayer
from zoo.specs import TrainSpec, init_weights, model_spec_for


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny matmuls: one intra-op thread is faster on the two shared cores. Restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


RNG = np.random.default_rng(0)
IMAGES = RNG.normal(size=(6, 1, 8, 8)).astype(np.float32)
SEQS = RNG.normal(size=(6, 7, 3)).astype(np.float32)
TOKENS = RNG.integers(0, 16, size=(6, 10)).astype(np.int64)
FLAT = RNG.normal(size=(6, 6)).astype(np.float32)


# ----------------------------------------------------------------------------- user models
def mlp(hidden: int = 32) -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(hidden, 10))


class ConvNet(nn.Module):
    def __init__(self, module_flatten: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten() if module_flatten else None
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv(x))))
        x = self.flatten(x) if self.flatten is not None else x.flatten(1)
        return self.fc(x)


class LSTMClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 5, batch_first=True)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        return F.log_softmax(self.fc(out[:, -1]), dim=1)


class Untraceable(nn.Module):
    """Stacked LSTMs with Python control flow on a tensor value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.LSTM(3, 6, batch_first=True)
        self.second = nn.LSTM(6, 5, batch_first=True)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        if x.sum() > -1e9:  # data-dependent: symbolic tracing fails here
            x = x * 1.0
        seq, _ = self.first(x)
        out, _ = self.second(seq)
        return self.fc(torch.relu(out[:, -1]))


class GRUOnState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 6, batch_first=True)
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        _, h = self.gru(x)
        return self.head(h[-1])


class EmbeddingGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.gru = nn.GRU(8, 12, batch_first=True)
        self.fc = nn.Linear(12, 4)

    def forward(self, tokens):
        out, _ = self.gru(self.embed(tokens))
        return self.fc(out[:, -1, :])


def layer_norm_net(bias: bool = True) -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8, eps=1e-3, bias=bias), nn.ReLU(),
                         nn.Linear(8, 3), nn.Softmax(dim=1))


def described(model: nn.Module, X: np.ndarray, dtype: str = "float32"):
    handle = own.prepare(model, X, dtype)
    return handle, own.describe(handle, X)


def summary(desc) -> list[tuple]:
    return [(f.name, f.kind, f.input_shape, f.output_shape) for f in desc.layers]


# ----------------------------------------------------------------------------- describe
def test_describe_mlp_sequential() -> None:
    X = RNG.normal(size=(5, 64)).astype(np.float32)
    h, d = described(mlp(), X)
    assert d.framework == "torch" and d.output == "logits" and d.input_shape == (64,)
    assert d.image_layout is None and d.state == ()
    assert summary(d) == [("0", "dense", (64,), (32,)), ("1", "activation", (32,), (32,)),
                          ("2", "dropout", (32,), (32,)), ("3", "dense", (32,), (10,))]
    first = d.layers[0]
    assert first.config == {"units": 32, "use_bias": True, "activation": "linear",
                            "native": {"in_features": 64, "out_features": 32, "bias": True}}
    assert first.tensors == {"weight": "0.weight", "bias": "0.bias"}
    assert d.layers[1].config["function"] == "relu"
    assert d.layers[2].config["rate"] == pytest.approx(0.2)
    assert [f.name for f in d.weighted()] == ["0", "3"]
    assert h.notes == []


@pytest.mark.parametrize("module_flatten", [False, True], ids=["x.flatten", "nn.Flatten"])
def test_describe_convnet(module_flatten: bool) -> None:
    model = ConvNet(module_flatten)
    h, d = described(model, IMAGES)
    assert summary(d) == [("conv", "conv2d", (1, 8, 8), (4, 8, 8)),
                          ("bn", "batch_norm", (4, 8, 8), (4, 8, 8)),
                          ("relu", "activation", (4, 8, 8), (4, 8, 8)),
                          ("pool", "max_pool2d", (4, 8, 8), (4, 4, 4)),
                          ("flatten", "flatten", (4, 4, 4), (64,)),  # module or fx node
                          ("fc", "dense", (64,), (10,))]
    conv, bn, relu, pool = d.layers[:4]
    assert {k: conv.config[k] for k in ("filters", "kernel_size", "strides", "padding",
                                        "dilation", "groups", "use_bias")} == {
        "filters": 4, "kernel_size": (3, 3), "strides": (1, 1), "padding": "same",
        "dilation": (1, 1), "groups": 1, "use_bias": True}
    assert conv.config["native"]["padding"] == (1, 1)
    assert bn.config["momentum"] == pytest.approx(0.9) and bn.config["epsilon"] == 1e-5
    assert bn.config["moving_variance"] == "unbiased" and bn.config["center"] is True
    assert bn.config["native"] == {"momentum": 0.1, "eps": 1e-5, "affine": True,
                                   "track_running_stats": True}
    assert bn.tensors == {"weight": "bn.weight", "bias": "bn.bias",
                          "running_mean": "bn.running_mean", "running_var": "bn.running_var"}
    assert relu.config["function"] == "relu"  # F.relu, seen by torch.fx
    assert pool.config["pool_size"] == (2, 2) and pool.config["strides"] == (2, 2)
    assert pool.config["padding"] == "valid"
    assert d.image_layout == "nchw" and d.input_shape == (1, 8, 8) and d.output == "logits"
    assert d.state == ("bn.running_mean", "bn.running_var")  # no num_batches_tracked


def test_describe_leaves_no_trace() -> None:
    """describe runs the model in training mode but restores BatchNorm's statistics, its
    counter and torch's RNG state: training afterwards is unaffected."""
    h = own.prepare(ConvNet(), IMAGES)
    before = {k: v.clone() for k, v in h.module.state_dict().items()}
    rng = torch.get_rng_state()
    own.describe(h, IMAGES)
    after = h.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(rng, torch.get_rng_state())
    assert h.module.training


@pytest.mark.parametrize("conv, padding", [
    (nn.Conv2d(1, 2, 3), "valid"),
    (nn.Conv2d(1, 2, 5, padding=2), "same"),
    (nn.Conv2d(1, 2, 3, padding="same"), "same"),
    (nn.Conv2d(1, 2, 3, stride=2, padding=1), [[1, 1], [1, 1]]),
    (nn.Conv2d(1, 2, (3, 5), padding=(1, 1)), [[1, 1], [1, 1]]),
], ids=["valid", "5x5-pad2", "same-string", "stride2-pad1", "3x5-pad1"])
def test_conv_padding_conventions(conv: nn.Conv2d, padding) -> None:
    _, d = described(nn.Sequential(conv), IMAGES)
    assert d.layers[0].config["padding"] == padding


def test_describe_lstm_classifier_takes_last_step() -> None:
    _, d = described(LSTMClassifier(), SEQS)
    assert summary(d) == [("lstm", "lstm", (7, 3), (7, 5)), ("fc", "dense", (5,), (4,)),
                          ("log_softmax", "activation", (4,), (4,))]
    lstm = d.layers[0]
    assert lstm.config["return_sequences"] is False  # out[:, -1], seen in the fx graph
    assert {k: lstm.config[k] for k in ("units", "use_bias", "batch_first", "num_layers",
                                        "bidirectional", "activation",
                                        "recurrent_activation")} == {
        "units": 5, "use_bias": True, "batch_first": True, "num_layers": 1,
        "bidirectional": False, "activation": "tanh", "recurrent_activation": "sigmoid"}
    assert lstm.tensors == {r: f"lstm.{r}" for r in ("weight_ih_l0", "weight_hh_l0",
                                                      "bias_ih_l0", "bias_hh_l0")}
    assert d.output == "log_probabilities"


def test_describe_without_fx_falls_back_to_hooks() -> None:
    """Control flow on a tensor value defeats torch.fx: the hooks still give every module in
    order, return_sequences from the shape the next layer takes, and a note says what is
    not seen (the functional relu)."""
    h, d = described(Untraceable(), SEQS)
    assert summary(d) == [("first", "lstm", (7, 3), (7, 6)), ("second", "lstm", (7, 6), (7, 5)),
                          ("fc", "dense", (5,), (4,))]
    assert d.layers[0].config["return_sequences"] is True   # the next LSTM reads the sequence
    assert d.layers[1].config["return_sequences"] is False  # the Linear reads one step
    assert h.graph is None and len(h.notes) == 1 and "torch.fx cannot trace" in h.notes[0]


def test_describe_gru_on_final_state() -> None:
    _, d = described(GRUOnState(), SEQS)
    gru = d.layers[0]
    assert (gru.kind, gru.config["units"], gru.config["reset_after"]) == ("gru", 6, True)
    assert gru.config["return_sequences"] is False  # h[-1]: the final state
    assert summary(d)[-1] == ("head", "dense", (6,), (4,))


def test_describe_embedding_gru_on_token_ids() -> None:
    h, d = described(EmbeddingGRU(), TOKENS)
    assert h.index_inputs
    assert summary(d) == [("embed", "embedding", (10,), (10, 8)), ("gru", "gru", (10, 8), (10, 12)),
                          ("fc", "dense", (12,), (4,))]
    assert {k: d.layers[0].config[k] for k in ("vocab", "dim")} == {"vocab": 16, "dim": 8}
    assert d.layers[0].tensors == {"weight": "embed.weight"}
    assert d.layers[1].config["return_sequences"] is False
    # whole-numbered float ids (the zoo's token arrays) are read as ids too
    h2 = own.prepare(EmbeddingGRU(), TOKENS.astype(np.float32))
    assert h2.index_inputs and summary(own.describe(h2, TOKENS.astype(np.float32))) == summary(d)


@pytest.mark.parametrize("bias", [True, False])
def test_describe_layer_norm_and_softmax_output(bias: bool) -> None:
    _, d = described(layer_norm_net(bias), FLAT)
    ln = d.layers[1]
    assert (ln.kind, ln.config["epsilon"], ln.config["scale"], ln.config["center"]) == (
        "layer_norm", 1e-3, True, bias)
    assert ln.tensors == ({"weight": "1.weight", "bias": "1.bias"} if bias else
                          {"weight": "1.weight"})
    assert d.output == "probabilities"
    assert d.layers[-1].config == {"function": "softmax", "native": {"dim": 1}}


def test_describe_sigmoid_output_and_reused_activation() -> None:
    """One parameter-free module called after every layer is fine: its second call is a
    layer of its own ("act:2"); a final torch.sigmoid makes the output "sigmoid"."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.out = nn.Linear(6, 5), nn.Linear(5, 5), nn.Linear(5, 1)
            self.act = nn.Tanh()

        def forward(self, x):
            return torch.sigmoid(self.out(self.act(self.b(self.act(self.a(x))))))

    h, d = described(Net(), FLAT)
    assert [f.name for f in d.layers] == ["a", "act", "b", "act:2", "out", "sigmoid"]
    assert d.output == "sigmoid"
    outs = own.layer_outputs(h, FLAT, ["act", "act:2", "sigmoid"], training=False)
    with torch.no_grad():
        x = torch.from_numpy(FLAT)
        first = torch.tanh(h.module.a(x))
        second = torch.tanh(h.module.b(first))
        final = torch.sigmoid(h.module.out(second))
    np.testing.assert_allclose(outs["act"], first.numpy(), atol=1e-7)
    np.testing.assert_allclose(outs["act:2"], second.numpy(), atol=1e-7)
    np.testing.assert_allclose(outs["sigmoid"], final.numpy(), atol=1e-7)


# ----------------------------------------------------------------------------- refusals
def test_prepare_refuses_what_is_not_a_module() -> None:
    assert own.check_model(mlp()) is None
    assert own.check_model(mlp().state_dict()) == "a OrderedDict, not a torch.nn.Module"
    with pytest.raises(ConfigError, match="takes a torch.nn.Module, got collections.OrderedDict"):
        own.prepare(mlp().state_dict(), FLAT)
    with pytest.raises(ConfigError, match="dtype must be 'float32' or 'float64'"):
        own.prepare(mlp(), FLAT, "float16")


def test_unknown_layer_with_parameters_is_named() -> None:
    class MyLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(6, 3))

        def forward(self, x):
            return x @ self.w

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = MyLayer()

        def forward(self, x):
            return self.proj(x)

    model = nn.Sequential()
    model.add_module("head", Head())
    with pytest.raises(ConfigError, match=r"layer 'head\.proj' \(MyLayer\) has parameters the "
                       r"zoo cannot map; pass mapping=\.\.\. or use nn\.Linear") as err:
        described(model, FLAT)
    assert isinstance(err.value, UnsupportedLayer)


def test_shared_weights_and_container_parameters_are_refused() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x):
            return self.fc(torch.relu(self.fc(x)))

    with pytest.raises(ConfigError, match=r"layer 'fc' \(Linear\) runs 2 times in one forward "
                       "pass: weights shared across calls are not supported"):
        described(Twice(), FLAT)

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 2)
            self.scale = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return self.fc(x) * self.scale

    with pytest.raises(ConfigError, match=r"parameter\(s\) \['scale'\] belong to the model "
                       r"itself \(Scaled\), not to a layer"):
        described(Scaled(), FLAT)


def test_forward_failure_names_the_batch_shape() -> None:
    with pytest.raises(ConfigError, match=r"forward pass fails on a batch of shape \(2, 6\)"):
        described(mlp(), FLAT)  # the MLP takes 64 features


# ----------------------------------------------------------------------------- training
def _zoo_and_user(hidden: int = 16):
    """The zoo's MLP (64 -> hidden -> relu -> 10, no dropout) and a user's Sequential with the
    same initial weights, mapped through the weight table's torch names."""
    spec = model_spec_for("mlp", 64, 10, hidden=(hidden,), dropout=0.0)
    assert [r.kind for r in spec.resolved] == ["dense", "activation", "dense"]
    init = init_weights(spec, seed=3)
    zoo_native = to_native(init, spec.resolved, "torch")  # dense_0.weight, ...
    user = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    ds = load("digits")
    X, y = ds.X_train[:48], ds.y_train[:48]
    handle, desc = described(user, X)
    zoo_dense = [r.name for r in spec.resolved if r.kind == "dense"]
    rename = {f.tensors[role]: f"{z}.{role}" for f, z in zip(desc.weighted(), zoo_dense,
                                                              strict=True)
              for role in ("weight", "bias")}
    own.set_weights(handle, {u: zoo_native[z] for u, z in rename.items()})

    def canonical(user_weights):
        return from_native({z: user_weights[u] for u, z in rename.items()}, spec.resolved,
                           "torch")

    return spec, init, handle, canonical, X, y


@pytest.mark.parametrize("optimizer", [OptimizerSpec("sgd", lr=0.1),
                                       OptimizerSpec("adam", lr=1e-2)], ids=["sgd", "adam"])
def test_training_agrees_with_the_zoos_torch_loop(optimizer: OptimizerSpec) -> None:
    spec, init, handle, canonical, X, y = _zoo_and_user()
    epochs, batch, seed = 2, 16, 5
    zoo = T.train(spec, TrainSpec(optimizer, epochs=epochs, batch_size=batch, seed=seed,
                                  dropout_mode="off"), X, y, init, record_weights=True)
    plan = TrainPlan(loss=OwnLoss("crossentropy"), optimizer=OwnOptimizer(spec=optimizer),
                     batches=[batch_order(len(X), batch, seed, e) for e in range(epochs)])
    hist = own.train(handle, plan, X, y)
    assert hist.stopped_at is None and len(hist.losses) == len(zoo.losses) == 6
    assert len(hist.epoch_seconds) == epochs
    assert np.abs(hist.losses - zoo.losses).max() <= 1e-6
    assert zoo.losses[-1] < zoo.losses[0] - 0.1  # it learns: the agreement is not trivial
    assert len(hist.step_weights) == len(zoo.step_weights) == 6
    for mine, theirs in zip(hist.step_weights, zoo.step_weights, strict=True):
        got = canonical(mine)
        assert max(float(np.abs(got[k] - theirs[k]).max()) for k in theirs) <= 1e-6
    final = canonical(hist.weights)
    assert max(float(np.abs(final[k] - zoo.weights[k]).max()) for k in final) <= 1e-6


def test_native_optimizer_and_loss_and_record_stride() -> None:
    """The user's own optimizer factory and loss module train exactly as the spec's; weights
    are recorded after every 4th step (global steps 3 and 7)."""
    spec, init, h1, _, X, y = _zoo_and_user()
    h2 = own.prepare(h1.module, X)
    batches = [batch_order(len(X), 6, 1, e) for e in range(1)]
    a = own.train(h1, TrainPlan(OwnLoss("crossentropy"),
                                OwnOptimizer(spec=OptimizerSpec("nesterov", lr=0.05)),
                                batches, record_every=4), X, y)
    b = own.train(h2, TrainPlan(OwnLoss("crossentropy", native=nn.CrossEntropyLoss()),
                                OwnOptimizer(native=functools.partial(
                                    torch.optim.SGD, lr=0.05, momentum=0.9, nesterov=True)),
                                batches, record_every=4), X, y)
    assert len(a.losses) == 8 and np.array_equal(a.losses, b.losses)
    assert len(a.step_weights) == len(b.step_weights) == 2
    assert all(np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert np.array_equal(a.step_weights[1]["0.weight"], a.weights["0.weight"])


def test_binary_and_mse_targets_are_shaped_like_the_output() -> None:
    model = nn.Sequential(nn.Linear(6, 1))
    y = (FLAT[:, 0] > 0).astype(np.int64)
    batches = [[np.arange(6)]]
    for kind, want in (("binary_crossentropy", nn.BCEWithLogitsLoss()), ("mse", nn.MSELoss())):
        h = own.prepare(model, FLAT)
        hist = own.train(h, TrainPlan(OwnLoss(kind), OwnOptimizer(spec=OptimizerSpec("sgd", lr=0.1)),
                                      batches), FLAT, y)
        with torch.no_grad():
            out = model(torch.from_numpy(FLAT))
            expect = float(want(out, torch.from_numpy(y.astype(np.float32)).reshape(6, 1)))
        assert abs(hist.losses[0] - expect) <= 1e-7


def test_non_finite_loss_stops_with_the_weights_before_it() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 1))
    y = RNG.normal(size=(6, 1)).astype(np.float32) * 1e3
    h = own.prepare(model, FLAT)
    plan = TrainPlan(OwnLoss("mse"), OwnOptimizer(spec=OptimizerSpec("sgd", lr=1e5)),
                     [[np.arange(3), np.arange(3, 6)] for _ in range(20)])
    hist = own.train(h, plan, FLAT, y)
    k = hist.stopped_at
    assert k is not None and 2 <= k < 40 and len(hist.losses) == k + 1
    assert not np.isfinite(hist.losses[k]) and np.all(np.isfinite(hist.losses[:k]))
    assert len(hist.epoch_seconds) == k // 2 + 1 and len(hist.step_weights) == k
    assert all(np.array_equal(hist.weights[n], hist.step_weights[-1][n]) for n in hist.weights)
    assert all(np.all(np.isfinite(v)) for v in hist.weights.values())


def test_freeze_keeps_a_tensor_fixed() -> None:
    X = load("digits").X_train[:24]
    y = load("digits").y_train[:24]
    h = own.prepare(mlp(8), X)
    before = own.get_weights(h)
    plan = TrainPlan(OwnLoss("crossentropy"), OwnOptimizer(spec=OptimizerSpec("adam", lr=1e-2)),
                     [[np.arange(24)]] * 3, frozen=("0.bias",))
    after = own.train(h, plan, X, y).weights
    assert np.array_equal(after["0.bias"], before["0.bias"])
    assert np.abs(after["0.weight"] - before["0.weight"]).max() > 1e-3
    assert "0.bias" in own.describe(h, X).state
    with pytest.raises(ConfigError, match=r"cannot freeze unknown torch tensor\(s\) \['0.gamma'\]"):
        own.freeze(h, ["0.gamma"])


@pytest.mark.parametrize("moving_variance", [None, "biased"])
def test_batch_norm_moving_variance_convention(moving_variance) -> None:
    """torch updates running_var with the unbiased batch variance; on request the run keeps
    Keras's biased convention (the hooks are gone afterwards). One step, momentum 0.1, on 6
    samples: 0.9 * 1 + 0.1 * var, Bessel's factor 6/5 apart."""
    model = nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 3))
    h = own.prepare(model, FLAT)
    plan = TrainPlan(OwnLoss("crossentropy"), OwnOptimizer(spec=OptimizerSpec("sgd", lr=0.1)),
                     [[np.arange(6)]], moving_variance=moving_variance)
    got = own.train(h, plan, FLAT, np.arange(6) % 3).weights["0.running_var"]
    var = FLAT.astype(np.float64).var(axis=0, ddof=0 if moving_variance == "biased" else 1)
    assert np.abs(got - (0.9 + 0.1 * var)).max() <= 1e-6
    other = FLAT.astype(np.float64).var(axis=0, ddof=1 if moving_variance == "biased" else 0)
    assert np.abs(got - (0.9 + 0.1 * other)).max() > 1e-3  # the two conventions differ
    assert not h.module[0]._forward_hooks and not h.module[0]._forward_pre_hooks
    assert own.CORRECTS_MOVING_VARIANCE


# ----------------------------------------------------------------------------- dropout
def test_dropout_off_is_deterministic_and_rates_are_restored() -> None:
    X = load("digits").X_train[:24]
    y = load("digits").y_train[:24]
    model = mlp(16)
    model[2].p = 0.5
    plan = TrainPlan(OwnLoss("crossentropy"), OwnOptimizer(spec=OptimizerSpec("sgd", lr=0.1)),
                     [batch_order(24, 8, 0, 0)], dropout="off")
    a = own.train(own.prepare(model, X), plan, X, y)
    hb = own.prepare(model, X)
    b = own.train(hb, plan, X, y)
    assert np.array_equal(a.losses, b.losses)
    assert hb.module[2].p == 0.5  # the user's rate is back after training
    assert own.describe(hb, X).layers[2].config["rate"] == 0.5
    native = own.train(own.prepare(model, X), TrainPlan(plan.loss, plan.optimizer,
                                                        plan.batches, dropout="native"), X, y)
    assert np.abs(native.losses - a.losses).max() > 1e-3  # native dropout does change them


def test_functional_dropout_cannot_be_switched_off() -> None:
    class Drop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            return self.fc(F.dropout(x, p=0.3, training=self.training))

    plan = TrainPlan(OwnLoss("crossentropy"), OwnOptimizer(spec=OptimizerSpec("sgd", lr=0.1)),
                     [[np.arange(6)]], dropout="off")
    y = np.arange(6) % 3
    with pytest.raises(ConfigError, match=r"'dropout' is a functional F\.dropout\(p=0\.3\) "
                       "that cannot be switched off; use an nn.Dropout module"):
        own.train(own.prepare(Drop(), FLAT), plan, FLAT, y)

    class DropUntraceable(Drop):
        def forward(self, x):
            if x.sum() > -1e9:
                x = F.dropout(x, p=0.3, training=self.training)
            return self.fc(x)

    with pytest.raises(ConfigError, match="forward pass is still random in training mode"):
        own.train(own.prepare(DropUntraceable(), FLAT), plan, FLAT, y)


# ----------------------------------------------------------------------------- weights
def test_weights_round_trip_and_errors() -> None:
    h = own.prepare(ConvNet(), IMAGES)
    w = own.get_weights(h)
    assert list(w) == ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean",
                       "bn.running_var", "fc.weight", "fc.bias"]
    assert w["conv.weight"].shape == (4, 1, 3, 3) and w["fc.weight"].shape == (10, 64)
    new = {k: (v + np.float32(0.25)) for k, v in w.items()}
    own.set_weights(h, new)
    got = own.get_weights(h)
    assert all(got[k].dtype == np.float32 and np.array_equal(got[k], new[k]) for k in new)
    own.set_weights(h, {"fc.bias": np.zeros(10)})  # partial, cast to float32
    assert np.array_equal(own.get_weights(h)["fc.bias"], np.zeros(10, np.float32))
    got["conv.weight"][...] = 7  # copies: the model is untouched
    assert not np.any(own.get_weights(h)["conv.weight"] == 7)
    with pytest.raises(ConfigError, match=r"unknown torch tensor\(s\) \['fc.kernel'\]; the "
                       r"model's tensors are \['conv.weight', 'conv.bias', 'bn.weight'"):
        own.set_weights(h, {"fc.kernel": w["fc.weight"]})
    with pytest.raises(ConfigError, match=r"torch tensor 'fc.weight': expected shape \(10, 64\), "
                       r"got \(64, 10\)"):
        own.set_weights(h, {"fc.weight": w["fc.weight"].T})
    with pytest.raises(ConfigError, match="unknown torch tensor"):
        own.set_weights(h, {"bn.num_batches_tracked": np.array(3)})  # not a weight


def test_prepare_copies_and_casts() -> None:
    user = ConvNet()
    user.eval()
    h = own.prepare(user, IMAGES, "float64")
    assert h.module is not user and h.module.training and not user.training
    assert all(v.dtype == np.float64 for v in own.get_weights(h).values())
    assert next(user.parameters()).dtype == torch.float32
    out = own.predict(h, IMAGES)
    assert out.dtype == np.float64 and out.shape == (6, 10)


# ----------------------------------------------------------------------------- inference
def test_predict_uses_running_statistics_and_restores_train_mode() -> None:
    h = own.prepare(ConvNet(), IMAGES)
    own.set_weights(h, {"bn.running_mean": np.full(4, 0.5, np.float32),
                        "bn.running_var": np.full(4, 4.0, np.float32)})
    got = own.predict(h, IMAGES)
    assert h.module.training
    m = h.module
    with torch.no_grad():
        x = m.conv(torch.from_numpy(IMAGES))
        x = (x - 0.5) / torch.sqrt(torch.tensor(4.0 + 1e-5)) * m.bn.weight[:, None, None] \
            + m.bn.bias[:, None, None]
        want = m.fc(m.pool(torch.relu(x)).flatten(1)).numpy()
    assert np.abs(got - want).max() <= 1e-6


def test_layer_outputs_modules_and_functional_calls() -> None:
    h, d = described(ConvNet(), IMAGES)
    before = {k: v.clone() for k, v in h.module.state_dict().items()}
    train = own.layer_outputs(h, IMAGES, ["conv", "bn", "relu", "flatten"], training=True)
    infer = own.layer_outputs(h, IMAGES, ["bn"], training=False)
    assert all(torch.equal(before[k], v) for k, v in h.module.state_dict().items())
    assert train["conv"].shape == (6, 4, 8, 8) and train["flatten"].shape == (6, 64)
    conv = torch.from_numpy(train["conv"])
    mean = conv.mean(dim=(0, 2, 3), keepdim=True)
    var = conv.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    assert np.abs(train["bn"] - ((conv - mean) / torch.sqrt(var + 1e-5)).numpy()).max() <= 1e-5
    assert np.array_equal(train["relu"], np.maximum(train["bn"], 0))
    # inference: fresh running statistics (0, 1) leave the convolution as it is, up to eps
    assert np.abs(infer["bn"] - train["conv"] / np.sqrt(1 + 1e-5)).max() <= 1e-6
    with pytest.raises(ConfigError, match=r"unknown layer name\(s\) \['dense_0'\]; the model's "
                       r"layers are \['conv', 'bn', 'relu', 'pool', 'flatten', 'fc'\]"):
        own.layer_outputs(h, IMAGES, ["dense_0"], training=False)


def test_layer_outputs_of_an_rnn_are_its_sequence_batch_first() -> None:
    class TimeMajor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(3, 5)  # batch_first=False: (T, N, F)
            self.fc = nn.Linear(5, 2)

        def forward(self, x):
            out, _ = self.lstm(x.transpose(0, 1))
            return self.fc(out[-1])

    h, d = described(TimeMajor(), SEQS)
    lstm = next(f for f in d.layers if f.kind == "lstm")
    assert lstm.config["return_sequences"] is False and lstm.config["batch_first"] is False
    assert lstm.output_shape == (7, 5)
    seq = own.layer_outputs(h, SEQS, ["lstm"], training=True)["lstm"]
    assert seq.shape == (6, 7, 5)
    with torch.no_grad():
        want = h.module.fc(torch.from_numpy(seq[:, -1])).numpy()
    assert np.abs(own.predict(h, SEQS) - want).max() <= 1e-6


# ----------------------------------------------------------------------------- optimizers
def test_audit_optimizer() -> None:
    adam = own.audit_optimizer(functools.partial(torch.optim.Adam, lr=1e-3))
    assert (adam.name, adam.lr, adam.beta_1, adam.beta_2, adam.epsilon) == (
        "adam", 1e-3, 0.9, 0.999, 1e-8)
    assert adam.epsilon_placement == "outside_hat" and adam.weight_decay == 0.0
    assert adam.native["class"] == "Adam" and adam.native["betas"] == (0.9, 0.999)
    assert BETA_1 != adam.beta_1 and BETA_2 != adam.beta_2  # not the float32-exact betas

    sgd = own.audit_optimizer(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True))
    assert (sgd.name, sgd.lr, sgd.momentum, sgd.nesterov) == ("nesterov", 0.1, 0.9, True)
    assert sgd.native["dampening"] == 0.0

    damped = own.audit_optimizer(functools.partial(torch.optim.SGD, lr=0.1, momentum=0.5,
                                                   dampening=0.5))
    assert (damped.name, damped.native["dampening"]) == ("momentum", 0.5)
    assert own.audit_optimizer(functools.partial(torch.optim.SGD, lr=0.2)).name == "sgd"

    rms = own.audit_optimizer(functools.partial(torch.optim.RMSprop, lr=1e-2, centered=True))
    assert (rms.name, rms.rho, rms.epsilon, rms.epsilon_placement) == (
        "centered_rmsprop", 0.99, 1e-8, "outside")
    adamw = own.audit_optimizer(functools.partial(torch.optim.AdamW, lr=1e-3))
    assert (adamw.name, adamw.weight_decay) == ("adamw", 0.01)
    ada = own.audit_optimizer(functools.partial(torch.optim.Adagrad, lr=0.1))
    assert (ada.name, ada.initial_accumulator, ada.epsilon_placement) == ("adagrad", 0.0,
                                                                          "outside")
    with pytest.raises(ConfigError, match="a torch optimizer is given as a callable"):
        own.audit_optimizer("adam")
