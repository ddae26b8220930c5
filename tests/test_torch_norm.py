"""BatchNorm and LayerNorm in torch (`torch_models`): each translation against the numpy
formulas in both modes; the moving-variance compensation (torch updates `running_var` with the
unbiased batch variance, the canonical default is the biased one) and the bound of its
rounding; `num_batches_tracked`, in no weight table; one epoch and one step against the
float64 reference (`zoo.reference`); the state through checkpoints and `.pt` files; the
synchronised BatchNorm of data-parallel runs; and the measured cost of the usual translation
mistakes (torch's default momentum and epsilon, the unbiased running variance, a model left in
train mode). Small on purpose: 320 digits images, batch 32, one epoch."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
import torch
from helpers import (
    TOL,
    load,
    max_diff,
    model_inputs,
    perturbed_norm_weights,
    spec_for,
    state_names,
    trainable_names,
)
from torch import nn

from torch_models import distributed as D
from torch_models import io as torch_io
from torch_models import model as M
from torch_models import train as T
from torch_models.layers import MovingVarianceCorrection, translate
from zoo import reference
from zoo.layers import (
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    Flatten,
    LayerNorm,
    MaxPool2D,
    corrected_moving_variance,
    resolve,
    tensor_specs,
    to_native,
)
from zoo.models import ARCHITECTURES, Architecture
from zoo.optimizers import OptimizerSpec
from zoo.specs import ModelSpec, TrainSpec, init_weights

N = 320
LR = {"sgd": 0.1, "momentum": 0.05, "adam": 0.01}
#: Bound of every data-parallel run here (two ranks importing torch: ~6 s each).
TIMEOUT = 120.0


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors: intra-op threads on the 2 shared cores only slow them down."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(model: str, dtype: str = "float32", n: int = N):
    ds = load("digits", dtype)
    spec = spec_for(model, ds)
    return spec, model_inputs(ds.X_train[:n], spec), ds.y_train[:n]


def _test_set(spec: ModelSpec, dtype: str = "float32"):
    ds = load("digits", dtype)
    return model_inputs(ds.X_test, spec), ds.y_test


def _probe(monkeypatch, name: str, layers, input_shape=(8, 8, 1)) -> ModelSpec:
    """A ModelSpec of a test layer list (`layers(spec)`) on digits."""
    monkeypatch.setitem(ARCHITECTURES, name, Architecture(
        name, "classification", "cross_entropy", "softmax", "test layer list", layers,
        image=len(input_shape) == 3))
    return ModelSpec(name, 64, 10, input_shape=input_shape)


def _cnn_bn_with(**batch_norm):
    """cnn_bn's layer list with other BatchNorm settings."""
    def layers(spec):
        return [Conv2D(8, 3, padding="same", use_bias=False), BatchNorm(**batch_norm),
                Activation("relu"), MaxPool2D(2),
                Conv2D(16, 3, strides=2, padding="same", use_bias=False), BatchNorm(**batch_norm),
                Activation("relu"), Flatten(), Dense(spec.n_outputs)]
    return layers


# ----------------------------------------------------------------------------- one layer
def _module(layer, input_shape, w: dict[str, np.ndarray], dtype: str) -> nn.Module:
    """The torch module of one normalisation layer, loaded with canonical `w`: a plain
    `load_state_dict` of the table's torch names (strict: BatchNorm fills the missing
    `num_batches_tracked` of a state_dict without version metadata itself)."""
    (r,) = resolve([layer], input_shape)
    ((name, module),) = translate(r)
    module = module.to(M.DTYPES[dtype])
    native = to_native(w, [r], "torch")
    module.load_state_dict({k.removeprefix(name + "."): torch.from_numpy(v)
                            for k, v in native.items()})
    return module


def _run(module: nn.Module, h: np.ndarray, training: bool) -> np.ndarray:
    """Canonical (N, ..., C) in and out; NCHW inside, as in the Net."""
    module.train(training)
    x = torch.from_numpy(h)
    if x.dim() == 4:
        x = x.permute(0, 3, 1, 2)
    with torch.no_grad():
        out = module(x)
    return (out.permute(0, 2, 3, 1) if out.dim() == 4 else out).numpy()


def _bn_formula(h, w, layer, training: bool):
    """(output, new moving mean, new moving variance) of the canonical BatchNorm, in float64."""
    h = h.astype(np.float64).reshape(-1, h.shape[-1])
    g, b, mm, mv = (w[f"batch_norm_0/{k}"].astype(np.float64)
                    for k in ("gamma", "beta", "moving_mean", "moving_variance"))
    if not training:
        return (h - mm) / np.sqrt(mv + layer.epsilon) * g + b, mm, mv
    mean, var = h.mean(0), h.var(0)
    m, count = layer.momentum, len(h)
    feed = var * count / (count - 1) if layer.moving_variance == "unbiased" else var
    return ((h - mean) / np.sqrt(var + layer.epsilon) * g + b,
            m * mm + (1 - m) * mean, m * mv + (1 - m) * feed)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(5, 4, 3), (6,)], ids=["images", "features"])
@pytest.mark.parametrize("variance", ["biased", "unbiased"])
def test_batch_norm_both_modes_match_the_formulas(dtype, shape, variance) -> None:
    """Eval mode: the moving statistics, which stay as they are. Train mode: the batch's mean
    and BIASED variance over every axis but the channels, and the moving statistics updated
    with the Keras momentum 0.9 (torch's 0.1) from the variance `variance` asks for."""
    rng = np.random.default_rng(0)
    h = (rng.normal(size=(7, *shape)) * 2.0 + 0.5).astype(dtype)
    layer = BatchNorm(momentum=0.9, epsilon=1e-3, moving_variance=variance)
    w = {f"batch_norm_0/{k}": v.astype(dtype) for k, v in {
        "gamma": rng.uniform(0.5, 1.5, shape[-1]), "beta": rng.normal(size=shape[-1]),
        "moving_mean": rng.normal(size=shape[-1]),
        "moving_variance": rng.uniform(0.5, 2.0, shape[-1])}.items()}
    tol = 1e-5 if dtype == "float32" else 1e-13
    module = _module(layer, shape, w, dtype)
    for training in (False, True, False):
        mm, mv = module.running_mean.numpy().copy(), module.running_var.numpy().copy()
        cur = dict(w, **{"batch_norm_0/moving_mean": mm, "batch_norm_0/moving_variance": mv})
        want, want_mm, want_mv = _bn_formula(h, cur, layer, training)
        got = _run(module, h, training)
        assert got.dtype == np.dtype(dtype)
        assert np.abs(got.reshape(want.shape) - want).max() <= tol * np.abs(want).max()
        assert np.abs(module.running_mean.numpy() - want_mm).max() <= tol
        assert np.abs(module.running_var.numpy() - want_mv).max() <= tol


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layer_norm_is_the_formula_in_both_modes(dtype) -> None:
    rng = np.random.default_rng(1)
    h = (rng.normal(size=(9, 6)) * 3.0 - 1.0).astype(dtype)
    w = {"layer_norm_0/gamma": rng.uniform(0.5, 1.5, 6).astype(dtype),
         "layer_norm_0/beta": rng.normal(size=6).astype(dtype)}
    module = _module(LayerNorm(epsilon=1e-3), (6,), w, dtype)
    h64 = h.astype(np.float64)
    want = ((h64 - h64.mean(1, keepdims=True)) / np.sqrt(h64.var(1, keepdims=True) + 1e-3)
            * w["layer_norm_0/gamma"] + w["layer_norm_0/beta"])
    tol = 1e-6 if dtype == "float32" else 1e-13
    for training in (True, False):
        assert np.abs(_run(module, h, training) - want).max() <= tol * np.abs(want).max()


def test_translations_have_canonical_names_settings_and_tables() -> None:
    """cnn_bn: convolutions without a bias parameter, BatchNorm2d with Keras's epsilon and the
    momentum in torch's convention (0.01 for Keras's 0.99); mlp_ln: LayerNorm with Keras's
    epsilon; a BatchNorm on flat features is a BatchNorm1d. Parameters are exactly the
    trainable rows, buffers the state rows plus `num_batches_tracked`."""
    spec, _, _ = _data("cnn_bn")
    net = M.build(spec, init_weights(spec))
    assert net.conv2d_0.bias is None and net.conv2d_1.bias is None
    for name in ("batch_norm_0", "batch_norm_1"):
        bn = getattr(net, name)
        assert type(bn) is nn.BatchNorm2d
        assert bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01, abs=1e-15)
    assert {k for k, _ in net.named_parameters()} == {
        t.native_name("torch") for t in tensor_specs(spec.resolved, trainable=True)}
    assert {k for k, _ in net.named_buffers()} == {
        t.native_name("torch") for t in tensor_specs(spec.resolved, trainable=False)} | {
        "batch_norm_0.num_batches_tracked", "batch_norm_1.num_batches_tracked"}

    ln_spec, _, _ = _data("mlp_ln")
    ln = M.build(ln_spec, init_weights(ln_spec))
    assert type(ln.layer_norm_0) is nn.LayerNorm and ln.layer_norm_0.eps == 1e-3
    assert ln.layer_norm_0.normalized_shape == (64,) and not list(ln.buffers())
    (r,) = resolve([BatchNorm()], (6,))
    assert type(translate(r)[0][1]) is nn.BatchNorm1d


def test_num_batches_tracked_is_in_no_table_and_never_in_the_way() -> None:
    """torch counts training-mode passes in `num_batches_tracked` and reads it only for
    momentum=None. get_weights skips it, set_weights leaves it, and the state_dict with it
    still loads strictly into torch's own modules."""
    spec, X, _ = _data("cnn_bn")
    w = perturbed_norm_weights(spec, "float32")
    net = M.build(spec, w)
    net(torch.from_numpy(X[:32]))  # train mode: counts one batch, updates the statistics
    assert int(net.batch_norm_0.num_batches_tracked) == 1
    got = M.get_weights(net)
    assert list(got) == list(spec.weight_shapes())
    assert max_diff({k: got[k] for k in trainable_names(spec)},
                    {k: w[k] for k in trainable_names(spec)}) == 0.0
    assert max_diff({k: got[k] for k in state_names(spec)},
                    {k: w[k] for k in state_names(spec)}) > 1e-3
    M.set_weights(net, w)
    assert max_diff(M.get_weights(net), w) == 0.0
    assert int(net.batch_norm_0.num_batches_tracked) == 1
    plain = nn.BatchNorm2d(8)  # torch's own module loads the zoo's entries strictly
    plain.load_state_dict({k.removeprefix("batch_norm_0."): v
                           for k, v in net.state_dict().items() if k.startswith("batch_norm_0.")})
    assert torch.equal(plain.running_var, net.batch_norm_0.running_var)


# ------------------------------------------------------------ the moving-variance compensation
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compensation_rounding_bound(dtype) -> None:
    """The bound of `corrected_moving_variance` on torch tensors, both directions.

    With u the unit roundoff of the dtype (2**-24, 2**-53), after and before the moving
    variance after and before a framework's update, m the momentum, c the Bessel factor
    ((count - 1) / count to biased, count / (count - 1) to unbiased) and T the exact
    after + (after - m * before) * (c - 1):

        |result - T| <= u * (|T| + 2 * |c - 1| * m * |before|
                             + (3 * |c - 1| + 2) * |after - m * before|)

    One rounding of the result, and a few of the update's size (after - m * before, with
    |c - 1| <= 1/2 for biased and 1/(count - 1) for unbiased): the factor c itself is
    rounded in float64, which shows in a float64 result, while torch rounds m and c - 1 to
    float32 for a float32 tensor. Checked against T in extended precision (long double) on
    moving variances and batch variances spanning 1e-6 to 1e6; the worst case measured is
    0.99 of the bound in both dtypes."""
    rng = np.random.default_rng(0)
    u = float(np.finfo(dtype).eps) / 2
    worst = 0.0
    for wants, has in (("biased", "unbiased"), ("unbiased", "biased")):
        for count in (2, 3, 32, 2048, 10**6):
            for m in (0.0, 0.9, 0.99, 0.999):
                before = torch.tensor(10.0 ** rng.uniform(-6, 6, 500), dtype=M.DTYPES[dtype])
                v = torch.tensor(10.0 ** rng.uniform(-6, 6, 500), dtype=M.DTYPES[dtype])
                after = m * before + (1 - m) * v
                got = corrected_moving_variance(before, after, count, m, has, wants)
                assert got.dtype == M.DTYPES[dtype]
                b, a = (t.numpy().astype(np.longdouble) for t in (before, after))
                c = (np.longdouble(count - 1) / count if wants == "biased"
                     else np.longdouble(count) / (count - 1))
                exact = a + (a - np.longdouble(m) * b) * (c - 1)
                update = np.abs(a - np.longdouble(m) * b)
                bound = u * (np.abs(exact) + 2 * abs(c - 1) * m * np.abs(b)
                             + (3 * abs(c - 1) + 2) * update)
                err = np.abs(got.numpy().astype(np.longdouble) - exact)
                worst = max(worst, float(np.max(err / bound)))
    assert worst <= 1.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compensated_running_var_is_as_exact_as_torchs_own(dtype) -> None:
    """End to end, on random batches of 2 to 40 samples (features and images, momentum 0, 0.9
    and 0.99, scales 1e-3 to 1e3, means up to a few standard deviations away from 0): the
    error of the compensated `running_var` against the exact biased update exceeds the error
    of torch's own unbiased update against the exact unbiased one, on the same batch, by at
    most 3 u (relative to max(|result|, m * |before|); measured: 0.94 u float32, 1.9 u
    float64: the rounding the compensation adds is the one of its bound). Both errors are
    mostly torch's batch variance's (measured up to 17 u, growing with mean / std)."""
    rng = np.random.default_rng(1)
    u = float(np.finfo(dtype).eps) / 2
    excess = 0.0
    for shape in ((5, 4, 3), (6,)):
        for m in (0.0, 0.9, 0.99):
            for _ in range(15):
                n, scale = int(rng.integers(2, 40)), 10.0 ** rng.uniform(-3, 3)
                h = ((rng.normal(size=(n, *shape)) + rng.normal()) * scale).astype(dtype)
                before = (10.0 ** rng.uniform(-3, 3, shape[-1])).astype(dtype)
                rel = {}
                for variance in ("biased", "unbiased"):
                    w = {"batch_norm_0/gamma": np.ones(shape[-1], dtype),
                         "batch_norm_0/beta": np.zeros(shape[-1], dtype),
                         "batch_norm_0/moving_mean": np.zeros(shape[-1], dtype),
                         "batch_norm_0/moving_variance": before}
                    module = _module(BatchNorm(momentum=m, moving_variance=variance), shape, w,
                                     dtype)
                    _run(module, h, training=True)
                    hl = h.astype(np.longdouble).reshape(-1, shape[-1])
                    feed = hl.var(0) * (len(hl) / (len(hl) - 1) if variance == "unbiased" else 1)
                    exact = m * before.astype(np.longdouble) + (1 - np.longdouble(m)) * feed
                    got = module.running_var.numpy().astype(np.longdouble)
                    rel[variance] = np.abs(got - exact) / (u * np.maximum(np.abs(exact),
                                                                          m * before))
                excess = max(excess, float(np.max(rel["biased"] - rel["unbiased"])))
    assert excess <= 3.0


def test_compensation_hooks_only_where_needed_and_keep_the_buffer() -> None:
    """Only a "biased" BatchNorm carries the hooks; they leave eval passes alone, and the
    `running_var` buffer stays the same tensor object (the state_dict and DDP hold it) through
    a training step, backward pass included."""
    spec, X, y = _data("cnn_bn")
    net = M.build(spec, init_weights(spec))
    hooks = [h.__self__ for h in net.batch_norm_0._forward_hooks.values()]
    assert len(hooks) == 1 and isinstance(hooks[0], MovingVarianceCorrection)
    (r,) = resolve([BatchNorm(moving_variance="unbiased")], (6,))
    assert not translate(r)[0][1]._forward_hooks
    buffer = net.batch_norm_0.running_var
    loss = M.make_loss(spec)(net(torch.from_numpy(X[:32])), torch.from_numpy(y[:32]).long())
    loss.backward()
    assert net.batch_norm_0.running_var is buffer
    assert net.state_dict()["batch_norm_0.running_var"].data_ptr() == buffer.data_ptr()
    before = buffer.clone()
    net.eval()
    with torch.no_grad():
        net(torch.from_numpy(X[:32]))
    assert torch.equal(buffer, before)


# ------------------------------------------------------------------ against the reference
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("model", ["cnn_bn", "mlp_ln"])
def test_one_epoch_matches_the_reference(model, optimizer, dtype) -> None:
    """Trained tensors AND moving statistics after one epoch (measured: <= 2.8e-7 float32,
    5e-16 float64), the step losses, and the inference-mode predictions (<= 4.6e-7)."""
    spec, X, y = _data(model, dtype)
    init = init_weights(spec, 0, dtype)
    ts = TrainSpec(OptimizerSpec(optimizer, lr=LR[optimizer]), epochs=1, batch_size=32,
                   dtype=dtype)
    got = T.train(spec, ts, X, y, init)
    want = reference.train(spec, ts, X.astype(np.float64), y,
                           {k: v.astype(np.float64) for k, v in init.items()})
    assert list(got.weights) == list(spec.weight_shapes())
    assert max_diff(got.weights, want.weights) <= TOL[dtype]
    assert np.abs(got.losses - want.losses).max() <= TOL[dtype]
    Xt, _ = _test_set(spec, dtype)
    pred = T.predict(spec, got.weights, Xt)
    assert np.abs(pred - reference.predict(spec, want.weights, Xt.astype(np.float64))).max() \
        <= 1e-6
    if model == "cnn_bn":  # the statistics did move, and predict uses them
        assert max_diff({k: got.weights[k] for k in state_names(spec)},
                        {k: init[k] for k in state_names(spec)}) > 1e-2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", ["cnn_bn", "mlp_ln"])
def test_step_details_match_the_reference(model, dtype) -> None:
    """A training-mode batch from perturbed weights, with an L2 penalty (kernels only, never
    gamma or beta): logits, loss, gradients of the trained tensors only and the state after
    the batch's update ({} for mlp_ln); twice in a row gives the same (no leftover state)."""
    spec, X, y = _data(model, dtype)
    w = perturbed_norm_weights(spec, dtype)
    got = T.step_details(spec, w, X[:32], y[:32], l2=0.01)
    again = T.step_details(spec, w, X[:32], y[:32], l2=0.01)
    want = reference.step_details(spec, {k: v.astype(np.float64) for k, v in w.items()},
                                  X[:32].astype(np.float64), y[:32], l2=0.01)
    tol = TOL[dtype]
    assert list(got["grads"]) == trainable_names(spec) == list(want["grads"])
    assert list(got["state"]) == state_names(spec) == list(want["state"])
    # the logits reach ~1 after normalisation: float32 rounding alone exceeds 1e-6 there
    scale = reference.rounding_scale(spec, {k: v.astype(np.float64) for k, v in w.items()},
                                     X[:32].astype(np.float64), dtype=dtype, training=True)
    assert np.all(np.abs(got["logits"] - want["logits"]) <= scale)
    assert abs(got["loss"] - want["loss"]) <= tol
    # float32: relative to each tensor's largest gradient (measured 1.8e-6 of it in
    # conv2d_0/kernel, whose entries sum 2048 products through the BatchNorm's backward pass)
    for k, g in want["grads"].items():
        gtol = 5e-6 * np.abs(g).max() if dtype == "float32" else tol
        assert np.abs(got["grads"][k] - g).max() <= gtol, k
    if got["state"]:
        assert max_diff(got["state"], want["state"]) <= tol
        assert max_diff(got["state"], {k: w[k] for k in got["state"]}) > 1e-4
    assert got["loss"] == again["loss"] and max_diff(got["grads"], again["grads"]) == 0.0


# ------------------------------------------------------------------ checkpoints and files
def test_pt_file_round_trip_carries_the_state(tmp_path) -> None:
    """The `.pt` state_dict holds running_mean / running_var (= the moving statistics) and
    `num_batches_tracked` (so torch's own modules load it strictly); loading gives back every
    canonical tensor bit for bit, and the same predictions."""
    spec, X, _ = _data("cnn_bn")
    w = perturbed_norm_weights(spec, "float32")
    path = torch_io.save(spec, w, tmp_path / "m.pt")
    state = torch.load(path, weights_only=True)
    np.testing.assert_array_equal(state["batch_norm_1.running_var"].numpy(),
                                  w["batch_norm_1/moving_variance"])
    np.testing.assert_array_equal(state["batch_norm_0.running_mean"].numpy(),
                                  w["batch_norm_0/moving_mean"])
    assert "batch_norm_0.num_batches_tracked" in state
    loaded_spec, loaded = torch_io.load(path)
    assert loaded_spec == spec and list(loaded) == list(w)
    for k in w:
        assert np.array_equal(loaded[k], w[k]), k
    np.testing.assert_array_equal(T.predict(spec, loaded, X), T.predict(spec, w, X))
    # a state_dict without num_batches_tracked (as other tools write it) loads too
    torch.save({k: v for k, v in state.items() if "num_batches" not in k}, path)
    assert max_diff(torch_io.load(path)[1], w) == 0.0


# ------------------------------------------------------------------ data-parallel BatchNorm
def test_sync_batch_norm_in_a_world_of_one_is_the_batch_norm(tmp_path) -> None:
    """In a one-rank gloo group the synchronised BatchNorm computes what the single-process
    module computes: outputs, input and parameter gradients, and the moving statistics with
    both variance rules, on images and features; eval mode uses the moving statistics."""
    import torch.distributed as dist

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=30))
    try:
        rng = np.random.default_rng(2)
        for shape in ((5, 4, 3), (6,)):
            for variance in ("biased", "unbiased"):
                layer = BatchNorm(momentum=0.9, moving_variance=variance)
                w = {"batch_norm_0/gamma": rng.uniform(0.5, 1.5, shape[-1]),
                     "batch_norm_0/beta": rng.normal(size=shape[-1]),
                     "batch_norm_0/moving_mean": rng.normal(size=shape[-1]),
                     "batch_norm_0/moving_variance": rng.uniform(0.5, 2, shape[-1])}
                plain = _module(layer, shape, w, "float64")
                sync = D.SyncBatchNorm.replacing(_module(layer, shape, w, "float64"), layer)
                x = torch.from_numpy(rng.normal(size=(7, *shape)) * 2 + 1)
                if x.dim() == 4:
                    x = x.permute(0, 3, 1, 2)
                outs = []
                for module in (plain, sync):
                    xi = x.clone().requires_grad_(True)
                    out = module.train()(xi)
                    (out * torch.arange(out.numel(), dtype=out.dtype).view(out.shape)).sum() \
                        .backward()
                    outs.append((out.detach(), xi.grad, module.weight.grad, module.bias.grad,
                                 module.running_mean.clone(), module.running_var.clone(),
                                 module.eval()(x).detach()))
                for a, b in zip(*outs, strict=True):
                    assert torch.allclose(a, b, rtol=1e-13, atol=1e-13), (shape, variance)
    finally:
        dist.destroy_process_group()


def test_two_workers_equal_one_process_with_synchronised_batch_norm() -> None:
    """cnn_bn on 320 digits, batch 32, SGD 0.1, float32: two DDP ranks, each normalising its
    16 images with the global batch's statistics, end where one process ends (measured
    2.4e-7; without synchronisation, each rank's own statistics: 2.4e-2 in conv2d_0/kernel,
    in float64 too)."""
    spec, X, y = _data("cnn_bn")
    init = init_weights(spec)
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=1, batch_size=32)
    one = T.train(spec, ts, X, y, init)
    two = D.train(spec, ts, X, y, init, workers=2, timeout=TIMEOUT)
    assert two.extra["workers"] == 2
    assert max_diff(two.weights, one.weights) <= TOL["float32"]
    assert np.abs(two.losses - one.losses).max() <= TOL["float32"]


def test_two_workers_with_unequal_shards_equal_one_process_float64() -> None:
    """Batch 23 on 320 images: shards of 12 and 11 images, and a partial last batch of 21
    (11 and 10): the statistics count the values that exist (measured 4.4e-16; 5.8e-2
    without synchronisation, float32)."""
    spec, X, y = _data("cnn_bn", "float64")
    init = init_weights(spec, 0, "float64")
    ts = TrainSpec(OptimizerSpec("momentum", lr=0.05), epochs=1, batch_size=23,
                   dtype="float64")
    one = T.train(spec, ts, X, y, init)
    two = D.train(spec, ts, X, y, init, workers=2, timeout=TIMEOUT)
    assert max_diff(two.weights, one.weights) <= TOL["float64"]
    assert np.abs(two.losses - one.losses).max() <= TOL["float64"]


# ------------------------------------------------------------ the translation mistakes, measured
def _moving_variance_diff(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a
               if k.endswith("moving_variance"))


def test_gotcha_torchs_default_momentum(monkeypatch) -> None:
    """torch's default momentum=0.1 is Keras's 0.9, not its 0.99 (the translation is
    1 - 0.99 = 0.01): after one epoch of cnn_bn (10 steps) the moving variance differs by
    0.47 (the moving mean by 0.50); the trained tensors are identical (training normalises
    with batch statistics)."""
    spec, X, y = _data("cnn_bn")
    wrong = _probe(monkeypatch, "cnn_bn_momentum_09", _cnn_bn_with(momentum=0.9))
    init = init_weights(spec)
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=1, batch_size=32)
    right_w, wrong_w = T.train(spec, ts, X, y, init).weights, T.train(wrong, ts, X, y, init).weights
    assert 0.4 < _moving_variance_diff(wrong_w, right_w) < 0.55
    assert max_diff({k: v for k, v in wrong_w.items() if "moving" not in k},
                    {k: v for k, v in right_w.items() if "moving" not in k}) == 0.0


def test_gotcha_unbiased_running_variance(monkeypatch) -> None:
    """torch's native running variance (unbiased) against the canonical biased one, without
    the compensation: each step adds (1 - m) * var / (count - 1) too much. On flat features
    (Dense 16, BatchNorm, batch 32) one step: 8.2e-4 (the increment 32/31 = 1.032 times the
    biased one), one epoch 5.8e-3; cnn_bn one epoch (2048 and 512 values per channel):
    4.3e-4, which moves its predictions by 9e-5."""
    def flat(variance):
        return lambda spec: [Dense(16), BatchNorm(moving_variance=variance), Activation("relu"),
                             Dense(spec.n_outputs)]
    specs = {v: _probe(monkeypatch, f"flat_bn_{v}", flat(v), (64,))
             for v in ("biased", "unbiased")}
    ds = load("digits")
    Xf, y = ds.X_train[:N], ds.y_train[:N]
    init = init_weights(specs["biased"])
    k = "batch_norm_0/moving_variance"
    step = {v: T.step_details(s, init, Xf[:32], y[:32])["state"][k] for v, s in specs.items()}
    assert 7e-4 < np.abs(step["unbiased"] - step["biased"]).max() < 1e-3
    np.testing.assert_allclose((step["unbiased"] - 0.99) / (step["biased"] - 0.99), 32 / 31,
                               rtol=1e-4)
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=1, batch_size=32)
    epoch = {v: T.train(s, ts, Xf, y, init).weights for v, s in specs.items()}
    assert 4e-3 < _moving_variance_diff(epoch["unbiased"], epoch["biased"]) < 8e-3

    spec, X, y = _data("cnn_bn")
    unbiased = _probe(monkeypatch, "cnn_bn_unbiased", _cnn_bn_with(moving_variance="unbiased"))
    init = init_weights(spec)
    a, b = T.train(spec, ts, X, y, init).weights, T.train(unbiased, ts, X, y, init).weights
    assert 2e-4 < _moving_variance_diff(b, a) < 8e-4


def test_gotcha_train_mode_at_inference() -> None:
    """A cnn_bn after one epoch (sgd 0.1), predicted on the 360 test images in train mode
    (batch statistics of the test set) instead of eval mode (moving statistics): the
    probabilities differ by up to 0.63 and the accuracy is 0.686 instead of 0.528. (After 10
    steps with momentum 0.99 the moving statistics are still 90% their initial zeros and ones:
    eval mode is the right mode and is worse here; after 20 epochs both give 0.922.) The
    train-mode pass also overwrites the moving statistics."""
    spec, X, y = _data("cnn_bn")
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=1, batch_size=32)
    w = T.train(spec, ts, X, y, init_weights(spec)).weights
    Xt, yt = _test_set(spec)
    net = M.build(spec, w)
    with torch.no_grad():
        train_mode = torch.softmax(net.train()(torch.from_numpy(Xt)), 1).numpy()
    eval_mode = T.predict(spec, w, Xt)
    assert 0.5 < np.abs(train_mode - eval_mode).max() < 0.75
    assert (train_mode.argmax(1) == yt).mean() == pytest.approx(0.686, abs=0.01)
    assert T.evaluate(spec, w, Xt, yt)["accuracy"] == pytest.approx(0.528, abs=0.01)
    assert max_diff(M.get_weights(net), w) > 1e-3


def test_gotcha_torchs_default_epsilon() -> None:
    """torch's default eps=1e-5 instead of Keras's 1e-3 (the canonical layer refuses < 1.001e-5,
    so the modules are changed by hand): cnn_bn's training-mode logits at the initial weights
    move by 1.4e-2, its eval-mode probabilities after one epoch by 6.2e-4, and one epoch of
    training with it ends 8.2e-3 away in the weights (predictions 9.7e-3)."""
    spec, X, y = _data("cnn_bn")
    init = init_weights(spec)

    def eps_1e5(model):
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps = 1e-5
        return model

    with torch.no_grad():
        right = M.build(spec, init)(torch.from_numpy(X)).numpy()
        wrong = eps_1e5(M.build(spec, init))(torch.from_numpy(X)).numpy()
    assert 1e-2 < np.abs(right - wrong).max() < 2e-2
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=1, batch_size=32)
    w = T.train(spec, ts, X, y, init).weights
    Xt, _ = _test_set(spec)
    with torch.no_grad():
        eps_wrong = torch.softmax(eps_1e5(M.build(spec, w)).eval()(torch.from_numpy(Xt)), 1)
    assert 3e-4 < np.abs(eps_wrong.numpy() - T.predict(spec, w, Xt)).max() < 1e-3
    w_wrong = T.run_loop(spec, ts, X, y, init, wrap=eps_1e5).weights
    assert 5e-3 < max_diff(w_wrong, w) < 1.2e-2
