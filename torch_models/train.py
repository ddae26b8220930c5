"""The one PyTorch training loop of the zoo (every model), plus `predict` and `evaluate`.

Idiom: an `nn.Module` from the model file, its loss module, a `torch.optim` optimizer from
`torch_models.optimizers.make_optimizer`, `model.train()` for training and `model.eval()` +
`torch.no_grad()` for prediction, and the classic `zero_grad / forward / loss / backward / step`.

What makes it agree with Keras, TF1 and the float64 reference step by step:
- batches are the shared `zoo.data.batch_order(...)` index arrays, taken by direct indexing of
  one tensor. (A `DataLoader(batch_sampler=...)` would give the same batches, but each of its
  iterators draws from the global torch RNG, which shifts native dropout masks, and it gathers
  sample by sample; one gather per batch is simpler and faster.)
- initial weights come in canonical layout and are transposed at the model's edge;
- targets get the shapes and dtypes the loss modules need: int64 (N,) for cross-entropy and
  hinge (int32 raises), float (N, 1) for BCE-with-logits and MSE ((N,) against (N, 1) would
  broadcast MSE to N x N);
- the L2 penalty 0.5 * l2 * sum(kernel**2) is added to the loss (never torch's `weight_decay`,
  which differs from Keras's decoupled decay under momentum);
- dropout "shared" passes `zoo.specs.dropout_masks` to the MLP's forward, "native" uses
  `nn.Dropout`, "off" builds the MLP with p = 0;
- float64: the model is `.double()` and every tensor float64; torch keeps the learning rate as a
  Python float, so no float32 lr creeps in (unlike Keras and TF1, porting-facts row 19).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import time
from collections.abc import Callable
from types import ModuleType

import numpy as np
import torch
from torch import nn

from zoo.checkpoint import start
from zoo.data import batch_order
from zoo.specs import (
    History,
    ModelSpec,
    TrainSpec,
    check_inputs,
    dropout_masks,
    record_every,
    records,
)

__all__ = ["evaluate", "model_module", "predict", "train"]

FRAMEWORK = "torch"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def model_module(model_spec: ModelSpec) -> ModuleType:
    """The model file of `model_spec` (torch_models.softmax, .svm, .linear, .logistic, .mlp)."""
    return importlib.import_module(f"torch_models.{model_spec.name}")


def _check(model_spec: ModelSpec, X: np.ndarray, y: np.ndarray | None = None) -> None:
    check_inputs(model_spec, X, y, what="torch_models")


def _features(X: np.ndarray, dtype: str) -> torch.Tensor:
    # torch never casts silently: a float64 tensor into a float32 Linear raises, so cast here.
    return torch.from_numpy(np.ascontiguousarray(X, dtype=np.dtype(dtype)))


def _targets(model_spec: ModelSpec, y: np.ndarray, dtype: str) -> torch.Tensor:
    """Targets as the loss module wants them: int64 (N,) labels, or float (N, 1) values."""
    if model_spec.task == "classification":
        return torch.from_numpy(np.asarray(y).reshape(-1).astype(np.int64))
    return torch.from_numpy(np.asarray(y, dtype=np.dtype(dtype)).reshape(-1, 1).copy())


def _l2_penalty(model: nn.Module, l2: float) -> torch.Tensor | float:
    if not l2:
        return 0.0
    from torch_models.softmax import dense_layers

    # kernels only (biases are not penalised), as in every framework of the zoo
    return 0.5 * l2 * sum((lin.weight ** 2).sum() for lin in dense_layers(model).values())


def train(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
          init: dict[str, np.ndarray] | None = None, *, record_weights: bool | int = False,
          progress: Callable[[int, int, float], None] | None = None,
          checkpoint_dir: str | None = None, resume: bool = False,
          force: bool = False) -> History:
    """Train `model_spec` on (X, y) as `train_spec` says and return a `zoo.specs.History`.

    X (N, F) float; y int64 (N,) labels (classification, binary) or float (N, 1) values
    (regression). init: canonical initial weights (default: torch's own initialiser, see the
    model file). `History.losses[k]` is step k's mini-batch loss before its update, l2 term
    included; training stops at the first non-finite loss (`History.stopped_at`).

    checkpoint_dir: save weights, optimizer state, torch's RNG state and the History so far
    there after every epoch (`zoo.checkpoint`; an existing checkpoint is overwritten only with
    `force`); `resume` continues from it (the returned History covers the whole run;
    `record_weights` then records the resumed steps only).
    """
    _check(model_spec, X, y)
    from torch_models import checkpoint

    ckpt, state, init = start(checkpoint_dir, FRAMEWORK, model_spec, train_spec, X, y, init,
                              resume=resume, force=force)
    save = functools.partial(checkpoint.save, ckpt) if ckpt is not None else None
    return run_loop(model_spec, train_spec, X, y, init, record_weights=record_weights,
                    progress=progress, state=state, save=save)


#: One step's forward pass and loss in a training loop:
#: (net, model, loss_fn, Xt, yt, idx, masks, l2, global_step) -> (loss value, backward).
#: `masks` are the step's shared dropout masks (numpy, whole batch) or None.
BatchLoss = Callable[..., tuple[float, Callable[[], None]]]


def _local_batch_loss(net, model, loss_fn, Xt, yt, idx, masks, l2, global_step):
    index = torch.from_numpy(idx)
    tmasks = [torch.from_numpy(m) for m in masks] if masks is not None else None
    loss = loss_fn(net(Xt[index], masks=tmasks), yt[index]) + _l2_penalty(model, l2)
    return float(loss.item()), loss.backward


def run_loop(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
             init: dict[str, np.ndarray] | None, *, record_weights: bool | int = False,
             progress: Callable[[int, int, float], None] | None = None,
             wrap: Callable[[nn.Module], nn.Module] | None = None,
             batch_loss: BatchLoss = _local_batch_loss, state=None,
             save: Callable | None = None, extra: dict | None = None) -> History:
    """The loop every torch training path runs: one process (`train`), and each rank of a
    data-parallel run (`torch_models.distributed`, which wraps the model in
    DistributedDataParallel with `wrap` and shards each batch in its `batch_loss`).

    Builds the model and optimizer (restoring a checkpoint's `state`), walks the shared batch
    order with the shared dropout masks, stops at the first non-finite loss, and calls
    `save(epochs_done, model, optimizer, get_weights, losses, epoch_seconds)` after every epoch.
    """
    from torch_models.optimizers import make_optimizer

    every = record_every(record_weights)
    dtype = train_spec.dtype
    mod = model_module(model_spec)
    built_spec = model_spec
    if train_spec.dropout_mode == "off" and model_spec.dropout:
        built_spec = dataclasses.replace(model_spec, dropout=0.0)
    model = mod.build(built_spec, init, dtype)
    net = wrap(model) if wrap is not None else model
    loss_fn = mod.make_loss()
    optimizer = make_optimizer(train_spec.optimizer, net.parameters())
    if state is not None:
        from torch_models import checkpoint

        checkpoint.restore(state, optimizer)
    use_masks = train_spec.dropout_mode == "shared" and bool(model_spec.hidden) \
        and model_spec.dropout > 0
    Xt, yt = _features(X, dtype), _targets(model_spec, y, dtype)

    losses: list[float] = []
    snapshots: list[dict[str, np.ndarray]] = []
    epoch_seconds: list[float] = []
    stopped_at: int | None = None
    if state is not None:
        losses, epoch_seconds = list(state.losses), list(state.epoch_seconds)
    net.train()  # dropout on (native mode); the shared masks ignore the mode
    for epoch in range(state.epoch if state is not None else 0, train_spec.epochs):
        start = time.perf_counter()
        batches = batch_order(len(Xt), train_spec.batch_size, train_spec.seed, epoch,
                              shuffle=train_spec.shuffle)
        for step, idx in enumerate(batches):
            masks = dropout_masks(model_spec, len(idx), train_spec.seed, epoch, step,
                                  dtype) if use_masks else None
            optimizer.zero_grad()
            value, backward = batch_loss(net, model, loss_fn, Xt, yt, idx, masks,
                                         train_spec.l2, len(losses))
            losses.append(value)
            if not np.isfinite(value):
                stopped_at = len(losses) - 1
                break
            backward()
            optimizer.step()
            if records(every, len(losses) - 1):
                snapshots.append(mod.get_weights(model))
            if progress is not None:
                progress(epoch, step, value)
        epoch_seconds.append(time.perf_counter() - start)
        if stopped_at is not None:
            break
        if save is not None:
            save(epoch + 1, model, optimizer, mod.get_weights, losses, epoch_seconds)
    return History(framework=FRAMEWORK, losses=np.asarray(losses, dtype=np.float64),
                   weights=mod.get_weights(model), epoch_seconds=epoch_seconds,
                   step_weights=snapshots if every else None, stopped_at=stopped_at,
                   extra=extra if extra is not None else {}, weights_every=every or 1)


def _eval_model(model_spec: ModelSpec, weights: dict[str, np.ndarray]) -> tuple[nn.Module, str]:
    """The model loaded with `weights`, in eval mode (no dropout), in the weights' dtype."""
    kernel = np.asarray(weights.get("dense_0/kernel", np.zeros(0, np.float32)))
    dtype = "float64" if kernel.dtype == np.float64 else "float32"
    model = model_module(model_spec).build(model_spec, weights, dtype)
    model.eval()  # torch.no_grad() alone would leave nn.Dropout active
    return model, dtype


def predict(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Probabilities (N, C) for softmax / svm (softmax of scores) / mlp, P(y=1) (N, 1) for
    logistic, values (N, 1) for linear; never any dropout. Computed in the weights' dtype."""
    _check(model_spec, X)
    model, dtype = _eval_model(model_spec, weights)
    with torch.no_grad():
        out = model_module(model_spec).probabilities(model(_features(X, dtype)))
    return out.numpy()


def evaluate(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
             y: np.ndarray) -> dict[str, float]:
    """{"loss", "accuracy"} (classification, binary) or {"loss", "mse"} (regression).

    The loss is the model's data loss (mean over X, no L2 term), computed without dropout.
    """
    _check(model_spec, X, y)
    mod = model_module(model_spec)
    model, dtype = _eval_model(model_spec, weights)
    with torch.no_grad():
        out = model(_features(X, dtype))
        target = _targets(model_spec, y, dtype)
        loss = float(mod.make_loss()(out, target).item())
    if model_spec.task == "regression":
        return {"loss": loss, "mse": loss}
    if model_spec.task == "binary":
        pred = (out.reshape(-1) > 0).long()  # logit > 0 <=> sigmoid > 0.5
    else:
        pred = out.argmax(dim=1)
    return {"loss": loss, "accuracy": float((pred == target.reshape(-1).long()).double().mean())}


def step_details(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
                 y: np.ndarray, masks: list[np.ndarray] | None = None, l2: float = 0.0) -> dict:
    """One batch at `weights`, through this framework's own model, loss and autograd:
    {"logits": (N, C) or (N, 1), "loss": float (l2 term included), "grads": canonical dict}.

    What the first-divergence diagnosis (`zoo.diagnose`) compares between frameworks. Eval
    mode: no native dropout; shared `masks`, when given, are applied."""
    from torch_models.softmax import dense_layers

    _check(model_spec, X, y)
    model, dtype = _eval_model(model_spec, weights)
    tmasks = [torch.from_numpy(np.asarray(m, dtype=np.dtype(dtype))) for m in masks] if masks else None
    logits = model(_features(X, dtype), masks=tmasks)
    loss = model_module(model_spec).make_loss()(logits, _targets(model_spec, y, dtype))
    loss = loss + _l2_penalty(model, l2)
    loss.backward()
    grads = {}
    for name, lin in dense_layers(model).items():
        grads[f"{name}/kernel"] = lin.weight.grad.numpy().T.copy()  # torch (out, in) -> (in, out)
        grads[f"{name}/bias"] = lin.bias.grad.numpy().copy()
    return {"logits": logits.detach().numpy(), "loss": float(loss.item()), "grads": grads}
