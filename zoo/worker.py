"""One framework's training run, in a process of its own (`python -m zoo.worker JOB.json`).

The comparison harness (`zoo.compare`) writes the data (already in the model's input shape:
(N, *spec.input_shape), images NHWC), the initial weights and a job file; this worker imports
exactly one framework's code (`zoo.frameworks`), trains, evaluates on the test split and
writes its history as an .npz (no pickles) plus a small JSON of metrics. Progress goes to
stdout as one JSON object per line so that the parent can show it while it trains.

`keras-torch` is the Keras package on the torch backend: the parent (`zoo.processes.run_process`)
sets KERAS_BACKEND=torch, which must happen before keras is first imported, hence a process
per framework.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

_EMIT = threading.Lock()   # a shared process's frameworks may report from two threads


def _emit(obj: dict) -> None:
    line = json.dumps(obj) + "\n"
    with _EMIT:
        sys.stdout.write(line)
        sys.stdout.flush()


class Throttled:
    """The `progress(epoch, step, loss)` the worker gives `train`: one event line per
    `every` seconds at most, and one at each epoch's last step, {"event": "progress",
    "epoch", "step", "loss": the latest step's, "steps": how many steps it covers}.

    An event a step (250 an epoch of mnist at batch 32) woke the comparing process as often
    and cost the small models' epochs measurably; the progress bar advances by "steps"."""

    def __init__(self, steps_per_epoch: int, every: float = 0.1,
                 framework: str | None = None) -> None:
        self.steps_per_epoch, self.every, self.framework = steps_per_epoch, every, framework
        self.pending = 0
        self.last = time.perf_counter()
        self.latest: tuple[int, int, float] | None = None

    def __call__(self, epoch: int, step: int, loss: float) -> None:
        self.pending += 1
        self.latest = (epoch, step, loss)
        now = time.perf_counter()
        if step == self.steps_per_epoch - 1 or now - self.last >= self.every:
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.pending and self.latest is not None:
            epoch, step, loss = self.latest
            ev = {"event": "progress", "epoch": epoch, "step": step, "loss": float(loss),
                  "steps": self.pending}
            _emit({**ev, "framework": self.framework} if self.framework else ev)
            self.pending = 0


def train_module(framework: str):
    """The module with `train`, `evaluate`, `predict` and `step_details` for a framework
    (`<package>.train`, or `zoo.reference` for the numpy reference)."""
    from zoo.frameworks import get

    return get(framework).module("train")


def run_details(job: dict) -> int:
    """`step_details` of one batch (the diagnosis): inputs and outputs as .npz, no pickles."""
    from zoo.specs import ModelSpec

    mod = train_module(job["framework"])
    spec = ModelSpec.from_dict(job["model"])
    with np.load(job["input"], allow_pickle=False) as z:
        weights = {k[2:]: z[k] for k in z.files if k.startswith("w:")}
        masks = [z[f"m:{i}"] for i in range(sum(k.startswith("m:") for k in z.files))] or None
        X, y = z["X"], z["y"]
    out = mod.step_details(spec, weights, X, y, masks, float(job["l2"]))
    np.savez(job["out"], logits=out["logits"], loss=np.asarray(out["loss"]),
             **{f"g:{k}": v for k, v in out["grads"].items()},
             **{f"s:{k}": v for k, v in (out.get("state") or {}).items()})
    _emit({"event": "done"})
    return 0


@functools.cache
def _load_data(path: str) -> tuple[np.ndarray, ...]:
    """A job's (X_train, y_train, X_test, y_test), loaded once per process (the frameworks
    of a shared process train on the same file)."""
    with np.load(path, allow_pickle=False) as d:
        return tuple(d[k] for k in ("X_train", "y_train", "X_test", "y_test"))


def _prepare(job: dict) -> dict:
    """Import one job's framework and load its data: what it needs to train."""
    from zoo.frameworks import get
    from zoo.specs import ModelSpec, TrainSpec

    fw = job["framework"]
    framework = get(fw)
    t0 = time.perf_counter()
    mod = train_module(fw)
    if job.get("workers", 1) > 1 and framework.data_parallel:  # docs/distributed.md
        from zoo.distributed import data_parallel

        mod = data_parallel(mod, fw, job["workers"])
    if framework.runs_on_torch and job.get("threads"):
        # Workers run side by side, one per core: torch's default of one thread per core
        # then oversubscribes the machine (small models ran ~10x slower).
        import torch

        torch.set_num_threads(int(job["threads"]))
    import_seconds = time.perf_counter() - t0
    data = _load_data(job["data"])
    with np.load(job["init"], allow_pickle=False) as d:
        init = {k: d[k] for k in d.files}
    return {"mod": mod, "import_seconds": import_seconds, "data": data, "init": init,
            "model": ModelSpec.from_dict(job["model"]), "train": TrainSpec.from_dict(job["train"])}


def _train(job: dict, prep: dict):
    """Train one job: (its History, the training's seconds)."""
    fw, mod = job["framework"], prep["mod"]
    model_spec, train_spec = prep["model"], prep["train"]
    X_train, y_train = prep["data"][:2]
    steps_per_epoch = -(-len(X_train) // train_spec.batch_size)
    _emit({"event": "start", "framework": fw, "import_seconds": prep["import_seconds"],
           "total_steps": steps_per_epoch * train_spec.epochs})
    progress = Throttled(steps_per_epoch, framework=fw)
    t1 = time.perf_counter()
    hist = mod.train(model_spec, train_spec, X_train, y_train, prep["init"],
                     record_weights=job.get("record_weights", True), progress=progress)
    progress.flush()
    return hist, time.perf_counter() - t1


def _finish(job: dict, prep: dict, hist, train_seconds: float) -> None:
    """Evaluate one trained job and write its results (its history .npz and metrics JSON),
    then say "done"."""
    fw, mod = job["framework"], prep["mod"]
    metrics = mod.evaluate(prep["model"], hist.weights, *prep["data"][2:])
    np.savez(job["out"], **hist.to_npz_dict())
    info = {"framework": fw, "metrics": {k: float(v) for k, v in metrics.items()},
            "import_seconds": prep["import_seconds"], "train_seconds": train_seconds,
            "stopped_at": hist.stopped_at}
    Path(job["metrics"]).write_text(json.dumps(info))
    _emit({"event": "done", "framework": fw})


def run(job_path: str | os.PathLike) -> int:
    """Run a job file: one framework's training, or ({"jobs": [...]}) several frameworks'
    one after the other in this one process (`zoo.compare` groups the frameworks that can
    share a process, e.g. Keras and TF1 share one TensorFlow import). With "gate", every
    framework is imported and its data loaded first, then the process says "ready" and
    waits for "go" on stdin (its turn to train). A framework that fails is reported as an
    error event naming it, and the next one still runs."""
    from zoo.errors import ZooError

    job = json.loads(Path(job_path).read_text())
    if job.get("mode") == "details":
        return run_details(job)
    jobs = job["jobs"] if "jobs" in job else [job]
    prepared = [_prepare(j) for j in jobs]
    if job.get("gate"):
        # imported and loaded: wait for the comparing process's turn to train (one
        # training per core, `zoo.compare.run_workers`)
        _emit({"event": "ready"})
        if sys.stdin.readline().strip() != "go":
            raise ZooError("the comparing process ended before this framework's turn to train.")
    if len(jobs) == 1:
        _finish(jobs[0], prepared[0], *_train(jobs[0], prepared[0]))
        return 0
    failed: list[str] = []

    def guarded(j: dict, step, *args):
        try:
            return step(j, *args)
        except Exception as exc:  # this framework's failure; the next one still trains
            failed.append(j["framework"])
            _emit({"event": "error", "framework": j["framework"], "type": type(exc).__name__,
                   "message": str(exc),
                   "traceback": "" if isinstance(exc, ZooError) else traceback.format_exc()})
            return None

    finishing: list[threading.Thread] = []
    for j, prep in zip(jobs, prepared, strict=True):
        trained = guarded(j, _train, prep)
        if trained is not None:
            # evaluated and written in a thread while the next framework trains (a core is
            # free by then: at most one training per core)
            finishing.append(threading.Thread(target=guarded, args=(j, _finish, prep, *trained)))
            finishing[-1].start()
    for t in finishing:
        t.join()
    return 2 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m zoo.worker JOB.json\n")
        return 2
    try:
        return run(argv[0])
    except Exception as exc:  # reported to the parent as one line; the parent decides
        from zoo.errors import ZooError

        _emit({"event": "error", "type": type(exc).__name__, "message": str(exc),
               "traceback": "" if isinstance(exc, ZooError) else traceback.format_exc()})
        return 2


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written and closed by now; skip the interpreter's teardown, which took
    # TensorFlow's workers about 0.5 s (docs/benchmarks.md) after their results were in.
    os._exit(code)
