"""Framework-free parts of data-parallel training (`torch_models.distributed`,
`keras_models.distributed`): how a global batch is split into shards, how each shard's loss is
weighted so that averaged (or summed) gradients equal the single-process mean over the global
batch, free loopback ports, and running a framework's distributed job in a subprocess with a
deadline and a clear error when it dies (through `zoo.processes.run_process`, the one runner of
the zoo's framework processes). Which frameworks train data-parallel is the registry's
`Framework.data_parallel` (`zoo.frameworks`).

The one rule (docs/distributed.md): the global batch of step k is exactly the single-process
batch `zoo.data.batch_order(...)[k]`; rank r of W takes the contiguous rows
`shard_bounds(n, W)[r]` of it (and the same rows of the step's shared dropout masks). A partial
last batch gives shards of unequal sizes (or empty ones), so each rank's loss is its shard's
*sum* divided by the *global* batch size n: summed over ranks this is the global mean exactly.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from zoo.errors import ConfigError, ZooError
from zoo.frameworks import get, names, of_module

__all__ = ["LOOPBACK", "DistributedError", "check_workers", "data_parallel", "free_port",
           "inject_fault", "run_module", "shard", "shard_bounds", "torchrun_world", "write_error"]

#: Every listening socket of the tests and of `--workers N` on one machine is on this address.
LOOPBACK = "127.0.0.1"
#: Default deadline of a whole distributed run started by the zoo (seconds).
DEFAULT_TIMEOUT = 600.0


class DistributedError(ZooError):
    """A data-parallel run failed: a worker raised, died or did not finish in time."""


def check_workers(workers: int, batch_size: int | None = None) -> int:
    """`workers` as an int >= 1, with a clear error otherwise."""
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ConfigError(f"--workers must be an integer >= 1, got {workers!r}.")
    if batch_size is not None and workers > batch_size:
        raise ConfigError(f"--workers {workers} is larger than the batch size {batch_size}: "
                          "every worker needs at least one row of a full batch; use fewer "
                          "workers or a larger --batch-size.")
    return int(workers)


def shard_bounds(n: int, world: int) -> list[tuple[int, int]]:
    """[start, stop) of each rank's contiguous shard of a global batch of n rows: sizes differ
    by at most one, the first n % world ranks get the extra row (np.array_split's rule); ranks
    beyond n get empty shards."""
    base, extra = divmod(int(n), int(world))
    bounds, start = [], 0
    for r in range(world):
        stop = start + base + (1 if r < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def shard(idx: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, int, int]:
    """(rank's indices, start, stop) of the global batch `idx`."""
    start, stop = shard_bounds(len(idx), world)[rank]
    return idx[start:stop], start, stop


def inject_fault(fault: dict | None, step: int, rank: int | None = None) -> None:
    """Test hook of the data-parallel paths: fail at global step `fault["step"]` (on rank
    `fault["rank"]` when the caller names its rank): "raise" an exception, "exit" with
    os._exit(3), or "hang" for an hour."""
    if not fault or fault.get("step", 0) != step:
        return
    if rank is not None and fault.get("rank") != rank:
        return
    kind = fault.get("kind", "raise")
    if kind == "exit":
        os._exit(3)
    if kind == "hang":
        import time

        time.sleep(3600)
    where = "" if rank is None else f" on rank {rank}"
    raise RuntimeError(f"injected fault{where} at step {step}")


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def torchrun_world() -> tuple[int, int] | None:
    """(rank, world size) when this process was started by `torchrun` (its environment
    variables RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT are set), else None."""
    keys = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    if not all(k in os.environ for k in keys):
        return None
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def run_module(module: str, job: dict, job_path: Path, timeout: float = DEFAULT_TIMEOUT,
               on_event: Callable[[dict], None] | None = None) -> None:
    """Run `python -m module JOB.json` in the environment of the framework whose package
    holds `module` (`zoo.processes.run_process`) and wait at most `timeout` seconds; each JSON
    object the job prints on a line of stdout goes to `on_event` (from a reader thread).

    Raises DistributedError naming what happened (the job's own error line when it wrote one,
    the exit code or signal and the end of its stderr otherwise, or the timeout, after which
    the process is killed)."""
    from zoo.processes import run_process

    out = run_process(of_module(module), module, job, job_path, on_event, timeout)
    if out.returncode is None:
        raise DistributedError(f"{module}: the distributed run did not finish within "
                               f"{timeout:.0f} s and was stopped; raise the timeout or "
                               "check that every worker can reach the others.")
    if out.returncode != 0:
        if out.error:
            raise DistributedError(f"{module}: {out.error}")
        rc = out.returncode
        how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
        tail = " | ".join(ln.strip() for ln in out.stderr[-3:] if ln.strip()) or "no output"
        raise DistributedError(f"{module}: the distributed run died ({how}): {tail}")


def write_error(job_path: str | os.PathLike, exc: BaseException) -> None:
    """What a distributed job's subprocess writes before exiting non-zero (read by run_module)."""
    Path(job_path).with_suffix(".error").write_text(f"{type(exc).__name__}: {exc}")


def data_parallel(pkg, framework: str, workers: int | None, *, cli: bool = False):
    """The training module to use for `--workers N`: `pkg` itself (a framework's `train`
    module) for one worker, else an object with the same `train` (data-parallel, from
    `<package>.distributed`), `evaluate` and `predict`.

    torch under `torchrun` is always data-parallel (the world size comes from torchrun).
    With `cli`, ranks other than 0 of a torchrun job exit quietly after training, so that
    only rank 0 evaluates, prints and saves."""
    from types import SimpleNamespace

    workers = check_workers(1 if workers is None else workers)
    launched = torchrun_world() if framework == "torch" else None
    if workers == 1 and launched is None:
        return pkg
    if not get(framework).data_parallel:
        raise ConfigError(f"--workers {workers}: data-parallel training exists for "
                          f"{' and '.join(names(data_parallel=True))}, not {framework}; leave "
                          "--workers out for it.")
    dist_mod = get(framework).module("distributed")

    def train(model_spec, train_spec, X, y, init=None, **kwargs):
        extra = sorted(k for k in kwargs if k not in ("record_weights", "progress"))
        if extra:
            raise ConfigError(f"--workers does not combine with {', '.join(extra)} yet; "
                              "train in one process to use them.")
        hist = dist_mod.train(model_spec, train_spec, X, y, init,
                              workers=None if launched else workers, **kwargs)
        if cli and launched is not None and launched[0] != 0:
            sys.exit(0)
        return hist

    return SimpleNamespace(train=train, evaluate=pkg.evaluate, predict=pkg.predict,
                           FRAMEWORK=framework)
