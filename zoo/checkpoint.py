"""Training checkpoints, framework-free: where they live, what they must match, and one atomic,
pickle-free file format. Each framework's `<package>/checkpoint.py` puts its own state in.

A checkpoint is one file per framework in the checkpoint directory, `DIR/<framework>.ckpt.npz`,
written at the end of every epoch to a temporary file in DIR and then moved over the old one
with `os.replace` (atomic on POSIX): a process killed at any moment leaves either the previous
checkpoint or the new one, never half a file. It holds (all as plain arrays; `np.load` runs
with `allow_pickle=False`):

- `w:<name>`: the model's weights in the canonical layout;
- `opt:<key>`: the optimizer's state (momentum buffers, moment estimates, step counters, ...),
  in each framework's own naming;
- `rng:<key>`: a framework's random state, when it has one to keep (torch's generator);
- `losses`, `epoch_seconds`: the History so far;
- `meta`: a JSON string: {"framework", "epoch" (epochs completed), "fingerprint"}.

The fingerprint (model spec, train spec, a SHA-256 of the training data) must match on
`resume`: a checkpoint is never continued with another model, optimizer, learning rate, batch
size, seed or data. Resuming continues the shared batch order at epoch `epoch`
(`zoo.data.batch_order` is a pure function of (seed, epoch, step)), so a killed and resumed run
ends with the same weights, bit for bit, as an uninterrupted one in the same framework
(shared or no dropout; native dropout draws from framework RNGs that TF1 and Keras do not
let us restore).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ConfigError, DataError, DataNotFoundError
from zoo.specs import ModelSpec, TrainSpec

__all__ = ["Checkpoint", "State", "checkpoint_path", "fingerprint", "open_checkpoint"]


def checkpoint_path(directory: str | os.PathLike, framework: str) -> Path:
    """`DIR/<framework>.ckpt.npz`."""
    return Path(directory) / f"{framework}.ckpt.npz"


def fingerprint(model_spec: ModelSpec, train_spec: TrainSpec, X: np.ndarray,
                y: np.ndarray) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the specs and a hash of the data."""
    h = hashlib.sha256()
    for a in (X, y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return {"model": model_spec.to_dict(), "train": train_spec.to_dict(), "data": h.hexdigest()}


@dataclass
class State:
    """What a checkpoint holds, framework-neutral containers of numpy arrays."""

    epoch: int
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    losses: list[float]
    epoch_seconds: list[float]
    rng: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Checkpoint:
    """The checkpoint file of one training run (see `open_checkpoint`)."""

    path: Path
    framework: str
    fingerprint: dict[str, Any]

    def save(self, state: State) -> Path:
        """Write `state` atomically: a temporary file in the same directory, then os.replace."""
        from zoo.interchange import replace_atomically, temp_path

        arrays: dict[str, np.ndarray] = {f"w:{k}": np.asarray(v) for k, v in state.weights.items()}
        arrays.update({f"opt:{k}": np.asarray(v) for k, v in state.optimizer.items()})
        arrays.update({f"rng:{k}": np.asarray(v) for k, v in state.rng.items()})
        arrays["losses"] = np.asarray(state.losses, dtype=np.float64)
        arrays["epoch_seconds"] = np.asarray(state.epoch_seconds, dtype=np.float64)
        meta = {"framework": self.framework, "epoch": int(state.epoch),
                "fingerprint": self.fingerprint}
        arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
        with temp_path(self.path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            replace_atomically(tmp, self.path)
        return self.path

    def load(self) -> State:
        """The saved state, after checking the file and that it belongs to this run."""
        where = str(self.path)
        try:
            with open(self.path, "rb") as f, np.load(f, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"checkpoint {where!r} is truncated or corrupt ({exc}); delete it "
                            "or start over with --force.") from None
        try:
            meta = json.loads(str(arrays.pop("meta")))
            epoch = int(meta["epoch"])
            saved = meta["fingerprint"]
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(f"{where!r} is not a zoo checkpoint (no valid meta: {exc!r}); "
                            "delete it or start over with --force.") from None
        if meta.get("framework") != self.framework:
            raise DataError(f"checkpoint {where!r} was written by {meta.get('framework')!r}, "
                            f"not {self.framework!r}.")
        if saved != self.fingerprint:
            diff = sorted(k for k in set(saved) | set(self.fingerprint)
                          if saved.get(k) != self.fingerprint.get(k))
            raise ConfigError(f"checkpoint {where!r} belongs to another run (its "
                              f"{' and '.join(diff)} differ); resume with the same model, "
                              "dataset and options, or start over with --force.")
        return State(
            epoch=epoch,
            weights={k[2:]: v for k, v in arrays.items() if k.startswith("w:")},
            optimizer={k[4:]: v for k, v in arrays.items() if k.startswith("opt:")},
            rng={k[4:]: v for k, v in arrays.items() if k.startswith("rng:")},
            losses=[float(x) for x in arrays["losses"]],
            epoch_seconds=[float(x) for x in arrays["epoch_seconds"]])


def start(directory: str | os.PathLike | None, framework: str, model_spec: ModelSpec,
          train_spec: TrainSpec, X: np.ndarray, y: np.ndarray,
          init: dict[str, np.ndarray] | None, *, resume: bool, force: bool
          ) -> tuple[Checkpoint | None, State | None, dict[str, np.ndarray] | None]:
    """What every framework's `train` does with its checkpoint arguments: (the checkpoint, or
    None without a directory; the state to resume from, or None; the weights to build the
    model from: the resumed ones, else `init`)."""
    if directory is None:
        if resume:
            raise ConfigError("resume needs a checkpoint directory naming the checkpoint to "
                              "continue.")
        return None, None, init
    ckpt, state = open_checkpoint(directory, framework, model_spec, train_spec, X, y,
                                  resume=resume, force=force)
    return ckpt, state, state.weights if state is not None else init


def open_checkpoint(directory: str | os.PathLike, framework: str, model_spec: ModelSpec,
                    train_spec: TrainSpec, X: np.ndarray, y: np.ndarray, *, resume: bool,
                    force: bool) -> tuple[Checkpoint, State | None]:
    """The run's checkpoint and, with `resume`, the state to continue from.

    Without `resume`, an existing checkpoint is never overwritten unless `force`; with
    `resume`, the checkpoint must exist and match the run. The directory is created."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"checkpoint directory {str(directory)!r} is a file; choose a directory.")
    path = checkpoint_path(directory, framework)
    ckpt = Checkpoint(path, framework, fingerprint(model_spec, train_spec, X, y))
    if resume:
        if not path.is_file():
            raise DataNotFoundError(f"no checkpoint to resume: {str(path)!r} does not exist; "
                                    "run without --resume to start one.")
        return ckpt, ckpt.load()
    if path.exists() and not force:
        raise ConfigError(f"{str(path)!r} already exists; pass --resume to continue it or "
                          "--force to start over and overwrite it.")
    directory.mkdir(parents=True, exist_ok=True)
    return ckpt, None
