"""Divergence (seed 002: a learning rate that is too large overshoots): when the loss becomes
non-finite every framework stops at that step, names it in `History.stopped_at` and returns the
last finite weights, the ones that step started from (TF1 and Keras have applied that step's
update by then; they return the copy kept before it). `zoo train` then ends with one line on
stderr naming the step and suggesting a smaller learning rate, and exit code 1 (exit code 2 is
for input rejected before training); the weights it saves with --save are those last finite
ones. `zoo compare` keeps exit code 0 (the comparison itself succeeded) and puts the step and
the same advice in its table's and report's notes."""

from __future__ import annotations

import numpy as np
import pytest
from cli_run import one_error_line, zoo, zoo_lines
from helpers import load

from zoo import frameworks as F
from zoo import interchange
from zoo.optimizers import OptimizerSpec
from zoo.specs import TrainSpec, init_weights, model_spec_for

LR = 10.0  # linear regression on the ice-cream data (targets ~1e2): |1 - lr * curvature| > 1


def _run(fw: str, record_weights: bool = False):
    ds = load("icecream")
    spec = model_spec_for("linear", ds.n_features, 1)
    train_spec = TrainSpec(OptimizerSpec("sgd", lr=LR), epochs=5, batch_size=32)
    pkg = F.get(fw).module("train")
    return spec, pkg.train(spec, train_spec, ds.X_train, ds.y_train, init_weights(spec),
                           record_weights=record_weights)


def _numpy_stop_step() -> int:
    """The first step whose float32 loss overflows, from plain float32 numpy SGD on the same
    batches: the step every framework must stop at."""
    from zoo.data import batch_order

    ds = load("icecream")
    spec = model_spec_for("linear", ds.n_features, 1)
    w = init_weights(spec)
    k, b = w["dense_0/kernel"].astype(np.float32), w["dense_0/bias"].astype(np.float32)
    X, y = ds.X_train.astype(np.float32), ds.y_train.reshape(-1, 1).astype(np.float32)
    step = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(5):
            for idx in batch_order(len(X), 32, 0, epoch):
                r = X[idx] @ k + b - y[idx]
                if not np.isfinite(np.mean(r * r, dtype=np.float32)):
                    return step
                g = np.float32(2.0 / len(idx)) * r
                k = k - np.float32(LR) * (X[idx].T @ g)
                b = b - np.float32(LR) * g.sum(axis=0)
                step += 1
    raise AssertionError("float32 SGD did not diverge")


@pytest.mark.parametrize("fw", ["torch", "tf1", "keras"])
def test_training_stops_at_first_non_finite_loss_and_keeps_last_finite_weights(fw):
    stop = _numpy_stop_step()
    assert stop == 13  # the 14th step of the ice-cream data, batch 32, lr 10
    spec, hist = _run(fw, record_weights=True)
    assert hist.stopped_at == stop
    assert len(hist.losses) == stop + 1
    assert np.all(np.isfinite(hist.losses[:stop])) and not np.isfinite(hist.losses[stop])
    assert hist.losses[stop - 1] > 1e30  # it overshot, growing, before it overflowed
    last_finite = hist.step_weights[stop - 1]  # after step stop-1 = what step `stop` started from
    for name, value in hist.weights.items():
        assert np.all(np.isfinite(value)), name
        assert np.array_equal(value, last_finite[name]), name


@pytest.mark.parametrize("fw,suffix", [("torch", ".pt"), ("keras", ".keras")])
def test_cli_names_the_step_suggests_a_smaller_lr_and_saves_the_last_finite_weights(
        fw, suffix, tmp_path):
    path = tmp_path / f"w{suffix}"
    r = zoo("train", "linear", "--framework", fw, "--dataset", "icecream", "--lr", "10",
            "--epochs", "5", "--save", str(path))
    assert one_error_line(r, code=1) == ("zoo train: diverged: the loss became non-finite at step 13 (epoch 2, "
                     "batch 1); training stopped there and kept the last finite weights; the "
                     "learning rate 10 is too large, try a smaller one, e.g. --lr 1.")
    _, saved = interchange.load(path)
    _, hist = _run("torch")
    for name, value in hist.weights.items():
        assert np.all(np.isfinite(saved[name]))
        np.testing.assert_allclose(saved[name], value, rtol=1e-5)


def test_cli_lr_1e6_diverges_at_once():
    r = zoo("train", "linear", "--framework", "torch", "--dataset", "icecream", "--lr", "1e6")
    line = one_error_line(r, code=1)
    assert "non-finite at step 3 (epoch 1, batch 4)" in line and "learning rate 1e+06 is too large" in line and line.endswith("--lr 100000.")


def test_keras_keeps_the_last_finite_weights_with_several_steps_per_execution():
    """With steps_per_execution > 1 `fit` cannot stop between the steps of one execution; the
    frozen copy still holds the weights the first non-finite step started from."""
    from keras_models.train import train

    ds = load("icecream")
    spec = model_spec_for("linear", ds.n_features, 1)
    ts = TrainSpec(OptimizerSpec("sgd", lr=LR), epochs=5, batch_size=40)  # 10 steps per epoch
    one = train(spec, ts, ds.X_train, ds.y_train, init_weights(spec))
    five = train(spec, ts, ds.X_train, ds.y_train, init_weights(spec), steps_per_execution=5)
    assert one.stopped_at is not None and five.stopped_at == one.stopped_at
    assert np.array_equal(five.losses, one.losses)
    for name, value in one.weights.items():
        assert np.all(np.isfinite(value)) and np.array_equal(five.weights[name], value), name


@pytest.mark.parametrize("spe", [1, 5])
def test_keras_recording_every_step_returns_the_same_last_finite_weights(spe):
    """Recording every step, Keras takes the last finite weights from the record instead of
    the copy each step otherwise makes: the same weights, losses and stopping step as without
    recording, bit for bit, and the record ends with the non-finite step."""
    from keras_models.train import train

    ds = load("icecream")
    spec = model_spec_for("linear", ds.n_features, 1)
    ts = TrainSpec(OptimizerSpec("sgd", lr=LR), epochs=5, batch_size=40)  # 10 steps per epoch
    bare = train(spec, ts, ds.X_train, ds.y_train, init_weights(spec), steps_per_execution=spe)
    rec = train(spec, ts, ds.X_train, ds.y_train, init_weights(spec), steps_per_execution=spe,
                record_weights=True)
    assert bare.stopped_at is not None and rec.stopped_at == bare.stopped_at
    assert np.array_equal(rec.losses, bare.losses)
    assert len(rec.step_weights) == rec.stopped_at + 1
    for name, value in bare.weights.items():
        assert np.all(np.isfinite(value)) and np.array_equal(rec.weights[name], value), name
    # the first loss already non-finite (kernel 1e30: squared errors overflow float32): the
    # initial weights, which no record holds
    huge = {k: np.full_like(v, 1e30) if k.endswith("kernel") else v
            for k, v in init_weights(spec).items()}
    first = train(spec, ts, ds.X_train, ds.y_train, huge, record_weights=True)
    assert first.stopped_at == 0
    for name, value in huge.items():
        assert np.array_equal(first.weights[name], value), name


@pytest.mark.parametrize("spe", [1, 4])
def test_keras_recording_every_step_keeps_the_batchnorm_state_a_diverging_step_started_from(spe):
    """The same with BatchNorm (digits, cnn_bn, lr 1e10: the loss turns non-finite at step 3):
    the weights and the moving statistics returned are the record's entry before that step,
    equal to the copy's (NaN where an overflowing gradient left one, in both)."""
    from keras_models.train import train

    ds = load("digits")
    spec = model_spec_for("cnn_bn", ds.n_features, ds.n_outputs, input_shape=ds.image_shape)
    X = ds.X_train.reshape(len(ds.X_train), *ds.image_shape)
    ts = TrainSpec(OptimizerSpec("sgd", lr=1e10), epochs=2, batch_size=64)
    bare = train(spec, ts, X, ds.y_train, init_weights(spec), steps_per_execution=spe)
    rec = train(spec, ts, X, ds.y_train, init_weights(spec), steps_per_execution=spe,
                record_weights=True)
    assert bare.stopped_at == rec.stopped_at == 3
    for name, value in bare.weights.items():
        np.testing.assert_array_equal(rec.weights[name], value, err_msg=name)
        np.testing.assert_array_equal(rec.step_weights[2][name], value, err_msg=name)


def test_compare_reports_the_step_and_the_advice(tmp_path):
    import json

    out = tmp_path / "report.json"
    r = zoo("compare", "linear", "--dataset", "icecream", "--lr", "10", "--epochs", "3",
            "--frameworks", "torch,tf1", "--json", out)
    assert r.returncode == 0, r.stderr
    assert [line for line in zoo_lines(r.stderr) if "Warning" in line] == []
    notes = json.loads(out.read_text())["notes"]
    for fw in ("torch", "tf1"):
        assert (f"{fw}: the loss became non-finite at step 13; training stopped there and kept "
                "the last finite weights (the learning rate 10 is too large: try a smaller one, "
                "e.g. --lr 1).") in notes
