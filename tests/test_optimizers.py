"""The optimizer translation (zoo.optimizers -> Keras 3, TF1, torch) on a multi-variable
problem: every framework's `make_optimizer` follows the float64 numpy reference (the Keras
formulas) step by step, for any list of variables, and each compensation is tested."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch  # noqa: F401  (torch before tensorflow, see conftest.py)

from zoo.errors import ConfigError, UnknownNameError
from zoo.optimizers import (
    OPTIMIZERS,
    OptimizerSpec,
    keras_kwargs,
    native_defaults_kwargs,
    tf1_kwargs,
    torch_kwargs,
    translation_notes,
)
from zoo.quadratic import NumpyOptimizer

STEPS = 20
RNG = np.random.default_rng(0)
#: a least-squares problem with a matrix and a vector variable (different shapes on purpose)
X = RNG.normal(size=(16, 3))
Y = RNG.normal(size=(16, 2))
W0 = RNG.normal(size=(3, 2)) * 0.1
B0 = np.zeros(2)


def _grads_np(w: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    r = X @ w + b - Y  # loss = mean(r**2)
    return [2 * X.T @ r / r.size, 2 * r.sum(0) / r.size]


def numpy_run(spec: OptimizerSpec) -> list[np.ndarray]:
    w, b = W0.copy(), B0.copy()
    opt = NumpyOptimizer(spec)
    for _ in range(STEPS):
        opt.step([w, b], _grads_np(w, b))
    return [w, b]


def keras_run(spec: OptimizerSpec, dtype: str = "float32") -> list[np.ndarray]:
    import tensorflow as tf

    from keras_models.optimizers import make_optimizer

    w, b = tf.Variable(W0.astype(dtype)), tf.Variable(B0.astype(dtype))
    x, y = tf.constant(X.astype(dtype)), tf.constant(Y.astype(dtype))
    opt = make_optimizer(spec, dtype)
    for _ in range(STEPS):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(x @ w + b - y))
        opt.apply_gradients(zip(tape.gradient(loss, [w, b]), [w, b], strict=True))
    return [w.numpy(), b.numpy()]


def tf1_run(spec: OptimizerSpec, dtype: str = "float32") -> list[np.ndarray]:
    import tensorflow as tf

    from tf1_compat.optimizers import after_init, make_optimizer

    tf1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        w = tf1.get_variable("w", initializer=tf.constant(W0.astype(dtype)))
        b = tf1.get_variable("b", initializer=tf.constant(B0.astype(dtype)))
        x = tf1.placeholder(dtype, [None, 3])
        y = tf1.placeholder(dtype, [None, 2])
        loss = tf.reduce_mean(tf.square(tf.matmul(x, w) + b - y))
        opt = make_optimizer(spec, dtype)
        train = opt.minimize(loss, var_list=[w, b])
        init = tf1.global_variables_initializer()
    with tf1.Session(graph=g) as sess:
        sess.run(init)
        after_init(sess, opt, [w, b])
        for _ in range(STEPS):
            sess.run(train, {x: X, y: Y})
        return sess.run([w, b])


def torch_run(spec: OptimizerSpec, dtype: str = "float32") -> list[np.ndarray]:
    from torch_models.optimizers import make_optimizer

    dt = getattr(torch, dtype)
    w = torch.tensor(W0, dtype=dt, requires_grad=True)
    b = torch.tensor(B0, dtype=dt, requires_grad=True)
    x, y = torch.tensor(X, dtype=dt), torch.tensor(Y, dtype=dt)
    opt = make_optimizer(spec, [w, b])
    for _ in range(STEPS):
        opt.zero_grad()
        torch.mean((x @ w + b - y) ** 2).backward()
        opt.step()
    return [w.detach().numpy(), b.detach().numpy()]


RUNNERS = {"keras": keras_run, "tf1": tf1_run, "torch": torch_run}


@pytest.mark.parametrize("framework", list(RUNNERS))
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_make_optimizer_follows_numpy_reference(name: str, framework: str) -> None:
    spec = OptimizerSpec(name, lr=0.05)
    ref = numpy_run(spec)
    got = RUNNERS[framework](spec)
    moved = max(np.abs(r - s).max() for r, s in zip(ref, [W0, B0], strict=True))
    assert moved > 0.05  # the optimizer really trained both variables
    # float32 vs float64 after 20 steps: measured <= 6.5e-7 (worst: TF1 Adam 6.5e-7, torch
    # centered RMSprop 5.5e-7; SGD ~3e-8)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g, r, atol=2e-6, rtol=0)


#: float32-exact values of the hyperparameters Keras would route through float32
F32_EXACT = {"momentum": float(np.float32(0.9)), "initial_accumulator": float(np.float32(0.1))}


def _f64_spec(name: str, exact: bool = False) -> OptimizerSpec:
    kw: dict[str, float] = {}
    if name in ("momentum", "nesterov"):
        kw["momentum"] = F32_EXACT["momentum"] if exact else 0.9
    if name == "adagrad":
        kw["initial_accumulator"] = F32_EXACT["initial_accumulator"] if exact else 0.1
    return OptimizerSpec(name, lr=0.05, **kw)


@pytest.mark.parametrize("framework", list(RUNNERS))
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float64_matches_reference_to_rounding(name: str, framework: str) -> None:
    # float64 Keras uses a float64 lr variable and np.float64 hyperparameters, TF1 float64
    # hyperparameter constants; without them both would apply float32(lr) = 0.05000000075
    # (error ~1e-9) and Keras float32(0.9) as the momentum (next test).
    spec = _f64_spec(name)
    ref = numpy_run(spec)
    got = RUNNERS[framework](spec, "float64")
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-13, rtol=0)


@pytest.mark.parametrize("name,low,high", [("momentum", 1e-9, 1e-7), ("nesterov", 1e-9, 1e-7),
                                           ("adagrad", 1e-10, 1e-8)])
def test_keras_float64_python_float_hyperparameters_go_through_float32(
        name: str, low: float, high: float, monkeypatch) -> None:
    """Keras's own behaviour: given momentum=0.9 as a Python float, a float64 run applies
    float32(0.9) = 0.8999999762 (`ops.cast` converts the Python float to float32 first), and
    Adagrad starts at float32(0.1): measured 8.5e-8 / 7.0e-8 / 4.5e-10 after 20 steps here.
    `keras_models.optimizers` passes np.float64 values instead (the test above: 1e-13);
    float32-exact values are the other way out. TF1 and torch do not do this."""
    import keras_models.optimizers

    monkeypatch.setattr(keras_models.optimizers, "_FLOAT_ARGS", ())  # Python floats, as given
    spec = _f64_spec(name)
    ref = numpy_run(spec)
    off = max(np.abs(g - r).max() for g, r in zip(keras_run(spec, "float64"), ref, strict=True))
    assert low < off < high
    for framework in ("tf1", "torch"):
        for g, r in zip(RUNNERS[framework](spec, "float64"), ref, strict=True):
            np.testing.assert_allclose(g, r, atol=1e-13, rtol=0)
    exact = _f64_spec(name, exact=True)  # the other way out: values float32 represents
    for g, r in zip(keras_run(exact, "float64"), numpy_run(exact), strict=True):
        np.testing.assert_allclose(g, r, atol=1e-13, rtol=0)


def test_tf1_rmsprop_slot_starts_at_one_and_after_init_zeroes_it() -> None:
    import tensorflow as tf

    from tf1_compat.optimizers import after_init, make_optimizer

    tf1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        w = tf1.get_variable("w", initializer=tf.constant([1.0, 2.0]))
        opt = make_optimizer(OptimizerSpec("rmsprop", lr=0.01))
        opt.minimize(tf.reduce_sum(w**2), var_list=[w])
        init = tf1.global_variables_initializer()
    with tf1.Session(graph=g) as sess:
        sess.run(init)
        assert sess.run(opt.get_slot(w, "rms")).tolist() == [1.0, 1.0]  # TF1's ones init
        after_init(sess, opt, [w])
        assert sess.run(opt.get_slot(w, "rms")).tolist() == [0.0, 0.0]


def test_translation_values() -> None:
    for name in OPTIMIZERS:
        spec = OptimizerSpec(name, lr=0.1)
        for fn in (keras_kwargs, tf1_kwargs, torch_kwargs):
            cls, kw = fn(spec)
            assert kw.get("learning_rate", kw.get("lr")) == 0.1
            for key in ("epsilon", "eps"):
                if key in kw:
                    assert kw[key] == 1e-20
    assert torch_kwargs(OptimizerSpec("adagrad"))[1]["initial_accumulator_value"] == 0.1
    assert torch_kwargs(OptimizerSpec("momentum"))[1]["dampening"] == 0.0
    assert torch_kwargs(OptimizerSpec("rmsprop", rho=0.8))[1]["alpha"] == 0.8
    assert tf1_kwargs(OptimizerSpec("rmsprop", rho=0.8))[1]["decay"] == 0.8
    b1, b2 = torch_kwargs(OptimizerSpec("adam"))[1]["betas"]
    assert (b1, b2) == (float(np.float32(b1)), float(np.float32(b2)))  # float32-exact
    assert b1 != 0.9 and abs(b1 - 0.9) < 1e-7
    assert keras_kwargs(OptimizerSpec("nesterov"))[1]["nesterov"] is True
    with pytest.raises(ConfigError, match="initial_accumulator > 0"):
        tf1_kwargs(OptimizerSpec("adagrad", initial_accumulator=0.0))


@pytest.mark.parametrize("framework", ["keras", "tf1", "torch"])
def test_translated_class_names_exist(framework: str) -> None:
    import tensorflow as tf

    ns = {"keras": tf.keras.optimizers, "tf1": tf.compat.v1.train, "torch": torch.optim}[framework]
    fn = {"keras": keras_kwargs, "tf1": tf1_kwargs, "torch": torch_kwargs}[framework]
    for name in OPTIMIZERS:
        assert hasattr(ns, fn(OptimizerSpec(name))[0])
        assert hasattr(ns, native_defaults_kwargs(name, 0.1, framework)[0])


def test_translation_notes_cover_every_optimizer() -> None:
    notes = translation_notes()
    assert {n["optimizer"] for n in notes} >= {"all", "momentum", "rmsprop", "adam", "adagrad"}
    assert any("ONES" in n["note"] for n in translation_notes("rmsprop"))
    assert any("float32-exact" in n["note"] for n in translation_notes("adam"))
    assert any("0.1" in n["note"] for n in translation_notes("adagrad"))
    with pytest.raises(UnknownNameError, match="Did you mean 'adam'"):
        translation_notes("adamm")


def test_unknown_optimizer_and_bad_lr() -> None:
    with pytest.raises(UnknownNameError):
        OptimizerSpec("sgdd")
    with pytest.raises(ConfigError):
        OptimizerSpec("sgd", lr=0.0)
    with pytest.raises(UnknownNameError):
        native_defaults_kwargs("sgd", 0.1, "jax")


#: module -> packages that importing it must not import (the framework packages never import
#: each other, and zoo/ imports no framework at module level)
IMPORT_RULES = {
    "zoo.optimizers": ("tensorflow", "torch", "keras"),
    "zoo.quadratic": ("tensorflow", "torch", "keras"),
    "zoo.commands.quadratic": ("tensorflow", "torch", "keras", "matplotlib"),
    "zoo.commands.saddle": ("tensorflow", "torch", "keras", "matplotlib"),
    "torch_models.optimizers": ("tensorflow", "keras", "keras_models", "tf1_compat"),
    "torch_models.quadratic": ("tensorflow", "keras", "keras_models", "tf1_compat"),
    "keras_models.quadratic": ("torch", "tf1_compat", "torch_models"),
    "tf1_compat.quadratic": ("torch", "keras_models", "torch_models"),
}


def test_imports_stay_separate() -> None:
    # one fresh interpreter per module, started together to keep the test short
    procs = {}
    for module, forbidden in IMPORT_RULES.items():
        code = (f"import sys, {module}; "
                f"print(','.join(m for m in {forbidden!r} if m in sys.modules))")
        procs[module] = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)
    leaks = {}
    for module, p in procs.items():
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, module
        if out.strip():
            leaks[module] = out.strip()
    assert leaks == {}
