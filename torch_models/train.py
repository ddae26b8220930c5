"""The one PyTorch training loop of the zoo (every model), plus `predict` and `evaluate`.

Idiom: the `nn.Sequential` of `torch_models.model.build` (every model, from its canonical
layer list), its loss module (`model.make_loss`), a `torch.optim` optimizer from
`torch_models.optimizers.make_optimizer`, `model.train()` for training and `model.eval()` +
`torch.no_grad()` for prediction, and the classic `zero_grad / forward / loss / backward / step`.

What makes it agree with Keras, TF1 and the float64 reference step by step:
- batches are the shared `zoo.data.batch_order(...)` index arrays, taken by direct indexing of
  one tensor. (A `DataLoader(batch_sampler=...)` would give the same batches, but each of its
  iterators draws from the global torch RNG, which shifts native dropout masks, and it gathers
  sample by sample; one gather per batch is simpler and faster.)
- inputs are (N, *spec.input_shape) as everywhere in the zoo (images NHWC; the model permutes
  them to NCHW at its edge); initial weights come in canonical layout and cross the model's
  edge through the weight tables (`torch_models.model.set_weights` / `get_weights`);
- targets get the shapes and dtypes the loss modules need: int64 (N,) for cross-entropy and
  hinge (int32 raises), float (N, 1) for BCE-with-logits and MSE ((N,) against (N, 1) would
  broadcast MSE to N x N);
- the L2 penalty 0.5 * l2 * sum(kernel**2) over Dense and Conv2D kernels is added to the loss
  (never torch's `weight_decay`, which differs from Keras's decoupled decay under momentum);
- dropout "shared" passes `zoo.specs.dropout_masks` to the model's forward, "native" uses
  `nn.Dropout`, "off" sets every `nn.Dropout`'s p to 0;
- BatchNorm: `net.train()` for the whole loop (batch statistics, moving statistics updated
  every step, `torch_models.layers`), `model.eval()` for `predict` and `evaluate` (moving
  statistics): forgetting either changes every prediction of a BatchNorm model. The weight
  table carries the moving statistics, the optimizer only the parameters that require
  gradients (not an LSTM's frozen `bias_hh_l0`, `torch_models.layers.LSTM`);
- sequences (N, T, F) and token ids (N, T) go in as they are: the recurrent layers are
  `batch_first=True`, the Embedding casts the float ids to int64, and only (H, W, C) images
  are permuted;
- float64: the model is `.double()` and every tensor float64; torch keeps the learning rate as a
  Python float, so no float32 lr creeps in (unlike Keras and TF1, docs/porting.md).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from torch_models import model as M
from zoo.checkpoint import start
from zoo.data import batch_order
from zoo.specs import (
    History,
    ModelSpec,
    RowRecorder,
    TrainSpec,
    check_inputs,
    dropout_masks,
    record_every,
    records,
)

__all__ = ["evaluate", "predict", "run_loop", "step_details", "train"]

FRAMEWORK = "torch"


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


def _masks(masks: list[np.ndarray] | None, dtype: str | None = None) -> list[torch.Tensor] | None:
    """Shared dropout masks as tensors, still in the canonical layout (the model permutes image
    masks to NCHW, as it does the images); None or [] (no Dropout layer) -> None."""
    if not masks:
        return None
    return [torch.from_numpy(np.asarray(m, dtype=None if dtype is None else np.dtype(dtype)))
            for m in masks]


def train(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
          init: dict[str, np.ndarray] | None = None, *, record_weights: bool | int = False,
          progress: Callable[[int, int, float], None] | None = None,
          checkpoint_dir: str | None = None, resume: bool = False,
          force: bool = False) -> History:
    """Train `model_spec` on (X, y) as `train_spec` says and return a `zoo.specs.History`.

    X (N, *model_spec.input_shape) float (images NHWC); y int64 (N,) labels (classification,
    binary) or float (N, 1) values (regression). init: canonical initial weights (default:
    torch's own initialiser, see `torch_models.model.build`). `History.losses[k]` is step k's
    mini-batch loss before its update, l2 term included; training stops at the first
    non-finite loss (`History.stopped_at`).

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


class _Snapshots(RowRecorder):
    """The weights after recorded steps: each copies every tabled tensor (the live parameters
    and buffers) into a row of the `RowRecorder`'s scratch (`torch.cat` with `out=`, no
    numpy round trip)."""

    def __init__(self, model, steps_per_epoch: int, epochs: int, every: int) -> None:
        tensors = M.tabled(model.state_dict())   # live: the optimizer updates them in place
        self.tensors = [t.detach().reshape(-1) for t in tensors.values()]
        dtype = torch.empty(0, dtype=next(iter(tensors.values())).dtype).numpy().dtype
        super().__init__(model.spec.resolved, FRAMEWORK, list(tensors),
                         [tuple(t.shape) for t in tensors.values()], steps_per_epoch, epochs,
                         every, dtype)

    def add(self) -> None:
        torch.cat(self.tensors, out=torch.from_numpy(self.next_row()))


def _local_batch_loss(net, model, loss_fn, Xt, yt, idx, masks, l2, global_step):
    index = torch.from_numpy(idx)
    loss = loss_fn(net(Xt[index], masks=_masks(masks)), yt[index]) + M.penalty(model, l2)
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
    model = M.build(model_spec, init, dtype)
    if train_spec.dropout_mode == "off":
        for layer in model.modules():
            if isinstance(layer, nn.Dropout):
                layer.p = 0.0  # the identity, in train mode too
    net = wrap(model) if wrap is not None else model
    loss_fn = M.make_loss(model_spec)
    # only what is trained: an LSTM's frozen bias_hh_l0 (torch_models.layers.LSTM) stays out
    optimizer = make_optimizer(train_spec.optimizer,
                               [p for p in net.parameters() if p.requires_grad])
    if state is not None:
        from torch_models import checkpoint

        checkpoint.restore(state, optimizer)
    use_masks = train_spec.dropout_mode == "shared"
    Xt, yt = _features(X, dtype), _targets(model_spec, y, dtype)

    losses: list[float] = []
    steps_per_epoch = math.ceil(len(X) / train_spec.batch_size)
    recorder = _Snapshots(model, steps_per_epoch, train_spec.epochs, every) if every else None
    snapshots = recorder.store if every else None
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
            masks = None
            if use_masks:  # [] (no Dropout layer with a rate > 0) means no masks
                masks = dropout_masks(model_spec, len(idx), train_spec.seed, epoch, step,
                                      dtype) or None
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
                recorder.add()
            if progress is not None:
                progress(epoch, step, value)
        if recorder is not None:
            recorder.flush()
        epoch_seconds.append(time.perf_counter() - start)
        if stopped_at is not None:
            break
        if save is not None:
            save(epoch + 1, model, optimizer, M.get_weights, losses, epoch_seconds)
    return History(framework=FRAMEWORK, losses=np.asarray(losses, dtype=np.float64),
                   weights=M.get_weights(model), epoch_seconds=epoch_seconds,
                   step_weights=snapshots if every else None, stopped_at=stopped_at,
                   extra=extra if extra is not None else {}, weights_every=every or 1)


def _dtype_of(weights: dict[str, np.ndarray]) -> str:
    first = np.asarray(next(iter(weights.values()), np.zeros(0, np.float32)))
    return "float64" if first.dtype == np.float64 else "float32"


def _eval_model(model_spec: ModelSpec, weights: dict[str, np.ndarray]) -> tuple[nn.Module, str]:
    """The model loaded with `weights`, in eval mode (no dropout; BatchNorm with its moving
    statistics), in the weights' dtype."""
    dtype = _dtype_of(weights)
    model = M.build(model_spec, weights, dtype)
    model.eval()  # torch.no_grad() alone would leave nn.Dropout active
    return model, dtype


def predict(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """`model_spec.output` of the raw outputs: probabilities (N, C) (softmax; the SVM's softmax
    of scores), sigmoid activations (N, 1) for logistic and (N, C) for nielsen, values (N, 1)
    for linear; never any dropout. Computed in the weights' dtype."""
    _check(model_spec, X)
    model, dtype = _eval_model(model_spec, weights)
    with torch.no_grad():
        out = M.outputs(model_spec, model(_features(X, dtype)))
    return out.numpy()


def evaluate(model_spec: ModelSpec, weights: dict[str, np.ndarray], X: np.ndarray,
             y: np.ndarray) -> dict[str, float]:
    """{"loss", "accuracy"} (classification, binary) or {"loss", "mse"} (regression).

    The loss is the model's data loss (mean over X, no L2 term), computed without dropout.
    """
    _check(model_spec, X, y)
    model, dtype = _eval_model(model_spec, weights)
    with torch.no_grad():
        out = model(_features(X, dtype))
        target = _targets(model_spec, y, dtype)
        loss = float(M.make_loss(model_spec)(out, target).item())
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
    {"logits": (N, outputs), "loss": float (l2 term included), "grads": canonical dict of the
    trainable tensors, "state": canonical dict of the state tensors after this batch ({}
    without state)}.

    What the first-divergence diagnosis (`zoo.diagnose`) compares between frameworks: the
    pass a training step takes. So the model (built fresh from `weights`, no leftover state)
    is in train mode, where BatchNorm normalises with the batch's statistics and updates its
    moving ones ("state"), but every `nn.Dropout` is switched to eval mode: no native dropout;
    shared `masks` (canonical layout), when given, are applied. Gradients and state leave
    through the weight tables, like the weights."""
    _check(model_spec, X, y)
    dtype = _dtype_of(weights)
    model = M.build(model_spec, weights, dtype)
    model.train()  # batch statistics in BatchNorm ...
    for layer in model.modules():
        if isinstance(layer, nn.Dropout):
            layer.eval()  # ... and no native dropout (the shared masks ignore the mode)
    logits = model(_features(X, dtype), masks=_masks(masks, dtype))
    loss = M.make_loss(model_spec)(logits, _targets(model_spec, y, dtype))
    loss = loss + M.penalty(model, l2)
    loss.backward()
    return {"logits": logits.detach().numpy(), "loss": float(loss.item()),
            "grads": M.native_grads(model), "state": M.state_weights(model)}
