"""First-divergence diagnosis, tested by injecting known faults into one side.

The reference is the float64-formula numpy implementation (`zoo.reference`), the other side
is the real PyTorch code with one fault injected (a different Adam epsilon, probabilities fed
to a loss that expects logits, a transposed square kernel, another batch order, a sum
reduction); the diagnosis must name the step, the quantity and the cause of each. The last
test runs a real cross-framework divergence through `zoo compare --diagnose`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import load
from torch import nn

import torch_models.model
import torch_models.train as T
from zoo import reference as ref
from zoo.data import batch_order
from zoo.diagnose import CAUSES, diagnose
from zoo.optimizers import OptimizerSpec
from zoo.specs import TrainSpec, init_weights, model_spec_for

N = 160  # digits samples: 5 steps of 32


def run(model: str, train_spec: TrainSpec, init=None, *, fw_spec: TrainSpec | None = None):
    """(diagnosis, reference history) of torch (trained with `fw_spec`, default the shared
    spec) against the numpy reference, on the first N digits samples."""
    ds = load("digits", train_spec.dtype)
    X, y = ds.X_train[:N], ds.y_train[:N]
    spec = model_spec_for(model, ds.n_features, ds.n_outputs)
    init = init if init is not None else init_weights(spec, 0, train_spec.dtype)
    href = ref.train(spec, train_spec, X, y, init, record_weights=True)
    hfw = T.train(spec, fw_spec or train_spec, X, y, init, record_weights=True)

    def details_ref(w, Xb, yb, masks, l2):
        return ref.step_details(spec, w, Xb, yb, masks, l2)

    def details_fw(w, Xb, yb, masks, l2):
        dt = train_spec.dtype
        return T.step_details(spec, {k: np.asarray(v, dt) for k, v in w.items()},
                              np.asarray(Xb, dt), yb, masks, l2)

    return diagnose(spec, train_spec, X, y, init, href, hfw, details_ref, details_fw)


SGD = TrainSpec(OptimizerSpec("sgd", lr=0.1))


def test_no_fault_agrees():
    d = run("softmax", SGD)
    assert d.step is None and d.quantity is None
    assert d.summary() == "torch: agrees with the reference within tolerance at every step."


def test_different_adam_epsilon_is_an_update_difference():
    shared = TrainSpec(OptimizerSpec("adam", lr=0.01))
    d = run("softmax", shared, fw_spec=TrainSpec(OptimizerSpec("adam", lr=0.01, epsilon=1e-3)))
    assert (d.step, d.quantity) == (0, "update")
    assert d.checks["gradients"] < 1e-6 and d.checks["logits"] < 1e-6
    assert d.difference > 1e-4 and d.cause == CAUSES["update"]  # at step 0: no drift yet
    assert "Adam or RMSprop epsilon" in d.summary()


ADAM_5E3 = OptimizerSpec("adam", lr=0.005)


def _digits_mlp(dtype: str, opt: OptimizerSpec = ADAM_5E3, epochs: int = 10):
    """torch against the float64 reference on the digits MLP (45 steps an epoch), no fault
    at all."""
    ds = load("digits", dtype)
    spec = model_spec_for("mlp", ds.n_features, ds.n_outputs)
    ts = TrainSpec(opt, epochs=epochs, dtype=dtype)
    init = init_weights(spec, 0, dtype)
    href = ref.train(spec, ts, ds.X_train, ds.y_train, init, record_weights=True)
    hfw = T.train(spec, ts, ds.X_train, ds.y_train, init, record_weights=True)
    return diagnose(spec, ts, ds.X_train, ds.y_train, init, href, hfw,
                    lambda w, Xb, yb, m, l2: ref.step_details(spec, w, Xb, yb, m, l2),
                    lambda w, Xb, yb, m, l2: T.step_details(
                        spec, {k: np.asarray(v, dtype) for k, v in w.items()},
                        np.asarray(Xb, dtype), yb, m, l2))


ROUNDING_CAUSES = ("float32 rounding accumulated over the steps so far, not a different "
                   "computation", "a small drift met a kink, not a different computation")


def test_float32_runs_that_part_are_called_rounding():
    """No fault at all: float32 torch against the float64 reference parts somewhere after a
    hundred steps, and the diagnosis calls it rounding, not a different computation. (Here:
    Adam at step 111 as drift, relative update difference 5.9e-5; SGD at step 879 as a kink,
    gradient shift 2.3e-5 with a logits difference of 3.5e-6 inside the rounding allowance of
    8.5e-5. Which of the two, and where, depends on the CPU's float32 kernels.)"""
    for opt, epochs in ((ADAM_5E3, 10), (OptimizerSpec("sgd", lr=0.1), 30)):
        d = _digits_mlp("float32", opt, epochs)
        assert d.quantity == "update" and d.step > 50
        assert d.cause.startswith(ROUNDING_CAUSES), d.cause
        assert d.checks["weights_before"] < 1e-5
    # the same training in float64 agrees at every step: no formula differs
    assert _digits_mlp("float64").step is None


def _hand_made(model: str, shift):
    """Diagnose two hand-made histories of SGD (lr 0.1) on iris, both computed with the float64
    reference: `shift(spec, w1, X1, grad)` may edit the reference's weights after step 0 in
    place and returns (tweak, extra): the framework's weights after step 0 are the
    reference's plus `tweak` (within the tolerance), and its step-1 update adds `extra`."""
    ds = load("iris")
    spec = model_spec_for(model, ds.n_features, ds.n_outputs)
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), dropout_mode="off")
    X, y = ds.X_train.astype(np.float64), ds.y_train
    batches = batch_order(len(X), ts.batch_size, ts.seed, 0)
    init = init_weights(spec, 0, "float64")

    def step(w, k):
        loss, g = ref.loss_and_grads(spec, w, X[batches[k]], y[batches[k]])
        return loss, {n: w[n] - 0.1 * g[n] for n in w}

    def history(name, after0, extra_update):
        l1, w2 = step(after0, 1)
        w2 = {n: w2[n] + extra_update.get(n, 0.0) for n in w2}
        from zoo.specs import History

        return History(name, np.array([loss0, l1]), w2, [], [after0, w2])

    loss0, w1 = step(init, 0)

    def grad(w):
        return ref.loss_and_grads(spec, w, X[batches[1]], y[batches[1]])[1]

    tweak, extra = shift(spec, w1, X[batches[1]], grad)
    mine = {n: w1[n] + tweak.get(n, 0.0) for n in w1}
    href, hfw = history("numpy", w1, {}), history("hand-made", mine, extra)

    def details(w, Xb, yb, masks, l2):
        return ref.step_details(spec, w, Xb, yb, masks, l2)

    return diagnose(spec, ts, X, y, init, href, hfw, details, details)


def test_a_smooth_drift_is_called_float32_rounding():
    def drift(spec, w, Xb, grad):
        w["dense_0/kernel"][0, 0] = 0.0  # so its tolerance is 1e-6 after step 0
        after = -0.1 * grad(w)["dense_0/kernel"][0, 0]
        k, e = np.zeros((4, 3)), np.zeros((4, 3))
        k[0, 0] = 9e-7  # the framework's weight 9e-7 off, within the tolerance...
        e[0, 0] = 1e-6 + 1e-5 * abs(after)  # ...and its update off by that weight's tolerance
        return {"dense_0/kernel": k}, {"dense_0/kernel": e}

    d = _hand_made("softmax", drift)
    assert (d.step, d.quantity, d.tensor) == (1, "update", "dense_0/kernel")
    assert d.cause.startswith(ROUNDING_CAUSES[0])
    assert d.checks["weights_before"] == pytest.approx(9e-7)
    assert d.checks["gradient_shift"] < 1e-6  # softmax regression is smooth


def test_a_relu_switched_by_a_tiny_drift_is_called_a_kink():
    """The MLP with a hidden unit sitting at pre-activation 5e-8 for one sample of the step-1
    batch: the framework's bias, 1e-7 lower (within the tolerance), switches that ReLU off, so
    the unit's gradient for that sample vanishes and the update parts beyond the tolerance."""
    def switch_one_relu(spec, w, Xb, grad):
        z = Xb @ w["dense_0/kernel"] + w["dense_0/bias"]
        i, j = np.unravel_index(np.argmin(np.where(z > 0, z, np.inf)), z.shape)
        w["dense_0/bias"][j] -= z[i, j] - 5e-8  # the reference: that unit just on
        b = np.zeros_like(w["dense_0/bias"])
        b[j] = -1e-7  # the framework: just off
        return {"dense_0/bias": b}, {}

    d = _hand_made("mlp", switch_one_relu)
    assert (d.step, d.quantity) == (1, "update")
    assert d.cause.startswith(ROUNDING_CAUSES[1])
    assert d.checks["weights_before"] == pytest.approx(1e-7)
    assert d.checks["gradient_shift"] > 1e-5


def test_rounding_scale_bounds_float32_forward_rounding():
    from zoo.reference import forward, rounding_scale

    rng = np.random.default_rng(3)
    spec = model_spec_for("mlp", 64, 10)
    for seed in range(5):
        w = {k: (v * 5).astype(np.float32) for k, v in init_weights(spec, seed).items()}
        X = rng.normal(0, 3, (50, 64)).astype(np.float32)
        h = X
        for i in range(3):  # the float32 forward pass, numpy's own summation order
            h = h @ w[f"dense_{i}/kernel"] + w[f"dense_{i}/bias"]
            h = np.maximum(h, 0) if i < 2 else h
        exact = forward(spec, w, X)
        scale = rounding_scale(spec, w, X)
        assert np.all(np.abs(h - exact) <= scale)
        assert 0 < np.max(np.abs(h - exact)) and np.max(scale) < 1e-3 * np.max(np.abs(exact))


class ProbabilitiesAsInput(nn.Module):
    """The Keras `from_logits=False` path: cross-entropy of softmax probabilities clipped to
    [1e-7, 1 - 1e-7], so a confident mistake costs at most -log(1e-7) = 16.1."""

    def forward(self, logits, labels):
        p = torch.softmax(logits, dim=1).clamp(1e-7, 1 - 1e-7)
        return nn.functional.nll_loss(torch.log(p), labels)


def test_probabilities_fed_to_the_loss_is_a_loss_difference(monkeypatch):
    monkeypatch.setattr(torch_models.model, "make_loss", lambda spec: ProbabilitiesAsInput())
    # float64, so that the large logits of a saturated model compare exactly; weights x30
    # make some true-class probabilities fall below the clip at 1e-7
    sgd64 = TrainSpec(OptimizerSpec("sgd", lr=0.1), dtype="float64")
    spec = model_spec_for("softmax", 64, 10)
    init = {k: v * 30 for k, v in init_weights(spec, 0, "float64").items()}
    d = run("softmax", sgd64, init)
    assert (d.step, d.quantity) == (0, "loss")
    assert d.checks["logits"] < 1e-10 and d.difference > 1.0
    assert "probabilities fed to a loss that expects logits" in d.cause


def test_sum_reduction_is_a_loss_difference(monkeypatch):
    monkeypatch.setattr(torch_models.model, "make_loss",
                        lambda spec: nn.CrossEntropyLoss(reduction="sum"))
    d = run("softmax", SGD)
    assert (d.step, d.quantity) == (0, "loss")
    assert d.difference > 10  # a sum over 32 samples against their mean
    assert "a sum instead of a mean" in d.cause


def test_transposed_square_kernel_is_a_forward_difference(monkeypatch):
    # digits has 64 features, so the MLP's first layer is 64 x 64: the wrong layout loads
    # without any error. Inject a loader that forgets the transpose at the layout edge.
    original = torch_models.model.set_weights

    def forgets_transpose(model, weights):
        w = dict(weights)
        w["dense_0/kernel"] = np.ascontiguousarray(np.asarray(w["dense_0/kernel"]).T)
        original(model, w)

    monkeypatch.setattr(torch_models.model, "set_weights", forgets_transpose)
    d = run("mlp", SGD)
    assert (d.step, d.quantity) == (0, "logits")
    assert d.difference > 1e-2
    assert d.cause == CAUSES["logits_first"] and "transposed kernel" in d.cause


def test_other_batch_order_is_a_batch_difference():
    d = run("softmax", SGD, fw_spec=TrainSpec(OptimizerSpec("sgd", lr=0.1), seed=1))
    assert (d.step, d.quantity) == (0, "batch")
    assert d.checks["logits"] < 1e-6 and d.checks["gradients"] < 1e-6 and d.difference > 1e-3
    assert "batch order" in d.cause


def test_compare_cli_float64_momentum_agrees_in_every_framework(tmp_path):
    """Keras's float64 momentum used to be float32(0.9) (its `ops.cast` of a Python float goes
    through float32): keras left the float64 reference at step 1 by 1.7e-9. The zoo now hands
    Keras np.float64 hyperparameters, and every framework agrees throughout."""
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "zoo", "compare", "softmax", "--dataset", "iris",
                        "--frameworks", "numpy,keras,torch,tf1", "--optimizer", "momentum",
                        "--dtype", "float64", "--epochs", "1", "--diagnose", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    for fw in ("keras", "torch", "tf1"):
        assert rep["diagnoses"][fw]["step"] is None
        assert rep["frameworks"][fw]["max_weight_diff"] < 1e-12


def test_compare_cli_diagnoses_rounding_in_a_real_run(tmp_path):
    """A real divergence through the CLI, no fault injected: the digits MLP (SGD lr 0.1, 30
    epochs) in float32 torch parts from the float64 reference late (step 1194 in a worker's
    single thread; 879 in-process, another summation order), where a drift of ~1e-6 crosses
    a ReLU kink; the diagnosis says so instead of blaming a computation."""
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "zoo", "compare", "mlp", "--dataset", "digits",
                        "--frameworks", "numpy,torch", "--epochs", "30", "--diagnose",
                        "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())["diagnoses"]["torch"]
    assert f"diagnosis: torch vs numpy: first divergence at step {d['step']}" in \
        " ".join(r.stdout.split())
    assert d["step"] > 100 and d["quantity"] == "update"
    assert d["cause"].startswith(ROUNDING_CAUSES)  # here a kink: gradient shift 1.2e-5


def test_diagnose_and_compare_share_the_agreement_rules_without_a_cycle():
    """The tolerances and the first divergence live in `zoo.agreement`: the diagnosis does not
    import the comparison harness, which imports the same rules."""
    from zoo import agreement, compare

    code = ("import sys, zoo.diagnose; assert 'zoo.agreement' in sys.modules; "
            "assert 'zoo.compare' not in sys.modules, 'diagnose imports compare'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert compare.TOLERANCES is agreement.TOLERANCES
    assert compare.first_divergence is agreement.first_divergence
    assert agreement.TOLERANCES == {"float32": (1e-6, 1e-5), "float64": (1e-12, 1e-10)}


# ----------------------------------------------------------------------------- BatchNorm
def _bn_pair(fw_layer_kwargs: dict, fw_details=None):
    """The reference against a reference-built "framework" whose BatchNorm differs as
    `fw_layer_kwargs` says (a real port's fault, injected where it can be controlled), on a
    flat BatchNorm MLP over 64 digits samples, float64."""
    import dataclasses

    from zoo.layers import BatchNorm, Dense
    from zoo.models import ARCHITECTURES

    ds = load("digits", "float64")
    X, y = ds.X_train[:64], ds.y_train[:64]
    base = ARCHITECTURES["softmax"]

    def spec_with(**kw):
        arch = dataclasses.replace(base, name="bn_probe",
                                   layers=lambda s: [Dense(8), BatchNorm(**kw),
                                                     Dense(s.n_outputs)])
        ARCHITECTURES["bn_probe"] = arch
        return model_spec_for("bn_probe", ds.n_features, ds.n_outputs)

    try:
        ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), dtype="float64")
        spec_fw = spec_with(**fw_layer_kwargs)
        init = init_weights(spec_fw, 0, "float64")
        hfw = ref.train(spec_fw, ts, X, y, init, record_weights=True)
        spec = spec_with()
        href = ref.train(spec, ts, X, y, init, record_weights=True)
        details_fw = (fw_details(spec_fw) if fw_details else
                      lambda w, Xb, yb, m, l2: ref.step_details(spec_fw, w, Xb, yb, m, l2))
        return diagnose(spec, ts, X, y, init, href, hfw,
                        lambda w, Xb, yb, m, l2: ref.step_details(spec, w, Xb, yb, m, l2),
                        details_fw)
    finally:
        ARCHITECTURES.pop("bn_probe", None)


def test_an_unbiased_moving_variance_update_is_named_as_a_state_difference():
    """torch's BatchNorm updates its running variance with the unbiased batch variance:
    everything agrees at step 0 but the moving variance."""
    d = _bn_pair({"moving_variance": "unbiased"})
    assert (d.step, d.quantity, d.tensor) == (0, "state", "batch_norm_0/moving_variance")
    assert d.checks["gradients"] < 1e-12 and d.checks["logits"] < 1e-12
    assert "unbiased vs biased variance in the update (Bessel's factor 32/31" in d.cause
    # the size of the fault: (1 - 0.99) * var / 31 for the digits features' variance
    assert 1e-6 < d.difference < 1e-2


def test_torchs_momentum_in_keras_convention_is_named_as_a_state_difference():
    d = _bn_pair({"momentum": 0.1})
    assert (d.step, d.quantity) == (0, "state")
    assert d.tensor in ("batch_norm_0/moving_mean", "batch_norm_0/moving_variance")
    assert "momentum in the other convention (Keras's 0.99 is torch's 0.01)" in d.cause


def test_batch_norm_trained_in_inference_mode_is_named():
    """A port that trains with model.eval() on: its forward pass is the inference-mode one."""

    def eval_mode(spec):
        def details(w, Xb, yb, masks, l2):
            out = ref.step_details(spec, w, Xb, yb, masks, l2)
            out["logits"] = ref.forward(spec, w, Xb, masks)   # moving statistics
            return out
        return details

    d = _bn_pair({"momentum": 0.5}, fw_details=eval_mode)
    assert (d.step, d.quantity) == (0, "logits")
    assert d.cause == CAUSES["mode"]
    assert d.checks["logits_vs_inference_mode"] < 1e-12 < d.checks["logits"]
