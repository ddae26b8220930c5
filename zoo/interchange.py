"""Weight interchange between the frameworks, framework-free.

Each framework package has an `io` module (`keras_models.io`, `tf1_compat.io`,
`torch_models.io`) with `save(model_spec, weights, path, force=False)` writing its NATIVE format
(a `.keras` file, a torch `state_dict` in a `.pt` file, a TF1 `Saver` checkpoint with the
prefix `<name>.ckpt`) and `load(path) -> (model_spec, canonical weights)`, loading safely only
(`torch.load(weights_only=True)`, `keras.models.load_model(safe_mode=True)`, a TF1 checkpoint
reader: no user file is ever unpickled). The zoo's own format, the canonical weights in an
`.npz` (canonical names as keys, canonical layout, `np.savez`; read with `allow_pickle=False`),
is written and read here, with no framework at all. Beside every file sits a JSON sidecar
`<path>.json` with {"format", "model": ModelSpec.to_dict(), "shapes", "dtype"}.

This module picks the format from the path's suffix (or `to=`), imports only the framework
package that format needs (`zoo.frameworks`), lazily, and holds the checks every `io` module
shares: the sidecar, the no-overwrite rule, atomic replacement and the shape validation.

TF1 checkpoints without a zoo sidecar (what TF1 code built on `tf.compat.v1.layers` and
`rnn_cell` saved: `dense/kernel`, `rnn/lstm_cell/kernel`, ...) are read by their variable
names through the weight tables' tf1-layers column and matched to the zoo model their names
and shapes fit (`map_checkpoint`; optimizer slots skipped, anything else unplaced is refused
by name), with TensorFlow's checkpoint reader in any process: `load`, `convert` and
`zoo predict` take them like any weights file, `zoo inspect` shows the mapping.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ConfigError, DataError, DataNotFoundError, unknown_name
from zoo.frameworks import CANONICAL_FORMAT, FRAMEWORKS, for_format, import_in_order
from zoo.layers import TF1_LAYERS
from zoo.specs import ModelSpec

__all__ = ["CANONICAL", "FORMATS", "OPTIMIZER_VARIABLES", "CheckpointMapping", "check_target",
           "check_weights", "checkpoint_arrays", "convert", "expected_shapes", "format_of", "load",
           "map_checkpoint", "read_sidecar", "read_tf1_checkpoint", "reads_by_names",
           "replace_atomically", "save", "sidecar_path", "stored_format", "temp_path",
           "unplaced_message", "write_sidecar"]

#: the zoo's own format: canonical weights in an .npz, no framework involved
CANONICAL = CANONICAL_FORMAT
#: file suffix -> format: each framework's native one (`zoo.frameworks`), then the canonical
FORMATS: dict[str, str] = {**{fw.suffix: fw.weight_format for fw in FRAMEWORKS.values()
                              if fw.suffix and fw.weight_format}, ".npz": CANONICAL}
_SUFFIX = {fmt: suffix for suffix, fmt in FORMATS.items()}
#: TF1 checkpoint files written for a prefix (Saver(write_version=V2), one shard)
TF1_FILES = (".index", ".data-00000-of-00001")
#: ONNX exports (`zoo.onnx_io`: `zoo convert WEIGHTS model.onnx`), not a format of this module
ONNX_SUFFIX = ".onnx"


def format_of(path: str | os.PathLike, to: str | None = None) -> str:
    """The format of `path`: `to` if given (keras, tf1, torch or npz), else from the suffix."""
    if to is not None:
        if to not in _SUFFIX:
            raise unknown_name("format", to, list(_SUFFIX))
        return to
    suffix = Path(path).suffix.lower()
    if suffix == ONNX_SUFFIX:
        raise _onnx_error(path)
    if suffix not in FORMATS:
        raise ConfigError(f"cannot tell the weight format of {str(path)!r} from its suffix "
                          f"{suffix or '(none)'!r}; name it {_suffix_list()}, or pass "
                          f"--to {'|'.join(_SUFFIX)}.")
    return FORMATS[suffix]


def _suffix_list() -> str:
    """"*.keras (Keras), ..., or *.npz (canonical weights)"."""
    items = [f"*{suffix} ({for_format(fmt).weight_file or 'canonical weights'})"
             for suffix, fmt in FORMATS.items()]
    return ", ".join(items[:-1]) + " or " + items[-1]


def _onnx_error(path: str | os.PathLike) -> ConfigError:
    """ONNX is an export, not one of the weight formats here: `zoo.onnx_io` writes and reads
    it (on top of this module, which never imports it)."""
    return ConfigError(f"{str(path)!r} is an ONNX file: an export of saved weights, not a "
                       "weights format: save the weights as *.pt, *.keras, *.ckpt or *.npz and "
                       "export them with `zoo convert WEIGHTS model.onnx`; read an export back "
                       "with `zoo convert model.onnx OUT` or `zoo predict model.onnx`.")


def stored_format(path: str | os.PathLike) -> str:
    """The format of an existing file: from its suffix, else from its sidecar's "format"
    (a file written with `convert(..., to=...)` under another name)."""
    if Path(path).suffix.lower() in (*FORMATS, ONNX_SUFFIX):
        return format_of(path)
    side = sidecar_path(path)
    if side.is_file():
        try:
            fmt = json.loads(side.read_text()).get("format")
        except (ValueError, AttributeError):
            fmt = None
        if fmt in _SUFFIX:
            return fmt
        if fmt == "onnx":
            raise _onnx_error(path)
    raise ConfigError(f"cannot tell the weight format of {str(path)!r}: its suffix is not "
                      f"{', '.join(FORMATS)} and it has no zoo sidecar "
                      f"{str(side)!r}; pass a file written by `zoo train --save` or "
                      "`zoo convert`.")


def _io(fmt: str):
    """The `io` module of format `fmt` (imports that one framework only)."""
    return for_format(fmt).module("io")


def _save(fmt: str, model_spec: ModelSpec, weights: dict[str, np.ndarray],
          path: str | os.PathLike, force: bool) -> Path:
    if fmt == CANONICAL:
        return save_with(CANONICAL, functools.partial(_write_npz, weights), model_spec,
                         weights, path, force)
    return _io(fmt).save(model_spec, weights, path, force=force)


def _write_npz(weights: dict[str, np.ndarray], path: Path, dtype: str) -> None:
    with temp_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez adds no second suffix
            np.savez(f, **{k: np.asarray(v) for k, v in weights.items()})
        replace_atomically(tmp, path)


def _read_npz(path: Path, spec: ModelSpec, dtype: str) -> dict[str, np.ndarray]:
    """The canonical weights of an .npz, never unpickled; every array must be a tensor of
    `spec` and every tensor of `spec` must be there (nothing is dropped silently)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise DataError(f"{str(path)!r} is not an .npz archive of canonical weights (not a zip "
                        "archive); pass a file written by `zoo convert SRC out.npz` or "
                        "`zoo train --save out.npz`.")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # object arrays (pickles), a truncated zip, ...
        raise DataError(f"{str(path)!r} could not be read as canonical weights "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''});"
                        " the zoo never unpickles: pass plain arrays written by `zoo convert` "
                        "or np.savez.") from None
    order = list(spec.weight_shapes())  # model order; strays last (check_weights names them)
    return dict(sorted(arrays.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order
                       else len(order)))


def _files(fmt: str, path: str | os.PathLike) -> list[Path]:
    """The files a saved model of format `fmt` consists of (the sidecar excluded)."""
    p = Path(path)
    if fmt in ("tf1", TF1_LAYERS):   # Saver checkpoints: the files of a prefix
        return [Path(f"{p}{ext}") for ext in TF1_FILES]
    return [p]


def save(framework_or_format: str, model_spec: ModelSpec, weights: dict[str, np.ndarray],
         path: str | os.PathLike, force: bool = False) -> Path:
    """Write `weights` of `model_spec` to `path` in a framework's native format, with a sidecar.

    framework_or_format: a framework ("keras", "tf1", "torch"), a format ("npz" for the
    canonical weights) or a suffix (".keras", ".pt", ".ckpt", ".npz").
    """
    fw = FRAMEWORKS.get(framework_or_format)
    to = fw.weight_format if fw is not None and fw.weight_format else \
        FORMATS.get(framework_or_format, framework_or_format)
    fmt = format_of(path, to)
    check_target(fmt, path, force)
    check_weights(model_spec, weights, str(path))
    _save(fmt, model_spec, weights, path, force)
    return Path(path)


def load(path: str | os.PathLike) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """(model spec, canonical weights) of a file written by any `io.save`."""
    fmt = stored_format(path)
    check_exists(fmt, path)  # before importing any framework
    if fmt == CANONICAL:
        return load_with(CANONICAL, _read_npz, path)
    if fmt == "tf1" and reads_by_names(path):  # TF1 layer code's checkpoint: by its names
        return _load_by_names(path)
    return _io(fmt).load(path)


def _load_by_names(path: str | os.PathLike) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """(spec, canonical weights) of a TF1 checkpoint read by its variable names: the model
    of its tf1-layers sidecar (`tf1_layers.io.save`), else the one its names and shapes fit
    (`read_tf1_checkpoint`; no legacy Keras needed)."""
    if sidecar_path(path).is_file():
        spec, _, dtype = read_sidecar(TF1_LAYERS, path)
        m = read_tf1_checkpoint(path, spec=spec)
        weights = {k: np.asarray(v).astype(dtype) for k, v in (m.weights or {}).items()}
        check_weights(spec, weights, str(path))
        return spec, weights
    m = read_tf1_checkpoint(path)
    assert m.spec is not None and m.weights is not None
    return m.spec, m.weights


def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str | None = None,
            force: bool = False) -> tuple[ModelSpec, dict[str, np.ndarray], str]:
    """Load `src` (any format) and save it as `dst` (format from its suffix or `to`).

    Returns (model spec, weights, target format)."""
    src_fmt, dst_fmt = stored_format(src), format_of(dst, to)
    known = FORMATS.get(Path(dst).suffix.lower())
    if known is not None and known != dst_fmt:
        raise ConfigError(f"{str(dst)!r} has the suffix of a {known} file but the target "
                          f"format is {dst_fmt}; name it *{_SUFFIX[dst_fmt]} or drop --to.")
    check_exists(src_fmt, src)
    check_target(dst_fmt, dst, force)  # fail before loading anything
    import_in_order([for_format(src_fmt), for_format(dst_fmt)])  # torch before tensorflow
    spec, weights = load(src)
    _save(dst_fmt, spec, weights, dst, force)
    return spec, weights, dst_fmt


# ----------------------------------------------------------------------------- shared checks
def sidecar_path(path: str | os.PathLike) -> Path:
    """`<path>.json` (for a TF1 checkpoint: `<prefix>.json`, e.g. model.ckpt.json)."""
    return Path(f"{Path(path)}.json")


def check_exists(fmt: str, path: str | os.PathLike) -> None:
    for f in _files(fmt, path):
        if not f.is_file():
            what = f"TF1 checkpoint file {str(f)!r} of prefix {str(path)!r}" if fmt == "tf1" \
                else f"weights file {str(path)!r}"
            raise DataNotFoundError(f"{what} not found; check the path (write one with "
                                    "`zoo train MODEL --save PATH` or `zoo convert`).")


def check_target(fmt: str, path: str | os.PathLike, force: bool) -> None:
    """Refuse to overwrite an existing weights file or sidecar unless `force`."""
    parent = Path(path).parent
    if not parent.is_dir():
        raise ConfigError(f"directory {str(parent)!r} does not exist; create it first.")
    for f in [*_files(fmt, path), sidecar_path(path)]:
        if f.is_dir():
            raise ConfigError(f"{str(f)!r} is a directory; choose a file path.")
        if f.exists() and not force:
            raise ConfigError(f"{str(f)!r} already exists; pass --force (force=True) to "
                              "overwrite it, or choose another path.")


def expected_shapes(model_spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of every weight of `model_spec` (its layers' weight tables)."""
    return model_spec.weight_shapes()


def check_weights(model_spec: ModelSpec, weights: dict[str, Any], where: str) -> None:
    """Names and shapes of `weights` must be exactly those of `model_spec`."""
    want = expected_shapes(model_spec)
    missing, extra = sorted(set(want) - set(weights)), sorted(set(weights) - set(want))
    if missing or extra:
        raise DataError(f"weights in {where!r} do not fit model {model_spec.name!r} "
                        f"({model_spec.n_features} features, {model_spec.n_outputs} outputs): "
                        f"missing {missing or 'nothing'}, unexpected {extra or 'nothing'}; "
                        "the file and its .json sidecar belong to different models: "
                        "re-save the weights with `zoo train --save` or `zoo convert`.")
    for name, shape in want.items():
        got = tuple(np.shape(weights[name]))
        if got != shape:
            raise DataError(f"weights in {where!r} do not fit model {model_spec.name!r}: "
                            f"{name} has shape {got}, the model spec needs {shape}; the file "
                            "and its .json sidecar belong to different models: re-save the "
                            "weights with `zoo train --save` or `zoo convert`.")


def save_with(fmt: str, write: Callable[[Path, str], None], model_spec: ModelSpec,
              weights: dict[str, np.ndarray], path: str | os.PathLike, force: bool) -> Path:
    """The frame of every framework's `io.save`: refuse an existing target (unless `force`)
    and weights that do not fit `model_spec`, let `write(path, dtype)` write the native
    file(s) atomically, then write the sidecar."""
    path = Path(path)
    check_target(fmt, path, force)
    check_weights(model_spec, weights, str(path))
    write(path, _dtype_of(weights))
    write_sidecar(fmt, model_spec, weights, path)
    return path


def load_with(fmt: str, read: Callable[[Path, ModelSpec, str], dict[str, np.ndarray]],
              path: str | os.PathLike) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """The frame of every framework's `io.load`: the file and its sidecar must exist, then
    `read(path, spec, dtype)` returns the canonical weights, which must fit the spec."""
    path = Path(path)
    check_exists(fmt, path)
    spec, _, dtype = read_sidecar(fmt, path)
    weights = read(path, spec, dtype)
    check_weights(spec, weights, str(path))
    return spec, weights


def _dtype_of(weights: dict[str, np.ndarray]) -> str:
    return "float64" if any(np.asarray(v).dtype == np.float64 for v in weights.values()) \
        else "float32"


def write_sidecar(fmt: str, model_spec: ModelSpec, weights: dict[str, np.ndarray],
                  path: str | os.PathLike) -> Path:
    """Write `<path>.json` atomically; returns its path."""
    side = sidecar_path(path)
    doc = {"format": fmt, "model": model_spec.to_dict(),
           "shapes": {k: list(np.shape(v)) for k, v in weights.items()},
           "dtype": _dtype_of(weights)}
    with temp_path(side) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        replace_atomically(tmp, side)
    return side


def read_sidecar(fmt: str, path: str | os.PathLike) -> tuple[ModelSpec, dict[str, tuple], str]:
    """(model spec, shapes, dtype) from `<path>.json`, checked against `fmt`."""
    side = sidecar_path(path)
    if not side.is_file():
        raise DataError(f"{str(path)!r} has no sidecar {str(side)!r} recording its model; "
                        "weights need it to be loaded: save them with `zoo train --save` or "
                        "`zoo convert`, which write both.")
    try:
        doc = json.loads(side.read_text())
        spec = ModelSpec.from_dict(doc["model"])
        shapes = {k: tuple(int(d) for d in v) for k, v in doc["shapes"].items()}
        dtype = str(doc.get("dtype", "float32"))
        got_fmt = doc["format"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"sidecar {str(side)!r} is not a valid zoo weights sidecar ({exc!r}); "
                        "re-save the weights with `zoo train --save` or `zoo convert`.") from None
    if got_fmt != fmt:
        raise DataError(f"sidecar {str(side)!r} describes a {got_fmt!r} file but "
                        f"{str(path)!r} is read as {fmt!r}; give the file its right suffix "
                        f"({_SUFFIX.get(got_fmt, '?')}).")
    if dtype not in ("float32", "float64"):
        raise DataError(f"sidecar {str(side)!r} has dtype {dtype!r}; expected float32 or float64.")
    want = {k: tuple(v) for k, v in expected_shapes(spec).items()}
    if shapes != want:
        raise DataError(f"sidecar {str(side)!r} records shapes {shapes} but its model spec "
                        f"needs {want}; the sidecar is corrupt: re-save the weights.")
    return spec, shapes, dtype


@contextmanager
def temp_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """A fresh temporary path in `final`'s directory (removed afterwards if still there)."""
    final = Path(final)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix or ".tmp",
                                dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make saved weights private
    try:
        yield tmp
    finally:
        if tmp.exists():
            tmp.unlink()


def replace_atomically(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    os.replace(tmp, final)


# ----------------------------------------------------------------------------- TF1 checkpoints
# TF1 checkpoints the zoo did not write: `tf.compat.v1.train.Saver` files of TF1 code built on
# `tf.compat.v1.layers` and `rnn_cell` (a user's, or `tf1_layers.io`'s), read by their
# variable names through the weight tables' tf1-layers column (`zoo.layers`), with no zoo
# sidecar needed and no legacy Keras: `tf.compat.v1.train.load_checkpoint` reads a checkpoint
# in any process.

#: variables a TF1 training script's Saver writes besides the model's: the optimizers'
#: non-slot variables and the step counter (slots, `<variable>/Adam` and the like, are told
#: by their prefix: another variable of the checkpoint)
OPTIMIZER_VARIABLES = ("beta1_power", "beta2_power", "global_step")


@dataclass
class CheckpointMapping:
    """How a TF1 checkpoint's variables map onto a zoo model (`map_checkpoint`).

    `spec` and `weights` (canonical) when a model fits every variable; else `spec` is None
    and `unplaced` / `missing` say what the `nearest` model could not place / would also
    need. `rows`: (canonical name, canonical shape, native names, layout) per canonical
    tensor of the fitting (or nearest) model."""

    path: str
    #: name -> (shape, dtype) of every variable in the checkpoint
    variables: dict[str, tuple[tuple[int, ...], str]]
    #: optimizer state and step counters: not converted
    skipped: list[str] = field(default_factory=list)
    spec: ModelSpec | None = None
    weights: dict[str, np.ndarray] | None = None
    rows: list[tuple[str, tuple[int, ...], tuple[str, ...], str]] = field(default_factory=list)
    #: other models whose tensors are exactly the same (`--model NAME` picks one)
    also: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nearest: str | None = None
    unplaced: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    #: a variable scope every name was under, taken off ("" if none)
    scope: str = ""

    def native_of(self) -> dict[str, list[str]]:
        """Checkpoint variable (scope included) -> the canonical tensors it holds."""
        out: dict[str, list[str]] = {}
        for canonical, _, natives, _ in self.rows:
            for n in natives:
                out.setdefault(self.scope + n, []).append(canonical)
        return out


def reads_by_names(path: str | os.PathLike) -> bool:
    """Whether `path` is a TF1 checkpoint prefix to be read by its variable names: a `.ckpt`
    prefix without a zoo sidecar (TF1 code's own checkpoint), or with a tf1-layers one."""
    if Path(path).suffix.lower() != _SUFFIX.get("tf1"):
        return False
    side = sidecar_path(path)
    if not side.is_file():
        return True
    try:
        return json.loads(side.read_text()).get("format") == TF1_LAYERS
    except (ValueError, AttributeError):
        return False


def checkpoint_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every variable of the TF1 checkpoint prefix `path` ({name: array}), read with
    `tf.compat.v1.train.load_checkpoint` (tensors only, no code: TensorFlow is imported
    here, after torch when torch is about to be used: `import_in_order`)."""
    check_exists("tf1", path)
    import tensorflow as tf

    try:
        reader = tf.compat.v1.train.load_checkpoint(str(path))
        names = sorted(reader.get_variable_to_shape_map())
        return {n: np.asarray(reader.get_tensor(n)) for n in names}
    except Exception as exc:  # tf.errors.DataLossError, NotFoundError, ValueError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(f"{str(path)!r} is not a readable TF1 checkpoint "
                        f"({type(exc).__name__}: {first}); pass the prefix of a checkpoint "
                        "written by `tf.compat.v1.train.Saver` (model.ckpt, not "
                        "model.ckpt.index).") from None


def _native_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]] | None:
    """The tf1-layers variables of `spec` ({TF name: shape}), None if TF1's layers cannot
    express it (a reset_after=True GRU)."""
    from zoo.layers import tensor_specs

    try:
        return {n: s for t in tensor_specs(spec.resolved)
                for n, s in t.native_shapes(TF1_LAYERS).items()}
    except ConfigError:
        return None


def _chain(shapes: dict[str, tuple[int, ...]], base: str, suffix: str, rank: int
           ) -> list[tuple[int, ...]]:
    """Shapes of `<base>/<suffix>`, `<base>_1/<suffix>`, ... while they exist."""
    from zoo.layers import tf1_layers_scope

    out = []
    while (s := shapes.get(f"{tf1_layers_scope(base, f'x_{len(out)}')}/{suffix}")) is not None \
            and len(s) == rank:
        out.append(s)
    return out


def _candidate(name: str, shapes: dict[str, tuple[int, ...]]
               ) -> tuple[ModelSpec | None, list[str]]:
    """The spec of model `name` whose sizes the checkpoint's shapes suggest, and notes on
    what a checkpoint cannot tell (None: the shapes suggest none)."""
    from zoo.data import IMAGE_SHAPES
    from zoo.specs import MODELS

    arch = MODELS[name]
    dense = _chain(shapes, "dense", "kernel", 2)
    if not dense:
        return None, []
    n_out = dense[-1][1]
    try:
        if arch.sequence == "rows":
            probe = {layer.kind
                     for layer in arch.layers(ModelSpec(name, 4, 2, input_shape=(2, 2)))}
            cell, gates = ("lstm_cell", 4) if "lstm" in probe else ("gru_cell/gates", 2)
            kernels = _chain(shapes, "rnn", f"{cell}/kernel", 2)
            if not kernels:
                return None, []
            units = tuple(k[1] // gates for k in kernels)
            f = kernels[0][0] - units[0]
            return ModelSpec(name, f * f, n_out, hidden=units, input_shape=(f, f)), [
                f"time steps: not in a checkpoint; {f} assumed (square images read row by "
                f"row, {f} features a step)"]
        if arch.sequence == "tokens":
            return None, []
        if arch.image:
            conv = shapes.get("conv2d/kernel")
            if conv is None or len(conv) != 4:
                return None, []
            c = conv[2]
            sizes = dict.fromkeys([*(s[0] for s in IMAGE_SHAPES.values()), *range(1, 257)])
            first = None
            for s in sizes:
                try:
                    spec = ModelSpec(name, s * s * c, n_out, input_shape=(s, s, c))
                    want = _native_shapes(spec)
                except ConfigError:
                    continue
                first = first or spec
                if want is not None and all(shapes.get(k) == v for k, v in want.items()):
                    return spec, [f"image size: not in a checkpoint; {s}x{s}x{c} assumed (the "
                                  "first of 8, 28, then 1, 2, ... whose shapes fit)"]
            return first, []
        hidden = tuple(d[1] for d in dense[:-1])
        if bool(arch.default_hidden) != bool(hidden):
            return None, []
        dropout = arch.default_dropout if hidden else 0.0
        notes = [f"dropout rate: not in a checkpoint; the zoo's {dropout} assumed"] \
            if dropout else []
        return ModelSpec(name, dense[0][0], n_out, hidden=hidden, dropout=dropout), notes
    except ConfigError:
        return None, []


def _fit(spec: ModelSpec, shapes: dict[str, tuple[int, ...]]) -> tuple[list[str], list[str]]:
    """(checkpoint variables `spec` cannot place, variables `spec` needs and lacks), each
    with its shape when the names agree but the shapes do not."""
    want = _native_shapes(spec) or {}
    unplaced = sorted(n for n in shapes if want.get(n) != shapes[n])
    missing = [n for n, s in want.items() if shapes.get(n) != s]
    return unplaced, missing


def map_checkpoint(arrays: dict[str, np.ndarray], *, model: str | None = None,
                   spec: ModelSpec | None = None, path: str | os.PathLike = "checkpoint"
                   ) -> CheckpointMapping:
    """Map a TF1 checkpoint's variables ({name: array}) onto a zoo model through the
    tf1-layers column: `spec` given (a tf1-layers sidecar), `model` given (`--model NAME`:
    its sizes from the shapes), or the nearest model by names and shapes. Optimizer state
    (slots `<variable>/<slot>`, `beta1_power`, `global_step`, ...) is skipped; a variable
    scope over every name is taken off. The mapping says what fits (spec, canonical weights)
    or, when nothing does, what the nearest model cannot place (`unplaced`)."""
    from zoo.layers import from_native, tensor_specs
    from zoo.specs import MODELS

    variables = {n: (tuple(a.shape), str(a.dtype)) for n, a in arrays.items()}
    skipped = sorted(n for n in arrays if n.rpartition("/")[2] in OPTIMIZER_VARIABLES
                     or n.rpartition("/")[0] in arrays)
    kept = {n: a for n, a in arrays.items() if n not in skipped}
    if model is not None and model not in MODELS:
        raise unknown_name("model", model, list(MODELS))
    scopes = {n.partition("/")[0] for n in kept}
    views = [""]
    if len(scopes) == 1 and all("/" in n for n in kept):
        views.append(f"{next(iter(scopes))}/")   # every name under one scope: try without
    order = list(MODELS)
    results = []   # (exact, placed, -(left over), scope, spec, notes, unplaced, missing)
    for scope in views:
        shapes = {n[len(scope):]: tuple(a.shape) for n, a in kept.items()}
        if spec is not None:
            tries = [(spec, [])]
        else:
            tries = [c for n in ([model] if model is not None else order)
                     if (c := _candidate(n, shapes))[0] is not None]
        for cand, notes in tries:
            unplaced, missing = _fit(cand, shapes)
            results.append((not unplaced and not missing, len(shapes) - len(unplaced),
                            -len(unplaced) - len(missing), scope, cand, notes, unplaced,
                            missing))
    out = CheckpointMapping(str(path), variables, skipped)
    if not results:
        out.unplaced = sorted(kept)
        return out
    exact = [r for r in results if r[0]]
    if exact:
        # ties (one dense layer: softmax, svm, linear, logistic; mlp and nielsen): the
        # zoo's order, but for one output unit the binary model, then the regression one
        def rank(r) -> tuple[int, int]:
            task = MODELS[r[4].name].task
            first = {"binary": 0, "regression": 1}.get(task, 2) if r[4].n_outputs == 1 else 0
            return first, order.index(r[4].name)

        exact.sort(key=rank)
        best = exact[0]
        out.also = list(dict.fromkeys(r[4].name for r in exact[1:] if r[4].name != best[4].name))
    else:
        best = max(results, key=lambda r: r[:3])
    *_, scope, cand, notes, unplaced, missing = best
    out.scope, out.nearest = scope, cand.name
    if _native_shapes(cand) is not None:
        out.rows = [(t.name, t.shape, t.native_names(TF1_LAYERS),
                     getattr(t.layout(TF1_LAYERS), "what", "") or "as is")
                    for t in tensor_specs(cand.resolved)]
    if not exact:
        out.unplaced = [scope + n for n in unplaced]
        out.missing = missing
        return out
    out.spec = cand
    if scope:
        out.notes.append(f"every variable is under the scope {scope!r}: read without it")
    if out.also:
        out.notes.append(f"the same tensors fit {', '.join(out.also)} too; pass --model NAME "
                         "to choose another")
    out.notes.extend(notes)
    out.weights = from_native({n[len(scope):]: a for n, a in kept.items()}, cand.resolved,
                              TF1_LAYERS)
    return out


def read_tf1_checkpoint(path: str | os.PathLike, model: str | None = None,
                        spec: ModelSpec | None = None) -> CheckpointMapping:
    """A TF1 checkpoint of TF1 layer code as a zoo model (`map_checkpoint`), or a DataError
    listing the variables no model can place."""
    m = map_checkpoint(checkpoint_arrays(path), model=model, spec=spec, path=path)
    if m.spec is None:
        raise DataError(unplaced_message(m, model or (spec.name if spec else None)))
    return m


def unplaced_message(m: CheckpointMapping, model: str | None = None) -> str:
    """The one line refusing a checkpoint no model fits, naming what cannot be placed."""
    def listed(names: list[str]) -> str:
        return ", ".join(f"{n} {list(m.variables[n][0]) if n in m.variables else ''}".strip()
                         for n in names) or "nothing"

    what = f"model {model!r}" if model else "any zoo model"
    near = ""
    if m.nearest and m.missing:
        near = f"; {'nearest ' + repr(m.nearest) if not model else model} would also need " \
               f"{', '.join(m.missing)}"
    elif m.nearest and not model:
        near = f"; nearest {m.nearest!r}, which places the others"
    if any("/gru_cell/" in n for n in m.unplaced):
        near += ("; TF1's GRUCell is the reset_after=False GRU, and the zoo's GRU models use "
                 "reset_after=True")
    return (f"{m.path!r} does not fit {what}: it cannot place {len(m.unplaced)} of its "
            f"variables: {listed(m.unplaced)}{near}. The zoo reads checkpoints of "
            "tf.compat.v1.layers / rnn_cell code (dense, conv2d, batch_normalization, "
            "rnn/lstm_cell, ...) of its models; `zoo inspect` lists what it sees.")
