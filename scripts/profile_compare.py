#!/usr/bin/env python3
"""Where the time of `zoo compare softmax` goes, per framework, measured in one run.

    python scripts/profile_compare.py [--dataset mnist10k] [--frameworks keras,tf1,torch,numpy]
                                      [--epochs 4] [--repeats 2] [--json PATH]

For each framework F it measures

(a) the whole CLI run, `python -m zoo compare softmax --dataset D --frameworks F --optimizer sgd
    --lr 0.1 --batch-size 32 --epochs 4 --out TMP`, as a subprocess (wall time), and reads the
    worker's own import and train seconds from the report.json it wrote;
(b) the pieces, each in its own fresh process where that matters:
    - process start + imports: `python -c "import <pkg>.train"` (and a bare `python -c pass`,
      and the parent's `import zoo.cli, zoo.commands.compare, zoo.compare, zoo.report`);
    - the parent's data loading (`zoo.data.load`, no download) and the worker's (`np.load`);
    - `train` in a worker-like process (F's environment), called first as the worker calls it
      (record_weights=True, the worker's throttled progress callback), then
      with and without record_weights and a progress callback: build + setup (the call's
      wall time less the sum of `History.epoch_seconds`), the first epoch, the median later
      epoch; first - later is the first-epoch tracing/compilation (Keras tf.function; TF1's
      graph and Session are built before the first epoch, so they fall in build + setup);
    - `evaluate` on the test split, and `np.savez` of the History (the worker's output);
    - the parent after the worker: `zoo.compare.compare` in-process (its wall time less the
      worker's) and `zoo.report.write_all` (JSON, two PNG plots, Markdown);
and a hand-written float32 numpy softmax SGD epoch (batch 32, same data, same lr) in this
process, which every epoch time is divided by.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

MODEL, LR, BATCH = "softmax", 0.1, 32


def _median(xs):
    return float(statistics.median(xs)) if xs else float("nan")


# --------------------------------------------------------------------------- inner process
def inner(fw: str, data_path: str, out_path: str, epochs: int, repeats: int) -> None:
    """Runs in F's environment (its own process): imports, data, train variants, evaluate."""
    t0 = time.perf_counter()
    from zoo.frameworks import get
    from zoo.optimizers import OptimizerSpec
    from zoo.specs import ModelSpec, TrainSpec

    t_zoo = time.perf_counter() - t0
    t0 = time.perf_counter()
    mod = get(fw).module("train")
    t_import = time.perf_counter() - t0

    t0 = time.perf_counter()
    with np.load(data_path, allow_pickle=False) as d:
        X, y, Xt, yt = (d[k] for k in ("X_train", "y_train", "X_test", "y_test"))
        spec = ModelSpec.from_dict(json.loads(str(d["spec"])))
        init = {k[5:]: d[k] for k in d.files if k.startswith("init:")}
    t_data = time.perf_counter() - t0
    tspec = TrainSpec(OptimizerSpec("sgd", lr=LR), epochs=epochs, batch_size=BATCH)

    from zoo.worker import Throttled

    def run(record: bool, prog: bool):
        # progress as the worker gives it: `zoo.worker.Throttled`, its event lines on this
        # process's stdout (the parent sends it to /dev/null)
        progress = Throttled(-(-len(X) // BATCH), framework=fw) if prog else None
        t = time.perf_counter()
        h = mod.train(spec, tspec, X, y, init, record_weights=record, progress=progress)
        wall = time.perf_counter() - t
        es = list(h.epoch_seconds)
        return h, {"wall": wall, "setup": wall - sum(es), "first": es[0],
                   "later": _median(es[1:]), "epochs": es}

    out: dict = {"zoo_import": t_zoo, "import_in_process": t_import, "data_npz": t_data}
    h, out["cold_worker_like"] = run(True, True)           # first call, as the worker makes it
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "h.npz", **h.to_npz_dict())
    out["savez_history"] = time.perf_counter() - t
    evals = []
    for _ in range(max(2, repeats)):
        t = time.perf_counter()
        mod.evaluate(spec, h.weights, Xt, yt)
        evals.append(time.perf_counter() - t)
    out["evaluate_first"], out["evaluate_later"] = evals[0], _median(evals[1:])
    variants = {"bare": (False, False), "record": (True, False), "progress": (False, True),
                "both": (True, True)}
    for name, (rec, prog) in variants.items():
        runs = [run(rec, prog)[1] for _ in range(repeats)]
        out[name] = {k: _median([r[k] for r in runs]) for k in ("wall", "setup", "first", "later")}
    Path(out_path).write_text(json.dumps(out))


# --------------------------------------------------------------------------- outer process
def numpy_epoch(X: np.ndarray, y: np.ndarray, n_classes: int, dtype, repeats: int) -> float:
    """Median seconds of one hand-written softmax SGD epoch (batch 32, lr 0.1), after a warm-up."""
    X = np.ascontiguousarray(X.reshape(len(X), -1), dtype=dtype)
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((X.shape[1], n_classes)) * 0.01).astype(dtype)
    b = np.zeros(n_classes, dtype)
    onehot = np.eye(n_classes, dtype=dtype)[y]
    lr = dtype(LR)
    times = []
    for _ in range(repeats + 1):
        order = rng.permutation(len(X))
        t = time.perf_counter()
        for s in range(0, len(X), BATCH):
            idx = order[s:s + BATCH]
            xb = X[idx]
            z = xb @ W + b
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            _loss = -np.log(p[np.arange(len(idx)), y[idx]] + dtype(1e-12)).mean()
            g = (p - onehot[idx]) / dtype(len(idx))
            W -= lr * (xb.T @ g)
            b -= lr * g.sum(axis=0)
        times.append(time.perf_counter() - t)
    return _median(times[1:])


def timed_subprocess(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True,
                       text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return wall


def import_and_exit(py: str, module: str, env: dict) -> tuple[float, float]:
    """(python start + `import module`, interpreter exit after it) of a fresh process, split
    at the wall-clock time the process prints once the import is done."""
    t = time.time()
    r = subprocess.run([py, "-c", f"import {module}, time; print(repr(time.time()))"], env=env,
                       capture_output=True, text=True, check=True)
    end = time.time()
    done = float(r.stdout.split()[-1])
    return done - t, end - done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist10k")
    ap.add_argument("--frameworks", default="keras,tf1,torch,numpy")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--write-docs", action="store_true",
                    help="replace docs/benchmarks.md's profile tables with this run's")
    ap.add_argument("--inner", nargs=3, metavar=("FW", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        inner(*args.inner, args.epochs, args.repeats)
        return 0

    from zoo import data as zdata
    from zoo import frameworks as registry
    from zoo.commands.compare import spec_for_dataset
    from zoo.specs import init_weights

    dataset, note = args.dataset, ""
    t = time.perf_counter()
    try:
        ds = zdata.load(dataset, download=False)
    except Exception as exc:  # not on disk: the bundled digits instead
        note = f"{dataset} not available ({exc}); used digits"
        dataset = "digits"
        t = time.perf_counter()
        ds = zdata.load(dataset, download=False)
    t_load = time.perf_counter() - t
    spec = spec_for_dataset(MODEL, ds)
    X, Xt = ds.inputs(spec, "train"), ds.inputs(spec, "test")
    init = init_weights(spec, 0, "float32")
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    py = sys.executable
    res: dict = {"dataset": dataset, "note": note, "n_train": len(X), "parent_data_load": t_load,
                 "frameworks": {}}
    print(f"dataset {dataset} ({len(X)} train, {len(Xt)} test){' - ' + note if note else ''}",
          flush=True)

    # the hand-written numpy epochs (this process)
    res["np32_epoch"] = numpy_epoch(X, ds.y_train, ds.n_outputs, np.float32, max(3, args.repeats))
    res["np64_epoch"] = numpy_epoch(X, ds.y_train, ds.n_outputs, np.float64, max(3, args.repeats))
    print(f"hand-written numpy epoch: float32 {res['np32_epoch']:.3f} s, "
          f"float64 {res['np64_epoch']:.3f} s", flush=True)

    env0 = registry.get("numpy").environ()
    res["python_start"] = _median([timed_subprocess([py, "-c", "pass"], env0)
                                   for _ in range(args.repeats)])
    res["parent_imports"] = _median([timed_subprocess(
        [py, "-c", "import zoo.cli, zoo.commands.compare, zoo.compare, zoo.report, "
                   "rich.progress"], env0) for _ in range(args.repeats)])

    res["matplotlib_import"] = _median([timed_subprocess(
        [py, "-c", "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot"], env0)
        for _ in range(args.repeats)]) - res["python_start"]
    with tempfile.TemporaryDirectory(prefix="profile-compare-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        np.savez(tmp / "job-data.npz", X_train=X, y_train=ds.y_train, X_test=Xt, y_test=ds.y_test)
        res["job_data_savez"] = time.perf_counter() - t
        data_path = tmp / "data.npz"
        np.savez(data_path, X_train=X, y_train=ds.y_train, X_test=Xt, y_test=ds.y_test,
                 spec=np.asarray(json.dumps(spec.to_dict())),
                 **{f"init:{k}": v for k, v in init.items()})
        for fw in frameworks:
            f = registry.get(fw)
            env = f.environ()
            r: dict = {}
            # (b) fresh imports
            splits = [import_and_exit(py, f.module_name("train"), env) for _ in range(args.repeats)]
            r["import_fresh"] = _median([a for a, _ in splits])
            r["exit_fresh"] = _median([b for _, b in splits])
            # (a) the whole CLI, as a subprocess
            walls, reports = [], []
            for i in range(args.repeats):
                out = tmp / f"cli-{fw}-{i}"
                walls.append(timed_subprocess(
                    [py, "-m", "zoo", "compare", MODEL, "--dataset", dataset, "--frameworks", fw,
                     "--optimizer", "sgd", "--lr", str(LR), "--batch-size", str(BATCH),
                     "--epochs", str(args.epochs), "--out", str(out)], env0, cwd=str(tmp)))
                reports.append(json.loads((out / "report.json").read_text())["frameworks"][fw])
            r["cli_wall"] = _median(walls)
            r["cli_worker_import"] = _median([x["import_seconds"] for x in reports])
            r["cli_worker_train"] = _median([x["train_seconds"] for x in reports])
            r["cli_epoch"] = _median([x["seconds_per_epoch"] for x in reports])
            # (b) the parent after the worker: compare() in-process, then the report files
            from zoo import compare as cmp
            from zoo import report
            from zoo.optimizers import OptimizerSpec
            from zoo.specs import TrainSpec

            tspec = TrainSpec(OptimizerSpec("sgd", lr=LR), epochs=args.epochs, batch_size=BATCH)
            seen: dict[str, float] = {}

            def on_event(_fw: str, ev: dict, seen: dict = seen) -> None:  # each event's arrival
                now = time.perf_counter()
                kind = ev.get("event", "")
                seen.setdefault(kind, now)
                if kind == "progress":
                    seen["last_progress"] = now

            t = time.perf_counter()
            comp = cmp.compare(spec, tspec, ds, frameworks=[fw], on_event=on_event)
            end = time.perf_counter()
            r["compare_call"] = end - t
            r["ev_to_start"] = seen["start"] - t           # job files, spawn, imports, np.load
            r["ev_train"] = seen["last_progress"] - seen["start"]
            r["ev_to_done"] = seen["done"] - seen["last_progress"]   # evaluate + savez
            r["ev_after_done"] = end - seen["done"]        # worker exit, np.load, align
            fr = comp.results[fw]
            r["compare_worker_import"], r["compare_worker_train"] = fr.import_seconds, \
                fr.train_seconds
            t = time.perf_counter()
            report.write_all(comp, tmp / f"report-{fw}", force=True)
            r["report_write_first"] = time.perf_counter() - t
            t = time.perf_counter()
            report.write_all(comp, tmp / f"report-{fw}", force=True)
            r["report_write"] = time.perf_counter() - t
            # (b) the training pieces in F's own process
            out_json = tmp / f"inner-{fw}.json"
            t = time.perf_counter()
            subprocess.run([py, str(Path(__file__).resolve()), "--inner", fw, str(data_path),
                            str(out_json), "--epochs", str(args.epochs), "--repeats",
                            str(args.repeats)], env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
            r["inner_wall"] = time.perf_counter() - t
            r.update(json.loads(out_json.read_text()))
            res["frameworks"][fw] = r
            print(f"{fw}: done (CLI {r['cli_wall']:.1f} s)", flush=True)

        # the whole comparison, every framework but the numpy reference (the default of
        # `zoo compare`), split at each framework's events
        fws = [fw for fw in frameworks if fw != "numpy"]
        if len(fws) > 1:
            from zoo import compare as cmp
            from zoo.optimizers import OptimizerSpec
            from zoo.specs import TrainSpec

            tspec = TrainSpec(OptimizerSpec("sgd", lr=LR), epochs=args.epochs, batch_size=BATCH)
            events: dict[str, dict[str, float]] = {fw: {} for fw in fws}
            t = time.perf_counter()

            def on_whole(fw: str, ev: dict) -> None:
                events.setdefault(fw, {}).setdefault(ev.get("event", ""), time.perf_counter() - t)

            cmp.compare(spec, tspec, ds, frameworks=fws, on_event=on_whole)
            call = time.perf_counter() - t
            groups = "; ".join(" and ".join(g) + (" in one process" if len(g) > 1 else " alone")
                               for g in cmp.process_groups(fws))
            res["whole"] = {"frameworks": fws, "events": events, "call": call, "groups": groups,
                            "last_done": max(e["done"] for e in events.values())}

    text = tables(res, args)
    print(text)
    if args.write_docs:
        import bench  # scripts/bench.py

        bench.write_docs(text, "profile")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


def tables(res: dict, args) -> str:
    """The profile as Markdown (docs/benchmarks.md's section between the profile markers)."""
    lines: list[str] = []

    def print(text: str = "") -> None:   # noqa: A001  (collects the lines)
        lines.append(text)

    fws = list(res["frameworks"])
    np32 = res["np32_epoch"]
    head = "| | " + " | ".join(fws) + " |"
    sep = "|---|" + "---|" * len(fws)

    def row(label, get, ratio=False, fmt="{:.3f}"):
        cells = []
        for fw in fws:
            try:
                v = get(res["frameworks"][fw])
            except (KeyError, TypeError):
                cells.append("-")
                continue
            c = fmt.format(v)
            if ratio:
                c += f" (x{v / np32:.1f})"
            cells.append(c)
        print(f"| {label} | " + " | ".join(cells) + " |")

    print()
    print(f"Dataset {res['dataset']} ({res['n_train']} train), softmax, SGD lr {LR}, batch "
          f"{BATCH}, {args.epochs} epochs; median of {args.repeats}. Seconds; (xN) = ratio to "
          f"the hand-written float32 numpy epoch ({np32 * 1000:.1f} ms; float64 "
          f"{res['np64_epoch'] * 1000:.1f} ms).")
    if res["note"]:
        print(res["note"])
    print()
    print(head)
    print(sep)
    print("| **whole CLI run (wall)** | " + " | ".join(
        f"**{res['frameworks'][f]['cli_wall']:.2f}**" for f in fws) + " |")
    row("parent: python start + imports", lambda r: res["parent_imports"])
    row("parent: data load (zoo.data.load)", lambda r: res["parent_data_load"])
    row("worker: python start + import <pkg>.train (fresh)", lambda r: r["import_fresh"])
    row("worker: interpreter exit after that import (a worker skips it: os._exit)",
        lambda r: r["exit_fresh"])
    row("worker: import as reported by the CLI run", lambda r: r["cli_worker_import"])
    row("worker: train as reported by the CLI run", lambda r: r["cli_worker_train"])
    row("worker: data load (np.load)", lambda r: r["data_npz"], fmt="{:.3f}")
    row("train, 1st call (record+progress): build + setup", lambda r: r["cold_worker_like"]["setup"])
    row("train, 1st call: first epoch", lambda r: r["cold_worker_like"]["first"], True)
    row("train, 1st call: later epoch (median)", lambda r: r["cold_worker_like"]["later"], True)
    row("first-epoch tracing/compile (first - later)",
        lambda r: r["cold_worker_like"]["first"] - r["cold_worker_like"]["later"])
    row("train, warm, bare: build + setup", lambda r: r["bare"]["setup"])
    row("train, warm, bare: first epoch", lambda r: r["bare"]["first"], True)
    row("train, warm, bare: later epoch", lambda r: r["bare"]["later"], True)
    row("later epoch + record_weights", lambda r: r["record"]["later"], True)
    row("later epoch + progress", lambda r: r["progress"]["later"], True)
    row("later epoch + both (as the worker)", lambda r: r["both"]["later"], True)
    row("record_weights cost / epoch", lambda r: r["record"]["later"] - r["bare"]["later"],
        fmt="{:+.3f}")
    row("progress cost / epoch", lambda r: r["progress"]["later"] - r["bare"]["later"],
        fmt="{:+.3f}")
    row("evaluate (first call / later)", lambda r: (r["evaluate_first"], r["evaluate_later"]),
        fmt="{0[0]:.3f} / {0[1]:.3f}")
    row("worker: np.savez of the History", lambda r: r["savez_history"], fmt="{:.3f}")
    row("parent: import matplotlib (fresh, for the plots)", lambda r: res["matplotlib_import"])
    row("parent: report files (report.write_all, matplotlib loaded)", lambda r: r["report_write"])
    row("parent: np.savez of the job data", lambda r: res["job_data_savez"], fmt="{:.3f}")
    print()
    print("compare() in-process, split at the worker's events (arrival times in the parent):")
    print()
    print(head)
    print(sep)
    row("compare() call", lambda r: r["compare_call"])
    row("to 'start': job files, spawn, python + imports, np.load", lambda r: r["ev_to_start"])
    row("'start' to last 'progress': train", lambda r: r["ev_train"])
    row("last 'progress' to 'done': evaluate + savez", lambda r: r["ev_to_done"])
    row("after 'done': worker exit, np.load, align", lambda r: r["ev_after_done"])
    row("CLI wall - compare() - parent imports/data/report",
        lambda r: r["cli_wall"] - r["compare_call"] - res["parent_imports"]
        - res["parent_data_load"] - res["matplotlib_import"] - r["report_write"])
    whole = res.get("whole")
    if whole:
        print()
        print(f"All of {', '.join(whole['frameworks'])} in one `compare()` (as `zoo compare "
              f"softmax` runs them; {whole['groups']}), each framework's events as they reached "
              "the parent, seconds from the call:")
        print()
        print("| | " + " | ".join(whole["frameworks"]) + " |")
        print("|---|" + "---|" * len(whole["frameworks"]))
        for label, key in (("'start': imported, its turn to train", "start"),
                           ("'done': trained, evaluated, saved", "done")):
            print(f"| {label} | " + " | ".join(f"{whole['events'][fw][key]:.2f}"
                                               for fw in whole["frameworks"]) + " |")
        print(f"| compare() returned (workers' exit, loading the results, aligning) | "
              f"{whole['call']:.2f} (last 'done' + {whole['call'] - whole['last_done']:.2f}) |"
              + " |" * (len(whole["frameworks"]) - 1))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
