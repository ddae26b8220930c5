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
import torch
from helpers import load
from torch import nn

import torch_models.softmax
import torch_models.train as T
from zoo import reference as ref
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


def test_float32_rounding_drift_is_told_from_a_different_computation():
    d = _digits_mlp("float32")  # Adam lr 5e-3, 10 epochs
    # float32 rounding, amplified by ReLUs and Adam over ~100 steps, crosses the 1e-6 tolerance
    assert d.quantity == "update" and d.step > 50
    assert d.checks["update_relative"] < 1e-3 and d.checks["weights_before"] > 1e-7
    assert d.cause.startswith("float32 rounding accumulated over the steps so far, not a "
                              "different computation: gradients agree and the updates differ "
                              "by only ")
    assert "Likely cause: float32 rounding accumulated" in d.summary()
    # the same training in float64 agrees at every step: no formula differs
    assert _digits_mlp("float64").step is None


def test_a_drift_that_meets_a_relu_kink_is_named():
    """SGD lr 0.1, 30 epochs: at step 879 the float32 weights, 1.1e-6 from the reference's,
    put a ReLU on the other side of zero for some sample: the reference's own gradient moves
    by 2.3e-5 between the two weight sets, and the update difference follows. The forward
    pass there differs by 3.5e-6, float32 rounding well inside `rounding_scale` (8.5e-5)."""
    d = _digits_mlp("float32", OptimizerSpec("sgd", lr=0.1), epochs=30)
    assert (d.step, d.quantity) == (879, "update")
    assert d.cause.startswith("a small drift met a kink, not a different computation")
    assert d.checks["gradient_shift"] > 1e-5 and d.checks["weights_before"] < 1e-5
    assert d.checks["logits"] > 1e-6 and d.checks["logits"] < d.checks["logits_rounding_scale"]


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
    monkeypatch.setattr(torch_models.softmax, "make_loss", ProbabilitiesAsInput)
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
    monkeypatch.setattr(torch_models.softmax, "make_loss", lambda: nn.CrossEntropyLoss(reduction="sum"))
    d = run("softmax", SGD)
    assert (d.step, d.quantity) == (0, "loss")
    assert d.difference > 10  # a sum over 32 samples against their mean
    assert "a sum instead of a mean" in d.cause


def test_transposed_square_kernel_is_a_forward_difference(monkeypatch):
    # digits has 64 features, so the MLP's first layer is 64 x 64: the wrong layout loads
    # without any error. Inject a loader that forgets the transpose at the layout edge.
    original = torch_models.softmax.set_weights

    def forgets_transpose(model, weights):
        w = dict(weights)
        w["dense_0/kernel"] = np.ascontiguousarray(np.asarray(w["dense_0/kernel"]).T)
        original(model, w)

    monkeypatch.setattr(torch_models.softmax, "set_weights", forgets_transpose)
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


def test_compare_cli_diagnoses_a_drift_that_meets_a_kink(tmp_path):
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
    assert d["step"] > 500 and d["quantity"] == "update"
    assert d["checks"]["weights_before"] < 1e-5 < d["checks"]["gradient_shift"]
    assert d["cause"].startswith("a small drift met a kink, not a different computation")
