"""The quadratic demo of seeds 000/004 and the saddle demo in Keras 3, TF1 and PyTorch: every
step against the closed form and the float64 numpy reference, every optimizer across the
three frameworks, what each framework's own defaults would change, the Keras 3 `minimize`
trap, and the `zoo quadratic` / `zoo saddle` commands."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch  # noqa: F401  (torch before tensorflow, see conftest.py)

from zoo.errors import ConfigError, UnknownNameError
from zoo.optimizers import OPTIMIZERS, OptimizerSpec
from zoo.quadratic import (
    FRAMEWORKS,
    SEED_COEFFICIENTS,
    check_coefficients,
    closed_form,
    cost,
    framework_module,
    reference_escape_steps,
    reference_minimize,
    run_frameworks,
)

FW = ("keras", "tf1", "torch")
SEED = OptimizerSpec("sgd", lr=0.01)
#: a 1e-6-scaled copy of the seed's quadratic: same minimum, gradients ~1e-5, where epsilons,
#: initial accumulators and initial slot values decide the result
FLAT = (1e-6, -1e-5, 2.5e-5)


def mod(name: str) -> ModuleType:
    return framework_module(name)


def minimize(fw: str, coefficients=SEED_COEFFICIENTS, optimizer: OptimizerSpec = SEED,
             **kw) -> dict[str, np.ndarray]:
    # Keras: the whole loop in one tf.function (same numbers as eager, see
    # test_keras_compiled_equals_eager; 5x faster)
    if fw == "keras":
        kw.setdefault("compiled", True)
    return mod(fw).minimize(coefficients=coefficients, optimizer=optimizer, **kw)


def stall_bound(coefficients, lr: float) -> float:
    """float32 gradient descent stops moving once lr*|J'(w)| < ulp(w*)/2, i.e. at
    |w - w*| < ulp(w*) / (4 a lr): 1.19e-5 for the seed's setting."""
    a, b, _ = coefficients
    return float(np.spacing(np.float32(abs(b / (2 * a))))) / (4 * a * lr)


def maxdiff(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).max())


# ------------------------------------------------------------------ the seeds' setting

@pytest.fixture(scope="module")
def seed_runs() -> dict[str, dict[str, np.ndarray]]:
    return {fw: minimize(fw) for fw in FW}


@pytest.mark.parametrize("fw", FW)
def test_seed_setting_final_value_and_closed_form(fw: str, seed_runs) -> None:
    w = seed_runs[fw]["w"]
    assert w.shape == (1001,) and w.dtype == np.float32 and w[0] == 0.0
    # seed 000 prints 4.9999; seed 004's TF2 version prints 4.9999886 (for w* = -5: -4.9999886).
    # torch.optim.SGD rounds its last update differently and ends one float32 ulp lower.
    allowed = {np.float32(4.9999886)} | ({np.float32(4.999988)} if fw == "torch" else set())
    assert w[-1] in allowed
    ref = closed_form(SEED_COEFFICIENTS, 0.0, 0.01, 1000)  # 5 * (1 - 0.98**k)
    np.testing.assert_allclose(ref, 5 * (1 - 0.98 ** np.arange(1001)), rtol=0, atol=1e-12)
    assert maxdiff(w, ref) < 2e-5
    assert maxdiff(w, ref) <= stall_bound(SEED_COEFFICIENTS, 0.01) * 1.01
    # the cost is J at the same step, computed by the framework
    np.testing.assert_allclose(seed_runs[fw]["cost"], cost(SEED_COEFFICIENTS, w), atol=5e-6)


def test_seed_setting_frameworks_agree_every_step(seed_runs) -> None:
    for i, a in enumerate(FW):
        for b in FW[i + 1:]:
            assert maxdiff(seed_runs[a]["w"], seed_runs[b]["w"]) <= 1e-6, (a, b)  # 4.8e-7
            # J = w^2 - 10w + 25 in float32 rounds at ulp(25) = 1.9e-6: measured 3.8e-6
            assert maxdiff(seed_runs[a]["cost"], seed_runs[b]["cost"]) <= 1e-5, (a, b)


def test_keras_compiled_equals_eager(seed_runs) -> None:
    eager = mod("keras").minimize(optimizer=SEED, steps=1000, compiled=False)
    assert maxdiff(eager["w"], seed_runs["keras"]["w"]) == 0.0


@pytest.mark.parametrize("fw", FW)
def test_float64_follows_closed_form(fw: str) -> None:
    w = minimize(fw, dtype="float64")["w"]
    assert w.dtype == np.float64
    assert maxdiff(w, closed_form()) < 1e-13  # vs 1.1e-5 in float32


# ------------------------------------------------------------------ coefficients

@pytest.mark.parametrize("fw", FW)
@pytest.mark.parametrize("coefficients,w_star", [((1, -10, 25), 5.0), ((1, -20, 100), 10.0),
                                                 ((1, 10, 25), -5.0)], ids=["5", "10", "-5"])
def test_coefficients_through_arguments(fw: str, coefficients, w_star: float) -> None:
    w = minimize(fw, coefficients)["w"]
    ref = closed_form(coefficients, 0.0, 0.01, 1000)
    bound = stall_bound(coefficients, 0.01)  # 1.2e-5 for w* = +-5, 2.4e-5 for 10
    assert abs(w[-1] - w_star) <= bound * 1.01 + abs(ref[-1] - w_star)
    assert maxdiff(w, ref) <= bound * 1.01


def test_tf1_same_graph_fed_different_coefficients(seed_runs) -> None:
    from tf1_compat.quadratic import QuadraticGraph

    with QuadraticGraph(w0=0.0, optimizer=SEED) as g:  # one graph, one placeholder
        graph_ops = len(g.graph.get_operations())
        runs = {c: g.run(c, 1000) for c in [(1, -10, 25), (1, -20, 100), (1, 10, 25)]}
        assert len(g.graph.get_operations()) == graph_ops  # feeding adds nothing
        again = g.run((1, -10, 25), 1000)  # re-initialised, so identical
    assert maxdiff(again["w"], runs[(1, -10, 25)]["w"]) == 0.0
    assert maxdiff(runs[(1, -10, 25)]["w"], seed_runs["tf1"]["w"]) == 0.0
    assert runs[(1, 10, 25)]["w"][-1] == np.float32(-4.9999886)  # seed 004
    assert abs(runs[(1, -20, 100)]["w"][-1] - 10.0) <= stall_bound((1, -20, 100), 0.01)


# ------------------------------------------------------------------ Keras 3 has no minimize

def test_keras3_optimizer_minimize_raises_and_replacement_works() -> None:
    import tensorflow as tf

    w = tf.Variable(0.0, dtype=tf.float32)
    opt = tf.optimizers.SGD(learning_rate=0.01)  # seed 004; this *is* keras.optimizers.SGD
    with pytest.raises(AttributeError, match="minimize"):
        opt.minimize(lambda: w**2 - 10 * w + 25, var_list=[w])
    # the replacement: GradientTape + apply_gradients
    with tf.GradientTape() as tape:
        c = w**2 - 10 * w + 25
    opt.apply_gradients([(tape.gradient(c, w), w)])
    assert w.numpy() == np.float32(np.float32(0.01) * np.float32(10.0))  # 0.099999994
    assert abs(w.numpy() - closed_form(steps=1)[1]) < 1e-8


# ------------------------------------------------------------------ every optimizer

#: max per-step |w| difference across the three frameworks over 1000 steps, float32.
#: Measured: sgd 4.8e-7, momentum 9.5e-7, nesterov 4.8e-7, rmsprop 9.5e-7, adam 3.6e-7,
#: adagrad 1.2e-7, centered_rmsprop 1.2e-5. Centered RMSprop divides by sqrt(v - mean(g)^2):
#: while the gradient changes slowly (steps 25-70 here) v and mean(g)^2 nearly cancel, and
#: float32 rounding of that difference is amplified into the step (the float64 runs agree to
#: 6e-15, so it is rounding, not a translation error).
CROSS_BOUND = {n: 1e-6 for n in OPTIMIZERS} | {"centered_rmsprop": 2e-5}


@pytest.fixture(scope="module")
def optimizer_runs() -> dict[str, dict[str, np.ndarray]]:
    return {n: {fw: minimize(fw, optimizer=OptimizerSpec(n, lr=0.01))["w"] for fw in FW}
            for n in OPTIMIZERS}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_frameworks_agree_every_step(name: str, optimizer_runs) -> None:
    runs = optimizer_runs[name]
    for i, a in enumerate(FW):
        for b in FW[i + 1:]:
            assert maxdiff(runs[a], runs[b]) <= CROSS_BOUND[name], (a, b)


@pytest.mark.parametrize("fw", FW)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_follows_float64_reference(name: str, fw: str, optimizer_runs) -> None:
    ref = reference_minimize(optimizer=OptimizerSpec(name, lr=0.01))["w"]
    assert maxdiff(ref, np.zeros(1)) > 0.5  # it moved
    # float32 vs float64 over 1000 steps: measured <= 1.2e-5 (the GD stall of 1.19e-5 for
    # sgd, centered RMSprop's cancellation 7.8e-6, the rest <= 4.4e-6)
    assert maxdiff(optimizer_runs[name][fw], ref) <= 2e-5


# ------------------------------------------------------------------ what the defaults would do

@pytest.fixture(scope="module")
def flat_runs() -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for n in ("rmsprop", "adam", "adagrad"):
        spec = OptimizerSpec(n, lr=0.01)
        out[n] = {fw: minimize(fw, FLAT, spec)["w"] for fw in FW}
        out[n + "/defaults"] = {fw: minimize(fw, FLAT, spec, defaults=True)["w"] for fw in FW}
    return out


@pytest.mark.parametrize("name", ["rmsprop", "adam", "adagrad"])
def test_translation_holds_where_epsilon_matters(name: str, flat_runs) -> None:
    # gradients ~1e-5: the shared translation still agrees to rounding (measured <= 9.5e-7)
    runs = flat_runs[name]
    assert maxdiff(runs["keras"], runs["torch"]) <= 1e-6
    assert maxdiff(runs["keras"], runs["tf1"]) <= 1e-6


@pytest.mark.parametrize("name,pair,low", [
    ("rmsprop", ("keras", "torch"), 1.0),   # measured 4.77 (alpha 0.99, eps 1e-8 outside)
    ("rmsprop", ("keras", "tf1"), 1.0),     # measured 3.45 (rms slot starts at ones)
    ("adam", ("keras", "torch"), 1e-2),     # measured 8.3e-2 (eps 1e-7 hat vs 1e-8)
    ("adam", ("keras", "tf1"), 1e-2),       # measured 7.7e-2 (eps 1e-7 vs 1e-8)
    ("adagrad", ("keras", "torch"), 0.1),   # measured 0.60 (torch accumulator starts at 0)
])
def test_framework_defaults_differ(name: str, pair: tuple[str, str], low: float,
                                   flat_runs) -> None:
    runs = flat_runs[name + "/defaults"]
    assert maxdiff(runs[pair[0]], runs[pair[1]]) > low


def test_each_default_in_isolation() -> None:
    import keras_models.quadratic as kq
    import torch_models.quadratic as tq
    from tf1_compat.quadratic import QuadraticGraph

    # TF1 RMSprop with the translation but without after_init: the ones-initialised slot
    # alone moves the seed's run by 2.8e-3 (2.09 on the flat quadratic)
    rms = OptimizerSpec("rmsprop", lr=0.01)
    with QuadraticGraph(0.0, rms, fix_init=False) as g:
        ones = g.run(SEED_COEFFICIENTS)["w"]
    assert maxdiff(ones, minimize("keras", optimizer=rms)["w"]) > 1e-3
    # torch Adagrad starting from a zero accumulator (torch's default): 0.60 on FLAT
    zero = tq.minimize(FLAT, optimizer=OptimizerSpec("adagrad", lr=0.01, initial_accumulator=0))
    assert maxdiff(zero["w"], minimize("keras", FLAT, OptimizerSpec("adagrad", lr=0.01))["w"]) > 0.1
    # Adam with the default epsilons (Keras 1e-7, torch 1e-8) and the betas made exact: 8.3e-2
    k = kq.minimize(FLAT, optimizer=OptimizerSpec("adam", lr=0.01, epsilon=1e-7), compiled=True)
    t = tq.minimize(FLAT, optimizer=OptimizerSpec("adam", lr=0.01, epsilon=1e-8))
    assert maxdiff(k["w"], t["w"]) > 1e-2
    # Adam betas 0.9/0.999 (not float32-exact) with the tiny epsilon: 1.2e-5, above 1e-6
    b = {"beta_1": 0.9, "beta_2": 0.999}
    k = kq.minimize(optimizer=OptimizerSpec("adam", lr=0.01, **b), compiled=True)
    t = tq.minimize(optimizer=OptimizerSpec("adam", lr=0.01, **b))
    assert 5e-6 < maxdiff(k["w"], t["w"]) < 1e-4


# ------------------------------------------------------------------ saddle

SADDLE_SPECS = [OptimizerSpec(n, lr=0.01) for n in OPTIMIZERS]


@pytest.fixture(scope="module")
def escapes() -> dict[str, dict[str, int | None]]:
    return {s.name: {fw: mod(fw).escape_steps(s) for fw in FW} for s in SADDLE_SPECS}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_saddle_escape_counts_agree(name: str, escapes) -> None:
    ref = reference_escape_steps(OptimizerSpec(name, lr=0.01))
    assert ref is not None
    assert escapes[name] == {fw: ref for fw in FW}


def test_saddle_ranking_matches_seed_000(escapes) -> None:
    n = {k: v["keras"] for k, v in escapes.items()}
    # plain GD: y_k = y0 * 1.02^k reaches 1 at k = ceil(ln(1000) / ln(1.02)) = 349
    assert n["sgd"] == int(np.ceil(np.log(1000) / np.log(1.02)))
    # seed 000: momentum, RMSprop and Adam leave the plateau faster than plain GD
    for fast in ("momentum", "nesterov", "rmsprop", "centered_rmsprop", "adam"):
        assert n[fast] < n["sgd"] / 4, fast
    # Adagrad is the exception (the seed does not mention it): its accumulator sums g^2 =
    # 4y^2, so once y has grown the effective lr shrinks like 1/|y| and y grows only linearly
    assert n["adagrad"] > n["sgd"]


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "centered_rmsprop"])
def test_saddle_trajectories_agree(name: str) -> None:
    spec = OptimizerSpec(name, lr=0.01)
    runs = {fw: mod(fw).saddle(spec) for fw in FW}
    for fw in FW[1:]:
        for key in ("x", "y"):  # measured <= 6e-7
            assert maxdiff(runs[fw][key], runs["keras"][key]) <= 1e-6


# ------------------------------------------------------------------ input checks

@pytest.mark.parametrize("fw", FW)
@pytest.mark.parametrize("bad", [(0, 1, 2), (-1, 0, 0), (1, 2), (1, float("nan"), 0), "x,y,z"])
def test_bad_coefficients(fw: str, bad) -> None:
    with pytest.raises(ConfigError):
        mod(fw).minimize(coefficients=bad)


def test_checks() -> None:
    assert check_coefficients("1,-10,25") == (1.0, -10.0, 25.0)
    assert check_coefficients(np.array([[1.0], [-20.0], [100.0]])) == (1.0, -20.0, 100.0)
    with pytest.raises(ConfigError):
        run_frameworks(["torch"], steps=-1)
    with pytest.raises(UnknownNameError, match="Did you mean 'torch'"):
        run_frameworks(["torhc"])
    with pytest.raises(ConfigError):
        run_frameworks(["torch"], dtype="float16")
    assert list(FRAMEWORKS)[0] == "torch"  # imported first


# ------------------------------------------------------------------ CLI

def test_cli_quadratic_table_json_png(tmp_path: Path, capsys) -> None:
    from zoo.cli import main

    out, js = tmp_path / "plots", tmp_path / "q.json"
    rc = main(["quadratic", "--steps", "200", "--out", str(out), "--json", str(js)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "final w" in text and "max difference between frameworks" in text
    for fw in FW:
        assert fw in text
    doc = json.loads(js.read_text())
    assert set(doc["frameworks"]) == set(FW)
    ref = closed_form(steps=200)
    for fw, run in doc["frameworks"].items():
        assert len(run["w"]) == len(run["cost"]) == 201 and run["w"][0] == 0.0
        assert maxdiff(run["w"], ref) < 2e-5, fw
    assert (out / "quadratic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_quadratic_options(tmp_path: Path, capsys) -> None:
    from zoo.cli import main

    js = tmp_path / "q.json"
    rc = main(["quadratic", "--frameworks", "torch", "--coefficients", "1,10,25", "--w0", "1",
               "--optimizer", "adam", "--lr", "0.1", "--steps", "50", "--json", str(js)])
    assert rc == 0
    assert "float64 reference" in capsys.readouterr().out
    w = json.loads(js.read_text())["frameworks"]["torch"]["w"]
    ref = reference_minimize((1, 10, 25), 1.0, OptimizerSpec("adam", lr=0.1), 50)["w"]
    assert w[0] == 1.0 and maxdiff(w, ref) < 1e-5


@pytest.mark.parametrize("argv", [
    ["quadratic", "--coefficients=0,1,2"],
    ["quadratic", "--coefficients=-1,0,0"],
    ["quadratic", "--coefficients", "1,2"],
    ["quadratic", "--optimizer", "adamm"],
    ["quadratic", "--lr", "0"],
    ["quadratic", "--lr", "-0.1"],
    ["quadratic", "--frameworks", "jax"],
    ["quadratic", "--steps", "-5"],
    ["quadratic", "--dtype", "float16"],
    ["saddle", "--optimizers", "sgd,adamm"],
    ["saddle", "--start", "1"],
    ["saddle", "--threshold", "0"],
    ["saddle", "--lr", "0"],
])
def test_cli_bad_input_exits_2_with_one_line(argv: list[str], capsys) -> None:
    from zoo.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err


def test_cli_saddle(tmp_path: Path, capsys) -> None:
    from zoo.cli import main

    js = tmp_path / "s.json"
    rc = main(["saddle", "--frameworks", "torch,tf1", "--optimizers", "sgd,adam",
               "--json", str(js), "--out", str(tmp_path)])
    assert rc == 0
    assert "yes" in capsys.readouterr().out
    doc = json.loads(js.read_text())["escape_steps"]
    assert doc == {"sgd": {"torch": 349, "tf1": 349, "numpy": 349},
                   "adam": {"torch": doc["adam"]["numpy"], "tf1": doc["adam"]["numpy"],
                            "numpy": reference_escape_steps(OptimizerSpec("adam", lr=0.01))}}
    assert (tmp_path / "saddle.png").stat().st_size > 1000
