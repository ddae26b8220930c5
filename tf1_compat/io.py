"""TF1 weights in TF1's native format: a checkpoint written by `tf.compat.v1.train.Saver` (in
the model's own `tf.Graph` and Session) under a prefix ending in `.ckpt` (files
`<prefix>.index` and `<prefix>.data-00000-of-00001`), plus the JSON sidecar `<prefix>.json` of
`zoo.interchange` (model spec, shapes, dtype). The variables have the weight tables' tf1
names (`dense_0/kernel`, `conv2d_0/bias`, ...: the canonical ones, canonical layouts), so the
checkpoint is readable by any TF1 code using those scopes. BatchNorm's moving statistics
(`batch_norm_0/moving_mean`, `.../moving_variance`) are saved and loaded with the rest: the
`Saver` writes every model variable, trainable or not, as TF1's own checkpoints did.
Recurrent layers are saved as `lstm_0/kernel`, `lstm_0/recurrent_kernel`, `lstm_0/bias` (and
`embedding_0/embeddings`) in the canonical layout, not as TF1's `rnn/lstm_cell/kernel`
(features + units, 4u) with gates i, j, f, o: a TF1 script built on `LSTMCell` restores them
only after the conversion `tf1_compat.layers` describes (blocks reordered, 1 taken off the
forget bias).

Loading uses `tf.compat.v1.train.load_checkpoint` (a checkpoint reader: tensors only, no code).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tf1_compat.model import build
from zoo import interchange as ic
from zoo.errors import ConfigError, DataError
from zoo.layers import from_native
from zoo.specs import ModelSpec

__all__ = ["FORMAT", "load", "save"]

FORMAT = "tf1"
tf1 = tf.compat.v1


def save(model_spec: ModelSpec, weights: dict[str, np.ndarray], path: str | os.PathLike,
         force: bool = False) -> Path:
    """Save `weights` with a `Saver` under the prefix `path` (atomically) and the sidecar."""
    return ic.save_with(FORMAT, functools.partial(_write, model_spec, weights), model_spec,
                        weights, path, force)


def _write(model_spec: ModelSpec, weights: dict[str, np.ndarray], path: Path, dtype: str) -> None:
    model = build(model_spec, weights, dtype)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with model.graph.as_default():
            saver = tf1.train.Saver(var_list=model.variables, write_version=tf1.train.SaverDef.V2)
            saver.save(model.session, str(tmpdir / "model.ckpt"), write_meta_graph=False,
                       write_state=False)
        # data file first, index last: a prefix whose index exists is complete
        for ext in reversed(ic.TF1_FILES):
            ic.replace_atomically(tmpdir / f"model.ckpt{ext}", f"{path}{ext}")
    finally:
        model.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


def load(path: str | os.PathLike) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """(model spec, canonical weights) of a checkpoint prefix written by `save`."""
    return ic.load_with(FORMAT, _read, path)


def _read(path: Path, spec: ModelSpec, dtype: str) -> dict[str, np.ndarray]:
    try:
        reader = tf1.train.load_checkpoint(str(path))
        names = reader.get_variable_to_shape_map()
        weights = {name: np.asarray(reader.get_tensor(name)) for name in names}
    except Exception as exc:  # tf.errors.DataLossError, NotFoundError, ValueError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(f"{str(path)!r} is not a readable TF1 checkpoint "
                        f"({type(exc).__name__}: {first}); pass the prefix of a checkpoint "
                        "written by `tf.compat.v1.train.Saver`, `zoo train --save` or "
                        "`zoo convert` (model.ckpt, not model.ckpt.index).") from None
    weights = {k: v.astype(dtype) for k, v in weights.items()}
    try:  # by the weight table's tf1 names and layouts
        return from_native(weights, spec.resolved, "tf1")
    except ConfigError:  # another model's file: `load_with` names the misfit for the sidecar
        return weights
