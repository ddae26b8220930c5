"""Recording every step's weights in each framework: the rows a framework keeps in its own
layout (torch's `zoo.specs.RowRecorder` scratch, TF1's `record/` ring variables) are moved into
the canonical storage when full and at each epoch's end, and the record is the same whatever the scratch size
(`zoo.specs.SCRATCH_ROWS`), bit for bit. The legacy columns (tf1-layers through a
`RowRecorder`, keras2 through the in-graph `keras2_models.train.StepCopies`) run in processes of
their own environment and are checked against their weights read step by step."""

from __future__ import annotations

import numpy as np
import pytest

from zoo import data, specs
from zoo.optimizers import OptimizerSpec
from zoo.specs import StepWeights, TrainSpec, init_weights, model_spec_for


@pytest.mark.parametrize("fw", ["torch", "tf1"])
def test_scratch_rows_moved_when_full_keep_the_record_exact(fw, monkeypatch):
    """iris at batch 8: 15 steps an epoch, 2 epochs; scratch of 4 rows (moved three times an
    epoch and at its end) against the default (one move an epoch)."""
    import importlib

    mod = importlib.import_module({"torch": "torch_models.train", "tf1": "tf1_compat.train"}[fw])
    ds = data.load("iris")
    spec = model_spec_for("mlp", ds.n_features, ds.n_outputs)
    ts = TrainSpec(OptimizerSpec("momentum", lr=0.05, momentum=0.9), epochs=2, batch_size=8)
    init = init_weights(spec, 0, "float32")
    whole = mod.train(spec, ts, ds.X_train, ds.y_train, init, record_weights=True)
    monkeypatch.setattr(specs, "SCRATCH_ROWS", 4)     # torch's scratch, TF1's ring rows
    small = mod.train(spec, ts, ds.X_train, ds.y_train, init, record_weights=True)
    strided = mod.train(spec, ts, ds.X_train, ds.y_train, init, record_weights=2)
    assert isinstance(small.step_weights, StepWeights)
    assert len(whole.step_weights) == len(small.step_weights) == 30
    for k, v in whole.step_weights.tensors.items():
        np.testing.assert_array_equal(small.step_weights.tensors[k], v)
        np.testing.assert_array_equal(strided.step_weights.tensors[k], v[1::2])
    np.testing.assert_array_equal(small.losses, whole.losses)
    for k, v in whole.weights.items():   # the last record is the final weights
        np.testing.assert_array_equal(whole.step_weights[29][k], v)


# ----------------------------------------------------------------------------- legacy columns
def test_tf1_ring_of_one_row_keeps_the_record_exact(monkeypatch):
    """TF1 copies each recorded step's weights into `record/` rings inside the step's run and
    fetches them a block at a time (`tf1_compat.train.Ring`): with blocks capped at one row
    (RING_FETCH_MB below one row's size) every step's fetch comes before the next step's copy,
    and the record equals the default's, bit for bit, every step and the final weights."""
    import tf1_compat.train as mod

    ds = data.load("iris")
    spec = model_spec_for("mlp", ds.n_features, ds.n_outputs)
    ts = TrainSpec(OptimizerSpec("adam", lr=0.01), epochs=2, batch_size=8)
    init = init_weights(spec, 0, "float32")
    whole = mod.train(spec, ts, ds.X_train, ds.y_train, init, record_weights=True)
    monkeypatch.setattr(mod, "RING_FETCH_MB", 1e-6)
    one = mod.train(spec, ts, ds.X_train, ds.y_train, init, record_weights=True)
    assert len(one.step_weights) == 30
    for k, v in whole.step_weights.tensors.items():
        np.testing.assert_array_equal(one.step_weights.tensors[k], v)
    for k, v in whole.weights.items():
        np.testing.assert_array_equal(one.step_weights[29][k], v)


#: Runs in a process of the column's own environment (tf1-layers and keras2 need
#: TF_USE_LEGACY_KERAS=1 before TensorFlow is imported, and no Keras 3 in the process):
#: `python -c LEGACY_DRIVER PLAN.json`. Each case is trained at three settings, (scratch rows,
#: stride): (the default, 1), (4, 1), (4, 2), with `zoo.specs.SCRATCH_ROWS` set as the other
#: tests monkeypatch it; `progress` reads the model's canonical weights after every step (the
#: column's own `get_weights`: `from_native` of the variables), the reference the record must
#: equal. Writes OUT.npz (sw:, ref:, w:, losses per run) and OUT.json (what the record is).
LEGACY_DRIVER = r'''
import json, sys
import numpy as np
import zoo.specs
from zoo.specs import ModelSpec, StepWeights, TrainSpec
plan = json.load(open(sys.argv[1]))
if plan["framework"] == "tf1-layers":
    import tf1_layers.train as mod
    def weights_of(model):
        return model.get_weights()
else:
    import keras2_models.train as mod
    from keras2_models.model import get_weights as weights_of
built = []
real_build = mod.build
def build(*args, **kwargs):          # the model a run trains, to read it after every step
    built.append(real_build(*args, **kwargs))
    return built[-1]
mod.build = build
default = zoo.specs.SCRATCH_ROWS
arrays, meta = {}, {}
for case in plan["cases"]:
    spec, ts = ModelSpec.from_dict(case["model"]), TrainSpec.from_dict(case["train"])
    with np.load(case["data"]) as z:
        X, y = z["X"], z["y"]
        init = {k[2:]: z[k] for k in z.files if k.startswith("w:")}
    for scratch, every in ((default, 1), (4, 1), (4, 2)):
        zoo.specs.SCRATCH_ROWS = scratch
        built.clear()
        read = []
        h = mod.train(spec, ts, X, y, init, record_weights=every,
                      progress=lambda e, s, loss: read.append(weights_of(built[-1])))
        key = f"{case['name']}-{scratch}-{every}"
        sw = h.step_weights
        meta[key] = {"type": type(sw).__name__, "len": len(sw), "capacity": sw.capacity,
                     "names": list(sw.names), "steps": len(h.losses), "every": every}
        arrays.update({f"{key}|sw:{k}": v for k, v in sw.tensors.items()})
        arrays.update({f"{key}|ref:{k}": np.stack([r[k] for r in read]) for k in read[0]})
        arrays.update({f"{key}|w:{k}": v for k, v in h.weights.items()})
        arrays[f"{key}|losses"] = h.losses
zoo.specs.SCRATCH_ROWS = default
np.savez(plan["out"] + ".npz", **arrays)
json.dump({"default": default, "runs": meta}, open(plan["out"] + ".json", "w"))
'''

#: model -> dataset of the legacy cases: a dense model, the MLP with its dropout (shared masks:
#: Keras 2 trains the masked model) and a recurrent one (for tf1-layers the LSTM is above
#: CONCAT_BELOW: fetched variable by variable; the other two are fetched concatenated)
LEGACY_CASES = {"softmax": "iris", "mlp": "iris", "lstm": "digits"}


@pytest.mark.parametrize("fw", ["tf1-layers", "keras2"])
def test_legacy_columns_record_every_step_exactly(fw, tmp_path):
    """72 samples at batch 8, 2 epochs: 9 steps an epoch, 18 in all. The record is a
    `StepWeights` allocated for the whole run, equal bit for bit to the weights read step by
    step, whatever the scratch size (4 rows: moved when full, several times an epoch, and at
    each epoch's end) and at stride 2; its last entry is the final weights."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from helpers import load, model_inputs, spec_for

    from zoo import frameworks as F

    plan = {"framework": fw, "out": str(tmp_path / "out"), "cases": []}
    ts = TrainSpec(OptimizerSpec("adam", lr=0.01), epochs=2, batch_size=8)
    for model, name in LEGACY_CASES.items():
        ds = load(name)
        spec = spec_for(model, ds)
        X, y = model_inputs(ds.X_train[:72], spec), ds.y_train[:72]
        path = tmp_path / f"{model}.npz"
        np.savez(path, X=X, y=y, **{f"w:{k}": v for k, v in init_weights(spec, 1).items()})
        plan["cases"].append({"name": model, "model": spec.to_dict(), "train": ts.to_dict(),
                              "data": str(path)})
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-c", LEGACY_DRIVER, str(tmp_path / "plan.json")],
                       cwd=root, capture_output=True, text=True, timeout=600,
                       env=F.get(fw).environ())
    assert r.returncode == 0, r.stderr[-4000:]
    result = json.loads((tmp_path / "out.json").read_text())
    runs, default = result["runs"], result["default"]
    assert default == specs.SCRATCH_ROWS > 4
    with np.load(tmp_path / "out.npz") as z:
        got = {k: z[k] for k in z.files}

    def part(key: str, what: str) -> dict[str, np.ndarray]:
        prefix = f"{key}|{what}:"
        return {k[len(prefix):]: v for k, v in got.items() if k.startswith(prefix)}

    for model in LEGACY_CASES:
        whole = f"{model}-{default}-1"
        for key in (whole, f"{model}-4-1", f"{model}-4-2"):
            m = runs[key]
            every = m["every"]
            assert m["type"] == "StepWeights", (key, m)
            assert m["steps"] == 18 and m["len"] == m["capacity"] == 18 // every, (key, m)
            sw, ref = part(key, "sw"), part(key, "ref")
            assert m["names"] == list(sw) == list(ref) == list(part(key, "w")), key
            for k, v in sw.items():   # the record: the weights read after steps every-1, ...
                assert len(ref[k]) == 18
                np.testing.assert_array_equal(v, ref[k][every - 1::every], err_msg=f"{key} {k}")
                np.testing.assert_array_equal(v[-1], part(key, "w")[k], err_msg=f"{key} {k}")
            # the same run whatever the scratch size or the stride
            np.testing.assert_array_equal(got[f"{key}|losses"], got[f"{whole}|losses"])
            for k, v in part(whole, "sw").items():
                np.testing.assert_array_equal(sw[k], v[every - 1::every], err_msg=f"{key} {k}")
