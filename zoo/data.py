"""The one place every framework gets its data from (numpy only).

Datasets, a deterministic split (a dataset's own fixed split where it has one, MNIST's; else
stratified by seed), standardisation fitted on the train split,
`one_hot` with Keras `to_categorical` semantics, the shared batch order, IDX/NPZ/CSV readers
with checksum verification, and the validation that turns bad input into one clear error.

A user's CSV is read as users have it (`read_csv`): a header row or none (detected), fields
separated by commas, semicolons or tabs (sniffed, one delimiter per file), and a label column
of numbers or of strings. String labels become class ids in sorted order and the names travel
with the `Dataset` (`label_names`) into `zoo train --save`'s sidecar and `zoo predict`'s output;
integer labels are class ids as they are, and ids in 0..max that no sample carries are named
(`Dataset.empty_classes`) rather than silently renumbered, so a model's outputs keep meaning
the user's classes.

Every framework package consumes the same `Dataset` and the same `batch_order(...)` index
arrays, so every framework sees exactly the same mini-batches, the partial last batch included.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import shutil
import struct
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from zoo.errors import ChecksumError, ConfigError, DataError, DataNotFoundError, unknown_name

__all__ = [
    "CSV_DELIMITERS",
    "DATASETS",
    "FIXED_SPLITS",
    "SPLITS",
    "CsvTable",
    "Dataset",
    "batch_order",
    "check_batch_size",
    "empty_classes_message",
    "load",
    "one_hot",
    "read_csv",
    "read_idx",
    "sniff_delimiter",
    "sha256sum",
    "split_arrays",
    "standardize",
    "validate_arrays",
]

#: Environment variable naming a directory that holds MNIST files (IDX gz or mnist.npz).
DATA_DIR_ENV = "ZOO_DATA_DIR"

#: Published SHA-256 checksums of the MNIST files (the IDX files of the original
#: distribution and Keras's mnist.npz).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
}
#: Where missing MNIST files are downloaded from (Keras's own mirror, then the IDX mirror).
MNIST_NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_IDX_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

TASKS = ("classification", "binary", "regression")
#: The named datasets of images and each sample's (H, W, C): image models run on these (and
#: on a user's NPZ of (N, H, W) or (N, H, W, C) images).
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {"digits": (8, 8, 1), "mnist": (28, 28, 1),
                                                 "mnist10k": (28, 28, 1)}


def shape_text(shape: Sequence[int]) -> str:
    """(28, 28, 1) -> "28x28x1"."""
    return "x".join(str(int(d)) for d in shape)


def flat_data_message(model: str, ds: Dataset) -> str:
    """Why image model `model` cannot run on the flat dataset `ds`, and the fix."""
    return (f"model {model!r} takes images but dataset {ds.name!r} has {ds.n_features} flat "
            f"features; use an image dataset ({', '.join(IMAGE_SHAPES)}) or an NPZ of "
            "(N, H, W) or (N, H, W, C) images.")


def image_shape_of(X: np.ndarray, what: str = "data") -> tuple[int, ...] | None:
    """The per-sample (H, W, C) of an array of images, (N, H, W) meaning one channel; None
    for flat (N, F) features. Other ranks are a DataError."""
    X = np.asarray(X)
    if X.ndim <= 2:
        return None
    if X.ndim == 3:
        return (int(X.shape[1]), int(X.shape[2]), 1)
    if X.ndim == 4:
        return tuple(int(d) for d in X.shape[1:])
    raise DataError(f"{what}: X has shape {X.shape}; expected (N, features), (N, H, W) images "
                    "or (N, H, W, C) images.")


@dataclass(frozen=True)
class Dataset:
    """A dataset split into train and test, ready for any framework.

    `X_*` are float arrays of shape (N, features), always flat; for images `image_shape` is
    each sample's (H, W, C) (the features are the pixels in H, W, C order) and
    `inputs(spec)` gives X in a model's input shape: (N, H, W, C) NHWC images for image
    models, the flat (N, features) for the others. For classification and binary tasks `y_*`
    are int64 class labels of shape (N,); for regression float targets of shape (N, 1)
    (never (N,): torch and raw TF would broadcast (N,) against (N, 1) into N x N).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    task: str
    n_classes: int | None
    source: str
    image_shape: tuple[int, ...] | None = None
    feature_names: tuple[str, ...] = field(default=())
    #: token datasets: the vocabulary size (the features are token ids in [0, vocab))
    vocab: int | None = None
    #: how train and test were drawn (a fixed split or the seeded one), for reports
    split: str = ""
    #: a CSV label column of strings: class id i is `label_names[i]` (the names sorted);
    #: None when the labels were numbers (the ids are then the user's own)
    label_names: tuple[str, ...] | None = None
    #: the label column a CSV was read with (its header name, or "column K" without a header)
    target_name: str = ""
    #: what reading the file noticed that the user should hear about (e.g. a label column
    #: mixing numbers and strings); `label_notes()` adds the mapping and empty classes
    notes: tuple[str, ...] = ()

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_outputs(self) -> int:
        """Units of the output layer: C for classification, 1 for binary and regression."""
        return int(self.n_classes) if self.task == "classification" else 1

    @property
    def dtype(self) -> np.dtype:
        return self.X_train.dtype

    def inputs(self, spec, part: str = "train") -> np.ndarray:
        """X of the `part` split ("train" or "test") in the input shape of `spec` (a
        `zoo.specs.ModelSpec`): (N, *spec.input_shape). Images the model cannot take (flat
        features for an image model, other sizes or channels) are a ConfigError naming both."""
        if part not in ("train", "test"):
            raise ConfigError(f"part must be 'train' or 'test', got {part!r}.")
        X = self.X_train if part == "train" else self.X_test
        want = tuple(spec.input_shape)
        if len(want) == 1:  # flat models take the features as they are, images flattened
            if self.n_features != want[0]:
                raise ConfigError(f"the model expects {want[0]} features but the dataset "
                                  f"{self.name!r} has {self.n_features}.")
            return X
        if self.image_shape is None:
            raise ConfigError(flat_data_message(spec.name, self))
        if len(want) == 2:   # a recurrent model reads the images row by row: (H, W * C)
            h, w, c = self.image_shape
            if want != (h, w * c):
                raise ConfigError(f"model {spec.name!r} was built for sequences of "
                                  f"{shape_text(want)} but dataset {self.name!r} has "
                                  f"{shape_text(self.image_shape)} images (rows of {w * c}); "
                                  "build the model spec from the dataset.")
            return X.reshape(len(X), *want)
        if tuple(self.image_shape) != want:
            raise ConfigError(f"model {spec.name!r} was built for {shape_text(want)} images but "
                              f"dataset {self.name!r} has {shape_text(self.image_shape)} "
                              "images; build the model spec from the dataset's image shape.")
        return X.reshape(len(X), *want)

    def empty_classes(self) -> tuple[int, ...]:
        """Class ids in 0..C-1 that no sample (train or test) carries: integer labels with
        gaps such as {0, 2, 5} keep their ids (C = 6) and leave 1, 3 and 4 empty."""
        if self.task == "regression" or not self.n_classes:
            return ()
        y = np.concatenate([np.ravel(self.y_train), np.ravel(self.y_test)]).astype(np.int64)
        counts = np.bincount(y, minlength=int(self.n_classes))
        return tuple(int(c) for c in np.flatnonzero(counts == 0))

    def label_mapping(self) -> str | None:
        """"0=setosa, 1=versicolor, 2=virginica" for string labels, else None."""
        if not self.label_names:
            return None
        return ", ".join(f"{i}={name}" for i, name in enumerate(self.label_names))

    def label_notes(self, mapping: bool = True) -> list[str]:
        """What `zoo data`, `zoo train` and `zoo compare` tell the user about the labels: the
        mapping of string labels to class ids (unless `mapping` is False), the reader's notes
        and the empty classes."""
        out = []
        if self.label_names and mapping:
            column = f" of column {self.target_name!r}" if self.target_name else ""
            out.append(f"class ids of the labels{column} (sorted): {self.label_mapping()}")
        out += list(self.notes)
        empty = self.empty_classes()
        if empty:
            out.append(empty_classes_message(empty, int(self.n_classes or 0)))
        return out

    def summary(self) -> dict:
        """A JSON-friendly summary: sizes, features, classes and counts (or target range)."""
        out: dict = {
            "name": self.name,
            "task": self.task,
            "train_samples": int(self.X_train.shape[0]),
            "test_samples": int(self.X_test.shape[0]),
            "features": self.n_features,
            "dtype": str(self.dtype),
            "source": self.source,
            "split": self.split,
        }
        if self.image_shape:
            out["image_shape"] = list(self.image_shape)
        if self.vocab:
            out["vocab"] = int(self.vocab)
        if self.task == "regression":
            y = np.concatenate([self.y_train, self.y_test]).ravel()
            out["target_range"] = [float(y.min()), float(y.max())]
        else:
            out["classes"] = int(self.n_classes or 0)
            for part, y in (("train", self.y_train), ("test", self.y_test)):
                counts = np.bincount(y, minlength=self.n_classes or 0)
                out[f"{part}_class_counts"] = [int(c) for c in counts]
            if self.label_names:
                out["label_names"] = list(self.label_names)
            empty = self.empty_classes()
            if empty:
                out["empty_classes"] = list(empty)
        if self.target_name:
            out["target"] = self.target_name
        notes = self.label_notes()
        if notes:
            out["notes"] = notes
        return out


def _id_list(ids: Sequence[int], limit: int = 12) -> str:
    """"1, 3, 4", or the first `limit` ids and how many there are in all."""
    ids = [str(int(i)) for i in ids]
    if len(ids) <= limit:
        return ", ".join(ids)
    return ", ".join(ids[:limit]) + f", ... ({len(ids)} in all)"


def empty_classes_message(empty: Sequence[int], n_classes: int) -> str:
    """The note for integer labels with gaps: which ids in 0..C-1 have no samples, that they
    stay class ids (C outputs) and how to leave them out."""
    empty = [int(c) for c in empty]
    present = [c for c in range(n_classes) if c not in set(empty)]
    one = len(empty) == 1
    return (f"class{'' if one else 'es'} {_id_list(empty)} of 0..{n_classes - 1} "
            f"{'has' if one else 'have'} no samples (the labels present are "
            f"{_id_list(present)}): the labels are kept as class ids, so the model has "
            f"{n_classes} outputs, {len(empty)} of them for {'a class' if one else 'classes'} it "
            f"never sees; renumber the labels 0..{len(present) - 1} to leave "
            f"{'it' if one else 'them'} out.")


# ----------------------------------------------------------------------------- validation
def check_batch_size(batch_size: int) -> int:
    """A batch size must be an integer >= 1 (larger than N means one full batch per epoch)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ConfigError(f"batch size must be an integer, got {batch_size!r}; pass e.g. 32.")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}; pass e.g. 32.")
    return int(batch_size)


def check_tokens(X: np.ndarray, vocab: int, what: str = "data") -> None:
    """Token ids must be whole numbers in [0, vocab): the first one that is not is named."""
    X = np.asarray(X)
    bad = ~np.isfinite(X) | (X != np.round(X)) | (X < 0) | (X >= vocab)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ConfigError(f"{what}: token id {X[row, col]:g} at sample {row}, position {col} is "
                          f"not in the vocabulary [0, {vocab}); token ids must be whole numbers "
                          f"below the vocabulary size {vocab}.")


def validate_arrays(X: np.ndarray, y: np.ndarray, task: str = "classification",
                    n_classes: int | None = None, *, what: str = "data") -> None:
    """Raise DataError for anything that would make a framework fail or silently mislead."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; use one of {', '.join(TASKS)}.")
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise DataError(f"{what}: features must be 2-D (samples, features), got shape {X.shape}; "
                        "reshape with X.reshape(len(X), -1).")
    if X.shape[0] == 0:
        raise DataError(f"{what}: the dataset is empty (0 samples); provide at least one row.")
    if X.shape[1] == 0:
        raise DataError(f"{what}: the dataset has no feature columns; provide at least one.")
    if y.shape[0] != X.shape[0]:
        raise DataError(f"{what}: {X.shape[0]} feature rows but {y.shape[0]} targets; "
                        "X and y must have the same number of samples.")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise DataError(f"{what}: features must be real numbers, got dtype {X.dtype}; "
                        "convert with X.astype('float32').")
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{what}: features contain {int(bad.sum())} non-finite values (NaN or inf), "
                        f"the first at row {row}, column {col}; drop or impute them first.")
    if task == "regression":
        if y.ndim == 2 and y.shape[1] != 1 or y.ndim > 2:
            raise DataError(f"{what}: regression targets must have shape (N,) or (N, 1), got {y.shape}.")
        if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y.astype(np.float64)).all():
            raise DataError(f"{what}: regression targets must be finite numbers; "
                            "drop rows with NaN or inf targets.")
        return
    if y.ndim == 2 and y.shape[1] > 1:
        raise DataError(f"{what}: labels have shape {y.shape}, which looks one-hot; integer class "
                        "labels of shape (N,) are expected: use y.argmax(axis=1).")
    y = y.ravel()
    if not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{what}: labels must be integers in [0, C), got dtype {y.dtype}.")
    yf = y.astype(np.float64)
    if not np.isfinite(yf).all() or (yf != np.round(yf)).any():
        raise DataError(f"{what}: labels must be integers in [0, C); found non-integer values "
                        f"such as {float(yf[(~np.isfinite(yf)) | (yf != np.round(yf))][0])!r}.")
    if n_classes is None:
        n_classes = 2 if task == "binary" else int(yf.max()) + 1
    if yf.min() < 0 or yf.max() >= n_classes:
        raise DataError(f"{what}: labels must be integers in [0, {n_classes}); found values from "
                        f"{int(yf.min())} to {int(yf.max())}. Encode classes as 0..{n_classes - 1}.")


# ----------------------------------------------------------------------------- one-hot
def one_hot(labels: np.ndarray, n_classes: int | None = None, dtype: str = "float32") -> np.ndarray:
    """Integer labels of shape (N,) to an (N, C) one-hot matrix, like `keras.utils.to_categorical`.

    Unlike `to_categorical`, already one-hot (2-D) input is refused: calling `to_categorical`
    twice silently grows the shape to (N, C, C) (the trap seed 002 warns about).
    """
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"one_hot expects integer labels of shape (N,), got shape {y.shape}: the "
                        "labels look one-hot already (calling to_categorical twice grows the "
                        "shape). Use them as they are, or y.argmax(axis=1) to get integer labels.")
    if n_classes is None:
        n_classes = int(y.max()) + 1 if y.size else 0
    validate_arrays(np.zeros((max(len(y), 1), 1)), y if len(y) else np.zeros(1, int),
                    "classification", n_classes, what="one_hot")
    out = np.zeros((len(y), n_classes), dtype=dtype)
    out[np.arange(len(y)), y.astype(np.int64)] = 1
    return out


# ----------------------------------------------------------------------------- batch order
def batch_order(n: int, batch_size: int, seed: int, epoch: int, *, shuffle: bool = True
                ) -> list[np.ndarray]:
    """The index arrays of one epoch's mini-batches, identical for every framework.

    Every index in [0, n) appears exactly once per epoch; the last batch holds the remainder
    (it is kept, as Keras `fit` and torch `DataLoader(drop_last=False)` keep it). The
    permutation depends only on (seed, epoch), so it is deterministic for a seed and
    different across epochs. With `shuffle=False` the order is 0..n-1.
    """
    batch_size = check_batch_size(batch_size)
    if n < 1:
        raise DataError("cannot batch an empty dataset (0 samples); provide at least one row.")
    if epoch < 0:
        raise ConfigError(f"epoch must be >= 0, got {epoch}.")
    if shuffle:
        order = np.random.default_rng([int(seed), int(epoch)]).permutation(n)
    else:
        order = np.arange(n)
    return [order[i:i + batch_size].astype(np.int64) for i in range(0, n, batch_size)]


# ----------------------------------------------------------------------------- split and scale
def split_arrays(X: np.ndarray, y: np.ndarray, *, test_size: float = 0.2, seed: int = 0,
                 stratify: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A deterministic train/test split by seed, stratified by class when `stratify`."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size must be in (0, 1), got {test_size}.")
    n_test = int(np.ceil(test_size * len(X)))
    if n_test < 1 or len(X) - n_test < 1:
        raise DataError(f"cannot split {len(X)} samples into non-empty train and test sets; "
                        "provide more data.")
    strat = None
    if stratify:
        counts = np.bincount(np.asarray(y).ravel().astype(np.int64))
        counts = counts[counts > 0]
        if counts.min() >= 2 and n_test >= len(counts) and len(X) - n_test >= len(counts):
            strat = y
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=n_test, random_state=seed,
                                          shuffle=True, stratify=strat)
    return Xtr, Xte, ytr, yte


def standardize(X_train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Centre and scale every array with the train split's mean and std (constant columns: std 1)."""
    mean = X_train.mean(axis=0, dtype=np.float64)
    std = X_train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return tuple(((a - mean) / std) for a in (X_train, *others))


# ----------------------------------------------------------------------------- files
def sha256sum(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    got = sha256sum(path)
    if got != expected:
        raise ChecksumError(f"{path}: SHA-256 {got} does not match the published {expected}; the "
                            "file is corrupt or not the original: delete it and download it again.")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a numpy array, checking its header and size."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file.")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot be read as {'gzip' if opener is gzip.open else 'IDX'} "
                        f"({exc}); the file is truncated or corrupt: download it again.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); "
                        "expected e.g. 00000803 for images or 00000801 for labels.")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header is truncated; download the file again.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX header promises {dims} ({expected} bytes of data) but the "
                        f"file holds {len(raw) - header}; it is truncated or corrupt: "
                        "download it again.")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _copy_with_progress(src, dst, total: int, label: str) -> None:
    """Copy a stream, with a progress bar on stderr when it is a terminal."""
    import sys

    if not sys.stderr.isatty():
        shutil.copyfileobj(src, dst)
        return
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                  transient=True) as bar:
        task = bar.add_task(label, total=total or None)
        for chunk in iter(lambda: src.read(1 << 16), b""):
            dst.write(chunk)
            bar.advance(task, len(chunk))


def _download(url: str, dest: Path, sha256: str) -> Path:
    """Download `url` to `dest`, keeping it only if its SHA-256 matches (written atomically)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            _copy_with_progress(resp, out, int(resp.headers.get("Content-Length") or 0),
                                f"downloading {dest.name}")
        got = sha256sum(tmp)
        if got != sha256:
            raise ChecksumError(f"the download of {url} has SHA-256 {got}, not the published "
                                f"{sha256}, so it was not kept; try again, or put a copy "
                                f"you trust in {dest.parent}.")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the shared cache from other users
        os.replace(tmp, dest)
    except ChecksumError:
        Path(tmp).unlink(missing_ok=True)
        raise
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DataNotFoundError(f"could not download {url} ({exc}).") from None
    return dest


def _repo_shared_mnist() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


def _keras_cache() -> Path:
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "datasets"


def _find_mnist(data_dir: str | os.PathLike | None, parts: Sequence[str], download: bool
                ) -> tuple[dict[str, np.ndarray], str]:
    """Find MNIST arrays for `parts` ("train", "test") in the documented order.

    1. `data_dir`, else the ZOO_DATA_DIR environment variable (IDX gz files or mnist.npz);
    2. the repository's `../shared/data/mnist` (offline copy of the test set);
    3. Keras's cache `~/.keras/datasets/` (mnist.npz or IDX files);
    4. a download from the canonical mirror, kept only if its SHA-256 matches.
    """
    names = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
    explicit = data_dir or os.environ.get(DATA_DIR_ENV)
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit).expanduser())
        if not candidates[0].is_dir():
            raise DataNotFoundError(f"data directory {candidates[0]} does not exist; pass a "
                                    "directory holding the MNIST IDX .gz files or mnist.npz.")
    else:
        candidates += [_repo_shared_mnist(), _keras_cache()]
    looked: list[str] = []
    for d in candidates:
        idx = [d / n for p in parts for n in names[p]]
        if all(p.is_file() for p in idx):
            out = {}
            for p in parts:
                img_path, lab_path = d / names[p][0], d / names[p][1]
                for f in (img_path, lab_path):
                    verify_sha256(f, MNIST_SHA256[f.name])
                out[f"x_{p}"] = read_idx(img_path)
                out[f"y_{p}"] = read_idx(lab_path)
            return out, str(d)
        looked.append(f"{d}/{{{','.join(n for p in parts for n in names[p])}}}")
        npz = d / "mnist.npz"
        if npz.is_file():
            return _read_mnist_npz(npz, parts), str(npz)
        looked.append(str(npz))
    if explicit or not download:
        raise DataNotFoundError(
            "MNIST files not found; looked in " + "; ".join(looked) + ". Pass --data-dir (or set "
            f"{DATA_DIR_ENV}) to a directory holding the four IDX .gz files or Keras's mnist.npz.")
    target = _keras_cache() / "mnist.npz"
    try:
        _download(MNIST_NPZ_URL, target, MNIST_SHA256["mnist.npz"])
    except DataNotFoundError as exc:
        raise DataNotFoundError(
            f"MNIST files not found (looked in {'; '.join(looked)}) and {exc} Pass --data-dir "
            f"(or set {DATA_DIR_ENV}) to a directory holding the IDX .gz files or mnist.npz."
        ) from None
    return _read_mnist_npz(target, parts), str(target)


def _read_mnist_npz(path: Path, parts: Sequence[str]) -> dict[str, np.ndarray]:
    if path.name == "mnist.npz":
        verify_sha256(path, MNIST_SHA256["mnist.npz"])
    arrays = load_npz_arrays(path, [f"{k}_{p}" for p in parts for k in ("x", "y")])
    return arrays


def load_npz_arrays(path: str | os.PathLike, keys: Sequence[str],
                    optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Read named arrays (and the `optional` ones it holds) from an .npz file without ever
    unpickling (allow_pickle=False)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file; pass the path of an existing .npz file.")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        kind = "a pickle, which is never loaded for safety" if magic[:1] == b"\x80" else \
            "not a zip archive"
        raise DataError(f"{path}: not a readable .npz archive ({kind}); save the arrays with "
                        f"np.savez(path, {', '.join(f'{k}=...' for k in keys)}).")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:  # fh: closed on errors
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(f"{path}: the archive has no array named {', '.join(map(repr, missing))} "
                                f"(it holds {', '.join(z.files) or 'nothing'}); save it with "
                                f"np.savez(path, {', '.join(f'{k}=...' for k in keys)}).")
            return {k: z[k] for k in [*keys, *(o for o in optional if o in z.files)]}
    except DataError:
        raise
    except ValueError as exc:  # object arrays need pickle, which we never allow
        raise DataError(f"{path}: holds object (pickled) arrays, which are never loaded for "
                        f"safety ({exc}); save plain numeric arrays (ragged sequences: pad "
                        "them to one length first).") from None
    except Exception as exc:  # zipfile.BadZipFile, EOFError, OSError, ...
        raise DataError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc}); "
                        "the file is truncated or corrupt.") from None


#: The delimiters a CSV file may separate its fields with (one of them per file).
CSV_DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab"}
#: How much of a CSV file the delimiter is sniffed from, and how many rows decide the header.
_SNIFF_CHARS = 64 * 1024
_HEADER_ROWS = 1000
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")
_INDEX = re.compile(r"[+-]?\d+")


class CsvTable(NamedTuple):
    """A CSV file read by `read_csv`: features, labels and what was found out on the way."""

    X: np.ndarray                          #: (N, F) float64 features
    y: np.ndarray                          #: (N,) float64 targets, or int64 ids of string labels
    feature_names: tuple[str, ...]
    label_names: tuple[str, ...] | None    #: string labels: id i is label_names[i] (sorted)
    target_name: str                       #: the label column's header name, or "column K"
    notes: tuple[str, ...]                 #: e.g. a label column mixing numbers and strings
    delimiter: str                         #: ",", ";" or "\t"
    header: bool                           #: whether the first row was a header


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def sniff_delimiter(text: str, where: str = "CSV") -> str:
    """The delimiter of a CSV text: ',', ';' or tab (`CSV_DELIMITERS`), one per file.

    A file in which one line separates its fields with one of them and another line with
    another (neither line holding the other's) mixes delimiters: a DataError naming both
    lines. Otherwise `csv.Sniffer`, restricted to the three, decides on the first 64 KiB (a
    ';' file may hold decimal commas, a ',' file quoted text with ';'); when it cannot, the
    one candidate every line holds. A file with none of them has one column (',')."""
    lines = [(i, ln) for i, ln in enumerate(re.split(r"\r\n|\r|\n", text), start=1)
             if ln.strip()]
    for a in CSV_DELIMITERS:
        for b in CSV_DELIMITERS:
            if a == b:
                continue
            la = next((i for i, ln in lines if a in ln and b not in ln), None)
            lb = next((i for i, ln in lines if b in ln and a not in ln), None)
            if la is not None and lb is not None:
                first, second = sorted([(la, a), (lb, b)])
                raise DataError(f"{where}: mixes delimiters: line {first[0]} separates its "
                                f"fields with {_DELIMITER_NAMES[first[1]]} but line {second[0]} "
                                f"with {_DELIMITER_NAMES[second[1]]}; use one delimiter "
                                "(',', ';' or tab) throughout the file.")
    present = [d for d in CSV_DELIMITERS if any(d in ln for _, ln in lines)]
    if len(present) <= 1:
        return present[0] if present else ","
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS and "\n" in sample:
        sample = sample[:sample.rindex("\n") + 1]
    try:
        found = csv.Sniffer().sniff(sample, delimiters="".join(CSV_DELIMITERS)).delimiter
    except csv.Error:
        found = None
    if found in CSV_DELIMITERS:
        return found
    everywhere = [d for d in present if all(d in ln for _, ln in lines)]
    if len(everywhere) == 1:
        return everywhere[0]
    raise DataError(f"{where}: cannot tell whether its fields are separated by "
                    f"{' or '.join(_DELIMITER_NAMES[d] for d in present)}; use one delimiter "
                    "(',', ';' or tab) and quote text that contains another.")


def _detect_header(rows: list[list[str]]) -> bool:
    """A first row is a header when it has a non-numeric cell in a column whose other rows
    are numeric (the first 1,000 rows decide); a file of one row is a header if any of its
    cells is not a number. A header of numbers alone cannot be told from data."""
    first = rows[0]
    if len(rows) == 1:
        return not all(_is_number(c) for c in first)
    others = rows[1:1 + _HEADER_ROWS]
    for j, cell in enumerate(first):
        if _is_number(cell):
            continue
        column = [r[j] for r in others if j < len(r)]
        if column and all(_is_number(c) for c in column):
            return True
    return False


def _target_column(target: str | int, header: list[str] | None, n_cols: int, where: str,
                   first: tuple[int, list[str]]) -> int:
    """The index of the label column: a header name, or a column index (0 the first, -1 the
    last) in a file with or without a header; a header name that looks like an index wins."""
    text = str(target).strip()
    if header is not None and text in header:
        if header.count(text) > 1:
            raise DataError(f"{where}: {header.count(text)} columns are named {text!r}; give "
                            "the label column a name of its own, or pass its index as --target.")
        return header.index(text)
    if _INDEX.fullmatch(text):
        k = int(text)
        if not -n_cols <= k < n_cols:
            raise DataError(f"{where}: --target {k} is not a column of this file: it has {n_cols} "
                            f"columns (indices 0..{n_cols - 1}, or -1 for the last).")
        return k % n_cols
    if header is not None:
        raise DataError(f"{where}: no column named {text!r}; the columns are {', '.join(header)}. "
                        "Pass one of them as --target.")
    line, row = first
    shown = ", ".join(row[:5]) + (", ..." if len(row) > 5 else "")
    raise DataError(f"{where}: has no header row (line {line} is data: {shown}), so --target "
                    f"{text!r} names no column; pass the label column's index instead (0 for the "
                    f"first, -1 for the last of its {n_cols} columns) or add a header row.")


def read_csv(path: str | os.PathLike, target: str | int | None) -> CsvTable:
    """Read a CSV file of numeric features and one label column named by `target`.

    - Delimiter: ',', ';' or tab, sniffed (`sniff_delimiter`); a file mixing them is refused.
    - Header: detected (`_detect_header`): the first row is a header when it holds a
      non-numeric cell in a column that is numeric below it, or when `target` is a name among
      its cells. Without one the columns are "column 0", "column 1", ...
    - `target`: a header name, or a column index (0 the first, -1 the last), which is the only
      way to name the label column of a file without a header.
    - Labels: numbers are returned as they are (`load` tells classes from regression); a
      column holding any cell that is not a number is a column of class names, mapped to ids
      in sorted order (`label_names`). A column mixing numbers and strings is read as strings
      too, with a note saying so. An empty label cell is refused.
    - Features must be numbers: the first cell that is not (or is empty) is named.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file; pass the path of an existing CSV file.")
    if target is None or str(target).strip() == "":
        raise ConfigError("a CSV needs --target COLUMN naming its label column (a header name, "
                          "or an index: 0 for the first column, -1 for the last).")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as a UTF-8 CSV file ({exc}).") from None
    delimiter = sniff_delimiter(text, str(path))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    numbered: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if any(c.strip() for c in row):
                numbered.append((reader.line_num, [c.strip() for c in row]))
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num} is not valid CSV ({exc}).") from None
    if not numbered:
        raise DataError(f"{path}: the CSV file is empty; it needs a header row and data rows.")
    rows = [r for _, r in numbered]
    name = str(target).strip()
    # a --target NAME among the first row's cells makes it a header, whatever is below it
    # (features that are not numbers, e.g. decimal commas, are then named cell by cell)
    has_header = _detect_header(rows) or (not _INDEX.fullmatch(name) and name in rows[0])
    n_cols = len(rows[0])
    header = rows[0] if has_header else None
    t = _target_column(target, header, n_cols, str(path), numbered[0])
    names = header if header is not None else [f"column {j}" for j in range(n_cols)]
    body = numbered[1:] if has_header else numbered
    if not body:
        raise DataError(f"{path}: the dataset is empty (a header but no data rows).")
    width = "the header has" if has_header else f"line {numbered[0][0]} has"
    values = np.empty((len(body), n_cols), dtype=np.float64)
    labels: list[str] = []
    for k, (line, row) in enumerate(body):
        if len(row) != n_cols:
            raise DataError(f"{path}: line {line} has {len(row)} fields but {width} {n_cols}; "
                            "every row needs one value per column.")
        for j, cell in enumerate(row):
            if j == t:
                if not cell:
                    raise DataError(f"{path}: line {line} has no label (column {names[j]!r} is "
                                    "empty); drop the rows without a label or fill them in.")
                labels.append(cell)
                continue
            try:
                values[k, j] = float(cell)
            except ValueError:
                raise DataError(_not_a_number(path, line, names[j], cell)) from None
    X = np.delete(values, t, axis=1)
    feats = tuple(h for j, h in enumerate(names) if j != t)
    target_name = names[t]
    numeric = [_is_number(c) for c in labels]
    if all(numeric):
        y = np.array([float(c) for c in labels], dtype=np.float64)
        return CsvTable(X, y, feats, None, target_name, (), delimiter, has_header)
    label_names = tuple(sorted(set(labels)))
    ids = {name: i for i, name in enumerate(label_names)}
    y = np.array([ids[c] for c in labels], dtype=np.int64)
    notes: tuple[str, ...] = ()
    n_num = sum(numeric)
    if n_num:
        num = next(c for c, is_num in zip(labels, numeric, strict=True) if is_num)
        txt = next(c for c, is_num in zip(labels, numeric, strict=True) if not is_num)
        notes = (f"the label column {target_name!r} mixes numbers and strings ({n_num} "
                 f"numeric labels such as {num!r}, {len(labels) - n_num} strings such as "
                 f"{txt!r}): every label was read as a string, a class name; check for typos "
                 "and missing-value markers (such as 'NA' or '?'), which become classes too.",)
    return CsvTable(X, y, feats, label_names, target_name, notes, delimiter, has_header)


def _not_a_number(path: Path, line: int, column: str, cell: str) -> str:
    """The DataError text for a feature cell that is not a number."""
    if not cell:
        return (f"{path}: line {line}, column {column!r} is empty; every feature cell must hold "
                "a number: fill in or drop the rows with missing values.")
    if _DECIMAL_COMMA.fullmatch(cell):
        return (f"{path}: line {line}, column {column!r} holds {cell!r}, which is not a number "
                f"(a decimal comma? write {cell.replace(',', '.')!r}); every cell must be numeric.")
    return (f"{path}: line {line}, column {column!r} holds {cell!r}, which is not a number; "
            "every cell must be numeric.")


def not_labels_reason(y: np.ndarray) -> str | None:
    """Why targets cannot be class labels 0..C-1 (None if they can): what `_infer_task` saw
    when it called a user's file a regression task."""
    y = np.asarray(y, dtype=np.float64).ravel()
    if not len(y):
        return None
    if not np.isfinite(y).all():
        return "non-finite values"
    frac = y[y != np.round(y)]
    if len(frac):
        return f"non-integer values such as {float(frac[0]):g}"
    if y.min() < 0:
        return f"negative values such as {int(y.min())}"
    if len(np.unique(y)) > 100 or y.max() >= 1000:
        return f"{len(np.unique(y))} distinct values up to {int(y.max())}"
    return None


def _infer_task(y: np.ndarray) -> str:
    y = np.asarray(y, dtype=np.float64).ravel()
    if np.isfinite(y).all() and (y == np.round(y)).all() and y.min() >= 0:
        k = len(np.unique(y))
        if k == 2 and set(np.unique(y)) == {0.0, 1.0}:
            return "binary"
        if k <= 100 and y.max() < 1000:
            return "classification"
    return "regression"


# ----------------------------------------------------------------------------- datasets
def _sklearn(name: str):
    def loader(**_):
        from sklearn import datasets

        bunch = {"iris": datasets.load_iris, "digits": datasets.load_digits,
                 "breast_cancer": datasets.load_breast_cancer}[name]()
        feats = tuple(str(f) for f in getattr(bunch, "feature_names", ()))
        return (bunch.data, bunch.target, f"scikit-learn load_{name}()", feats,
                IMAGE_SHAPES.get(name))
    return loader


def _icecream(seed: int = 0, n: int = 500, **_):
    """Seed 002's ice-cream demand model: sales = 10*temperature - 2*humidity + 20*discount + 4."""
    rng = np.random.default_rng(seed)
    temperature = rng.uniform(10.0, 35.0, n)
    humidity = rng.uniform(20.0, 80.0, n)
    discount = rng.uniform(0.0, 1.0, n)
    X = np.stack([temperature, humidity, discount], axis=1)
    y = X @ ICECREAM_COEFFICIENTS + ICECREAM_INTERCEPT + rng.normal(0.0, 0.2, n)
    return X, y, f"synthetic (seed {seed}, n={n}, noise sd 0.2)", ("temperature", "humidity", "discount"), None


#: The true coefficients of the ice-cream model (seed 002) and its intercept.
ICECREAM_COEFFICIENTS = np.array([10.0, -2.0, 20.0])
ICECREAM_INTERCEPT = 4.0


#: The token datasets and their vocabulary sizes: sequence models with an Embedding run on
#: these (ids stored as whole numbers in the float arrays).
TOKEN_VOCABS: dict[str, int] = {"tokens": 16}


def _tokens(seed: int = 0, n: int = 2000, length: int = 10, vocab: int = 16, classes: int = 4,
            **_):
    """A seeded synthetic sequence task that needs memory of the ORDER, not a bag of words:
    each sample is `length` token ids drawn uniformly from [0, vocab), and its label is the
    FIRST token's id mod `classes`. A model reading left to right must carry the first token
    to the end; a bag of words sees it among length - 1 random others (which token came first
    is lost). The same arrays on every machine (their own generator, seed 2026); `seed` only
    draws the split."""
    rng = np.random.default_rng(2026)
    X = rng.integers(0, vocab, size=(n, length))
    y = X[:, 0] % classes
    return X.astype(np.float64), y.astype(np.int64), "synthetic (seed 2026)", (), None


def _mnist(parts: tuple[str, ...]):
    def loader(data_dir=None, download=True, **_):
        arrays, where = _find_mnist(data_dir, parts, download)
        X = np.concatenate([arrays[f"x_{p}"] for p in parts])
        y = np.concatenate([arrays[f"y_{p}"] for p in parts])
        if X.ndim != 3 or X.shape[1:] != (28, 28) or len(X) != len(y):
            raise DataError(f"{where}: expected 28x28 MNIST images with one label each, got "
                            f"images {X.shape} and labels {y.shape}.")
        return X.reshape(len(X), -1), y, where, (), IMAGE_SHAPES["mnist"]
    return loader


#: Datasets that come with a fixed split: name -> (size of the test set, what it is). The test
#: set is the last N samples in file order, so anyone can rebuild the split by slicing, in any
#: framework, with no random generator involved. `load(..., split="seeded")` draws the
#: stratified seeded split instead.
FIXED_SPLITS: dict[str, tuple[int, str]] = {
    "mnist": (10_000, "the official split: the 60,000 training images / the 10,000 test images"),
    "mnist10k": (2_000, "the test set's first 8,000 images / its last 2,000, in file order"),
}
SPLITS = ("fixed", "seeded")

#: name -> (loader, task, default preprocessing, description)
DATASETS: dict[str, tuple] = {
    "iris": (_sklearn("iris"), "classification", "standard", "150 iris flowers, 4 features, 3 classes (scikit-learn)"),
    "digits": (_sklearn("digits"), "classification", "standard", "1,797 8x8 digits, 64 features, 10 classes (scikit-learn)"),
    "breast_cancer": (_sklearn("breast_cancer"), "binary", "standard", "569 tumours, 30 features, binary (scikit-learn): the logistic-regression task"),
    "icecream": (_icecream, "regression", "standard", "500 days of ice-cream sales from temperature, humidity, discount (seed 002)"),
    "mnist": (_mnist(("train", "test")), "classification", "unit", "70,000 28x28 handwritten digits, the official 60,000/10,000 split (IDX files or mnist.npz)"),
    "mnist10k": (_mnist(("test",)), "classification", "unit", "the official 10,000-image MNIST test set alone, its first 8,000 / last 2,000 (offline work)"),
    "tokens": (_tokens, "classification", "none", "2,000 sequences of 10 token ids (vocabulary 16), labelled by the first token mod 4: needs memory of the order (synthetic)"),
}


def load(name: str | None = None, *, data_dir: str | os.PathLike | None = None,
         csv: str | os.PathLike | None = None, target: str | int | None = None,
         npz: str | os.PathLike | None = None, seed: int = 0, test_size: float | None = None,
         preprocess: str | None = None, dtype: str = "float32", task: str | None = None,
         download: bool = True, split: str | None = None) -> Dataset:
    """Load a dataset by name (see `DATASETS`), or the user's own CSV (`csv` + `target`) or NPZ
    (arrays `X` and `y`), split it deterministically and preprocess it. A CSV's `target` is
    its label column's header name or index (`read_csv`); string labels become class ids in
    sorted order, kept in `Dataset.label_names`.

    `split` is "fixed" (the dataset's own split, see `FIXED_SPLITS`: the default for `mnist`
    and `mnist10k`) or "seeded" (a `test_size` share, 0.2 unless given, drawn by `seed` and
    stratified by class for classification: the default everywhere else). `seed` draws only
    the seeded split; the batch order takes its own seed.

    `preprocess` is "standard" (standardisation fitted on the train split only), "unit"
    (divide by 255, for images) or "none"; each dataset has a sensible default. `dtype` is
    "float32" (the default) or "float64".
    """
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split must be 'fixed' or 'seeded', got {split!r}.")
    own_file = csv is not None or npz is not None
    fixed = FIXED_SPLITS.get(name) if not own_file else None
    if split == "fixed" and fixed is None:
        raise ConfigError(f"{'your own data' if own_file else f'dataset {name!r}'} has no fixed "
                          f"split (only {', '.join(FIXED_SPLITS)} have one); use the seeded split.")
    split = split or ("fixed" if fixed else "seeded")
    if split == "fixed" and test_size is not None:
        raise ConfigError(f"test_size applies to the seeded split, but {name} uses its fixed "
                          "split; pass split='seeded' to choose the test share.")
    test_size = 0.2 if test_size is None else test_size
    image_shape = None
    npz_vocab = 0
    feats: tuple[str, ...] = ()
    label_names: tuple[str, ...] | None = None
    target_name, notes = "", ()
    if csv is not None or npz is not None:
        if csv is not None and npz is not None:
            raise ConfigError("pass either a CSV file or an NPZ file, not both.")
        if csv is not None:
            table = read_csv(csv, target)
            X, y, feats = table.X, table.y, table.feature_names
            label_names, target_name, notes = table.label_names, table.target_name, table.notes
            source, label = str(csv), Path(csv).stem
            if label_names is not None:  # class names: classes, whatever their number
                task = task or ("binary" if len(label_names) == 2 else "classification")
                if task == "regression":
                    raise ConfigError(f"{csv}: the column {target_name!r} holds class names "
                                      f"such as {label_names[0]!r}, not numbers; it cannot be "
                                      "a regression target.")
        else:
            arrays = load_npz_arrays(npz, ["X", "y"], optional=["vocab"])
            X, y = arrays["X"], arrays["y"]
            source, label = str(npz), Path(npz).stem
            if "vocab" in arrays:   # token ids (N, T) and their vocabulary size
                npz_vocab = int(arrays["vocab"])
                if np.asarray(X).ndim != 2:
                    raise DataError(f"{npz}: token sequences X must be (N, T) ids, got shape "
                                    f"{np.asarray(X).shape}; pad ragged sequences to one length.")
                check_tokens(X, npz_vocab, what=str(npz))
            image_shape = None if "vocab" in arrays else image_shape_of(X, what=label)
            if image_shape is not None:  # kept flat, in H, W, C order (`Dataset.inputs`)
                X = X.reshape(len(X), int(np.prod(X.shape[1:])))
        task = task or _infer_task(y) if len(np.asarray(y)) else (task or "classification")
        default_prep = "none" if npz_vocab else "standard"
    else:
        if name is None:
            raise ConfigError("name a dataset, or pass a CSV (--csv, --target) or NPZ (--npz) file.")
        if name not in DATASETS:
            raise unknown_name("dataset", name, list(DATASETS))
        loader, ds_task, default_prep, _ = DATASETS[name]
        X, y, source, feats, image_shape = loader(seed=seed, data_dir=data_dir, download=download)
        task = task or ds_task
        label = name
    X = np.asarray(X)
    y = np.asarray(y)
    validate_arrays(X, y, task, None, what=label)
    X = X.astype(np.float64)
    if task == "regression":
        y = y.astype(np.float64).reshape(-1, 1)
        n_classes = None
    else:
        y = y.ravel().astype(np.int64)
        n_classes = 2 if task == "binary" else int(y.max()) + 1
    if split == "fixed":
        n_test = fixed[0]
        if len(X) <= n_test:
            raise DataError(f"{source}: {len(X)} samples, but the fixed split of {name} takes "
                            f"the last {n_test:,} as its test set; load the complete files.")
        Xtr, Xte, ytr, yte = X[:-n_test], X[-n_test:], y[:-n_test], y[-n_test:]
        how = fixed[1]
    else:
        Xtr, Xte, ytr, yte = split_arrays(X, y, test_size=test_size, seed=seed,
                                          stratify=task != "regression")
        how = (f"seeded (seed {seed}, {test_size:g} held out"
               f"{', stratified by class' if task != 'regression' else ''})")
    prep = preprocess or default_prep
    if prep == "standard":
        Xtr, Xte = standardize(Xtr, Xte)
    elif prep == "unit":
        Xtr, Xte = Xtr / 255.0, Xte / 255.0
    elif prep != "none":
        raise ConfigError(f"preprocess must be 'standard', 'unit' or 'none', got {prep!r}.")
    ydt = dtype if task == "regression" else np.int64
    return Dataset(name=label, X_train=Xtr.astype(dtype), y_train=ytr.astype(ydt),
                   X_test=Xte.astype(dtype), y_test=yte.astype(ydt), task=task,
                   n_classes=n_classes, source=source, image_shape=image_shape,
                   feature_names=feats, split=how,
                   vocab=(npz_vocab or None) if own_file else TOKEN_VOCABS.get(name),
                   label_names=label_names,
                   target_name=target_name, notes=tuple(notes))
