"""Keras 2 weights in Keras 2's native weights format: the HDF5 file of
`model.save_weights("model.h5")`, plus the JSON sidecar `<path>.json` of `zoo.interchange`
recording the model spec, shapes and dtype.

Why `save_weights` (HDF5 weights) rather than `model.save("model.h5")` (HDF5 model): a whole
saved model holds the model's config, and `tf.keras.models.load_model` rebuilds it by
deserialising that config (classes looked up by name, Lambda layers' code), which is not safe
for a file someone hands you. The weights file holds arrays only: one group per layer, in
model order, each with its variables (`dense_0/kernel:0`, `lstm_0/lstm_cell/kernel:0`). The
model comes from the sidecar's spec, built by `keras2_models.model.build` from the zoo's layer
table, and `model.load_weights(path)` reads the arrays into it (Keras 2 checks every shape).
Keras 2 itself matches an HDF5 weights file to a model by layer ORDER, not by name; here the
file's layer and variable names are checked against the model's first, so a file of another
model is refused with the names that differ. The BatchNorm moving statistics are weights of
their layers and travel with the file.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from keras2_models.model import build, get_weights
from keras2_models.train import floatx
from zoo import interchange as ic
from zoo.errors import DataError
from zoo.specs import ModelSpec

__all__ = ["FORMAT", "load", "save", "stored_names"]

FORMAT = "keras2"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def save(model_spec: ModelSpec, weights: dict[str, np.ndarray], path: str | os.PathLike,
         force: bool = False) -> Path:
    """Write `weights` as Keras 2's HDF5 weights file at `path` (atomically) and its
    sidecar."""
    return ic.save_with(FORMAT, functools.partial(_write, model_spec, weights), model_spec,
                        weights, path, force)


def _write(model_spec: ModelSpec, weights: dict[str, np.ndarray], path: Path, dtype: str) -> None:
    with floatx(dtype):
        model = build(model_spec, weights, dtype)
        with ic.temp_path(path, suffix=".h5") as tmp:
            model.save_weights(str(tmp), save_format="h5")
            ic.replace_atomically(tmp, path)


def stored_names(path: str | os.PathLike) -> dict[str, list[str]]:
    """{layer name: its variable names (without `:0`)} of a Keras 2 HDF5 weights file, for the
    layers that hold weights, in file order."""
    import h5py

    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        out: dict[str, list[str]] = {}
        for layer in _strings(group.attrs.get("layer_names", [])):
            names = _strings(group[layer].attrs.get("weight_names", []))
            if names:
                out[layer] = [n.split(":")[0] for n in names]
        return out


def _strings(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def load(path: str | os.PathLike) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """(model spec, canonical weights) of an HDF5 weights file written by `save`."""
    return ic.load_with(FORMAT, _read, path)


def _read(path: Path, spec: ModelSpec, dtype: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        signature = f.read(len(_HDF5_SIGNATURE))
    if signature != _HDF5_SIGNATURE:
        raise DataError(f"{str(path)!r} is not an HDF5 file; pass Keras 2 weights written by "
                        "`model.save_weights('model.h5')`, `zoo train --save` or `zoo convert`.")
    try:
        stored = stored_names(path)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{str(path)!r} could not be read as Keras 2 HDF5 weights "
                        f"({type(exc).__name__}: {exc}); pass a file written by "
                        "`model.save_weights('model.h5')` or `zoo train --save`.") from None
    with floatx(dtype):
        model = build(spec, None, dtype)
        expected = {layer.name: [v.name.split(":")[0] for v in layer.weights]
                    for layer in model.layers if layer.weights}
        if {k: [n.rsplit("/", 1)[-1] for n in v] for k, v in stored.items()} != \
                {k: [n.rsplit("/", 1)[-1] for n in v] for k, v in expected.items()}:
            raise DataError(f"{str(path)!r} does not hold the weights of its sidecar's model "
                            f"{spec.name!r}: the file has layers {_describe(stored)}, the model "
                            f"needs {_describe(expected)}; the file and its .json sidecar belong "
                            "to different models: re-save the weights with `zoo train --save` "
                            "or `zoo convert`.")
        try:
            model.load_weights(str(path))
        except (ValueError, OSError) as exc:
            raise DataError(f"{str(path)!r} could not be loaded into model {spec.name!r} "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0]}); re-save the "
                            "weights with `zoo train --save` or `zoo convert`.") from None
        return get_weights(model)


def _describe(layers: dict[str, list[str]]) -> str:
    return "; ".join(f"{k} ({', '.join(n.rsplit('/', 1)[-1] for n in v)})"
                     for k, v in layers.items()) or "none"
