"""Per-step weights held as stacked arrays (`zoo.specs.StepWeights`), converted from a
framework's flat native rows in one gather per tensor (`zoo.layers.FlatNative`), and compared
all steps at once (`zoo.agreement`): each must equal the per-step computation it replaces,
bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from zoo import agreement
from zoo.agreement import differences, first_divergence, max_abs_diff
from zoo.errors import ConfigError
from zoo.layers import FlatNative, from_native, tensor_specs, to_native
from zoo.models import ARCHITECTURES
from zoo.specs import History, StepWeights, init_weights, model_spec_for

COLUMNS = ("keras", "tf1", "torch", "tf1-layers", "keras2")


def spec_of(name: str):
    arch = ARCHITECTURES[name]
    if arch.sequence == "tokens":
        return model_spec_for(name, 6, 3, input_shape=(6,), vocab=11)
    if arch.sequence == "rows":
        return model_spec_for(name, 36, 3, input_shape=(6, 6, 1))
    if arch.image:
        return model_spec_for(name, 784 if name == "lenet" else 64, 3,
                              input_shape=(28, 28, 1) if name == "lenet" else (8, 8, 1))
    n_out = 1 if arch.task in ("regression", "binary") else 3
    return model_spec_for(name, 5, n_out)


def random_steps(spec, n: int, dtype, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    base = init_weights(spec, 0, "float64")
    return [{k: (v + rng.standard_normal(v.shape)).astype(dtype) for k, v in base.items()}
            for _ in range(n)]


def supported(spec, column: str) -> bool:
    try:
        to_native(init_weights(spec, 0, "float32"), spec.resolved, column)
    except (ConfigError, KeyError):
        return False
    return True


#: every model in every column that has a weight format for it (tf1-layers has no GRU)
CASES = [(name, column) for name in sorted(ARCHITECTURES) for column in COLUMNS
         if supported(spec_of(name), column)]


def test_the_cases_cover_every_column():
    from zoo.frameworks import get

    refused = sum(len(get(c).models_refused) for c in COLUMNS)   # tf1-layers' GRUs
    assert refused == 2 and len(CASES) == len(ARCHITECTURES) * len(COLUMNS) - refused
    assert {c for _, c in CASES} == set(COLUMNS)


@pytest.mark.parametrize(("name", "column"), CASES)
def test_flat_native_rows_convert_as_from_native_does(name, column):
    """Every model's table in every column: the rows of 3 steps, their native tensors in a
    shuffled order, convert to exactly what `from_native` gives step by step."""
    spec = spec_of(name)
    for dtype in (np.float32, np.float64):
        steps = random_steps(spec, 3, dtype)
        natives = [to_native(w, spec.resolved, column) for w in steps]
        names = list(natives[0])
        np.random.default_rng(1).shuffle(names)
        rows = np.stack([np.concatenate([np.asarray(nat[n]).ravel() for n in names])
                         for nat in natives])
        flat = FlatNative(spec.resolved, column, names, [natives[0][n].shape for n in names])
        got = flat(rows)
        assert list(got) == [t.name for t in tensor_specs(spec.resolved)]
        # written into preallocated storage (what training does), after one step already there
        store = StepWeights.allocate(flat.canonical_shapes, 5, dtype)
        store.extend([steps[0]])
        flat(rows, out=store.reserve(3))
        store.advance(3)
        assert len(store) == 4 and store.capacity == 5
        # and given as one block per native tensor (Keras's snapshot buffers)
        parts = [rows[:, a:b] for a, b in zip(flat.offsets[:-1], flat.offsets[1:], strict=True)]
        by_parts = flat.from_parts(parts, out={k: np.empty_like(v) for k, v in got.items()})
        for i, nat in enumerate(natives):
            want = from_native(nat, spec.resolved, column)
            for k, v in want.items():
                assert got[k].dtype == v.dtype, (k, got[k].dtype, v.dtype)
                np.testing.assert_array_equal(got[k][i], v, err_msg=f"{name} {column} {k}")
                np.testing.assert_array_equal(store[i + 1][k], v, err_msg=f"{name} {column} {k}")
                np.testing.assert_array_equal(by_parts[k][i], v, err_msg=f"{name} {column} {k}")


def test_flat_native_plans_avoid_the_per_step_loop():
    """The layouts are gathers: no tensor of any model falls back to converting step by step,
    and Keras's own layout of the MLP is a view (no copy)."""
    for name, column in CASES:
        spec = spec_of(name)
        nat = to_native(init_weights(spec, 0, "float32"), spec.resolved, column)
        flat = FlatNative(spec.resolved, column, list(nat), [a.shape for a in nat.values()])
        assert all(p[0] != "loop" for p in flat.plans.values()), (name, column, flat.plans)
    spec = spec_of("mlp")
    nat = to_native(init_weights(spec, 0, "float32"), spec.resolved, "keras")
    flat = FlatNative(spec.resolved, "keras", list(nat), [a.shape for a in nat.values()])
    assert {p[0] for p in flat.plans.values()} == {"slice"}
    nat = to_native(init_weights(spec, 0, "float32"), spec.resolved, "torch")
    flat = FlatNative(spec.resolved, "torch", list(nat), [a.shape for a in nat.values()])
    kernels = {k: p[0] for k, p in flat.plans.items() if k.endswith("kernel")}
    assert len(kernels) == 3 and set(kernels.values()) == {"layout"}   # transposed, not gathered


def test_flat_native_names_what_does_not_match():
    spec = spec_of("mlp")
    nat = to_native(init_weights(spec, 0, "float32"), spec.resolved, "torch")
    names = list(nat)[1:]
    with pytest.raises(ConfigError, match=r"torch tensors do not match the model: missing "
                                          rf"\['{list(nat)[0]}'\], unplaced nothing"):
        FlatNative(spec.resolved, "torch", names, [nat[n].shape for n in names])


def test_step_weights_read_like_a_list_of_dicts():
    spec = spec_of("mlp")
    steps = random_steps(spec, 5, np.float32)
    sw = StepWeights()
    assert not sw and len(sw) == 0
    sw.extend(steps[:2])                                          # a list of dicts
    sw.extend({k: np.stack([s[k] for s in steps[2:4]]) for k in steps[0]})   # a block
    sw.extend(StepWeights.from_dicts(steps[4:]))                  # another StepWeights
    assert len(sw) == 5 and sw.names == list(steps[0])
    for i, s in enumerate(steps):
        assert list(sw[i]) == list(s)
        for k in s:
            np.testing.assert_array_equal(sw[i][k], s[k])
    assert [list(d) for d in sw] == [list(s) for s in steps]
    part = sw[1:3]
    assert isinstance(part, StepWeights) and len(part) == 2
    np.testing.assert_array_equal(part[1]["dense_0/kernel"], steps[2]["dense_0/kernel"])
    assert sw.tensors["dense_0/kernel"].shape == (5, *steps[0]["dense_0/kernel"].shape)
    with pytest.raises(ConfigError, match="different lengths"):
        sw.extend({"dense_0/kernel": np.zeros((2, 1)), "dense_0/bias": np.zeros((3, 1))})


def test_allocated_storage_refuses_more_steps_than_it_holds():
    spec = spec_of("softmax")
    store = StepWeights.allocate({t.name: t.shape for t in tensor_specs(spec.resolved)}, 2,
                                 np.float32)
    assert not store and store.tensors == {}
    store.extend(random_steps(spec, 2, np.float32))
    with pytest.raises(ConfigError, match=r"internal: 3 recorded steps, storage for 2\."):
        store.reserve(1)


def test_history_keeps_step_weights_through_npz(tmp_path):
    spec = spec_of("softmax")
    steps = random_steps(spec, 4, np.float32)
    h = History("torch", np.arange(4.0), steps[-1], [0.1], step_weights=steps)
    assert isinstance(h.step_weights, StepWeights)
    np.savez(tmp_path / "h.npz", **h.to_npz_dict())
    with np.load(tmp_path / "h.npz") as z:
        back = History.from_npz_dict("torch", {k: z[k] for k in z.files})
    assert len(back.step_weights) == 4
    for i in range(4):
        for k in steps[i]:
            np.testing.assert_array_equal(back.step_weights[i][k], steps[i][k])


@pytest.mark.parametrize("chunk", [None, 37, 5000])
@pytest.mark.parametrize("where", [None, 3, 7])
def test_vectorised_agreement_equals_the_per_step_loop(where, chunk, monkeypatch):
    """`differences` and `first_divergence` on stacked arrays against the step-by-step
    computation (max_abs_diff per step; the first recorded step with any element beyond
    atol + rtol * |ref|): a divergence planted in the weights only at step `where`. `chunk`:
    the elements compared at a time (one step per chunk, several, or all steps at once)."""
    if chunk is not None:
        monkeypatch.setattr(agreement, "_CHUNK", chunk)
    spec = spec_of("mlp")
    ref_steps = random_steps(spec, 12, np.float64, seed=2)
    rng = np.random.default_rng(3)
    steps = [{k: v + 1e-9 * rng.standard_normal(v.shape) for k, v in s.items()}
             for s in ref_steps]
    if where is not None:
        for s in steps[where:]:
            s["dense_1/kernel"][2, 1] += 1e-3
    ref = History("numpy", np.ones(12), ref_steps[-1], step_weights=ref_steps)
    h = History("torch", np.ones(12), steps[-1], step_weights=steps)
    d = differences(h, ref, (1e-6, 1e-5))
    loop = np.array([max_abs_diff(a, b) for a, b in zip(steps, ref_steps, strict=True)])
    np.testing.assert_array_equal(d.weight_diff, loop)
    np.testing.assert_array_equal(d.weight_steps, np.arange(12))
    assert d.first_divergent_step == where
    assert first_divergence(h, ref, (1e-6, 1e-5)) == where
    assert differences(ref, ref, (1e-6, 1e-5)).weight_diff.tolist() == [0.0] * 12
