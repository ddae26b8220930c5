"""The comparison harness: alignment, first divergence, reports, the one runner of framework
processes, and the `zoo compare` CLI.

Fast tests use the float64 numpy reference as a "framework" (a worker process each); the
cross-framework acceptance tests run keras, tf1 and torch on iris (softmax) and on the digits
images (cnn)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from zoo import compare as cmp
from zoo import data, report
from zoo import frameworks as F
from zoo.errors import ConfigError, UnknownNameError
from zoo.optimizers import OptimizerSpec
from zoo.specs import History, TrainSpec, model_spec_for


def _result(name, losses, weights, step_weights=None):
    h = History(name, np.asarray(losses, float), weights, [0.1], step_weights)
    return cmp.FrameworkResult(name, h, {"accuracy": 1.0}, 0.0, 0.0)


def test_align_finds_first_divergent_step():
    w = {"dense_0/kernel": np.zeros((2, 2)), "dense_0/bias": np.zeros(2)}
    steps = [{k: v + i for k, v in w.items()} for i in range(5)]
    bad = [{k: v.copy() for k, v in s.items()} for s in steps]
    bad[3]["dense_0/bias"][1] += 1e-3  # the weights after step 3 drift
    res = {"a": _result("a", [1, 2, 3, 4, 5], steps[-1], steps),
           "b": _result("b", [1, 2, 3, 4, 5 + 1e-8], bad[-1], bad)}
    cmp.align(res, "a", (1e-6, 0.0))
    assert res["a"].first_divergent_step is None and res["a"].max_weight_diff == 0.0
    assert res["b"].first_divergent_step == 3
    assert res["b"].max_loss_diff == pytest.approx(1e-8)
    np.testing.assert_allclose(res["b"].weight_diff, [0, 0, 0, 1e-3, 0], atol=1e-15)


def test_align_flags_loss_divergence_first():
    w = {"k": np.zeros(1)}
    res = {"a": _result("a", [1.0, 1.0, 1.0], w), "b": _result("b", [1.0, 1.1, 1.0], w)}
    cmp.align(res, "a", (1e-6, 1e-5))
    assert res["b"].first_divergent_step == 1


def test_parse_frameworks_errors():
    with pytest.raises(UnknownNameError, match=r"unknown framework 'pytorch'\..*Known frameworks"):
        cmp.parse_frameworks("keras,pytorch")
    with pytest.raises(ConfigError, match="named twice"):
        cmp.parse_frameworks("keras,keras")


def _numpy_comparison(**train_kw):
    ds = data.load("iris")
    ms = model_spec_for("softmax", ds.n_features, ds.n_outputs)
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.5), epochs=2, **train_kw)
    return cmp.compare(ms, ts, ds, frameworks=["numpy"])


def test_compare_numpy_worker_matches_in_process_reference():
    from zoo import reference

    comp = _numpy_comparison()
    ds = data.load("iris")
    ms = model_spec_for("softmax", ds.n_features, ds.n_outputs)
    from zoo.specs import init_weights

    h = reference.train(ms, comp.train, ds.X_train, ds.y_train, init_weights(ms, 0, "float32"))
    np.testing.assert_array_equal(comp.results["numpy"].history.losses, h.losses)
    assert len(h.losses) == 2 * 4  # 120 samples, batch 32: 4 steps per epoch


def test_reports_written_and_never_overwritten(tmp_path):
    comp = _numpy_comparison()
    paths = report.write_all(comp, tmp_path)
    assert [p.name for p in paths] == list(report.REPORT_FILES)
    d = json.loads((tmp_path / "report.json").read_text())
    f = d["frameworks"]["numpy"]
    for key in ("final_loss", "test_metric", "seconds_per_epoch", "max_loss_diff",
                "max_weight_diff", "first_divergent_step"):
        assert key in f
    assert d["reference"] == "numpy" and d["tolerance"] == 1e-6 and len(f["losses"]) == 8
    assert d["split"] == "seeded (seed 0, 0.2 held out, stratified by class)"
    assert "Split: seeded (seed 0, 0.2 held out, stratified by class)." in \
        (tmp_path / "summary.md").read_text()
    assert (tmp_path / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"
    before = (tmp_path / "summary.md").read_text()
    with pytest.raises(ConfigError, match="already exist.*pass --force"):
        report.write_all(comp, tmp_path)
    assert (tmp_path / "summary.md").read_text() == before
    report.write_all(comp, tmp_path, force=True)
    # readable like any file the user writes (mkstemp alone would leave them 0600)
    assert {p.stat().st_mode & 0o777 for p in paths} == {0o644}


def test_difference_plot_marks_equal_steps_and_the_first_divergence():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = {"dense_0/kernel": np.zeros((2, 2)), "dense_0/bias": np.zeros(2)}
    steps = [{k: v + i for k, v in w.items()} for i in range(5)]
    bad = [{k: v.copy() for k, v in s.items()} for s in steps]
    bad[3]["dense_0/bias"][1] += 1e-3
    res = {"a": _result("a", [1, 2, 3, 4, 5], steps[-1], steps),
           "b": _result("b", [1, 2, 3, 4, 5 + 1e-8], bad[-1], bad)}
    cmp.align(res, "a", (1e-6, 0.0))
    comp = cmp.Comparison(model_spec_for("softmax", 2, 2), TrainSpec(OptimizerSpec("sgd", lr=0.1)),
                          "toy", "a", (1e-6, 0.0), res)
    fig = report._diff_figure(comp, plt)
    loss_ax, weight_ax = fig.axes
    (loss_line,) = [ln for ln in loss_ax.get_lines() if ln.get_label() == "b"]
    floor = loss_line.get_ydata()[0]  # equal losses sit on the floor, below every difference
    assert floor < 1e-8 / 10 and list(loss_line.get_ydata()) == [floor] * 4 + [pytest.approx(1e-8)]
    vlines = [ln for ln in weight_ax.get_lines() if list(ln.get_xdata()) == [3, 3]]
    assert len(vlines) == 1  # the first divergent step, 3
    assert [t.get_text() for t in loss_ax.texts] == [" 0 (equal)"]
    plt.close(fig)


def zoo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("args,message", [
    (["compare", "softmx", "--dataset", "iris"], "unknown model 'softmx'. Did you mean 'softmax'?"),
    (["compare", "softmax", "--dataset", "iris", "--frameworks", "kears"], "unknown framework 'kears'. Did you mean 'keras'?"),
    (["compare", "softmax", "--dataset", "iris", "--optimizer", "adamw"], "unknown optimizer 'adamw'. Did you mean 'adam'?"),
    (["compare", "softmax", "--dataset", "iris", "--lr", "-1"], "learning rate must be a positive finite number, got -1.0"),
    (["compare", "softmax", "--dataset", "iris", "--lr", "nan"], "learning rate must be a positive finite number, got nan"),
    (["compare", "softmax", "--dataset", "iris", "--epochs", "0"], "epochs must be an integer >= 1, got 0"),
    (["compare", "softmax", "--dataset", "iris", "--batch-size", "0"], "batch size must be at least 1, got 0"),
    (["compare", "linear", "--dataset", "iris"], "model 'linear' is a regression model"),
    (["compare", "logistic", "--dataset", "iris"], "model 'logistic' needs a binary task"),
    (["compare", "softmax"], "name a dataset with --dataset NAME"),
    (["compare", "softmax", "--dataset", "iris", "--record-every", "0"],
     "zoo compare: error: --record-every must be 'auto' or an integer >= 1, got '0'."),
    (["compare", "softmax", "--dataset", "iris", "--record-every", "4", "--diagnose"],
     "zoo compare: error: --diagnose needs the weights after every step, not every 4 steps; "
     "drop --record-every or pass --record-every 1."),
], ids=["model", "framework", "optimizer", "lr", "lr-nan", "epochs", "batch", "task", "binary",
        "no-data", "record-every", "diagnose-stride"])
def test_compare_cli_errors(args, message):
    r = zoo(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- weight records
@pytest.mark.parametrize("fw", ["numpy", "keras", "tf1", "torch"])
def test_weights_recorded_at_a_stride(fw):
    """record_weights=k keeps the snapshots after global steps k-1, 2k-1, ...: exactly the
    every-step snapshots at those steps."""
    mod = F.get(fw).module("train")
    ds = data.load("iris")
    ms = model_spec_for("softmax", ds.n_features, ds.n_outputs)
    ts = TrainSpec(OptimizerSpec("adam", lr=0.01), epochs=2)  # 8 steps
    from zoo.specs import init_weights

    init = init_weights(ms, 0)
    every = mod.train(ms, ts, ds.X_train, ds.y_train, init, record_weights=True)
    third = mod.train(ms, ts, ds.X_train, ds.y_train, init, record_weights=3)
    assert (every.weights_every, third.weights_every) == (1, 3)
    assert third.recorded_steps().tolist() == [2, 5] and len(every.step_weights) == 8
    for got, want in zip(third.step_weights, every.step_weights[2::3], strict=True):
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    back = History.from_npz_dict(fw, third.to_npz_dict())
    assert back.weights_every == 3 and len(back.step_weights) == 2


def test_record_plan_keeps_the_weights_within_the_budget():
    ds = data.load("digits")
    ms = model_spec_for("mlp", ds.n_features, ds.n_outputs)  # 6,570 parameters
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=20)  # 45 steps an epoch: 900
    plan = cmp.record_plan(ms, ts, len(ds.X_train), ["keras", "tf1", "torch", "numpy"])
    assert plan.every == 1 and plan.steps == 900  # 900 * 6,570 * (4+4+4+8) bytes = 113 MB
    assert plan.full_mb == pytest.approx(900 * 6570 * 20 / 2**20)
    small = cmp.record_plan(ms, ts, len(ds.X_train), ["keras", "tf1", "torch", "numpy"],
                            budget_mb=10.0)
    assert small.every == 12 and "within 12 steps" in small.note()
    assert cmp.record_plan(ms, ts, len(ds.X_train), ["keras"], record_weights=5).every == 5
    assert cmp.record_plan(ms, ts, len(ds.X_train), ["keras"], record_weights=False).every == 0


def test_compare_over_budget_records_at_a_stride_and_says_so():
    ds = data.load("iris")
    ms = model_spec_for("softmax", ds.n_features, ds.n_outputs)
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.5), epochs=5)  # 20 steps of 15 weights
    budget = 20 * 15 * (4 + 8) / 2**20 / 3.5  # all steps need 3.5 budgets: every 4th step
    comp = cmp.compare(ms, ts, ds, frameworks=["numpy", "torch"], record_budget_mb=budget)
    r = comp.results["torch"]
    assert r.history.weights_every == 4 and r.weight_steps.tolist() == [3, 7, 11, 15, 19]
    assert len(r.weight_diff) == 5 and r.max_weight_diff < 1e-6
    assert any(n.startswith("weights recorded every 4 steps, not after each step") for n in comp.notes)
    assert comp.to_json()["frameworks"]["torch"]["weights_every"] == 4
    from zoo.diagnose import diagnose

    with pytest.raises(ConfigError, match=r"^the diagnosis needs the weights after every step, "
                       r"but they were recorded every 4 steps"):
        diagnose(ms, ts, ds.X_train, ds.y_train, comp.init, comp.results["numpy"].history,
                 _shifted(r.history), None, None)


def _shifted(h: History) -> History:
    """A copy of `h` whose last loss is off, so a diagnosis has a divergence to look at."""
    import dataclasses

    losses = np.array(h.losses, copy=True)
    losses[-1] += 1.0
    return dataclasses.replace(h, losses=losses)


def test_compare_cli_points_at_the_diagnosis_when_a_framework_parts(tmp_path):
    out = tmp_path / "r.json"
    r = zoo("compare", "mlp", "--dataset", "iris", "--frameworks", "numpy,torch", "--optimizer",
            "adam", "--lr", "0.05", "--epochs", "40", "--json", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    step = rep["frameworks"]["torch"]["first_divergent_step"]
    assert step is not None  # float32 torch against the float64 reference, Adam at lr 0.05
    assert f"torch at step {step} left the reference beyond the tolerance; --diagnose names " \
        "the first quantity that differs and tells rounding (drift, a ReLU kink) from a " \
        "different computation." in rep["notes"]


def test_compare_cli_starts_from_init_weights(tmp_path):
    """`zoo compare ... --init W.npz`: every framework starts from the file's weights (here
    the numpy reference in its worker, equal bit for bit to the reference in this process)."""
    from zoo import interchange, reference

    ds = data.load("iris")
    ms = model_spec_for("softmax", ds.n_features, ds.n_outputs)
    start = {k: v + 0.25 for k, v in cmp.init_weights(ms, 7).items()}
    interchange.save("npz", ms, start, tmp_path / "start.npz")
    r = zoo("compare", "softmax", "--dataset", "iris", "--frameworks", "numpy", "--epochs", "1",
            "--init", str(tmp_path / "start.npz"), "--json", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    losses = json.loads((tmp_path / "r.json").read_text())["frameworks"]["numpy"]["losses"]
    want = reference.train(ms, TrainSpec(OptimizerSpec("sgd", lr=0.5)), ds.X_train, ds.y_train,
                           start).losses
    assert losses == [float(v) for v in want] and len(losses) == 4


def test_compare_cli_refuses_to_overwrite_before_training(tmp_path):
    (tmp_path / "r.json").write_text("{}")
    r = zoo("compare", "softmax", "--dataset", "iris", "--frameworks", "numpy",
            "--json", str(tmp_path / "r.json"))
    assert r.returncode == 2 and "already exists; pass --force" in r.stderr
    assert (tmp_path / "r.json").read_text() == "{}"


def test_list_imports_no_framework():
    """`zoo list` shows every model of zoo.models in every framework of the registry (each
    builds any layer list), the quadratic demo where it exists, and the frameworks."""
    from zoo.models import ARCHITECTURES

    code = ("import sys; from zoo.cli import main; main(['list', '--json']);"
            "bad=[m for m in ('tensorflow','torch','keras') if m in sys.modules]; assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    matrix = doc["models"]
    assert list(matrix) == [*ARCHITECTURES, "quadratic"]
    assert {"cnn", "lenet", "nielsen"} <= set(matrix)
    assert all(matrix[m][fw] == (m not in F.FRAMEWORKS[fw].models_refused)
               for m in ARCHITECTURES for fw in F.NAMES)
    assert [fw for fw in F.NAMES if not matrix["gru"][fw]] == ["tf1-layers"]
    assert [fw for fw, ok in matrix["quadratic"].items() if ok] == ["keras", "tf1", "torch"]
    assert list(doc["frameworks"]) == list(F.NAMES)
    assert doc["frameworks"]["keras-torch"]["package"] == "keras_models"


def test_compare_softmax_iris_three_frameworks(tmp_path):
    """Acceptance: the bare `zoo compare softmax --dataset iris` prints the table, writes the
    four files (to a new runs/ folder) and keras, tf1 and torch end within 1e-6."""
    r = subprocess.run([sys.executable, "-m", "zoo", "compare", "softmax", "--dataset", "iris"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "first divergent step" in r.stdout
    (out,) = (tmp_path / "runs").iterdir()
    assert out.name.startswith("softmax-iris-")
    assert sorted(p.name for p in out.iterdir()) == sorted(report.REPORT_FILES)
    d = json.loads((out / "report.json").read_text())
    fws = d["frameworks"]
    assert d["reference"] == "keras" and sorted(fws) == ["keras", "tf1", "torch"]
    for fw in ("tf1", "torch"):
        assert fws[fw]["max_weight_diff"] <= 1e-6, (fw, fws[fw]["max_weight_diff"])
        assert fws[fw]["first_divergent_step"] is None
    assert fws["keras"]["test_metric"] >= 0.93


def test_keras_on_torch_backend_matches(tmp_path):
    """keras-torch (Keras 3 with KERAS_BACKEND=torch, a process of its own) meets the same bound."""
    r = zoo("compare", "softmax", "--dataset", "iris", "--frameworks", "keras,keras-torch",
            "--json", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    f = json.loads((tmp_path / "r.json").read_text())["frameworks"]["keras-torch"]
    assert f["max_weight_diff"] <= 1e-6 and f["first_divergent_step"] is None


def test_compare_cnn_digits_every_framework_agrees(tmp_path):
    """Acceptance on images: `zoo compare cnn --dataset digits --epochs 1` trains the convnet
    on the 8x8x1 digit images (NHWC for Keras and TF1, NCHW inside torch, the float64 numpy
    reference) from the same weights and batches: every framework within 1e-6 of Keras at every
    step (45 steps, 1,898 weights: two conv kernels, TF's asymmetric 'same' padding at stride
    2, and the Dense after a Flatten whose rows torch orders C, H, W)."""
    out = tmp_path / "cnn.json"
    r = zoo("compare", "cnn", "--dataset", "digits", "--epochs", "1", "--frameworks",
            "keras,tf1,torch,numpy", "--json", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["model"]["input_shape"] == [8, 8, 1] and rep["train"]["optimizer"]["lr"] == 0.1
    fws = rep["frameworks"]
    assert len(fws["keras"]["losses"]) == 45 and fws["keras"]["test_metric"] > 0.5
    for fw in ("tf1", "torch", "numpy"):
        assert fws[fw]["first_divergent_step"] is None, (fw, fws[fw])
        assert fws[fw]["max_weight_diff"] <= 1e-6 and fws[fw]["max_loss_diff"] <= 1e-5, fw
        assert fws[fw]["test_metric"] == pytest.approx(fws["keras"]["test_metric"], abs=1 / 360)


# ----------------------------------------------------------------------------- the runner
HANGS = """
import json, sys, time
print("not json", flush=True)
print(json.dumps({"event": "progress", "step": 0}), flush=True)
print(json.dumps([1, 2]), flush=True)
time.sleep(600)
"""
FAILS = """
import json, sys
print(json.dumps({"event": "error", "type": "ValueError", "message": "bad job"}), flush=True)
sys.exit(2)
"""
DIES = """
import pathlib, sys
pathlib.Path(sys.argv[1]).with_suffix(".error").write_text("RuntimeError: it broke")
sys.stderr.write("line 1\\nline 2\\n")
sys.exit(3)
"""


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Three job modules on PYTHONPATH: one hangs, one reports an error, one dies."""
    for name, code in (("zoo_hangs", HANGS), ("zoo_fails", FAILS), ("zoo_dies", DIES)):
        (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return tmp_path


def test_run_process_kills_at_the_deadline_and_streams_events(modules, tmp_path):
    import time

    events = []
    t0 = time.monotonic()
    out = cmp.run_process("numpy", "zoo_hangs", {"a": 1}, tmp_path / "job.json", events.append,
                          timeout=3.0)
    assert out.returncode is None and out.error is None
    assert 3.0 <= time.monotonic() - t0 < 15.0
    assert events == [{"event": "progress", "step": 0}]  # JSON objects only
    assert json.loads((tmp_path / "job.json").read_text()) == {"a": 1}


def test_run_process_reports_the_process_own_error(modules, tmp_path):
    out = cmp.run_process("torch", "zoo_fails", {}, tmp_path / "job.json", timeout=60)
    assert (out.returncode, out.error) == (2, "ValueError: bad job")
    out = cmp.run_process("keras", "zoo_dies", {}, tmp_path / "job2.json", timeout=60)
    assert (out.returncode, out.error) == (3, "RuntimeError: it broke")
    assert [ln.strip() for ln in out.stderr] == ["line 1", "line 2"]


def test_distributed_jobs_run_through_the_same_runner(monkeypatch, tmp_path):
    """`zoo.distributed.run_module` is `run_process` in the environment of the module's
    framework, with the distributed messages."""
    from zoo import distributed

    seen = {}

    def fake(framework, module, job, job_path, on_event=None, timeout=0.0):
        seen.update(framework=getattr(framework, "name", framework), module=module,
                    timeout=timeout)
        return processes.ProcessOutcome(None, None, [])

    from zoo import processes

    assert cmp.run_process is processes.run_process  # one runner, imported by compare
    monkeypatch.setattr(processes, "run_process", fake)  # what zoo.distributed calls
    monkeypatch.setattr(cmp, "run_process", fake)        # compare's name for it
    with pytest.raises(distributed.DistributedError, match=r"^keras_models\.distributed: the "
                       r"distributed run did not finish within 7 s and was stopped"):
        distributed.run_module("keras_models.distributed", {}, tmp_path / "j.json", 7.0)
    assert seen == {"framework": "keras", "module": "keras_models.distributed", "timeout": 7.0}
    # and the comparison's workers: the same runner, the worker module, the worker's messages
    assert cmp.run_worker("tf1", {}, tmp_path / "w.json", timeout=9.0) == "timed out after 9 s"
    assert seen == {"framework": "tf1", "module": "zoo.worker", "timeout": 9.0}


def test_a_class_model_on_a_two_class_dataset_has_two_outputs():
    """softmax (C outputs) on a binary dataset: one output per class, not the binary task's
    single output (which made every label 1 out of range)."""
    from zoo.commands.compare import spec_for_dataset
    from zoo.data import load

    ds = load("breast_cancer")
    assert ds.task == "binary" and ds.n_outputs == 1
    assert spec_for_dataset("softmax", ds).n_outputs == 2
    assert spec_for_dataset("logistic", ds).n_outputs == 1


def test_a_worker_error_reads_as_its_message():
    from zoo.compare import WorkerError

    assert str(WorkerError("framework run failed (torch: boom).", {"torch": "boom"})) == \
        "framework run failed (torch: boom)."


def test_seconds_per_epoch_leave_the_first_epoch_out():
    """The report's s/epoch is the median epoch after the first (which traces or compiles);
    the first is reported on its own, and the notes say what the column measures."""
    from zoo.compare import FrameworkResult, timing_note

    def result(seconds):
        return FrameworkResult("keras", History("keras", np.zeros(4), {}, seconds), {}, 0.0, 0.0)

    r = result([5.0, 1.0, 2.0, 3.0])
    assert r.seconds_per_epoch == 2.0 and r.first_epoch_seconds == 5.0
    assert result([4.0]).seconds_per_epoch == 4.0
    assert timing_note(1, 3) == ("s/epoch is the median epoch after the first (the first, "
                                 "which also traces or compiles, is first_epoch_seconds in "
                                 "report.json).")
    assert "workers trained at once" in timing_note(3, 3) or (os.cpu_count() or 1) == 1


def test_worker_progress_is_throttled_and_covers_every_step(capsys):
    """The worker's progress events: at an epoch's last step always, in between at most one
    per interval; their "steps" add up to every step trained, the loss is the latest step's."""
    from zoo.worker import Throttled

    def events():
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    slow = Throttled(steps_per_epoch=5, every=1e9)
    for epoch in range(2):
        for step in range(5):
            slow(epoch, step, 10.0 * epoch + step)
    slow.flush()
    assert events() == [
        {"event": "progress", "epoch": 0, "step": 4, "loss": 4.0, "steps": 5},
        {"event": "progress", "epoch": 1, "step": 4, "loss": 14.0, "steps": 5}]
    eager = Throttled(steps_per_epoch=5, every=0.0)
    for step in range(3):       # a run stopped mid-epoch: flush sends nothing twice
        eager(0, step, float(step))
    eager.flush()
    assert [(e["step"], e["steps"]) for e in events()] == [(0, 1), (1, 1), (2, 1)]
    stopped = Throttled(steps_per_epoch=5, every=1e9)
    for step in range(3):
        stopped(0, step, float(step))
    stopped.flush()
    assert events() == [{"event": "progress", "epoch": 0, "step": 2, "loss": 2.0, "steps": 3}]


def test_process_groups_put_keras_and_tf1_in_one_process():
    assert cmp.process_groups(["keras", "tf1", "torch", "numpy"]) == \
        [["keras", "tf1"], ["torch"], ["numpy"]]
    assert cmp.process_groups(["tf1", "numpy", "keras"]) == [["tf1", "keras"], ["numpy"]]
    # Keras 2 never shares a process with Keras 3 (another environment), nor keras-torch
    assert cmp.process_groups(["keras", "keras2", "tf1-layers", "keras-torch"]) == \
        [["keras"], ["keras2"], ["tf1-layers"], ["keras-torch"]]
    assert cmp.process_groups(["keras", "tf1"], share=False) == [["keras"], ["tf1"]]


def test_a_shared_process_trains_as_separate_ones_do():
    """Keras and TF1 in one worker process, one after the other (Keras evaluated and written
    while TF1 trains), against each in its own: the same losses, per-step weights and test
    metrics, bit for bit (an mlp with BatchNorm state would be cnn_bn; this one has shared
    dropout masks and Adam)."""
    ds = data.load("iris")
    spec = model_spec_for("mlp", ds.n_features, ds.n_outputs)
    ts = TrainSpec(OptimizerSpec("adam", lr=0.01), epochs=2, batch_size=16)
    events: list[tuple[str, str]] = []
    shared = cmp.compare(spec, ts, ds, frameworks=["keras", "tf1"],
                         on_event=lambda fw, ev: events.append((fw, ev["event"])))
    apart = cmp.compare(spec, ts, ds, frameworks=["keras", "tf1"], share_processes=False)
    assert any("keras and tf1 trained in one process" in n for n in shared.notes)
    assert not any("one process" in n for n in apart.notes)
    for fw in ("keras", "tf1"):
        a, b = shared.results[fw], apart.results[fw]
        np.testing.assert_array_equal(a.history.losses, b.history.losses)
        assert len(a.history.step_weights) == len(b.history.step_weights) == 16
        for k, v in a.history.step_weights.tensors.items():
            np.testing.assert_array_equal(v, b.history.step_weights.tensors[k])
        assert a.metrics == b.metrics
    # each framework's events reach the caller under its own name, in training order (Keras
    # is evaluated and written while TF1 trains, so its "done" may come after TF1's "start")
    marks = [e for e in events if e[1] in ("start", "done")]
    assert [e for e in marks if e[1] == "start"] == [("keras", "start"), ("tf1", "start")]
    assert sorted(marks) == [("keras", "done"), ("keras", "start"), ("tf1", "done"),
                             ("tf1", "start")]
    assert marks.index(("keras", "start")) < marks.index(("keras", "done"))
    assert marks.index(("tf1", "start")) < marks.index(("tf1", "done"))
    assert {fw for fw, e in events if e == "progress"} == {"keras", "tf1"}


def test_a_failure_in_a_shared_process_names_its_framework_and_the_other_still_trains(tmp_path):
    """TF1's job gets data of the wrong width: its error is its own, Keras's result stands."""
    ds = data.load("iris")
    spec = model_spec_for("softmax", ds.n_features, ds.n_outputs)
    ts = TrainSpec(OptimizerSpec("sgd", lr=0.1), epochs=1, batch_size=32)
    from zoo.specs import init_weights

    np.savez(tmp_path / "good.npz", X_train=ds.X_train, y_train=ds.y_train, X_test=ds.X_test,
             y_test=ds.y_test)
    np.savez(tmp_path / "bad.npz", X_train=ds.X_train[:, :3], y_train=ds.y_train,
             X_test=ds.X_test[:, :3], y_test=ds.y_test)
    np.savez(tmp_path / "init.npz", **init_weights(spec, 0, "float32"))
    jobs = {fw: {"framework": fw, "model": spec.to_dict(), "train": ts.to_dict(),
                 "data": str(tmp_path / ("bad.npz" if fw == "tf1" else "good.npz")),
                 "init": str(tmp_path / "init.npz"), "out": str(tmp_path / f"r_{fw}.npz"),
                 "metrics": str(tmp_path / f"r_{fw}.json"), "record_weights": 1}
            for fw in ("keras", "tf1")}
    with pytest.raises(cmp.WorkerError) as e:
        cmp.run_workers(["keras", "tf1"], tmp_path, jobs)
    message, per_framework = e.value.args
    assert list(per_framework) == ["tf1"]
    assert message == ("framework run failed (tf1: ConfigError: tf1_compat: the model expects "
                       "samples of shape (4,), got (3,); build the spec from the dataset's "
                       "sizes.).")
    assert json.loads((tmp_path / "r_keras.json").read_text())["framework"] == "keras"
    with np.load(tmp_path / "r_keras.npz") as z:     # Keras trained all its steps
        assert len(z["losses"]) == -(-len(ds.X_train) // 32) and np.isfinite(z["losses"]).all()
