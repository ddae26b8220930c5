"""One canonical optimizer description, shared by every framework, and its translations.

Each framework package has an `optimizers.py` with `make_optimizer(spec, ...)` that
translates an `OptimizerSpec` into its own optimizer so that trajectories agree. The
translation itself is pure data and lives here, framework-free: `keras_kwargs`,
`tf1_kwargs` and `torch_kwargs` return `(class name, keyword arguments)`, and
`translation_notes()` lists every compensation with its reason (used by the docs and the
`zoo quadratic` command). `native_defaults_kwargs` gives what each framework would build
from its own defaults, so tests can measure how much the translation matters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from zoo.errors import ConfigError, unknown_name

#: Names of the optimizers every framework implements.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "centered_rmsprop", "adam", "adagrad")

#: float32-exact Adam betas: Keras computes beta**t in float32 but 1 - beta in float64, so a
#: beta that float32 cannot represent (0.9, 0.999) makes Keras drift from TF1 and torch.
BETA_1 = float(np.float32(0.9))
BETA_2 = float(np.float32(0.999))


@dataclass(frozen=True)
class OptimizerSpec:
    """A framework-neutral optimizer description.

    name: one of OPTIMIZERS. lr: learning rate. momentum: for momentum/nesterov (and an
    optional RMSprop momentum). rho: RMSprop's decay (torch calls it alpha, TF1 decay).
    beta_1/beta_2: Adam's decay rates. epsilon: the stabiliser; the default 1e-20 makes its
    placement (inside or outside the square root, before or after bias correction) irrelevant
    while staying non-zero (0 gives NaN for always-zero gradients). initial_accumulator:
    Adagrad's (and TF1-compatible RMSprop's) starting accumulator.
    """

    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    rho: float = 0.9
    beta_1: float = BETA_1
    beta_2: float = BETA_2
    epsilon: float = 1e-20
    initial_accumulator: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise unknown_name("optimizer", self.name, list(OPTIMIZERS))
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)) \
                or not math.isfinite(lr) or lr <= 0:
            raise ConfigError(f"learning rate must be a positive finite number, got {lr!r}; "
                              "pass e.g. --lr 0.01.")
        for fld in ("momentum", "rho", "beta_1", "beta_2"):
            v = getattr(self, fld)
            if not (0.0 <= v < 1.0):
                raise ConfigError(f"{fld} must be in [0, 1), got {v!r}.")
        if not (self.epsilon >= 0 and math.isfinite(self.epsilon)):
            raise ConfigError(f"epsilon must be a finite number >= 0, got {self.epsilon!r}.")
        if self.initial_accumulator < 0:
            raise ConfigError(f"initial_accumulator must be >= 0, got {self.initial_accumulator!r}.")
        if self.name in ("momentum", "nesterov") and self.momentum == 0.0:
            object.__setattr__(self, "momentum", 0.9)
        object.__setattr__(self, "lr", float(lr))

    def with_lr(self, lr: float) -> OptimizerSpec:
        return replace(self, lr=lr)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OptimizerSpec:
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# Translations: (class name, kwargs) per framework. Pure data; no framework is imported here.
# ---------------------------------------------------------------------------------------------

#: (optimizer, framework) -> the compensation applied and why. Frameworks: keras, tf1, torch,
#: keras2 (Keras 2, tf_keras: translated as keras, `KERAS_ARGUMENTS`).
_NOTES: tuple[tuple[str, str, str], ...] = (
    ("all", "all",
     "lr is always passed explicitly: the default lr differs (SGD: Keras 0.01, torch 1e-3, "
     "TF1 none; RMSprop: Keras 1e-3, torch 1e-2; Adagrad: Keras 1e-3, torch 1e-2)."),
    ("all", "all",
     "epsilon is 1e-20 everywhere (OptimizerSpec default). Keras and TF1 add it inside the "
     "square root (RMSprop, Adagrad) or to sqrt(v) before bias correction (Adam's epsilon-hat), "
     "torch outside the root and after bias correction; no single constant maps one placement "
     "onto another, but a negligible one makes the placement irrelevant. It stays non-zero "
     "because 0 gives NaN (0/0) for a gradient that is always zero."),
    ("momentum", "keras",
     "Keras keeps lr inside the velocity (m = mu*m - lr*g; p += m); TF1 and torch keep it "
     "outside (b = mu*b + g; p -= lr*b). The two are equal while lr is constant, which is the "
     "case here; after an lr change rescale Keras's momentums by lr_new/lr_old."),
    ("momentum", "torch", "dampening=0 (torch's default, stated explicitly): Keras and TF1 have "
     "no dampening, and dampening=0.9 moves the result by ~2."),
    ("nesterov", "all", "same as momentum, with nesterov=True / use_nesterov=True."),
    ("momentum", "keras", "float64 only: Keras turns a Python-float momentum (and Adagrad's "
     "initial accumulator, the epsilons, rho) into a tensor through float32, so a float64 run "
     "would use float32(0.9); keras_models.optimizers passes them as np.float64 in float64 "
     "runs (float32-exact values would do too)."),
    ("rmsprop", "torch", "rho is torch's alpha (torch default 0.99, Keras 0.9)."),
    ("rmsprop", "all", "epsilon 1e-20 makes its placement (inside the root in Keras and TF1, "
     "outside in torch) negligible only while gradients exceed ~1e-10; nearly dead ReLU units "
     "of an MLP get smaller ones (measured 7.8e-9 between torch and the others on the iris "
     "MLP in float64), so float64 runs that must agree to rounding use 1e-40."),
    ("rmsprop", "tf1",
     "rho is TF1's decay. TF1's RMSPropOptimizer initialises its 'rms' slot to ONES (Keras and "
     "torch start at 0), so tf1_compat.optimizers.after_init zeroes it after the variables are "
     "initialised."),
    ("rmsprop", "keras", "RMSprop momentum, like SGD momentum, keeps lr inside the velocity in "
     "Keras and TF1 and outside in torch: equal while lr is constant."),
    ("centered_rmsprop", "all", "as rmsprop with centered=True; v - mean(g)^2 cancels in float32, "
     "so agreement is a little looser than for plain rmsprop."),
    ("adam", "all",
     "betas are float32-exact (float(np.float32(0.9)), float(np.float32(0.999))): Keras computes "
     "1 - beta in float64 but beta**t in float32, so a beta float32 cannot represent makes its "
     "first step 0.9999933*lr instead of lr. TF1 calls them beta1/beta2, torch betas=(b1, b2)."),
    ("adam", "all", "default epsilons differ (Keras 1e-7, TF1 and torch 1e-8) and sit in "
     "different places; the shared 1e-20 removes both differences."),
    ("adagrad", "torch",
     "initial_accumulator_value=0.1 (Keras and TF1 default; torch defaults to 0, which makes the "
     "first step exactly lr*sign(g)). lr_decay=0."),
    ("adagrad", "tf1",
     "TF1's Adagrad has no epsilon at all (its accumulator starts at 0.1 > 0, so it never "
     "divides by zero) and requires initial_accumulator > 0."),
    ("all", "keras2",
     "Keras 2 (tf_keras, v2.11+ optimizers) takes Keras 3's arguments and defaults: the keras "
     "translation (keras_kwargs) applies as it is. Its optimizers accept `lr=` and IGNORE it "
     "(a logged warning; the default lr trains): the lr goes in as `learning_rate`."),
    ("all", "keras2", "float64 only: as Keras 3, tf_keras casts a Python-float momentum, rho "
     "or beta (its legacy optimizers: the lr too) through float32 (tf.cast), so "
     "keras2_models.optimizers passes np.float64 values and builds the optimizer under floatx "
     "float64 (its lr variable takes floatx)."),
    ("adagrad", "keras2", "tf.keras.optimizers.legacy.Adagrad (Keras 2 before 2.11) adds "
     "epsilon OUTSIDE the square root, the v2.11+ class inside: harmless at 1e-20."),
)


def translation_notes(optimizer: str | None = None) -> list[dict[str, str]]:
    """The translation rules as rows {optimizer, framework, note}, for docs and the CLI.

    With `optimizer`, only the rows that apply to it (including the 'all' rows)."""
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise unknown_name("optimizer", optimizer, list(OPTIMIZERS))
    return [{"optimizer": o, "framework": f, "note": n} for o, f, n in _NOTES
            if optimizer is None or o in ("all", optimizer)]


#: Frameworks whose optimizers take Keras 3's arguments and have Keras 3's defaults, so that
#: `keras_kwargs` translates for them too and their native defaults are Keras 3's: Keras 2
#: (tf_keras's v2.11+ optimizers, `keras2_models.optimizers`; measured in tests/test_keras2.py).
KERAS_ARGUMENTS: tuple[str, ...] = ("keras2",)


def keras_kwargs(spec: OptimizerSpec) -> tuple[str, dict[str, Any]]:
    """`keras.optimizers.<class>(**kwargs)` for `spec`.

    - sgd/momentum/nesterov -> SGD (momentum, nesterov). Keras's velocity includes lr, equal to
      TF1/torch while lr is constant (see `translation_notes`).
    - rmsprop/centered_rmsprop -> RMSprop(rho, momentum, epsilon, centered); epsilon goes
      inside the square root, harmless at 1e-20.
    - adam -> Adam(beta_1, beta_2, epsilon): epsilon-hat form; betas float32-exact.
    - adagrad -> Adagrad(initial_accumulator_value, epsilon inside the root).
    The lr is a Python float (Keras rejects an int). float64 caveat (measured): Keras turns a
    Python-float `momentum` or initial accumulator into float32 before casting it to float64,
    so `keras_models.optimizers.make_optimizer` passes np.float64 values in float64 runs.
    """
    lr = float(spec.lr)
    if spec.name == "sgd":
        return "SGD", {"learning_rate": lr}
    if spec.name in ("momentum", "nesterov"):
        return "SGD", {"learning_rate": lr, "momentum": spec.momentum,
                       "nesterov": spec.name == "nesterov"}
    if spec.name in ("rmsprop", "centered_rmsprop"):
        return "RMSprop", {"learning_rate": lr, "rho": spec.rho, "momentum": spec.momentum,
                           "epsilon": spec.epsilon, "centered": spec.name == "centered_rmsprop"}
    if spec.name == "adam":
        return "Adam", {"learning_rate": lr, "beta_1": spec.beta_1, "beta_2": spec.beta_2,
                        "epsilon": spec.epsilon}
    if spec.name == "adagrad":
        return "Adagrad", {"learning_rate": lr,
                           "initial_accumulator_value": spec.initial_accumulator,
                           "epsilon": spec.epsilon}
    raise unknown_name("optimizer", spec.name, list(OPTIMIZERS))  # pragma: no cover


#: TF1 optimizers whose freshly initialised state differs from Keras's and must be fixed by
#: `tf1_compat.optimizers.after_init`: class -> slot names to zero.
TF1_SLOTS_TO_ZERO: dict[str, tuple[str, ...]] = {"RMSPropOptimizer": ("rms",)}


def tf1_kwargs(spec: OptimizerSpec) -> tuple[str, dict[str, Any]]:
    """`tf.compat.v1.train.<class>(**kwargs)` for `spec`.

    - sgd -> GradientDescentOptimizer; momentum/nesterov -> MomentumOptimizer(use_nesterov).
    - rmsprop -> RMSPropOptimizer(decay=rho, momentum, epsilon, centered). Its 'rms' slot starts
      at ONE (Keras/torch: zero), so the caller must zero it after initialisation
      (`TF1_SLOTS_TO_ZERO`, `tf1_compat.optimizers.after_init`).
    - adam -> AdamOptimizer(beta1, beta2, epsilon); same epsilon-hat form as Keras.
    - adagrad -> AdagradOptimizer(initial_accumulator_value); TF1 has no epsilon and needs an
      accumulator > 0 (ConfigError otherwise).
    The values are plain floats; for float64 the caller wraps them in float64 constants
    because TF1 would otherwise convert each one to a float32 tensor and cast it.
    """
    lr = float(spec.lr)
    if spec.name == "sgd":
        return "GradientDescentOptimizer", {"learning_rate": lr}
    if spec.name in ("momentum", "nesterov"):
        return "MomentumOptimizer", {"learning_rate": lr, "momentum": spec.momentum,
                                     "use_nesterov": spec.name == "nesterov"}
    if spec.name in ("rmsprop", "centered_rmsprop"):
        return "RMSPropOptimizer", {"learning_rate": lr, "decay": spec.rho,
                                    "momentum": spec.momentum, "epsilon": spec.epsilon,
                                    "centered": spec.name == "centered_rmsprop"}
    if spec.name == "adam":
        return "AdamOptimizer", {"learning_rate": lr, "beta1": spec.beta_1,
                                 "beta2": spec.beta_2, "epsilon": spec.epsilon}
    if spec.name == "adagrad":
        if spec.initial_accumulator <= 0:
            raise ConfigError("TF1's AdagradOptimizer needs initial_accumulator > 0 (it has no "
                              f"epsilon), got {spec.initial_accumulator!r}.")
        return "AdagradOptimizer", {"learning_rate": lr,
                                    "initial_accumulator_value": spec.initial_accumulator}
    raise unknown_name("optimizer", spec.name, list(OPTIMIZERS))  # pragma: no cover


def torch_kwargs(spec: OptimizerSpec) -> tuple[str, dict[str, Any]]:
    """`torch.optim.<class>(params, **kwargs)` for `spec`.

    - sgd/momentum/nesterov -> SGD(momentum, dampening=0, nesterov); torch keeps lr outside
      the buffer (equal to Keras while lr is constant).
    - rmsprop/centered_rmsprop -> RMSprop(alpha=rho, eps, momentum, centered); eps outside the
      root, harmless at 1e-20.
    - adam -> Adam(betas=(beta_1, beta_2), eps): eps after bias correction, harmless at 1e-20.
    - adagrad -> Adagrad(initial_accumulator_value=0.1 like Keras/TF1 (torch default 0),
      lr_decay=0, eps).
    """
    lr = float(spec.lr)
    if spec.name == "sgd":
        return "SGD", {"lr": lr}
    if spec.name in ("momentum", "nesterov"):
        return "SGD", {"lr": lr, "momentum": spec.momentum, "dampening": 0.0,
                       "nesterov": spec.name == "nesterov"}
    if spec.name in ("rmsprop", "centered_rmsprop"):
        return "RMSprop", {"lr": lr, "alpha": spec.rho, "eps": spec.epsilon,
                           "momentum": spec.momentum,
                           "centered": spec.name == "centered_rmsprop"}
    if spec.name == "adam":
        return "Adam", {"lr": lr, "betas": (spec.beta_1, spec.beta_2), "eps": spec.epsilon}
    if spec.name == "adagrad":
        return "Adagrad", {"lr": lr, "lr_decay": 0.0,
                           "initial_accumulator_value": spec.initial_accumulator,
                           "eps": spec.epsilon}
    raise unknown_name("optimizer", spec.name, list(OPTIMIZERS))  # pragma: no cover


def native_defaults_kwargs(name: str, lr: float, framework: str) -> tuple[str, dict[str, Any]]:
    """What a port that passes only the lr (and the algorithm's switches) would build.

    This is the *untranslated* baseline: each framework's own default rho/alpha, betas,
    epsilon and initial accumulator (and, for TF1 RMSprop, the ones-initialised 'rms' slot,
    which the caller leaves in place). Tests use it to measure how far the defaults drift.
    """
    if name not in OPTIMIZERS:
        raise unknown_name("optimizer", name, list(OPTIMIZERS))
    lr = float(lr)
    centered = name == "centered_rmsprop"
    table: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
        "keras": {
            "sgd": ("SGD", {"learning_rate": lr}),
            "momentum": ("SGD", {"learning_rate": lr, "momentum": 0.9}),
            "nesterov": ("SGD", {"learning_rate": lr, "momentum": 0.9, "nesterov": True}),
            "rmsprop": ("RMSprop", {"learning_rate": lr}),
            "centered_rmsprop": ("RMSprop", {"learning_rate": lr, "centered": True}),
            "adam": ("Adam", {"learning_rate": lr}),
            "adagrad": ("Adagrad", {"learning_rate": lr}),
        },
        "tf1": {
            "sgd": ("GradientDescentOptimizer", {"learning_rate": lr}),
            "momentum": ("MomentumOptimizer", {"learning_rate": lr, "momentum": 0.9}),
            "nesterov": ("MomentumOptimizer", {"learning_rate": lr, "momentum": 0.9,
                                               "use_nesterov": True}),
            "rmsprop": ("RMSPropOptimizer", {"learning_rate": lr}),
            "centered_rmsprop": ("RMSPropOptimizer", {"learning_rate": lr, "centered": True}),
            "adam": ("AdamOptimizer", {"learning_rate": lr}),
            "adagrad": ("AdagradOptimizer", {"learning_rate": lr}),
        },
        "torch": {
            "sgd": ("SGD", {"lr": lr}),
            "momentum": ("SGD", {"lr": lr, "momentum": 0.9}),
            "nesterov": ("SGD", {"lr": lr, "momentum": 0.9, "nesterov": True}),
            "rmsprop": ("RMSprop", {"lr": lr, "centered": centered}),
            "centered_rmsprop": ("RMSprop", {"lr": lr, "centered": True}),
            "adam": ("Adam", {"lr": lr}),
            "adagrad": ("Adagrad", {"lr": lr}),
        },
    }
    table.update({fw: table["keras"] for fw in KERAS_ARGUMENTS})
    if framework not in table:
        raise unknown_name("framework", framework, list(table))
    return table[framework][name]
