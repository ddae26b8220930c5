"""tf1-layers weights in TF1's own format: a checkpoint written by `tf.compat.v1.train.Saver`
from the model's graph (`<prefix>.index`, `<prefix>.data-00000-of-00001`), its variables
under the names TF1's layers give them (`dense/kernel`, `batch_normalization/moving_mean`,
`rnn/lstm_cell/kernel`, ...): what a TF1 script of the same layers restores with
`Saver().restore(sess, prefix)`. Beside it the zoo's sidecar `<prefix>.json`, format
"tf1-layers".

The framework has no suffix of its own (a `.ckpt` prefix is the tf1 framework's suffix):
`zoo.interchange` reads a `.ckpt` prefix whose sidecar says tf1-layers, or that has none (a
TF1 script's own checkpoint), by its variable names (`zoo.interchange.map_checkpoint`), in any
process; so `zoo convert model.ckpt out.keras` and `zoo predict model.ckpt` take these files.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf1_layers.model import FRAMEWORK, build
from zoo import interchange as ic
from zoo.specs import ModelSpec

__all__ = ["FORMAT", "load", "save"]

FORMAT = FRAMEWORK
tf1 = tf.compat.v1


def save(model_spec: ModelSpec, weights: dict[str, np.ndarray], path: str | os.PathLike,
         force: bool = False) -> Path:
    """Save `weights` with a `Saver` of the model's own variables under the prefix `path`
    (atomically: the data file first, the index last) and the sidecar."""
    return ic.save_with(FORMAT, functools.partial(_write, model_spec, weights), model_spec,
                        weights, path, force)


def _write(model_spec: ModelSpec, weights: dict[str, np.ndarray], path: Path, dtype: str) -> None:
    model = build(model_spec, {k: np.asarray(v).astype(dtype) for k, v in weights.items()}, dtype)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with model.graph.as_default():
            saver = tf1.train.Saver(var_list=model.variables, write_version=tf1.train.SaverDef.V2)
            saver.save(model.session, str(tmpdir / "model.ckpt"), write_meta_graph=False,
                       write_state=False)
        for ext in reversed(ic.TF1_FILES):
            ic.replace_atomically(tmpdir / f"model.ckpt{ext}", f"{path}{ext}")
    finally:
        model.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


def load(path: str | os.PathLike) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """(model spec, canonical weights) of a checkpoint written by `save`, or of a TF1 script's
    own checkpoint of the same layers (no sidecar: the model its names and shapes fit)."""
    if ic.sidecar_path(path).is_file():
        return ic.load_with(FORMAT, _read, path)
    m = ic.read_tf1_checkpoint(path)
    return m.spec, m.weights


def _read(path: Path, spec: ModelSpec, dtype: str) -> dict[str, np.ndarray]:
    m = ic.read_tf1_checkpoint(path, spec=spec)
    return {k: np.asarray(v).astype(dtype) for k, v in (m.weights or {}).items()}
