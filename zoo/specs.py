"""Model and training specs, canonical initial weights, dropout masks and training histories.

Everything that must be equal across frameworks is produced here once, in numpy, and handed
to every framework package, which only translates it into its own idiom.

Canonical weight layout (the one layout at every framework boundary): an ordered mapping of
name to numpy array in Keras layout, layers named ``dense_0``, ``dense_1``, ... in order:

    {"dense_0/kernel": (in, out), "dense_0/bias": (out,), "dense_1/kernel": ..., ...}

torch converts at its edge (``Linear.weight`` is ``kernel.T``); TF1 variables use the same
names and layout as Keras.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from zoo.errors import ConfigError, unknown_name
from zoo.layers import Layer, Resolved, resolve, weight_shapes
from zoo.layers import init_weights as layer_init
from zoo.models import ARCHITECTURES, Architecture
from zoo.optimizers import OptimizerSpec

__all__ = [
    "MODELS",
    "SCRATCH_ROWS",
    "History",
    "RowRecorder",
    "StepWeights",
    "ModelSpec",
    "TrainSpec",
    "check_canonical",
    "dropout_masks",
    "init_weights",
    "layer_sizes",
    "model_spec_for",
    "record_every",
    "records",
]

#: name -> `zoo.models.Architecture` (layers, loss, output kind, task, description).
MODELS = ARCHITECTURES


@dataclass(frozen=True)
class ModelSpec:
    """What to build: the model's name and its sizes. `input_shape` is the per-sample shape:
    (features,) for flat models (the default, from `n_features`), (H, W, C) for image models;
    `n_features` is always the number of input numbers."""

    name: str
    n_features: int
    n_outputs: int
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0
    input_shape: tuple[int, ...] = ()
    #: token models: the vocabulary size (ids in [0, vocab)); 0 for every other model
    vocab: int = 0

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise unknown_name("model", self.name, list(MODELS))
        shape = tuple(int(d) for d in self.input_shape) or (int(self.n_features),)
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.n_features < 1 or self.n_outputs < 1:
            raise ConfigError(f"a model needs at least one input and one output, got "
                              f"{self.n_features} inputs and {self.n_outputs} outputs.")
        if int(np.prod(shape)) != self.n_features:
            raise ConfigError(f"input shape {shape} holds {int(np.prod(shape))} numbers, not "
                              f"n_features={self.n_features}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {self.dropout}.")
        arch = MODELS[self.name]
        object.__setattr__(self, "vocab", int(self.vocab))
        if arch.sequence == "rows" and len(shape) != 2:
            raise ConfigError(f"model {self.name!r} reads images row by row and needs "
                              f"sequences (T, features) per sample, got {shape}; use an image "
                              "dataset (digits, mnist10k, mnist).")
        if arch.sequence == "tokens" and (len(shape) != 1 or self.vocab < 1):
            raise ConfigError(f"model {self.name!r} reads token-id sequences and needs a "
                              f"vocabulary; got input {shape} and vocab {self.vocab}; use a "
                              "token dataset (tokens).")
        if arch.sequence:
            return
        if arch.image and len(shape) != 3:
            raise ConfigError(f"model {self.name!r} needs images (H, W, C) but gets flat "
                              f"features {shape}; use an image dataset (mnist, mnist10k, digits) "
                              "or an NPZ of (N, H, W) or (N, H, W, C) images.")
        if not arch.image and len(shape) != 1:
            raise ConfigError(f"model {self.name!r} takes flat features, not images {shape}; "
                              f"pass n_features={self.n_features} (the images flattened).")

    @property
    def architecture(self) -> Architecture:
        return MODELS[self.name]

    @property
    def task(self) -> str:
        return self.architecture.task

    @property
    def loss(self) -> str:
        return self.architecture.loss

    @property
    def output(self) -> str:
        return self.architecture.output

    @cached_property
    def layers(self) -> list[Layer]:
        """The canonical layer list (`zoo.models`)."""
        return self.architecture.layers(self)

    @cached_property
    def resolved(self) -> list[Resolved]:
        """Every layer named, with its shapes and weight table (`zoo.layers.resolve`)."""
        try:
            return resolve(self.layers, self.input_shape)
        except ConfigError as exc:
            need = minimum_size(self)
            extra = f" Model {self.name!r} needs images of at least {need}x{need}." if need else ""
            raise ConfigError(f"model {self.name!r} on input {self.input_shape}: {exc}{extra}") \
                from None

    def weight_shapes(self, trainable: bool | None = None) -> dict[str, tuple[int, ...]]:
        """Canonical name -> shape of every tensor, in model order."""
        return weight_shapes(self.resolved, trainable)

    @property
    def n_params(self) -> int:
        return sum(int(np.prod(s)) for s in self.weight_shapes().values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(**{**d, "hidden": tuple(d.get("hidden", ())),
                      "input_shape": tuple(d.get("input_shape", ()))})


def minimum_size(spec: ModelSpec) -> int | None:
    """The smallest square image an image model can take (None for flat models)."""
    if not spec.architecture.image:
        return None
    c = spec.input_shape[-1] if len(spec.input_shape) == 3 else 1
    for s in range(1, 1025):
        probe = ModelSpec.__new__(ModelSpec)
        for k, v in {"name": spec.name, "n_features": s * s * c, "n_outputs": spec.n_outputs,
                     "hidden": spec.hidden, "dropout": spec.dropout,
                     "input_shape": (s, s, c)}.items():
            object.__setattr__(probe, k, v)
        try:
            resolve(spec.architecture.layers(probe), (s, s, c))
            return s
        except ConfigError:
            continue
    return None


def model_spec_for(name: str, n_features: int, n_outputs: int, *, dropout: float | None = None,
                   input_shape: tuple[int, ...] | None = None,
                   hidden: tuple[int, ...] | None = None, vocab: int | None = None
                   ) -> ModelSpec:
    """The zoo's spec of model `name` for a dataset's sizes (MLP: 64 and 32 hidden units,
    dropout 0.5 as in seed 004; nielsen: 30 hidden units). `input_shape` is the images'
    (H, W, C) for image models (dense models take the flat `n_features`)."""
    if name not in MODELS:
        raise unknown_name("model", name, list(MODELS))
    arch = MODELS[name]
    if arch.sequence == "rows":
        if input_shape is None or len(input_shape) not in (2, 3):
            raise ConfigError(f"model {name!r} reads images row by row but the data has flat "
                              f"features ({n_features}); use an image dataset (mnist, "
                              "mnist10k, digits) or an NPZ of (N, H, W) or (N, H, W, C) images.")
        rows = tuple(input_shape) if len(input_shape) == 2 else \
            (int(input_shape[0]), int(input_shape[1]) * int(input_shape[2]))
        return ModelSpec(name, n_features, n_outputs,
                         hidden=arch.default_hidden if hidden is None else tuple(hidden),
                         dropout=arch.default_dropout if dropout is None else dropout,
                         input_shape=rows)
    if arch.sequence == "tokens":
        if not vocab:
            raise ConfigError(f"model {name!r} reads token ids and needs the data's vocabulary; "
                              "use a token dataset (tokens).")
        return ModelSpec(name, n_features, n_outputs,
                         hidden=arch.default_hidden if hidden is None else tuple(hidden),
                         dropout=arch.default_dropout if dropout is None else dropout,
                         vocab=int(vocab))
    shape = tuple(input_shape) if (arch.image and input_shape is not None) else ()
    if arch.image and not shape:
        raise ConfigError(f"model {name!r} needs images (H, W, C) but the data has flat "
                          f"features ({n_features}); use an image dataset (mnist, mnist10k, "
                          "digits) or an NPZ of (N, H, W) or (N, H, W, C) images.")
    return ModelSpec(name, n_features, n_outputs,
                     hidden=arch.default_hidden if hidden is None else tuple(hidden),
                     dropout=arch.default_dropout if dropout is None else dropout,
                     input_shape=shape)


def layer_sizes(spec: ModelSpec) -> list[tuple[int, int]]:
    """(in, out) of every dense layer, in order."""
    return [(r.input_shape[0], r.output_shape[0]) for r in spec.resolved if r.kind == "dense"]


def init_weights(spec: ModelSpec, seed: int = 0, dtype: str = "float32") -> dict[str, np.ndarray]:
    """Initial weights in the canonical layout, drawn once in seeded numpy from the layer
    tables (`zoo.layers.init_weights`).

    Kernels are Glorot-uniform, U(+-sqrt(6 / (fan_in + fan_out))), as Keras's default `Dense`
    and `Conv2D` initialiser; biases are zero; seed 001's network draws N(0, 1) for both.
    (torch's own default is kaiming-uniform with random biases, TF1's `get_variable` default
    is glorot-uniform for biases too: never rely on either.)
    """
    return layer_init(spec.resolved, seed, dtype)


def dropout_masks(spec: ModelSpec, batch_len: int, seed: int, epoch: int, step: int,
                  dtype: str = "float32") -> list[np.ndarray]:
    """Precomputed keep-masks (0/1) for each Dropout layer of one mini-batch, shaped
    (batch, *the layer's input shape).

    Frameworks cannot share a dropout random stream, so for a step-by-step comparison every
    framework applies these masks as ``h * mask / (1 - rate)``. The masks depend only on
    (seed, epoch, step), never on the framework.
    """
    drops = [r for r in spec.resolved if r.kind == "dropout" and r.layer.rate > 0]
    if not drops:
        return []
    rng = np.random.default_rng([int(seed), 7919, int(epoch), int(step)])
    return [(rng.random((batch_len, *r.input_shape)) >= r.layer.rate).astype(dtype)
            for r in drops]


@dataclass(frozen=True)
class TrainSpec:
    """How to train: optimizer, epochs, batch size, seed for the batch order, dtype, L2 penalty."""

    optimizer: OptimizerSpec
    epochs: int = 1
    batch_size: int = 32
    seed: int = 0
    dtype: str = "float32"
    shuffle: bool = True
    l2: float = 0.0
    #: "shared": apply `dropout_masks`; "native": each framework draws its own; "off": no dropout.
    dropout_mode: str = "shared"

    def __post_init__(self) -> None:
        from zoo.data import check_batch_size

        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, np.integer)) or self.epochs < 1:
            raise ConfigError(f"epochs must be an integer >= 1, got {self.epochs!r}.")
        check_batch_size(self.batch_size)
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}.")
        if not (np.isfinite(self.l2) and self.l2 >= 0):
            raise ConfigError(f"l2 penalty must be a finite number >= 0, got {self.l2!r}.")
        if self.dropout_mode not in ("shared", "native", "off"):
            raise ConfigError(f"dropout_mode must be 'shared', 'native' or 'off', got {self.dropout_mode!r}.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["optimizer"] = self.optimizer.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainSpec:
        return cls(**{**d, "optimizer": OptimizerSpec.from_dict(d["optimizer"])})


def record_every(record_weights: bool | int) -> int:
    """The stride of a `record_weights` argument: 0 (record nothing), 1 (True: after every
    step) or k (after every k-th step: global steps k-1, 2k-1, ...)."""
    if isinstance(record_weights, (bool, np.bool_)):
        return int(bool(record_weights))
    if not isinstance(record_weights, (int, np.integer)) or record_weights < 0:
        raise ConfigError(f"record_weights must be True, False or a stride >= 1, got "
                          f"{record_weights!r}.")
    return int(record_weights)


def records(every: int, global_step: int) -> bool:
    """Whether the weights after `global_step` are recorded at stride `every`."""
    return every > 0 and (global_step + 1) % every == 0


#: The most recorded steps a framework keeps in its own layout before it moves them into the
#: canonical `StepWeights` storage: its scratch memory is at most this many rows of weights
#: (an epoch of 60,000 images at batch 32 is 1,875 steps).
SCRATCH_ROWS = 256


class StepWeights(Sequence):
    """The weights after a run's recorded steps: one stacked array per canonical tensor,
    `tensors[name]` of shape (n, *shape), in the canonical layout.

    Entry i is a dict of views, {name: tensors[name][i]}, so it reads like a list of weight
    dicts; but whole-run work stays vectorised: a framework writes one block per epoch,
    `History.to_npz_dict` saves the stacked arrays as they are, and `zoo.agreement` compares
    every step of a tensor at once.

    A training run allocates its storage once, before its first step (`allocate`: every
    step's weights of the whole run, all its pages written then), and each epoch writes its
    rows into it (`reserve` + `advance`). Memory is then acquired outside the timed epochs
    and never copied again; on a virtual machine that backs memory lazily the first write of
    a page costs far more than the copy itself (docs/benchmarks.md). Built from blocks
    instead (`extend`), the blocks are joined on first read."""

    def __init__(self, tensors: dict[str, np.ndarray] | None = None) -> None:
        self._blocks: list[dict[str, np.ndarray]] = []
        self._storage: dict[str, np.ndarray] | None = None
        self._n = 0
        if tensors:
            self.extend(tensors)

    @classmethod
    def allocate(cls, shapes: dict[str, tuple[int, ...]], capacity: int, dtype) -> StepWeights:
        """Empty storage for up to `capacity` steps of tensors of `shapes`, every page
        written now (so the epochs that fill it do not pay for acquiring it)."""
        out = cls()
        out._storage = {k: np.empty((max(0, int(capacity)), *s), dtype)
                        for k, s in shapes.items()}
        for a in out._storage.values():
            a.fill(0)
        return out

    @property
    def capacity(self) -> int | None:
        if self._storage is None:
            return None
        return len(next(iter(self._storage.values()))) if self._storage else 0

    def reserve(self, count: int) -> dict[str, np.ndarray]:
        """Views of the next `count` rows of the storage, to write into; `advance(k)` then
        takes the first k of them into the record."""
        if self._storage is None:
            raise ConfigError("internal: reserve() needs storage from StepWeights.allocate.")
        if self._n + count > self.capacity:
            raise ConfigError(f"internal: {self._n + count} recorded steps, storage for "
                              f"{self.capacity}.")
        return {k: a[self._n:self._n + count] for k, a in self._storage.items()}

    def advance(self, count: int) -> None:
        self._n += int(count)

    @classmethod
    def from_dicts(cls, dicts) -> StepWeights:
        """From weight dicts (or another StepWeights, returned as it is)."""
        if isinstance(dicts, StepWeights):
            return dicts
        out = cls()
        dicts = list(dicts)
        if dicts:
            out.extend({k: np.stack([np.asarray(d[k]) for d in dicts]) for k in dicts[0]})
        return out

    def extend(self, block) -> None:
        """Append a block: {name: (n, *shape)} stacked arrays, another StepWeights, or a
        list of weight dicts (copied into the storage when there is one)."""
        if isinstance(block, StepWeights):
            block = block.tensors if len(block) else {}
        elif not isinstance(block, dict):
            block = StepWeights.from_dicts(block).tensors if block else {}
        if not block:
            return
        lengths = {len(v) for v in block.values()}
        if len(lengths) != 1:
            raise ConfigError(f"internal: a block of step weights with tensors of different "
                              f"lengths {sorted(lengths)}.")
        names = list(self._storage) if self._storage is not None else \
            list(self._blocks[0]) if self._blocks else list(block)
        if set(block) != set(names):
            raise ConfigError(f"internal: step weights named {sorted(block)} after "
                              f"{sorted(names)}.")
        n = lengths.pop()
        if self._storage is not None:
            for k, rows in self.reserve(n).items():
                rows[...] = block[k]
        else:
            self._blocks.append(block)
        self.advance(n)

    @property
    def names(self) -> list[str]:
        if self._storage is not None:
            return list(self._storage)
        return list(self._blocks[0]) if self._blocks else []

    @property
    def tensors(self) -> dict[str, np.ndarray]:
        """{name: (n, *shape)}: the filled rows of the storage, or the blocks joined (once;
        later reads reuse the join)."""
        if self._storage is not None:
            return {k: a[:self._n] for k, a in self._storage.items()} if self._n else {}
        if len(self._blocks) > 1:
            self._blocks = [{k: np.concatenate([b[k] for b in self._blocks])
                             for k in self._blocks[0]}]
        return dict(self._blocks[0]) if self._blocks else {}

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        t = self.tensors
        if isinstance(i, slice):
            return StepWeights({k: v[i] for k, v in t.items()}) if t else StepWeights()
        return {k: v[i] for k, v in t.items()}

    def __repr__(self) -> str:
        return f"StepWeights({self._n} steps, {len(self.names)} tensors)"


class RowRecorder:
    """The weights after recorded steps, for a framework that copies them as one flat row a
    step (torch, TF1 layers): `next_row()` hands out a row of a scratch buffer (at most
    SCRATCH_ROWS rows) to write the native tensors into, raveled in `names` order; when the
    scratch is full and at each epoch's end (`flush`) its rows go into `store`, the run's
    canonical `StepWeights` (allocated before the first step), through
    `zoo.layers.FlatNative` (a view, a strided transpose or a gather per tensor)."""

    def __init__(self, resolved, framework: str, names: list[str], shapes: list[tuple],
                 steps_per_epoch: int, epochs: int, every: int, dtype) -> None:
        from zoo.layers import FlatNative

        self.flat = FlatNative(resolved, framework, names, shapes)
        self.rows = np.zeros((min(SCRATCH_ROWS, -(-steps_per_epoch // every)), self.flat.width),
                             dtype)
        self.count = 0
        self.store = StepWeights.allocate(self.flat.canonical_shapes,
                                          steps_per_epoch * epochs // every, dtype)

    def next_row(self) -> np.ndarray:
        if self.count == len(self.rows):
            self.flush()
        self.count += 1
        return self.rows[self.count - 1]

    def put(self, parts: list[np.ndarray]) -> None:
        """Fill the next row with a step's fetched native tensors: one flat array already in
        row order (an in-graph concatenation of the raveled tensors), or every tensor in
        `names` order, each raveled into its columns."""
        row = self.next_row()
        if len(parts) == 1 and np.ndim(parts[0]) == 1 and np.size(parts[0]) == len(row):
            row[...] = parts[0]
            return
        offsets = self.flat.offsets
        for a, b, value in zip(offsets[:-1], offsets[1:], parts, strict=True):
            row[a:b] = np.reshape(value, -1)

    def flush(self) -> None:
        """Move the rows filled since the last flush into `store`."""
        if self.count:
            self.flat(self.rows[:self.count], out=self.store.reserve(self.count))
            self.store.advance(self.count)
            self.count = 0


class SnapshotRing:
    """The framework-free half of a recorder that copies the weights inside a compiled step
    (Keras 3's `StepRecorder`, Keras 2's `StepCopies`, TF1's `Ring`): the step writes recorded ordinal r
    (the weights after global step (r + 1) * every - 1) into row r % `slots` of one buffer
    per native tensor (raveled, `names` order); `take(first, last, buffers)` moves ordinals
    first..last-1 from those buffers, read as numpy arrays, into `store`, the run's canonical
    `StepWeights` (allocated before the first step, `capacity` rows), through
    `zoo.layers.FlatNative`."""

    def __init__(self, resolved, framework: str, names: list[str], shapes: list[tuple],
                 every: int, slots: int, capacity: int, dtype) -> None:
        from zoo.layers import FlatNative

        self.every, self.slots = every, max(1, int(slots))
        self.flat = FlatNative(resolved, framework, names, shapes)
        self.store = StepWeights.allocate(self.flat.canonical_shapes, capacity, dtype)

    def take(self, first: int, last: int, buffers: Callable[[], list[np.ndarray]]) -> None:
        """Move ordinals first..last-1 into `store`; `buffers()` reads every buffer (called
        only when there is something to move)."""
        if last <= first:
            return
        if last - first > self.slots:
            raise ConfigError(f"internal: {last - first} snapshots since the last read, only "
                              f"{self.slots} slots.")
        order = np.arange(first, last) % self.slots
        whole = order[0] + len(order) == order[-1] + 1
        parts = [rows[order[0]:order[-1] + 1] if whole else rows[order] for rows in buffers()]
        self.flat.from_parts(parts, out=self.store.reserve(len(order)))
        self.store.advance(len(order))


@dataclass
class History:
    """What a framework's `train` returns: per-step losses and the weights, canonical layout.

    `losses[k]` is the mini-batch loss (mean over the batch, before the update) at global
    step k; `step_weights`, when recorded, holds the weights after every `weights_every`-th
    step: entry j is the weights after global step (j + 1) * weights_every - 1 (a
    `StepWeights`, or a list of weight dicts, which `__post_init__` turns into one).
    """

    framework: str
    losses: np.ndarray
    weights: dict[str, np.ndarray]
    epoch_seconds: list[float] = field(default_factory=list)
    step_weights: StepWeights | None = None
    stopped_at: int | None = None  # global step at which the loss became non-finite
    extra: dict[str, Any] = field(default_factory=dict)
    weights_every: int = 1

    def __post_init__(self) -> None:
        if self.step_weights is not None and not isinstance(self.step_weights, StepWeights):
            self.step_weights = StepWeights.from_dicts(self.step_weights)

    def recorded_steps(self) -> np.ndarray:
        """The global step after which each entry of `step_weights` was taken."""
        n = len(self.step_weights or ())
        return (np.arange(n) + 1) * self.weights_every - 1

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        """Flatten for `np.savez` (no pickles): losses, epoch_seconds and w:<name> arrays."""
        out = {"losses": np.asarray(self.losses), "epoch_seconds": np.asarray(self.epoch_seconds),
               "stopped_at": np.asarray(-1 if self.stopped_at is None else self.stopped_at),
               "weights_every": np.asarray(self.weights_every)}
        for k, v in self.weights.items():
            out[f"w:{k}"] = v
        if self.step_weights:
            stacked = self.step_weights.tensors
            for k in self.weights:
                out[f"sw:{k}"] = stacked[k]
        return out

    @classmethod
    def from_npz_dict(cls, framework: str, d: dict[str, np.ndarray]) -> History:
        weights = {k[2:]: d[k] for k in d if k.startswith("w:")}
        sw_keys = [k for k in d if k.startswith("sw:")]
        step_weights = StepWeights({k[3:]: d[k] for k in sw_keys}) if sw_keys else None
        stopped = int(d["stopped_at"]) if "stopped_at" in d else -1
        return cls(framework=framework, losses=np.asarray(d["losses"]), weights=weights,
                   epoch_seconds=[float(x) for x in np.asarray(d["epoch_seconds"]).ravel()],
                   step_weights=step_weights, stopped_at=None if stopped < 0 else stopped,
                   weights_every=int(d["weights_every"]) if "weights_every" in d else 1)


def check_canonical(weights: dict[str, Any], spec: ModelSpec | dict[str, tuple[int, ...]]
                    ) -> None:
    """What every framework's `set_weights` checks: `weights` has exactly the canonical
    tensors of the model (`spec`'s layer tables, or a {name: shape} dict) in canonical shapes.
    Missing, unexpected and misshapen tensors are named; a kernel in torch's layout gets a
    hint. A square Dense kernel cannot be told apart here (only a parity test catches it)."""
    from zoo.layers import check_weights

    if isinstance(spec, ModelSpec):
        check_weights(weights, spec.resolved)
        return
    shapes = spec
    missing, extra = sorted(set(shapes) - set(weights)), sorted(set(weights) - set(shapes))
    if missing or extra:
        raise ConfigError(f"weights do not fit this model: missing {missing or 'nothing'}, "
                          f"unexpected {extra or 'nothing'}; expected exactly {sorted(shapes)}.")
    for name, want in shapes.items():
        got = tuple(np.shape(weights[name]))
        if got != tuple(want):
            hint = (" (that is torch's (out, in) layout: pass kernel = weight.T)"
                    if name.endswith("/kernel") and got == tuple(want)[::-1] else "")
            raise ConfigError(f"{name}: expected shape {tuple(want)} in the canonical (in, out) "
                              f"layout, got {got}{hint}.")


def output_metrics(task: str, out: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The test metric of a model's outputs (`outputs`: probabilities, sigmoids or values)
    against targets: MSE for regression, else accuracy (sigmoid >= 0.5 for binary, the
    argmax of the class probabilities otherwise)."""
    out, y = np.asarray(out), np.asarray(y)
    if task == "regression":
        return {"mse": float(np.mean((out - y) ** 2))}
    if task == "binary":
        pred = (out.reshape(-1) >= 0.5).astype(np.int64)
        return {"accuracy": float(np.mean(pred == y.reshape(-1)))}
    return {"accuracy": float(np.mean(np.argmax(out, axis=1) == y))}


def check_inputs(model_spec: ModelSpec, X: np.ndarray, y: np.ndarray | None = None,
                 *, what: str = "data") -> None:
    """The checks every framework runs before training or predicting: a per-sample shape that
    fits the model (flat (N, F) features, or (N, H, W, C) images for image models), then the
    values and labels (`zoo.data.validate_arrays`)."""
    from zoo.data import validate_arrays

    X = np.asarray(X)
    want = tuple(model_spec.input_shape)
    got = tuple(X.shape[1:])
    if got != want:
        if len(want) == 3 and len(got) == 1:
            hint = (f"model {model_spec.name!r} takes images {want} per sample, got flat "
                    f"features ({got[0]}); reshape with X.reshape(-1, {', '.join(map(str, want))})")
        elif len(want) == 1 and len(got) >= 2:
            hint = (f"model {model_spec.name!r} takes flat features ({want[0]}) per sample, got "
                    f"images {got}; flatten with X.reshape(len(X), -1)")
        elif len(want) == 3 and len(got) == 3 and got[:2] == want[:2]:
            hint = (f"model {model_spec.name!r} was built for {want[2]} channel(s), got "
                    f"{got[2]}; build the spec from the data's shape")
        else:
            hint = (f"the model expects samples of shape {want}, got {got}; build the spec "
                    "from the dataset's sizes")
        raise ConfigError(f"{what}: {hint}.")
    X2 = X.reshape(len(X), -1) if X.ndim != 2 else X
    if model_spec.vocab and X2.size:
        from zoo.data import check_tokens

        check_tokens(X2, model_spec.vocab, what)
    if y is not None:
        n_classes = model_spec.n_outputs if model_spec.task == "classification" else None
        validate_arrays(X2, y, model_spec.task, n_classes, what=what)
