"""One canonical optimizer description, shared by every framework.

Each framework package has an `optimizers.py` with `make_optimizer(spec, ...)` that
translates an `OptimizerSpec` into its own optimizer so that trajectories agree.
(The translation rules are documented in those modules and in `translation_notes`.)
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
