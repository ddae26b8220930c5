"""Helpers shared by the framework test files: one tolerance table, cached datasets, specs
and weight differences (imported as `from helpers import ...`; pytest puts tests/ on the path)."""

from __future__ import annotations

from functools import cache

import numpy as np

from zoo import data
from zoo.compare import TOLERANCES
from zoo.specs import ModelSpec, model_spec_for

#: The largest absolute weight difference allowed after one epoch with all recipes applied:
#: the comparison harness's own table (porting-facts §19-20: float32 frameworks differ only
#: by rounding, ~1e-7).
TOL = {dtype: atol for dtype, (atol, _rtol) in TOLERANCES.items()}


@cache
def load(name: str, dtype: str = "float32", preprocess: str | None = None) -> data.Dataset:
    """Each dataset once per test session (the scikit-learn loaders and the split cost time)."""
    return data.load(name, dtype=dtype, preprocess=preprocess)


def spec_for(model: str, ds: data.Dataset) -> ModelSpec:
    return model_spec_for(model, ds.n_features, ds.n_outputs)


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
