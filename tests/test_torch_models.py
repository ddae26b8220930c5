"""Tests of torch_models: parity with the float64 numpy reference (forward, gradients, one step,
one epoch with every optimizer, in float32 and float64), the canonical layout edge, torch's
traps (layout, dtypes, target shapes, train/eval and dropout), and accuracy floors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import TOL, load, max_diff, scaled_tol, spec_for
from torch import nn

from torch_models import linear, logistic, mlp, softmax, svm
from torch_models import train as T
from zoo import data, reference
from zoo.errors import ConfigError, DataError
from zoo.optimizers import OPTIMIZERS, OptimizerSpec
from zoo.specs import TrainSpec, dropout_masks, init_weights, model_spec_for

MODULES = {"softmax": softmax, "svm": svm, "linear": linear, "logistic": logistic, "mlp": mlp}
#: the dataset each model is trained on in these tests
DATASET = {"softmax": "digits", "svm": "digits", "mlp": "digits", "logistic": "breast_cancer",
           "linear": "icecream"}
#: parametrisation ids carry the framework: test_forward[torch-softmax-float32]
MODEL_IDS = [pytest.param(m, id=f"torch-{m}") for m in MODULES]
#: largest absolute weight difference vs the float64 reference, by dtype


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These matmuls are tiny: on the 2 shared cores, intra-op threading made an epoch ~10x
    slower (digits MLP, Adam: 1.1 s with 2 threads, 0.1 s with 1). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def weight_tol(dtype: str, weights: dict[str, np.ndarray]) -> float:
    return scaled_tol(dtype, weights)


def forward(model: nn.Module, X: np.ndarray, masks: list[np.ndarray] | None = None) -> np.ndarray:
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        t_masks = None if masks is None else [torch.as_tensor(m, dtype=dtype) for m in masks]
        return model(torch.as_tensor(X, dtype=dtype), masks=t_masks).numpy()


# ----------------------------------------------------------------------------- forward pass
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", MODEL_IDS)
def test_forward(model: str, dtype: str) -> None:
    ds = load(DATASET[model], dtype)
    spec = spec_for(model, ds)
    w = init_weights(spec, seed=1, dtype=dtype)
    net = MODULES[model].build(spec, w, dtype)
    net.eval()
    want = reference.forward(spec, w, ds.X_train)
    got = forward(net, ds.X_train)
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape == (len(ds.X_train), spec.n_outputs)
    assert np.abs(got - want).max() <= (1e-6 if dtype == "float32" else 1e-12) * max(1, np.abs(want).max())



@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_shared_masks_torch_mlp(dtype: str) -> None:
    """The shared masks reproduce the reference's dropout exactly, in train and in eval mode."""
    ds = load("digits", dtype)
    spec = spec_for("mlp", ds)
    w = init_weights(spec, seed=2, dtype=dtype)
    masks = dropout_masks(spec, len(ds.X_train), seed=3, epoch=0, step=0, dtype=dtype)
    want = reference.forward(spec, w, ds.X_train, masks)
    net = mlp.build(spec, w, dtype)
    scale = max(1.0, float(np.abs(want).max()))  # float32 rounding grows with the values
    for mode in (net.train, net.eval):
        mode()
        assert np.abs(forward(net, ds.X_train, masks) - want).max() <= TOL[dtype] * scale
    # and the masks matter: without them (eval) the output is the no-dropout reference
    assert np.abs(forward(net, ds.X_train) - reference.forward(spec, w, ds.X_train)).max() <= TOL[dtype]
    assert np.abs(want - reference.forward(spec, w, ds.X_train)).max() > 0.1


# ----------------------------------------------------------------------------- layout edge
@pytest.mark.parametrize("model", MODEL_IDS)
def test_weights_roundtrip(model: str) -> None:
    ds = load(DATASET[model])
    spec = spec_for(model, ds)
    w = init_weights(spec, seed=4)
    net = MODULES[model].build(spec, w)
    got = MODULES[model].get_weights(net)
    assert list(got) == list(w)  # same names, same order
    for k in w:
        assert got[k].dtype == np.float32 and np.array_equal(got[k], w[k])
    # torch stores the transpose: Linear.weight is (out, in)
    first = softmax.dense_layers(net)["dense_0"]
    assert tuple(first.weight.shape) == (spec.n_outputs if not spec.hidden else spec.hidden[0],
                                         spec.n_features)
    assert np.array_equal(first.weight.detach().numpy(), w["dense_0/kernel"].T)


@pytest.mark.parametrize("model", MODEL_IDS)
def test_set_weights_catches_torch_layout_of_non_square_layer(model: str) -> None:
    ds = load(DATASET[model])
    spec = spec_for(model, ds)
    w = init_weights(spec)
    net = MODULES[model].build(spec)
    last = f"dense_{len(spec.hidden)}/kernel"  # C or 1 outputs: never square here
    wrong = {**w, last: w[last].T.copy()}
    with pytest.raises(ConfigError, match="torch's \\(out, in\\) layout"):
        MODULES[model].set_weights(net, wrong)
    with pytest.raises(ConfigError, match="missing \\['dense_0/bias'\\]"):
        MODULES[model].set_weights(net, {k: v for k, v in w.items() if k != "dense_0/bias"})
    with pytest.raises(ConfigError, match="unexpected \\['dense_9/kernel'\\]"):
        MODULES[model].set_weights(net, {**w, "dense_9/kernel": w["dense_0/kernel"]})


def test_square_layer_accepts_wrong_layout_silently_torch() -> None:
    """Documented limit of set_weights: a square kernel passed in torch layout fits the shape
    check and loads without error; only a parity test against the reference catches it. The
    digits MLP has one: dense_0 is 64 -> 64."""
    ds = load("digits")
    spec = spec_for("mlp", ds)
    w = init_weights(spec, seed=5)
    assert w["dense_0/kernel"].shape == (64, 64)
    net = mlp.build(spec, {**w, "dense_0/kernel": w["dense_0/kernel"].T.copy()})  # no error
    net.eval()
    want = reference.forward(spec, w, ds.X_test)
    assert np.abs(forward(net, ds.X_test) - want).max() > 0.1
    mlp.set_weights(net, w)
    assert np.abs(forward(net, ds.X_test) - want).max() < 1e-6 * np.abs(want).max()


@pytest.mark.parametrize("model", MODEL_IDS)
def test_default_initialiser_is_torch_kaiming_uniform(model: str) -> None:
    """init=None keeps torch's own initialiser: U(+-1/sqrt(in)) for weights AND biases."""
    ds = load(DATASET[model])
    spec = spec_for(model, ds)
    torch.manual_seed(0)
    net = MODULES[model].build(spec)
    for lin in softmax.dense_layers(net).values():
        bound = 1.0 / np.sqrt(lin.in_features)
        assert lin.weight.abs().max().item() <= bound
        assert lin.bias.abs().max().item() <= bound
        assert lin.bias.abs().max().item() > 0  # random, not Keras's zeros
        if lin.weight.numel() >= 100:
            assert lin.weight.abs().max().item() > 0.9 * bound


def test_build_checks_spec_and_dtype_torch() -> None:
    spec = model_spec_for("svm", 4, 3)
    with pytest.raises(ConfigError, match="torch_models.svm.build"):
        softmax.build(spec)
    with pytest.raises(ConfigError, match="dtype"):
        svm.build(spec, dtype="float16")
    net = svm.build(spec, init_weights(spec), dtype="float64")
    assert all(p.dtype == torch.float64 for p in net.parameters())
    assert net.training  # a new module starts in train mode


def test_mlp_mirrors_seed_004_torch() -> None:
    net = mlp.build(model_spec_for("mlp", 784, 10))
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds == ["Flatten", "Linear", "Dropout", "ReLU", "Linear", "Dropout", "ReLU", "Linear"]
    assert [(m.in_features, m.out_features) for m in net.layers if isinstance(m, nn.Linear)] \
        == [(784, 64), (64, 32), (32, 10)]
    assert all(m.p == 0.5 for m in net.layers if isinstance(m, nn.Dropout))


# ----------------------------------------------------------------------------- losses and traps
def test_loss_modules_match_reference_torch() -> None:
    # seed 003 (CS231n): scores [-2.85, 0.86, 0.28], third class correct
    s = torch.tensor([[-2.85, 0.86, 0.28]], dtype=torch.float64)
    y = torch.tensor([2])
    assert svm.make_loss()(s, y).item() == pytest.approx(1.58, abs=1e-12)
    assert softmax.make_loss()(s, y).item() == pytest.approx(1.04, abs=5e-3)  # natural log
    # torch's own MultiMarginLoss also divides by C: not the CS231n hinge
    assert nn.MultiMarginLoss()(s, y).item() == pytest.approx(1.58 / 3)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 4)) * 3
    lab = rng.integers(0, 4, 50)
    t = (rng.random((50, 1)) > 0.5).astype(np.float64)
    zt, lt = torch.from_numpy(z), torch.from_numpy(lab)
    assert svm.make_loss()(zt, lt).item() == pytest.approx(reference.hinge_loss(z, lab), abs=1e-12)
    assert mlp.make_loss()(zt, lt).item() == pytest.approx(
        reference.cross_entropy_with_logits(z, lab), abs=1e-12)
    assert logistic.make_loss()(zt[:, :1], torch.from_numpy(t)).item() == pytest.approx(
        reference.binary_cross_entropy_with_logits(z[:, :1], t), abs=1e-12)
    assert linear.make_loss()(zt[:, :1], torch.from_numpy(t)).item() == pytest.approx(
        reference.mse(z[:, :1], t), abs=1e-12)


def test_mse_target_shape_trap_torch() -> None:
    """(N, 1) predictions against (N,) targets broadcast to N x N with only a warning; the
    training loop therefore always hands MSE (N, 1) targets."""
    pred = torch.tensor([[1.0], [2.0], [3.0]])
    target = torch.tensor([1.5, 2.0, 2.0])
    with pytest.warns(UserWarning, match="broadcast"):
        wrong = nn.MSELoss()(pred, target).item()
    right = nn.MSELoss()(pred, target.view(-1, 1)).item()
    assert right == pytest.approx(reference.mse(pred.numpy(), target.numpy().reshape(-1, 1)))
    assert right == pytest.approx(0.41666667) and wrong == pytest.approx(0.75)


def test_dtype_traps_torch() -> None:
    spec = model_spec_for("softmax", 4, 3)
    net = softmax.build(spec, init_weights(spec))
    with pytest.raises(RuntimeError):  # float64 input into a float32 Linear
        net(torch.from_numpy(np.ones((2, 4))))
    with pytest.raises(RuntimeError):  # CE targets must be int64
        nn.CrossEntropyLoss()(torch.zeros(2, 3), torch.tensor([0, 1], dtype=torch.int32))
    # train() converts both: float64 features into a float32 model, int32 labels to int64
    ds = load("iris")
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), shuffle=False)
    w = init_weights(spec_for("softmax", ds))
    a = T.train(spec_for("softmax", ds), ts, ds.X_train.astype(np.float64),
                ds.y_train.astype(np.int32), w)
    b = T.train(spec_for("softmax", ds), ts, ds.X_train, ds.y_train, w)
    assert a.weights["dense_0/kernel"].dtype == np.float32
    assert max_diff(a.weights, b.weights) == 0.0


def test_bad_input_is_refused_torch() -> None:
    ds = load("iris")
    spec = spec_for("softmax", ds)
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1))
    with pytest.raises(ConfigError, match="expects 4 features"):
        T.train(spec, ts, ds.X_train[:, :3], ds.y_train)
    with pytest.raises(DataError, match="labels must be integers in \\[0, 3\\)"):
        T.train(spec, ts, ds.X_train, ds.y_train + 1)
    with pytest.raises(DataError, match="targets"):
        T.train(spec, ts, ds.X_train, ds.y_train[:-1])


# ----------------------------------------------------------------------------- one step
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", MODEL_IDS)
def test_gradients_and_one_step(model: str, dtype: str) -> None:
    """Autograd's gradients (weight.grad.T) equal the hand-derived reference, and one SGD step
    (with the l2 term and, for the MLP, the shared masks) lands on the reference's weights."""
    ds = load(DATASET[model], dtype)
    spec = spec_for(model, ds)
    w = init_weights(spec, seed=6, dtype=dtype)
    X, y = ds.X_train[:40], ds.y_train[:40]
    masks = dropout_masks(spec, 40, seed=0, epoch=0, step=0, dtype=dtype) or None
    ref_loss, ref_grads = reference.loss_and_grads(spec, w, X, y, masks, l2=0.01)

    net = MODULES[model].build(spec, w, dtype)
    out = net(T._features(X, dtype), masks=None if masks is None else
              [torch.from_numpy(m) for m in masks])
    loss = MODULES[model].make_loss()(out, T._targets(spec, y, dtype)) + T._l2_penalty(net, 0.01)
    loss.backward()
    scale = max(1.0, abs(ref_loss))
    assert abs(loss.item() - ref_loss) <= TOL[dtype] * scale
    for name, lin in softmax.dense_layers(net).items():
        gscale = max(1.0, np.abs(ref_grads[f"{name}/kernel"]).max())
        assert np.abs(lin.weight.grad.numpy().T - ref_grads[f"{name}/kernel"]).max() <= TOL[dtype] * gscale
        assert np.abs(lin.bias.grad.numpy() - ref_grads[f"{name}/bias"]).max() <= TOL[dtype] * gscale

    ts = TrainSpec(OptimizerSpec("sgd", lr=0.05), batch_size=40, shuffle=False, dtype=dtype, l2=0.01)
    hist = T.train(spec, ts, X, y, w)
    want = {k: w[k] - 0.05 * ref_grads[k] for k in w}
    assert len(hist.losses) == 1 and abs(hist.losses[0] - ref_loss) <= TOL[dtype] * scale
    assert max_diff(hist.weights, want) <= weight_tol(dtype, want)


# ----------------------------------------------------------------------------- one epoch
EPOCH_CASES = [pytest.param(ds, m, id=f"torch-{ds}-{m}")
               for ds, m in [("iris", "softmax"), ("iris", "svm"), ("iris", "mlp"),
                             ("digits", "softmax"), ("digits", "svm"), ("digits", "mlp"),
                             ("breast_cancer", "logistic"), ("icecream", "linear")]]


#: Adaptive optimizers normalise each gradient element by its own magnitude, so an element that
#: is mathematically zero but computed as rounding noise (a feature constant within a batch,
#: times a hinge column whose terms cancel) takes a full lr-sized step of arbitrary sign. On
#: digits (many near-constant pixels) the SVM's float32 noise therefore differs from the float64
#: reference's by whole steps, and in float64 the 1e-16 differences of later steps do the same;
#: test_adaptive_optimizers_amplify_zero_gradient_noise_torch shows it.
CHAOTIC = {("digits", "svm", opt) for opt in ("rmsprop", "centered_rmsprop", "adam")}


def epoch_case_spec(model: str, opt: str, dtype: str) -> tuple[OptimizerSpec, float]:
    """The optimizer of an epoch-parity case and its weight tolerance (before scaling)."""
    kw: dict[str, float] = {}
    if dtype == "float64" and opt in ("rmsprop", "centered_rmsprop", "adam"):
        # epsilon sits inside the root (Keras, the reference) or outside it (torch), and
        # before or after Adam's bias correction: at the shared 1e-20 that still shows for
        # gradients of ~1e-19 (measured: up to 3e-9 on digits, see the test below); at 1e-30
        # its placement is irrelevant again.
        kw["epsilon"] = 1e-30
    tol = TOL[dtype]
    if dtype == "float32" and opt == "centered_rmsprop":
        tol = 5e-6  # v - mean(g)**2 cancels: measured 1.2e-6 here (porting-facts row 10: <= 3.3e-6)
    return OptimizerSpec(opt, lr=0.01, **kw), tol


# The CHAOTIC combinations are not generated: a separate test shows why they cannot agree.
EPOCH_MATRIX = [pytest.param(*p.values, o, id=f"{p.id}-{o}") for p in EPOCH_CASES
                for o in OPTIMIZERS if (*p.values, o) not in CHAOTIC]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dataset,model,opt", EPOCH_MATRIX)
def test_one_epoch_matches_reference(dataset: str, model: str, opt: str, dtype: str) -> None:
    """One shuffled epoch (batch 32, partial last batch, shared dropout masks for the MLP):
    every step's loss and the final weights match the float64 reference."""
    ds = load(dataset, dtype)
    spec = spec_for(model, ds)
    opt_spec, tol = epoch_case_spec(model, opt, dtype)
    ts = TrainSpec(opt_spec, batch_size=32, seed=7, dtype=dtype)
    w = init_weights(spec, seed=8, dtype=dtype)
    hist = T.train(spec, ts, ds.X_train, ds.y_train, w)
    ref = reference.train(spec, ts, ds.X_train, ds.y_train, w)
    assert hist.framework == "torch" and len(hist.losses) == len(ref.losses) == -(-len(ds.X_train) // 32)
    assert all(v.dtype == np.dtype(dtype) for v in hist.weights.values())
    loss_scale = max(1.0, float(np.abs(ref.losses).max()))
    assert np.abs(hist.losses - ref.losses).max() <= tol * loss_scale
    scale = max(1.0, max(float(np.abs(v).max()) for v in ref.weights.values()))
    assert max_diff(hist.weights, ref.weights) <= tol * scale


def test_adaptive_epsilon_placement_shows_in_float64_torch() -> None:
    """Why float64 adaptive cases use epsilon=1e-30: at the shared 1e-20, RMSprop's epsilon
    inside the root (reference: an effective 1e-10) vs outside it (torch) leaves the float64
    MLP ~1e-10 from the reference, above 1e-12; at 1e-30 the gap closes to rounding."""
    ds = load("digits", "float64")
    spec = spec_for("mlp", ds)
    w = init_weights(spec, seed=8, dtype="float64")
    gaps = []
    for eps in (1e-20, 1e-30):
        ts = TrainSpec(OptimizerSpec("rmsprop", lr=0.01, epsilon=eps), seed=7, dtype="float64")
        gaps.append(max_diff(T.train(spec, ts, ds.X_train, ds.y_train, w).weights,
                             reference.train(spec, ts, ds.X_train, ds.y_train, w).weights))
    assert gaps[0] > 1e-11 and gaps[1] < 1e-13, gaps


def test_adaptive_optimizers_amplify_zero_gradient_noise_torch() -> None:
    """The float32 SVM on digits: gradients agree with the reference to ~1e-8, yet where the
    true gradient is 0 (rounding noise only) one Adam step moves a weight by ~lr in either
    framework, with signs that need not agree; plain SGD moves it by ~lr * 1e-8."""
    ds = load("digits")
    spec = spec_for("svm", ds)
    w = init_weights(spec, seed=8)
    idx = data.batch_order(len(ds.X_train), 32, 7, 0)[0]
    X, y = ds.X_train[idx], ds.y_train[idx]
    _, grads = reference.loss_and_grads(spec, w, X, y)
    tiny = np.abs(grads["dense_0/kernel"]) < 1e-15  # zero up to float64 rounding
    assert tiny.any()
    for opt, max_step in (("adam", 0.01), ("sgd", 1e-9)):
        ts = TrainSpec(OptimizerSpec(opt, lr=0.01), batch_size=32, shuffle=False)
        h = T.train(spec, ts, X, y, w)
        step = np.abs(h.weights["dense_0/kernel"] - w["dense_0/kernel"])[tiny]
        assert step.max() <= max_step * 1.0001
        if opt == "adam":
            assert step.max() > 0.5 * max_step  # a whole step out of rounding noise


@pytest.mark.parametrize("model", MODEL_IDS)
def test_two_epochs_l2_and_history(model: str) -> None:
    """Two epochs (a new permutation each), the l2 term, per-step snapshots and progress."""
    ds = load(DATASET[model])
    spec = spec_for(model, ds)
    ts = TrainSpec(OptimizerSpec("momentum", lr=0.01), epochs=2, batch_size=64, seed=1, l2=0.02)
    w = init_weights(spec, seed=9)
    calls: list[tuple[int, int, float]] = []
    hist = T.train(spec, ts, ds.X_train, ds.y_train, w, record_weights=True,
                   progress=lambda e, s, loss: calls.append((e, s, loss)))
    ref = reference.train(spec, ts, ds.X_train, ds.y_train, w, record_weights=True)
    steps = -(-len(ds.X_train) // 64)
    assert len(hist.losses) == len(hist.step_weights) == len(calls) == 2 * steps
    assert [c[:2] for c in calls] == [(e, s) for e in range(2) for s in range(steps)]
    assert [c[2] for c in calls] == list(hist.losses)
    assert len(hist.epoch_seconds) == 2 and all(t > 0 for t in hist.epoch_seconds)
    assert max_diff(hist.step_weights[-1], hist.weights) == 0.0
    assert max_diff(hist.step_weights[steps], ref.step_weights[steps]) <= weight_tol("float32", ref.weights)
    assert max_diff(hist.weights, ref.weights) <= weight_tol("float32", ref.weights)
    assert np.abs(hist.losses - ref.losses).max() <= 1e-6 * max(1.0, np.abs(ref.losses).max())


def test_non_finite_loss_stops_training_torch() -> None:
    ds = load("icecream", preprocess="none")
    spec = spec_for("linear", ds)
    ts = TrainSpec(OptimizerSpec("sgd", lr=1.0), epochs=3, batch_size=32)
    hist = T.train(spec, ts, ds.X_train, ds.y_train, init_weights(spec))
    assert hist.stopped_at is not None and hist.stopped_at == len(hist.losses) - 1
    assert not np.isfinite(hist.losses[-1]) and np.isfinite(hist.losses[:-1]).all()


def test_dataloader_batch_sampler_gives_the_shared_batches_but_draws_rng_torch() -> None:
    """Why train() indexes tensors directly: `DataLoader(batch_sampler=...)` yields exactly the
    shared batches, but creating its iterator draws from the global torch RNG, which would shift
    the native dropout masks of everything that follows."""
    from torch.utils.data import DataLoader, TensorDataset

    ds = load("iris")
    batches = data.batch_order(len(ds.X_train), 32, seed=3, epoch=1)
    Xt = torch.from_numpy(ds.X_train)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    loaded = [xb for (xb,) in DataLoader(TensorDataset(Xt), batch_sampler=batches)]
    assert not torch.equal(torch.get_rng_state(), before)
    assert len(loaded) == len(batches)
    assert all(torch.equal(xb, Xt[torch.from_numpy(idx)]) for xb, idx in zip(loaded, batches, strict=True))


# ----------------------------------------------------------------------------- dropout
def test_native_dropout_keep_rate_and_scale_torch() -> None:
    torch.manual_seed(0)
    drop = mlp.build(model_spec_for("mlp", 64, 10)).layers.dropout_0
    out = drop(torch.ones(2000, 64))
    kept = out != 0
    assert abs(kept.double().mean().item() - 0.5) < 0.01  # about 1 - p kept
    assert torch.all(out[kept] == 2.0)  # kept units scaled by 1 / (1 - p)


def test_eval_is_identity_and_no_grad_is_not_torch() -> None:
    ds = load("digits")
    spec = spec_for("mlp", ds)
    w = init_weights(spec)
    net = mlp.build(spec, w)
    want = reference.forward(spec, w, ds.X_test)
    torch.manual_seed(0)
    a, b = forward(net, ds.X_test), forward(net, ds.X_test)  # train mode, under no_grad
    assert np.abs(a - b).max() > 0.1 and np.abs(a - want).max() > 0.1
    net.eval()
    assert np.abs(forward(net, ds.X_test) - want).max() < 1e-6 * np.abs(want).max()
    p = T.predict(spec, w, ds.X_test)
    assert np.abs(p - reference.softmax(want)).max() < 1e-6


def test_dropout_modes_torch() -> None:
    """shared == reference with masks (see the epoch test), off == reference without dropout,
    native == torch's own RNG (reproducible under manual_seed, different from shared)."""
    ds = load("digits")
    spec = spec_for("mlp", ds)
    w = init_weights(spec, seed=10)
    base = TrainSpec(OptimizerSpec("sgd", lr=0.05), seed=2)
    off = dataclasses.replace(base, dropout_mode="off")
    assert max_diff(T.train(spec, off, ds.X_train, ds.y_train, w).weights,
                    reference.train(spec, off, ds.X_train, ds.y_train, w).weights) <= 1e-6
    native = dataclasses.replace(base, dropout_mode="native")
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(T.train(spec, native, ds.X_train, ds.y_train, w))
    shared = T.train(spec, base, ds.X_train, ds.y_train, w)
    assert max_diff(runs[0].weights, runs[1].weights) == 0.0
    assert max_diff(runs[0].weights, shared.weights) > 1e-3
    assert np.isfinite(runs[0].losses).all()


# ----------------------------------------------------------------------------- predict/evaluate
@pytest.mark.parametrize("model", MODEL_IDS)
def test_predict_and_evaluate(model: str) -> None:
    ds = load(DATASET[model])
    spec = spec_for(model, ds)
    w = init_weights(spec, seed=11)
    z = reference.forward(spec, w, ds.X_test)
    p = T.predict(spec, w, ds.X_test)
    want = {"softmax": reference.softmax, "svm": reference.softmax, "mlp": reference.softmax,
            "logistic": reference.sigmoid, "linear": lambda v: v}[model](z)
    assert p.shape == want.shape and p.dtype == np.float32
    assert np.abs(p - want).max() <= 1e-6 * max(1.0, np.abs(want).max())
    ev = T.evaluate(spec, w, ds.X_test, ds.y_test)
    if model == "linear":
        assert set(ev) == {"loss", "mse"}
        assert ev["mse"] == pytest.approx(reference.mse(z, ds.y_test), rel=1e-6)
        return
    assert set(ev) == {"loss", "accuracy"}
    if model == "logistic":
        ref_loss = reference.binary_cross_entropy_with_logits(z, ds.y_test)
        acc = np.mean((z.ravel() > 0) == ds.y_test)
    else:
        ref_loss = (reference.hinge_loss if model == "svm" else reference.cross_entropy_with_logits)(z, ds.y_test)
        acc = np.mean(z.argmax(1) == ds.y_test)
    assert ev["loss"] == pytest.approx(ref_loss, rel=1e-6)
    assert ev["accuracy"] == pytest.approx(acc)
    # float64 weights give a float64 prediction
    w64 = {k: v.astype(np.float64) for k, v in w.items()}
    assert T.predict(spec, w64, ds.X_test).dtype == np.float64


# ----------------------------------------------------------------------------- accuracy floors
@pytest.mark.parametrize("dataset,model,opt,lr,batch,epochs,floor", [
    pytest.param("iris", "softmax", "sgd", 0.5, 32, 100, 0.93, id="torch-iris-softmax"),
    pytest.param("digits", "softmax", "sgd", 0.1, 64, 20, 0.95, id="torch-digits-softmax"),
    pytest.param("breast_cancer", "logistic", "sgd", 0.1, 64, 30, 0.95, id="torch-breast_cancer-logistic"),
])
def test_accuracy_floor(dataset: str, model: str, opt: str, lr: float, batch: int, epochs: int,
                        floor: float) -> None:
    ds = load(dataset)
    spec = spec_for(model, ds)
    ts = TrainSpec(OptimizerSpec(opt, lr=lr), epochs=epochs, batch_size=batch)
    hist = T.train(spec, ts, ds.X_train, ds.y_train, init_weights(spec))
    acc = T.evaluate(spec, hist.weights, ds.X_test, ds.y_test)["accuracy"]
    assert acc >= floor, f"held-out accuracy {acc:.4f} < {floor}"


def test_icecream_recovers_coefficients_torch() -> None:
    """Full-batch GD on standardised features, then undo the standardisation: the model finds
    sales = 10*temperature - 2*humidity + 20*discount + 4 within 2%."""
    raw = load("icecream", "float64", preprocess="none")
    mean, std = raw.X_train.mean(axis=0), raw.X_train.std(axis=0)
    Xs = (raw.X_train - mean) / std
    spec = spec_for("linear", raw)
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=300, batch_size=len(Xs), dtype="float64")
    hist = T.train(spec, ts, Xs, raw.y_train, init_weights(spec, dtype="float64"))
    k, b = hist.weights["dense_0/kernel"].ravel(), float(hist.weights["dense_0/bias"][0])
    coef = k / std
    intercept = b - float(np.sum(k * mean / std))
    assert np.allclose(coef, data.ICECREAM_COEFFICIENTS, rtol=0.02)
    assert intercept == pytest.approx(data.ICECREAM_INTERCEPT, rel=0.02)
    assert T.evaluate(spec, hist.weights, (raw.X_test - mean) / std, raw.y_test)["mse"] < 0.1


# ----------------------------------------------------------------------------- isolation
def test_torch_models_import_no_tensorflow_or_keras() -> None:
    code = ("import sys, torch_models.train, torch_models.mlp, torch_models.svm, "
            "torch_models.linear, torch_models.logistic, torch_models.softmax; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras')); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
