"""Helpers shared by the framework test files: one tolerance table, cached datasets, specs
and weight differences (imported as `from helpers import ...`; pytest puts tests/ on the path)."""

from __future__ import annotations

from functools import cache

import numpy as np

from zoo import data
from zoo.compare import TOLERANCES
from zoo.specs import ModelSpec, model_spec_for

#: The largest absolute weight difference allowed after one epoch with all recipes applied:
#: the comparison harness's own table (docs/porting.md: float32 frameworks differ only
#: by rounding, ~1e-7).
TOL = {dtype: atol for dtype, (atol, _rtol) in TOLERANCES.items()}


@cache
def load(name: str, dtype: str = "float32", preprocess: str | None = None) -> data.Dataset:
    """Each dataset once per test session (the scikit-learn loaders and the split cost time).
    "digits28" is scikit-learn's digits as 28x28x1 images (each pixel 3x3, 2 pixels of
    border): LeNet-sized images that need no download."""
    if name == "digits28":
        return digits28(dtype)
    return data.load(name, dtype=dtype, preprocess=preprocess)


def _upsample(X: np.ndarray) -> np.ndarray:
    imgs = np.kron(X.reshape(-1, 8, 8), np.ones((3, 3), X.dtype))
    return np.pad(imgs, ((0, 0), (2, 2), (2, 2))).reshape(len(X), -1)


@cache
def digits28(dtype: str = "float32") -> data.Dataset:
    import dataclasses

    ds = data.load("digits", dtype=dtype)
    return dataclasses.replace(ds, name="digits28", X_train=_upsample(ds.X_train),
                               X_test=_upsample(ds.X_test), image_shape=(28, 28, 1))


def image_shape(ds: data.Dataset) -> tuple[int, ...] | None:
    """(H, W, C) of an image dataset (digits: 8x8x1), else None."""
    shape = ds.image_shape or ((8, 8) if ds.name == "digits" else None)
    if shape is None:
        return None
    return tuple(shape) if len(shape) == 3 else (*shape, 1)


#: The optimizer the default test run trains the layer models (cnn, lenet, nielsen) with in
#: every framework; the other four run with `-m slow` (their one-epoch trainings would
#: double the suite's time on two cores).
DEFAULT_RUN_OPTIMIZER = "adam"


def optimizer_params(opts, fast=(DEFAULT_RUN_OPTIMIZER,)) -> list:
    """pytest params of `opts`, the ones not in `fast` marked slow."""
    import pytest

    return [pytest.param(o, marks=() if o in fast else pytest.mark.slow) for o in opts]


def spec_for(model: str, ds: data.Dataset) -> ModelSpec:
    """The zoo's spec of `model` for `ds` (image models get the dataset's (H, W, C))."""
    return model_spec_for(model, ds.n_features, ds.n_outputs, input_shape=image_shape(ds),
                          vocab=ds.vocab)


def model_inputs(X: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """X in the model's input shape: (N, F) features or (N, H, W, C) images."""
    return np.asarray(X).reshape(len(X), *spec.input_shape)


def max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The largest absolute difference of any weight between two canonical weight dicts."""
    assert set(a) == set(b), (sorted(a), sorted(b))
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))))
               for k in a)


def magnitude(values) -> float:
    """max(1, largest |value|) of an array or a dict of arrays. The ice-cream model's weights
    reach ~100 (and its losses ~1e4), where one float32 ulp alone exceeds 1e-6: tolerances are
    scaled by this once it exceeds 1."""
    arrays = values.values() if isinstance(values, dict) else [values]
    return max(1.0, max(float(np.max(np.abs(np.asarray(v)))) for v in arrays))


def scaled_tol(dtype: str, values) -> float:
    return TOL[dtype] * magnitude(values)


# ----------------------------------------------------------------------------- recurrent cells
# The equations of `zoo.layers.LSTM` and `zoo.layers.GRU` written out once in numpy, for the
# framework test files' forward checks (the reference in zoo/reference.py is separate code).
def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def np_lstm(x, kernel, rec, bias, return_sequences=False):
    """`zoo.layers.LSTM`'s docstring: gates i, f, c, o; h and c start at zero."""
    n, steps, _ = x.shape
    u = rec.shape[0]
    h, c, hs = np.zeros((n, u)), np.zeros((n, u)), []
    for t in range(steps):
        z = x[:, t] @ kernel + h @ rec + bias
        i, f, g, o = (z[:, k * u:(k + 1) * u] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1) if return_sequences else h


def np_gru(x, kernel, rec, bias, reset_after=True, return_sequences=False):
    """`zoo.layers.GRU`'s docstring: gates z, r, h; reset_after=True applies r to h U_h + b'_h
    (bias rows: input, recurrent), False to h before U_h (one bias row)."""
    n, steps, _ = x.shape
    u = rec.shape[0]
    h, hs = np.zeros((n, u)), []
    cols = [slice(k * u, (k + 1) * u) for k in range(3)]
    for t in range(steps):
        xt = x[:, t]
        if reset_after:
            a, b = xt @ kernel + bias[0], h @ rec + bias[1]
            z = sigmoid(a[:, cols[0]] + b[:, cols[0]])
            r = sigmoid(a[:, cols[1]] + b[:, cols[1]])
            cand = np.tanh(a[:, cols[2]] + r * b[:, cols[2]])
        else:
            a = xt @ kernel + bias
            z = sigmoid(a[:, cols[0]] + h @ rec[:, cols[0]])
            r = sigmoid(a[:, cols[1]] + h @ rec[:, cols[1]])
            cand = np.tanh(a[:, cols[2]] + (r * h) @ rec[:, cols[2]])
        h = z * h + (1.0 - z) * cand
        hs.append(h)
    return np.stack(hs, 1) if return_sequences else h


# ----------------------------------------------------------------------------- normalisation
def state_names(spec) -> list[str]:
    """The state tensors of a spec's weight tables (BatchNorm's moving statistics)."""
    from zoo.layers import tensor_specs

    return [t.name for t in tensor_specs(spec.resolved, trainable=False)]


def trainable_names(spec) -> list[str]:
    from zoo.layers import tensor_specs

    return [t.name for t in tensor_specs(spec.resolved, trainable=True)]


def perturbed_norm_weights(spec, dtype: str, seed: int = 5) -> dict[str, np.ndarray]:
    """Initial weights with gamma, beta and the moving statistics away from ones and zeros,
    so that every one of them shows in the outputs."""
    from zoo.specs import init_weights

    rng = np.random.default_rng(seed)
    w = init_weights(spec, 0, dtype)
    for name in w:
        short = name.rpartition("/")[2]
        if short in ("gamma", "moving_variance"):
            w[name] = rng.uniform(0.5, 1.5, w[name].shape).astype(dtype)
        elif short in ("beta", "moving_mean"):
            w[name] = rng.normal(0.0, 0.3, w[name].shape).astype(dtype)
    return w


def shifted_weights(spec, seed: int = 1, dtype: str = "float32") -> dict[str, np.ndarray]:
    """Canonical initial weights with non-zero biases and shifted gammas, betas and moving
    statistics (so that a lost bias or moving statistic shows in the predictions; moving
    variances stay positive): what the interchange tests carry across formats."""
    from zoo.specs import init_weights

    w = init_weights(spec, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 100)

    def shift(k, v):
        if k.endswith(("bias", "/beta", "/gamma", "/moving_mean")):
            return v + rng.normal(0, 0.1, v.shape).astype(v.dtype)
        if k.endswith("/moving_variance"):
            return v + rng.uniform(0.0, 0.5, v.shape).astype(v.dtype)
        return v
    return {k: shift(k, v) for k, v in w.items()}
