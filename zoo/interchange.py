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
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ConfigError, DataError, DataNotFoundError, unknown_name
from zoo.frameworks import CANONICAL_FORMAT, FRAMEWORKS, for_format, import_in_order
from zoo.specs import ModelSpec

__all__ = ["CANONICAL", "FORMATS", "check_target", "check_weights", "convert", "expected_shapes",
           "format_of", "load", "read_sidecar", "replace_atomically", "save", "sidecar_path",
           "stored_format", "temp_path", "write_sidecar"]

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
    if fmt == "tf1":
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
    return _io(fmt).load(path)


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
