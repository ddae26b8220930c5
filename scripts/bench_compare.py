#!/usr/bin/env python3
"""`zoo compare` at the frameworks' own speed: the ratios of docs/benchmarks.md's section
"zoo compare against the fastest paths", measured in one run.

    python3 tasks.py bench --compare [--write-docs]     (or .venv/bin/python scripts/bench_compare.py)

1. Per framework (keras, tf1, torch), model (softmax, mlp) and batch (32, 256) on mnist10k
   (digits where it is absent): `zoo compare MODEL --frameworks FW` (one framework per run, so
   no worker shares a core with another), recording every step, 4 epochs, its report's
   seconds per epoch (the median after the first epoch) against the framework's fastest
   bit-identical training path, a fresh process running its `train` without recording
   (keras with a whole epoch per execution: `scripts/bench.py`'s keras-fast), and against a
   hand-written float32 numpy softmax epoch (batch 32) timed here.
2. The wall time of the three-framework comparison (keras, tf1, torch) against the slowest
   framework's import plus bare training (its fastest path): `zoo.compare.compare` at 4 epochs
   in a fresh process, and the CLI as typed, `zoo compare softmax --dataset D` (20 epochs,
   report and plots written).
3. Scaling: `zoo compare` (keras, tf1, torch; one epoch) of softmax, mlp and lenet on 1k, 8k
   and 60k samples (60k: the mnist10k training images repeated with noise; the full MNIST
   training set needs a download): wall time and peak memory, the comparing process's own and
   the largest worker's; the comparing process's against its budget (the record, capped at
   `zoo.compare.RECORD_BUDGET_MB`, plus the data plus PARENT_BASE_MB).
4. The float64 numpy reference's column in the same comparisons as 1. (softmax and mlp, batch
   32 and 256) against the slowest framework's.
5. Each framework's floor: the smallest softmax SGD training step its idiom allows, written by
   hand without the zoo (torch: `F.cross_entropy`, `backward`, `torch.optim.SGD`; TF1: a
   two-variable graph, one `Session.run` per batch; Keras: a one-layer `Sequential` `fit` on
   a `tf.data` pipeline, a whole epoch per execution), one epoch at batch 32, against the same
   float32 numpy epoch: how far below the frameworks' own per-step cost the 3x target lies.

Rows 1, 2 and 5 alternate their runs `--repeats` times (default 3) and report medians (the
spread in brackets): on a shared virtual machine one epoch's time varies by 20% from run to run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench as B  # noqa: E402  (scripts/bench.py: its child_train is the fastest path)

FRAMEWORKS = ("keras", "tf1", "torch")
FASTEST = {"keras": "keras-fast", "tf1": "tf1", "torch": "torch"}
EPOCHS = 6     # the per-epoch figures: the median of the 5 epochs after the first
#: the comparing process's memory besides the record and the data (MB; see markdown())
PARENT_BASE_MB = 300


def compare_child(model: str, npz: str, frameworks: str, batch: int, epochs: int) -> dict:
    """One `zoo.compare.compare` in this (fresh) process: its report's figures, its wall time
    and peak memory, the largest worker's peak."""
    import numpy as np

    from zoo import compare as cmp
    from zoo.commands.compare import spec_for_dataset
    from zoo.data import Dataset
    from zoo.optimizers import OptimizerSpec
    from zoo.specs import TrainSpec

    with np.load(npz) as z:   # the bench's own arrays: all of X_train trains, X_test tests
        shape = tuple(int(d) for d in z["image_shape"])
        flat = {k: z[k].reshape(len(z[k]), -1) if k.startswith("X") else z[k]
                for k in ("X_train", "y_train", "X_test", "y_test")}
    n_classes = int(flat["y_train"].max()) + 1
    ds = Dataset("bench", flat["X_train"], flat["y_train"], flat["X_test"], flat["y_test"],
                 "classification", n_classes, "bench arrays", image_shape=shape)
    spec = spec_for_dataset(model, ds)
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1 if model == "softmax" else 0.05),
                   epochs=epochs, batch_size=batch)
    t = time.perf_counter()
    comp = cmp.compare(spec, ts, ds, frameworks=frameworks.split(","))
    wall = time.perf_counter() - t
    return {"wall": wall, "rss_parent_mb": B._maxrss_mb(),
            "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
            "samples": int(len(ds.X_train)),
            "frameworks": {fw: {"seconds_per_epoch": r.seconds_per_epoch,
                                "first_epoch_seconds": r.first_epoch_seconds,
                                "import_seconds": r.import_seconds,
                                "train_seconds": r.train_seconds,
                                "max_weight_diff": r.max_weight_diff}
                           for fw, r in comp.results.items()},
            "n_params": int(sum(np.prod(s) for s in spec.weight_shapes().values()))}


def floor_child(fw: str, npz: str, batch: int, epochs: int) -> dict:
    """The framework's minimal softmax SGD epoch (lr 0.1, float32, zero initial weights, one
    shuffled order per epoch), written by hand in its idiom: seconds per epoch."""
    import numpy as np

    with np.load(npz) as z:
        X = z["X_train"].reshape(len(z["X_train"]), -1).astype(np.float32)
        y = z["y_train"].astype(np.int64)
    n, d, c = len(X), X.shape[1], int(y.max()) + 1
    rng = np.random.default_rng(0)
    orders = [rng.permutation(n) for _ in range(epochs)]
    seconds = []
    if fw == "torch":
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(1)   # as in a comparison's workers
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        W = torch.zeros(d, c, requires_grad=True)
        b = torch.zeros(c, requires_grad=True)
        opt = torch.optim.SGD([W, b], lr=0.1)
        for order in orders:
            t = time.perf_counter()
            for i in range(0, n, batch):
                idx = torch.from_numpy(order[i:i + batch])
                opt.zero_grad()
                loss = F.cross_entropy(Xt[idx] @ W + b, yt[idx])
                loss.item()
                loss.backward()
                opt.step()
            seconds.append(time.perf_counter() - t)
    elif fw == "tf1":
        import tensorflow as tf

        tf1 = tf.compat.v1
        g = tf.Graph()
        with g.as_default():
            x = tf1.placeholder(tf.float32, [None, d])
            t_ = tf1.placeholder(tf.int64, [None])
            W = tf1.get_variable("W", [d, c], initializer=tf1.zeros_initializer())
            b = tf1.get_variable("b", [c], initializer=tf1.zeros_initializer())
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=t_, logits=tf.matmul(x, W) + b))
            train_op = tf1.train.GradientDescentOptimizer(0.1).minimize(loss)
            sess = tf1.Session(graph=g)
            sess.run(tf1.global_variables_initializer())
        for order in orders:
            t = time.perf_counter()
            for i in range(0, n, batch):
                idx = order[i:i + batch]
                sess.run([loss, train_op], {x: X[idx], t_: y[idx]})
            seconds.append(time.perf_counter() - t)
    else:
        import keras
        import tensorflow as tf

        steps = -(-n // batch)
        ds = tf.data.Dataset.from_tensor_slices(np.concatenate(orders)).batch(batch)
        Xc, yc = tf.constant(X), tf.constant(y)
        ds = ds.map(lambda i: (tf.gather(Xc, i), tf.gather(yc, i))).prefetch(2)
        model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(c, "softmax",
                                                                        kernel_initializer="zeros")])
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy",
                      steps_per_execution=steps)

        class Times(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                seconds.append(time.perf_counter() - self.t)

        model.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=[Times()])
    return {"epoch_seconds": seconds}


def run(args: list[str], timeout: float = 3600) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                       text=True, env=env, timeout=timeout, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"bench_compare: child {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def write_npz(path: Path, X, y, image_shape) -> str:
    import numpy as np

    np.savez(path, X_train=X, y_train=y, X_test=X[:500], y_test=y[:500],
             image_shape=np.asarray(image_shape))
    return str(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default="runs/bench-compare.json")
    p.add_argument("--write-docs", action="store_true")
    p.add_argument("--no-scaling", action="store_true", help="skip the scaling table")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs of each measurement, alternated (default 3); medians reported")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child and a.child[0] == "floor":
        fw, npz, batch, epochs = a.child[1:]
        print(json.dumps(floor_child(fw, npz, int(batch), int(epochs))))
        return 0
    if a.child:
        model, npz, fws, batch, epochs = a.child
        print(json.dumps(compare_child(model, npz, fws, int(batch), int(epochs))))
        return 0
    if a.repeats < 1:
        raise SystemExit("bench_compare: --repeats must be at least 1.")
    R = a.repeats

    import numpy as np

    from zoo import data
    from zoo.compare import RECORD_BUDGET_MB

    sys.path.insert(0, str(ROOT / "scripts"))
    from profile_compare import numpy_epoch

    name = B.pick_dataset()[0]
    name = "mnist10k" if name == "mnist" else name
    ds = data.load(name)
    shape = tuple(ds.image_shape)
    tmp = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    main_npz = write_npz(tmp / "main.npz", ds.X_train, ds.y_train, shape)
    res: dict = {"dataset": name, "samples": int(len(ds.X_train)), "epochs": EPOCHS,
                 "cpus": os.cpu_count(), "repeats": R, "rows": {}, "scaling": {}, "floor": {}}
    res["numpy32_softmax_b32"] = numpy_epoch(ds.X_train, ds.y_train, ds.n_outputs,
                                             np.float32, 5)
    print(f"hand-written float32 numpy softmax epoch, batch 32: "
          f"{res['numpy32_softmax_b32'] * 1e3:.1f} ms", flush=True)
    for model in ("softmax", "mlp"):
        for batch in (32, 256):
            key = f"{model} batch {batch}"
            res["rows"][key] = {}
            for fw in FRAMEWORKS:
                comps, fasts, firsts = [], [], []
                for _ in range(R):   # alternated, so a slow spell of the machine hits both
                    c = run([model, main_npz, fw, str(batch), str(EPOCHS)])["frameworks"][fw]
                    f = B.run_child(["train", FASTEST[fw], model, main_npz, str(batch),
                                     str(EPOCHS)])
                    comps.append(c["seconds_per_epoch"])
                    firsts.append(c["first_epoch_seconds"])
                    fasts.append(statistics.median(f["epoch_seconds"][1:]))
                comp, fast = statistics.median(comps), statistics.median(fasts)
                res["rows"][key][fw] = {"compare": comp, "fastest": fast,
                                        "first_epoch": statistics.median(firsts),
                                        "compare_runs": comps, "fastest_runs": fasts}
                print(f"{key:18s} {fw:6s} compare {comp * 1e3:7.1f} ms "
                      f"[{min(comps) * 1e3:.1f}-{max(comps) * 1e3:.1f}], fastest "
                      f"{fast * 1e3:7.1f} ms [{min(fasts) * 1e3:.1f}-{max(fasts) * 1e3:.1f}]: "
                      f"x{comp / fast:.2f}", flush=True)
            # the float64 reference's column in the same comparison, against the slowest
            # framework's (it must never be the slowest)
            c = run([model, main_npz, "numpy", str(batch), str(EPOCHS)])["frameworks"]["numpy"]
            res["rows"][key]["numpy"] = {"compare": c["seconds_per_epoch"], "fastest": None,
                                         "first_epoch": c["first_epoch_seconds"]}
            slowest = max(r["compare"] for f, r in res["rows"][key].items() if f != "numpy")
            print(f"{key:18s} numpy  compare {c['seconds_per_epoch'] * 1e3:7.1f} ms; slowest "
                  f"framework {slowest * 1e3:7.1f} ms", flush=True)
    # each framework's floor: its minimal hand-written softmax epoch (batch 32)
    for fw in FRAMEWORKS:
        runs = [statistics.median(run(["floor", fw, main_npz, "32", str(EPOCHS)])
                                  ["epoch_seconds"][1:]) for _ in range(R)]
        res["floor"][fw] = {"seconds": statistics.median(runs), "runs": runs}
        print(f"floor {fw:6s} {res['floor'][fw]['seconds'] * 1e3:7.1f} ms: "
              f"x{res['floor'][fw]['seconds'] / res['numpy32_softmax_b32']:.1f} numpy",
              flush=True)
    # the whole comparison against the slowest framework's import plus bare training (its
    # fastest path, a fresh process): `compare()` of the three frameworks at 4 epochs (the
    # issue's "as a new user would" run) in a fresh process, and the CLI exactly as typed,
    # `zoo compare softmax --dataset D` (its defaults: keras, tf1, torch, 20 epochs, batch 32;
    # the report files and plots included)
    res["whole"] = {}
    cli = [sys.executable, "-m", "zoo", "compare", "softmax", "--dataset", name, "--out",
           str(tmp / "cli"), "--force"]
    for label, epochs in (("compare() 4 epochs", 4), ("CLI 20 epochs", 20)):
        walls, slowest = [], []
        for _ in range(R):
            t = time.perf_counter()
            if epochs == 20:
                subprocess.run(cli, check=True, capture_output=True, cwd=ROOT,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            else:
                run(["softmax", main_npz, ",".join(FRAMEWORKS), "32", str(epochs)])
            walls.append(time.perf_counter() - t)
            parts = [B.run_child(["train", FASTEST[fw], "softmax", main_npz, "32", str(epochs)])
                     for fw in FRAMEWORKS]
            slowest.append(max(p_["import_seconds"] + sum(p_["epoch_seconds"]) for p_ in parts))
        res["whole"][label] = {"process": statistics.median(walls), "epochs": epochs,
                               "slowest_part": statistics.median(slowest),
                               "process_runs": walls, "slowest_part_runs": slowest}
        print(f"zoo compare softmax, {label}: {statistics.median(walls):.2f} s "
              f"[{min(walls):.2f}-{max(walls):.2f}]; slowest framework's import plus training "
              f"{statistics.median(slowest):.2f} s [{min(slowest):.2f}-{max(slowest):.2f}]",
              flush=True)
    if not a.no_scaling:
        rng = np.random.default_rng(0)
        X, y = ds.X_train, ds.y_train
        big = np.concatenate([X + rng.normal(0, 0.05, X.shape).astype(X.dtype) * (k > 0)
                              for k in range(-(-60000 // len(X)))])[:60000]
        ybig = np.concatenate([y] * -(-60000 // len(y)))[:60000]
        for n in (1000, 8000, 60000):
            npz = write_npz(tmp / f"n{n}.npz", big[:n], ybig[:n], shape)
            for model in ("softmax", "mlp", "lenet"):
                t = time.perf_counter()
                r = run([model, npz, ",".join(FRAMEWORKS), "32", "1"])
                r["process"] = time.perf_counter() - t
                # the stated budget of the comparing process: the record (every step's
                # weights, all frameworks) + the dataset's arrays + PARENT_BASE_MB
                r["record_mb"] = -(-n // 32) * r["n_params"] * 4 * len(FRAMEWORKS) / 2**20
                r["data_mb"] = big[:n].nbytes / 2**20
                r["budget_mb"] = r["record_mb"] + r["data_mb"] + PARENT_BASE_MB
                res["scaling"][f"{model} {n}"] = r
                print(f"scaling {model:8s} {n:6d}: {r['process']:7.1f} s, parent peak "
                      f"{r['rss_parent_mb']:.0f} MB, largest worker {r['rss_worker_mb']:.0f} MB",
                      flush=True)
    res["record_budget_mb"] = RECORD_BUDGET_MB
    table = markdown(res)
    print(table)
    out = ROOT / a.json
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    if a.write_docs:
        B.write_docs(table, "bench-compare")
    return 0


def _ms(r: dict, key: str) -> str:
    """A median in ms, the runs' spread in brackets when there were several."""
    runs = r.get(f"{key}_runs") or []
    spread = f" [{min(runs) * 1e3:.1f}-{max(runs) * 1e3:.1f}]" if len(runs) > 1 else ""
    return f"{r[key] * 1e3:.1f} ms{spread}"


def markdown(res: dict) -> str:
    np32 = res["numpy32_softmax_b32"]
    reps = res.get("repeats", 1)
    lines = [f"`{res['dataset']}` ({res['samples']:,} training samples), SGD, {res['epochs']} "
             f"epochs, {res['cpus']} cores; `zoo compare` one framework per run, recording every "
             "step; its seconds per epoch (the median after the first) against the framework's "
             "fastest bit-identical path in a fresh process (keras: a whole epoch per "
             f"execution), and against a hand-written float32 numpy softmax epoch at batch 32 "
             f"({np32 * 1e3:.1f} ms). The median of {reps} alternated runs of each, the "
             "runs' range in brackets.", "",
             "| model, batch | framework | compare s/epoch | fastest path | x fastest | x numpy |",
             "|---|---|---|---|---|---|"]
    for key, row in res["rows"].items():
        for fw, r in row.items():
            xnp = f"x{r['compare'] / np32:.1f}" if key == "softmax batch 32" else ""
            if r["fastest"] is None:   # the float64 reference: against the slowest framework
                slowest = max(q["compare"] for f, q in row.items() if f != fw)
                lines.append(f"| {key} | numpy (float64) | {r['compare'] * 1e3:.1f} ms | | "
                             f"x{r['compare'] / slowest:.2f} the slowest framework's | {xnp} |")
                continue
            lines.append(f"| {key} | {fw} | {_ms(r, 'compare')} | {_ms(r, 'fastest')} | "
                         f"x{r['compare'] / r['fastest']:.2f} | {xnp} |")
    if res.get("floor"):
        lines += ["", "Each framework's floor, the smallest softmax SGD step its idiom allows "
                  "(hand-written without the zoo, batch 32; `floor_child` in "
                  "`scripts/bench_compare.py`), against the same numpy epoch:", "",
                  "| framework | floor epoch | x numpy | `zoo compare` x numpy |",
                  "|---|---|---|---|"]
        row = res["rows"].get("softmax batch 32", {})
        for fw, r in res["floor"].items():
            comp = f"x{row[fw]['compare'] / np32:.1f}" if fw in row else ""
            lines.append(f"| {fw} | {_ms(r, 'seconds')} | x{r['seconds'] / np32:.1f} | {comp} |")
    lines += ["", "The whole comparison (keras, tf1, torch, batch 32) against the slowest framework's "
              "import plus bare training (its fastest path, in a fresh process):", "",
              "| run | wall | slowest import + bare training | ratio |", "|---|---|---|---|"]
    whole = res["whole"] if "process" not in res["whole"] else {"compare() 4 epochs": res["whole"]}
    for label, w in whole.items():
        walls, parts = w.get("process_runs") or [], w.get("slowest_part_runs") or []
        spread = (f" [{min(walls):.2f}-{max(walls):.2f}]" if len(walls) > 1 else "",
                  f" [{min(parts):.2f}-{max(parts):.2f}]" if len(parts) > 1 else "")
        what = ("`zoo compare softmax --dataset " + res["dataset"] + "` as typed (20 epochs, "
                "report and plots written)") if label.startswith("CLI") else \
            "`zoo.compare.compare`, 4 epochs, in a fresh process"
        lines.append(f"| {what} | {w['process']:.2f} s{spread[0]} | {w['slowest_part']:.2f} s"
                     f"{spread[1]} | x{w['process'] / w['slowest_part']:.2f} |")
    if res["scaling"]:
        lines += ["", "| model | samples | parameters | wall (3 frameworks, 1 epoch) | record "
                  "(every step, 3 frameworks) | peak: comparing process | its budget | peak: "
                  "largest worker |", "|---|---|---|---|---|---|---|---|"]
        for key, r in res["scaling"].items():
            model, n = key.split()
            ok = "within" if r["rss_parent_mb"] <= r["budget_mb"] else "OVER"
            lines.append(f"| {model} | {int(n):,} | {r['n_params']:,} | {r['process']:.1f} s | "
                         f"{r['record_mb']:.0f} MB | {r['rss_parent_mb']:.0f} MB | "
                         f"{r['budget_mb']:.0f} MB ({ok}) | {r['rss_worker_mb']:.0f} MB |")
        lines += ["", "The comparing process's budget: the record (capped at "
                  f"`RECORD_BUDGET_MB` = {res['record_budget_mb']:.0f} MB, beyond which the "
                  "weights are recorded at a stride) plus the dataset's arrays plus "
                  f"{PARENT_BASE_MB} MB (interpreter, numpy, the comparison's float64 "
                  "difference chunks)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
