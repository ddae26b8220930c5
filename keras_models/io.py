"""Keras weights in Keras's native format: a `.keras` file (`model.save`), plus the JSON sidecar
`<path>.json` of `zoo.interchange` recording the model spec, shapes and dtype.

Loading is safe only: `keras.models.load_model(path, safe_mode=True, compile=False)` (no
lambda or other code is deserialised; the model is not compiled, so no custom loss is needed).
Every model is the zoo's own `ZooModel` class (`keras_models.model`, registered with Keras as
`zoo>ZooModel`), whose config is the model spec: loading rebuilds the model from the zoo's layer
table, and a file whose model is not the one its sidecar records is refused. The layers are
Keras's own or the zoo's registered subclasses of them (`zoo>ZooBatchNormalization`,
`zoo>ZooEmbedding`), so safe mode loads every model, the recurrent ones included (an LSTM's
or GRU's variables live in its cell and are saved with it). Every variable is saved, so the
BatchNorm moving statistics (non-trainable variables) travel with the trained weights.
"""

from __future__ import annotations

import functools
import os
import zipfile
from pathlib import Path

import keras
import numpy as np

from keras_models.model import ZooModel, build, get_weights
from keras_models.train import floatx
from zoo import interchange as ic
from zoo.errors import DataError
from zoo.specs import ModelSpec

__all__ = ["FORMAT", "load", "save"]

FORMAT = "keras"


def save(model_spec: ModelSpec, weights: dict[str, np.ndarray], path: str | os.PathLike,
         force: bool = False) -> Path:
    """Write `weights` as a `.keras` file at `path` (atomically) and its sidecar."""
    return ic.save_with(FORMAT, functools.partial(_write, model_spec, weights), model_spec,
                        weights, path, force)


def _write(model_spec: ModelSpec, weights: dict[str, np.ndarray], path: Path, dtype: str) -> None:
    with floatx(dtype):
        model = build(model_spec, weights, dtype)
        with ic.temp_path(path, suffix=".keras") as tmp:
            model.save(tmp, overwrite=True)
            ic.replace_atomically(tmp, path)


def load(path: str | os.PathLike) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """(model spec, canonical weights) of a `.keras` file written by `save`."""
    return ic.load_with(FORMAT, _read, path)


def _read(path: Path, spec: ModelSpec, dtype: str) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise DataError(f"{str(path)!r} is not a Keras .keras file (not a zip archive); "
                        "pass a file written by Keras `model.save` or `zoo train --save`.")
    try:
        with floatx(dtype):
            model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # keras raises ValueError, TypeError, KeyError, OSError, ...
        raise DataError(f"{str(path)!r} could not be loaded as a Keras model "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                        "pass a file written by Keras `model.save` or `zoo train --save`.") from None
    if not isinstance(model, ZooModel):
        raise DataError(f"{str(path)!r} holds a Keras {type(model).__name__}, not a zoo model; "
                        "pass a file written by `zoo train --save` or `zoo convert`.")
    if model.model_spec != spec:
        raise DataError(f"{str(path)!r} does not fit its sidecar: the file holds model "
                        f"{model.model_spec.to_dict()}, the sidecar records {spec.to_dict()}; "
                        "the file and its .json sidecar belong to different models: re-save "
                        "the weights with `zoo train --save` or `zoo convert`.")
    return get_weights(model)
