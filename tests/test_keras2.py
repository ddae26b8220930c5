"""The keras2 column: every zoo model in Keras 2 (`tf_keras`, keras2_models) agrees with Keras 3,
TF1, torch and the float64 numpy reference after one epoch, within 1e-6 in float32 and 1e-12 in
float64, across the optimizers; its HDF5 weights round-trip bit for bit; its process rules hold.

Keras 2 needs a process of its own (TF_USE_LEGACY_KERAS=1, and no Keras 3 in it), and this
test process may hold Keras 3 (other test files import it). So every Keras 2 computation runs
in processes of the registry's keras2 environment (`Framework.environ()`):
- `zoo.compare.compare` runs a keras2 worker beside the other frameworks' (the real harness);
- one driver process (`keras2_run`, started once for the file) runs the worker jobs of the
  one-epoch matrix (`zoo.worker.run` of each, as `compare` would, without a process start per
  run: one TensorFlow import instead of 26), HDF5 round trips, step details, a resume, the
  CLI and the measured Keras 2 defaults; the other frameworks train the same jobs here, in
  this process, from the same data, initial weights and batch order.
Toy sizes (72 samples: two full batches of 32 and a partial one of 8). Slow: the full matrix
(every model x every optimizer x both dtypes) and a `compare` of every model with every
framework.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import load, magnitude, model_inputs, shifted_weights, spec_for

from zoo import frameworks as F
from zoo.agreement import TOLERANCES, differences, max_abs_diff
from zoo.compare import compare
from zoo.optimizers import OPTIMIZERS, OptimizerSpec
from zoo.specs import History, TrainSpec, dropout_masks, init_weights

ROOT = Path(__file__).resolve().parent.parent
KERAS2 = F.get("keras2")
#: the frameworks keras2 is compared with in this process (numpy: the float64 reference)
OTHERS = ("keras", "tf1", "torch", "numpy")
N_TRAIN = 72
BATCH = 32
#: model -> dataset of the parity tests (tests/test_parity.py)
DATASETS = {"softmax": "iris", "svm": "iris", "linear": "icecream", "logistic": "breast_cancer",
            "mlp": "iris", "cnn": "digits", "lenet": "digits28", "nielsen": "digits",
            "cnn_bn": "digits", "mlp_ln": "iris", "lstm": "digits", "gru": "digits",
            "embedding_gru": "tokens"}
#: model -> (float32 optimizer, float64 optimizer) of the default run: every optimizer in
#: both dtypes, every model in both (the full matrix is slow)
DEFAULT_CASES = {"softmax": ("sgd", "centered_rmsprop"), "svm": ("momentum", "adagrad"),
                 "linear": ("nesterov", "adam"), "logistic": ("rmsprop", "momentum"),
                 "mlp": ("adam", "rmsprop"), "cnn": ("adagrad", "sgd"),
                 "lenet": ("adam", "nesterov"), "nielsen": ("centered_rmsprop", "adam"),
                 "cnn_bn": ("momentum", "adam"), "mlp_ln": ("sgd", "adagrad"),
                 "lstm": ("sgd", "rmsprop"), "gru": ("adam", "momentum"),
                 "embedding_gru": ("adagrad", "rmsprop")}
#: learning rates that keep one epoch well-conditioned (tests/test_parity.py's)
LR = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "rmsprop": 0.005,
      "centered_rmsprop": 0.005, "adam": 0.005, "adagrad": 0.05}
#: weights in the hundreds (ice cream) or N(0, 1) nets: their float32 bound is relative
RELATIVE = ("linear", "nielsen")


def train_spec(model: str, opt: str, dtype: str) -> TrainSpec:
    """tests/test_parity.py's recipe for one epoch that every framework computes alike."""
    lr = LR[opt] * (0.1 if model == "linear" else 1.0)
    kw: dict = {}
    if dtype == "float64" and opt in ("rmsprop", "centered_rmsprop"):
        kw["epsilon"] = 1e-40  # the epsilon's placement (inside or outside the root) vanishes
    elif opt in ("rmsprop", "centered_rmsprop", "adam") and model not in (
            "softmax", "svm", "linear", "logistic", "mlp", "mlp_ln"):
        kw["epsilon"] = 1e-30
    if model == "mlp" and opt == "adam":
        lr = 1e-4
    if model == "lenet" and opt in ("rmsprop", "centered_rmsprop"):
        lr = 1e-3
    return TrainSpec(OptimizerSpec(opt, lr=lr, **kw), epochs=1, batch_size=BATCH, dtype=dtype)


def case_data(model: str, dtype: str):
    """(spec, the dataset, its first N_TRAIN training samples in the model's input shape, their
    labels)."""
    ds = load(DATASETS[model], dtype)
    spec = spec_for(model, ds)
    X, y = model_inputs(ds.X_train[:N_TRAIN], spec), ds.y_train[:N_TRAIN]
    return spec, ds, X, y


def case_id(model: str, opt: str, dtype: str) -> str:
    return f"{model}-{opt}-{dtype}"


# ----------------------------------------------------------------------------- the driver
#: Runs in one process of the keras2 environment: `python -c DRIVER PLAN.json`; writes what
#: the tests read (histories, predictions, details, messages) into the plan's directory.
DRIVER = r'''
import json, shutil, sys, time
import numpy as np
plan = json.load(open(sys.argv[1]))
out = {"seconds": {}}
clock = [time.perf_counter()]

def lap(name):                                # seconds per section, for the report
    now = time.perf_counter()
    out["seconds"][name] = round(now - clock[0], 2)
    clock[0] = now

import tensorflow                             # noqa: F401  (the import, timed on its own)
lap("import")
from zoo import worker
for job in plan["job_files"]:                 # zoo.worker's own run of each job file
    assert worker.run(job) == 0, job
lap("jobs")
from zoo.errors import ZooError
from zoo.frameworks import get
from zoo.specs import ModelSpec, TrainSpec
fw = get("keras2")
io, train = fw.module("io"), fw.module("train")

def arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}

def error(call):
    try:
        call()
    except ZooError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"

for task in plan["io"]:                       # HDF5 round trips and predictions
    spec = ModelSpec.from_dict(task["model"])
    io.save(spec, arrays(task["weights"]), task["path"])
    got_spec, got = io.load(task["path"])
    assert got_spec == spec
    np.savez(task["out"], predictions=train.predict(spec, got, arrays(task["X"])["X"]),
             **{"w:" + k: v for k, v in got.items()})
first, last = plan["io"][0], plan["io"][-1]   # files that must be refused
d = plan["dir"]
open(d + "/not_hdf5.h5", "wb").write(b"PK\x03\x04 a zip archive, not HDF5")
shutil.copy(first["path"] + ".json", d + "/not_hdf5.h5.json")
shutil.copy(first["path"], d + "/other.h5")
shutil.copy(last["path"] + ".json", d + "/other.h5.json")
out["refusals"] = {
    "not_hdf5": error(lambda: io.load(d + "/not_hdf5.h5")),
    "other_model": error(lambda: io.load(d + "/other.h5")),
    "exists": error(lambda: io.save(ModelSpec.from_dict(first["model"]),
                                    arrays(first["weights"]), first["path"])),
}
lap("io")
for task in plan["details"]:                  # one batch through Keras 2's autodiff
    spec = ModelSpec.from_dict(task["model"])
    a = arrays(task["in"])
    masks = [a[f"m{i}"] for i in range(sum(k.startswith("m") for k in a))] or None
    det = train.step_details(spec, {k[2:]: v for k, v in a.items() if k.startswith("w:")},
                             a["X"], a["y"], masks, task["l2"])
    np.savez(task["out"], logits=det["logits"], loss=det["loss"],
             **{"g:" + k: v for k, v in det["grads"].items()},
             **{"s:" + k: v for k, v in det["state"].items()})
lap("details")
r = plan["resume"]                            # interrupted after epoch 1, resumed
spec, ts = ModelSpec.from_dict(r["model"]), TrainSpec.from_dict(r["train"])
a = arrays(r["data"])
init = {k[2:]: v for k, v in a.items() if k.startswith("w:")}
whole = train.train(spec, ts, a["X"], a["y"], init)

class Interrupt(Exception):
    pass

def stop(epoch, step, loss):
    if epoch == 1:
        raise Interrupt

try:
    train.train(spec, ts, a["X"], a["y"], init, checkpoint_dir=r["dir"], progress=stop)
except Interrupt:
    pass
resumed = train.train(spec, ts, a["X"], a["y"], init, checkpoint_dir=r["dir"], resume=True)
out["resume"] = {"same": all(np.array_equal(whole.weights[k], resumed.weights[k])
                             for k in whole.weights),
                 "losses_same": bool(np.array_equal(whole.losses, resumed.losses)),
                 "steps": len(resumed.losses)}
lap("resume")
from zoo.cli import main                      # zoo train / convert in this process
c = plan["cli"]
out["cli"] = {"train": main(["train", "softmax", "--framework", "keras2", "--dataset", "iris",
                             "--epochs", "2", "--save", c["h5"]]),
              "to_npz": main(["convert", c["h5"], c["npz"]]),
              "to_h5": main(["convert", c["npz"], c["h5_again"]])}
lap("cli")
import tensorflow as tf                       # the defaults Keras 2 brings (measured)
bn = tf.keras.layers.BatchNormalization()
defaults = {"tf_keras": tf.keras.__name__, "bn_momentum": bn.momentum,
            "bn_epsilon": bn.epsilon, "gru_reset_after": tf.keras.layers.GRU(2).reset_after}
for name in ("SGD", "RMSprop", "Adam", "Adagrad"):
    new, old = getattr(tf.keras.optimizers, name)(), getattr(tf.keras.optimizers.legacy, name)()
    cfg, legacy = new.get_config(), old.get_config()
    defaults[name] = {k: float(cfg[k]) for k in ("learning_rate", "epsilon", "rho",
                                                 "initial_accumulator_value") if k in cfg}
    defaults[name]["legacy"] = {k: float(legacy[k]) for k in defaults[name] if k in legacy}
    defaults[name]["jit_compile"] = bool(new.jit_compile)
m = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
m.compile(loss="mse")
defaults["compile_jit_compile"] = m._jit_compile
out["defaults"] = defaults
from keras2_models.optimizers import make_optimizer   # legacy vs v2.11+, both translated
from zoo.optimizers import OptimizerSpec
out["legacy"] = {}
for name in plan["optimizers"]:
    for dtype in ("float32", "float64"):
        runs = []
        for legacy in (False, True):
            opt = make_optimizer(OptimizerSpec(name, lr=0.05), dtype, legacy=legacy)
            w = tf.Variable(np.zeros(3, dtype))
            target, scale = (tf.constant(np.array(v, dtype)) for v in ([1.0, -2.0, 0.5],
                                                                        [1.0, 0.3, 3.0]))
            path = []
            for _ in range(20):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(tf.square(w - target) * scale)
                opt.apply_gradients([(tape.gradient(loss, w), w)])
                path.append(w.numpy().copy())
            runs.append(np.array(path))
        out["legacy"][f"{name}-{dtype}"] = float(np.max(np.abs(runs[0] - runs[1])))
lap("defaults")
import types

import keras2_models                           # TensorFlow imported before the variable was set
out["tf_flag"] = tf._tf_uses_legacy_keras     # the flag the check reads (True here)
out["tf_first"] = error(lambda: keras2_models.check_process(
    modules={"tensorflow": types.SimpleNamespace(_tf_uses_legacy_keras=False)}))
import keras                                  # Keras 3 joins the process: refused from now on
out["beside_keras3"] = error(keras2_models.check_process)
lap("keras3")
json.dump(out, open(plan["results"], "w"))
'''


def _job(tmp: Path, key: str, model: str, opt: str, dtype: str) -> dict:
    """A `zoo.worker` job (the format `zoo.compare` writes) for one case."""
    spec, ds, X, y = case_data(model, dtype)
    ts = train_spec(model, opt, dtype)
    np.savez(tmp / f"{key}.data.npz", X_train=X, y_train=y,
             X_test=model_inputs(ds.X_test[:40], spec), y_test=ds.y_test[:40])
    np.savez(tmp / f"{key}.init.npz", **init_weights(spec, 2, dtype))
    return {"framework": "keras2", "model": spec.to_dict(), "train": ts.to_dict(),
            "data": str(tmp / f"{key}.data.npz"), "init": str(tmp / f"{key}.init.npz"),
            "out": str(tmp / f"{key}.out.npz"), "metrics": str(tmp / f"{key}.json"),
            "record_weights": 1}


def run_driver(tmp: Path, cases: list[tuple[str, str, str]], io_models=(), details=(),
               timeout: float = 1800) -> dict:
    """Run DRIVER once in the keras2 environment: a worker job per case (model, optimizer,
    dtype) and one for seed 002's divergence ("diverge"), HDF5 round trips of `io_models`
    (the first and last also make the files that must be refused), step details of `details`
    (model, dtype, l2), a resume, the CLI, Keras 2's defaults. Returns its results, with the
    keras2 History of each job under "histories" and the plan under "plan"."""
    jobs = {case_id(*c): _job(tmp, case_id(*c), *c) for c in cases}
    # seed 002's overshoot: linear regression on the whole ice-cream data, SGD lr 10
    ds = load("icecream")
    spec = spec_for("linear", ds)
    np.savez(tmp / "diverge.data.npz", X_train=ds.X_train, y_train=ds.y_train,
             X_test=ds.X_test, y_test=ds.y_test)
    np.savez(tmp / "diverge.init.npz", **init_weights(spec))
    jobs["diverge"] = {
        "framework": "keras2", "model": spec.to_dict(),
        "train": TrainSpec(OptimizerSpec("sgd", lr=10.0), epochs=5, batch_size=32).to_dict(),
        "data": str(tmp / "diverge.data.npz"), "init": str(tmp / "diverge.init.npz"),
        "out": str(tmp / "diverge.out.npz"), "metrics": str(tmp / "diverge.json"),
        "record_weights": 1}
    plan: dict = {"jobs": list(jobs.values()), "io": [], "details": [],
                  "results": str(tmp / "results.json"), "optimizers": list(OPTIMIZERS)}
    for model in io_models:
        spec, ds, _, _ = case_data(model, "float32")
        w = shifted_weights(spec)
        np.savez(tmp / f"io_{model}.w.npz", **w)
        np.savez(tmp / f"io_{model}.X.npz", X=model_inputs(ds.X_test[:50], spec))
        plan["io"].append({"model": spec.to_dict(), "weights": str(tmp / f"io_{model}.w.npz"),
                           "X": str(tmp / f"io_{model}.X.npz"), "path": str(tmp / f"{model}.h5"),
                           "out": str(tmp / f"io_{model}.out.npz")})
    plan["dir"] = str(tmp)
    for model, dtype, l2 in details:
        spec, ds, X, y = case_data(model, dtype)
        w = shifted_weights(spec, dtype=dtype)
        masks = dropout_masks(spec, len(X), 0, 0, 0, dtype)
        np.savez(tmp / f"d_{model}.in.npz", X=X, y=y, **{f"w:{k}": v for k, v in w.items()},
                 **{f"m{i}": m for i, m in enumerate(masks)})
        plan["details"].append({"model": spec.to_dict(), "in": str(tmp / f"d_{model}.in.npz"),
                                "out": str(tmp / f"d_{model}.out.npz"), "l2": l2})
    spec, _, X, y = case_data("mlp", "float32")            # shared masks and Adam's state
    np.savez(tmp / "resume.npz", X=X, y=y,
             **{f"w:{k}": v for k, v in init_weights(spec, 3).items()})
    plan["resume"] = {"model": spec.to_dict(), "data": str(tmp / "resume.npz"),
                      "dir": str(tmp / "ckpt"),
                      "train": dataclasses.replace(train_spec("mlp", "adam", "float32"),
                                                   epochs=3, batch_size=16).to_dict()}
    plan["cli"] = {"h5": str(tmp / "cli.h5"), "npz": str(tmp / "cli.npz"),
                   "h5_again": str(tmp / "cli_again.h5")}
    plan["job_files"] = []
    for key, job in jobs.items():
        (tmp / f"{key}.job.json").write_text(json.dumps(job))
        plan["job_files"].append(str(tmp / f"{key}.job.json"))
    (tmp / "plan.json").write_text(json.dumps(plan))
    r = subprocess.run([sys.executable, "-c", DRIVER, str(tmp / "plan.json")], cwd=tmp,
                       capture_output=True, text=True, timeout=timeout, env=KERAS2.environ())
    assert r.returncode == 0, r.stderr[-4000:]
    results = json.loads((tmp / "results.json").read_text())
    results["histories"] = {}
    for key, job in jobs.items():
        with np.load(job["out"]) as z:
            results["histories"][key] = History.from_npz_dict("keras2", {k: z[k] for k in z.files})
    results["plan"] = plan
    return results


def other_histories(model: str, opt: str, dtype: str) -> dict[str, History]:
    """The case trained here by keras, tf1, torch and the numpy reference (registry
    accessors), from the data, initial weights and batch order the keras2 job had."""
    spec, _, X, y = case_data(model, dtype)
    ts, init = train_spec(model, opt, dtype), init_weights(spec, 2, dtype)
    F.import_in_order(OTHERS)
    return {fw: F.get(fw).train(spec, ts, X, y, init, record_weights=True) for fw in OTHERS}


def assert_agrees(mine: History, others: dict[str, History], model: str, dtype: str, *,
                  within_their_spread: bool = False) -> dict:
    """Every step's loss and weights within the harness's tolerance of every other
    framework's, and the final weights within 1e-6 (float32) or 1e-12 (float64) of each
    (relative to the largest weight for the ice-cream and N(0, 1) models); returns the
    largest weight difference per framework.

    within_their_spread (the slow full matrix): where keras, tf1 and torch themselves end
    further apart than that (float32 RMSprop on the recurrent models at this toy size: a few
    gradients so small that the epsilon's placement, inside the root in Keras and TF1,
    outside in torch, decides their steps; measured up to 5.3e-6 between TF1 and torch),
    keras2 must stay within the tolerance of Keras 3 and no further from the float64
    reference than the furthest of them."""
    atol = TOLERANCES[dtype][0]
    bound = atol * (magnitude(mine.weights) if model in RELATIVE else 1.0)
    if within_their_spread:
        names = [n for n in others if n != "numpy"]
        spread = max(max_abs_diff(others[a].weights, others[b].weights)
                     for i, a in enumerate(names) for b in names[i + 1:])
        if spread > bound:
            worst = max(max_abs_diff(others[n].weights, others["numpy"].weights) for n in names)
            found = {fw: max_abs_diff(mine.weights, h.weights) for fw, h in others.items()}
            print(f"{model} {dtype}: keras, tf1 and torch part by {spread:.2g}, the furthest "
                  f"is {worst:.2g} from the reference")
            assert found["keras"] <= bound and found["numpy"] <= max(bound, worst), found
            return found
    found = {}
    for fw, h in others.items():
        assert len(mine.losses) == len(h.losses) == -(-N_TRAIN // BATCH), fw
        d = differences(mine, h, TOLERANCES[dtype])
        found[fw] = d.max_weight_diff
        assert d.max_weight_diff <= bound, (fw, d.max_weight_diff)
        assert d.first_divergent_step is None, (fw, d.first_divergent_step, d.max_loss_diff)
    return found


# ----------------------------------------------------------------------------- default run
@pytest.fixture(scope="module")
def keras2_run(tmp_path_factory) -> dict:
    """The one Keras 2 process of the default run: the matrix of DEFAULT_CASES, HDF5 round
    trips of one model per layer kind, step details, a resume, the CLI, Keras 2's defaults."""
    cases = [(m, o, dt) for m, pair in DEFAULT_CASES.items()
             for o, dt in zip(pair, ("float32", "float64"), strict=True)]
    return run_driver(tmp_path_factory.mktemp("keras2"), cases,
                      io_models=("mlp", "cnn_bn", "lstm", "embedding_gru"),
                      details=(("mlp", "float64", 0.01), ("cnn_bn", "float64", 0.0),
                               ("embedding_gru", "float64", 0.0)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", list(DEFAULT_CASES))
def test_one_epoch_agrees_with_every_framework(keras2_run, model, dtype):
    opt = DEFAULT_CASES[model][dtype == "float64"]
    mine = keras2_run["histories"][case_id(model, opt, dtype)]
    assert mine.step_weights and len(mine.step_weights) == len(mine.losses)
    assert all(v.dtype == np.dtype(dtype) for v in mine.weights.values())
    found = assert_agrees(mine, other_histories(model, opt, dtype), model, dtype)
    print(f"{model} {opt} {dtype}: " + ", ".join(f"{fw} {d:.2g}" for fw, d in found.items()))


def test_divergence_stops_where_every_framework_does(keras2_run):
    """Seed 002's lr 10 overshoots: the loss turns non-finite at step 13 (as in every
    framework, tests/test_divergence.py); training stops there and returns the weights that
    step started from (Keras 2 has applied its update by then: the copy kept before it)."""
    h = keras2_run["histories"]["diverge"]
    assert h.stopped_at == 13 and len(h.losses) == 14
    assert np.all(np.isfinite(h.losses[:13])) and not np.isfinite(h.losses[13])
    assert h.losses[12] > 1e30
    for name, value in h.weights.items():
        assert np.all(np.isfinite(value)) and np.array_equal(value, h.step_weights[12][name])


def test_the_worker_evaluates_as_the_reference(keras2_run):
    """The keras2 worker's test metrics (Keras 2's `evaluate`) for each float64 case equal the
    numpy reference's on the same weights."""
    from zoo import reference

    for model, (_, opt) in DEFAULT_CASES.items():
        key = case_id(model, opt, "float64")
        job = next(j for j in keras2_run["plan"]["jobs"] if j["out"].endswith(f"{key}.out.npz"))
        got = json.loads(Path(job["metrics"]).read_text())["metrics"]
        spec, ds, _, _ = case_data(model, "float64")
        want = reference.evaluate(spec, keras2_run["histories"][key].weights,
                                  model_inputs(ds.X_test[:40], spec), ds.y_test[:40])
        assert set(got) == set(want), key
        for k in want:
            assert abs(got[k] - want[k]) <= 1e-9 * max(1.0, abs(want[k])), (key, k)


def test_compare_runs_keras2_beside_the_other_frameworks():
    """The harness itself: `zoo.compare.compare` starts a keras2 worker in the registry's
    environment beside a torch worker and the numpy reference (cnn_bn: BatchNorm state,
    float64); the slow `test_compare_every_model` runs every framework for every model."""
    spec, ds, X, y = case_data("cnn_bn", "float64")
    sub = dataclasses.replace(ds, X_train=ds.X_train[:N_TRAIN], y_train=ds.y_train[:N_TRAIN],
                              X_test=ds.X_test[:40], y_test=ds.y_test[:40])
    comp = compare(spec, train_spec("cnn_bn", "momentum", "float64"), sub,
                   frameworks=["keras2", "torch", "numpy"], reference="numpy")
    for fw, r in comp.results.items():
        print(f"compare cnn_bn momentum float64: {fw} {r.max_weight_diff:.2g}")
        assert r.max_weight_diff <= 1e-12 and r.first_divergent_step is None, fw
    assert comp.results["keras2"].metrics == pytest.approx(comp.results["numpy"].metrics,
                                                           abs=1e-9)


def test_hdf5_round_trip(keras2_run):
    """save -> load gives the weights back bit for bit (BatchNorm state included), and Keras 2
    predicts from them what the numpy reference predicts within 1e-6."""
    from zoo import reference
    from zoo.specs import ModelSpec

    for task in keras2_run["plan"]["io"]:
        spec = ModelSpec.from_dict(task["model"])
        with np.load(task["weights"]) as z:
            want = {k: z[k] for k in z.files}
        with np.load(task["out"]) as z:
            got = {k[2:]: z[k] for k in z.files if k.startswith("w:")}
            pred = z["predictions"]
        assert list(got) == list(want), spec.name
        for k in want:
            assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), (spec.name, k)
        with np.load(task["X"]) as z:
            ref_pred = reference.predict(spec, want, z["X"])
        assert float(np.max(np.abs(pred - ref_pred))) <= 1e-6, spec.name
        # the file is Keras 2's own: HDF5 weights under Keras 2's variable names
        import h5py

        with h5py.File(task["path"], "r") as f:
            layers = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        assert layers == [r.name for r in spec.resolved]
        assert json.loads(Path(task["path"] + ".json").read_text())["format"] == "keras2"


def test_bad_files_are_refused_with_the_fix(keras2_run):
    bad = keras2_run["refusals"]
    assert bad["not_hdf5"].startswith("DataError: ") and "is not an HDF5 file; pass Keras 2 " \
        "weights written by `model.save_weights('model.h5')`" in bad["not_hdf5"]
    assert bad["other_model"].startswith("DataError: ") and "does not hold the weights of its " \
        "sidecar's model 'embedding_gru': the file has layers dense_0 (kernel, bias); dense_1" \
        in bad["other_model"], bad["other_model"]
    assert "belong to different models" in bad["other_model"]
    assert bad["exists"].startswith("ConfigError: ") and "already exists; pass --force" \
        in bad["exists"]


def test_step_details_equal_the_reference(keras2_run):
    """One batch through Keras 2's own autodiff (shared dropout masks and an L2 term; BatchNorm
    in training mode; an embedding's sparse gradient made dense) equals the float64
    reference's logits, loss, gradients and moving statistics within 1e-12."""
    from zoo import reference
    from zoo.specs import ModelSpec

    for task in keras2_run["plan"]["details"]:
        spec = ModelSpec.from_dict(task["model"])
        with np.load(task["in"]) as z:
            a = {k: z[k] for k in z.files}
        masks = [a[f"m{i}"] for i in range(sum(k.startswith("m") for k in a))] or None
        want = reference.step_details(spec, {k[2:]: v for k, v in a.items()
                                             if k.startswith("w:")}, a["X"], a["y"], masks,
                                      task["l2"])
        with np.load(task["out"]) as z:
            got = {k: z[k] for k in z.files}
        assert abs(float(got["loss"]) - want["loss"]) <= 1e-12, spec.name
        assert float(np.max(np.abs(got["logits"] - want["logits"]))) <= 1e-12, spec.name
        for kind, key in (("g", "grads"), ("s", "state")):
            assert sorted(k[2:] for k in got if k.startswith(f"{kind}:")) == sorted(want[key])
            for k, v in want[key].items():
                assert float(np.max(np.abs(got[f"{kind}:{k}"] - v))) <= 1e-12, (spec.name, k)


def test_resume_is_bit_for_bit(keras2_run):
    """Interrupted after its first epoch's checkpoint and resumed: the same weights and losses
    as an uninterrupted run (shared masks, Adam's moments and step counter restored)."""
    assert keras2_run["resume"] == {"same": True, "losses_same": True, "steps": 15}


def test_zoo_train_and_convert_in_a_keras2_process(keras2_run):
    """`zoo train --framework keras2 --save X.h5` and `zoo convert` both ways, in a process
    with the keras2 environment; the three files hold the same weights."""
    assert keras2_run["cli"] == {"train": 0, "to_npz": 0, "to_h5": 0}
    c = keras2_run["plan"]["cli"]
    import h5py

    with np.load(c["npz"]) as z:
        npz = {k: z[k] for k in z.files}
    for path in (c["h5"], c["h5_again"]):
        with h5py.File(path, "r") as f:
            assert np.array_equal(f["dense_0"]["dense_0"]["kernel:0"][()],
                                  npz["dense_0/kernel"])


def test_keras2_defaults_as_measured(keras2_run):
    """What Keras 2 brings when nothing is passed (the translation passes everything anyway):
    Keras 3's BatchNorm momentum and epsilon, reset_after=True for tf.keras.layers.GRU,
    Keras 3's optimizer defaults in the v2.11+ and the legacy classes (lr, epsilon 1e-7, rho
    0.9, Adagrad's 0.1), and no XLA on a CPU machine (the optimizers ask for jit_compile but
    turn it off without a GPU; `compile` leaves it unset)."""
    d = keras2_run["defaults"]
    assert d["tf_keras"].startswith("tf_keras")
    assert (d["bn_momentum"], d["bn_epsilon"], d["gru_reset_after"]) == (0.99, 1e-3, True)
    want = {"SGD": {"learning_rate": 0.01}, "RMSprop": {"learning_rate": 1e-3, "rho": 0.9,
                                                       "epsilon": 1e-7},
            "Adam": {"learning_rate": 1e-3, "epsilon": 1e-7},
            "Adagrad": {"learning_rate": 1e-3, "epsilon": 1e-7,
                        "initial_accumulator_value": 0.1}}
    for name, values in want.items():
        got = d[name]
        assert {k: pytest.approx(v) for k, v in values.items()} == \
            {k: got[k] for k in values}, name
        assert got["legacy"] == pytest.approx({k: got[k] for k in got["legacy"]}), name
        assert got["jit_compile"] is False
    assert d["compile_jit_compile"] is None
    from zoo.optimizers import native_defaults_kwargs

    for name in OPTIMIZERS:   # the zoo's record of Keras 2's defaults is Keras 3's
        assert native_defaults_kwargs(name, 0.1, "keras2") == \
            native_defaults_kwargs(name, 0.1, "keras")


def test_legacy_optimizers_agree_once_translated(keras2_run):
    """`tf.keras.optimizers.legacy` (Keras 2 before 2.11: TF's fused training ops) against the
    v2.11+ classes, both from the zoo's translation, 50 steps of a quadratic: within float32
    rounding in float32, 1e-12 in float64, for every optimizer."""
    for key, diff in keras2_run["legacy"].items():
        name, dtype = key.rsplit("-", 1)
        assert diff <= (1e-6 if dtype == "float32" else 1e-12), (key, diff)
    assert len(keras2_run["legacy"]) == 2 * len(OPTIMIZERS)


# ----------------------------------------------------------------------------- the process
def _python(code: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_the_registry_entry():
    from zoo import interchange

    assert KERAS2.package == "keras2_models" and KERAS2.imports == ("tensorflow", "tf_keras")
    assert dict(KERAS2.env) == {"TF_USE_LEGACY_KERAS": "1"}
    assert (KERAS2.suffix, KERAS2.weight_format, KERAS2.cli_train) == (".h5", "keras2", True)
    assert not KERAS2.compared_by_default and "keras2" not in F.DEFAULT_COMPARE
    assert F.for_format("keras2") is KERAS2 and interchange.FORMATS[".h5"] == "keras2"
    assert KERAS2.environ({})["TF_USE_LEGACY_KERAS"] == "1"
    # the keras2 column of the weight tables is the keras one (zoo.layers.COLUMN_ALIASES)
    spec = case_data("lstm", "float32")[0]
    from zoo.layers import tensor_specs

    for t in tensor_specs(spec.resolved):
        assert t.native_names("keras2") == t.native_names("keras")
        assert t.layout("keras2") is t.layout("keras")


def test_importing_the_zoo_never_sets_the_legacy_variable():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = str(ROOT)
    r = _python("import os, zoo, zoo.frameworks as F, zoo.compare, zoo.interchange, "
                "zoo.porting; F.get('keras2').environ(); "
                "print(os.environ.get('TF_USE_LEGACY_KERAS'))", env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "None"


def test_import_refused_without_the_legacy_variable():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    r = _python("import sys, keras2_models.train", env)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("zoo.errors.ConfigError: keras2_models runs Keras 2 (tf_keras) and "
                           "needs TF_USE_LEGACY_KERAS=1 in the environment before TensorFlow is "
                           "imported (it is None here); run it through the zoo"), last
    assert "tensorflow" not in r.stderr  # refused before anything heavy is imported


def test_zoo_train_keras2_from_a_keras3_shell_runs_in_its_own_process():
    """`zoo train --framework keras2` in a process without TF_USE_LEGACY_KERAS: the CLI starts
    itself again with it (zoo.cli), so the command simply works."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "zoo", "train", "softmax", "--framework", "keras2",
                        "--dataset", "iris", "--epochs", "1"], capture_output=True, text=True,
                       timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("keras2 softmax on iris: 4 steps"), r.stdout


def test_import_refused_beside_keras3(keras2_run):
    """Keras 3 imported into a Keras 2 process (the driver's last step): keras2_models's check
    (the one its import runs) refuses, naming both."""
    assert keras2_run["beside_keras3"].startswith(
        "ConfigError: mixing both Keras versions in one process: Keras 3 (the `keras` package) "
        "is already imported here, and keras2_models runs Keras 2 (tf_keras)"), \
        keras2_run["beside_keras3"]


def test_import_refused_when_tensorflow_came_first(keras2_run):
    """TensorFlow reads TF_USE_LEGACY_KERAS at its own import (and imports Keras 3 without it):
    a process that set the variable only afterwards is refused, naming the fix; the flag the
    check reads is TensorFlow's own (True in a Keras 2 process)."""
    assert keras2_run["tf_flag"] is True
    assert keras2_run["tf_first"] == (
        "ConfigError: TensorFlow was imported in this process before TF_USE_LEGACY_KERAS=1 was "
        "set, so its `tf.keras` is not Keras 2 throughout; set the variable before Python "
        "starts (`TF_USE_LEGACY_KERAS=1 python ...`) or run keras2_models through the zoo "
        "(`zoo compare MODEL --frameworks keras2,...`).")


def test_driver_seconds(keras2_run):
    """Where the Keras 2 process's time goes (printed for the record; a bound keeps the
    default run's one process from growing unnoticed)."""
    seconds = keras2_run["seconds"]
    print("keras2 driver seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    assert sum(seconds.values()) < 240


# ----------------------------------------------------------------------------- slow
SLOW_CASES = [(m, o, dt) for m in DATASETS for o in OPTIMIZERS for dt in ("float32", "float64")]


@pytest.fixture(scope="module")
def keras2_matrix(tmp_path_factory) -> dict:
    return run_driver(tmp_path_factory.mktemp("keras2_matrix"), SLOW_CASES,
                      io_models=("mlp", "embedding_gru"), details=())


@pytest.mark.slow
@pytest.mark.parametrize("model", list(DATASETS))
def test_every_optimizer_both_dtypes(keras2_matrix, model):
    """The full matrix: every model with every optimizer in float32 and float64 (where the
    other frameworks part by more than the tolerance themselves, see `assert_agrees`)."""
    for _, opt, dtype in (c for c in SLOW_CASES if c[0] == model):
        mine = keras2_matrix["histories"][case_id(model, opt, dtype)]
        found = assert_agrees(mine, other_histories(model, opt, dtype), model, dtype,
                              within_their_spread=True)
        print(f"{model} {opt} {dtype}: " + ", ".join(f"{fw} {d:.2g}" for fw, d in found.items()))


@pytest.mark.slow
@pytest.mark.parametrize("model", list(DATASETS))
def test_compare_every_model(model):
    """`zoo.compare.compare` with every framework, each model, its float32 default-run
    optimizer: the harness's own agreement verdict."""
    opt = DEFAULT_CASES[model][0]
    spec, ds, _, _ = case_data(model, "float32")
    sub = dataclasses.replace(ds, X_train=ds.X_train[:N_TRAIN], y_train=ds.y_train[:N_TRAIN],
                              X_test=ds.X_test[:40], y_test=ds.y_test[:40])
    comp = compare(spec, train_spec(model, opt, "float32"), sub,
                   frameworks=["keras2", "keras", "tf1", "torch", "numpy"], reference="keras2")
    scale = magnitude(comp.results["keras2"].history.weights) if model in RELATIVE else 1.0
    for fw, r in comp.results.items():
        assert r.max_weight_diff <= 1e-6 * scale and r.first_divergent_step is None, fw
