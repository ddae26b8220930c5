"""Data-parallel training in PyTorch: `DistributedDataParallel` over the gloo backend on CPU,
equal to one process (`torch_models.train.train`) with the same global batch.

Two ways in:
- `train(..., workers=N)` in an ordinary process starts N ranks with
  `torch.multiprocessing` (spawn) that rendezvous on the loopback address 127.0.0.1 at a free
  port; rank 0's history comes back as an .npz (no pickles of results). A rank that raises,
  exits or is killed makes `train` raise `zoo.distributed.DistributedError` at once (the other
  ranks are terminated); a run that does not finish within `timeout` seconds is killed and
  raises too.
- under `torchrun` (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set), `train` runs this process
  as its rank, with the `env://` rendezvous (several machines: docs/distributed.md).

What keeps it equal to one process (docs/distributed.md, "How gradients are averaged"):
- every rank computes the same `zoo.data.batch_order`; the global batch of step k is the
  single-process batch k and rank r takes its rows `zoo.distributed.shard_bounds(n, W)[r]`,
  plus the same rows of the step's shared dropout masks (`zoo.specs.dropout_masks` drawn for
  the whole global batch);
- DDP *averages* gradients over the W ranks, so rank r's data loss is its shard's mean times
  n_r * W / n (n the global batch size, n_r its shard's): the average over ranks is then
  sum_i loss_i / n, the single-process mean, also for the partial last batch whose shards
  differ in size. An empty shard (a batch with fewer rows than ranks) contributes
  0 * sum(outputs), which still gives every parameter a (zero) gradient, as DDP requires;
- the L2 penalty is added on every rank in full (its average over ranks is itself);
- the recorded loss of a step is the all-reduced sum of the shards' sum/n plus the penalty:
  the single-process batch loss, identical on every rank (so a non-finite loss stops all ranks
  at the same step);
- DDP broadcasts rank 0's initial weights; every rank applies the same averaged gradients
  with its own optimizer, so the ranks' weights stay bitwise equal (checked at the end);
- BatchNorm: each shard's own batch statistics would normalise differently from the global
  batch's (and give different moving statistics), so on this path every BatchNorm module is
  replaced by a `SyncBatchNorm` (below) that normalises every shard with the GLOBAL batch's
  mean and biased variance, through all-reduces that autograd differentiates. torch's own
  `nn.SyncBatchNorm` refuses CPU tensors. DDP then broadcasting rank 0's buffers before
  each forward changes nothing: the ranks' moving statistics are already equal.
"""

from __future__ import annotations

import datetime
import gc
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from zoo.distributed import (
    DEFAULT_TIMEOUT,
    LOOPBACK,
    DistributedError,
    check_workers,
    inject_fault,
    shard,
    torchrun_world,
)
from zoo.specs import History, ModelSpec, TrainSpec

__all__ = ["SyncBatchNorm", "synchronise_batch_norm", "train", "train_rank"]

FRAMEWORK = "torch"


class _AllReduceSum(torch.autograd.Function):
    """The sum over the ranks, differentiable: each rank's input reaches every rank's output,
    so the gradient of an input is the sum over the ranks of the output's gradients (an
    all-reduce again). (`torch.distributed.nn.functional.all_reduce` is the same, deprecated
    in recent torch; this one works on every torch the zoo supports.)"""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm (over axis 1 of (N, C) or (N, C, H, W) input) that, in training mode,
    normalises every rank's shard with the statistics of the GLOBAL batch, as one process
    would normalise the whole batch; for CPU tensors under gloo, which `nn.SyncBatchNorm`
    refuses ("expected input tensor to be on GPU").

    Training pass, per channel: one all-reduce of the shard's sums and value count gives the
    global count m and mean; a second one of the shard's sums of squared deviations from that
    mean gives the biased variance (two passes, as the single-process kernel: no
    E[x^2] - E[x]^2 cancellation). Both all-reduces are differentiable, so each rank's
    gradients include its share of the statistics' gradients; DDP then averages the
    parameters' gradients as usual. Shards may differ in size (the partial last batch) or be
    empty: m counts the values that exist. The moving statistics follow the canonical rule
    (`zoo.layers.BatchNorm`): moving = momentum * moving + (1 - momentum) * batch value, with
    the biased variance or, for `moving_variance="unbiased"`, the variance * m / (m - 1) of
    the global m: every rank computes the same values, no correction hooks needed. Eval mode
    is the plain BatchNorm with the moving statistics."""

    def __init__(self, num_features: int, eps: float, momentum: float, moving_variance: str
                 ) -> None:
        super().__init__(num_features, eps=eps, momentum=1.0 - momentum)
        self.canonical_momentum, self.moving_variance = float(momentum), moving_variance

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"expected (N, C) or (N, C, H, W) input, got {x.dim()}D")

    @classmethod
    def replacing(cls, module: nn.modules.batchnorm._BatchNorm, layer) -> SyncBatchNorm:
        """A SyncBatchNorm holding `module`'s own parameters and buffers (the same tensors:
        optimizers, the state_dict and DDP see no difference), for the canonical `layer`."""
        sync = cls(module.num_features, module.eps, layer.momentum, layer.moving_variance)
        sync.weight, sync.bias = module.weight, module.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(sync, name, getattr(module, name))
        return sync.train(module.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        c = x.shape[1]
        axes = [0, *range(2, x.dim())]
        shape = (1, c) + (1,) * (x.dim() - 2)
        summed = _AllReduceSum.apply(torch.cat([x.sum(axes), x.new_full((1,), x.numel() // c)]))
        count = int(summed[c].item())  # global values per channel
        mean = summed[:c] / count
        dev = x - mean.view(shape)
        squares = _AllReduceSum.apply((dev * dev).sum(axes))
        var = squares / count  # biased: what normalises, in every framework
        out = dev * torch.rsqrt(var + self.eps).view(shape) * self.weight.view(shape) \
            + self.bias.view(shape)
        with torch.no_grad():
            m = self.canonical_momentum
            feed = var if self.moving_variance == "biased" else squares / (count - 1)
            self.running_mean.mul_(m).add_(mean, alpha=1.0 - m)
            self.running_var.mul_(m).add_(feed, alpha=1.0 - m)
            self.num_batches_tracked.add_(1)
        return out


def synchronise_batch_norm(model: nn.Module) -> nn.Module:
    """`model` (a `torch_models.model.Net`) with each BatchNorm child replaced, in place and
    under its canonical name, by a `SyncBatchNorm` of the same tensors; other models as they
    are."""
    layers = {r.name: r.layer for r in model.spec.resolved if r.kind == "batch_norm"}
    for name, layer in layers.items():
        setattr(model, name, SyncBatchNorm.replacing(getattr(model, name), layer))
    return model


def _data_parallel(model: nn.Module) -> nn.Module:
    """DDP on CPU (no device_ids; it broadcasts rank 0's weights) around the model with
    synchronised BatchNorms."""
    return DistributedDataParallel(synchronise_batch_norm(model))


def train_rank(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
               init: dict[str, np.ndarray] | None, *, record_weights: bool | int = False,
               progress: Callable[[int, int, float], None] | None = None,
               fault: dict | None = None) -> History:
    """This rank's part of a data-parallel run, in an initialised gloo process group.

    Returns the History of the whole run (global-batch losses, identical on every rank)."""
    from torch_models.model import penalty
    from torch_models.train import _masks, run_loop

    rank, world = dist.get_rank(), dist.get_world_size()

    def shard_loss(net, model, loss_fn, Xt, yt, idx, masks, l2, global_step):
        inject_fault(fault, global_step, rank)
        n = len(idx)
        mine, lo, hi = shard(idx, rank, world)
        index = torch.from_numpy(mine)
        # the global batch's masks, this rank's rows
        out = net(Xt[index], masks=_masks(None if masks is None else [m[lo:hi] for m in masks]))
        if len(mine):
            part = loss_fn(out, yt[index]) * (len(mine) / n)  # this shard's sum / n
        else:
            part = out.sum() * 0.0  # zero gradients for every parameter
        l2_term = penalty(model, l2)  # Dense and Conv2D kernels, on every rank in full
        (part * world + l2_term).backward()  # DDP averages over the ranks
        total = part.detach().clone()
        dist.all_reduce(total)  # sum over ranks: the global batch's mean data loss
        return float(total.item()) + float(torch.as_tensor(l2_term).detach()), _done

    return run_loop(model_spec, train_spec, X, y, init, record_weights=record_weights,
                    progress=progress, wrap=_data_parallel, batch_loss=shard_loss,
                    extra={"workers": world})


def _done() -> None:
    """The backward pass of a shard's loss, already run (DDP's gradient all-reduce must run on
    every rank, before the step's loss is known to be finite)."""


def _init_group(rank: int, world: int, timeout: float, port: int | None = None) -> None:
    """Join the gloo group: at the parent's store on 127.0.0.1:`port`, or (port None) by the
    `env://` rendezvous of torchrun."""
    wait = datetime.timedelta(seconds=timeout)
    if port is None:
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world,
                                timeout=wait)
        return
    store = dist.TCPStore(LOOPBACK, port, is_master=False, timeout=wait)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=wait)


def _loopback_store(timeout: float):
    """The rendezvous store of a spawned run, served by the parent process on a socket bound
    to 127.0.0.1 (TCPStore binds its own socket to every interface; one bound here and passed
    as `master_listen_fd` keeps it on loopback), at a port the OS picks. Returns (store,
    port); keep the store alive for the run (it owns the socket from then on)."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(64)
    port = int(sock.getsockname()[1])
    store = dist.TCPStore(LOOPBACK, port, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=timeout),
                          master_listen_fd=sock.fileno(), use_libuv=False)
    sock.detach()  # the store's server closes the descriptor
    return store, port


def _spawned_rank(rank: int, world: int, port: int, payload: dict, out_dir: str,
                  timeout: float) -> None:
    """Entry point of a rank started by `train` (torch.multiprocessing, spawn)."""
    # gloo's own sockets on the loopback interface only (the store is at 127.0.0.1 too).
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)  # tiny matmuls; the ranks share the cores
    _init_group(rank, world, timeout, port)
    queue = payload["progress"] if rank == 0 else None
    hist = train_rank(payload["model_spec"], payload["train_spec"], payload["X"], payload["y"],
                      payload["init"], record_weights=payload["record_weights"] if rank == 0 else False,
                      progress=None if queue is None else lambda *event: queue.put(event),
                      fault=payload["fault"])
    np.savez(Path(out_dir) / f"rank{rank}.npz", **hist.to_npz_dict())
    dist.barrier()  # every rank has written its result
    # Leave without the process group's and the interpreter's teardown: a rank once aborted
    # there ("terminate called without an active exception", SIGABRT) after a finished run.
    # An exception above is reported by torch.multiprocessing as usual.
    os._exit(0)


def train(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
          init: dict[str, np.ndarray] | None = None, *, workers: int | None = 2,
          record_weights: bool | int = False,
          progress: Callable[[int, int, float], None] | None = None,
          timeout: float = DEFAULT_TIMEOUT, fault: dict | None = None) -> History:
    """Train like `torch_models.train.train` with `workers` data-parallel ranks.

    Under `torchrun` this process is one rank (workers must be None or the world size) and
    `progress` is called on every rank. Otherwise `workers` ranks are spawned on 127.0.0.1
    and `progress` gets rank 0's steps through a queue, in this process. `fault` is a test
    hook (see
    `zoo.distributed.inject_fault`). Returns rank 0's History; `History.extra["workers"]` is the world size."""
    from torch_models.train import _check

    _check(model_spec, X, y)
    launched = torchrun_world()
    if launched is not None:
        rank, world = launched
        if workers not in (None, world):
            raise DistributedError(f"torchrun started {world} processes but --workers is "
                                   f"{workers}; leave --workers out under torchrun.")
        check_workers(world, train_spec.batch_size)
        _init_group(rank, world, timeout)
        try:
            hist = train_rank(model_spec, train_spec, X, y, init,
                              record_weights=record_weights, progress=progress, fault=fault)
            dist.barrier()
        finally:
            gc.collect()  # DDP's reducer holds the group: free it before the group goes
            dist.destroy_process_group()
        return hist

    world = check_workers(2 if workers is None else workers, train_spec.batch_size)
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue() if progress is not None else None
    payload = {"model_spec": model_spec, "train_spec": train_spec, "X": np.asarray(X),
               "y": np.asarray(y), "init": init, "record_weights": record_weights,
               "fault": fault, "progress": queue}

    def report() -> None:  # rank 0's (epoch, step, loss) events so far
        while queue is not None and not queue.empty():
            progress(*queue.get())

    with tempfile.TemporaryDirectory(prefix="zoo-ddp-") as tmp:
        store, port = _loopback_store(timeout)
        ctx = mp.start_processes(_spawned_rank, args=(world, port, payload, tmp, timeout),
                                 nprocs=world, join=False, start_method="spawn")
        end = time.monotonic() + timeout
        try:
            slice_ = 1.0 if queue is None else 0.2
            while not ctx.join(timeout=max(0.0, min(slice_, end - time.monotonic())),
                               grace_period=2.0):
                report()
                if time.monotonic() >= end:
                    raise DistributedError(
                        f"torch DDP: the {world} ranks did not finish within {timeout:.0f} s "
                        "and were stopped; raise the timeout or check that every rank can "
                        "reach the others.")
        except mp.ProcessRaisedException as exc:
            first = str(exc).strip().splitlines()[-1]
            raise DistributedError(f"torch DDP: rank {exc.error_index} failed ({first}); the "
                                   "other ranks were stopped.") from None
        except mp.ProcessExitedException as exc:
            raise DistributedError(f"torch DDP: rank {exc.error_index} died ({exc}); the "
                                   "other ranks were stopped.") from None
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
                    p.join()
            del store
        report()
        hists = []
        for r in range(world):
            with np.load(Path(tmp) / f"rank{r}.npz", allow_pickle=False) as d:
                hists.append(History.from_npz_dict(FRAMEWORK, {k: d[k] for k in d.files}))
    for r, h in enumerate(hists[1:], start=1):
        for k, v in hists[0].weights.items():
            if not np.array_equal(v, h.weights[k]):
                raise DistributedError(f"torch DDP: rank {r}'s {k} differs from rank 0's after "
                                       "training; the ranks did not apply the same updates.")
    hist = hists[0]
    hist.extra["workers"] = world
    return hist
