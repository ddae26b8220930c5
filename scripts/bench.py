#!/usr/bin/env python3
"""Benchmarks: where each framework's time goes, measured in one run, reported as ratios.

    python3 tasks.py bench [--quick] [--json PATH] [--write-docs]

Every measurement runs in a fresh process (one per framework path), so import time and peak
memory are that framework's alone. Paths: numpy (the float64 reference loop), keras (`fit`,
one step per execution), keras-fast (`fit` with a whole epoch per execution), tf1
(`Session.run` + feed_dict), torch (eager loop), keras-torch (Keras on the torch backend).
Measured: seconds per epoch of softmax regression at batch 32, 256 and full batch, of the
MLP at batch 32, of the small `cnn` on digits as 8x8 images, of LeNet-5 and of the LSTM (64
units, images read row by row) at batch 32 (float32
in every path, and float64 for the numpy reference against torch) (median over repeated epochs after a warm-up epoch, with min and max); the
quadratic demo's 1000 steps; import time; peak resident memory after the import and after
training; and the wall time of `zoo compare softmax --dataset iris`. Ratios are to the numpy
reference and to the fastest path of the same row, all from this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("numpy", "keras", "keras-fast", "tf1", "torch", "keras-torch")
QUADRATIC_PATHS = ("keras-eager", "keras-compiled", "tf1", "torch")


def _maxrss_mb() -> float:
    """Peak resident memory of this process. VmHWM belongs to the address space, which exec
    replaces; getrusage's ru_maxrss would carry over the (larger) parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------- child side
def child_train(path: str, model: str, dataset: str, batch: int, epochs: int,
                dtype: str = "float32") -> dict:
    """Train in this (fresh) process; returns epoch times, import time and memory. Image
    models get the dataset's images (N, H, W, C), the others its flat features."""
    t0 = time.perf_counter()
    if path == "numpy":
        import zoo.reference as mod
    elif path in ("keras", "keras-fast", "keras-torch"):
        import keras_models.train as mod
    elif path == "tf1":
        import tf1_compat.train as mod
    else:
        import torch_models.train as mod
    import_s = time.perf_counter() - t0
    rss_import = _maxrss_mb()
    import numpy as np

    from zoo.optimizers import OptimizerSpec
    from zoo.specs import MODELS, TrainSpec, init_weights, model_spec_for

    # The data comes as arrays, as in `zoo compare`'s workers (loading it through
    # scikit-learn would add ~100 MB to every process's peak).
    with np.load(dataset, allow_pickle=False) as z:
        X, y = z["X_train"].astype(dtype), z["y_train"]
        image = tuple(int(d) for d in z["image_shape"]) if "image_shape" in z.files else None
    arch = MODELS[model]
    shape = image if (arch.image or arch.sequence == "rows") else None
    spec = model_spec_for(model, X.shape[1], int(y.max()) + 1, input_shape=shape)
    X = X.reshape(len(X), *spec.input_shape)
    bs = len(X) if batch == 0 else batch
    lr = 0.1 if model == "softmax" else 0.05
    ts = TrainSpec(OptimizerSpec("sgd", lr=lr), epochs=epochs, batch_size=bs, dtype=dtype)
    kw = {}
    if path == "keras":  # one step per execution (what `fit` does by default)
        kw["steps_per_execution"] = 1
    if path == "keras-fast":
        kw["steps_per_execution"] = -(-len(X) // bs)
    hist = mod.train(spec, ts, X, y, init_weights(spec, 0), **kw)
    return {"import_seconds": import_s, "epoch_seconds": list(hist.epoch_seconds),
            "rss_import_mb": rss_import, "rss_peak_mb": _maxrss_mb(),
            "steps_per_epoch": -(-len(X) // bs), "samples": len(X)}


def child_quadratic(path: str, repeats: int) -> dict:
    if path.startswith("keras"):
        import keras_models.quadratic as mod
    elif path == "tf1":
        import tf1_compat.quadratic as mod
    else:
        import torch_models.quadratic as mod
    kw = {"compiled": True} if path == "keras-compiled" else {}
    times = []
    for _ in range(repeats + 1):  # the first run traces / builds: a warm-up
        t = time.perf_counter()
        out = mod.minimize(steps=1000, **kw)
        times.append(time.perf_counter() - t)
    return {"seconds": times[1:], "final_w": float(out["w"][-1])}


def child_import(which: str) -> dict:
    t = time.perf_counter()
    if which == "tensorflow":
        import tensorflow  # noqa: F401
    elif which == "torch":
        import torch  # noqa: F401
    elif which == "keras-torch":
        import keras  # noqa: F401
    return {"import_seconds": time.perf_counter() - t, "rss_mb": _maxrss_mb()}


# ----------------------------------------------------------------------------- parent side
def run_child(args: list[str], backend: str = "tensorflow", timeout: float = 1800) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                       text=True, env=env, timeout=timeout, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"bench: child {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def stats(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def pick_dataset() -> tuple[str, str | None]:
    """mnist (if present), else mnist10k (the shared copy), else digits."""
    from zoo import data

    for name in ("mnist", "mnist10k"):
        try:
            data.load(name, download=False)
            return name, None
        except Exception:  # noqa: BLE001 - any failure means: not available here
            continue
    return "digits", None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="digits only, fewer repeats (< 1 min)")
    p.add_argument("--repeats", type=int, default=None, help="epochs measured after the warm-up")
    p.add_argument("--json", default="runs/bench.json", help="where the JSON goes")
    p.add_argument("--write-docs", action="store_true",
                   help="replace the table in docs/benchmarks.md with this run's")
    p.add_argument("--only", default=None, metavar="MODELS",
                   help="only these models' rows (comma-separated, e.g. cnn,lenet) and their "
                        "comparison; --write-docs then fills the layer models' table")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "train":
            out = child_train(rest[0], rest[1], rest[2], int(rest[3]), int(rest[4]), *rest[5:])
        elif kind == "quadratic":
            out = child_quadratic(rest[0], int(rest[1]))
        else:
            out = child_import(rest[0])
        print(json.dumps(out))
        return 0

    sys.path.insert(0, str(ROOT))
    import numpy as np

    from zoo import data

    repeats = args.repeats or (2 if args.quick else 3)
    dataset = "digits" if args.quick else pick_dataset()[0]
    batches = (32,) if args.quick else (32, 256, 0)
    data_npz = {}
    for name in {dataset, "iris", "digits"}:
        ds = data.load(name)
        data_npz[name] = ROOT / "runs" / f"bench-data-{name}.npz"
        data_npz[name].parent.mkdir(parents=True, exist_ok=True)
        shape = tuple(ds.image_shape) if ds.image_shape else None
        if shape is not None and len(shape) == 2:
            shape = (*shape, 1)
        extra = {"image_shape": np.asarray(shape)} if shape else {}
        np.savez(data_npz[name], X_train=ds.X_train, y_train=ds.y_train, **extra)
    paths = PATHS
    result: dict = {"dataset": dataset, "repeats": repeats, "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "command": "python3 tasks.py bench" + (" --quick" if args.quick else ""),
        "train": {}, "quadratic": {}, "imports": {}}
    t_start = time.perf_counter()
    for which in ("tensorflow", "torch", "keras-torch"):
        r = run_child(["import", which], backend="torch" if which == "keras-torch" else "tensorflow")
        result["imports"][which] = r
        print(f"import {which}: {r['import_seconds']:.2f} s, {r['rss_mb']:.0f} MB", flush=True)
    # (model, batch, dataset, dtype, paths)
    rows = [("softmax", b, dataset, "float32", paths) for b in batches]
    rows += [("cnn", 32, "digits", "float32", paths)]
    if not args.quick:
        rows += [("mlp", 32, dataset, "float32", paths)]
        if dataset != "digits":
            rows += [("lenet", 32, dataset, "float32", paths),
                     ("lenet", 32, dataset, "float64", ("numpy", "torch")),
                     ("lstm", 32, dataset, "float32", paths),
                     ("lstm", 32, dataset, "float64", ("numpy", "torch"))]
    only = set(args.only.split(",")) if args.only else None
    if only is not None:
        rows = [r for r in rows if r[0] in only]
        result["command"] += f" --only {args.only}"
    for model, batch, ds_name, dtype, row_paths in rows:
        key = (f"{model} batch {'full' if batch == 0 else batch}"
               + (f" on {ds_name}" if ds_name != dataset else "")
               + (" float64" if dtype == "float64" else ""))
        result["train"][key] = {}
        for path in row_paths:
            r = run_child(["train", path, model, str(data_npz[ds_name]), str(batch),
                           str(repeats + 1), dtype],
                          backend="torch" if path == "keras-torch" else "tensorflow")
            r["epoch"] = stats(r["epoch_seconds"][1:])
            result["train"][key][path] = r
            print(f"{key:20s} {path:12s} {r['epoch']['median'] * 1e3:9.1f} ms/epoch "
                  f"(import {r['import_seconds']:.2f} s, peak {r['rss_peak_mb']:.0f} MB)", flush=True)
    for path in QUADRATIC_PATHS if only is None else ():
        r = run_child(["quadratic", path, str(max(3, repeats))])
        r["time"] = stats(r["seconds"])
        result["quadratic"][path] = r
        print(f"quadratic {path:15s} {r['time']['median'] * 1e3:8.1f} ms / 1000 steps", flush=True)
    if not args.quick and (only is None or "softmax" in only):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "zoo", "compare", "softmax", "--dataset", "iris",
                        "--json", str(ROOT / "runs" / "bench-compare.json"), "--force"],
                       check=True, capture_output=True, cwd=ROOT)
        result["compare_seconds"] = time.perf_counter() - t
        alone = {fw: run_child(["train", fw, "softmax", str(data_npz["iris"]), "32", "20"])
                 for fw in ("keras", "tf1", "torch")}
        result["compare_parts_seconds"] = sum(
            a["import_seconds"] + sum(a["epoch_seconds"]) for a in alone.values())
    if not args.quick and (only is None or "lenet" in only):
        if dataset != "digits":  # LeNet, one epoch: the comparison against its parts
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "zoo", "compare", "lenet", "--dataset", dataset,
                            "--epochs", "1", "--json", str(ROOT / "runs" / "bench-lenet.json"),
                            "--force"], check=True, capture_output=True, cwd=ROOT)
            result["compare_lenet_seconds"] = time.perf_counter() - t
            alone = {fw: run_child(["train", fw, "lenet", str(data_npz[dataset]), "32", "1"])
                     for fw in ("keras", "tf1", "torch")}
            result["compare_lenet_parts_seconds"] = sum(
                a["import_seconds"] + sum(a["epoch_seconds"]) for a in alone.values())
    result["total_seconds"] = time.perf_counter() - t_start
    table = markdown(result)
    print(table)
    out = ROOT / args.json
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    if args.write_docs:
        marker = ("bench" if only is None else
                  "bench-recurrent" if only <= {"lstm", "gru"} else "bench-layers")
        write_docs(table, marker)
    return 0


def markdown(res: dict) -> str:
    lines = [f"Dataset `{res['dataset']}`, SGD, median of {res['repeats']} epochs after a warm-up "
             f"(min-max in brackets); ratios to the numpy reference and to the fastest path of "
             f"the row. Command: `{res['command']}`.", "",
             "| run | " + " | ".join(PATHS) + " |", "|---|" + "---|" * len(PATHS)]
    for key, by_path in res["train"].items():
        fastest = min(v["epoch"]["median"] for v in by_path.values())
        ref = by_path["numpy"]["epoch"]["median"]
        cells = []
        for path in PATHS:
            if path not in by_path:
                cells.append("-")
                continue
            e = by_path[path]["epoch"]
            cells.append(f"{e['median'] * 1e3:.1f} ms [{e['min'] * 1e3:.1f}-{e['max'] * 1e3:.1f}] "
                         f"x{e['median'] / ref:.1f} / x{e['median'] / fastest:.1f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    first = next(iter(res["train"].values()))
    lines += ["", "| path | import (s) | peak memory after import (MB) | peak after training (MB) | ratio |",
              "|---|---|---|---|---|"]
    for path in PATHS:
        r = first[path]
        lines.append(f"| {path} | {r['import_seconds']:.2f} | {r['rss_import_mb']:.0f} | "
                     f"{r['rss_peak_mb']:.0f} | x{r['rss_peak_mb'] / r['rss_import_mb']:.2f} |")
    q = res["quadratic"]
    if q:
        fastest = min(v["time"]["median"] for v in q.values())
        lines += ["", "| quadratic, 1000 steps | time | x fastest |", "|---|---|---|"]
        lines += [f"| {k} | {v['time']['median'] * 1e3:.1f} ms | x{v['time']['median'] / fastest:.1f} |"
                  for k, v in q.items()]
    if "compare_seconds" in res:
        lines += ["", f"`zoo compare softmax --dataset iris` (keras, tf1, torch): "
                  f"{res['compare_seconds']:.1f} s wall; the three frameworks' imports plus "
                  f"trainings alone: {res['compare_parts_seconds']:.1f} s (ratio "
                  f"x{res['compare_seconds'] / res['compare_parts_seconds']:.2f})."]
    if "compare_lenet_seconds" in res:
        lines += ["", f"`zoo compare lenet --dataset {res['dataset']} --epochs 1` (keras, tf1, "
                      f"torch): {res['compare_lenet_seconds']:.1f} s wall; the three frameworks' "
                      f"imports plus trainings alone: {res['compare_lenet_parts_seconds']:.1f} s "
                      f"(ratio x{res['compare_lenet_seconds'] / res['compare_lenet_parts_seconds']:.2f})."]
    for model, label in (("lenet", "LeNet"), ("lstm", "LSTM")):
        f64 = next((v for k, v in res["train"].items()
                    if k.startswith(model) and "float64" in k), None)
        if f64:
            n, t = f64["numpy"]["epoch"]["median"], f64["torch"]["epoch"]["median"]
            lines += ["", f"{label} float64 epoch: the numpy reference {n:.2f} s, torch "
                          f"{t:.2f} s (numpy / torch x{n / t:.2f})."]
    return "\n".join(lines)


def write_docs(table: str, marker: str = "bench") -> None:
    path = ROOT / "docs" / "benchmarks.md"
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{begin}\n{table}\n{end}{tail}")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
