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

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from zoo.errors import ConfigError, unknown_name
from zoo.optimizers import OptimizerSpec

__all__ = [
    "MODELS",
    "History",
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

#: name -> (task, loss, description). Every model exists in keras_models, tf1_compat and
#: torch_models under the same file name.
MODELS: dict[str, tuple[str, str, str]] = {
    "softmax": ("classification", "categorical cross-entropy",
                "softmax regression: one dense layer of C units, softmax, cross-entropy (seeds 000, 003, 004)"),
    "svm": ("classification", "multiclass hinge",
            "linear classifier with the multiclass hinge (SVM) loss (seed 003)"),
    "linear": ("regression", "mean squared error",
               "linear regression, Dense(1), MSE: the ice-cream demand model (seed 002)"),
    "logistic": ("binary", "binary cross-entropy",
                 "logistic regression: one unit, sigmoid, binary cross-entropy (seed 002)"),
    "mlp": ("classification", "categorical cross-entropy",
            "MLP in->64->Dropout->ReLU->32->Dropout->ReLU->C (seed 004's PyTorch model)"),
}


@dataclass(frozen=True)
class ModelSpec:
    """What to build: the model's name and its sizes."""

    name: str
    n_features: int
    n_outputs: int
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise unknown_name("model", self.name, list(MODELS))
        if self.n_features < 1 or self.n_outputs < 1:
            raise ConfigError(f"a model needs at least one input and one output, got "
                              f"{self.n_features} inputs and {self.n_outputs} outputs.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {self.dropout}.")

    @property
    def task(self) -> str:
        return MODELS[self.name][0]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(**{**d, "hidden": tuple(d.get("hidden", ()))})


def model_spec_for(name: str, n_features: int, n_outputs: int, *, dropout: float | None = None
                   ) -> ModelSpec:
    """The zoo's spec of model `name` for a dataset's sizes (MLP: 64 and 32 hidden units,
    dropout 0.5 as in seed 004)."""
    if name not in MODELS:
        raise unknown_name("model", name, list(MODELS))
    if name == "mlp":
        return ModelSpec(name, n_features, n_outputs, hidden=(64, 32),
                         dropout=0.5 if dropout is None else dropout)
    return ModelSpec(name, n_features, n_outputs)


def layer_sizes(spec: ModelSpec) -> list[tuple[int, int]]:
    """(in, out) of every dense layer, in order."""
    sizes = [spec.n_features, *spec.hidden, spec.n_outputs]
    return list(zip(sizes[:-1], sizes[1:], strict=True))


def init_weights(spec: ModelSpec, seed: int = 0, dtype: str = "float32") -> dict[str, np.ndarray]:
    """Initial weights in the canonical layout, drawn once in seeded numpy.

    Kernels are Glorot-uniform, U(+-sqrt(6 / (in + out))), as Keras's default `Dense`
    initialiser; biases are zero. (torch's own default is kaiming-uniform with random biases,
    TF1's `get_variable` default is glorot-uniform for biases too: never rely on either.)
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i, (n_in, n_out) in enumerate(layer_sizes(spec)):
        limit = np.sqrt(6.0 / (n_in + n_out))
        out[f"dense_{i}/kernel"] = rng.uniform(-limit, limit, (n_in, n_out)).astype(dtype)
        out[f"dense_{i}/bias"] = np.zeros(n_out, dtype=dtype)
    return out


def dropout_masks(spec: ModelSpec, batch_len: int, seed: int, epoch: int, step: int,
                  dtype: str = "float32") -> list[np.ndarray]:
    """Precomputed keep-masks (0/1) for each hidden layer of one mini-batch.

    Frameworks cannot share a dropout random stream, so for a step-by-step comparison every
    framework applies these masks as ``h * mask / (1 - rate)``. The masks depend only on
    (seed, epoch, step), never on the framework.
    """
    if not spec.hidden or spec.dropout == 0.0:
        return []
    rng = np.random.default_rng([int(seed), 7919, int(epoch), int(step)])
    return [(rng.random((batch_len, h)) >= spec.dropout).astype(dtype) for h in spec.hidden]


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


@dataclass
class History:
    """What a framework's `train` returns: per-step losses and the weights, canonical layout.

    `losses[k]` is the mini-batch loss (mean over the batch, before the update) at global
    step k; `step_weights`, when recorded, holds the weights after every `weights_every`-th
    step: entry j is the weights after global step (j + 1) * weights_every - 1.
    """

    framework: str
    losses: np.ndarray
    weights: dict[str, np.ndarray]
    epoch_seconds: list[float] = field(default_factory=list)
    step_weights: list[dict[str, np.ndarray]] | None = None
    stopped_at: int | None = None  # global step at which the loss became non-finite
    extra: dict[str, Any] = field(default_factory=dict)
    weights_every: int = 1

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
            for k in self.weights:
                out[f"sw:{k}"] = np.stack([sw[k] for sw in self.step_weights])
        return out

    @classmethod
    def from_npz_dict(cls, framework: str, d: dict[str, np.ndarray]) -> History:
        weights = {k[2:]: d[k] for k in d if k.startswith("w:")}
        sw_keys = [k for k in d if k.startswith("sw:")]
        step_weights = None
        if sw_keys:
            n = len(d[sw_keys[0]])
            step_weights = [{k[3:]: d[k][i] for k in sw_keys} for i in range(n)]
        stopped = int(d["stopped_at"]) if "stopped_at" in d else -1
        return cls(framework=framework, losses=np.asarray(d["losses"]), weights=weights,
                   epoch_seconds=[float(x) for x in np.asarray(d["epoch_seconds"]).ravel()],
                   step_weights=step_weights, stopped_at=None if stopped < 0 else stopped,
                   weights_every=int(d["weights_every"]) if "weights_every" in d else 1)


def check_canonical(weights: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
    """What every framework's `set_weights` checks: `weights` has exactly the names of
    `shapes` ({"dense_i/kernel": (in, out), "dense_i/bias": (out,)}) with those shapes. A
    kernel in torch's (out, in) layout is named as such; a square one cannot be told apart
    here (only a parity test catches it)."""
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


def check_inputs(model_spec: ModelSpec, X: np.ndarray, y: np.ndarray | None = None,
                 *, what: str = "data") -> None:
    """The checks every framework runs before training or predicting: the shapes, values and
    labels (`zoo.data.validate_arrays`) and a feature count that fits the model."""
    from zoo.data import validate_arrays

    X = np.asarray(X)
    if y is not None:
        n_classes = model_spec.n_outputs if model_spec.task == "classification" else None
        validate_arrays(X, y, model_spec.task, n_classes, what=what)
    elif X.ndim != 2:
        raise ConfigError(f"{what}: features must be 2-D (samples, features), got shape {X.shape}.")
    if X.shape[1] != model_spec.n_features:
        raise ConfigError(f"{what}: the model expects {model_spec.n_features} features, got "
                          f"{X.shape[1]}; build the spec from the dataset's sizes.")
