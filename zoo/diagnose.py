"""First-divergence diagnosis: where two frameworks' trainings part, and the likely cause.

Given the reference's and a framework's histories (per-step losses and weights), this finds the
first step at which they leave the tolerance, then re-runs that step's mini-batch through both
frameworks' own code (`<package>.train.step_details`) from the *same* weights, and compares, in
the order data flows:

1. forward logits  -> weight layout (a transposed kernel), architecture, dropout
2. loss            -> the loss function or its reduction (probabilities fed as logits, sum
                      instead of mean, (N,) against (N, 1) targets)
3. gradients       -> the gradient path (clipped probabilities have zero gradient), penalties
3b. state          -> the moving statistics a BatchNorm leaves after the batch: the moving
                      variance updated with the unbiased instead of the biased batch variance,
                      or the momentum in the other convention (torch's 0.1 is Keras's 0.9)
4. the batch       -> the framework's recorded loss is not the shared batch's loss: it trained
                      on other samples (batch order, shuffling, a different seed, drop_last)
5. the update      -> gradients agree, updates differ: optimizer hyperparameters or formula
                      (Adam/RMSprop epsilon, betas, momentum formulation, accumulator start),
                      unless rounding explains it:
   - a kink: the weights had already drifted apart (within tolerance) and the reference's
     own gradient differs between the two weight sets (a ReLU switching for some sample);
   - drift: in float32, the update differs by less than `DRIFT_RELATIVE` of its size.

A forward pass that differs at the first step is checked against the reference's
inference-mode pass too: a framework that trains BatchNorm in inference mode (`model.eval()`,
`training=False`) matches it.

In float32 the forward logits get a per-output rounding allowance
(`zoo.reference.rounding_scale`), so summation-order rounding is not called a different
architecture.

`details` callables take (weights, X, y, masks, l2) and return {"logits", "loss", "grads",
"state"} (the state after the batch's moving-statistics update; absent or {} without one), so
the same logic serves in-process tests (with injected faults) and `zoo compare --diagnose`,
where every call runs in the framework's own worker process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.agreement import TOLERANCES, first_divergence
from zoo.data import batch_order
from zoo.errors import ConfigError
from zoo.layers import has_state
from zoo.specs import History, ModelSpec, TrainSpec, dropout_masks

Details = Callable[[dict, np.ndarray, np.ndarray, "list[np.ndarray] | None", float], dict]

CAUSES = {
    "logits_first": "the forward pass differs with identical weights at the first step: weight "
                    "layout (a transposed kernel; a square layer accepts the wrong layout "
                    "silently) or the architecture",
    "logits": "the forward pass differs with identical weights: the architecture, an "
              "activation, or dropout (masks, train/eval flags)",
    "loss": "the loss differs with identical logits: the loss function or its reduction "
            "(probabilities fed to a loss that expects logits? a sum instead of a mean? "
            "(N,) targets against (N, 1) outputs?)",
    "gradients": "gradients differ with identical losses: the gradient path (probabilities "
                 "clipped at 1e-7 have zero gradient) or a penalty term",
    "mode": "the forward pass equals the reference's INFERENCE-mode pass: BatchNorm ran with "
            "its moving statistics during training (torch: model.eval() left on; Keras: "
            "called with training=False; TF1: the training flag not fed), so it neither used "
            "the batch statistics nor updated the moving ones",
    "state": "gradients agree, the moving statistics after the step differ: the BatchNorm "
             "update of its moving statistics ({hint})",
    "batch": "the framework's recorded loss is not the loss of the shared mini-batch: it "
             "trained on other samples (batch order: shuffling, another seed, drop_last)",
    "dropout": "native dropout: every framework draws its own masks, so the trainings part "
               "at once; compare the test metric, or use the shared masks (the default) to "
               "compare step by step",
    "update": "gradients agree, updates differ: optimizer hyperparameters or formula (Adam or "
              "RMSprop epsilon and where it sits, betas, momentum formulation, accumulator "
              "start value, learning rate)",
    "kink": "a small drift met a kink, not a different computation: the weights were already "
            "{pre:.1e} apart before this step (rounding), and between the two weight sets the "
            "reference's own gradient changes by {shift:.1e} (the loss is not smooth there: a "
            "ReLU switching on or off for some sample), so the small difference became a "
            "large update difference (rerun with --dtype float64, where equal computations "
            "stay within 1e-12)",
    "drift": "float32 rounding accumulated over the steps so far, not a different "
             "computation: gradients agree and the updates differ by only {rel:.1e} of their "
             "size, from weights already {pre:.1e} apart before this step (rerun with --dtype "
             "float64, where equal computations agree within 1e-12 and a different optimizer "
             "setting still differs)",
}
#: Below this relative size of the update difference, in float32, after the weights had
#: already drifted apart, a divergence at the update is called rounding drift.
DRIFT_RELATIVE = 1e-3


@dataclass
class Diagnosis:
    framework: str
    reference: str
    step: int | None = None
    epoch: int | None = None
    batch: int | None = None
    quantity: str | None = None  # logits, loss, gradients, batch, update, dropout
    tensor: str | None = None
    difference: float = 0.0
    cause: str = "agrees with the reference within tolerance at every step"
    checks: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        if self.step is None:
            return f"{self.framework}: {self.cause}."
        where = f" in {self.tensor}" if self.tensor else ""
        return (f"{self.framework} vs {self.reference}: first divergence at step {self.step} "
                f"(epoch {self.epoch}, batch {self.batch}); first differing quantity: "
                f"{self.quantity}{where} (max |diff| {self.difference:.3g}). Likely cause: "
                f"{self.cause}.")

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("framework", "reference", "step", "epoch", "batch",
                                                "quantity", "tensor", "difference", "cause",
                                                "checks")}


def _worst(a: dict[str, np.ndarray], b: dict[str, np.ndarray], atol: float, rtol: float,
           slack: dict[str, np.ndarray] | None = None) -> tuple[str | None, float, bool]:
    """(name of the tensor with the largest excess over tolerance, its max |diff|, exceeded?).
    `slack` adds a per-element allowance (the rounding scale of a float32 forward pass)."""
    worst, worst_diff, worst_excess = None, 0.0, -np.inf
    for k in b:
        x, r = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        if x.shape != r.shape:
            return k, float("inf"), True
        d = np.abs(x - r)
        allowed = atol + rtol * np.abs(r) + (slack[k] if slack and k in slack else 0.0)
        excess = float(np.max(d - allowed)) if d.size else -np.inf
        if excess > worst_excess:
            worst, worst_diff, worst_excess = k, float(np.max(d)) if d.size else 0.0, excess
    return worst, worst_diff, worst_excess > 0


def diagnose(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
             init: dict[str, np.ndarray], reference: History, history: History,
             details_ref: Details, details_fw: Details, *,
             tolerance: tuple[float, float] | None = None) -> Diagnosis:
    """Find the first divergent step of `history` against `reference` and name the first
    quantity that differs there (see the module docstring). Both histories need per-step
    weights (`record_weights=True`); `train_spec` is the shared one (batch order, masks, l2)."""
    atol, rtol = tolerance or TOLERANCES[train_spec.dtype]
    d = Diagnosis(history.framework, reference.framework)
    k = first_divergence(history, reference, (atol, rtol))
    if k is None:
        return d
    if not (reference.step_weights and history.step_weights):
        raise ConfigError("the diagnosis needs the weights after every step: train with "
                          "record_weights=True.")
    every = max(reference.weights_every, history.weights_every)
    if every != 1:
        raise ConfigError(f"the diagnosis needs the weights after every step, but they were "
                          f"recorded every {every} steps; record every step (--record-every "
                          "1) or train fewer steps.")
    spe = -(-len(X) // train_spec.batch_size)
    epoch, step = divmod(k, spe)
    d.step, d.epoch, d.batch = k, epoch, step
    idx = batch_order(len(X), train_spec.batch_size, train_spec.seed, epoch,
                      shuffle=train_spec.shuffle)[step]
    masks = None
    if train_spec.dropout_mode == "shared":
        masks = dropout_masks(model_spec, len(idx), train_spec.seed, epoch, step,
                              train_spec.dtype) or None
    before = init if k == 0 else reference.step_weights[k - 1]
    Xb, yb, l2 = X[idx], y[idx], train_spec.l2

    def found(quantity: str, tensor: str | None, diff: float, cause: str) -> Diagnosis:
        d.quantity, d.tensor, d.difference, d.cause = quantity, tensor, diff, CAUSES[cause]
        return d

    if train_spec.dropout_mode == "native" and model_spec.hidden and model_spec.dropout > 0:
        return found("dropout", None, abs(float(history.losses[k]) - float(reference.losses[k])),
                     "dropout")
    r, f = details_ref(before, Xb, yb, masks, l2), details_fw(before, Xb, yb, masks, l2)

    slack = None
    if train_spec.dtype == "float32":  # two float32 sums in different orders differ
        from zoo.reference import rounding_scale

        slack = {"logits": rounding_scale(model_spec, before, Xb, masks, training=True)
                 .reshape(np.shape(r["logits"]))}
        d.checks["logits_rounding_scale"] = float(np.max(slack["logits"]))
    _, diff, bad = _worst({"logits": f["logits"]}, {"logits": r["logits"]}, atol, rtol, slack)
    d.checks["logits"] = diff
    if bad:
        if has_state(model_spec.resolved):
            from zoo.reference import forward

            inference = forward(model_spec, before, Xb, masks)
            _, off, still = _worst({"logits": f["logits"]}, {"logits": inference}, atol, rtol,
                                   slack)
            d.checks["logits_vs_inference_mode"] = off
            if not still:
                return found("logits", None, diff, "mode")
        return found("logits", None, diff, "logits_first" if k == 0 else "logits")
    _, diff, bad = _worst({"loss": np.array(f["loss"])}, {"loss": np.array(r["loss"])}, atol, rtol)
    d.checks["loss"] = diff
    if bad:
        return found("loss", None, diff, "loss")
    name, diff, bad = _worst(f["grads"], r["grads"], atol, rtol)
    d.checks["gradients"] = diff
    if bad:
        return found("gradients", name, diff, "gradients")
    if r.get("state"):
        name, diff, bad = _worst(f.get("state") or {}, r["state"], atol, rtol)
        d.checks["state"] = diff
        if bad:
            found("state", name, diff, "state")
            d.cause = d.cause.format(hint=_state_hint(name, f.get("state") or {}, r["state"],
                                                      model_spec, len(idx)))
            return d
    # The framework's own pre-step weights: its recorded loss must be this batch's loss.
    own_before = init if k == 0 else history.step_weights[k - 1]
    own = f if k == 0 else details_fw(own_before, Xb, yb, masks, l2)
    recorded = float(history.losses[k])
    diff = abs(recorded - own["loss"])
    d.checks["batch"] = diff
    if diff > atol + rtol * abs(own["loss"]):
        return found("batch", None, diff, "batch")
    upd_f = {n: np.asarray(history.step_weights[k][n], np.float64) - np.asarray(own_before[n], np.float64)
             for n in own_before}
    upd_r = {n: np.asarray(reference.step_weights[k][n], np.float64) - np.asarray(before[n], np.float64)
             for n in before}
    name, diff, _ = _worst(upd_f, upd_r, atol, rtol)
    d.checks["update"] = diff
    size = max(float(np.max(np.abs(u))) if u.size else 0.0 for u in upd_r.values())
    rel = diff / size if size > 0 else np.inf
    pre = max(float(np.max(np.abs(np.asarray(own_before[n], np.float64)
                                  - np.asarray(before[n], np.float64)))) for n in before)
    d.checks["update_relative"], d.checks["weights_before"] = rel, pre
    if k > 0 and pre > 0:
        # The reference's gradient at the framework's own pre-step weights: when it leaves the
        # one at the reference's weights, the loss is not smooth between the two (a kink).
        moved = details_ref(own_before, Xb, yb, masks, l2)
        _, shift, kink = _worst(moved["grads"], r["grads"], atol, rtol)
        d.checks["gradient_shift"] = shift
        if kink:
            found("update", name, diff, "kink")
            d.cause = d.cause.format(pre=pre, shift=shift)
            return d
    if train_spec.dtype == "float32" and k > 0 and pre > 0 and rel < DRIFT_RELATIVE:
        found("update", name, diff, "drift")
        d.cause = d.cause.format(rel=rel, pre=pre)
        return d
    return found("update", name, diff, "update")


def _state_hint(name: str | None, got: dict, want: dict, spec: ModelSpec, batch: int) -> str:
    """Which update the framework's moving statistic looks like: the other variance
    (Bessel's correction), or the momentum read in the other convention."""
    if name is None or name not in got:
        return f"{name} is missing from the framework's state"
    layer = next(r for r in spec.resolved if name.startswith(r.name + "/"))
    count = batch * int(np.prod(layer.input_shape[:-1]))
    return (f"{name} differs after the step: unbiased vs biased variance in the update "
            f"(Bessel's factor {count}/{count - 1} for {count} values per channel)? momentum "
            f"in the other convention (Keras's {layer.layer.momentum} is torch's "
            f"{1 - layer.layer.momentum:.3g})?")
