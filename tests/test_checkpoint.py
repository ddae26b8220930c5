"""Checkpoint and resume: `train(..., checkpoint_dir=DIR)` saves weights, optimizer state and the
epoch counter atomically after every epoch; a run interrupted mid-epoch (an exception, or
SIGKILL of `zoo train`) and resumed ends with weights identical bit for bit to an uninterrupted
run in the same framework, the shared batch order continuing at the saved epoch. Checkpoints
are never overwritten without force; a checkpoint of another run, a missing or a corrupt one
is refused with one clear error."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_run import one_error_line, zoo
from helpers import load

from zoo import frameworks as F
from zoo import interchange
from zoo.checkpoint import checkpoint_path
from zoo.errors import ConfigError, DataError, DataNotFoundError
from zoo.optimizers import OptimizerSpec
from zoo.specs import TrainSpec, init_weights, model_spec_for


class Interrupt(Exception):
    pass


def _setup(optimizer: str = "adam", epochs: int = 3):
    ds = load("digits")
    spec = model_spec_for("mlp", ds.n_features, ds.n_outputs)  # shared dropout masks
    return ds, spec, TrainSpec(OptimizerSpec(optimizer, lr=0.01), epochs=epochs, batch_size=128)


def _equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("fw,optimizer", [("torch", "adam"), ("torch", "momentum"),
                                          ("tf1", "adam"), ("tf1", "rmsprop"),
                                          ("keras", "adam"), ("keras", "nesterov")])
def test_interrupted_mid_epoch_and_resumed_is_bitwise_equal(fw, optimizer, tmp_path):
    ds, spec, ts = _setup(optimizer)
    pkg = F.get(fw).module("train")
    full = pkg.train(spec, ts, ds.X_train, ds.y_train, init_weights(spec))

    def stop_mid_epoch_1(epoch, step, loss):
        if (epoch, step) == (1, 5):
            raise Interrupt

    with pytest.raises(Interrupt):
        pkg.train(spec, ts, ds.X_train, ds.y_train, init_weights(spec),
                  checkpoint_dir=tmp_path, progress=stop_mid_epoch_1)
    assert [p.name for p in tmp_path.iterdir()] == [f"{fw}.ckpt.npz"]  # no temporary file left
    with np.load(checkpoint_path(tmp_path, fw), allow_pickle=False) as z:
        assert json.loads(str(z["meta"]))["epoch"] == 1
        assert len(z["losses"]) == 12  # 1437 samples / 128 = 12 steps per epoch
    resumed = pkg.train(spec, ts, ds.X_train, ds.y_train, init_weights(spec),
                        checkpoint_dir=tmp_path, resume=True)
    assert _equal(resumed.weights, full.weights)
    assert np.array_equal(resumed.losses, full.losses) and len(resumed.losses) == 36
    assert len(resumed.epoch_seconds) == 3
    # the finished checkpoint resumes to the same result without training
    again = pkg.train(spec, ts, ds.X_train, ds.y_train, init_weights(spec),
                      checkpoint_dir=tmp_path, resume=True)
    assert _equal(again.weights, full.weights)


@pytest.mark.parametrize("fw", ["keras", "tf1", "torch"])
@pytest.mark.parametrize("model,data,n", [("cnn_bn", "digits", 160), ("lstm", "digits", 160),
                                          ("embedding_gru", "tokens", 160)])
def test_layer_models_resume_bit_for_bit(fw, model, data, n, tmp_path):
    """BatchNorm's moving statistics (state, not trained) and the recurrent layers' tensors
    (torch's frozen LSTM bias_hh has no optimizer state) travel in the checkpoint: a 2-epoch run
    interrupted in its second epoch and resumed ends as the uninterrupted one, bit for bit."""
    from helpers import model_inputs, spec_for, state_names

    ds = load(data)
    spec = spec_for(model, ds)
    X, y = model_inputs(ds.X_train[:n], spec), ds.y_train[:n]
    ts = TrainSpec(OptimizerSpec("adam", lr=0.01), epochs=2, batch_size=32)
    pkg = F.get(fw).module("train")
    full = pkg.train(spec, ts, X, y, init_weights(spec))

    def stop_in_epoch_1(epoch, step, loss):
        if (epoch, step) == (1, 2):
            raise Interrupt

    with pytest.raises(Interrupt):
        pkg.train(spec, ts, X, y, init_weights(spec), checkpoint_dir=tmp_path,
                  progress=stop_in_epoch_1)
    resumed = pkg.train(spec, ts, X, y, init_weights(spec), checkpoint_dir=tmp_path,
                        resume=True)
    assert list(resumed.weights) == list(full.weights)
    assert _equal(resumed.weights, full.weights)
    assert np.array_equal(resumed.losses, full.losses) and len(full.losses) == 10
    if model == "cnn_bn":  # the moving statistics did move, so resuming them is tested
        init = init_weights(spec)
        assert max(float(np.max(np.abs(full.weights[k] - init[k])))
                   for k in state_names(spec)) > 1e-2


def test_checkpoint_rules(tmp_path):
    from torch_models.train import train

    ds, spec, ts = _setup("sgd", epochs=1)
    X, y, init = ds.X_train, ds.y_train, init_weights(spec)
    with pytest.raises(DataNotFoundError, match=r"no checkpoint to resume: .*torch.ckpt.npz' "
                       r"does not exist; run without --resume to start one\."):
        train(spec, ts, X, y, init, checkpoint_dir=tmp_path, resume=True)
    first = train(spec, ts, X, y, init, checkpoint_dir=tmp_path)
    before = checkpoint_path(tmp_path, "torch").read_bytes()
    with pytest.raises(ConfigError, match=r"torch.ckpt.npz' already exists; pass --resume to "
                       r"continue it or --force to start over and overwrite it\."):
        train(spec, ts, X, y, init, checkpoint_dir=tmp_path)
    assert checkpoint_path(tmp_path, "torch").read_bytes() == before  # untouched
    other = TrainSpec(OptimizerSpec("sgd", lr=0.02), epochs=1, batch_size=128)
    with pytest.raises(ConfigError, match=r"belongs to another run \(its train differ\); resume "
                       r"with the same model, dataset and options, or start over with --force\."):
        train(spec, other, X, y, init, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ConfigError, match=r"its data differ"):
        train(spec, ts, X[:-1], y[:-1], init, checkpoint_dir=tmp_path, resume=True)
    again = train(spec, ts, X, y, init, checkpoint_dir=tmp_path, force=True)
    assert _equal(again.weights, first.weights)
    checkpoint_path(tmp_path, "torch").write_bytes(before[: len(before) // 2])  # truncated
    with pytest.raises(DataError, match=r"torch.ckpt.npz' is truncated or corrupt .*; delete "
                       r"it or start over with --force\."):
        train(spec, ts, X, y, init, checkpoint_dir=tmp_path, resume=True)
    class Touch:  # a pickle that would create a file if anything unpickled it
        def __reduce__(self):
            return (Path.touch, (tmp_path / "unpickled",))

    checkpoint_path(tmp_path, "torch").write_bytes(pickle.dumps(Touch()))
    with pytest.raises(DataError, match=r"torch.ckpt.npz' is truncated or corrupt \(.*pickled"):
        train(spec, ts, X, y, init, checkpoint_dir=tmp_path, resume=True)
    assert not (tmp_path / "unpickled").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"checkpoint directory .* is a file"):
        train(spec, ts, X, y, init, checkpoint_dir=tmp_path / "file")


def test_cli_checkpoint_errors(tmp_path):
    line = one_error_line(zoo("train", "softmax", "--framework", "torch", "--dataset", "iris",
                              "--resume"))
    assert line == ("zoo train: error: --resume needs --checkpoint-dir DIR naming the "
                    "checkpoint to continue.")
    args = ["train", "softmax", "--framework", "torch", "--dataset", "iris", "--epochs", "1",
            "--checkpoint-dir", tmp_path]
    assert zoo(*args).returncode == 0
    line = one_error_line(zoo(*args))
    assert line.startswith("zoo train: error: ") and "already exists; pass --resume" in line
    line = one_error_line(zoo(*args[:-4], "--epochs", "2", "--checkpoint-dir", tmp_path,
                              "--resume"))
    assert "belongs to another run (its train differ)" in line


SUFFIX = {"torch": ".pt", "tf1": ".ckpt", "keras": ".keras"}


def _kill_and_resume(fw: str, tmp_path) -> None:
    """`zoo train` killed with SIGKILL after its first checkpoint, during a later epoch, then
    resumed: the saved weights equal those of an uninterrupted run bit for bit."""
    base = ["train", "mlp", "--framework", fw, "--dataset", "digits", "--optimizer", "adam",
            "--lr", "0.001", "--batch-size", "4", "--epochs", "2"]
    full = tmp_path / f"full{SUFFIX[fw]}"
    r = zoo(*base, "--save", full)
    assert r.returncode == 0, r.stderr
    ckdir, part = tmp_path / "ck", tmp_path / f"part{SUFFIX[fw]}"
    ckpt = checkpoint_path(ckdir, fw)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "zoo", *base, "--checkpoint-dir", str(ckdir),
                             "--save", str(part)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 240
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # into the next epoch (360 steps of batch 4)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    with np.load(ckpt, allow_pickle=False) as z:
        saved_epoch = json.loads(str(z["meta"]))["epoch"]
    assert saved_epoch == 1 and not part.exists()
    r = zoo(*base, "--checkpoint-dir", ckdir, "--resume", "--save", part)
    assert r.returncode == 0, r.stderr
    _, a = interchange.load(full)
    _, b = interchange.load(part)
    assert _equal(a, b)


def test_sigkill_and_resume_torch(tmp_path):
    _kill_and_resume("torch", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("fw", ["tf1", "keras"])
def test_sigkill_and_resume_tensorflow(fw, tmp_path):
    _kill_and_resume(fw, tmp_path)
