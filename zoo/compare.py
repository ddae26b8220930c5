"""Migration comparisons: train one model in several frameworks from the same data, initial
weights, batch order and optimizer, then align the per-step histories against a reference.

The frameworks (`zoo.frameworks`) run in worker processes (`zoo.worker`), so Keras can run on
the torch backend (`keras-torch`) beside Keras on TensorFlow, and Keras 2 beside Keras 3. Each
has a process of its own, except frameworks that declare they can share one
(`Framework.shares_process`: Keras 3 and TF1, one TensorFlow import), which train in it one
after the other, with results identical to separate processes. All workers start at once and
import side by side; at most one per core trains at a time (`run_workers`). `run_process` is
the one way the zoo starts a framework's process (the workers here, the data-parallel jobs of
`zoo.distributed`). The result is a `Comparison`:
per framework the final loss, the test metric, seconds per epoch, the largest per-step loss and
final weight differences against the reference, and the first step at which they exceed the
tolerance (`zoo.agreement`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo import frameworks as registry
from zoo.agreement import (  # noqa: F401  (TOLERANCES, first_divergence: importable here too)
    TOLERANCES,
    differences,
    first_divergence,
)
from zoo.errors import ConfigError, ZooError
from zoo.frameworks import DEFAULT_COMPARE
from zoo.processes import ProcessOutcome, run_process  # noqa: F401  (importable here too)
from zoo.specs import History, ModelSpec, TrainSpec, init_weights


class WorkerError(ZooError):
    """A framework's worker process failed: args (message, {framework: error})."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class FrameworkResult:
    name: str
    history: History
    metrics: dict[str, float]
    import_seconds: float
    train_seconds: float
    # filled in by `align`
    loss_diff: np.ndarray | None = None
    weight_diff: np.ndarray | None = None
    weight_steps: np.ndarray | None = None  # the global step of each weight_diff entry
    max_loss_diff: float = 0.0
    max_weight_diff: float = 0.0
    first_divergent_step: int | None = None

    @property
    def seconds_per_epoch(self) -> float:
        """The median epoch after the first (the first also traces or compiles: see
        `first_epoch_seconds`); the one epoch of a one-epoch run."""
        s = self.history.epoch_seconds
        if not len(s):
            return float("nan")
        return float(np.median(s[1:] if len(s) > 1 else s))

    @property
    def first_epoch_seconds(self) -> float:
        s = self.history.epoch_seconds
        return float(s[0]) if len(s) else float("nan")

    @property
    def test_metric_name(self) -> str:
        return "mse" if "mse" in self.metrics else "accuracy"


@dataclass
class Comparison:
    model: ModelSpec
    train: TrainSpec
    dataset: str
    reference: str
    tolerance: tuple[float, float]
    results: dict[str, FrameworkResult]
    notes: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    init: dict[str, np.ndarray] | None = None
    diagnoses: dict[str, Any] = field(default_factory=dict)
    #: how the dataset was split into train and test (`zoo.data.Dataset.split`)
    split: str = ""

    def to_json(self, curves: bool = True) -> dict[str, Any]:
        atol, rtol = self.tolerance
        out: dict[str, Any] = {
            "model": self.model.to_dict(), "train": self.train.to_dict(), "dataset": self.dataset,
            "split": self.split, "reference": self.reference, "tolerance": atol, "rtol": rtol,
            "notes": self.notes, "wall_seconds": self.wall_seconds, "frameworks": {},
        }
        if self.diagnoses:
            out["diagnoses"] = {fw: d.to_json() for fw, d in self.diagnoses.items()}
        for name, r in self.results.items():
            d: dict[str, Any] = {
                "final_loss": float(r.history.losses[-1]) if len(r.history.losses) else None,
                "test_metric": r.metrics.get(r.test_metric_name),
                "test_metric_name": r.test_metric_name,
                "seconds_per_epoch": r.seconds_per_epoch,
                "first_epoch_seconds": r.first_epoch_seconds,
                "import_seconds": r.import_seconds,
                "train_seconds": r.train_seconds,
                "max_loss_diff": r.max_loss_diff,
                "max_weight_diff": r.max_weight_diff,
                "first_divergent_step": r.first_divergent_step,
                "stopped_at": r.history.stopped_at,
            }
            if curves:
                d["losses"] = [float(x) for x in r.history.losses]
                if r.loss_diff is not None:
                    d["loss_diff"] = [float(x) for x in r.loss_diff]
                if r.weight_diff is not None:
                    d["weight_diff"] = [float(x) for x in r.weight_diff]
                    d["weights_every"] = int(r.history.weights_every)
            out["frameworks"][name] = d
        return out


def parse_frameworks(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """Framework names from `--frameworks` (comma-separated) or a list, each known to the
    registry (`zoo.frameworks`), none twice."""
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    if not names:
        raise ConfigError("name at least one framework, e.g. --frameworks "
                          f"{','.join(DEFAULT_COMPARE)}.")
    for n in names:
        registry.get(n)
    if len(set(names)) != len(names):
        raise ConfigError(f"a framework is named twice in {','.join(names)}.")
    return names


def align(results: dict[str, FrameworkResult], reference: str, tolerance: tuple[float, float]) -> None:
    """Fill in every result's differences against `reference`, step by step
    (`zoo.agreement.differences`)."""
    ref = results[reference].history
    for r in results.values():
        d = differences(r.history, ref, tolerance)
        r.loss_diff, r.max_loss_diff, r.max_weight_diff = d.loss_diff, d.max_loss_diff, \
            d.max_weight_diff
        r.weight_diff, r.weight_steps = d.weight_diff, d.weight_steps
        r.first_divergent_step = d.first_divergent_step


def concurrency() -> int:
    """How many framework workers train at once: one per core, at most two."""
    return max(1, min(2, os.cpu_count() or 1))


def timing_note(n_frameworks: int, epochs: int) -> str:
    """What the s/epoch column measures, for the report."""
    first = ("the median epoch after the first (the first, which also traces or compiles, "
             "is first_epoch_seconds in report.json)" if epochs > 1 else
             "the one epoch, tracing or compilation included")
    at_once = min(n_frameworks, concurrency())
    shared = (f"; up to {at_once} workers trained at once on {os.cpu_count() or 1} cores, "
              "one core each, while the others imported their frameworks, so it is wall "
              "time under that load") if n_frameworks > 1 else ""
    return f"s/epoch is {first}{shared}."


def run_worker(fw: str, job: dict, job_path: Path,
               on_event: Callable[[str, dict], str | None] | None = None,
               timeout: float = 3600.0) -> str | None:
    """Run one `zoo.worker` process on `job` (`run_process`), streaming its events to
    `on_event(fw, event)` (a string it returns goes to the worker's stdin). Returns None on
    success, else the error (the worker's own message when it sent one)."""
    forward = (lambda ev: on_event(fw, ev)) if on_event is not None else None
    out = run_process(fw, "zoo.worker", job, job_path, forward, timeout)
    if out.returncode is None:
        return f"timed out after {timeout:.0f} s"
    if out.returncode != 0 or out.error:
        tail = "".join(out.stderr[-5:]).strip()
        return out.error or f"exit code {out.returncode}: {tail or 'no output'}"
    return None


class _Turns:
    """One training per core: every worker process starts at once and imports its
    frameworks, then says "ready" and waits; a turn (`concurrency()` of them) lets it train,
    and comes back when its last framework is "done" (before the process has exited) or the
    process has ended anyhow."""

    def __init__(self, n: int) -> None:
        self.sem = threading.Semaphore(n)
        self.holding: set[str] = set()
        self.lock = threading.Lock()

    def take(self, key: str) -> str:
        self.sem.acquire()
        with self.lock:
            self.holding.add(key)
        return "go"

    def give_back(self, key: str) -> None:
        with self.lock:
            if key not in self.holding:
                return
            self.holding.discard(key)
        self.sem.release()


def process_groups(frameworks: list[str], share: bool = True) -> list[list[str]]:
    """The worker processes of a comparison: frameworks that may share one
    (`Framework.shares_process`, the same environment) train in it one after the other, in
    the order given; every other framework has a process of its own."""
    groups: dict[Any, list[str]] = {}
    for fw in frameworks:
        f = registry.get(fw)
        key = (f.shares_process, f.env) if share and f.shares_process else fw
        groups.setdefault(key, []).append(fw)
    return list(groups.values())


def run_workers(frameworks: list[str], job_dir: Path, jobs: dict[str, dict],
                on_event: Callable[[str, dict], None] | None = None, timeout: float = 3600.0,
                share: bool = True) -> dict[str, FrameworkResult]:
    """Start the worker processes (`process_groups`), all at once: they import their
    frameworks side by side, then train at most `concurrency()` processes at a time (one
    per core; `_Turns`). Stream their progress to `on_event(framework, event)` and collect
    the results."""
    results: dict[str, FrameworkResult] = {}
    errors: dict[str, str] = {}
    turns = _Turns(concurrency())

    def load(fw: str) -> FrameworkResult:
        info = json.loads(Path(jobs[fw]["metrics"]).read_text())
        with np.load(jobs[fw]["out"], allow_pickle=False) as d:
            hist = History.from_npz_dict(fw, {k: d[k] for k in d.files})
        return FrameworkResult(fw, hist, info["metrics"], info["import_seconds"],
                               info["train_seconds"])

    def one(group: list[str]) -> None:
        key = "+".join(group)
        own: dict[str, str] = {}     # a framework's own error event in a shared process
        # a framework's results are complete when it says "done": in a shared process they
        # are read then, while the next framework trains, not after the process ends
        early: dict[str, threading.Thread] = {}
        loaded: dict[str, FrameworkResult] = {}

        def load_early(fw: str) -> None:
            try:
                loaded[fw] = load(fw)
            except Exception:   # read again (and any error reported) once the process ends
                pass

        def events(_: str, ev: dict) -> str | None:
            kind, fw = ev.get("event"), ev.get("framework")
            answer = turns.take(key) if kind == "ready" else None
            if kind == "error" and fw in group:
                own[fw] = f"{ev.get('type', 'Error')}: {ev.get('message', '')}"
            if kind in ("done", "error") and fw in (group[-1], None):
                turns.give_back(key)
            if kind == "done" and len(group) > 1 and fw in group[:-1]:
                early[fw] = threading.Thread(target=load_early, args=(fw,), daemon=True)
                early[fw].start()
            if on_event is not None and kind != "ready":
                on_event(fw if fw in group else group[0], ev)
            return answer

        job = ({**jobs[group[0]], "gate": True} if len(group) == 1 else
               {"jobs": [jobs[fw] for fw in group], "gate": True})
        try:
            # the group's frameworks share one environment (`process_groups`)
            err = run_worker(group[0], job, job_dir / f"job_{key}.json", events, timeout)
        finally:
            turns.give_back(key)
        for t in early.values():
            t.join()
        for fw in group:
            if fw in own or (err and not Path(jobs[fw]["metrics"]).is_file()):
                errors[fw] = own.get(fw) or err
                continue
            results[fw] = loaded[fw] if fw in loaded else load(fw)

    threads = [threading.Thread(target=one, args=(g,))
               for g in process_groups(frameworks, share)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        msg = "; ".join(f"{fw}: {e.splitlines()[0]}" for fw, e in errors.items())
        raise WorkerError(f"framework run failed ({msg}).", errors)
    return {fw: results[fw] for fw in frameworks}


def worker_details(fw: str, model_spec: ModelSpec, dtype: str | None = None):
    """A `zoo.diagnose` details callable that runs `step_details` in `fw`'s own process, in
    `dtype` when given (weights, inputs and masks cast to it: the framework's own precision,
    whatever precision the weights come in), else in the weights' dtype."""

    def details(weights, X, y, masks, l2) -> dict:
        if dtype is not None:
            weights = {k: np.asarray(v, dtype) for k, v in weights.items()}
            X = np.asarray(X, dtype)
            masks = [np.asarray(m, dtype) for m in masks] if masks else masks
        with tempfile.TemporaryDirectory(prefix="zoo-details-") as tmp:
            d = Path(tmp)
            arrays = {"X": X, "y": y, **{f"w:{k}": v for k, v in weights.items()}}
            arrays.update({f"m:{i}": m for i, m in enumerate(masks or [])})
            np.savez(d / "in.npz", **arrays)
            job = {"mode": "details", "framework": fw, "model": model_spec.to_dict(),
                   "l2": l2, "input": str(d / "in.npz"), "out": str(d / "out.npz")}
            err = run_worker(fw, job, d / "job.json", timeout=600.0)
            if err:
                raise WorkerError(f"{fw}: step details failed ({err.splitlines()[0]}).")
            with np.load(d / "out.npz", allow_pickle=False) as z:
                return {"logits": z["logits"], "loss": float(z["loss"]),
                        "grads": {k[2:]: z[k] for k in z.files if k.startswith("g:")},
                        "state": {k[2:]: z[k] for k in z.files if k.startswith("s:")}}

    return details


#: Memory for the per-step weights of one comparison, all frameworks together (MB): the
#: parent process holds them all while it aligns the histories.
RECORD_BUDGET_MB = 2048.0


@dataclass(frozen=True)
class RecordPlan:
    """Which weights a comparison records: after every `every`-th step (0: none)."""

    every: int
    steps: int
    #: MB that recording after every step would take, all frameworks together
    full_mb: float
    budget_mb: float

    def note(self) -> str | None:
        if self.every <= 1:
            return None
        return (f"weights recorded every {self.every} steps, not after each step: all "
                f"{self.steps:,} steps would take {self.full_mb:,.0f} MB (budget "
                f"{self.budget_mb:,.0f} MB). Losses are compared at every step; a divergence "
                f"seen only in the weights is located to within {self.every} steps. "
                "--record-every 1 records every step.")


def record_plan(model_spec: ModelSpec, train_spec: TrainSpec, n_train: int,
                frameworks: list[str] | tuple[str, ...], record_weights: bool | int = True,
                budget_mb: float = RECORD_BUDGET_MB) -> RecordPlan:
    """The snapshot stride of a comparison: `record_weights` True picks 1 when every step's
    weights fit in `budget_mb` (all frameworks together; the numpy reference and float64
    runs count 8 bytes a number), else the smallest stride that fits; an int is taken as
    it is; False records none."""
    from zoo.specs import record_every

    n_params = model_spec.n_params
    steps = -(-n_train // train_spec.batch_size) * train_spec.epochs
    itemsizes = sum(np.dtype(registry.get(fw).fixed_dtype or train_spec.dtype).itemsize
                    for fw in frameworks)
    full_mb = steps * n_params * itemsizes / 2**20
    if isinstance(record_weights, (bool, np.bool_)) and record_weights:
        every = max(1, math.ceil(full_mb / budget_mb))
    else:
        every = record_every(record_weights)
    return RecordPlan(every, steps, full_mb, budget_mb)


def compare(model_spec: ModelSpec, train_spec: TrainSpec, dataset, *,
            frameworks: list[str] | tuple[str, ...] = DEFAULT_COMPARE,
            reference: str | None = None, init: dict[str, np.ndarray] | None = None,
            record_weights: bool | int = True,
            on_event: Callable[[str, dict], None] | None = None,
            workers: int = 1, record_budget_mb: float = RECORD_BUDGET_MB,
            share_processes: bool = True) -> Comparison:
    """Train `model_spec` in every framework on `dataset` (a `zoo.data.Dataset`) and align
    the histories against `reference` (default: the first framework). Every framework gets
    the data in the model's input shape (`Dataset.inputs`: images NHWC). workers > 1 trains
    the frameworks that can data-parallel on that many workers (`zoo.distributed`); the
    others train in one process as always.

    record_weights: True records the weights after every step when they fit in
    `record_budget_mb` (all frameworks together), else after every k-th step for the
    smallest k that fits (`record_plan`; the report notes it); an int k records after
    every k-th step; False records only the final weights.

    share_processes: frameworks that can share a worker process (Keras 3 and TF1: one
    TensorFlow import) train in one, one after the other (`process_groups`); False gives
    each its own. The results are the same either way (tests/test_compare.py)."""
    import time

    from zoo.distributed import check_workers

    frameworks = parse_frameworks(frameworks)
    workers = check_workers(workers, train_spec.batch_size)
    reference = reference or frameworks[0]
    if reference not in frameworks:
        raise ConfigError(f"the reference framework {reference!r} is not among the compared "
                          f"frameworks ({', '.join(frameworks)}); add it to --frameworks.")
    X_train, X_test = dataset.inputs(model_spec, "train"), dataset.inputs(model_spec, "test")
    init = init if init is not None else init_weights(model_spec, train_spec.seed, train_spec.dtype)
    plan = record_plan(model_spec, train_spec, len(dataset.X_train), frameworks, record_weights,
                       record_budget_mb)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-compare-") as tmp:
        job_dir = Path(tmp)
        np.savez(job_dir / "data.npz", X_train=X_train, y_train=dataset.y_train,
                 X_test=X_test, y_test=dataset.y_test)
        np.savez(job_dir / "init.npz", **init)
        jobs = {fw: {"framework": fw, "model": model_spec.to_dict(), "train": train_spec.to_dict(),
                     "data": str(job_dir / "data.npz"), "init": str(job_dir / "init.npz"),
                     "out": str(job_dir / f"result_{fw}.npz"),
                     "metrics": str(job_dir / f"result_{fw}.json"),
                     "record_weights": plan.every, "workers": workers,
                     "threads": 1 if len(frameworks) > 1 else None}
                for fw in frameworks}
        results = run_workers(frameworks, job_dir, jobs, on_event, share=share_processes)
    tol = TOLERANCES[train_spec.dtype]
    align(results, reference, tol)
    comp = Comparison(model_spec, train_spec, dataset.name, reference, tol, results,
                      wall_seconds=time.perf_counter() - t0, init=init,
                      split=getattr(dataset, "split", ""))
    comp.notes.append(timing_note(len(frameworks), train_spec.epochs))
    for group in process_groups(frameworks, share_processes):
        if len(group) > 1:
            comp.notes.append(f"{' and '.join(group)} trained in one process, one after the "
                              "other (one import of the framework they share).")
    if plan.note():
        comp.notes.append(plan.note())
    if workers > 1:
        parallel = [fw for fw in frameworks if registry.get(fw).data_parallel]
        comp.notes.append(f"data-parallel on {workers} workers: {', '.join(parallel) or 'none'}"
                          "; the other frameworks trained in one process.")
    if model_spec.dropout > 0 and train_spec.dropout_mode == "native":
        comp.notes.append("native dropout: every framework draws its own masks, so weight and "
                          "loss differences are expected; compare the test metric instead.")
    elif model_spec.dropout > 0 and train_spec.dropout_mode == "shared":
        comp.notes.append("dropout uses the same precomputed masks in every framework.")
    for fw, r in results.items():
        if r.history.stopped_at is not None:
            lr = train_spec.optimizer.lr
            comp.notes.append(f"{fw}: the loss became non-finite at step {r.history.stopped_at}; "
                              "training stopped there and kept the last finite weights (the "
                              f"learning rate {lr:g} is too large: try a smaller one, e.g. "
                              f"--lr {lr / 10:g}).")
    return comp


def diagnose_comparison(comp: Comparison, dataset) -> dict[str, Any]:
    """`zoo.diagnose.diagnose` every framework that left the reference, each side's step
    details computed in its own worker process. Stored on `comp.diagnoses` and returned."""
    from zoo.diagnose import diagnose

    ref = comp.results[comp.reference]
    # every side computes in the precision it trained in (the numpy reference: float64)
    dtype_of = {fw: None if registry.get(fw).fixed_dtype else comp.train.dtype
                for fw in comp.results}
    details_ref = worker_details(comp.reference, comp.model, dtype_of[comp.reference])
    X = dataset.inputs(comp.model, "train")
    for fw, r in comp.results.items():
        if fw == comp.reference:
            continue
        comp.diagnoses[fw] = diagnose(comp.model, comp.train, X, dataset.y_train,
                                      comp.init, ref.history, r.history, details_ref,
                                      worker_details(fw, comp.model, dtype_of[fw]),
                                      tolerance=comp.tolerance)
    return comp.diagnoses
