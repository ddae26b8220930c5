"""Recording every step's weights in each framework: the scratch rows a framework keeps in its
own layout (`zoo.specs.RowRecorder`) are moved into the canonical storage when full and at
each epoch's end, and the record is the same whatever the scratch size
(`zoo.specs.SCRATCH_ROWS`), bit for bit."""

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
    monkeypatch.setattr(specs, "SCRATCH_ROWS", 4)     # zoo.specs.RowRecorder's scratch
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
