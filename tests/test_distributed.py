"""Data-parallel training (docs/distributed.md) equals one process.

Two-worker runs (torch DistributedDataParallel over gloo, Keras MirroredStrategy over two
logical CPU devices) with global batch B against single-process training with batch B on
iris (120 training rows): B = 23 gives shards of 12 and 11 rows and a partial last batch of 5
rows (shards 3 and 2), so every step has unequal shards. Every run is bounded by a timeout; a
rank that raises, exits or hangs ends the run with a DistributedError, never a hang; every
listening socket of a run is on 127.0.0.1.

The default run (~45 s: each run starts processes that import torch or TensorFlow) keeps one
failure test per framework; `-m slow` adds the others (torch rank raising, Keras subprocess
exiting and hanging).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from helpers import TOL, load, max_diff, spec_for

from zoo import frameworks as F
from zoo.distributed import DistributedError, check_workers, data_parallel, shard, shard_bounds
from zoo.errors import ConfigError
from zoo.optimizers import OptimizerSpec
from zoo.specs import TrainSpec, init_weights

BATCH = 23
LR = {"sgd": 0.1, "adam": 0.01}
#: Bound of every distributed run in these tests (a two-rank iris epoch takes ~5 s, mostly
#: the ranks' imports).
TIMEOUT = 120.0


def _setup(optimizer: str = "sgd", dtype: str = "float32", epochs: int = 1):
    ds = load("iris", dtype)
    ms = spec_for("softmax", ds)
    ts = TrainSpec(OptimizerSpec(optimizer, lr=LR[optimizer]), epochs=epochs, batch_size=BATCH,
                   seed=3, dtype=dtype)
    return ds, ms, ts, init_weights(ms, seed=3, dtype=dtype)


# ------------------------------------------------------------------- the sharding arithmetic
def test_shards_are_contiguous_cover_the_batch_and_differ_by_at_most_one_row():
    assert shard_bounds(23, 2) == [(0, 12), (12, 23)]
    assert shard_bounds(5, 2) == [(0, 3), (3, 5)]
    assert shard_bounds(1, 3) == [(0, 1), (1, 1), (1, 1)]  # ranks beyond n get empty shards
    idx = np.arange(100, 123)
    parts = [shard(idx, r, 2)[0] for r in range(2)]
    np.testing.assert_array_equal(np.concatenate(parts), idx)
    # iris with B = 23: 120 = 5 * 23 + 5
    ds = load("iris")
    assert len(ds.X_train) == 120 and len(ds.X_train) % BATCH == 5


def test_shard_losses_sum_to_the_global_mean_and_a_mean_of_means_does_not():
    """Why each shard's loss is its sum / n (n the global size): averaged shard means weight the
    rows of the smaller shard more when the shards differ in size."""
    losses = np.random.default_rng(0).random(5)  # a partial last batch of 5 rows, 3 + 2
    (a, b), (c, d) = shard_bounds(5, 2)
    weighted = losses[a:b].sum() / 5 + losses[c:d].sum() / 5
    assert abs(weighted - losses.mean()) < 1e-15
    mean_of_means = (losses[a:b].mean() + losses[c:d].mean()) / 2
    assert abs(mean_of_means - losses.mean()) > 1e-3


def test_bad_worker_counts_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"--workers must be an integer >= 1, got 0"):
        check_workers(0)
    with pytest.raises(ConfigError, match=r"--workers 40 is larger than the batch size 32"):
        check_workers(40, 32)
    with pytest.raises(ConfigError, match=r"data-parallel training exists for keras and "
                                          r"torch, not tf1"):
        data_parallel(object(), "tf1", 2)


def test_data_parallel_is_the_plain_module_for_one_worker_and_refuses_checkpoints():
    from torch_models import train

    assert data_parallel(train, "torch", 1) is train
    wrapped = data_parallel(train, "torch", 2)
    assert wrapped.evaluate is train.evaluate
    ds, ms, ts, init = _setup()
    with pytest.raises(ConfigError, match=r"--workers does not combine with checkpoint_dir, "
                                          r"force, resume yet"):
        wrapped.train(ms, ts, ds.X_train, ds.y_train, init, checkpoint_dir="ckpt",
                      resume=False, force=False)


# ------------------------------------------------------------------------------- PyTorch DDP
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_torch_ddp_two_ranks_equal_one_process(optimizer):
    from torch_models import distributed, train

    ds, ms, ts, init = _setup(optimizer)
    one = train.train(ms, ts, ds.X_train, ds.y_train, init)
    two = distributed.train(ms, ts, ds.X_train, ds.y_train, init, workers=2, timeout=TIMEOUT)
    assert two.extra["workers"] == 2
    assert len(two.losses) == len(one.losses) == 6
    assert max_diff(two.weights, one.weights) <= TOL["float32"]
    assert np.max(np.abs(two.losses - one.losses)) <= TOL["float32"]
    assert max_diff(two.weights, init) > 1e-2  # it did train


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_float64_two_workers_equal_one_process_to_rounding(framework, optimizer):
    """In float64 the only difference left is the summation order (measured: 1e-16), where
    averaging the shards' means instead of summing sum / n moves the SGD weights by 5.4e-3
    after this epoch (float64 numpy, shards of 12 + 11 and 3 + 2 rows)."""
    ds, ms, ts, init = _setup(optimizer, dtype="float64")
    fw = F.get(framework)
    one = fw.module("train").train(ms, ts, ds.X_train, ds.y_train, init)
    two = fw.module("distributed").train(
        ms, ts, ds.X_train, ds.y_train, init, workers=2, timeout=TIMEOUT)
    assert max_diff(two.weights, one.weights) <= TOL["float64"]
    assert np.max(np.abs(two.losses - one.losses)) <= TOL["float64"]


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    ppid = next(ln for ln in f if ln.startswith("PPid:")).split()[1]
            except (OSError, StopIteration):
                continue
            if int(ppid) == pid:
                out.append(int(entry))
    return out


def _listening_addresses(pids: list[int]) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the TCP sockets the processes listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:  # 0A: LISTEN
                    found.append(parts[1].split(":")[0])
    return found


def test_torch_hanging_rank_times_out_and_every_socket_is_on_loopback():
    """Rank 1 hangs at step 2: the run is stopped at its deadline with a clear error. While it
    hangs, the parent's store and both ranks' gloo sockets all listen on 127.0.0.1 only."""
    from torch_models import distributed

    ds, ms, ts, init = _setup()
    seen: list[str] = []
    result: dict = {}

    def run():
        t0 = time.monotonic()
        try:
            distributed.train(ms, ts, ds.X_train, ds.y_train, init, workers=2, timeout=10.0,
                              fault={"rank": 1, "step": 2, "kind": "hang"})
        except DistributedError as exc:
            result["error"] = str(exc)
        result["seconds"] = time.monotonic() - t0

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 9.5
    while time.monotonic() < deadline and len(seen) < 3:
        time.sleep(0.5)
        seen = _listening_addresses([os.getpid(), *_children(os.getpid())])
    t.join(timeout=40.0)
    assert not t.is_alive()
    assert len(seen) >= 3, seen  # the store (parent) and one gloo socket per rank
    assert set(seen) <= {"0100007F", "00000000000000000000000001000000"}, seen  # 127.0.0.1, ::1
    assert result["error"] == ("torch DDP: the 2 ranks did not finish within 10 s and were "
                               "stopped; raise the timeout or check that every rank can reach "
                               "the others.")
    assert result["seconds"] < 10.0 + 10.0


@pytest.mark.parametrize("kind, message", [
    pytest.param("raise", "torch DDP: rank 1 failed (RuntimeError: injected fault on rank 1 at "
                          "step 1); the other ranks were stopped.", marks=pytest.mark.slow),
    ("exit", "torch DDP: rank 1 died (process 1 terminated with exit code 3); the other "
             "ranks were stopped."),
])
def test_torch_dead_rank_fails_the_run_at_once(kind, message):
    from torch_models import distributed

    ds, ms, ts, init = _setup()
    t0 = time.monotonic()
    with pytest.raises(DistributedError) as info:
        distributed.train(ms, ts, ds.X_train, ds.y_train, init, workers=2, timeout=TIMEOUT,
                          fault={"rank": 1, "step": 1, "kind": kind})
    assert str(info.value) == message
    assert time.monotonic() - t0 < 30.0  # far from the timeout: the death is noticed at once


# ------------------------------------------------------------------ Keras MirroredStrategy
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_keras_mirrored_two_replicas_equal_one_process(optimizer):
    from keras_models import distributed, train

    ds, ms, ts, init = _setup(optimizer)
    one = train.train(ms, ts, ds.X_train, ds.y_train, init)
    two = distributed.train(ms, ts, ds.X_train, ds.y_train, init, workers=2, timeout=TIMEOUT)
    assert two.extra["workers"] == 2
    assert len(two.losses) == len(one.losses) == 6
    assert max_diff(two.weights, one.weights) <= TOL["float32"]
    assert np.max(np.abs(two.losses - one.losses)) <= TOL["float32"]
    assert max_diff(two.weights, init) > 1e-2


@pytest.mark.parametrize("kind, message", [
    ("raise", "keras_models.distributed: RuntimeError: injected fault at step 1"),
    pytest.param("exit", "keras_models.distributed: the distributed run died (exit code 3): ",
                 marks=pytest.mark.slow),
])
def test_keras_dead_run_fails_with_its_error(kind, message):
    from keras_models import distributed

    ds, ms, ts, init = _setup()
    with pytest.raises(DistributedError) as info:
        distributed.train(ms, ts, ds.X_train, ds.y_train, init, workers=2, timeout=TIMEOUT,
                          fault={"step": 1, "kind": kind})
    assert str(info.value).startswith(message)


@pytest.mark.slow
def test_keras_hanging_run_is_stopped_at_its_deadline():
    from keras_models import distributed

    ds, ms, ts, init = _setup()
    t0 = time.monotonic()
    with pytest.raises(DistributedError, match=r"did not finish within 12 s and was stopped"):
        distributed.train(ms, ts, ds.X_train, ds.y_train, init, workers=2, timeout=12.0,
                          fault={"step": 1, "kind": "hang"})
    assert time.monotonic() - t0 < 12.0 + 5.0


# ------------------------------------------------------------------ divergence and the CLI
@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_diverging_run_stops_where_one_process_stops_with_the_last_finite_weights(framework):
    """tests/test_divergence.py's run (linear regression on the ice-cream data, SGD lr 10):
    the data-parallel run stops at the same step with the same last finite weights."""
    from zoo.specs import model_spec_for

    ds = load("icecream")
    ms = model_spec_for("linear", ds.n_features, 1)
    ts = TrainSpec(OptimizerSpec("sgd", lr=10.0), epochs=5, batch_size=32)
    init = init_weights(ms)
    fw = F.get(framework)
    one = fw.module("train").train(ms, ts, ds.X_train, ds.y_train, init)
    two = fw.module("distributed").train(
        ms, ts, ds.X_train, ds.y_train, init, workers=2, timeout=TIMEOUT)
    assert one.stopped_at is not None and two.stopped_at == one.stopped_at
    assert len(two.losses) == len(one.losses) == one.stopped_at + 1
    assert all(np.isfinite(v).all() for v in two.weights.values())
    assert max_diff(two.weights, one.weights) <= TOL["float32"] * max(
        1.0, max(float(np.abs(v).max()) for v in one.weights.values()))


@pytest.mark.slow
def test_zoo_train_and_compare_with_two_workers_print_the_one_process_results(tmp_path):
    import json
    import subprocess
    import sys

    def zoo(*args):
        proc = subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True,
                              text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    common = ["softmax", "--dataset", "iris", "--epochs", "2", "--batch-size", str(BATCH)]
    for fw in ("torch", "keras"):
        one = zoo("train", *common, "--framework", fw)
        two = zoo("train", *common, "--framework", fw, "--workers", "2")
        assert two == one and "12 steps, final training loss" in one
    zoo("compare", *common, "--frameworks", "numpy,torch,keras", "--workers", "2",
        "--json", str(tmp_path / "c.json"))
    report = json.loads((tmp_path / "c.json").read_text())
    assert "data-parallel on 2 workers: torch, keras; the other frameworks trained in one " \
           "process." in report["notes"]
    for fw in ("torch", "keras"):
        assert report["frameworks"][fw]["first_divergent_step"] is None
        assert report["frameworks"][fw]["max_weight_diff"] <= TOL["float32"]


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_progress_reports_every_step_with_the_recorded_loss(framework):
    """The spawned ranks (torch: rank 0, through a queue) and the Keras subprocess (its
    stdout) report (epoch, step, loss) for every step, in order, with the History's losses."""
    ds, ms, ts, init = _setup(epochs=2)
    fw = F.get(framework)
    events: list[tuple] = []
    hist = fw.module("distributed").train(
        ms, ts, ds.X_train, ds.y_train, init, workers=2, timeout=TIMEOUT,
        progress=lambda *ev: events.append(ev))
    assert [(e, s) for e, s, _ in events] == [(e, s) for e in range(2) for s in range(6)]
    np.testing.assert_array_equal(np.array([v for _, _, v in events]), hist.losses)


def test_distributed_modules_import_only_their_own_framework():
    """zoo.distributed and keras_models.distributed import no framework (the Keras run lives
    in its subprocess); torch_models.distributed imports torch and nothing of TensorFlow."""
    import subprocess
    import sys

    code = ("import sys, zoo.distributed, keras_models.distributed; "
            "bad = [m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules]; "
            "import torch_models.distributed; "
            "bad += [m for m in ('tensorflow', 'keras', 'tf1_compat') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
